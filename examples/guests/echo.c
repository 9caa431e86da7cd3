// echo: prints argv and environ so tests can check what the host passed in;
// `--exit N` exits with code N via exit(), `--stderr MSG` writes MSG (and a newline) to stderr.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; e && *e; e++)
        printf("env %s\n", *e);

    int code = 0, do_exit = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--stderr") == 0 && i + 1 < argc) {
            fprintf(stderr, "%s\n", argv[++i]);
        } else if (strcmp(argv[i], "--exit") == 0 && i + 1 < argc) {
            code = atoi(argv[++i]);
            do_exit = 1;
        }
    }
    if (do_exit)
        exit(code); /* proc_exit(code), after flushing stdout */
    return 0;
}
