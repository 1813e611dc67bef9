/*
 * Starting processes: a sandbox's PID 1 by clone3, born in its new PID, IPC and UTS
 * namespaces and, where the host has cgroup2, in the stage's cgroup (CLONE_INTO_CGROUP: in the
 * job's group from its first instruction, no migration, no wait for the kernel's cgroup lock);
 * and the loopback-only network namespaces the daemon pools per box slot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"

static pid_t clone3_call(struct clone_args *args)
{
    return (pid_t)syscall(SYS_clone3, args, sizeof *args);
}

pid_t spawn_sandbox(const struct spec *spec, int *pidfd, char *error, size_t error_size)
{
    struct clone_args args;
    pid_t pid;
    memset(&args, 0, sizeof args);
    /* The network namespace is the slot's (entered by PID 1) or the host's; the mount
     * namespace is a copy of the prepared root's, made by PID 1 once it has entered it. */
    args.flags = CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    if (spec->cgroup2_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)spec->cgroup2_fd;
    }
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    mark("clone");
    pid = clone3_call(&args);
    if (pid < 0) {
        describe(error, error_size, "clone3", errno);
        return -1;
    }
    if (pid == 0)
        run_init(spec);
    return pid;
}

int make_network_namespace(char *error, size_t error_size)
{
    int ready[2], hold[2], fd = -1;
    unsigned char answer[2] = {0, 0};
    char byte = 0, path[64];
    pid_t pid;
    if (pipe2(ready, O_CLOEXEC) < 0) {
        describe(error, error_size, "pipe", errno);
        return -1;
    }
    if (pipe2(hold, O_CLOEXEC) < 0) {
        describe(error, error_size, "pipe", errno);
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        /* A helper: it makes the namespace and stays in it until the server has opened it.
         * It answers '1', or 'E' and the errno of the step that failed. */
        close(ready[0]);
        close(hold[1]);
        if (unshare(CLONE_NEWNET) == 0 && loopback_up() == 0) {
            (void)!write(ready[1], "1", 1);
        } else {
            unsigned char failed[2] = {'E', (unsigned char)(errno < 256 ? errno : EIO)};
            (void)!write(ready[1], failed, sizeof failed);
        }
        (void)!read(hold[0], &byte, 1);
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    if (pid < 0) {
        describe(error, error_size, "fork", errno);
    } else if (read(ready[0], answer, sizeof answer) >= 1 && answer[0] == '1') {
        /* The helper is alive and not reaped (only this function waits for it): the pid in
         * the path is its own. */
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            describe(error, error_size, "network", errno);
    } else if (answer[0] == 'E') {
        describe(error, error_size, "network", answer[1]);
    } else {
        snprintf(error, error_size, "network: the namespace's helper failed");
    }
    close(hold[1]);
    close(ready[0]);
    if (pid > 0)
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
    return fd;
}
