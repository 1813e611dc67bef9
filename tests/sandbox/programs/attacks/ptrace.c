/* Case 22: attach to other processes. One line per probe: name and errno name (or "ok").
 * PTRACE_SEIZE sweeps pids up to pid_max (every pid to 8192, then every 8th: the filter answers
 * before any pid lookup, and a full sweep takes seconds on a loaded 2-core host) and prints how
 * many calls did not fail EPERM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *name_of(int err) {
    switch (err) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    default: return strerror(err);
    }
}

static void report(const char *probe, long result) {
    printf("%s %s\n", probe, name_of(result < 0 ? errno : 0));
}

static long open_mem(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDWR);
    if (fd >= 0) close(fd);
    return fd;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    if (child == 0) {
        for (;;) pause();
    }
    report("attach-init", ptrace(PTRACE_ATTACH, 1, 0, 0));
    report("seize-init", ptrace(PTRACE_SEIZE, 1, 0, 0));
    report("attach-child", ptrace(PTRACE_ATTACH, child, 0, 0));
    report("seize-child", ptrace(PTRACE_SEIZE, child, 0, 0));
    report("traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
    long pid_max = 32768;
    FILE *file = fopen("/proc/sys/kernel/pid_max", "r");
    if (file) {
        if (fscanf(file, "%ld", &pid_max) != 1) pid_max = 32768;
        fclose(file);
    }
    long not_eperm = 0;
    for (long pid = 1; pid <= pid_max; pid += pid < 8192 ? 1 : 8) {
        if (ptrace(PTRACE_SEIZE, (pid_t)pid, 0, 0) == 0 || errno != EPERM) not_eperm++;
    }
    printf("seize-all-pids %ld\n", not_eperm);
    char buffer[16];
    struct iovec local = {buffer, sizeof buffer}, remote = {(void *)0x400000, sizeof buffer};
    report("vm-readv-init", syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
    report("vm-readv-child", syscall(SYS_process_vm_readv, child, &local, 1, &remote, 1, 0));
    report("vm-writev-child", syscall(SYS_process_vm_writev, child, &local, 1, &remote, 1, 0));
    report("mem-init", open_mem(1));
    report("mem-child", open_mem(child));
    long pidfd = syscall(SYS_pidfd_open, child, 0);
    report("pidfd-open-child", pidfd);
    report("pidfd-getfd", syscall(SYS_pidfd_getfd, pidfd, 0, 0));
    report("kcmp", syscall(SYS_kcmp, getpid(), child, 0, 0, 0));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    fflush(stdout);
    return 0;
}
