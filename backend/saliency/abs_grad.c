/* Per-sample sum of |dL/dW| over each conv filter, without ever storing a per-sample weight gradient.

   Sample n's weight gradient entry (o, k) is a dot product over output positions p of the output gradient
   g[n, o, p] and the input value under kernel tap k at p. Here a block of R filters x NV vectors of k is
   accumulated in registers over all positions, then |.| is added to per-filter totals at once: the
   gradient lives only in registers, so the cost is the multiply-adds of one batched weight gradient.

   Compiled twice by kernels.py (REAL = float and double) with VEC_BYTES = the SIMD register width; plain C
   with GCC vector extensions, so no intrinsics and no Python or torch headers. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if REAL_IS_DOUBLE
typedef double real;
typedef int64_t ireal;
#define NAME(x) x##_f64
#define ABS_MASK INT64_MAX
#else
typedef float real;
typedef int32_t ireal;
#define NAME(x) x##_f32
#define ABS_MASK INT32_MAX
#endif

#define LANES (VEC_BYTES / (int)sizeof(real))
/* registers: R * NV accumulators + R totals + NV inputs, within 32 (AVX-512) or 16 registers */
#if VEC_BYTES >= 64
#define ROWS 8
#else
#define ROWS 4
#endif

typedef real vec __attribute__((vector_size(VEC_BYTES)));
typedef real vec_unaligned __attribute__((vector_size(VEC_BYTES), aligned(sizeof(real))));
typedef ireal ivec __attribute__((vector_size(VEC_BYTES)));

typedef struct {
    const real *x;         /* input [N, Cin, H, W], element strides x_stride (any layout) */
    long x_stride[4], height, width, pad_h, pad_w;
    const real *g;         /* output gradient [N, Cout, OH * OW], element strides g_stride */
    long g_stride[3];
    real *out;             /* [N, Cout]: sum over the filter's weights of |gradient| */
    long n, hp, wp, cin, cout, positions, groups;
    long k_blocks;         /* per group: kh * kw * Cin/groups / LANES vectors of kernel-window entries */
    const long *k_offset;  /* [k_blocks] offset of each k-block in the padded sample, from a window's corner */
    const long *p_offset;  /* [positions] offset of each output position's window corner */
    long row_blocks;       /* per group: ceil(Cout/groups / ROWS) */
    long next_item;        /* work queue: (sample, group, row block) items in sample order, taken atomically */
} problem;

typedef struct {
    problem *pb;
    real *sample;  /* [H + 2 pad_h, W + 2 pad_w, Cin]: this thread's zero-padded channels-last copy */
} worker_state;

static inline vec abs_vec(vec v) {
    ivec mask = (ivec){0} + ABS_MASK;
    return (vec)((ivec)v & mask);
}

static inline vec load(const real *at) { return *(const vec_unaligned *)at; }

/* Adds sum_k |sum_p g[r, p] x[p, k]| over R rows and one or two k-blocks (offsets k0, k1) to total[0..R). */
#define DEFINE_BLOCK(NAME_, R, TWO)                                                                    \
    static inline void NAME_(const problem *pb, const real *xs, const real *gs, long k0, long k1,        \
                             vec *total) {                                                              \
        const long positions = pb->positions, row_stride = pb->g_stride[1], p_stride = pb->g_stride[2]; \
        vec acc0[R], acc1[R];                                                                           \
        for (int r = 0; r < R; r++) acc0[r] = acc1[r] = (vec){0};                                       \
        for (long p = 0; p < positions; p++) {                                                          \
            const real *at = xs + pb->p_offset[p];                                                      \
            vec in0 = load(at + k0), in1 = TWO ? load(at + k1) : (vec){0};                              \
            for (int r = 0; r < R; r++) {                                                               \
                real gr = gs[r * row_stride + p * p_stride];                                            \
                acc0[r] += gr * in0;                                                                    \
                if (TWO) acc1[r] += gr * in1;                                                           \
            }                                                                                           \
        }                                                                                               \
        for (int r = 0; r < R; r++) total[r] += abs_vec(acc0[r]) + (TWO ? abs_vec(acc1[r]) : (vec){0}); \
    }

DEFINE_BLOCK(rows_two, ROWS, 1)
DEFINE_BLOCK(rows_one, ROWS, 0)
DEFINE_BLOCK(row_two, 1, 1)
DEFINE_BLOCK(row_one, 1, 0)

/* Copies sample n into the interior of the padded channels-last buffer (its border stays zero). */
static void load_sample(const problem *pb, long n, real *dst) {
    const long *st = pb->x_stride;
    const real *src = pb->x + n * st[0];
    for (long h = 0; h < pb->height; h++) {
        real *row = dst + ((h + pb->pad_h) * pb->wp + pb->pad_w) * pb->cin;
        for (long w = 0; w < pb->width; w++)
            for (long c = 0; c < pb->cin; c++) row[w * pb->cin + c] = src[c * st[1] + h * st[2] + w * st[3]];
    }
}

