// Shared main() for the compute benchmarks. Each bench .c defines BENCH_NAME and BENCH_DEFAULT_N,
// includes this file, then defines `BENCH_EXPORT int bench(int n)`: exported as "bench" from the
// wasm module, it makes no WASI calls and can be called without running _start.
//   <guest> [N]               run bench(N) once and print "<name>(N) = <checksum>"
//   <guest> --bench N K       native builds only: time bench(N) over K runs after one warm-up
//                             with clock_gettime and print {"median_ns":..,"checksum":..}
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __wasm__
#define BENCH_EXPORT __attribute__((export_name("bench")))
#else
#define BENCH_EXPORT
#endif

BENCH_EXPORT int bench(int n);

#ifndef __wasm__
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int bench_mode(int n, int runs) {
    if (runs < 1)
        runs = 1;
    long long *t = malloc((size_t)runs * sizeof *t);
    /* Call through a volatile pointer so the compiler cannot see that bench() is pure and
       hoist or merge the timed calls. */
    int (*volatile fn)(int) = bench;
    int checksum = fn(n); /* warm-up */
    for (int i = 0; i < runs; i++) {
        long long t0 = now_ns();
        int c = fn(n);
        t[i] = now_ns() - t0;
        if (c != checksum) {
            fprintf(stderr, "%s: checksum changed between runs\n", BENCH_NAME);
            return 1;
        }
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_ll);
    long long median = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
    printf("{\"median_ns\": %lld, \"checksum\": %d}\n", median, checksum);
    free(t);
    return 0;
}
#endif

int main(int argc, char **argv) {
#ifndef __wasm__
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : BENCH_DEFAULT_N;
        return bench_mode(n, argc > 3 ? atoi(argv[3]) : 5);
    }
#endif
    int n = argc > 1 ? atoi(argv[1]) : BENCH_DEFAULT_N;
    printf("%s(%d) = %d\n", BENCH_NAME, n, bench(n));
    return 0;
}
