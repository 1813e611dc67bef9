/*
 * The program, forked by PID 1: DESIGN.md steps 5-7 and the exec. In order: default signal
 * mask, its own session, stdio, rlimits (only lowered), the privilege drop, the working
 * directory, no_new_privs, Landlock, seccomp (last: the filter may deny calls the steps before
 * need), every other descriptor close-on-exec, exec with exactly the spec's environment.
 *
 * A failure is written to the exec pipe (close-on-exec: silence means the exec happened) as
 * "<step>: <reason>", which PID 1 reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif


static int attach_stdio(const struct spec *spec)
{
    if (dup2(spec->stdin_fd, 0) < 0 || dup2(spec->stdout_fd, 1) < 0 || dup2(spec->stderr_fd, 2) < 0)
        return -1;
    return 0;
}

static rlim_t lower(rlim_t current, rlim_t ceiling)
{
    if (current == RLIM_INFINITY)
        return ceiling;
    return current < ceiling ? current : ceiling;
}

static int apply_rlimits(const struct spec *spec)
{
    for (int i = 0; i < spec->nrlimits; i++) {
        struct rlimit limit;
        const struct rlimit_spec *wanted = &spec->rlimits[i];
        if (getrlimit(wanted->resource, &limit) < 0)
            return -1;
        limit.rlim_max = lower(limit.rlim_max, wanted->ceiling);
        limit.rlim_cur = lower(limit.rlim_cur, limit.rlim_max);
        if (wanted->flags & RLIMIT_SOFT_IS_HARD)
            limit.rlim_cur = limit.rlim_max;
        if (setrlimit(wanted->resource, &limit) < 0)
            return -1;
    }
    return 0;
}

static int drop_privileges(uid_t uid)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2];
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    /* The bounding set first, while CAP_SETPCAP is still held; then groups, gid and uid (from
     * 0 to non-zero everywhere, which clears the permitted and effective sets); then every set
     * explicitly, the inheritable and ambient ones included. */
    for (int cap = 0; cap <= server.last_cap; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
        return -1;
    memset(none, 0, sizeof none);
    if (syscall(SYS_capset, &header, none) < 0)
        return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return -1;
    if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
        return -1;
    if (ruid != uid || euid != uid || suid != uid || rgid != uid || egid != uid ||
        sgid != uid || getgroups(0, NULL) != 0) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

static int install_filter(void)
{
    struct sock_fprog program;
    if (server.filter_len == 0)
        return 0;
    program.len = (unsigned short)(server.filter_len / sizeof(struct sock_filter));
    program.filter = (struct sock_filter *)server.filter;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0);
}

static const char *find_path(char *const *envp)
{
    for (; *envp != NULL; envp++)
        if (strncmp(*envp, "PATH=", 5) == 0)
            return *envp + 5;
    return "/usr/local/bin:/usr/bin:/bin";
}

static _Noreturn void exec_program(const struct spec *spec)
{
    const char *name = spec->argv[0];
    int err = ENOENT;
    if (strchr(name, '/') != NULL) {
        execve(name, spec->argv, spec->envp);
        err = errno;
    } else {
        /* execvpe would search the launcher's PATH: search the stage's own. */
        const char *path = find_path(spec->envp);
        char candidate[4096];
        while (*path) {
            const char *end = strchr(path, ':');
            size_t len = end ? (size_t)(end - path) : strlen(path);
            if (len > 0 && len + 1 + strlen(name) < sizeof candidate) {
                memcpy(candidate, path, len);
                candidate[len] = '/';
                strcpy(candidate + len + 1, name);
                execve(candidate, spec->argv, spec->envp);
                if (errno != ENOENT && errno != ENOTDIR)
                    err = errno;
            }
            path += len + (end ? 1 : 0);
        }
    }
    {
        char text[128];
        const char *code = strerrorname_np(err);
        snprintf(text, sizeof text, "exec failed: %s", code ? code : "EIO");
        fail_text(text);
    }
}

_Noreturn void run_program(const struct spec *spec, int exec_pipe)
{
    sigset_t none;
    fail_to(exec_pipe, 0);
    if (spec->flags & SPEC_TIMING)
        timing_enable("program");
    mark("start");
    sigemptyset(&none);
    STEP("signal mask", sigprocmask(SIG_SETMASK, &none, NULL));
    STEP("new session", setsid());
    STEP("stdio", attach_stdio(spec));
    STEP("rlimits", apply_rlimits(spec));
    /* --- privilege drop: from here on this process is the box uid, without capabilities --- */
    STEP("privilege drop", drop_privileges(spec->uid));
    STEP("working directory", chdir(spec->cwd));
    STEP("no_new_privs", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    if (server.landlock_abi > 0)
        STEP("landlock", landlock_restrict(spec));
    STEP("seccomp", install_filter());
    timing_flush(spec->report_fd);
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        fail_step("close fds", errno);
    exec_program(spec);
}
