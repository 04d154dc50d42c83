"""Turns xent_bench's JSON output (--benchmark_out=FILE) into the README's markdown table.

    build/xent_bench --benchmark_out=bench.json --benchmark_out_format=json
    /usr/bin/python3 bench/table.py bench.json
"""
import json
import sys


def main(path):
    data = json.load(open(path))
    rows = []
    read_bw = None
    for b in data["benchmarks"]:
        if b["name"].startswith("read_bandwidth"):
            read_bw = b["GB/s"]
            continue
        op, dtype, shape = b["name"].split("/")[:3]
        rows.append((op, dtype, shape, b["bytes_per_second"] / 1e9, b["elements/s"] / 1e9, b["of_read_bw"]))
    ctx = data["context"]
    print(f"Run of {ctx['date']}, {ctx['num_cpus']} CPUs at {ctx['mhz_per_cpu']} MHz; "
          f"read bandwidth in the same run: **{read_bw:.1f} GB/s**.\n")
    print("| op | dtype | shape | GB/s | G elements/s | of read bandwidth |")
    print("|---|---|---|---:|---:|---:|")
    for op, dtype, shape, gbs, eps, frac in rows:
        print(f"| {op} | {dtype} | {shape} | {gbs:.1f} | {eps:.2f} | {frac:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
