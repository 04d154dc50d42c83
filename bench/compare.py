"""xent beside its peers, one process, one run, the same inputs: PyTorch, oneDNN, TensorFlow's algorithm (Eigen),
and the read bandwidth of the machine, measured during each case.

    PYTHONPATH=build/python /usr/bin/python3 bench/compare.py          # after scripts/build.sh

Prints a markdown table (GB/s per system, xent's ratio to the best peer, the read bandwidth during the case, for
forward+gradient rows also the copy bandwidth, and xent's fraction of its bus: the copy for rows that write, the read
for the others),
and writes bench/results/compare.json, compare.md and compare.png (throughput against class count at a fixed
total size). Bytes counted: inputs read once (logits, labels: float or one int64 per row) plus gradients written
once (forward+gradient rows: grad_logits only, as every peer writes). xent writes its gradient into one array
allocated before the timing (out=); PyTorch's autograd allocates its .grad in every backward, as it does by default.

Timing: the systems of a case take turns (rounds: each system calls for ROUND_SECONDS, at least once, then the next),
and each system's figure is its fastest call. On a shared VM a burst of interference lasting a fraction of a second
slowed whichever system ran during it: one system's median could move 1.5x between runs while the others' did not
(xent at 4096x32000: 19.4 then 15.0 GB/s in two runs, 8 to 23 GB/s from call to call in one process). The JSON also
keeps each system's median call.
The read bandwidth takes its turn in the same rounds (one read of 1 GiB per call, bench/read_bandwidth.h), so each
case's fraction is taken against the fastest read during that case. Measured once at the start of a run instead, it
could fall below a later case's fastest call (1.09 of it at 1M classes in the run of 2026-11-28 05:43).
Rows that write gradients move bytes both ways, and reads alone are not their bus: a copy of memory with
non-temporal stores (read plus written bytes, as xent_bench's gradient rows) takes its turn with them too.
"""
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import xent
import xent_peers

