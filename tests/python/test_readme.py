"""The README stays true to the code: its quick starts run and print what their comments say (Python here, C++ and
C compiled against the build and run), and each command of its Install section is one that a test runs. The
sections on the fused op and on multiple processes are run by test_linear.py and test_vocab_parallel.py."""
import contextlib
import io
import os
import pathlib
import re
import subprocess
import sys

import pytest

import xent

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title):
    start = README.index("\n## " + title)
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else len(README)]


def _blocks(section, language):
    return re.findall(r"```" + language + r"\n(.*?)```", section, re.S)


def _expected(code, comment):
    """What the block says it prints: the text after `<comment> prints ` on each line, in order."""
    return [m.strip().rstrip("*/").strip() for m in re.findall(re.escape(comment) + r" prints (.*)", code)]


def _build_dir():
    """The build tree whose Python package is imported (build/python/xent), or None for an installed package."""
    build = pathlib.Path(xent.__file__).resolve().parents[2]
    return build if (build / "CMakeCache.txt").exists() else None


@pytest.mark.parametrize("index", range(len(_blocks(_section("Quick start"), "python"))))
def test_python_quick_start(index):
    code = _blocks(_section("Quick start"), "python")[index]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README.md quick start {index}", "exec"), {})
    assert printed.getvalue().split("\n")[:-1] == _expected(code, "#")


def test_pytorch_section_runs_and_its_table_is_the_benchmarks(tmp_path):
    """The PyTorch section's example runs and prints what it says; its table is rows of the benchmark's results."""
    import runpy
    section = _section("PyTorch")
    [code] = _blocks(section, "python")
    (tmp_path / "readme_pytorch.py").write_text(code)  # from a file: TorchScript reads the class's source
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(str(tmp_path / "readme_pytorch.py"))
    assert printed.getvalue().split("\n")[:-1] == _expected(code, "#")
    results = (ROOT / "bench" / "results" / "torch_step.md").read_text()
    rows = [line for line in section.splitlines() if line.startswith("| float32 |")]
    assert rows and all(row in results for row in rows), rows


@pytest.mark.parametrize("language", ["cpp", "c"])
def test_compiled_quick_start(language, tmp_path):
    build = _build_dir()
    if build is None or not (build / "libxent.so").exists():
        pytest.skip("needs the build tree's libxent.so (not an installed package)")
    [code] = _blocks(_section("Quick start"), language)
    source = tmp_path / ("main.cc" if language == "cpp" else "main.c")
    source.write_text(code)
    compiler = ["c++", "-std=c++20"] if language == "cpp" else ["cc", "-std=c11"]
    subprocess.run(compiler + ["-Wall", "-Werror", str(source), "-I", str(ROOT / "include"), "-L", str(build),
                               "-lxent", f"-Wl,-rpath,{build}", "-o", str(tmp_path / "main")], check=True)
    out = subprocess.run([str(tmp_path / "main")], check=True, stdout=subprocess.PIPE, text=True).stdout
    assert out.split("\n")[:-1] == _expected(code, "//" if language == "cpp" else "/*")


def test_install_commands_are_the_tests_commands():
    """Every command of the Install section is run by a test: by CI (.ci/run), or by the script of tests/install
    that does the same with a temporary prefix, build directory, program or environment in place of the README's."""
    section = _section("Install")
    commands = [line for block in _blocks(section, "sh") for line in block.splitlines() if line.strip()]
    scripts = {name: (ROOT / name).read_text() for name in
               (".ci/run", "scripts/test.sh", "scripts/run.sh", "tests/install/consumer.sh", "tests/install/pip.sh")}

    def runs(script, *fragments):
        text = " ".join(scripts[script].split())
        return all(" ".join(f.split()) in text for f in fragments)

    checks = {
        "scripts/run.sh": lambda: runs("scripts/run.sh", "scripts/setup.sh", "scripts/build.sh", "build/seed_example",
                                       "examples/seed.py"),
        "scripts/test.sh": lambda: runs(".ci/run", "scripts/test.sh"),
        "cmake --install": lambda: runs("tests/install/consumer.sh", 'cmake --install "$build" --prefix'),
        "c++ -std=c++20": lambda: runs("tests/install/consumer.sh", "c++ -std=c++20", "pkg-config --cflags --libs xent"),
        "python3 -m venv": lambda: runs("tests/install/pip.sh", "python3 -m venv --system-site-packages",
                                        "pip\" install --quiet --no-build-isolation", "pip\" wheel"),
    }
    assert len(commands) == len(checks), commands
    for command in commands:
        [check] = [c for prefix, c in checks.items() if command.startswith(prefix)]
        assert check(), command
    for line in _blocks(section, "cmake")[0].splitlines():
        code = line.split("#")[0].strip()
        assert " ".join(code.replace("my_program", "consumer").split()) in \
            " ".join((ROOT / "tests/install/consumer/CMakeLists.txt").read_text().split()), line


def test_seed_example_prints_what_the_readme_says():
    """`scripts/run.sh` ends with the seed example's loss from C++ and from Python: the examples themselves, run here."""
    build = _build_dir()
    want = re.search(r"`scripts/run.sh` ends with the seed example's loss, `(.*?)`", README).group(1)
    py = subprocess.run([sys.executable, str(ROOT / "examples" / "seed.py")], check=True,
                        stdout=subprocess.PIPE, text=True, env=dict(os.environ)).stdout.strip()
    assert py == f"array({want}, dtype=float32)"
    if build is not None and (build / "seed_example").exists():
        cpp = subprocess.run([str(build / "seed_example")], check=True, stdout=subprocess.PIPE, text=True).stdout
        assert cpp.strip() == want
