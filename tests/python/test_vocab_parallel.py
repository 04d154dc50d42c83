"""The class axis sharded across processes: xent.mpi under mpirun (1 to 4 processes) and xent.torch's
vocab_parallel_* over torch.distributed (gloo on loopback, 2 to 4 processes), each against the single-process op on
the gathered logits. The tests start the processes themselves (distributed/mpi_worker.py, distributed/torch_worker.py)."""
import os
import shutil
import socket
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed")


def _run(command, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                            text=True)
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_mpi(processes):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not installed (scripts/setup.sh installs openmpi-bin)")
    # As root (CI) Open MPI needs --allow-run-as-root; --oversubscribe lets 4 processes share 2 cores.
    out = _run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(processes), sys.executable,
                os.path.join(HERE, "mpi_worker.py")])
    assert out.count(": ok") == processes, out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_torch_distributed(processes):
    out = _run([sys.executable, os.path.join(HERE, "torch_worker.py"), str(processes), str(_free_port())])
    assert f"{processes} processes: ok" in out, out


def test_readme_commands_run():
    """The README's "Multiple processes" section: its commands run, and its code lines are the examples' own."""
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Multiple processes"):]
    section = section[:section.index("\n## ", 1)]
    examples = " ".join(" ".join((root / "examples" / f).read_text().split())
                        for f in ("vocab_parallel_mpi.py", "vocab_parallel_torch.py"))
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        for statement in re.split(r"\n(?=\S)", block.strip()):
            assert " ".join(statement.split()) in examples, statement
    commands = [line for block in re.findall(r"```sh\n(.*?)```", section, re.S) for line in block.splitlines() if line]
    assert len(commands) == 2
    for command in commands:
        words = command.split()
        if words[0] == "mpirun":
            if shutil.which("mpirun") is None:
                pytest.skip("mpirun not installed")
            words[1:1] = ["--allow-run-as-root", "--oversubscribe"] if os.geteuid() == 0 else ["--oversubscribe"]
        words = [sys.executable if w == "python3" else w for w in words]
        result = subprocess.run(words, cwd=root, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=240)
        assert result.returncode == 0, result.stdout[-4000:]
        assert result.stdout.count(" ok") + result.stdout.count("loss ") >= 2, result.stdout
