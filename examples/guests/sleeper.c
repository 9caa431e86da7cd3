// sleeper: a guest blocked in a host call (poll_oneoff) for kill/timeout tests.
// `sleeper SECONDS` (float) prints "sleeping", sleeps, prints "woke"; no argument sleeps forever.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("sleeping\n");
    fflush(stdout);
    if (argc < 2) {
        for (;;)
            sleep(1);
    }
    double secs = atof(argv[1]);
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
    printf("woke\n");
    return 0;
}
