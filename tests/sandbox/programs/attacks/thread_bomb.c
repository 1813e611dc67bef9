/* Case 26, C variant: sleeping pthreads with 64 KiB stacks until pthread_create fails. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void *sleeper(void *arg) {
    sleep(60);
    return arg;
}

int main(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 65536);
    pthread_t thread;
    int count = 0, err;
    while ((err = pthread_create(&thread, &attr, sleeper, NULL)) == 0) count++;
    printf("threads %d %s\n", count, err == 11 ? "EAGAIN" : strerror(err));
    fflush(stdout);
    return 1;
}
