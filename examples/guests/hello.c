// hello: the smallest real guest; prints one line and exits 0 (start-time and smoke tests).
#include <stdio.h>

int main(void) {
    printf("hello from wasmlet\n");
    return 0;
}
