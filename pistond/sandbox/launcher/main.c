/*
 * pistond-launcher serve FD: the daemon's native spawner.
 *
 * Started once by the daemon with one end of a SOCK_SEQPACKET socket pair as FD. Single-
 * threaded and small (each sandbox's PID 1 is a fork of it, so forks cost little), it answers
 * requests in order, one message each (u8 kind, u32 id, payload; descriptors as SCM_RIGHTS):
 *
 *   H  payload: the seccomp filter (classic BPF)  -> features (protocol version, Landlock ABI)
 *   S  payload: a spawn spec (wire.c)             -> PID 1's pid, and its pidfd attached
 *   N  no payload                                 -> a new network namespace's fd attached
 *
 * Replies: u8 'R', u32 id, i32 result (a pid, 0, or -1), u16 error length, error text, then
 * the kind's own payload. It reaps its children (every PID 1), and exits when the daemon's end
 * of the socket closes or on SIGTERM, killing every sandbox still alive (each PID 1 also has
 * SIGKILL as its parent-death signal).
 *
 * `pistond-launcher --version` prints the protocol version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"

#define MAX_LIVE 65536
#define MAX_FILTER (4096 * 8)

struct server_state server;

static unsigned char message[MAX_MESSAGE + 1];
static unsigned char filter[MAX_FILTER];
static pid_t live[MAX_LIVE];
static int nlive;

static void put_u32(unsigned char *out, uint32_t value)
{
    out[0] = value >> 24;
    out[1] = value >> 16;
    out[2] = value >> 8;
    out[3] = value;
}

static uint32_t get_u32(const unsigned char *in)
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

static void reply(int sock, uint32_t id, int32_t result, const char *error, const void *extra,
                  size_t extra_len, int fd)
{
    unsigned char header[11];
    size_t error_len = error ? strlen(error) : 0;
    struct iovec parts[3];
    struct msghdr msg;
    union {
        struct cmsghdr align;
        char data[CMSG_SPACE(sizeof(int))];
    } control;
    if (error_len > 1024)
        error_len = 1024;
    header[0] = MSG_REPLY;
    put_u32(header + 1, id);
    put_u32(header + 5, (uint32_t)result);
    header[9] = (unsigned char)(error_len >> 8);
    header[10] = (unsigned char)error_len;
    parts[0].iov_base = header;
    parts[0].iov_len = sizeof header;
    parts[1].iov_base = (void *)(error ? error : "");
    parts[1].iov_len = error_len;
    parts[2].iov_base = (void *)extra;
    parts[2].iov_len = extra_len;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = parts;
    msg.msg_iovlen = 3;
    if (fd >= 0) {
        struct cmsghdr *cmsg;
        memset(&control, 0, sizeof control);
        msg.msg_control = control.data;
        msg.msg_controllen = sizeof control.data;
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    }
    while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static void remember(pid_t pid)
{
    if (nlive < MAX_LIVE)
        live[nlive++] = pid;
}

static void forget(pid_t pid)
{
    for (int i = 0; i < nlive; i++)
        if (live[i] == pid) {
            live[i] = live[--nlive];
            return;
        }
}

static void reap(void)
{
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG | __WALL)) > 0)
        forget(pid);
}

static void on_hello(int sock, uint32_t id, const unsigned char *payload, size_t len)
{
    unsigned char features[8];
    if (len % 8 != 0 || len > sizeof filter) {
        reply(sock, id, -1, "launcher: bad seccomp filter", NULL, 0, -1);
        return;
    }
    memcpy(filter, payload, len);
    server.filter = filter;
    server.filter_len = len;
    put_u32(features, PROTOCOL_VERSION);
    put_u32(features + 4, (uint32_t)server.landlock_abi);
    reply(sock, id, 0, NULL, features, sizeof features, -1);
}

static void on_spawn(int sock, uint32_t id, const unsigned char *payload, size_t len,
                     const int *fds, int nfds)
{
    static struct spec spec;
    char error[512] = "";
    int pidfd = -1;
    pid_t pid;
    mark("request received");
    if (decode_spec(payload, len, fds, nfds, &spec, error, sizeof error) < 0) {
        reply(sock, id, -1, error, NULL, 0, -1);
        return;
    }
    if (spec.flags & SPEC_TIMING)
        timing_enable("launcher");
    mark("decoded");
    pid = spawn_sandbox(&spec, &pidfd, error, sizeof error);
    if (pid < 0) {
        reply(sock, id, -1, error, NULL, 0, -1);
        return;
    }
    remember(pid);
    mark("cloned");
    reply(sock, id, (int32_t)pid, NULL, NULL, 0, pidfd);
    close(pidfd);
    mark("replied");
    if (spec.flags & SPEC_TIMING)
        timing_flush(spec.report_fd);
}

static void on_netns(int sock, uint32_t id)
{
    char error[256] = "";
    int fd = make_network_namespace(error, sizeof error);
    if (fd < 0) {
        reply(sock, id, -1, error, NULL, 0, -1);
        return;
    }
    reply(sock, id, 0, NULL, NULL, 0, fd);
    close(fd);
}

/* One request; returns 0 on EOF or a fatal socket error. */
static int serve_one(int sock)
{
    int fds[MAX_FDS];
    int nfds = 0;
    union {
        struct cmsghdr align;
        char data[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } control;
    struct iovec part = {message, sizeof message};
    struct msghdr msg;
    ssize_t len;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &part;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data;
    msg.msg_controllen = sizeof control.data;
    len = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (len < 0)
        return errno == EINTR || errno == EAGAIN;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg))
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            int count = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < count && nfds < MAX_FDS; i++)
                memcpy(&fds[nfds++], CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
        }
    if (len == 0 && nfds == 0)
        return 0;
    if (len < 5 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        uint32_t id = len >= 5 ? get_u32(message + 1) : 0;
        reply(sock, id, -1, "launcher: malformed or truncated request", NULL, 0, -1);
    } else {
        uint32_t id = get_u32(message + 1);
        switch (message[0]) {
        case MSG_HELLO: on_hello(sock, id, message + 5, (size_t)len - 5); break;
        case MSG_SPAWN: on_spawn(sock, id, message + 5, (size_t)len - 5, fds, nfds); break;
        case MSG_NETNS: on_netns(sock, id); break;
        default: reply(sock, id, -1, "launcher: unknown request", NULL, 0, -1); break;
        }
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    return 1;
}

