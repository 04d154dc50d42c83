#!/usr/bin/env bash
# pip install of the Python package into a fresh virtual environment (Debian's pip and setuptools, no network), and
# the Python tests run against the installed package, from outside the source tree, with no build directory on the
# path; and a wheel from pip wheel. $1: a configured build directory to reuse (XENT_CMAKE_BUILD_DIR: the extension
# is not compiled twice), $2: the source tree. Run by ctest (pip_install).
set -euo pipefail
build=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 -m venv --system-site-packages "$work/venv"   # numpy, torch, mpi4py, pytest from Debian
export XENT_CMAKE_BUILD_DIR=$build
"$work/venv/bin/pip" install --quiet --no-build-isolation --no-deps "$source"
"$work/venv/bin/pip" wheel --quiet --no-build-isolation --no-deps --wheel-dir "$work/dist" "$source"
ls "$work"/dist/xent-*.whl >/dev/null
for part in xent/_xent xent/libxent.so.0 xent/libxent_torch.so; do  # grep reads all: -q would break the pipe
  /usr/bin/python3 -m zipfile -l "$work"/dist/xent-*.whl | grep "$part" >/dev/null || { echo "the wheel has no $part"; exit 1; }
done

cd "$work"
installed=$(env -u PYTHONPATH "$work/venv/bin/python" -c "import xent; print(xent.__file__)")
case "$installed" in "$work/venv/"*) ;; *) echo "imported $installed, not the installed package"; exit 1 ;; esac
# The source root on the path only for the tests' `examples` imports (it holds no package named xent).
PYTHONPATH=$source "$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$source/tests/python"
