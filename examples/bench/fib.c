// fib: naive recursive Fibonacci, a call-heavy compute benchmark. bench(n) returns fib(n) mod 2^32.
#define BENCH_NAME "fib"
#define BENCH_DEFAULT_N 30
#include "bench_main.h"

static unsigned fib(unsigned n) {
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

BENCH_EXPORT int bench(int n) {
    return (int)fib((unsigned)n);
}
