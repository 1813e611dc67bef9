/*
 * Landlock (pistond.sandbox.landlock in the Python path): the program may create and write
 * files only beneath its writable mounts, may write existing files in /dev (null, zero, full),
 * and nowhere else, /proc included; from ABI 6 it also cannot reach abstract Unix sockets or
 * signal processes outside its own Landlock domain.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define SCOPE_SIGNAL (1ULL << 1)

struct ruleset_attr_v6 {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

int landlock_probe(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi > 0 ? (int)abi : 0;
}

static uint64_t handled_writes(int abi)
{
    uint64_t handled = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                       LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                       LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                       LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                       LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (abi >= 2)
        handled |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
    return handled;
}

static int add_rule(int ruleset, const char *path, uint64_t access)
{
    struct landlock_path_beneath_attr rule;
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int done;
    if (fd < 0)
        return -1;
    memset(&rule, 0, sizeof rule);
    rule.allowed_access = access;
    rule.parent_fd = fd;
    done = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
    close(fd);
    return done;
}

int landlock_restrict(const struct spec *spec)
{
    int abi = server.landlock_abi, ruleset, result = -1;
    struct ruleset_attr_v6 attr;
    uint64_t handled = handled_writes(abi);
    memset(&attr, 0, sizeof attr);
    attr.handled_access_fs = handled;
    if (abi >= 6)
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL;
    ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr,
                           abi >= 6 ? sizeof attr : sizeof attr.handled_access_fs, 0);
    if (ruleset < 0)
        return -1;
    for (int i = 0; i < spec->nwritable; i++)
        if (add_rule(ruleset, spec->writable[i], handled) < 0)
            goto out;
    for (int i = 0; i < spec->ndev_writable; i++)
        if (add_rule(ruleset, spec->dev_writable[i],
                     handled & (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)) < 0)
            goto out;
    result = (int)syscall(SYS_landlock_restrict_self, ruleset, 0);
out:
    {
        int err = errno;
        close(ruleset);
        errno = err;
    }
    return result;
}
