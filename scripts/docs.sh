#!/usr/bin/env bash
# The API reference, generated from the code's own text, into build-docs/ (or $1):
#   html/index.html   C and C++ (Doxygen, docs/Doxyfile, from include/xent/*.h*; the README as its main page)
#   python/*.txt      Python: help() of xent, xent.torch and xent.mpi (needs the build's Python package, build/ or $2)
# Fails on any Doxygen warning (an undocumented public name included) and on a public Python function, class or
# method without a docstring. scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-docs} build=${2:-build}
mkdir -p "$out/python"
status=0
(cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $out"; echo "WARN_LOGFILE = $out/warnings.log") | doxygen - >/dev/null || status=$?
if [[ -s $out/warnings.log || $status != 0 ]]; then
  cat "$out/warnings.log"
  echo "docs: Doxygen warnings (above)"
  exit 1
fi
PYTHONPATH="$build/python" /usr/bin/python3 - "$out/python" <<'PY'
import importlib, inspect, pydoc, sys
out = sys.argv[1]
missing = []
for name in ("xent", "xent.torch", "xent.mpi"):
    module = importlib.import_module(name)
    public = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    for attr in public:
        obj = getattr(module, attr)
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
            continue
        if getattr(obj, "__module__", name).split(".")[0] != "xent":
            continue  # re-exported from numpy, torch, ...
        if not inspect.getdoc(obj):
            missing.append(f"{name}.{attr}")
        if inspect.isclass(obj):
            for m, f in vars(obj).items():
                if not m.startswith("_") and inspect.isfunction(f) and not inspect.getdoc(f):
                    missing.append(f"{name}.{attr}.{m}")
    with open(f"{out}/{name}.txt", "w") as f:
        f.write(pydoc.render_doc(module, renderer=pydoc.plaintext))
if missing:
    sys.exit("docs: no docstring: " + ", ".join(missing))
PY
echo "docs: $out/html/index.html, $out/python/{xent,xent.torch,xent.mpi}.txt"
