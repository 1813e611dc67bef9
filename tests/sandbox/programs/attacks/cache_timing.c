/* Case 31: flush+reload timing with clflush and rdtscp on a page of the shared libc. Prints the
 * median cycles of cached and flushed loads; it measures, and that is not what is judged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x86intrin.h>

static int compare(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

static unsigned long long probe(volatile const char *address) {
    unsigned int aux;
    unsigned long long start = __rdtscp(&aux);
    (void)*address;
    return __rdtscp(&aux) - start;
}

int main(void) {
    enum { ROUNDS = 20000 };
    static unsigned long long hit[ROUNDS], miss[ROUNDS];
    volatile const char *target = (volatile const char *)(void *)memcpy;
    for (int i = 0; i < ROUNDS; i++) {
        (void)*target;
        hit[i] = probe(target);
        _mm_clflush((const void *)target);
        _mm_mfence();
        miss[i] = probe(target);
    }
    qsort(hit, ROUNDS, sizeof hit[0], compare);
    qsort(miss, ROUNDS, sizeof miss[0], compare);
    printf("hit %llu\nmiss %llu\n", hit[ROUNDS / 2], miss[ROUNDS / 2]);
    return 0;
}
