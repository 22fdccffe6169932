/*
 * voxpipe DSP core: frame reassembly, gain, noise gate, G.711 codecs.
 *
 * Everything is integer arithmetic so the pure-Python backend
 * (core/voxpipe/dsp/_python.py) produces bit-identical output.  Buffers are
 * little-endian PCM16 mono, read and written byte-wise (no alignment or host
 * byte-order assumptions).  Lengths are in samples unless named *_bytes.
 * Gain and gate may run in place (in == out).
 */
#ifndef VOXPIPE_DSP_H
#define VOXPIPE_DSP_H

#include <stddef.h>
#include <stdint.h>

/* Q formats shared with the Python side (voxpipe.dsp computes parameters). */
#define VP_GAIN_SHIFT 16     /* gain multipliers: Q16, 65536 == 0 dB */
#define VP_GATE_SHIFT 30     /* gate gain and envelope decay: Q30 */
#define VP_ENV_SHIFT 16      /* envelope and threshold: amplitude in Q16 */

/* Noise-gate parameters and state; all fields int64 for one code path. */
typedef struct {
    /* state */
    int64_t env;           /* envelope, |sample| in Q16 */
    int64_t gain;          /* current gate gain, Q30 (1<<30 == open) */
    int64_t hold;          /* hold samples left */
    /* parameters */
    int64_t threshold;     /* open when env >= threshold (Q16 amplitude) */
    int64_t env_decay;     /* per-sample envelope decay multiplier, Q30 */
    int64_t hold_samples;  /* samples the gate stays open after the envelope drops */
    int64_t attack_step;   /* Q30 gain increase per sample while open */
    int64_t release_step;  /* Q30 gain decrease per sample while closing */
    int64_t floor;         /* Q30 gain when fully closed */
    int64_t makeup;        /* Q16 gain applied after the gate, saturating */
} vp_gate;

void vp_gain(const char *in, char *out, size_t n_samples, int64_t q16);
void vp_gate_process(vp_gate *g, const char *in, char *out, size_t n_samples);
/*
 * The gate on one channel of interleaved audio: processes n_samples samples
 * stride samples apart (in[0], in[stride], ...), writing the same positions
 * of out; the other channels' samples are not touched.  stride 1 is
 * vp_gate_process.
 */
void vp_gate_process_strided(vp_gate *g, const char *in, char *out, size_t n_samples, size_t stride);

/*
 * Interleave two channels of n_samples samples of width bytes each (1 for
 * G.711, 2 for PCM16) into out (2 * n_samples * width bytes): L R L R ...
 */
void vp_interleave(const char *left, const char *right, char *out, size_t n_samples, size_t width);

void vp_mulaw_decode(const char *in, char *out, size_t n_samples);
void vp_mulaw_encode(const char *in, char *out, size_t n_samples);
void vp_alaw_decode(const char *in, char *out, size_t n_samples);
void vp_alaw_encode(const char *in, char *out, size_t n_samples);

/*
 * Append in[0:in_len] to the carried partial frame and write every whole
 * frame to out; the new remainder (< frame_bytes) goes back to carry.
 * out must hold ((*carry_len + in_len) / frame_bytes) * frame_bytes bytes.
 * Returns the bytes written to out.
 */
size_t vp_reassemble(char *carry, size_t *carry_len, size_t frame_bytes,
                     const char *in, size_t in_len, char *out);

#endif
