"""The class axis sharded over MPI processes (xent_mpi.h) against gathering the logits on one process, one step
(loss and the logits' gradient) per measurement: bench/vocab_parallel.cc under mpirun, for each shape and process
count. Each process gets cores // processes OpenMP threads (at least 1). On one process the naive column is the
single-process op (xent_cross_entropy_grad, one fused pass). The naive approach is skipped where its memory (the
gathered logits on rank 0 beside every shard) would not fit in 70% of the available memory.

    bench/vocab_parallel.py --build build [--quick] [--json F] [--markdown F]
"""
import argparse
import json
import os
import subprocess

SHAPES = [(4096, 128000, "float32"), (16384, 256000, "bfloat16")]
PROCESSES = [1, 2, 4]


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run(build, processes, N, V, dtype, repeats):
    element = 2 if dtype == "bfloat16" else 4
    naive_fits = processes == 1 or 2 * N * V * element < 0.7 * available_bytes()
    # --bind-to none: Open MPI binds each of up to 2 processes to one core, which would leave a process's OpenMP
    # threads on that core.
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(processes),
               os.path.join(build, "xent_vocab_parallel_bench"), str(N), str(V), dtype, str(repeats)]
    if not naive_fits:
        command.append("--no-naive")
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, os.cpu_count() // processes)))
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def size(b):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def markdown(rows):
    lines = ["| rows × classes | dtype | processes | sharded: time | sharded: bytes sent | gathered on rank 0: time | "
             "gathered: bytes sent | gathered / sharded |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        naive = r["naive_s"] > 0
        single = r["ranks"] == 1
        lines.append(f"| {r['N']} × {r['V']} | {r['dtype']} | {r['ranks']} | {r['sharded_s'] * 1e3:.0f} ms | "
                     f"{size(r['sharded_bytes'])} | "
                     + (f"{r['naive_s'] * 1e3:.0f} ms{' (single-process op)' if single else ''} | "
                        f"{size(r['naive_bytes'])} | {r['naive_s'] / r['sharded_s']:.2f}x |"
                        if naive else "not run (memory) | | |"))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default="build")
    parser.add_argument("--quick", action="store_true", help="the first shape only, 2 repeats")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    rows = []
    for N, V, dtype in SHAPES[:1] if args.quick else SHAPES:
        for p in PROCESSES:
            rows.append(run(args.build, p, N, V, dtype, 2 if args.quick else 5))
            print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
