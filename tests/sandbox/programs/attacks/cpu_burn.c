/* Case 13, C variant: 8 x CPU-count busy pthreads. */
#include <pthread.h>
#include <unistd.h>

static void *spin(void *arg) {
    volatile unsigned long n = 0;
    for (;;) n++;
    return arg;
}

int main(void) {
    long count = 8 * sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t thread;
    for (long i = 0; i < count; i++) pthread_create(&thread, NULL, spin, NULL);
    spin(NULL);
    return 0;
}
