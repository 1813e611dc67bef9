/* Case 2, C variant: write 2 MB past RLIMIT_FSIZE; the kernel sends SIGXFSZ. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    static char block[65536];
    memset(block, 'x', sizeof block);
    int fd = open("big.bin", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    for (int i = 0; i < 32; i++) {
        if (write(fd, block, sizeof block) < 0) return 3;
    }
    return 0;
}
