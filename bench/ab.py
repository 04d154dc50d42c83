"""A/B of two xent_bench builds on this machine: runs them in alternation (A, B, A, B, ...) so that both see the same
drift of a shared machine, and prints each row's best_GB/s range per build and the ratio of the medians (B / A).

    /usr/bin/python3 bench/ab.py A/xent_bench B/xent_bench [--rounds 3] [--filter REGEX] [--json out.json]

A row is "within noise" when B's range overlaps A's; tuning.h's constants are re-derived this way (rebuild with the
constant changed, then run A/B against the unchanged build).
"""
import argparse
import json
import statistics
import subprocess
import tempfile


def run(binary, regex):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([binary, f"--benchmark_out={out.name}", "--benchmark_out_format=json",
                        f"--benchmark_filter={regex}"], check=True, capture_output=True)
        results = json.load(open(out.name))
    rows = {}
    for b in results["benchmarks"]:
        if "best_GB/s" in b:
            name = b["name"].split("/min_time")[0]
            rows[name] = b["best_GB/s"]
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--filter", default=".")
    p.add_argument("--json")
    args = p.parse_args()
    runs = {"A": [], "B": []}
    for r in range(args.rounds):
        for key, binary in (("A", args.a), ("B", args.b)):
            runs[key].append(run(binary, args.filter))
            print(f"round {r + 1}/{args.rounds}: {key} done", flush=True)
    names = [n for n in runs["A"][0] if all(n in x for x in runs["A"] + runs["B"])]
    print("| row | A best GB/s | B best GB/s | B / A (medians) |\n|---|---:|---:|---:|")
    table = []
    for n in names:
        a = [x[n] for x in runs["A"]]
        b = [x[n] for x in runs["B"]]
        ratio = statistics.median(b) / statistics.median(a)
        overlap = max(b) >= min(a) and max(a) >= min(b)
        print(f"| {n} | {min(a):.2f}–{max(a):.2f} | {min(b):.2f}–{max(b):.2f} | {ratio:.3f}{'' if overlap else ' *'} |")
        table.append({"row": n, "a": a, "b": b, "ratio": ratio, "overlap": overlap})
    print("\n* ranges do not overlap")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
