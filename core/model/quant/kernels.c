/* Quantized linear layers for CPUs: y = x @ W^T with W stored at 8 or 4 bits (Potluck, potluck.core.model.quant).
 *
 * A plain C library (no Python or torch headers), loaded with ctypes by native.py. Kernels: portable C, AVX2, and
 * AVX-VNNI / AVX512-VNNI (kernels_simd.inc, compiled per function and chosen at run time, so the library loads on
 * any x86-64 CPU). Every kernel computes the same bits as the pure-torch reference in reference.py. The contract:
 *
 *   activations, per row r and group g of 32 inputs, with L = 32767 for int8 weights, 127 for int4 weights:
 *       amax = max|x|, xs = amax / L, inv = L / amax (0 if amax == 0),
 *       xq = clamp(round_half_even(x * inv), -L, L) (NaN -> -L), xsum = sum of the group's xq (exact)
 *   per output j and group g:  isum = sum_k q[j,k] * xq[k] over the group, an exact integer (q: stored levels)
 *   y[r,j] = 0; for g in order (float32, every product and sum rounded on its own, no fused multiply-add):
 *       int8: y = y + (float)isum * (xs * d[j,g])                                       (w ~ d * q, q in -127..127)
 *       int4: y = y + ((float)isum * (xs * d[j,g]) + (float)xsum * (xs * m[j,g]))      (w ~ d * q + m, q in 0..15)
 *
 * Integer sums are exact and every output's float sum runs in one fixed order, so a row's result does not depend on
 * the other rows of the call, the number of threads, or which kernel ran. Build with -ffp-contract=off so that the
 * compiler does not fuse a multiply and an add. Threads: OpenMP over tiles of outputs (each output is computed by
 * one thread); linked with -fopenmp, the library shares the libgomp that torch loaded (same soname), so its threads
 * are torch's threads.
 *
 * Packed weights (written by packing.py): outputs in tiles of 8 (zero rows pad the last tile), inputs in groups of
 * 32 (zero columns pad the last group); tile t, group g form one block, blocks in order t * groups + g.
 *   int8 block, 256 bytes: byte [u*32 + o*4 + j] = q[8t+o, 32g + 4u + (0, 2, 1, 3)[j]]       (u < 8; see below)
 *   int4 block, 128 bytes: byte [v*32 + o*4 + i] = q[8t+o, 32g+8v+i] | q[8t+o, 32g+8v+4+i] << 4            (v < 4)
 *   scales, float16 bits: int8 d at [t * groups + g][o]; int4 d at [t * groups + g][0][o], m at [...][1][o]
 * The int8 order puts inputs 4u, 4u+1 in the even bytes and 4u+2, 4u+3 in the odd ones, so that two shifts give
 * 16-bit lanes ready for vpmaddwd (sign extension with vpmovsxbw streams slower from memory, measured).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(PQ_NO_SIMD) /* -DPQ_NO_SIMD: C only */
#define PQ_X86 1
#include <immintrin.h>
#if (defined(__clang__) && __clang_major__ >= 16) || (!defined(__clang__) && __GNUC__ >= 11)
#define PQ_VNNI 1 /* the compiler knows AVX-VNNI (and its feature test) */
#endif
#endif

#ifdef _WIN32
#define PQ_EXPORT __declspec(dllexport)
#else
#define PQ_EXPORT __attribute__((visibility("default")))
#endif

#define GROUP 32
#define TILE 8
#define PQ_ABI_VERSION 1

enum { ISA_PORTABLE = 0, ISA_AVX2 = 1, ISA_AVXVNNI = 2, ISA_AVX512VNNI = 3 };
enum { FEATURE_AVX2 = 1, FEATURE_FMA = 2, FEATURE_F16C = 4, FEATURE_OPENMP = 8, FEATURE_AVXVNNI = 16,
       FEATURE_AVX512VNNI = 32 /* with AVX512F and AVX512VL */ };
enum { OK = 0, ERR_ARGS = -1, ERR_MEMORY = -2, ERR_ISA = -3 };

