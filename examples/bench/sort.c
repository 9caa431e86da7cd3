// sort: quicksort of n pseudo-random ints (memory and branch heavy benchmark).
// bench(n) returns a checksum of the sorted array (-1 if allocation fails or it is not sorted).
#include <stdint.h>
#include <stdlib.h>

#define BENCH_NAME "sort"
#define BENCH_DEFAULT_N 1000000
#include "bench_main.h"

static void quicksort(int32_t *a, long lo, long hi) {
    while (lo < hi) {
        int32_t pivot = a[lo + (hi - lo) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                int32_t t = a[i]; a[i] = a[j]; a[j] = t;
                i++; j--;
            }
        }
        /* recurse into the smaller half, loop on the larger one */
        if (j - lo < hi - i) { quicksort(a, lo, j); lo = i; }
        else { quicksort(a, i, hi); hi = j; }
    }
}

BENCH_EXPORT int bench(int n) {
    if (n <= 0)
        return 0;
    int32_t *a = malloc((size_t)n * sizeof *a); /* wasm: dlmalloc over memory.grow, no WASI */
    if (a == NULL)
        return -1;
    uint32_t x = 2463534242u;
    for (int i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        a[i] = (int32_t)x;
    }
    quicksort(a, 0, n - 1);
    uint32_t sum = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && a[i - 1] > a[i]) { free(a); return -1; }
        sum = sum * 31u + (uint32_t)a[i];
    }
    free(a);
    return (int)(sum & 0x7fffffff);
}
