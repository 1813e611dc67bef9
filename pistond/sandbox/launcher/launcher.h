/*
 * pistond-launcher: the native child side of the sandbox (DESIGN.md "Sandbox", steps 1-7).
 *
 * The daemon (Python) decides everything: it sends a complete spawn spec, built and validated
 * by pistond.sandbox.launchspec, and the descriptors the sandbox needs. The launcher carries the
 * spec out and decides nothing. One concern per source file:
 *
 *   main.c      the server loop: requests in, replies out, reaping
 *   wire.c      the binary request format (decoding) and replies (encoding)
 *   spawn.c     clone3 of a sandbox's PID 1; network namespaces for the daemon's pool
 *   init.c      PID 1: cgroups, namespaces, mounts, the program's start, the waiter
 *   mounts.c    the per-sandbox mounts over a prepared root (/box, /tmp, /dev/shm, /proc)
 *   program.c   the program: stdio, rlimits, privilege drop, no_new_privs, Landlock, seccomp, exec
 *   landlock.c  the Landlock ruleset
 *   netns.c     loopback up; the clean check of a reused network namespace
 *   report.c    the report pipe's records, step timings, error texts
 *
 * Wire constants are mirrored in pistond/sandbox/launchspec.py; PROTOCOL_VERSION changes with
 * any change to them, and the daemon refuses a launcher of another version.
 */
#ifndef PISTOND_LAUNCHER_H
#define PISTOND_LAUNCHER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#define PROTOCOL_VERSION 1

/* Request kinds (first byte of a message), and the reply kind. */
#define MSG_HELLO 'H'  /* -> features; carries the seccomp filter */
#define MSG_SPAWN 'S'  /* spec + descriptors -> pid and pidfd */
#define MSG_NETNS 'N'  /* -> a fresh network namespace with loopback up */
#define MSG_REPLY 'R'

/* Spec fields: u16 tag, u32 length, payload. */
enum spec_tag {
    TAG_ARGV = 1,         /* string, repeated, in order */
    TAG_ENV = 2,          /* "NAME=value", repeated */
    TAG_CWD = 3,          /* string */
    TAG_HOSTNAME = 4,     /* string */
    TAG_UID = 5,          /* u32: uid and gid of the program */
    TAG_RLIMIT = 6,       /* u32 resource, u32 RLIMIT_*, u64 ceiling; repeated */
    TAG_WRITABLE = 7,     /* Landlock: directory where files may be created and written */
    TAG_DEV_WRITABLE = 8, /* Landlock: directory whose existing files may be written */
    TAG_TMPFS = 9,        /* mount options of the fresh /tmp and /dev/shm */
    TAG_FLAGS = 10,       /* u32, SPEC_* below */
    TAG_FDS = 11,         /* u8 per attached descriptor, in order: its FD_* role */
};

#define SPEC_SHARE_NETWORK 0x1 /* the host's network namespace: no namespace of its own */
#define SPEC_TIMING 0x2        /* record step timings on the report pipe */
#define SPEC_PROC_SYS_RO 0x4   /* bind /proc/sys and /proc/sysrq-trigger read-only */

enum fd_role {
    FD_STDIN = 1,
    FD_STDOUT = 2,
    FD_STDERR = 3,
    FD_REPORT = 4,  /* write end of the report pipe */
    FD_CONTROL = 5, /* read end of the control pipe: signal numbers for the program */
    FD_BOX = 6,     /* a detached copy of the box mount (open_tree OPEN_TREE_CLONE) */
    FD_MNTNS = 7,   /* a mount namespace holding the prepared root, copied for this sandbox */
    FD_NETNS = 8,   /* a loopback-only network namespace of the box slot, reused */
    FD_CGROUP2 = 9, /* the stage's cgroup2 directory: clone3 CLONE_INTO_CGROUP */
    FD_CGROUP_V1 = 10, /* a v1 hierarchy's "tasks" file of the stage's group; repeated */
};

#define MAX_ARGS 4096
#define MAX_ENV 4096
#define MAX_RLIMITS 16
#define MAX_PATHS 16
#define MAX_V1 8
#define MAX_FDS 24
#define MAX_MESSAGE (4 * 1024 * 1024)

#define RLIMIT_SOFT_IS_HARD 0x1 /* the soft limit is set to the (new) hard limit too */

struct rlimit_spec {
    int resource;
    uint32_t flags;
    rlim_t ceiling;
};

struct spec {
    char *argv[MAX_ARGS + 1];
    int argc;
    char *envp[MAX_ENV + 1];
    int envc;
    const char *cwd;
    const char *hostname;
    const char *tmpfs_options;
    uid_t uid;
    uint32_t flags;
    struct rlimit_spec rlimits[MAX_RLIMITS];
    int nrlimits;
    const char *writable[MAX_PATHS];
    int nwritable;
    const char *dev_writable[MAX_PATHS];
    int ndev_writable;
    /* Descriptors by role; -1 when absent. */
    int stdin_fd, stdout_fd, stderr_fd, report_fd, control_fd;
    int box_fd, mntns_fd, netns_fd, cgroup2_fd;
    int cgroup_v1[MAX_V1];
    int ncgroup_v1;
};

/* What every sandbox process inherits from the server: set once at start. */
struct server_state {
    const unsigned char *filter; /* classic BPF program (struct sock_filter[]) */
    size_t filter_len;           /* bytes */
    int landlock_abi;            /* 0: no Landlock */
    int last_cap;                /* highest capability number */
};
extern struct server_state server;

/* wire.c */
int decode_spec(const unsigned char *data, size_t len, const int *fds, int nfds,
                struct spec *spec, char *error, size_t error_size);

/* spawn.c */
pid_t spawn_sandbox(const struct spec *spec, int *pidfd, char *error, size_t error_size);
int make_network_namespace(char *error, size_t error_size);

/* init.c */
_Noreturn void run_init(const struct spec *spec);

/* mounts.c */
int finish_root(const struct spec *spec, char *error, size_t error_size);

/* program.c */
_Noreturn void run_program(const struct spec *spec, int exec_fd);

/* landlock.c */
int landlock_probe(void);
int landlock_restrict(const struct spec *spec);

/* netns.c */
int loopback_up(void);
int network_namespace_clean(void);

/* report.c */
#define REPORT_ERROR 'E'   /* setup error text */
#define REPORT_EXIT 'X'    /* program status and rusage; every process of the sandbox is gone */
#define REPORT_NETWORK 'N' /* u8: 1 the network namespace is clean for reuse, 0 it is not */
#define REPORT_TIMINGS 'T' /* step timestamps */
void report_record(int fd, char kind, const void *payload, uint32_t len);
void report_exit(int fd, int status, const struct rusage *usage);
void mark(const char *step);
void timing_enable(const char *role);
void timing_flush(int fd);
/* An error text "<step>: <strerror(errno)>", never a path. */
void describe(char *out, size_t size, const char *step, int err);

/* A failed step ends the process with SETUP_FAILED after telling it: PID 1 as an error record
 * on the report pipe, the program as plain text on its exec pipe (which PID 1 reports). */
#define SETUP_FAILED 127
void fail_to(int fd, int as_record);
_Noreturn void fail_text(const char *text);
_Noreturn void fail_step(const char *step, int err);
#define STEP(name, call)                \
    do {                                \
        if ((call) < 0)                 \
            fail_step(name, errno);     \
        mark(name);                     \
    } while (0)

#endif