typedef struct {
    const int16_t *x16;    /* int8 weights: 16-bit activations [rows][groups * 32] */
    const int8_t *x8;      /* int4 weights: 8-bit activations [rows][groups * 32] */
    const float *xs;       /* [rows][groups] */
    const int32_t *xsum;   /* [rows][groups] (8-bit activations only) */
    const uint8_t *packed;
    const uint16_t *scales;
    float *y;              /* [rows][out_features] */
    int64_t rows, groups, out_features;
    int bits;
} Problem;

PQ_EXPORT int pq_abi_version(void) { return PQ_ABI_VERSION; }

PQ_EXPORT int pq_cpu_features(void) {
    static int cached = -1;
    if (cached >= 0) return cached;
    int features = 0;
#ifdef PQ_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) features |= FEATURE_AVX2;
    if (__builtin_cpu_supports("fma")) features |= FEATURE_FMA;
    if (__builtin_cpu_supports("f16c")) features |= FEATURE_F16C;
#ifdef PQ_VNNI
    if (__builtin_cpu_supports("avxvnni")) features |= FEATURE_AVXVNNI;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        features |= FEATURE_AVX512VNNI;
#endif
#endif
#ifdef _OPENMP
    features |= FEATURE_OPENMP;
#endif
    cached = features; /* the same value from every thread: a benign race */
    return features;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        exponent = 113u;
        while (!(mantissa & 0x400u)) { mantissa <<= 1; exponent--; }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- activations ------------------------------------------------------------------------------------------- */

static int32_t quantize_value(float v, float levels) {
    if (!(v >= -levels)) return -(int32_t)levels; /* also NaN */
    if (v > levels) return (int32_t)levels;
    /* round half to even: adding 1.5 * 2**23 leaves no fraction bits (exact for |v| < 2**22, default rounding) */
    float shifted = v + 12582912.0f;
    return (int32_t)(shifted - 12582912.0f);
}

/* One row: 16-bit levels into x16 (levels 32767) or 8-bit ones into x8 (levels 127, with xsum). */
static void quantize_row(const float *x, int64_t in_features, int64_t groups, float levels, int16_t *x16, int8_t *x8,
                         float *xs, int32_t *xsum) {
    for (int64_t g = 0; g < groups; g++) {
        int64_t begin = g * GROUP, end = begin + GROUP < in_features ? begin + GROUP : in_features;
        float amax = 0.0f;
        for (int64_t k = begin; k < end; k++) {
            float a = fabsf(x[k]);
            amax = a > amax ? a : amax;
        }
        float inv = amax > 0.0f ? levels / amax : 0.0f;
        int32_t sum = 0;
        for (int64_t k = begin; k < begin + GROUP; k++) {
            int32_t q = k < end ? quantize_value(x[k] * inv, levels) : 0;
            if (x16) x16[k] = (int16_t)q;
            else x8[k] = (int8_t)q;
            sum += q;
        }
        xs[g] = amax / levels;
        if (xsum) xsum[g] = sum;
    }
}

/* ---- portable kernel ---------------------------------------------------------------------------------------- */

static int32_t block_dot_portable(const uint8_t *block, const Problem *p, int64_t r, int64_t g, int o) {
    int32_t sum = 0;
    if (p->bits == 8) {
        static const int order[4] = {0, 2, 1, 3};
        const int16_t *x = p->x16 + (r * p->groups + g) * GROUP;
        for (int u = 0; u < 8; u++)
            for (int j = 0; j < 4; j++) sum += (int32_t)(int8_t)block[u * 32 + o * 4 + j] * x[4 * u + order[j]];
    } else {
        const int8_t *x = p->x8 + (r * p->groups + g) * GROUP;
        for (int v = 0; v < 4; v++)
            for (int i = 0; i < 4; i++) {
                uint8_t b = block[v * 32 + o * 4 + i];
                sum += (int32_t)(b & 0x0f) * x[8 * v + i] + (int32_t)(b >> 4) * x[8 * v + 4 + i];
            }
    }
    return sum;
}

static void tile_portable(const Problem *p, int64_t t) {
    int64_t block_bytes = p->bits == 8 ? 256 : 128;
    int outputs = p->out_features - t * TILE < TILE ? (int)(p->out_features - t * TILE) : TILE;
    for (int64_t r = 0; r < p->rows; r++) {
        const float *xs = p->xs + r * p->groups;
        for (int o = 0; o < outputs; o++) {
            float acc = 0.0f;
            for (int64_t g = 0; g < p->groups; g++) {
                const uint8_t *block = p->packed + (t * p->groups + g) * block_bytes;
                float f = (float)block_dot_portable(block, p, r, g, o);
                if (p->bits == 8) {
                    float s = xs[g] * half_to_float(p->scales[(t * p->groups + g) * TILE + o]);
                    float product = f * s;
                    acc = acc + product;
                } else {
                    const uint16_t *dm = p->scales + (t * p->groups + g) * 2 * TILE;
                    float s = xs[g] * half_to_float(dm[o]), sm = xs[g] * half_to_float(dm[TILE + o]);
                    float product = f * s, offset = (float)p->xsum[r * p->groups + g] * sm;
                    float contribution = product + offset;
                    acc = acc + contribution;
                }
            }
            p->y[r * p->out_features + t * TILE + o] = acc;
        }
    }
}

/* ---- AVX2 kernel ---------------------------------------------------------------------------------------------- */
#ifdef PQ_X86
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))

