"""The class axis of a language-model head's logits split across MPI processes (numpy + mpi4py):

    mpirun -np 3 python3 examples/vocab_parallel_mpi.py

Each process holds the logits of its own slice of a 50 000-class vocabulary; the loss, the same on every process,
equals the loss of the gathered logits, and each process gets the gradient of its own slice. Nothing of the size
of the logits is sent: 32 bytes per row. Prints one line per process.
"""
import numpy as np
from mpi4py import MPI

import xent
import xent.mpi

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rows, vocab = 256, 50_000
rng = np.random.default_rng(0)                      # the same seed everywhere: every process can build the whole
logits = rng.standard_normal((rows, vocab)).astype(np.float32)   # logits here, only to check the result
target = rng.integers(0, vocab, rows)

start = rank * vocab // size                        # this process's classes [start, stop)
stop = (rank + 1) * vocab // size
loss, grad = xent.mpi.vocab_parallel_cross_entropy_grad(logits[:, start:stop], target, vocab_start=start,
                                                        label_smoothing=0.1)

whole_loss, whole_grad = xent.cross_entropy_grad(logits, target, label_smoothing=0.1)
assert np.allclose(loss, whole_loss, rtol=1e-5) and np.allclose(grad, whole_grad[:, start:stop], atol=1e-8)
print(f"rank {rank} of {size}: classes [{start}, {stop}), loss {float(loss):.6f} (gathered: {float(whole_loss):.6f})")
