/* Case 33: every call of the seccomp deny-list, raw, with harmless arguments.
 * stdout: "name errno" per deny-list entry, in the order of reference/attacks.md.
 * stderr: argument filters (clone flags, socket families and protocols, junk in high bits,
 * personality) and the other ABIs (i386 int 0x80, x32), each tried in a child process. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct call {
    const char *name;
    long nr;
    long a[6];
};

static const char *errname(int err) {
    switch (err) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EACCES: return "EACCES";
    default: return strerror(err);
    }
}

static const char *run(long nr, const long *a) {
    errno = 0;
    long rc = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (rc == 0 && (nr == 56)) _exit(0); /* a clone that succeeded: the child leaves */
    if (rc >= 0 && nr == 41) close((int)rc);
    if (rc > 0 && nr == 56) waitpid((pid_t)rc, NULL, 0);
    return errname(rc < 0 ? errno : 0);
}

static const char *other_abi(int x32) {
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        long rc;
        if (x32) {
            rc = syscall(0x40000000L | 39L);
            _exit(rc < 0 && errno == ENOSYS ? 38 : 0);
        }
        __asm__ volatile("int $0x80" : "=a"(rc) : "a"(20L) : "memory");
        _exit(rc == -38 ? 38 : 0);
    }
    int status;
    waitpid(child, &status, 0);
    if (WIFSIGNALED(status)) return WTERMSIG(status) == SIGSYS ? "SIGSYS" : "signal";
    return WEXITSTATUS(status) == 38 ? "ENOSYS" : "allowed";
}

int main(void) {
    static char zeros[4096];
    long z = (long)zeros;
    struct call denied[] = {
        {"unshare", 272, {0}}, {"setns", 308, {-1, 0}}, {"mount", 165, {0}},
        {"umount2", 166, {(long)"/nonexistent", 0}}, {"pivot_root", 155, {0, 0}},
        {"chroot", 161, {(long)"/"}}, {"open_tree", 428, {-1, 0, 0}},
        {"move_mount", 429, {-1, 0, -1, 0, 0}}, {"fsopen", 430, {0, 0}},
        {"fsconfig", 431, {-1, 0, 0, 0, 0}}, {"fsmount", 432, {-1, 0, 0}},
        {"fspick", 433, {-1, 0, 0}}, {"mount_setattr", 442, {-1, 0, 0, 0, 0}},
        {"clone3", 435, {0, 0}},
        {"init_module", 175, {0, 0, 0}}, {"finit_module", 313, {-1, 0, 0}},
        {"delete_module", 176, {(long)"nonexistent", 04000}}, {"kexec_load", 246, {0, 0, 0, 0}},
        {"kexec_file_load", 320, {-1, -1, 0, 0, 0}}, {"reboot", 169, {0, 0, 0, 0}},
        {"swapon", 167, {(long)"/nonexistent", 0}}, {"swapoff", 168, {(long)"/nonexistent"}},
        {"acct", 163, {(long)"/nonexistent"}}, {"syslog", 103, {10, 0, 0}},
        {"quotactl", 179, {0, 0, 0, 0}}, {"settimeofday", 164, {0, 0}},
        {"clock_settime", 227, {-1, z}}, {"clock_adjtime", 305, {-1, z}},
        {"adjtimex", 159, {z}}, {"iopl", 172, {0}}, {"ioperm", 173, {0, 0, 0}},
        {"personality", 135, {0x0008}},
        {"bpf", 321, {-1, 0, 0}}, {"perf_event_open", 298, {0, 0, -1, -1, 0}},
        {"userfaultfd", 323, {0}}, {"io_uring_setup", 425, {0, 0}},
        {"io_uring_enter", 426, {-1, 0, 0, 0, 0, 0}}, {"io_uring_register", 427, {-1, 0, 0, 0}},
        {"keyctl", 250, {-1, 0, 0, 0, 0}}, {"add_key", 248, {0, 0, 0, 0, 0}},
        {"request_key", 249, {0, 0, 0, 0}}, {"fanotify_init", 300, {0, 0}},
        {"open_by_handle_at", 304, {-1, 0, 0}}, {"name_to_handle_at", 303, {-1, 0, 0, 0, 0}},
        {"modify_ldt", 154, {0, 0, 0}}, {"memfd_secret", 447, {0}},
        {"mbind", 237, {0, 0, 0, 0, 0, 0}}, {"move_pages", 279, {0, 0, 0, 0, 0, 0}},
        {"migrate_pages", 256, {0, 0, 0, 0}},
        {"ptrace", 101, {2, 1, 0, 0}}, {"process_vm_readv", 310, {1, 0, 0, 0, 0, 0}},
        {"process_vm_writev", 311, {1, 0, 0, 0, 0, 0}}, {"kcmp", 312, {1, 1, 0, 0, 0}},
        {"pidfd_getfd", 438, {-1, 0, 0}}, {"process_madvise", 440, {-1, 0, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        printf("%s %s\n", denied[i].name, run(denied[i].nr, denied[i].a));
    }
    fflush(stdout);
    const long junk = 0x100000000L;
    struct call filtered[] = {
        {"clone-newns", 56, {0x00020000 | SIGCHLD}}, {"clone-newcgroup", 56, {0x02000000 | SIGCHLD}},
        {"clone-newuts", 56, {0x04000000 | SIGCHLD}}, {"clone-newipc", 56, {0x08000000 | SIGCHLD}},
        {"clone-newuser", 56, {0x10000000 | SIGCHLD}}, {"clone-newpid", 56, {0x20000000 | SIGCHLD}},
        {"clone-newnet", 56, {0x40000000 | SIGCHLD}},
        {"clone-newuser-junk", 56, {junk | 0x10000000 | SIGCHLD}},
        {"socket-packet", 41, {17, 3, 0}}, {"socket-packet-junk", 41, {junk | 17, 3, 0}},
        {"socket-vsock", 41, {40, 1, 0}}, {"socket-bluetooth", 41, {31, 1, 0}},
        {"socket-unix", 41, {1, 1, 0}}, {"socket-inet", 41, {2, 1, 0}},
        {"socket-inet6", 41, {10, 1, 0}}, {"socket-netlink", 41, {16, 3, 0}},
        {"socket-sctp", 41, {2, 1, 132}}, {"socket-sctp-junk", 41, {2, 1, junk | 132}},
        {"socket-dccp", 41, {2, 6, 33}},
        {"socketpair-unix", 53, {1, 1, 0, z}}, {"socketpair-inet", 53, {2, 1, 0, z}},
        {"personality-query", 135, {0xffffffffL}}, {"personality-linux", 135, {0}},
        {"personality-junk", 135, {junk | 0x0008}},
    };
    for (size_t i = 0; i < sizeof filtered / sizeof filtered[0]; i++) {
        fprintf(stderr, "%s %s\n", filtered[i].name, run(filtered[i].nr, filtered[i].a));
    }
    fprintf(stderr, "i386 %s\n", other_abi(0));
    fprintf(stderr, "x32 %s\n", other_abi(1));
    return 0;
}
