#include <stdio.h>

int main(void) {
    printf("OK\n");
    return 0;
}
