/* Calls getpid through the i386 ABI (int 0x80) from a 64-bit process and prints the raw
 * result: a pid where the i386 ABI is allowed, -38 (-ENOSYS) where the filter rejects it. */
#include <stdio.h>

int main(void) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    printf("%ld\n", ret);
    return 0;
}
