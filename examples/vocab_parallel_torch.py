"""A language-model head sharded across processes with torch.distributed (gloo on this machine's loopback): each
process holds rows [start, stop) of the head's weight and computes only its own slice of the logits, and two
training steps give the same weights as the whole head trained in one process.

    python3 examples/vocab_parallel_torch.py [processes]

The script starts its processes itself (torch.multiprocessing). Prints one line per process.
"""
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import xent.torch


def train(rank, world, port):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)                                    # the same data and initial head everywhere
    tokens, hidden, vocab = 128, 64, 10_000
    h = torch.randn(tokens, hidden)
    target = torch.randint(0, vocab, (tokens,))
    head = torch.randn(vocab, hidden) * 0.05
    start, stop = rank * vocab // world, (rank + 1) * vocab // world

    shard = head[start:stop].clone().requires_grad_()      # this process's rows of the head
    whole = head.clone().requires_grad_()                   # for comparison only
    for step in range(2):
        loss = xent.torch.vocab_parallel_cross_entropy(h @ shard.t(), target, vocab_start=start, z_loss=1e-4)
        fused = xent.torch.vocab_parallel_linear_cross_entropy(h, shard, target, vocab_start=start, z_loss=1e-4)
        assert torch.allclose(fused, loss, rtol=1e-5)      # the same loss, without the [tokens, V/world] logits
        loss.backward()                                     # no communication: this shard's gradient only
        reference = xent.torch.cross_entropy(h @ whole.t(), target, z_loss=1e-4)
        reference.backward()
        with torch.no_grad():
            for w in (shard, whole):
                w -= 1.0 * w.grad
                w.grad = None
    assert torch.allclose(shard, whole[start:stop], atol=1e-6)
    print(f"rank {rank} of {world}: rows [{start}, {stop}) of the head, loss {loss.item():.6f} "
          f"(whole head: {reference.item():.6f})", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    world = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(train, args=(world, port), nprocs=world)
