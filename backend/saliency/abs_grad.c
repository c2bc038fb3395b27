/* Per-sample sum of |dL/dW| over each conv filter, without ever storing a per-sample weight gradient.

   Sample n's weight gradient entry (o, k) is a dot product over output positions p of the output gradient
   g[n, o, p] and the input value under kernel tap k at p. Here a block of R filters x NV vectors of k is
   accumulated in registers over all positions, then |.| is added to per-filter totals at once: the
   gradient lives only in registers, so the cost is the multiply-adds of one batched weight gradient.

   Compiled twice by kernels.py (REAL = float and double) with VEC_BYTES = the SIMD register width; plain C
   with GCC vector extensions, so no intrinsics and no Python or torch headers. */

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

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
    const real *x;  /* [N, Hp, Wp, Cin] zero-padded, channels last */
    const real *g;  /* [N, Cout, OH * OW] */
    real *out;      /* [N, Cout]: sum over the filter's weights of |gradient| */
    long n, sample_stride, cin, cout, positions, groups;
    long k_blocks;        /* per group: kh * kw * Cin/groups / LANES vectors of kernel-window entries */
    const long *k_offset; /* [k_blocks] input offset of each k-block, from a window's corner */
    const long *p_offset; /* [positions] input offset of each output position's window corner */
    long row_blocks;      /* per group: ceil(Cout/groups / ROWS) */
    long next_item;       /* work queue: (sample, group, row block) items, taken atomically */
} problem;

static inline vec abs_vec(vec v) {
    ivec mask = (ivec){0} + ABS_MASK;
    return (vec)((ivec)v & mask);
}

static inline vec load(const real *at) { return *(const vec_unaligned *)at; }

/* Adds sum_k |sum_p g[r, p] x[p, k]| over R rows and one or two k-blocks (offsets k0, k1) to total[0..R). */
#define DEFINE_BLOCK(NAME_, R, TWO)                                                                    \
    static inline void NAME_(const problem *pb, const real *xs, const real *gs, long k0, long k1,        \
                             vec *total) {                                                              \
        const long positions = pb->positions;                                                           \
        vec acc0[R], acc1[R];                                                                           \
        for (int r = 0; r < R; r++) acc0[r] = acc1[r] = (vec){0};                                       \
        for (long p = 0; p < positions; p++) {                                                          \
            const real *at = xs + pb->p_offset[p];                                                      \
            vec in0 = load(at + k0), in1 = TWO ? load(at + k1) : (vec){0};                              \
            for (int r = 0; r < R; r++) {                                                               \
                real gr = gs[r * positions + p];                                                        \
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

static void run_item(const problem *pb, long item) {
    long cin_g = pb->cin / pb->groups, cout_g = pb->cout / pb->groups;
    long rb = item % pb->row_blocks, group = (item / pb->row_blocks) % pb->groups;
    long sample = item / pb->row_blocks / pb->groups;
    long first_row = group * cout_g + rb * ROWS;
    long rows = cout_g - rb * ROWS < ROWS ? cout_g - rb * ROWS : ROWS;
    const long *ko = pb->k_offset, kbs = pb->k_blocks;
    const real *xs = pb->x + sample * pb->sample_stride + group * cin_g;
    const real *gs = pb->g + (sample * pb->cout + first_row) * pb->positions;
    vec total[ROWS];
    for (int r = 0; r < ROWS; r++) total[r] = (vec){0};
    if (rows == ROWS) {
        long kb = 0;
        for (; kb + 2 <= kbs; kb += 2) rows_two(pb, xs, gs, ko[kb], ko[kb + 1], total);
        if (kb < kbs) rows_one(pb, xs, gs, ko[kb], 0, total);
    } else {
        for (long r = 0; r < rows; r++) {
            long kb = 0;
            for (; kb + 2 <= kbs; kb += 2) row_two(pb, xs, gs + r * pb->positions, ko[kb], ko[kb + 1], total + r);
            if (kb < kbs) row_one(pb, xs, gs + r * pb->positions, ko[kb], 0, total + r);
        }
    }
    for (long r = 0; r < rows; r++) {
        real sum = 0;
        for (int lane = 0; lane < LANES; lane++) sum += total[r][lane];
        pb->out[sample * pb->cout + first_row + r] = sum;
    }
}

static void *worker(void *arg) {
    problem *pb = arg;
    long items = pb->n * pb->groups * pb->row_blocks;
    for (;;) {
        long item = __atomic_fetch_add(&pb->next_item, 1, __ATOMIC_RELAXED);
        if (item >= items) return NULL;
        run_item(pb, item);
    }
}

/* Channels per group must be a multiple of lanes(). Returns 0; -1 if out of memory (nothing computed), or
   1 if a helper thread could not be started (the threads that did start still compute everything). */
int NAME(pss_abs_grad_sum)(const real *x, const real *g, real *out, long n, long hp, long wp, long cin,
                           long cout, long oh, long ow, long kh, long kw, long sh, long sw, long dh, long dw,
                           long groups, int threads) {
    long per_tap = cin / groups / LANES, k_blocks = kh * kw * per_tap, positions = oh * ow;
    long *offsets = malloc((size_t)(k_blocks + positions) * sizeof(long));
    if (offsets == NULL) return -1;
    for (long kb = 0; kb < k_blocks; kb++) {
        long tap = kb / per_tap;
        offsets[kb] = ((tap / kw) * dh * wp + (tap % kw) * dw) * cin + (kb % per_tap) * LANES;
    }
    for (long p = 0; p < positions; p++) offsets[k_blocks + p] = ((p / ow) * sh * wp + (p % ow) * sw) * cin;
    problem pb = {x, g, out, n, hp * wp * cin, cin, cout, positions, groups, k_blocks, offsets,
                  offsets + k_blocks, (cout / groups + ROWS - 1) / ROWS, 0};
    pthread_t helpers[63];
    int started = 0, status = 0;
    if (threads > 64) threads = 64;
    for (; started < threads - 1; started++) {
        if (pthread_create(&helpers[started], NULL, worker, &pb) != 0) {
            status = 1;
            break;
        }
    }
    worker(&pb);
    for (int t = 0; t < started; t++) pthread_join(helpers[t], NULL);
    free(offsets);
    return status;
}

int NAME(pss_lanes)(void) { return LANES; }
