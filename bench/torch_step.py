"""A PyTorch training step's loss: xent.torch.cross_entropy (the native operator) against F.cross_entropy, in one
run, over class counts 10, 1000 and 32 000 and batches 32 to 8192, float32 and bfloat16, class-index targets:

  - forward: the loss of logits that need no gradient (evaluation), n calls in a loop, best of several loops;
  - forward+backward: the loss and its backward for logits that are an operation's output (as a layer's are), each
    step timed alone, best of several steps. The gradient is a new tensor every step, as in training (autograd
    hands it to the layer below); `xent in place` is the same step with inplace_backward=True, which writes it over
    the logits instead.
  - kernel (rows of 2048 x 32 000 and more): xent's C API alone on the same shape into buffers allocated once (the
    forward; the fused loss and gradient), so that a step's time splits into the kernel and everything around it
    (the gradient's allocation and first touch, autograd).

Ratios are PyTorch's time over xent's: above 1, xent is faster. Threads: PyTorch's default (every core); xent uses
the same OpenMP pool.

    PYTHONPATH=build/python /usr/bin/python3 bench/torch_step.py [--quick] [--json F] [--markdown F] [--plot F.png]
"""
import argparse
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

import xent.torch as xt
from timing import best_per_call
from xent import _xent

BATCHES = [32, 256, 2048, 8192]
CLASSES = [10, 1000, 32000]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def budget(N, C):
    """(calls per loop or steps, loops): about a second per measurement on small shapes, a few steps on large."""
    elements = N * C
    if elements <= 1 << 16:
        return 2000, 7
    if elements <= 1 << 22:
        return 50, 5
    return 1, 4


def best_step(loss_fn, base, target, calls, loops):
    """The fastest forward+backward of loss_fn(logits, target), logits = an operation's output over `base` (made
    outside the timed region each step; its gradient goes to base, a leaf, as a layer's would)."""
    best = float("inf")
    for _ in range(loops * min(calls, 200) + 1):
        logits = base.clone()
        t = time.perf_counter()
        loss_fn(logits, target).backward()
        best = min(best, time.perf_counter() - t)
        base.grad = None
    return best


def kernel_seconds(x, target, gradients, calls, loops):
    """xent's C API on x into buffers allocated and touched once: the loss, and the gradient if `gradients`."""
    d = lambda t: (t.data_ptr(), int(_xent.dtype.__members__[str(t.dtype).split(".")[1]]), tuple(t.shape),
                   tuple(t.stride()))
    loss = torch.zeros((), dtype=x.dtype)
    grad = torch.zeros_like(x) if gradients else None
    mean = int(_xent.reduction.__members__["mean"])
    run = lambda: _xent.cross_entropy_raw(d(x), d(target), -1, None, -100, mean, 0.0, 0.0, 0.0, None, d(loss),
                                          d(grad) if gradients else None)
    return best_per_call(run, calls, loops)


def measure(N, C, dtype, quick):
    g = torch.Generator().manual_seed(N * 7 + C)
    x = (torch.randn(N, C, generator=g) * 2).to(dtype)
    target = torch.randint(0, C, (N,), generator=g)
    calls, loops = budget(N, C)
    if quick:
        calls, loops = max(1, calls // 10), 2
    row = {"N": N, "C": C, "dtype": str(dtype).split(".")[1]}
    row["torch_forward"] = best_per_call(lambda: F.cross_entropy(x, target), calls, loops)
    row["xent_forward"] = best_per_call(lambda: xt.cross_entropy(x, target), calls, loops)
    base = x.clone().requires_grad_()
    row["torch_step"] = best_step(F.cross_entropy, base, target, calls, loops)
    row["xent_step"] = best_step(xt.cross_entropy, base, target, calls, loops)
    row["xent_inplace_step"] = best_step(lambda l, t: xt.cross_entropy(l, t, inplace_backward=True), base, target,
                                         calls, loops)
    if N * C >= 2048 * 32000:
        row["kernel_forward"] = kernel_seconds(x, target, False, calls, loops)
        row["kernel_step"] = kernel_seconds(x, target, True, calls, loops)
    return row


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def isa():
    flags = open("/proc/cpuinfo").read()
    return "AVX-512" if " avx512f " in flags else "AVX2" if " avx2 " in flags else "SSE4"


def seconds(s):
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.3f} s"


