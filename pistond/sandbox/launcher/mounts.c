/*
 * The per-sandbox part of the filesystem (pistond.sandbox.mounts.finish_root in the Python
 * path), done by PID 1 in its private copy of the prepared root's mount namespace: the box at
 * /box, fresh tmpfs at /tmp and /dev/shm, and /proc of the sandbox's PID namespace.
 *
 * The prepared root is already read-only and rooted (the template's builder pivoted into it and
 * detached the host's tree), so nothing here pivots or unmounts: both would wait for an RCU
 * grace period.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

static const char *failed_step;

static int step(const char *name, int result)
{
    if (result < 0)
        failed_step = name;
    else
        mark(name);
    return result;
}

static int attach_box(int box_fd)
{
    /* The box is a detached copy of the job's tmpfs, taken by the daemon in the host's
     * namespace, never through a path the job could have replaced with a link. */
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    attr.propagation = MS_PRIVATE;
    if (step("remount /box", (int)syscall(SYS_mount_setattr, box_fd, "", AT_EMPTY_PATH, &attr,
                                          sizeof attr)) < 0)
        return -1;
    if (step("bind /box", (int)syscall(SYS_move_mount, box_fd, "", AT_FDCWD, "/box",
                                       MOVE_MOUNT_F_EMPTY_PATH)) < 0)
        return -1;
    close(box_fd);
    return 0;
}

static int scratch(const char *path, const char *options, const char *name)
{
    return step(name, mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options));
}

static int read_only_bind(const char *path, const char *name)
{
    const unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (access(path, F_OK) < 0)
        return 0;
    if (mount(path, path, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, NULL) < 0)
        return step(name, -1);
    return 0;
}

static int fresh_proc(const struct spec *spec)
{
    /* hidepid=2: the program sees only its own uid's processes, not PID 1. */
    if (step("mount /proc", mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                  "hidepid=2")) < 0)
        return -1;
    if (!(spec->flags & SPEC_PROC_SYS_RO))
        return 0;
    if (read_only_bind("/proc/sys", "bind /proc/sys") < 0 ||
        read_only_bind("/proc/sysrq-trigger", "bind /proc/sysrq-trigger") < 0)
        return -1;
    return 0;
}

int finish_root(const struct spec *spec, char *error, size_t error_size)
{
    failed_step = NULL;
    if (attach_box(spec->box_fd) < 0 ||
        scratch("/tmp", spec->tmpfs_options, "tmpfs /tmp") < 0 ||
        scratch("/dev/shm", spec->tmpfs_options, "tmpfs /dev/shm") < 0 || fresh_proc(spec) < 0 ||
        step("chdir /", chdir("/")) < 0) {
        snprintf(error, error_size, "mounts: %s: %s", failed_step, strerror(errno));
        return -1;
    }
    return 0;
}
