"""A process forked after xent ran on two threads (os.fork, multiprocessing, a PyTorch DataLoader's workers) gets
its results instead of hanging (GNU OpenMP's pool does not survive fork; xent runs single-threaded in a forked
child). Each check runs in a fresh interpreter with a deadline, so that a hang fails the test instead of stalling it."""
import os
import subprocess
import sys
import textwrap

FORK = """
import os, sys
import numpy as np
import xent
xent.set_num_threads(2)
rng = np.random.default_rng(0)
logits = rng.standard_normal((512, 4096)).astype(np.float32)
target = rng.integers(0, 4096, 512)
parent = xent.cross_entropy_grad(logits, target, reduction="none")
pid = os.fork()
if pid == 0:
    import signal
    signal.alarm(60)  # a hung child ends instead of outliving the test
    child = xent.cross_entropy_grad(logits, target, reduction="none")
    same = all(np.array_equal(a, b) for a, b in zip(parent, child))
    os._exit(0 if same and xent.get_num_threads() == 1 else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
assert xent.get_num_threads() == 2
print("fork ok")
"""

DATALOADER = """
import torch
import xent, xent.torch
xent.set_num_threads(2)
logits = torch.randn(256, 2048)
target = torch.randint(0, 2048, (256,))
want = xent.torch.cross_entropy(logits, target, reduction="none")   # the parent's pool is started here

class Losses(torch.utils.data.Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):
        return xent.torch.cross_entropy(logits[i * 32:(i + 1) * 32], target[i * 32:(i + 1) * 32], reduction="none")

got = torch.cat(list(torch.utils.data.DataLoader(Losses(), batch_size=None, num_workers=2, timeout=60)))
assert torch.equal(got, want), (got - want).abs().max()
print("dataloader ok")
"""


def _run(code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-3000:]
    return result.stdout


def test_forked_child_computes_the_parents_results():
    assert "fork ok" in _run(FORK)


def test_dataloader_workers_call_xent():
    assert "dataloader ok" in _run(DATALOADER)
