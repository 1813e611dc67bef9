/*
 * PID 1 of a sandbox. Born by clone3 in its new PID, IPC and UTS namespaces (and, on cgroup2,
 * in the stage's cgroup), it runs DESIGN.md's steps 1-4 in order, starts the program, and then
 * stays a tiny waiter that runs no job code: it reaps every process of the namespace, forwards
 * the daemon's signal numbers to the program's process group, and once the program has exited
 * kills and reaps whatever is left, so that the one record it then writes (the program's
 * status and resource usage) is final: the short exit path. Its own exit (which tears the
 * namespaces down) is off the daemon's critical path.
 *
 * Any failed step becomes one error record naming the step, and exit status 127.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"

static int report_fd = -1;

static int write_zero(int fd)
{
    /* "0" is this thread: a single-threaded process migrating itself skips the kernel's
     * global cgroup lock (and its RCU wait) that a write of a pid would take. */
    return write(fd, "0", 1) == 1 ? 0 : -1;
}

static int join_v1_groups(const struct spec *spec)
{
    for (int i = 0; i < spec->ncgroup_v1; i++) {
        if (write_zero(spec->cgroup_v1[i]) < 0)
            return -1;
        close(spec->cgroup_v1[i]);
    }
    return 0;
}

static int enter_network(const struct spec *spec)
{
    if (spec->flags & SPEC_SHARE_NETWORK)
        return 0;
    if (spec->netns_fd >= 0) {
        int done = setns(spec->netns_fd, CLONE_NEWNET);
        close(spec->netns_fd);
        return done;
    }
    /* No pooled namespace: a fresh one (slower). */
    if (unshare(CLONE_NEWNET) < 0)
        return -1;
    return loopback_up();
}

static int enter_mounts(const struct spec *spec)
{
    /* A private copy of the prepared root's namespace: its mounts are the sandbox's alone. */
    if (setns(spec->mntns_fd, CLONE_NEWNS) < 0)
        return -1;
    close(spec->mntns_fd);
    return unshare(CLONE_NEWNS);
}

static int set_hostname(const struct spec *spec)
{
    return sethostname(spec->hostname, strlen(spec->hostname));
}

static int keep_only(const int *keep, int count)
{
    /* close_range over the gaps between the descriptors to keep (sorted ascending). */
    unsigned int low = 0;
    int sorted[8];
    memcpy(sorted, keep, (size_t)count * sizeof *keep);
    for (int i = 1; i < count; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int swap = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = swap;
        }
    for (int i = 0; i < count; i++) {
        if (sorted[i] < 0)
            continue;
        if ((unsigned int)sorted[i] > low &&
            syscall(SYS_close_range, low, (unsigned int)sorted[i] - 1, 0) < 0)
            return -1;
        low = (unsigned int)sorted[i] + 1;
    }
    return (int)syscall(SYS_close_range, low, ~0U, 0);
}

static void forward(pid_t program, const unsigned char *data, ssize_t len)
{
    for (ssize_t i = 0; i < len; i++)
        if (data[i] > 0 && data[i] < NSIG)
            kill(-program, data[i]);
}

static void wait_for_program(pid_t program, int signal_fd, int control_fd, int *status,
                             struct rusage *usage)
{
    struct pollfd watched[2] = {{signal_fd, POLLIN, 0}, {control_fd, POLLIN, 0}};
    for (;;) {
        int found = 0, child_status;
        pid_t pid;
        struct rusage child_usage;
        while ((pid = wait4(-1, &child_status, WNOHANG | __WALL, &child_usage)) > 0)
            if (pid == program) {
                *status = child_status;
                *usage = child_usage;
                found = 1;
            }
        if (found)
            return;
        if (poll(watched, watched[1].fd >= 0 ? 2 : 1, -1) < 0)
            continue;
        if (watched[0].revents) {
            struct signalfd_siginfo info[8];
            (void)!read(signal_fd, info, sizeof info);
        }
        if (watched[1].revents) {
            unsigned char data[256];
            ssize_t len = read(control_fd, data, sizeof data);
            if (len > 0)
                forward(program, data, len);
            else if (len == 0 || errno != EINTR)
                watched[1].fd = -1; /* EOF: the daemon will not signal any more */
        }
    }
}

static void reap_everything(void)
{
    /* The program is gone; whatever it left behind goes too, before the exit is reported. */
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
        ;
}

static void read_exec_result(int exec_fd)
{
    char text[512];
    size_t used = 0;
    ssize_t len;
    while (used < sizeof text - 1 &&
           ((len = read(exec_fd, text + used, sizeof text - 1 - used)) > 0 || (len < 0 && errno == EINTR)))
        if (len > 0)
            used += (size_t)len;
    close(exec_fd);
    if (used > 0)
        report_record(report_fd, REPORT_ERROR, text, (uint32_t)used);
}

_Noreturn void run_init(const struct spec *spec)
{
    sigset_t children;
    int exec_pipe[2], signal_fd, status = 0;
    struct rusage usage;
    pid_t program;
    report_fd = spec->report_fd;
    fail_to(report_fd, 1);
    if (spec->flags & SPEC_TIMING)
        timing_enable("init");
    mark("start");
    /* Its name says what it is (its command line is the launcher's, which names no host path). */
    prctl(PR_SET_NAME, "pistond-init", 0, 0, 0);
    /* If the launcher dies, so does the sandbox (and with PID 1, its whole namespace). */
    STEP("parent death signal", prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
    STEP("new session", setsid());
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigemptyset(&children);
    sigaddset(&children, SIGCHLD);
    STEP("signal mask", sigprocmask(SIG_SETMASK, &children, NULL));
    STEP("cgroup join", join_v1_groups(spec));
    if (spec->cgroup2_fd >= 0)
        close(spec->cgroup2_fd);
    STEP("cgroup namespace", unshare(CLONE_NEWCGROUP));
    STEP("network", enter_network(spec));
    STEP("namespaces", enter_mounts(spec));
    {
        char text[512];
        if (finish_root(spec, text, sizeof text) < 0)
            fail_text(text);
        mark("mounts");
    }
    STEP("hostname", set_hostname(spec));
    STEP("exec pipe", pipe2(exec_pipe, O_CLOEXEC));
    signal_fd = signalfd(-1, &children, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0)
        fail_step("signalfd", errno);
    {
        int keep[8] = {spec->stdin_fd, spec->stdout_fd, spec->stderr_fd, report_fd,
                       spec->control_fd, exec_pipe[0], exec_pipe[1], signal_fd};
        STEP("close fds", keep_only(keep, 8));
    }
    program = fork();
    if (program < 0)
        fail_step("fork program", errno);
    if (program == 0) {
        close(signal_fd);
        close(exec_pipe[0]);
        close(spec->control_fd);
        run_program(spec, exec_pipe[1]);
    }
    mark("fork program");
    /* Only the program keeps its stdio: EOF reaches the daemon when it and its children end. */
    close(spec->stdin_fd);
    close(spec->stdout_fd);
    close(spec->stderr_fd);
    close(exec_pipe[1]);
    read_exec_result(exec_pipe[0]);
    mark("exec seen");
    memset(&usage, 0, sizeof usage);
    wait_for_program(program, signal_fd, spec->control_fd, &status, &usage);
    mark("program reaped");
    reap_everything();
    mark("all reaped");
    timing_flush(report_fd);
    report_exit(report_fd, status, &usage);
    if (!(spec->flags & SPEC_SHARE_NETWORK)) {
        unsigned char clean = network_namespace_clean() == 1;
        report_record(report_fd, REPORT_NETWORK, &clean, 1);
    }
    _exit(0);
}
