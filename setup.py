"""The package's native parts, built by CMake (the project's own build) for `pip install .` and `pip wheel .`: the
extension module xent._xent (target _xent), the PyTorch operators libxent_torch.so (target xent_torch, when CMake
finds libtorch) and the libxent.so.0 both load from beside them; everything else is in pyproject.toml.
XENT_CMAKE_BUILD_DIR reuses a configured build directory (e.g. the one scripts/build.sh made) instead of a fresh one
under build/setuptools."""
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.environ.get("XENT_CMAKE_BUILD_DIR") or os.path.join(ROOT, "build", "setuptools", "cmake")
        if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                            "-DXENT_BENCH=OFF", f"-DPython3_EXECUTABLE={sys.executable}"], check=True)
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            torch = any(line.startswith("Torch_DIR:") and not line.rstrip().endswith("NOTFOUND") for line in f)
        subprocess.run(["cmake", "--build", build_dir, "--parallel", "--target", "_xent"] +
                       (["xent_torch"] if torch else []), check=True)
        built = os.path.join(build_dir, "python", "xent")
        module = next(f for f in os.listdir(built) if f.startswith("_xent") and f.endswith(".so"))
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(built, module), target)
        # The libraries beside the extension (found through its RPATH, $ORIGIN).
        for library in ("libxent.so.0", "libxent_torch.so"):
            if os.path.exists(os.path.join(built, library)):
                shutil.copyfile(os.path.join(built, library), os.path.join(os.path.dirname(target), library))


setup(ext_modules=[Extension("xent._xent", sources=[])], cmdclass={"build_ext": CMakeBuild},
      options={"build": {"build_base": os.path.join("build", "setuptools")},
               "egg_info": {"egg_base": os.path.join("build", "setuptools")}})