AVX2_FN static inline __m256i broadcast4(const int8_t *x) {
    int32_t v;
    memcpy(&v, x, 4);
    return _mm256_set1_epi32(v);
}

AVX2_FN static inline __m256i broadcast_pair(const int16_t *x) {
    int32_t v;
    memcpy(&v, x, 4);
    return _mm256_set1_epi32(v);
}

/* Integer sums of one int8 block for nr rows: lane o of sums[r] = sum over 32 inputs of q[o] * x16[r]. */
AVX2_FN static inline void block_int8_avx2(const uint8_t *block, const int16_t *const *x, int nr, __m256i *sums) {
    for (int r = 0; r < nr; r++) sums[r] = _mm256_setzero_si256();
    for (int u = 0; u < 8; u++) {
        __m256i w = _mm256_loadu_si256((const __m256i *)(block + 32 * u));
        __m256i even = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8), odd = _mm256_srai_epi16(w, 8);
        for (int r = 0; r < nr; r++) { /* pairs of 127 * 32767 fit in int32 */
            __m256i a = _mm256_madd_epi16(even, broadcast_pair(x[r] + 4 * u));
            __m256i b = _mm256_madd_epi16(odd, broadcast_pair(x[r] + 4 * u + 2));
            sums[r] = _mm256_add_epi32(sums[r], _mm256_add_epi32(a, b));
        }
    }
}

/* Same for an int4 block (levels 0..15 are maddubs' unsigned operand, x8 its signed one). */
AVX2_FN static inline void block_int4_avx2(const uint8_t *block, const int8_t *const *x, int nr, __m256i *sums) {
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0f);
    __m256i pairs[4];
    for (int r = 0; r < nr; r++) pairs[r] = _mm256_setzero_si256();
    for (int v = 0; v < 4; v++) {
        __m256i packed = _mm256_loadu_si256((const __m256i *)(block + 32 * v));
        __m256i lo = _mm256_and_si256(packed, low), hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
        for (int r = 0; r < nr; r++) { /* 8 products of <= 2 * 15 * 127 each fit in int16 */
            pairs[r] = _mm256_add_epi16(pairs[r], _mm256_maddubs_epi16(lo, broadcast4(x[r] + 8 * v)));
            pairs[r] = _mm256_add_epi16(pairs[r], _mm256_maddubs_epi16(hi, broadcast4(x[r] + 8 * v + 4)));
        }
    }
    for (int r = 0; r < nr; r++) sums[r] = _mm256_madd_epi16(pairs[r], ones);
}

