"""Started by tests/python/test_vocab_parallel.py: `python torch_worker.py WORLD_SIZE PORT` spawns that many
processes joined by torch.distributed (gloo, loopback) and checks xent.torch's vocabulary-parallel functions against
the single-process xent.torch functions on the gathered logits (or the whole head), gradients included, a two-step
training run, rows split across processes as well (data_group), and a bad target on one rank. Exits non-zero when any process failed."""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import xent.torch as xt


def shard_of(V, k, n):
    total = n * (n + 1) // 2
    bound = lambda j: V * (j * (j + 1) // 2) // total
    return bound(k), bound(k + 1) - bound(k)


def close(got, want, tol, what):
    assert torch.allclose(got, want, rtol=tol, atol=tol * 1e-2), (
        f"{what}: max difference {(got - want).abs().max().item()} (tolerance {tol})")


def check_logits(rank, world, dtype, indices, reduction, options, V=1000, rows=37):
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(rows, V, generator=g, dtype=torch.float64)
    probs = torch.rand(rows, V, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (rows,), generator=g)
    targets[3::7] = -100
    class_weight = (0.25 + (torch.arange(V) % 5) * 0.25).to(dtype)
    logits, probs = logits.to(dtype), probs.to(dtype)
    opts = dict(options)
    use_weight = opts.pop("weight", False)
    full = logits.clone().requires_grad_()
    want = xt.cross_entropy(full, targets if indices else probs, reduction=reduction,
                            weight=class_weight if use_weight else None, **opts)
    upstream = torch.rand(want.shape, generator=g, dtype=dtype) + 0.5
    want.backward(upstream)
    start, count = shard_of(V, rank, world)
    shard = logits[:, start:start + count].clone().requires_grad_()
    loss = xt.vocab_parallel_cross_entropy(shard, targets if indices else probs[:, start:start + count],
                                           vocab_start=start, reduction=reduction,
                                           weight=class_weight[start:start + count] if use_weight else None, **opts)
    loss.backward(upstream)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    close(loss.detach(), want.detach(), tol, f"loss {dtype} {indices} {reduction} {options}")
    close(shard.grad, full.grad[:, start:start + count], tol, f"gradient {dtype} {indices} {reduction} {options}")


def check_linear(rank, world, dtype, reduction, options, bias):
    g = torch.Generator().manual_seed(2)
    N, H, V = 29, 24, 300
    x = torch.randn(N, H, generator=g, dtype=torch.float64).to(dtype)
    W = (0.5 * torch.randn(V, H, generator=g, dtype=torch.float64)).to(dtype)
    b = torch.randn(V, generator=g, dtype=torch.float64).to(dtype) if bias else None
    targets = torch.randint(0, V, (N,), generator=g)
    targets[1::6] = -100
    xf, Wf = x.clone().requires_grad_(), W.clone().requires_grad_()
    bf = b.clone().requires_grad_() if bias else None
    want = xt.linear_cross_entropy(xf, Wf, targets, linear_bias=bf, reduction=reduction, **options)
    upstream = torch.rand(want.shape, generator=g, dtype=dtype) + 0.5
    want.backward(upstream)
    start, count = shard_of(V, rank, world)
    xs, Ws = x.clone().requires_grad_(), W[start:start + count].clone().requires_grad_()
    bs = b[start:start + count].clone().requires_grad_() if bias else None
    loss = xt.vocab_parallel_linear_cross_entropy(xs, Ws, targets, vocab_start=start, linear_bias=bs,
                                                  reduction=reduction, **options)
    loss.backward(upstream)
    tol = 1e-11 if dtype == torch.float64 else 3e-5
    what = f"linear {dtype} {reduction} {options} bias={bias}"
    close(loss.detach(), want.detach(), tol, "loss of " + what)
    close(xs.grad, xf.grad, tol, "grad_input of " + what)
    close(Ws.grad, Wf.grad[start:start + count], tol, "grad_linear_weight of " + what)
    if bias:
        close(bs.grad, bf.grad[start:start + count], tol, "grad_linear_bias of " + what)


def check_training(rank, world):
    """Two SGD steps of a head sharded over the ranks match two steps of the whole head in one process."""
    g = torch.Generator().manual_seed(3)
    N, H, V = 64, 16, 500
    x = torch.randn(N, H, generator=g, dtype=torch.float64)
    W = 0.1 * torch.randn(V, H, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (N,), generator=g)
    start, count = shard_of(V, rank, world)
    whole = W.clone().requires_grad_()
    part = W[start:start + count].clone().requires_grad_()
    for _ in range(2):
        for weights, sharded in ((whole, False), (part, True)):
            logits = x @ weights.t()
            if sharded:
                loss = xt.vocab_parallel_cross_entropy(logits, targets, vocab_start=start, label_smoothing=0.1)
            else:
                loss = xt.cross_entropy(logits, targets, label_smoothing=0.1)
            loss.backward()
            with torch.no_grad():
                weights -= 0.5 * weights.grad
                weights.grad = None
    close(part.detach(), whole.detach()[start:start + count], 1e-12, "weights after two steps")


def check_data_parallel(rank, world):
    """Rows split over two groups of vocabulary shards: reduction "mean" divides by the batch's count, so that the
    losses and gradients summed over the data-parallel group are the batch's."""
    half = world // 2
    vocab_groups = [dist.new_group(list(range(g * half, (g + 1) * half))) for g in range(2)]
    data_groups = [dist.new_group([k, k + half]) for k in range(half)]
    group, k = rank // half, rank % half
    g = torch.Generator().manual_seed(4)
    R, V = 20, 1000
    logits = torch.randn(2 * R, V, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (2 * R,), generator=g)
    targets[::5] = -100
    full = logits.clone().requires_grad_()
    want = xt.cross_entropy(full, targets, label_smoothing=0.1)
    want.backward()
    start, count = shard_of(V, k, half)
    rows = slice(group * R, (group + 1) * R)
    shard = logits[rows, start:start + count].clone().requires_grad_()
    loss = xt.vocab_parallel_cross_entropy(shard, targets[rows], vocab_start=start, group=vocab_groups[group],
                                           data_group=data_groups[k], label_smoothing=0.1)
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total, group=data_groups[k])
    close(total, want.detach(), 1e-12, "the batch's mean loss, summed over the data-parallel group")
    close(shard.grad, full.grad[rows, start:start + count], 1e-12, "gradient with rows split across processes")


