"""Turns xent_bench's JSON output (--benchmark_out=FILE) into the README's markdown tables.

    build/xent_bench --benchmark_out=bench.json --benchmark_out_format=json
    /usr/bin/python3 bench/table.py bench.json

Given several files (runs of the same rows, e.g. XENT_BENCH_TARGET=AVX3 and =AVX2 alternated on one machine), it
prints one table of G elements/s with a column per run instead.
"""
import json
import sys


def load(path):
    """(context, read bandwidth at start in GB/s, rows of (op, dtype, shape, GB/s, G elements/s, read bandwidth
    around the row in GB/s, of read bandwidth)): each row's fastest call against the faster of its two reads."""
    data = json.load(open(path))
    rows = []
    read_bw = None
    for b in data["benchmarks"]:
        if b["name"].startswith("read_bandwidth"):
            read_bw = b["GB/s"]
            continue
        op, dtype, shape = b["name"].split("/")[:3]
        rows.append((op, dtype, shape, b["best_GB/s"], b["best_elements/s"] / 1e9, b["read_GB/s"], b["of_read_bw"]))
    ctx = data["context"]
    if read_bw is None:  # filtered out of the run; xent_bench also puts the start-up measurement in the context
        read_bw = float(ctx["read_bandwidth_GB/s"])
    return ctx, read_bw, rows


def one_run(path):
    ctx, read_bw, rows = load(path)
    target = f"SIMD target {ctx['simd_target']}; " if "simd_target" in ctx else ""
    print(f"Run of {ctx['date']}, {ctx['num_cpus']} CPUs at {ctx['mhz_per_cpu']} MHz; {target}"
          f"read bandwidth at its start {read_bw:.1f} GB/s (best of five). Each row: its fastest call, and the "
          f"faster of a read just before and one just after it.\n")
    print("| op | dtype | shape | GB/s | G elements/s | read bw, GB/s | of read bandwidth |")
    print("|---|---|---|---:|---:|---:|---:|")
    for op, dtype, shape, gbs, eps, read, frac in rows:
        print(f"| {op} | {dtype} | {shape} | {gbs:.1f} | {eps:.2f} | {read:.1f} | {frac:.2f} |")


def several_runs(paths):
    runs = [load(p) for p in paths]
    names = [f"{ctx.get('simd_target', '?')} {ctx['date'][11:19]}" for ctx, _, _ in runs]
    print("G elements/s (each row's fastest call); columns are runs (SIMD target, start time).\n")
    print("| op | dtype | shape | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---:|" * len(runs))
    print("| read bandwidth at start, GB/s | | | " + " | ".join(f"{bw:.1f}" for _, bw, _ in runs) + " |")
    cells = [{(op, dtype, shape): eps for op, dtype, shape, _, eps, _, _ in rows} for _, _, rows in runs]
    for op, dtype, shape, *_ in runs[0][2]:
        row = [f"{c[(op, dtype, shape)]:.2f}" if (op, dtype, shape) in c else "–" for c in cells]
        print(f"| {op} | {dtype} | {shape} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        several_runs(sys.argv[1:])
    else:
        one_run(sys.argv[1])
