"""The fused linear + cross-entropy (xent.torch.linear_cross_entropy) against the bare matrix products and PyTorch
eager, one training step (forward and backward) of a language-model head, h [N, H] · W [V, H]ᵀ → loss:

  - xent: xent.torch.linear_cross_entropy(h, W, target), then backward, with the default chunk budget;
  - xent one pass (bfloat16 only): the same with a budget that holds grad_weight's float32 accumulator [V, H], so
    that the vocabulary is not tiled (one pass, three products instead of four: include/xent/xent.h);
  - bare GEMMs: the same three products whole (logits, grad_input, grad_weight) with the library xent uses
    (oneDNN's matmul), in one process and run (bench/peers.cc): what the fused op's time is compared to;
  - PyTorch: F.linear + F.cross_entropy, then backward (eager, Debian's PyTorch 1.13).

Each measurement runs in a fresh process: its time is the fastest of a few steps after one that warms up, its memory
the growth of the process's peak resident set during its first step, less the gradients it returns (h.grad,
W.grad).

    PYTHONPATH=build/python:build /usr/bin/python3 bench/linear.py [--quick] [--json F] [--plot F.png]
    PYTHONPATH=build/python:build /usr/bin/python3 bench/linear.py --one xent N H V DTYPE REPEATS [--chunk-bytes B]
        (one measurement; for xent with the chunk budget B)
"""
import argparse
import json
import os
import subprocess
import sys

SHAPES = [(4096, 1024, 32000), (2048, 2048, 128256), (1024, 4096, 256000)]
DTYPES = ["float32", "bfloat16"]


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak():
    """Makes the peak resident set the current one (Linux: /proc/PID/clear_refs), so that the peak of building the
    inputs (float32 temporaries) does not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def one(method, N, H, V, dtype, repeats, chunk_bytes=0):
    """Runs in its own process: prints a JSON line with the measurement."""
    import time

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count())
    if method == "gemms":
        import xent_peers
        print(json.dumps({"seconds": xent_peers.bare_gemms_seconds(N, H, V, dtype == "bfloat16", repeats)}))
        return
    import xent
    import xent.torch
    xent.set_num_threads(os.cpu_count())
    xent.set_linear_chunk_bytes(chunk_bytes)
    if method == "xent-one-pass":  # the accumulator within half the budget, and chunks of at least 128 MiB
        xent.set_linear_chunk_bytes(max(2 * V * H * 4, V * H * 4 + (128 << 20)))
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, H, generator=g).to(dt).requires_grad_()
    W = (torch.randn(V, H, generator=g) / H ** 0.5).to(dt).requires_grad_()
    target = torch.randint(0, V, (N,), generator=g)

    def step():
        h.grad, W.grad = None, None
        if method.startswith("xent"):
            loss = xent.torch.linear_cross_entropy(h, W, target)
        else:
            loss = F.cross_entropy(F.linear(h, W), target)
        loss.backward()
        return loss

    reset_peak()
    before = rss_bytes()
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    grads = (h.grad.numel() + W.grad.numel()) * h.element_size()
    extra = max(0, peak_bytes() - before - grads)
    best = first
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"seconds": best, "extra_bytes": extra}))


def measure(method, N, H, V, dtype, repeats):
    out = subprocess.run([sys.executable, __file__, "--one", method, str(N), str(H), str(V), dtype, str(repeats)],
                         check=True, capture_output=True, text=True, env=dict(os.environ)).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows):
    lines = ["| N × H × V | dtype | xent fused (s) | bare GEMMs (s) | xent / GEMMs | PyTorch eager (s) | xent speedup | "
             "xent extra memory | PyTorch extra memory | xent / PyTorch memory | xent one pass (s, memory) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    gib = lambda b: f"{b / 2 ** 30:.2f} GiB" if b >= 2 ** 28 else f"{b / 2 ** 20:.0f} MiB"
    one_pass = lambda r: (f"{r['xent-one-pass']['seconds']:.2f} ({r['xent-one-pass']['seconds'] / r['gemms']['seconds']:.2f}"
                          f" × GEMMs), {gib(r['xent-one-pass']['extra_bytes'])}" if "xent-one-pass" in r else "")
    for r in rows:
        x, gm, pt = r["xent"], r["gemms"], r["pytorch"]
        lines.append(
            f"| {r['N']} × {r['H']} × {r['V']} | {r['dtype']} | {x['seconds']:.2f} | {gm['seconds']:.2f} | "
            f"{x['seconds'] / gm['seconds']:.2f} | {pt['seconds']:.2f} | {pt['seconds'] / x['seconds']:.1f}x | "
            f"{gib(x['extra_bytes'])} | {gib(pt['extra_bytes'])} | "
            f"{x['extra_bytes'] / max(pt['extra_bytes'], 1):.3f} | {one_pass(r)} |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r['V'] // 1000}k\n{r['dtype']}" for r in rows]
    xs = range(len(rows))
    w = 0.27
    a.bar([x - w for x in xs], [r["xent"]["seconds"] for r in rows], w, label="xent fused")
    a.bar(list(xs), [r["gemms"]["seconds"] for r in rows], w, label="bare GEMMs (oneDNN)")
    a.bar([x + w for x in xs], [r["pytorch"]["seconds"] for r in rows], w, label="PyTorch eager")
    a.set_xticks(list(xs), labels)
    a.set_ylabel("seconds per step (forward + backward)")
    a.set_yscale("log")
    a.legend()
    b.bar([x - w / 2 for x in xs], [r["xent"]["extra_bytes"] / 2 ** 30 for r in rows], w, label="xent fused")
    b.bar([x + w / 2 for x in xs], [r["pytorch"]["extra_bytes"] / 2 ** 30 for r in rows], w, label="PyTorch eager")
    b.set_xticks(list(xs), labels)
    b.set_ylabel("GiB beyond inputs and gradients")
    b.legend()
    fig.suptitle("Linear + cross-entropy, one step, h [N, H], W [V, H] (N×H×V: 4096×1024×32k, 2048×2048×128k, "
                 "1024×4096×256k)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--one", nargs=6)
    p.add_argument("--quick", action="store_true", help="small shapes, to check the script")
    p.add_argument("--json")
    p.add_argument("--plot")
    p.add_argument("--chunk-bytes", type=int, default=0, help="with --one: xent's chunk budget (0: the default)")
    args = p.parse_args()
    if args.one:
        method, N, H, V, dtype, repeats = args.one
        one(method, int(N), int(H), int(V), dtype, int(repeats), args.chunk_bytes)
        return
    shapes = [(256, 128, 1000), (128, 256, 5000)] if args.quick else SHAPES
    rows = []
    for N, H, V in shapes:
        for dtype in DTYPES:
            row = {"N": N, "H": H, "V": V, "dtype": dtype}
            for method in ("xent", "gemms", "pytorch") + (("xent-one-pass",) if dtype == "bfloat16" else ()):
                row[method] = measure(method, N, H, V, dtype, 2)
                print(f"{N}x{H}x{V} {dtype} {method}: {row[method]}", file=sys.stderr, flush=True)
            rows.append(row)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
