/*
 * The spawn request's spec: a sequence of fields (u16 tag, u32 length, payload, all
 * big-endian) and a list of descriptor roles matching the SCM_RIGHTS descriptors in order.
 * Strings are copied NUL-terminated into the spec's own storage; a string holding a NUL byte,
 * an unknown tag, a field of the wrong size or too many of anything is refused with a text
 * naming the field. The daemon built the spec, so a refusal is a bug there, but the launcher
 * never trusts its input.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher.h"

static char strings[MAX_MESSAGE + MAX_ARGS + MAX_ENV + 64];
static size_t strings_used;

static uint32_t get_u32(const unsigned char *in)
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

static uint64_t get_u64(const unsigned char *in)
{
    return (uint64_t)get_u32(in) << 32 | get_u32(in + 4);
}

static const char *copy_string(const unsigned char *data, uint32_t len)
{
    char *out;
    if (memchr(data, 0, len) != NULL || strings_used + len + 1 > sizeof strings)
        return NULL;
    out = strings + strings_used;
    memcpy(out, data, len);
    out[len] = '\0';
    strings_used += len + 1;
    return out;
}

static int fail(char *error, size_t size, const char *what)
{
    snprintf(error, size, "launcher: bad spawn spec (%s)", what);
    return -1;
}

static int assign_fds(const unsigned char *roles, uint32_t count, const int *fds, int nfds,
                      struct spec *spec, char *error, size_t size)
{
    if ((int)count != nfds)
        return fail(error, size, "descriptor count");
    for (uint32_t i = 0; i < count; i++) {
        int fd = fds[i];
        int *slot = NULL;
        switch (roles[i]) {
        case FD_STDIN: slot = &spec->stdin_fd; break;
        case FD_STDOUT: slot = &spec->stdout_fd; break;
        case FD_STDERR: slot = &spec->stderr_fd; break;
        case FD_REPORT: slot = &spec->report_fd; break;
        case FD_CONTROL: slot = &spec->control_fd; break;
        case FD_BOX: slot = &spec->box_fd; break;
        case FD_MNTNS: slot = &spec->mntns_fd; break;
        case FD_NETNS: slot = &spec->netns_fd; break;
        case FD_CGROUP2: slot = &spec->cgroup2_fd; break;
        case FD_CGROUP_V1:
            if (spec->ncgroup_v1 == MAX_V1)
                return fail(error, size, "too many cgroup v1 descriptors");
            spec->cgroup_v1[spec->ncgroup_v1++] = fd;
            continue;
        default:
            return fail(error, size, "descriptor role");
        }
        if (*slot != -1)
            return fail(error, size, "descriptor role given twice");
        *slot = fd;
    }
    return 0;
}

int decode_spec(const unsigned char *data, size_t len, const int *fds, int nfds,
                struct spec *spec, char *error, size_t size)
{
    size_t at = 0;
    int have_fds = 0;
    memset(spec, 0, sizeof *spec);
    spec->stdin_fd = spec->stdout_fd = spec->stderr_fd = spec->report_fd = -1;
    spec->control_fd = spec->box_fd = spec->mntns_fd = spec->netns_fd = spec->cgroup2_fd = -1;
    strings_used = 0;
    while (at < len) {
        uint32_t tag, field;
        const unsigned char *value;
        const char *text = NULL;
        if (len - at < 6)
            return fail(error, size, "truncated field header");
        tag = (uint32_t)data[at] << 8 | data[at + 1];
        field = get_u32(data + at + 2);
        at += 6;
        if (field > len - at)
            return fail(error, size, "truncated field");
        value = data + at;
        at += field;
        switch (tag) {
        case TAG_ARGV:
        case TAG_ENV:
        case TAG_CWD:
        case TAG_HOSTNAME:
        case TAG_WRITABLE:
        case TAG_DEV_WRITABLE:
        case TAG_TMPFS:
            text = copy_string(value, field);
            if (text == NULL)
                return fail(error, size, "string with a NUL byte, or too long");
            break;
        default:
            break;
        }
        switch (tag) {
        case TAG_ARGV:
            if (spec->argc == MAX_ARGS)
                return fail(error, size, "too many arguments");
            spec->argv[spec->argc++] = (char *)text;
            break;
        case TAG_ENV:
            if (spec->envc == MAX_ENV || strchr(text, '=') == NULL)
                return fail(error, size, "environment entry");
            spec->envp[spec->envc++] = (char *)text;
            break;
        case TAG_CWD: spec->cwd = text; break;
        case TAG_HOSTNAME: spec->hostname = text; break;
        case TAG_TMPFS: spec->tmpfs_options = text; break;
        case TAG_WRITABLE:
            if (spec->nwritable == MAX_PATHS || text[0] != '/')
                return fail(error, size, "writable path");
            spec->writable[spec->nwritable++] = text;
            break;
        case TAG_DEV_WRITABLE:
            if (spec->ndev_writable == MAX_PATHS || text[0] != '/')
                return fail(error, size, "device path");
            spec->dev_writable[spec->ndev_writable++] = text;
            break;
        case TAG_UID:
            if (field != 4)
                return fail(error, size, "uid size");
            spec->uid = get_u32(value);
            break;
        case TAG_FLAGS:
            if (field != 4)
                return fail(error, size, "flags size");
            spec->flags = get_u32(value);
            break;
        case TAG_RLIMIT:
            if (field != 16 || spec->nrlimits == MAX_RLIMITS)
                return fail(error, size, "rlimit");
            spec->rlimits[spec->nrlimits].resource = (int)get_u32(value);
            spec->rlimits[spec->nrlimits].flags = get_u32(value + 4);
            spec->rlimits[spec->nrlimits].ceiling = (rlim_t)get_u64(value + 8);
            spec->nrlimits++;
            break;
        case TAG_FDS:
            if (have_fds || field > MAX_FDS)
                return fail(error, size, "descriptor roles");
            if (assign_fds(value, field, fds, nfds, spec, error, size) < 0)
                return -1;
            have_fds = 1;
            break;
        default:
            return fail(error, size, "unknown field");
        }
    }
    if (!have_fds && nfds > 0)
        return fail(error, size, "descriptors without roles");
    if (spec->argc == 0 || spec->argv[0][0] == '\0')
        return fail(error, size, "empty argv");
    if (spec->uid == 0)
        return fail(error, size, "the box uid must not be 0");
    if (spec->cwd == NULL || spec->cwd[0] != '/')
        return fail(error, size, "working directory");
    if (spec->hostname == NULL || spec->tmpfs_options == NULL)
        return fail(error, size, "hostname or tmpfs options missing");
    if (spec->stdin_fd < 0 || spec->stdout_fd < 0 || spec->stderr_fd < 0 ||
        spec->report_fd < 0 || spec->control_fd < 0 || spec->box_fd < 0 || spec->mntns_fd < 0)
        return fail(error, size, "a required descriptor is missing");
    spec->argv[spec->argc] = NULL;
    spec->envp[spec->envc] = NULL;
    return 0;
}
