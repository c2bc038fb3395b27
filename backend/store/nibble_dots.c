/* Integer dot products of packed 4-bit codes with an int8 query, for the exact search's bounds (exact.py).

   A plane holds rows of `row_bytes` bytes (a multiple of 64). Byte j of each 64-byte block b holds two codes
   in 0..15: the low nibble is dimension 128 b + j, the high nibble dimension 128 b + 64 + j, so a query is
   read in its natural order. out_a[i] (and out_b[i], for a second query when query_b is not NULL: the codes
   are loaded once) is the sum over the blocks [block_lo, block_hi) of code * query, exactly (int32:
   |term| <= 15 * 128, so rows of up to a million dimensions cannot overflow; exact.py checks the length).

   With AVX-512 VNNI one instruction multiplies and sums 64 unsigned codes with 64 signed query bytes, and a
   single query takes four rows at a time (four memory streams in flight: 1.4x one row at a time, measured);
   other CPUs get a plain loop. Rows are split between `threads` POSIX threads. Plain C; kernel loader: native.py. */

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

#define PREFETCH_BYTES 1024

typedef struct {
    const uint8_t *plane;
    long row_bytes, block_lo, block_hi;
    const int64_t *rows; /* NULL: rows first..last of the plane, else these row numbers */
    long first, last;
    const int8_t *query_a, *query_b;  /* [row_bytes * 2] each */
    int32_t *out_a, *out_b;
} job;

static void dot_row(const uint8_t *row, const int8_t *qa, const int8_t *qb, long block_lo, long block_hi,
                    int32_t *out_a, int32_t *out_b) {
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    const __m512i low_mask = _mm512_set1_epi8(0x0F);
    __m512i acc_a = _mm512_setzero_si512(), acc_b = _mm512_setzero_si512();
    for (long b = block_lo; b < block_hi; b++) {
        __m512i packed = _mm512_loadu_si512((const void *)(row + 64 * b));
        __builtin_prefetch(row + 64 * b + PREFETCH_BYTES); /* the next page too: hardware prefetchers stop at 4 KiB */
        __m512i lo = _mm512_and_si512(packed, low_mask);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_mask);
        acc_a = _mm512_dpbusd_epi32(acc_a, lo, _mm512_loadu_si512((const void *)(qa + 128 * b)));
        acc_a = _mm512_dpbusd_epi32(acc_a, hi, _mm512_loadu_si512((const void *)(qa + 128 * b + 64)));
        if (qb) {
            acc_b = _mm512_dpbusd_epi32(acc_b, lo, _mm512_loadu_si512((const void *)(qb + 128 * b)));
            acc_b = _mm512_dpbusd_epi32(acc_b, hi, _mm512_loadu_si512((const void *)(qb + 128 * b + 64)));
        }
    }
    *out_a = _mm512_reduce_add_epi32(acc_a);
    if (qb) *out_b = _mm512_reduce_add_epi32(acc_b);
#else
    int32_t sum_a = 0, sum_b = 0;
    for (long b = block_lo; b < block_hi; b++) {
        const uint8_t *bytes = row + 64 * b;
        for (int j = 0; j < 64; j++) {
            int lo = bytes[j] & 15, hi = bytes[j] >> 4;
            sum_a += lo * qa[128 * b + j] + hi * qa[128 * b + 64 + j];
            if (qb) sum_b += lo * qb[128 * b + j] + hi * qb[128 * b + 64 + j];
        }
    }
    *out_a = sum_a;
    if (qb) *out_b = sum_b;
#endif
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/* Four rows at once against one query: four memory streams in flight, each query vector loaded once. */
static void dot_rows4(const uint8_t *const row[4], const int8_t *qa, long block_lo, long block_hi, int32_t out[4]) {
    const __m512i low_mask = _mm512_set1_epi8(0x0F);
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    for (long b = block_lo; b < block_hi; b++) {
        __m512i q_lo = _mm512_loadu_si512((const void *)(qa + 128 * b));
        __m512i q_hi = _mm512_loadu_si512((const void *)(qa + 128 * b + 64));
        for (int r = 0; r < 4; r++) {
            __m512i packed = _mm512_loadu_si512((const void *)(row[r] + 64 * b));
            __builtin_prefetch(row[r] + 64 * b + PREFETCH_BYTES);
            acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_and_si512(packed, low_mask), q_lo);
            acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_mask), q_hi);
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_epi32(acc[r]);
}
#endif

static void *run_job(void *arg) {
    const job *w = (const job *)arg;
    long i = w->first;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    if (!w->query_b)
        for (; i + 4 <= w->last; i += 4) {
            const uint8_t *rows4[4];
            for (int r = 0; r < 4; r++) rows4[r] = w->plane + (w->rows ? (long)w->rows[i + r] : i + r) * w->row_bytes;
            dot_rows4(rows4, w->query_a, w->block_lo, w->block_hi, w->out_a + i);
        }
#endif
    for (; i < w->last; i++) {
        long row = w->rows ? (long)w->rows[i] : i;
        dot_row(w->plane + row * w->row_bytes, w->query_a, w->query_b, w->block_lo, w->block_hi, w->out_a + i,
                w->out_b ? w->out_b + i : NULL);
    }
    return NULL;
}

/* out_a[i] (and out_b[i] unless query_b is NULL) for i < count: row i of the plane (rows == NULL) or row rows[i]. Returns 0, or 1 when
   a thread could not be started (its share is then done on this thread: the same result). */
int pss_nibble_dots(const uint8_t *plane, long row_bytes, const int64_t *rows, long count, long block_lo,
                    long block_hi, const int8_t *query_a, const int8_t *query_b, int32_t *out_a, int32_t *out_b,
                    int threads) {
    enum { MAX_THREADS = 64 };
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (count < 64L * threads) threads = 1;
    job jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started = 0, fallback = 0;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){plane, row_bytes, block_lo, block_hi, rows, count * t / threads, count * (t + 1) / threads,
                        query_a, query_b, out_a, out_b};
        if (t > 0) {
            if (pthread_create(&ids[started], NULL, run_job, &jobs[t]) == 0) {
                started++;
                continue;
            }
            fallback = 1;
            run_job(&jobs[t]);
        }
    }
    run_job(&jobs[0]);
    for (int t = 0; t < started; t++) pthread_join(ids[t], NULL);
    return fallback;
}
