"""xent over MPI for numpy users (mpi4py): the class axis sharded across processes (vocabulary parallelism).

    from mpi4py import MPI
    import xent.mpi
    # each process: logits_shard [N, V_local] for classes [vocab_start, vocab_start + V_local); target [N] the same
    loss = xent.mpi.vocab_parallel_cross_entropy(logits_shard, target, vocab_start=vocab_start)
    loss, grad_shard = xent.mpi.vocab_parallel_cross_entropy_grad(logits_shard, target, vocab_start=vocab_start)

The loss equals xent.cross_entropy on the gathered logits (within rounding) on every process, and grad_shard is this
process's slice of its gradient, for every option: weight (this shard's [V_local] class weights), ignore_index,
reduction, label_smoothing over the whole vocabulary, z_loss of the whole row's logsumexp, softcap. target: class
indices into the whole vocabulary, or probabilities sharded like the logits. Shards may have unequal sizes (empty
ones too) and must tile the vocabulary; every process holds the same rows. data_comm: the processes across which
rows are split (data parallelism), over which reduction="mean" divides by the batch's denominator.
Communication per call: a few bytes per process and 40 bytes per row (two all-reduces of the row statistics); a bad
argument on any process raises on every process of comm ("rank r of P: ..."). C programs: include/xent/xent_mpi.h.

The fused linear + cross-entropy with the head's rows sharded (vocab_parallel_linear_cross_entropy[_grad]): each
process holds rows [vocab_start, vocab_start + V_local) of linear_weight (and linear_bias, weight), the same input and
target; the logits are never held; grad_input is summed over comm (one all-reduce of N x H).
"""
import numpy as np

from . import _vocab_parallel, _xent

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_cross_entropy_grad", "vocab_parallel_linear_cross_entropy",
           "vocab_parallel_linear_cross_entropy_grad"]

_CODES = {np.dtype(np.float16): int(_xent.dtype.float16), np.dtype(np.float32): int(_xent.dtype.float32),
          np.dtype(np.float64): int(_xent.dtype.float64), np.dtype(np.int32): int(_xent.dtype.int32),
          np.dtype(np.int64): int(_xent.dtype.int64)}


def _descriptor(a, name):
    """(array kept alive, descriptor) of a numpy array read in place (a copy only for strides of partial elements)."""
    a = np.asarray(a)
    if a.dtype not in _CODES:
        raise TypeError(f"{name} must be float16, float32, float64 (or int32/int64 class indices), received {a.dtype}")
    if any(s % a.itemsize for s in a.strides):
        a = np.ascontiguousarray(a)
    return a, (a.ctypes.data, _CODES[a.dtype], tuple(a.shape), tuple(s // a.itemsize for s in a.strides))


class _MpiTransport(_vocab_parallel.Transport):
    def __init__(self, comm):
        from mpi4py import MPI
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def allreduce_max(self, array):
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.MAX)

    def allreduce_sum(self, array):
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)


def _optional(keep, value, dtype, name):
    """The descriptor of value as an array of dtype (kept alive in `keep`), or None."""
    if value is None:
        return None
    keep.append(_descriptor(np.asarray(value, dtype=dtype), name))
    return keep[-1][1]


def _transports(comm, data_comm):
    """(comm's transport, data_comm's or None); comm defaults to MPI.COMM_WORLD."""
    if comm is None:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    return _MpiTransport(comm), _MpiTransport(data_comm) if data_comm is not None else None


def _run(logits_shard, target, vocab_start, comm, data_comm, weight, ignore_index, reduction, label_smoothing,
         z_loss, softcap, grad_loss, gradients):
    transport, data_transport = _transports(comm, data_comm)
    keep, local_error, rows, classes = [], None, 0, 0
    x = t = g = None
    try:  # checks this process can make alone; their failure is raised on every process by the driver
        _xent.options(reduction, ignore_index, softcap)
        logits_shard = np.asarray(logits_shard)
        target = np.asarray(target)
        if logits_shard.ndim < 1:
            raise ValueError("logits_shard must have rank >= 1 (a class axis), received a scalar")
        if target.dtype.kind == "f" and target.dtype != logits_shard.dtype:
            raise TypeError(f"target probabilities must have logits' dtype {logits_shard.dtype}, received {target.dtype}")
        classes = logits_shard.shape[-1]
        rows = int(np.prod(logits_shard.shape[:-1], dtype=np.int64))
        keep = [_descriptor(logits_shard, "logits_shard"), _descriptor(target, "target")]
        x, t = keep[0][1], keep[1][1]
        w = _optional(keep, weight, logits_shard.dtype, "weight")
        g = _optional(keep, grad_loss, logits_shard.dtype, "grad_loss")
        options = _vocab_parallel.Options(w, ignore_index, reduction, label_smoothing, z_loss, softcap)
    except Exception as e:
        local_error = _vocab_parallel._describe(e)
        options = None
    merged, denominator, vocab_size = _vocab_parallel.combine(
        transport, data_transport, rows, classes, vocab_start, local_error,
        _vocab_parallel.logits_statistics(x, t, -1, options, vocab_start))
    loss = np.empty(logits_shard.shape[:-1] if reduction == "none" else (), dtype=logits_shard.dtype)
    grad = np.empty(logits_shard.shape, dtype=logits_shard.dtype) if gradients else None
    _vocab_parallel.finish(x, t, -1, options, vocab_start, vocab_size, merged, denominator, g,
                           _descriptor(loss, "loss")[1], None if grad is None else _descriptor(grad, "grad")[1])
    return loss, grad


