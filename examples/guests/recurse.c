// recurse: deep non-tail recursion to exhaust the engine's call stack ("call stack exhausted").
// `recurse DEPTH` recurses DEPTH levels and prints "depth DEPTH result R"; no argument never stops.
#include <stdio.h>
#include <stdlib.h>

/* The result of the inner call is mixed non-associatively with the current depth, so this cannot
   become a loop; nothing takes an address, so frames live on the engine stack, not linear memory. */
__attribute__((noinline)) static unsigned rec(unsigned depth, unsigned max) {
    if (max != 0 && depth >= max)
        return depth;
    unsigned r = rec(depth + 1, max);
    return (r >> 1) ^ (r << 3) ^ depth;
}

int main(int argc, char **argv) {
    unsigned max = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 0;
    unsigned r = rec(0, max);
    printf("depth %u result %u\n", max, r);
    return 0;
}
