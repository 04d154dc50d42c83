"""Memory exhaustion in the Python layer: when a temporary buffer cannot be allocated (here under an address-space
limit, in a fresh interpreter), the call raises MemoryError and the caller's out= arrays are untouched."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = """
import resource
import numpy as np
import xent

xent.set_num_threads(1)
N, C = 8192, 1024
logits = np.full((N, C), 0.5, np.float32)
labels = np.full((1, C), 1.0 / C, np.float32)     # broadcast: both gradients go through full-shape temporaries
out = (np.full(N, 7, np.float32), np.full((N, C), 7, np.float32), np.full((1, C), 7, np.float32))
with open("/proc/self/statm") as f:
    mapped = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + (16 << 20), mapped + (16 << 20)))
try:
    xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, out=out)
except MemoryError:
    assert all((o == 7).all() for o in out), "an output was written"
    print("MemoryError ok")
else:
    raise AssertionError("no MemoryError")
"""


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""), reason="AddressSanitizer reserves address space")
def test_memory_exhaustion_raises_memory_error():
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 0 and "MemoryError ok" in result.stdout, result.stdout[-3000:]
