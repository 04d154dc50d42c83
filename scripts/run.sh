#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build what it runs (the library, the seed example and the
# Python module; scripts/test.sh builds everything), and run the seed example through C++ and Python.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build --target seed_example _xent
echo "C++:    $(build/seed_example)"
echo "Python: $(PYTHONPATH=build/python /usr/bin/python3 examples/seed.py)"