def check_bad_target(rank, world):
    start, count = shard_of(40, rank, world)
    targets = torch.arange(5)
    if rank == world - 1:
        targets[2] = 5000
    begin = time.time()
    try:
        xt.vocab_parallel_cross_entropy(torch.zeros(5, count), targets, vocab_start=start)
    except ValueError as e:
        assert f"rank {world - 1} of {world}" in str(e) and "5000" in str(e), str(e)
    else:
        raise AssertionError("a bad target on one rank must raise on every rank")
    assert time.time() - begin < 10


def run(rank, world, port):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    for dtype in (torch.float32, torch.float64):
        for indices in (True, False):
            for reduction in ("none", "sum", "mean"):
                check_logits(rank, world, dtype, indices, reduction, {})
                check_logits(rank, world, dtype, indices, reduction,
                             dict(weight=True, label_smoothing=0.1, z_loss=1e-3, softcap=4.0))
    check_logits(rank, world, torch.float32, True, "mean", dict(label_smoothing=0.3), V=3)  # an empty shard
    for dtype in (torch.float32, torch.float64):
        for reduction in ("none", "sum", "mean"):
            check_linear(rank, world, dtype, reduction, {}, False)
            check_linear(rank, world, dtype, reduction, dict(label_smoothing=0.1, z_loss=1e-3, softcap=6.0), True)
    check_training(rank, world)
    if world % 2 == 0:
        check_data_parallel(rank, world)
    check_bad_target(rank, world)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    world, port = int(sys.argv[1]), int(sys.argv[2])
    mp.spawn(run, args=(world, port), nprocs=world)
    print(f"{world} processes: ok")
