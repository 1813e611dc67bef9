#include <stdio.h>

int main(void) {
    printf("Hello from C inside a pistond sandbox!\n");
    return 0;
}