/* quantize_row's arithmetic, 32 inputs at a time (max and conversions are exact, so the bits agree). */
AVX2_FN static void quantize_row_avx2(const float *x, int64_t in_features, int64_t groups, float levels, int16_t *x16,
                                      int8_t *x8, float *xs, int32_t *xsum) {
    const __m256 magnitude_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 low = _mm256_set1_ps(-levels), high = _mm256_set1_ps(levels);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t g = 0; g < groups; g++) {
        const float *src = x + g * GROUP;
        float tail[GROUP];
        if (g * GROUP + GROUP > in_features) { /* the last, partial group: pad with zeros */
            memset(tail, 0, sizeof tail);
            memcpy(tail, src, (size_t)(in_features - g * GROUP) * sizeof(float));
            src = tail;
        }
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(src + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], magnitude_mask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float amax = _mm_cvtss_f32(m4);
        float inv = amax > 0.0f ? levels / amax : 0.0f;
        __m256 scale = _mm256_set1_ps(inv);
        __m256i q[4], total = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) { /* max(v, -L) turns NaN into -L, like quantize_value */
            __m256 clamped = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], scale), low), high);
            q[i] = _mm256_cvtps_epi32(clamped); /* round half to even */
            total = _mm256_add_epi32(total, q[i]);
        }
        __m256i q01 = _mm256_packs_epi32(q[0], q[1]), q23 = _mm256_packs_epi32(q[2], q[3]);
        if (x16) {
            _mm256_storeu_si256((__m256i *)(x16 + g * GROUP), _mm256_permute4x64_epi64(q01, 0xd8));
            _mm256_storeu_si256((__m256i *)(x16 + g * GROUP + 16), _mm256_permute4x64_epi64(q23, 0xd8));
        } else {
            __m256i packed = _mm256_packs_epi16(q01, q23);
            _mm256_storeu_si256((__m256i *)(x8 + g * GROUP), _mm256_permutevar8x32_epi32(packed, order));
        }
        __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4e));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xb1));
        xs[g] = amax / levels;
        if (xsum) xsum[g] = _mm_cvtsi128_si32(t4);
    }
}

#define PASTE2(a, b) a##b
#define PASTE(a, b) PASTE2(a, b)

#define SIMD avx2
#define SIMD_FN AVX2_FN
#include "kernels_simd.inc"
#undef SIMD
#undef SIMD_FN

/* AVX-VNNI (Alder Lake and later, Zen 5) and AVX512-VNNI (Ice Lake and later, Zen 4): vpdpwssd takes 16 products
 * (int8 weights, 16-bit activations) and vpdpbusd 32 (int4 weights, 8-bit activations) in one instruction. */
#ifdef PQ_VNNI
#define SIMD avxvnni
#define SIMD_FN __attribute__((target("avx2,fma,f16c,avxvnni")))
#define DPBUSD _mm256_dpbusd_avx_epi32
#define DPWSSD _mm256_dpwssd_avx_epi32
#include "kernels_simd.inc"
#undef SIMD
#undef SIMD_FN
#undef DPBUSD
#undef DPWSSD

#define SIMD avx512vnni
#define SIMD_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
#define DPBUSD _mm256_dpbusd_epi32
#define DPWSSD _mm256_dpwssd_epi32
#include "kernels_simd.inc"
#undef SIMD
#undef SIMD_FN
#undef DPBUSD
#undef DPWSSD
#endif
#endif

/* ---- entry point ---------------------------------------------------------------------------------------------- */

/* y[rows][out_features] = x[rows][in_features] @ W^T. Returns 0, or a negative error code (bad arguments, out of
 * memory, ISA not available). threads <= 1 runs on the calling thread only. */
static int isa_supported(int isa) {
    int f = pq_cpu_features(), base = FEATURE_AVX2 | FEATURE_FMA | FEATURE_F16C;
    switch (isa) {
    case ISA_PORTABLE: return 1;
    case ISA_AVX2: return (f & base) == base;
    case ISA_AVXVNNI: return (f & (base | FEATURE_AVXVNNI)) == (base | FEATURE_AVXVNNI);
    case ISA_AVX512VNNI: return (f & (base | FEATURE_AVX512VNNI)) == (base | FEATURE_AVX512VNNI);
    default: return 0;
    }
}

static void run_tile(const Problem *p, int64_t t, int isa) {
    (void)isa;
#ifdef PQ_X86
    switch (isa) {
    case ISA_AVX2: tile_avx2(p, t); return;
#ifdef PQ_VNNI
    case ISA_AVXVNNI: tile_avxvnni(p, t); return;
    case ISA_AVX512VNNI: tile_avx512vnni(p, t); return;
#endif
    default: break;
    }
#endif
    tile_portable(p, t);
}