def markdown(rows, meta):
    out = [f"PyTorch {meta['torch']} against xent.torch (native operator), {meta['cpu']} ({meta['isa']}), "
           f"{meta['threads']} threads, {meta['date']}. Ratio: PyTorch's time / xent's (above 1: xent faster).", "",
           "| dtype | N × C | forward: torch | xent | ratio | fwd+bwd: torch | xent | ratio | xent in place | ratio |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['dtype']} | {r['N']} × {r['C']} | {seconds(r['torch_forward'])} | "
                   f"{seconds(r['xent_forward'])} | {r['torch_forward'] / r['xent_forward']:.2f}x | "
                   f"{seconds(r['torch_step'])} | {seconds(r['xent_step'])} | "
                   f"{r['torch_step'] / r['xent_step']:.2f}x | {seconds(r['xent_inplace_step'])} | "
                   f"{r['torch_step'] / r['xent_inplace_step']:.2f}x |")
    big = [r for r in rows if "kernel_step" in r]
    if big:
        out += ["", "Large shapes: where a step's time goes (xent's kernel alone, buffers allocated once, against the "
                "step).", "",
                "| dtype | N × C | forward | its kernel | fwd+bwd | in place | kernel (loss + gradient) | "
                "step − kernel | in place − kernel |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in big:
            out.append(f"| {r['dtype']} | {r['N']} × {r['C']} | {seconds(r['xent_forward'])} | "
                       f"{seconds(r['kernel_forward'])} | {seconds(r['xent_step'])} | "
                       f"{seconds(r['xent_inplace_step'])} | {seconds(r['kernel_step'])} | "
                       f"{seconds(r['xent_step'] - r['kernel_step'])} | "
                       f"{seconds(r['xent_inplace_step'] - r['kernel_step'])} |")
    return "\n".join(out) + "\n"


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, dtype in zip(axes, DTYPES):
        for key, label, style in (("forward", "forward", "o-"), ("step", "forward+backward", "s-"),
                                  ("inplace_step", "forward+backward, in place", "^--")):
            for C, color in zip(CLASSES, ("tab:blue", "tab:orange", "tab:green")):
                pts = [(r["N"], r["torch_" + ("forward" if key == "forward" else "step")] / r["xent_" + key])
                       for r in rows if r["dtype"] == dtype and r["C"] == C]
                if pts:
                    ax.plot(*zip(*pts), style, color=color, label=f"C = {C}, {label}", alpha=0.85)
        ax.axhline(1, color="gray", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch N")
        ax.set_title(dtype)
    axes[0].set_ylabel("F.cross_entropy time / xent.torch time")
    axes[1].legend(fontsize=7)
    fig.suptitle("A PyTorch step's loss: xent.torch against F.cross_entropy (higher is better for xent)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a check that it runs)")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--plot")
    parser.add_argument("--batches", type=int, nargs="*", default=BATCHES)
    parser.add_argument("--classes", type=int, nargs="*", default=CLASSES)
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES))
    args = parser.parse_args()
    meta = {"torch": torch.__version__, "cpu": cpu_name(), "isa": isa(), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d")}
    rows = []
    for dtype in args.dtypes:
        for C in args.classes:
            for N in args.batches:
                rows.append(measure(N, C, DTYPES[dtype], args.quick))
                r = rows[-1]
                print(f"{dtype:8} {N:5} x {C:5}  forward {r['torch_forward'] / r['xent_forward']:5.2f}x  "
                      f"step {r['torch_step'] / r['xent_step']:5.2f}x  in place "
                      f"{r['torch_step'] / r['xent_inplace_step']:5.2f}x", flush=True)
    text = markdown(rows, meta)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
