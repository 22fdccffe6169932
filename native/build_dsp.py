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

CDEF = """
typedef struct {
    int64_t env;
    int64_t gain;
    int64_t hold;
    int64_t threshold;
    int64_t env_decay;
    int64_t hold_samples;
    int64_t attack_step;
    int64_t release_step;
    int64_t floor;
    int64_t makeup;
} vp_gate;

void vp_gain(const char *in, char *out, size_t n_samples, int64_t q16);
void vp_gate_process(vp_gate *g, const char *in, char *out, size_t n_samples);
void vp_mulaw_decode(const char *in, char *out, size_t n_samples);
void vp_mulaw_encode(const char *in, char *out, size_t n_samples);
void vp_alaw_decode(const char *in, char *out, size_t n_samples);
void vp_alaw_encode(const char *in, char *out, size_t n_samples);
size_t vp_reassemble(char *carry, size_t *carry_len, size_t frame_bytes,
                     const char *in, size_t in_len, char *out);
"""

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
