"""cffi builder for ``voxpipe._native_dsp`` (out-of-line API mode).

Used by ``setup.py`` (``cffi_modules=["native/build_dsp.py:ffibuilder"]``) at
``pip install``; run directly (``python native/build_dsp.py``) to compile the
module in place for development.  The C sources live beside this file.
"""

from __future__ import annotations

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

# The C code is integer-only, so no floating-point flags are needed for
# bit-identity with the Python twin; -O3 lets gcc unroll the sample loops.
# A missing declaration must fail the build (then the pure backend is used),
# not produce a module that cannot be imported.
EXTRA_COMPILE_ARGS = ["-O3", "-std=c99", "-Wall", "-Werror=implicit-function-declaration"]

HEADER = os.path.join(HERE, "voxpipe_dsp.h")


def cdef_from_header(path: str = HEADER) -> str:
    """The header's declarations for ``ffibuilder.cdef``: one source of truth for the C API.

    cffi's cdef takes C declarations but not preprocessor lines (include guards,
    ``#include``), so those are dropped; comments are fine.
    """
    with open(path, encoding="utf-8") as f:
        return "".join(line for line in f if not line.lstrip().startswith("#"))


CDEF = cdef_from_header()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "voxpipe._native_dsp",
    '#include "voxpipe_dsp.h"',
    # relative to the directory setup.py runs in (the repository root)
    sources=[os.path.relpath(os.path.join(HERE, "voxpipe_dsp.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=EXTRA_COMPILE_ARGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