static void prepare_row(const float *x, int64_t in_features, int64_t groups, float levels, int16_t *x16, int8_t *x8,
                        float *xs, int32_t *xsum, int isa) {
    int simd = isa != ISA_PORTABLE;
#ifdef PQ_X86
    if (simd) quantize_row_avx2(x, in_features, groups, levels, x16, x8, xs, xsum);
#else
    simd = 0;
#endif
    if (!simd) quantize_row(x, in_features, groups, levels, x16, x8, xs, xsum);
}

/* Work (weight blocks x rows) below which a second thread costs more than it saves: about 12 us of int8 work
 * (measured on 2 cores: 1536x576 and 512x1024 gain from 2 threads, 576x576 does not). */
#ifndef WORK_PER_THREAD
#define WORK_PER_THREAD 1024
#endif

/* y[rows][out_features] = x[rows][in_features] @ W^T. Returns 0, or a negative error code (bad arguments, out of
 * memory, ISA not available here). threads <= 1 runs on the calling thread only. */
PQ_EXPORT int pq_linear(const float *x, int64_t rows, int64_t in_features, const uint8_t *packed,
                        const uint16_t *scales, int64_t out_features, int bits, float *y, int threads, int isa) {
    if (rows < 0 || in_features <= 0 || out_features <= 0 || (bits != 8 && bits != 4)) return ERR_ARGS;
    if (isa < ISA_PORTABLE || isa > ISA_AVX512VNNI) return ERR_ARGS;
    if (!isa_supported(isa)) return ERR_ISA;
    if (rows == 0) return OK; /* an empty tensor may have no data pointer */
    if (!x || !packed || !scales || !y) return ERR_ARGS;
    int64_t groups = (in_features + GROUP - 1) / GROUP, tiles = (out_features + TILE - 1) / TILE;
    int64_t width = groups * GROUP;
    int16_t *x16 = bits == 8 ? malloc((size_t)(rows * width) * sizeof(int16_t)) : NULL;
    int8_t *x8 = bits == 4 ? malloc((size_t)(rows * width)) : NULL;
    float *xs = malloc((size_t)(rows * groups) * sizeof(float));
    int32_t *xsum = bits == 4 ? malloc((size_t)(rows * groups) * sizeof(int32_t)) : NULL;
    if ((!x16 && !x8) || !xs || (bits == 4 && !xsum)) {
        free(x16); free(x8); free(xs); free(xsum);
        return ERR_MEMORY;
    }
    float levels = bits == 8 ? 32767.0f : 127.0f;
    Problem p = {x16, x8, xs, xsum, packed, scales, y, rows, groups, out_features, bits};
    int64_t work = tiles * groups * rows;
    if (threads < 1) threads = 1;
    if (work / WORK_PER_THREAD < threads) threads = work / WORK_PER_THREAD > 1 ? (int)(work / WORK_PER_THREAD) : 1;
    if (tiles < threads) threads = (int)tiles;
    /* Tiles are handed out in chunks as threads come free (each tile is still computed whole by one thread, so
     * the results do not change): a thread that the OS preempts, or a slower efficiency core, holds up the call
     * by one chunk at most, where an even split would wait for its whole share. */
    int64_t chunk = tiles / ((int64_t)threads * 8) > 1 ? tiles / ((int64_t)threads * 8) : 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++)
            prepare_row(x + r * in_features, in_features, groups, levels, x16 ? x16 + r * width : NULL,
                        x8 ? x8 + r * width : NULL, xs + r * groups, xsum ? xsum + r * groups : NULL, isa);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, chunk)
#endif
        for (int64_t t = 0; t < tiles; t++) run_tile(&p, t, isa);
    }
    free(x16); free(x8); free(xs); free(xsum);
    return OK;
}

#ifdef _WIN32
/* setuptools builds this as a Python extension and exports PyInit_<name>; Potluck loads it with ctypes instead. */
PQ_EXPORT void *PyInit__kernels(void) { return 0; }
#endif
