"""Run under mpirun by tests/python/test_vocab_parallel.py: xent.mpi on this many processes against the
single-process xent functions on the gathered logits. Exits 0 when every check passed on this rank."""
import sys

import numpy as np
from mpi4py import MPI

import xent
import xent.mpi

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def shard_of(V, k, n):
    """Shard k of n of V classes, sizes growing with k (unequal; the first ones empty when V < n)."""
    total = n * (n + 1) // 2
    bound = lambda j: V * (j * (j + 1) // 2) // total
    return bound(k), bound(k + 1) - bound(k)


def check(dtype, indices, reduction, options, rows=37, V=1000, seed=0, tol=None):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((rows, V))).astype(dtype)
    probs = rng.random((rows, V)).astype(dtype)
    targets = rng.integers(0, V, rows)
    targets[3::7] = -100
    weight = (0.25 + (np.arange(V) % 5) * 0.25).astype(dtype)
    grad_loss = (0.5 + rng.random(rows if reduction == "none" else ())).astype(dtype)
    target = targets if indices else probs
    opts = dict(options)
    if opts.pop("weight", False):
        opts["weight"] = weight
    want_loss, want_grad = xent.cross_entropy_grad(logits, target, reduction=reduction, grad_loss=grad_loss, **opts)
    start, count = shard_of(V, rank, size)
    shard = slice(start, start + count)
    if "weight" in opts:
        opts["weight"] = weight[shard]
    target_shard = targets if indices else probs[:, shard]
    loss, grad = xent.mpi.vocab_parallel_cross_entropy_grad(logits[:, shard], target_shard, vocab_start=start,
                                                            reduction=reduction, grad_loss=grad_loss, **opts)
    loss_only = xent.mpi.vocab_parallel_cross_entropy(logits[:, shard], target_shard, vocab_start=start,
                                                      reduction=reduction, **opts)
    tol = tol or (1e-12 if dtype == np.float64 else 2e-5)
    np.testing.assert_allclose(loss, want_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, want_grad[:, shard], rtol=tol, atol=tol * 1e-2)
    if reduction != "none" and np.all(grad_loss == 1):
        np.testing.assert_allclose(loss_only, loss, rtol=tol)


for dtype in (np.float32, np.float64):
    for indices in (True, False):
        for reduction in ("none", "sum", "mean"):
            check(dtype, indices, reduction, {})
            check(dtype, indices, reduction, dict(weight=True, label_smoothing=0.1, z_loss=1e-3, softcap=4.0))
check(np.float32, True, "mean", dict(label_smoothing=0.3), V=3)  # 3 or 4 ranks: an empty shard
check(np.float16, True, "none", dict(label_smoothing=0.1), tol=2e-2)

# The fused linear + cross-entropy with the head's rows sharded, against the whole head in one process.
for dtype in (np.float32, np.float64):
    for reduction in ("none", "mean"):
        rng = np.random.default_rng(7)
        N, H, V = 29, 24, 300
        h = rng.standard_normal((N, H)).astype(dtype)
        W = (0.5 * rng.standard_normal((V, H))).astype(dtype)
        b = rng.standard_normal(V).astype(dtype)
        t = rng.integers(0, V, N)
        t[1::6] = -100
        opts = dict(label_smoothing=0.1, z_loss=1e-3, reduction=reduction)
        want = xent.linear_cross_entropy_grad(h, W, t, linear_bias=b, **opts)
        start, count = shard_of(V, rank, size)
        got = xent.mpi.vocab_parallel_linear_cross_entropy_grad(h, W[start:start + count], t, vocab_start=start,
                                                                linear_bias=b[start:start + count], **opts)
        tol = 1e-11 if dtype == np.float64 else 3e-5
        for g, w, name in zip(got, (want[0], want[1], want[2][start:start + count], want[3][start:start + count]),
                              ("loss", "grad_input", "grad_linear_weight", "grad_linear_bias")):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * 1e-2, err_msg=f"linear {name} {dtype} {reduction}")
        loss = xent.mpi.vocab_parallel_linear_cross_entropy(h, W[start:start + count], t, vocab_start=start,
                                                            linear_bias=b[start:start + count], **opts)
        np.testing.assert_allclose(loss, want[0], rtol=tol)

# Rows split over two groups of vocabulary shards (data parallelism): MEAN over the whole batch.
if size % 2 == 0:
    group = rank // (size // 2)
    vocab = comm.Split(group, rank)
    data = comm.Split(rank % (size // 2), rank)
    V, R = 1000, 20
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2 * R, V)).astype(np.float64)
    targets = rng.integers(0, V, 2 * R)
    targets[::5] = -100
    want_loss, want_grad = xent.cross_entropy_grad(logits, targets, label_smoothing=0.1)
    start, count = shard_of(V, vocab.Get_rank(), vocab.Get_size())
    rows = slice(group * R, (group + 1) * R)
    loss, grad = xent.mpi.vocab_parallel_cross_entropy_grad(logits[rows, start:start + count], targets[rows],
                                                            vocab_start=start, comm=vocab, data_comm=data,
                                                            label_smoothing=0.1)
    np.testing.assert_allclose(data.allreduce(float(loss)), want_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad[rows, start:start + count], rtol=1e-12, atol=1e-15)

# A bad target on the last rank: every rank raises, naming it, at once.
start, count = shard_of(40, rank, size)
targets = np.arange(5)
if rank == size - 1:
    targets = targets.copy()
    targets[2] = 5000
begin = MPI.Wtime()
try:
    xent.mpi.vocab_parallel_cross_entropy(np.zeros((5, count), np.float32), targets, vocab_start=start)
except ValueError as e:
    assert f"rank {size - 1} of {size}" in str(e) and "5000" in str(e), str(e)
else:
    raise AssertionError("a bad target on one rank must raise on every rank")
assert MPI.Wtime() - begin < 5
# Shards that do not tile the vocabulary.
try:
    xent.mpi.vocab_parallel_cross_entropy(np.zeros((5, count), np.float32), np.arange(5),
                                          vocab_start=start + (rank == size - 1))
except ValueError as e:
    assert "do not tile" in str(e), str(e)
else:
    raise AssertionError("shards that do not tile the vocabulary must raise")
print(f"rank {rank} of {size}: ok")
