/* Case 29, C part: raise RLIMIT_CORE, set dumpable, write core_pattern, crash a child, look for
 * core files, then crash with SIGSEGV. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int cores_in(const char *path) {
    int found = 0;
    DIR *dir = opendir(path);
    if (!dir) return 0;
    struct dirent *entry;
    while ((entry = readdir(dir)))
        found += strcmp(entry->d_name, "core") == 0 || strncmp(entry->d_name, "core.", 5) == 0;
    closedir(dir);
    return found;
}

int main(void) {
    struct rlimit big = {1 << 30, 1 << 30};
    printf("raise-core %s\n", setrlimit(RLIMIT_CORE, &big) == 0 ? "ok" : "fail");
    printf("dumpable %d\n", prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
    int fd = open("/proc/sys/kernel/core_pattern", O_WRONLY);
    printf("core_pattern %s\n", fd >= 0 && write(fd, "core", 4) == 4 ? "ok" : "fail");
    pid_t child = fork();
    if (child == 0) {
        *(volatile int *)0 = 1;
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    printf("child signal=%d core=%s\n", WTERMSIG(status), WCOREDUMP(status) ? "yes" : "no");
    printf("core-files %d\n", cores_in(".") + cores_in("/tmp"));
    fflush(stdout);
    *(volatile int *)0 = 1;
    return 0;
}
