/* Case 24: the double-chroot escape and its fchdir variant. argv[1]: name of a canary file the
 * test placed in the host's /. One line per probe. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *result(int rc) {
    if (rc == 0) return "ok";
    return errno == EPERM ? "EPERM" : errno == ENOENT ? "ENOENT" : errno == EACCES ? "EACCES"
        : strerror(errno);
}

int main(int argc, char **argv) {
    char path[4096];
    mkdir("x", 0755);
    int root_fd = open("/", O_RDONLY | O_DIRECTORY);
    printf("chroot-x %s\n", result(chroot("x")));
    for (int i = 0; i < 64; i++) chdir("..");
    printf("chroot-dot %s\n", result(chroot(".")));
    printf("fchdir %s\n", result(fchdir(root_fd)));
    for (int i = 0; i < 64; i++) chdir("..");
    printf("cwd %s\n", getcwd(path, sizeof path) ? path : strerror(errno));
    struct stat root, up;
    stat("/", &root);
    stat("/..", &up);
    printf("dotdot-is-root %s\n", root.st_ino == up.st_ino && root.st_dev == up.st_dev ? "yes" : "no");
    if (argc > 1) {
        snprintf(path, sizeof path, "../../../../../../%s", argv[1]);
        printf("canary-relative %s\n", result(access(path, F_OK)));
        snprintf(path, sizeof path, "/%s", argv[1]);
        printf("canary-root %s\n", result(access(path, F_OK)));
    }
    return 0;
}