ROTATION_BYTES = 1 << 30  # inputs rotated over at least this much memory: no run is served from cache
MIN_SECONDS = 2.0  # per case, all systems together
MIN_ROUNDS = 5
ROUND_SECONDS = 0.1
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def timed(systems, copies):
    """name -> (fastest, median) seconds per call of each system. The systems take turns for at least MIN_ROUNDS rounds
    and MIN_SECONDS in all; in a round each calls for ROUND_SECONDS (at least once) over rotating input copies."""
    for fn in systems.values():  # warm-up: first touch of outputs, lazy initialisation
        fn(*copies[0])
    times = {name: [] for name in systems}
    i, rounds, start = 0, 0, time.perf_counter()
    while rounds < MIN_ROUNDS or time.perf_counter() - start < MIN_SECONDS:
        for name, fn in systems.items():
            spent = 0.0
            while spent < ROUND_SECONDS:
                args = copies[i % len(copies)]
                t0 = time.perf_counter()
                fn(*args)
                times[name].append(time.perf_counter() - t0)
                spent += times[name][-1]
                i += 1
        rounds += 1
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def make_inputs(shape, axis, dtype, sparse, seed=0):
    rng = np.random.default_rng(seed)
    elements = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    per_copy = elements * itemsize * (1 if sparse else 2)
    copies = []
    for _ in range(max(1, -(-ROTATION_BYTES // per_copy))):
        x = (rng.standard_normal(shape, dtype=np.float32) * 4).astype(dtype)
        if sparse:
            label_shape = tuple(s for d, s in enumerate(shape) if d != axis % len(shape))
            y = rng.integers(0, shape[axis], size=label_shape, dtype=np.int64)
        else:
            y = rng.random(shape, dtype=np.float32).astype(dtype)
        copies.append((x, y))
    return copies


def systems_for(case):
    """name -> (function(x, y), bytes moved per call) for one case."""
    shape, axis, dtype, op = case["shape"], case["axis"], case["dtype"], case["op"]
    sparse = op.startswith("sparse")
    grad = op.endswith("grad")
    elements = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    rows = elements // shape[axis]
    bytes_in = elements * itemsize + (rows * 8 if sparse else elements * itemsize)
    nbytes = bytes_in + (elements * itemsize if grad else 0)
    torch_dim = axis % len(shape)
    out = {}

    # xent; gradients into one preallocated array (out=), as a training loop reuses its gradient buffer: a new
    # array per call measured its page faults, not the op (2 to 16 GB/s at 4096x32000 forward+grad, depending on
    # which system had run before and freed its memory)
    grad_out = np.empty(shape, dtype) if grad else None
    if sparse and grad:
        out["xent"] = lambda x, y: xent.sparse_softmax_cross_entropy_with_logits_grad(
            labels=y, logits=x, axis=axis, out=(None, grad_out))
    elif sparse:
        out["xent"] = lambda x, y: xent.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x, axis=axis)
    elif grad:
        out["xent"] = lambda x, y: xent.cross_entropy_grad(x, y, axis=axis, reduction="none", out=(None, grad_out))
    else:
        out["xent"] = lambda x, y: xent.softmax_cross_entropy_with_logits(labels=y, logits=x, axis=axis)

    # PyTorch: class axis must be dim 1; move it there as a view (no copy) for 2-D class-last inputs it is already
    tdtype = {np.float32: torch.float32, np.float16: torch.bfloat16}.get(dtype)
    if tdtype is not None and (torch_dim == 1 or len(shape) == 2):
        def run_torch(x, y):
            xt = torch.from_numpy(x) if dtype == np.float32 else torch.from_numpy(x.astype(np.float32)).to(tdtype)
            yt = torch.from_numpy(y) if (sparse or dtype == np.float32) else torch.from_numpy(y.astype(np.float32)).to(tdtype)
            if len(shape) == 2 and torch_dim == 0:
                xt, yt = xt.t(), (yt if sparse else yt.t())
            if grad:
                xt.requires_grad_(True)
                loss = F.cross_entropy(xt, yt, reduction="none")
                loss.backward(torch.ones_like(loss))
            else:
                with torch.no_grad():
                    F.cross_entropy(xt, yt, reduction="none")
        if dtype == np.float32:
            out["PyTorch"] = run_torch
    if not sparse and not grad and dtype == np.float32:
        onednn = xent_peers.OneDnn(list(shape), torch_dim)
        loss = np.empty(rows, np.float32)
        out["oneDNN"] = lambda x, y: onednn.forward(x, y, loss)
        if torch_dim == len(shape) - 1:
            eigen = xent_peers.EigenTf(rows, shape[-1])
            out["TF algorithm (Eigen)"] = lambda x, y: eigen.forward(x, y, loss)
    return out, nbytes


READ_BW = "read bandwidth"
COPY_BW = "copy bandwidth"


def measure(case, reader):
    """(fastest, median) GB/s of each system and of the reader (READ_BW; COPY_BW too for rows that write gradients),
    which takes its turns with them."""
    copies = make_inputs(case["shape"], case["axis"], case["dtype"], case["op"].startswith("sparse"))
    systems, nbytes = systems_for(case)
    systems[READ_BW] = lambda x, y: reader.read()
    if case["op"].endswith("grad"):
        systems[COPY_BW] = lambda x, y: reader.copy()
    nbytes = {**{name: nbytes for name in systems}, READ_BW: reader.bytes, COPY_BW: reader.bytes}
    seconds = timed(systems, copies)
    del copies
    return ({name: nbytes[name] / fastest / 1e9 for name, (fastest, _) in seconds.items()},
            {name: nbytes[name] / median / 1e9 for name, (_, median) in seconds.items()})


def shape_name(shape, axis):
    s = "x".join(str(d) for d in shape)
    return s + (f" axis={axis}" if axis not in (-1, len(shape) - 1) else "")


CASES = [
    # class 1: many rows, large C
    *[dict(cls=1, op="forward", shape=s, axis=-1, dtype=np.float32) for s in [(4096, 32000), (1024, 128000), (256, 256000)]],
    # class 2: many rows, small C
    *[dict(cls=2, op="forward", shape=s, axis=-1, dtype=np.float32) for s in [(1 << 20, 10), (4 << 20, 2), (2 << 20, 16)]],
    # class 3: one huge row
    *[dict(cls=3, op="forward", shape=s, axis=-1, dtype=np.float32) for s in [(1, 16 << 20), (4, 4 << 20)]],
    # class 4: class axis not last
    *[dict(cls=4, op="forward", shape=s, axis=1, dtype=np.float32) for s in [(32, 21, 128, 128), (64, 1000, 49)]],
    # class 5: half precision (PyTorch's CPU bfloat16 as its peer)
    *[dict(cls=5, op="forward", shape=s, axis=-1, dtype=np.float16) for s in [(4096, 32000), (1 << 20, 10)]],
    # class 6: forward + gradient
    *[dict(cls=6, op="forward+grad", shape=s, axis=a, dtype=np.float32)
      for s, a in [((4096, 32000), -1), ((1 << 20, 10), -1), ((1, 16 << 20), -1), ((32, 21, 128, 128), 1)]],
    # class 7: class-index labels
    *[dict(cls=7, op="sparse", shape=s, axis=-1, dtype=np.float32) for s in [(4096, 32000), (65536, 1000), (1 << 20, 10)]],
    *[dict(cls=7, op="sparse+grad", shape=s, axis=-1, dtype=np.float32) for s in [(4096, 32000), (1 << 20, 10)]],
]

SWEEP_ELEMENTS = 1 << 25
SWEEP_CLASSES = [2, 8, 32, 128, 1024, 8192, 65536, 1 << 20]


def main():
    os.makedirs(OUT, exist_ok=True)
    # Debian's PyTorch lowers the process's OpenMP threads to its count of physical cores when imported (1 on this
    # 2-vCPU machine), which xent's default follows. Every system gets every logical CPU here.
    torch.set_num_threads(os.cpu_count())
    xent.set_num_threads(os.cpu_count())
    reader = xent_peers.ReadBandwidth()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), cpu=cpu, cores=os.cpu_count(),
                torch=torch.__version__, threads=torch.get_num_threads(), xent_threads=xent.get_num_threads())
    print(f"{meta['date']}, {cpu}, {os.cpu_count()} cores", file=sys.stderr)
    rows = []
    for case in CASES:
        best, median = measure(case, reader)
        rows.append(dict(cls=case["cls"], op=case["op"], shape=shape_name(case["shape"], case["axis"]),
                         dtype=np.dtype(case["dtype"]).name, gbs=best, gbs_median=median))
        print(rows[-1], file=sys.stderr)
    sweep = []
    for C in SWEEP_CLASSES:
        case = dict(op="forward", shape=(SWEEP_ELEMENTS // C, C), axis=-1, dtype=np.float32)
        best, median = measure(case, reader)
        sweep.append(dict(classes=C, gbs=best, gbs_median=median))
        print(sweep[-1], file=sys.stderr)
    every_bw = [r["gbs"][READ_BW] for r in rows + sweep]
    meta["read_bandwidth_gbs_range"] = [min(every_bw), max(every_bw)]
    json.dump(dict(meta=meta, cases=rows, sweep=sweep), open(os.path.join(OUT, "compare.json"), "w"), indent=1)
    table = render_table(meta, rows)
    open(os.path.join(OUT, "compare.md"), "w").write(table)
    print(table)
    plot(meta, sweep)


def render_table(meta, rows):
    peers = ["PyTorch", "oneDNN", "TF algorithm (Eigen)"]
    low, high = meta["read_bandwidth_gbs_range"]
    lines = [f"Run of {meta['date']} on {meta['cpu']} ({meta['cores']} cores), PyTorch {meta['torch']}; "
             f"{meta['threads']} threads for every system. GB/s of bytes moved; each system's fastest call, the systems "
             f"and a read of memory taking turns (see bench/compare.py); the read bandwidth ranged over "
             f"**{low:.1f}–{high:.1f} GB/s** in this run.", "",
             "Bus: the read bandwidth, or for rows that write gradients the copy bandwidth (read plus written bytes).", "",
             "| class | op | shape | dtype | xent | " + " | ".join(peers)
             + " | xent / best peer | read bw | copy bw | xent / bus |",
             "|---|---|---|---|---:|" + "---:|" * len(peers) + "---:|---:|---:|---:|"]
    for r in rows:
        g = r["gbs"]
        best = max((g[p] for p in peers if p in g), default=None)
        cells = [f"{g[p]:.1f}" if p in g else "–" for p in peers]
        ratio = f"{g['xent'] / best:.1f}x" if best else "–"
        bus = g.get(COPY_BW, g[READ_BW])
        copy = f"{g[COPY_BW]:.1f}" if COPY_BW in g else "–"
        lines.append(f"| {r['cls']} | {r['op']} | {r['shape']} | {r['dtype']} | **{g['xent']:.1f}** | "
                     + " | ".join(cells) + f" | {ratio} | {g[READ_BW]:.1f} | {copy} | {g['xent'] / bus:.2f} |")
    return "\n".join(lines) + "\n"


def plot(meta, sweep):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    classes = [s["classes"] for s in sweep]
    for name in ["xent", "PyTorch", "oneDNN", "TF algorithm (Eigen)"]:
        ax.plot(classes, [s["gbs"].get(name, np.nan) for s in sweep], marker="o", label=name)
    ax.plot(classes, [s["gbs"][READ_BW] for s in sweep], color="black", linestyle="--",
            label="read bandwidth (read with each point)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"classes C (rows = {SWEEP_ELEMENTS >> 20}M / C), float32, forward")
    ax.set_ylabel("GB/s (logits + labels read)")
    ax.set_title(f"Dense softmax cross-entropy, {meta['cores']} cores, {meta['date'][:10]}")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "compare.png"), dpi=110)


if __name__ == "__main__":
    main()
