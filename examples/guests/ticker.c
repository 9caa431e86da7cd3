// ticker: a guest that writes while it runs, for output-path fault tests (containerd restarted
// under it). Prints "tick N" on stdout every 20 ms and "tock N" on stderr every tenth tick,
// flushing each; `ticker COUNT` stops after COUNT ticks, without an argument it runs until
// killed. A write that fails (no reader) is counted and reported on the next line that gets out.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : -1;
    long failed = 0;
    struct timespec pause = {0, 20 * 1000 * 1000};
    for (long n = 1; count < 0 || n <= count; n++) {
        if (printf("tick %ld failed-before %ld\n", n, failed) < 0 || fflush(stdout) != 0) {
            failed++;
            clearerr(stdout);
        }
        if (n % 10 == 0 && (fprintf(stderr, "tock %ld\n", n) < 0 || fflush(stderr) != 0)) clearerr(stderr);
        while (nanosleep(&pause, &pause) != 0) {
        }
    }
    return 0;
}
