"""Build hook for the optional native DSP core (all metadata is in pyproject.toml).

``cffi_modules`` compiles ``voxpipe._native_dsp`` from ``native/``.  The
extension is optional: if there is no C compiler or the build fails, the
install still succeeds with a warning and ``voxpipe.dsp`` uses its
bit-identical pure-Python backend (``voxpipe.dsp.BACKEND == "python"``).
"""

import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that degrades to a warning instead of failing the install."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, cffi source generation failure, ...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError, DistutilsExecError
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        print(
            "WARNING: voxpipe native DSP core not built "
            f"({type(exc).__name__}: {exc}); the pure-Python backend will be used.",
            file=sys.stderr,
        )


def _packages():
    """core/ and plugins/ packages, plus ``voxpipe.examples`` from the top-level examples/
    directory (its YAML pipelines and recordings ship as package data, so an installed wheel
    runs ``voxpipe demo`` from any directory)."""
    found = {name: f"{where}/{name.replace('.', '/')}"
             for where in ("core", "plugins") for name in find_packages(where)}
    found["voxpipe.examples"] = "examples"
    return found


_PACKAGE_DIRS = _packages()

setup(
    packages=sorted(_PACKAGE_DIRS),
    package_dir=_PACKAGE_DIRS,
    cffi_modules=["native/build_dsp.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