static int last_capability(void)
{
    char text[16] = "";
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t len = read(fd, text, sizeof text - 1);
        close(fd);
        if (len > 0)
            return atoi(text);
    }
    return 63; /* drop them all: PR_CAPBSET_DROP of an unknown one fails with EINVAL, ignored */
}

static int usage(void)
{
    fputs("usage: pistond-launcher serve FD | --version\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    sigset_t handled;
    int sock, signal_fd, running = 1;
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("pistond-launcher %d\n", PROTOCOL_VERSION);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "serve") != 0)
        return usage();
    sock = atoi(argv[2]);
    if (sock < 3 || fcntl(sock, F_SETFD, FD_CLOEXEC) < 0)
        return usage();
    server.landlock_abi = landlock_probe();
    server.last_cap = last_capability();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    sigemptyset(&handled);
    sigaddset(&handled, SIGCHLD);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGHUP);
    sigprocmask(SIG_BLOCK, &handled, NULL);
    signal_fd = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0) {
        perror("pistond-launcher: signalfd");
        return 1;
    }
    while (running) {
        struct pollfd watched[2] = {{sock, POLLIN, 0}, {signal_fd, POLLIN, 0}};
        if (poll(watched, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (watched[1].revents) {
            struct signalfd_siginfo info;
            while (read(signal_fd, &info, sizeof info) == sizeof info)
                if (info.ssi_signo != SIGCHLD)
                    running = 0;
            reap();
        }
        if (running && watched[0].revents)
            running = serve_one(sock);
    }
    for (int i = 0; i < nlive; i++)
        kill(live[i], SIGKILL);
    while (nlive > 0 && waitpid(-1, NULL, __WALL) > 0)
        ;
    return 0;
}