def vocab_parallel_cross_entropy(logits_shard, target, *, vocab_start, comm=None, data_comm=None, weight=None,
                                 ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None):
    """The loss of xent.cross_entropy over the logits gathered from every process of comm (default MPI.COMM_WORLD);
    logits_shard [..., V_local] holds classes [vocab_start, vocab_start + V_local) along its last axis."""
    return _run(logits_shard, target, vocab_start, comm, data_comm, weight, ignore_index, reduction, label_smoothing,
                z_loss, softcap, None, False)[0]


def vocab_parallel_cross_entropy_grad(logits_shard, target, *, vocab_start, comm=None, data_comm=None, weight=None,
                                      ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                                      softcap=None, grad_loss=None):
    """(loss, grad_logits_shard): the loss as vocab_parallel_cross_entropy's and this process's slice of its gradient
    (grad_loss: the loss's shape, default 1). The gradient needs no communication beyond the loss's."""
    return _run(logits_shard, target, vocab_start, comm, data_comm, weight, ignore_index, reduction, label_smoothing,
                z_loss, softcap, grad_loss, True)


def _linear(input, linear_weight_shard, target, vocab_start, comm, data_comm, linear_bias, weight, ignore_index,
            reduction, label_smoothing, z_loss, softcap, grad_loss, gradients):
    transport, data_transport = _transports(comm, data_comm)
    keep, local_error, rows, classes, d, options, g = [], None, 0, 0, None, None, None
    try:  # checks this process can make alone; their failure is raised on every process by the driver
        _xent.options(reduction, ignore_index, softcap)
        input, linear_weight_shard = np.asarray(input), np.asarray(linear_weight_shard)
        if input.ndim < 1 or linear_weight_shard.ndim != 2:
            raise ValueError(f"input must be [..., H] and linear_weight_shard [V_local, H], received shapes "
                             f"{input.shape} and {linear_weight_shard.shape}")
        rows, classes = int(np.prod(input.shape[:-1], dtype=np.int64)), linear_weight_shard.shape[0]
        keep = [_descriptor(input, "input"), _descriptor(linear_weight_shard, "linear_weight_shard"),
                _descriptor(np.asarray(target), "target")]
        b = _optional(keep, linear_bias, input.dtype, "linear_bias")
        w = _optional(keep, weight, input.dtype, "weight")
        g = _optional(keep, grad_loss, input.dtype, "grad_loss")
        d = (keep[0][1], keep[1][1], b, keep[2][1])
        options = _vocab_parallel.Options(w, ignore_index, reduction, label_smoothing, z_loss, softcap)
    except Exception as e:
        local_error = _vocab_parallel._describe(e)
    merged, denominator, vocab_size = _vocab_parallel.combine(
        transport, data_transport, rows, classes, vocab_start, local_error,
        _vocab_parallel.linear_statistics(*d, options, vocab_start) if d else None)
    loss = np.empty(input.shape[:-1] if reduction == "none" else (), dtype=input.dtype)
    grads = [np.empty(t.shape, dtype=input.dtype) if gradients and t is not None else None
             for t in (input, linear_weight_shard, None if linear_bias is None else np.asarray(linear_bias))]
    _vocab_parallel.linear_finish(*d, options, vocab_start, vocab_size, merged, denominator, g,
                                  _descriptor(loss, "loss")[1],
                                  *[None if a is None else _descriptor(a, "gradient")[1] for a in grads])
    if grads[0] is not None:  # every shard's part of grad_input, summed (16-bit through float64)
        wide = grads[0] if grads[0].dtype in (np.float32, np.float64) else grads[0].astype(np.float64)
        transport.allreduce_sum(wide)
        grads[0][...] = wide
    return (loss, *grads)


def vocab_parallel_linear_cross_entropy(input, linear_weight_shard, target, *, vocab_start, comm=None,
                                        data_comm=None, linear_bias=None, weight=None, ignore_index=-100,
                                        reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None):
    """The loss of xent.linear_cross_entropy over the whole head, whose rows [vocab_start, vocab_start + V_local)
    this process holds (linear_weight_shard [V_local, H]); input [..., H] and target the same on every process."""
    return _linear(input, linear_weight_shard, target, vocab_start, comm, data_comm, linear_bias, weight,
                   ignore_index, reduction, label_smoothing, z_loss, softcap, None, False)[0]


def vocab_parallel_linear_cross_entropy_grad(input, linear_weight_shard, target, *, vocab_start, comm=None,
                                             data_comm=None, linear_bias=None, weight=None, ignore_index=-100,
                                             reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None,
                                             grad_loss=None):
    """(loss, grad_input, grad_linear_weight_shard, grad_linear_bias_shard): grad_input summed over comm, the other
    gradients this process's rows of the head (grad_linear_bias_shard None without a linear_bias)."""
    return _linear(input, linear_weight_shard, target, vocab_start, comm, data_comm, linear_bias, weight,
                   ignore_index, reduction, label_smoothing, z_loss, softcap, grad_loss, True)
