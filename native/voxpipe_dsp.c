/*
 * voxpipe DSP core.  See voxpipe_dsp.h for the contract and
 * core/voxpipe/dsp/_python.py for the bit-identical reference twin:
 * any change here must be mirrored there (tests/test_dsp.py compares them).
 */
#include <string.h>
#include "voxpipe_dsp.h"

#define VP_INT16_MAX 32767
#define VP_INT16_MIN (-32768)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* little-endian host: one unaligned 16-bit load/store via memcpy */
static inline int64_t load16(const unsigned char *p)
{
    int16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline void store16(unsigned char *p, int64_t v)
{
    int16_t s = (int16_t)v;
    memcpy(p, &s, 2);
}
#else
static inline int64_t load16(const unsigned char *p)
{
    return (int16_t)(uint16_t)((unsigned)p[0] | ((unsigned)p[1] << 8));
}

static inline void store16(unsigned char *p, int64_t v)
{
    uint16_t u = (uint16_t)(int16_t)v;
    p[0] = (unsigned char)(u & 0xFF);
    p[1] = (unsigned char)(u >> 8);
}
#endif

/*
 * The products below are rounded half away from zero.  Every multiplier is
 * >= 0, so that equals sign(x) * ((|x| * q + half) >> shift): the code works
 * on magnitudes (no shift of a negative number, whose result C leaves to the
 * compiler while Python floors) and puts the sign back after saturating the
 * magnitude to 32767 (positive) or 32768 (negative).
 */
static inline int64_t with_sign(int64_t x, int64_t mag)
{
    /* branchless: speech changes sign every few samples, which would
       defeat the branch predictor */
    int64_t neg = -(int64_t)(x < 0);        /* 0 or -1 */
    int64_t lim = VP_INT16_MAX - neg;       /* 32767 or 32768 */
    mag = mag > lim ? lim : mag;
    return (mag ^ neg) - neg;
}

void vp_gain(const char *in, char *out, size_t n_samples, int64_t q16)
{
    const unsigned char *src = (const unsigned char *)in;
    unsigned char *dst = (unsigned char *)out;
    const int64_t half = (int64_t)1 << (VP_GAIN_SHIFT - 1);
    for (size_t i = 0; i < n_samples; i++) {
        int64_t x = load16(src + 2 * i);
        int64_t ax = x < 0 ? -x : x;
        store16(dst + 2 * i, with_sign(x, (ax * q16 + half) >> VP_GAIN_SHIFT));
    }
}

static inline void gate_run(vp_gate *g, const char *in, char *out, size_t n_samples, size_t stride)
{
    const unsigned char *src = (const unsigned char *)in;
    unsigned char *dst = (unsigned char *)out;
    const int64_t unity = (int64_t)1 << VP_GATE_SHIFT;
    const int64_t half30 = (int64_t)1 << (VP_GATE_SHIFT - 1);
    const int64_t half16 = (int64_t)1 << (VP_GAIN_SHIFT - 1);
    int64_t env = g->env, gain = g->gain, hold = g->hold;
    const int64_t threshold = g->threshold, decay = g->env_decay;
    const int64_t hold_open = g->hold_samples + 1, attack = g->attack_step;
    const int64_t release = g->release_step, floor = g->floor, makeup = g->makeup;

    for (size_t i = 0; i < n_samples; i++) {
        int64_t x = load16(src + 2 * stride * i);
        int64_t ax = x < 0 ? -x : x;
        /* peak envelope: follows |x| up at once, decays exponentially */
        int64_t a = ax << VP_ENV_SHIFT;
        int64_t decayed = (env * decay) >> VP_GATE_SHIFT;
        env = a > decayed ? a : decayed;
        /* open while above the threshold and for hold_samples after:
           hold counts the open samples left, including this one */
        hold = env >= threshold ? hold_open : hold;
        int64_t opening = hold > 0;
        hold -= opening;
        int64_t up = gain + attack, down = gain - release;
        up = up > unity ? unity : up;
        down = down < floor ? floor : down;
        gain = opening ? up : down;
        int64_t m = (ax * gain + half30) >> VP_GATE_SHIFT;
        m = (m * makeup + half16) >> VP_GAIN_SHIFT;
        store16(dst + 2 * stride * i, with_sign(x, m));
    }
    g->env = env;
    g->gain = gain;
    g->hold = hold;
}

void vp_gate_process(vp_gate *g, const char *in, char *out, size_t n_samples)
{
    /* a separate stride-1 instance: the compiler keeps the mono loop as tight as before */
    gate_run(g, in, out, n_samples, 1);
}

void vp_gate_process_strided(vp_gate *g, const char *in, char *out, size_t n_samples, size_t stride)
{
    gate_run(g, in, out, n_samples, stride);
}

void vp_interleave(const char *left, const char *right, char *out, size_t n_samples, size_t width)
{
    if (width == 1) {
        for (size_t i = 0; i < n_samples; i++) {
            out[2 * i] = left[i];
            out[2 * i + 1] = right[i];
        }
        return;
    }
    for (size_t i = 0; i < n_samples; i++) {
        memcpy(out + 2 * width * i, left + width * i, width);
        memcpy(out + 2 * width * i + width, right + width * i, width);
    }
}

/* ---- G.711 (ITU-T G.711; same algorithm as the Sun reference code
 *      used by CPython's audioop) ---- */

/* floor(x / 2^s) without shifting a negative number */
static inline int64_t floor_shift(int64_t x, int s)
{
    return x >= 0 ? x >> s : ~((~x) >> s);
}

static const int16_t seg_uend[8] = {0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF};
static const int16_t seg_aend[8] = {0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF};

static inline int seg_search(int64_t val, const int16_t *table)
{
    int i;
    for (i = 0; i < 8; i++)
        if (val <= table[i]) break;
    return i;
}

static inline unsigned char ulaw_from_linear(int64_t x16)
{
    int64_t v = floor_shift(x16, 2);   /* 14-bit */
    int mask;
    if (v < 0) { v = -v; mask = 0x7F; } else { mask = 0xFF; }
    if (v > 8159) v = 8159;            /* CLIP */
    v += 0x84 >> 2;                    /* BIAS */
    int seg = seg_search(v, seg_uend);
    if (seg >= 8) return (unsigned char)(0x7F ^ mask);
    return (unsigned char)((((unsigned)seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask);
}

static inline int64_t ulaw_to_linear(unsigned char u)
{
    u = (unsigned char)~u;
    int64_t t = (((int64_t)(u & 0x0F)) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    return (u & 0x80) ? (0x84 - t) : (t - 0x84);
}

static inline unsigned char alaw_from_linear(int64_t x16)
{
    int64_t v = floor_shift(x16, 3);   /* 13-bit */
    int mask;
    if (v >= 0) { mask = 0xD5; } else { mask = 0x55; v = -v - 1; }
    int seg = seg_search(v, seg_aend);
    if (seg >= 8) return (unsigned char)(0x7F ^ mask);
    unsigned aval = (unsigned)seg << 4;
    aval |= (unsigned)((seg < 2 ? (v >> 1) : (v >> seg)) & 0xF);
    return (unsigned char)(aval ^ (unsigned)mask);
}

static inline int64_t alaw_to_linear(unsigned char a)
{
    a ^= 0x55;
    int64_t t = ((int64_t)(a & 0x0F)) << 4;
    int seg = (a & 0x70) >> 4;
    if (seg == 0) t += 8;
    else if (seg == 1) t += 0x108;
    else { t += 0x108; t <<= seg - 1; }
    return (a & 0x80) ? t : -t;
}

void vp_mulaw_decode(const char *in, char *out, size_t n_samples)
{
    const unsigned char *src = (const unsigned char *)in;
    unsigned char *dst = (unsigned char *)out;
    for (size_t i = 0; i < n_samples; i++)
        store16(dst + 2 * i, ulaw_to_linear(src[i]));
}

void vp_mulaw_encode(const char *in, char *out, size_t n_samples)
{
    const unsigned char *src = (const unsigned char *)in;
    unsigned char *dst = (unsigned char *)out;
    for (size_t i = 0; i < n_samples; i++)
        dst[i] = ulaw_from_linear(load16(src + 2 * i));
}

void vp_alaw_decode(const char *in, char *out, size_t n_samples)
{
    const unsigned char *src = (const unsigned char *)in;
    unsigned char *dst = (unsigned char *)out;
    for (size_t i = 0; i < n_samples; i++)
        store16(dst + 2 * i, alaw_to_linear(src[i]));
}

void vp_alaw_encode(const char *in, char *out, size_t n_samples)
{
    const unsigned char *src = (const unsigned char *)in;
    unsigned char *dst = (unsigned char *)out;
    for (size_t i = 0; i < n_samples; i++)
        dst[i] = alaw_from_linear(load16(src + 2 * i));
}

/* ---- frame reassembly ---- */

size_t vp_reassemble(char *carry, size_t *carry_len, size_t frame_bytes,
                     const char *in, size_t in_len, char *out)
{
    size_t have = *carry_len;
    size_t total = have + in_len;
    size_t out_len = (total / frame_bytes) * frame_bytes;
    if (out_len == 0) {
        /* not a whole frame yet: everything joins the carry */
        memcpy(carry + have, in, in_len);
        *carry_len = total;
        return 0;
    }
    memcpy(out, carry, have);
    memcpy(out + have, in, out_len - have);
    size_t rest = total - out_len;
    memcpy(carry, in + (in_len - rest), rest);
    *carry_len = rest;
    return out_len;
}
