// cpuhog: a pure compute loop with no host calls and no memory traffic, for fuel/kill tests.
// `cpuhog N` runs N xorshift steps and prints the checksum; no argument runs (practically) forever.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    uint64_t iters = argc > 1 ? strtoull(argv[1], NULL, 10) : UINT64_MAX; /* ~forever */
    uint64_t x = 88172645463325252ull;
    /* Each step depends on the previous one and the result is printed, so the loop cannot be
       removed; it only touches locals, so it makes no calls and no loads or stores. */
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    printf("checksum %llu\n", (unsigned long long)x);
    return 0;
}