static void run_item(const problem *pb, const real *sample_data, long item) {
    long cin_g = pb->cin / pb->groups, cout_g = pb->cout / pb->groups;
    long rb = item % pb->row_blocks, group = (item / pb->row_blocks) % pb->groups;
    long sample = item / pb->row_blocks / pb->groups;
    long first_row = group * cout_g + rb * ROWS;
    long rows = cout_g - rb * ROWS < ROWS ? cout_g - rb * ROWS : ROWS;
    const long *ko = pb->k_offset, kbs = pb->k_blocks, row_stride = pb->g_stride[1];
    const real *xs = sample_data + group * cin_g;
    const real *gs = pb->g + sample * pb->g_stride[0] + first_row * row_stride;
    vec total[ROWS];
    for (int r = 0; r < ROWS; r++) total[r] = (vec){0};
    if (rows == ROWS) {
        long kb = 0;
        for (; kb + 2 <= kbs; kb += 2) rows_two(pb, xs, gs, ko[kb], ko[kb + 1], total);
        if (kb < kbs) rows_one(pb, xs, gs, ko[kb], 0, total);
    } else {
        for (long r = 0; r < rows; r++) {
            long kb = 0;
            for (; kb + 2 <= kbs; kb += 2) row_two(pb, xs, gs + r * row_stride, ko[kb], ko[kb + 1], total + r);
            if (kb < kbs) row_one(pb, xs, gs + r * row_stride, ko[kb], 0, total + r);
        }
    }
    for (long r = 0; r < rows; r++) {
        real sum = 0;
        for (int lane = 0; lane < LANES; lane++) sum += total[r][lane];
        pb->out[sample * pb->cout + first_row + r] = sum;
    }
}

/* Takes work items until none are left; `sample` is this thread's padded channels-last buffer. */
static void work(problem *pb, real *sample) {
    long items = pb->n * pb->groups * pb->row_blocks, loaded = -1;
    for (;;) {
        long item = __atomic_fetch_add(&pb->next_item, 1, __ATOMIC_RELAXED);
        if (item >= items) return;
        long n = item / pb->row_blocks / pb->groups;
        if (n != loaded) {  /* items come in sample order, so each thread loads each sample about once */
            load_sample(pb, n, sample);
            loaded = n;
        }
        run_item(pb, sample, item);
    }
}

/* Channels per group must be a multiple of lanes(). Threads come from the OpenMP runtime torch itself uses
   (the same libgomp.so.1 is already loaded): its workers, still spinning after torch's last parallel op, take
   this work at once, where threads of our own would compete with them for the cores. Returns 0; -1 if out
   of memory (nothing computed), or 1 if some threads had no buffer (the others still compute everything). */
int NAME(pss_abs_grad_sum)(const real *x, const long *x_stride, const real *g, const long *g_stride, real *out,
                           long n, long cin, long height, long width, long cout, long oh, long ow, long kh,
                           long kw, long sh, long sw, long ph, long pw, long dh, long dw, long groups,
                           int threads) {
    long hp = height + 2 * ph, wp = width + 2 * pw;
    long per_tap = cin / groups / LANES, k_blocks = kh * kw * per_tap, positions = oh * ow;
    size_t sample_bytes = ((size_t)(hp * wp * cin) * sizeof(real) + 63) / 64 * 64;
    long *offsets = malloc((size_t)(k_blocks + positions) * sizeof(long));
    if (offsets == NULL) return -1;
    for (long kb = 0; kb < k_blocks; kb++) {
        long tap = kb / per_tap;
        offsets[kb] = ((tap / kw) * dh * wp + (tap % kw) * dw) * cin + (kb % per_tap) * LANES;
    }
    for (long p = 0; p < positions; p++) offsets[k_blocks + p] = ((p / ow) * sh * wp + (p % ow) * sw) * cin;
    problem pb = {x, {x_stride[0], x_stride[1], x_stride[2], x_stride[3]}, height, width, ph, pw,
                  g, {g_stride[0], g_stride[1], g_stride[2]}, out, n, hp, wp, cin, cout, positions, groups,
                  k_blocks, offsets, offsets + k_blocks, (cout / groups + ROWS - 1) / ROWS, 0};
    long items = n * groups * pb.row_blocks;
    if (threads > items) threads = (int)items;
    if (threads < 1) threads = 1;  /* an empty batch: nothing to do, but not an error */
    int asked = threads, working = 0;
#pragma omp parallel num_threads(threads)
    {
        real *sample = aligned_alloc(64, sample_bytes);
        if (sample != NULL) {
            __atomic_fetch_add(&working, 1, __ATOMIC_RELAXED);
            memset(sample, 0, sample_bytes);
            work(&pb, sample);
            free(sample);
        }
    }
    free(offsets);
    return working == 0 ? -1 : working < asked ? 1 : 0;
}

int NAME(pss_lanes)(void) { return LANES; }
