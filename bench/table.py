"""Turns xent_bench's JSON output (--benchmark_out=FILE) into the README's markdown tables.

    build/xent_bench --benchmark_out=bench.json --benchmark_out_format=json
    /usr/bin/python3 bench/table.py bench.json

Given several files (runs of the same rows, e.g. XENT_BENCH_TARGET=AVX3 and =AVX2 alternated on one machine), it
prints one table of G elements/s with a column per run instead.
"""
import json
import sys


def load(path):
    """(context, read bandwidth at start in GB/s, rows): each row a dict of op, dtype, shape, GB/s, G elements/s,
    read (the faster of the reads around the row, GB/s), bus (the read or, for a row that
    writes gradients, the faster of the copies around it, GB/s), traffic (for a gradient row with a traffic twin,
    the twin's fastest run, GB/s; else None) and, where the row has an in-cache twin (NAME/in_cache, run just after
    it), twin (its dims) and cache (its GB/s)."""
    data = json.load(open(path))
    rows = []
    read_bw = None
    for b in data["benchmarks"]:
        if b["name"].startswith("read_bandwidth"):
            read_bw = b["GB/s"]
            continue
        parts = b["name"].split("/")
        op, dtype, shape = parts[:3]
        if len(parts) > 3 and parts[3] == "in_cache":
            owner = next(r for r in reversed(rows) if (r["op"], r["dtype"], r["shape"]) == (op, dtype, shape))
            owner["twin"], owner["cache"] = b.get("label", ""), b["best_GB/s"]
            continue
        rows.append({"op": op, "dtype": dtype, "shape": shape, "gbs": b["best_GB/s"],
                     "eps": b["best_elements/s"] / 1e9, "read": b["read_GB/s"],
                     "copy": b.get("copy_GB/s"), "bus": b.get("copy_GB/s", b["read_GB/s"]),
                     "traffic": b.get("traffic_GB/s")})
    ctx = data["context"]
    if read_bw is None:  # filtered out of the run; xent_bench also puts the start-up measurement in the context
        read_bw = float(ctx["read_bandwidth_GB/s"])
    return ctx, read_bw, rows


def one_run(path):
    ctx, read_bw, rows = load(path)
    target = f"SIMD target {ctx['simd_target']}; " if "simd_target" in ctx else ""
    print(f"Run of {ctx['date']}, {ctx['num_cpus']} CPUs at {ctx['mhz_per_cpu']} MHz; {target}"
          f"read bandwidth at its start {read_bw:.1f} GB/s (best of five). Each row: its fastest call, and the "
          f"faster of a read just before and one just after it; rows that write gradients also the faster of two "
          f"copies (non-temporal stores; read plus written bytes), their bus; in cache: its twin on the first rows "
          f"(about 1 MiB of inputs, reused), the compute ceiling; roofline: the lower of bus and ceiling; traffic: "
          f"the fastest of six runs of the row's traffic twin (bench/traffic_twin.h: the same bytes read and written "
          f"in xent's order, with no math) around it.\n")
    print("| op | dtype | shape | GB/s | G elements/s | read bw, GB/s | copy bw, GB/s | of bus "
          "| in cache, GB/s (shape) | ceiling / bus | of roofline | traffic, GB/s | of traffic |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "cache" in r:
            cache = f"{r['cache']:.1f} ({r['twin']})"
            ratio = f"{r['cache'] / r['bus']:.2f}"
            roof = f"{r['gbs'] / min(r['bus'], r['cache']):.2f}"
        else:
            cache = ratio = roof = "–"
        copy = f"{r['copy']:.1f}" if r["copy"] else "–"
        traffic = f"{r['traffic']:.1f} | {r['gbs'] / r['traffic']:.2f}" if r["traffic"] else "– | –"
        print(f"| {r['op']} | {r['dtype']} | {r['shape']} | {r['gbs']:.1f} | {r['eps']:.2f} | {r['read']:.1f} "
              f"| {copy} | {r['gbs'] / r['bus']:.2f} | {cache} | {ratio} | {roof} | {traffic} |")


def several_runs(paths):
    runs = [load(p) for p in paths]
    names = [f"{ctx.get('simd_target', '?')} {ctx['date'][11:19]}" for ctx, _, _ in runs]
    print("G elements/s (each row's fastest call); columns are runs (SIMD target, start time).\n")
    print("| op | dtype | shape | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---:|" * len(runs))
    print("| read bandwidth at start, GB/s | | | " + " | ".join(f"{bw:.1f}" for _, bw, _ in runs) + " |")
    cells = [{(r["op"], r["dtype"], r["shape"]): r["eps"] for r in rows} for _, _, rows in runs]
    for r in runs[0][2]:
        key = (r["op"], r["dtype"], r["shape"])
        row = [f"{c[key]:.2f}" if key in c else "–" for c in cells]
        print(f"| {r['op']} | {r['dtype']} | {r['shape']} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        several_runs(sys.argv[1:])
    else:
        one_run(sys.argv[1])
