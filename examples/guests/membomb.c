// membomb: allocates 1 MiB chunks (touching every page) until malloc fails, for memory-cap tests.
// Prints "allocated N MiB" and exits 3 when malloc returns NULL; `membomb N` stops after N MiB
// (exit 0 if all N MiB were allocated).
#include <stdio.h>
#include <stdlib.h>

#define CHUNK (1024 * 1024)

int main(int argc, char **argv) {
    long limit = argc > 1 ? atol(argv[1]) : -1;
    long mib = 0;
    while (limit < 0 || mib < limit) {
        volatile char *p = malloc(CHUNK);
        if (p == NULL) {
            printf("allocated %ld MiB\n", mib);
            return 3;
        }
        for (size_t off = 0; off < CHUNK; off += 4096)
            p[off] = (char)off | 1;
        mib++;
    }
    printf("allocated %ld MiB\n", mib);
    return 0;
}
