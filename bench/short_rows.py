"""Cost model of short rows (C ≤ 32, one row per SIMD lane): times the dense forward on inputs of 163 840
elements (1.3 MiB with labels: in cache) for C = 2..32 and fits wall time per group of 16 rows = a + b·C.

    PYTHONPATH=build/python /usr/bin/python3 bench/short_rows.py
"""
import os

import numpy as np

import xent
from timing import best_per_call

ELEMENTS, LANES = 163840, 16


def seconds_per_call(x, y, calls=200, trials=5):
    return best_per_call(lambda: xent.softmax_cross_entropy_with_logits(labels=y, logits=x), calls, trials, warmup=20)


def main():
    xent.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(0)
    classes, per_group = [], []
    print(f"{os.cpu_count()} threads; float32 forward, {ELEMENTS} elements per call")
    print("| C | G elements/s | ns per group of 16 rows |\n|---:|---:|---:|")
    for C in [2, 4, 8, 10, 16, 24, 32]:
        rows = ELEMENTS // C
        x = rng.standard_normal((rows, C), dtype=np.float32)
        y = rng.random((rows, C), dtype=np.float32)
        t = seconds_per_call(x, y)
        classes.append(C)
        per_group.append(t * 1e9 / (rows / LANES))
        print(f"| {C} | {rows * C / t / 1e9:.2f} | {per_group[-1]:.0f} |")
    b, a = np.polyfit(classes, per_group, 1)
    print(f"\nwall ns per group ≈ {a:.1f} + {b:.2f}·C (per group + per 16-lane class column, all threads together)")


if __name__ == "__main__":
    main()
