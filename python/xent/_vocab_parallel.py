"""The vocabulary-parallel op's driver, shared by xent.mpi (mpi4py) and xent.torch (torch.distributed).

The stages of include/xent/xent.h (xent_shard_statistics, combine, xent_shard_finish) with a transport's
collectives in between. Every process makes the same collective calls in the same order whatever its arguments, so
that a bad argument on one process raises on all of them (naming that process) instead of leaving the others
waiting: the shards' layouts are gathered first, then each process's failure of stage 1 with the denominators.
Per call, over the vocabulary's group: two gathers of a few bytes per process (layouts; denominators and failures),
an all-reduce MAX of one float64 per row and an all-reduce SUM of four; over a data-parallel group one all-reduce
of two numbers. Nothing of size rows x classes is sent, and the gradient needs no communication.
"""
import math

import numpy as np

from . import _xent

_EXCEPTIONS = {"ValueError": ValueError, "TypeError": TypeError, "MemoryError": MemoryError}


class Transport:
    """What the driver needs of a process group. allreduce_* work in place on float32/float64 numpy arrays."""

    rank = 0
    size = 1

    def allgather(self, obj):
        raise NotImplementedError

    def allreduce_max(self, array):
        raise NotImplementedError

    def allreduce_sum(self, array):
        raise NotImplementedError


class Options:
    """A call's loss options, checked by the binding and as it takes them (weight: the shard's descriptor or None;
    reduction by name)."""

    def __init__(self, weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
        reduction, ignore_index, softcap = _xent.options(reduction, ignore_index, softcap)
        self.args = (weight, ignore_index, reduction, float(label_smoothing), float(z_loss), softcap)


def _describe(error):
    kind = type(error).__name__
    return (kind if kind in _EXCEPTIONS else "ValueError", str(error) or kind)


def _raise(described, rank, size):
    kind, message = described
    raise _EXCEPTIONS[kind](f"rank {rank} of {size}: {message}")


def _layout_error(headers):
    """The same verdict on every process: the same rows everywhere, and shards that tile [0, V)."""
    rows0 = headers[0][1]
    for r, (_, rows, _, _) in enumerate(headers):
        if rows != rows0:
            return (f"every process must hold the same rows: rank 0 has {rows0} rows, rank {r} has {rows}", None)
    order = sorted(range(len(headers)), key=lambda r: (headers[r][2], headers[r][3]))
    end = 0
    for r in order:
        start, classes = headers[r][2], headers[r][3]
        if start != end:
            return (f"the shards do not tile the vocabulary: rank {r} starts at class {start} where the shards before "
                    f"it end at {end} (each process's vocab_start must be the sum of the class counts of the shards "
                    f"before it)", None)
        end += classes
    return None, end


def combine(transport, data_transport, rows, classes, vocab_start, local_error, statistics_of):
    """Stages 1 and 2: (merged statistics [rows, 4], the whole denominator, vocab_size), the same on every process.

    local_error: (kind, message) of the caller's own checks, or None; statistics_of(vocab_size, statistics): stage 1
    of this process's shard into statistics, returning its part of the denominator (called only when every process
    passed its checks). Raises on every process when any of them failed.
    """
    headers = transport.allgather((local_error, int(rows), int(vocab_start), int(classes)))
    failed = next(((r, h[0]) for r, h in enumerate(headers) if h[0] is not None), None)
    vocab_size = 0
    layout_message = None
    if failed is None:
        layout_message, vocab_size = _layout_error(headers)
    statistics = np.zeros((rows if failed is None else 0, 4))
    denominator, error = 0.0, None
    if failed is None and layout_message is None:
        try:
            denominator = statistics_of(int(vocab_size), statistics)
        except Exception as e:  # any failure must reach the others, or they would wait for this process
            error = _describe(e)
    gathered = transport.allgather((error, denominator))
    if failed is None:
        failed = next(((r, g[0]) for r, g in enumerate(gathered) if g[0] is not None), None)
    denominator = math.fsum(g[1] for g in gathered)  # in rank order: the same bits everywhere
    bad = failed is not None or layout_message is not None
    if data_transport is not None:
        sums = np.array([denominator, 1.0 if bad else 0.0])
        data_transport.allreduce_sum(sums)
        denominator = float(sums[0])
        if not bad and sums[1] > 0:
            raise ValueError("a process of the data-parallel group (another group of vocabulary shards) failed; its "
                             "error says why")
    if failed is not None:
        _raise(failed[1], failed[0], transport.size)
    if layout_message is not None:
        raise ValueError(layout_message)
    # Two all-reduces with standard reductions: each row's maximum (NaN as +inf: a NaN row stays NaN through the
    # rebased sums), then the statistics rebased on it, summed.
    maximum = np.where(np.isnan(statistics[:, 0]), np.inf, statistics[:, 0])
    transport.allreduce_max(maximum)
    _xent.rebase_row_statistics(statistics, maximum)
    transport.allreduce_sum(statistics)
    statistics[:, 0] = maximum
    return statistics, denominator, vocab_size


def logits_statistics(logits, target, axis, options, vocab_start):
    """statistics_of for a shard of logits (descriptors)."""
    return lambda vocab_size, statistics: _xent.shard_statistics_raw(
        logits, target, axis, *options.args, int(vocab_start), vocab_size, statistics)


def finish(logits, target, axis, options, vocab_start, vocab_size, merged, denominator, grad_loss, loss, grad_logits):
    """Stage 3 on this process's shard of logits (no communication): writes loss and grad_logits (descriptors, or
    None)."""
    _xent.shard_finish_raw(logits, target, axis, *options.args, int(vocab_start), int(vocab_size), merged,
                           float(denominator), grad_loss, loss, grad_logits)


def linear_statistics(input, linear_weight, linear_bias, target, options, vocab_start):
    """statistics_of for the fused op on a shard of the head's rows (descriptors)."""
    return lambda vocab_size, statistics: _xent.linear_shard_statistics_raw(
        input, linear_weight, linear_bias, target, *options.args, int(vocab_start), vocab_size, statistics)


def linear_finish(input, linear_weight, linear_bias, target, options, vocab_start, vocab_size, merged, denominator,
                  grad_loss, loss, grad_input, grad_linear_weight, grad_linear_bias):
    """Stage 3 of the fused op on this process's shard: the loss, this shard's part of grad_input (to be summed over
    the processes) and the gradients of its rows of the head."""
    _xent.linear_shard_finish_raw(input, linear_weight, linear_bias, target, *options.args, int(vocab_start),
                                  int(vocab_size), merged, float(denominator), grad_loss, loss, grad_input,
                                  grad_linear_weight, grad_linear_bias)
