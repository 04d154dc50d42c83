"""The timing loop of the Python benchmarks (bench/short_rows.py, bench/torch_step.py): the best mean time of a call
over several loops of many calls, after warm-up calls. The best, not the mean, because these machines are shared:
other work only ever adds time."""
import time


def best_per_call(f, calls, loops, warmup=1):
    """Seconds per call of f(): the fastest of `loops` loops of `calls` calls, after `warmup` calls."""
    for _ in range(warmup):
        f()
    best = float("inf")
    for _ in range(loops):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - t) / calls)
    return best
