/*
 * The report pipe, written by PID 1 and the program, read by the daemon
 * (pistond.sandbox.namespaces.decode_report): records of one kind byte, a big-endian u32
 * length and the payload. Also the step timings of timing mode and error texts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launcher.h"

#define MAX_MARKS 48

static struct {
    int enabled;
    const char *role;
    int count;
    struct {
        const char *step;
        uint64_t at;
    } marks[MAX_MARKS];
} timing;

static void put_u32(unsigned char *out, uint32_t value)
{
    out[0] = value >> 24;
    out[1] = value >> 16;
    out[2] = value >> 8;
    out[3] = value;
}

static void put_u64(unsigned char *out, uint64_t value)
{
    put_u32(out, value >> 32);
    put_u32(out + 4, (uint32_t)value);
}

static void write_all(int fd, const unsigned char *data, size_t len)
{
    while (len > 0) {
        ssize_t done = write(fd, data, len);
        if (done < 0 && errno == EINTR)
            continue;
        if (done <= 0)
            return; /* the reader is gone: nobody to tell */
        data += done;
        len -= (size_t)done;
    }
}

void report_record(int fd, char kind, const void *payload, uint32_t len)
{
    /* One write per record (records are far below PIPE_BUF... or close to it), so the daemon
     * never sees half of one from a writer that was killed. */
    unsigned char buffer[4096];
    if (fd < 0 || len > sizeof buffer - 5)
        return;
    buffer[0] = (unsigned char)kind;
    put_u32(buffer + 1, len);
    memcpy(buffer + 5, payload, len);
    write_all(fd, buffer, 5 + len);
}

void report_exit(int fd, int status, const struct rusage *usage)
{
    unsigned char payload[28];
    uint64_t user = (uint64_t)usage->ru_utime.tv_sec * 1000000 + usage->ru_utime.tv_usec;
    uint64_t system = (uint64_t)usage->ru_stime.tv_sec * 1000000 + usage->ru_stime.tv_usec;
    put_u32(payload, (uint32_t)status);
    put_u64(payload + 4, user);
    put_u64(payload + 12, system);
    put_u64(payload + 20, (uint64_t)usage->ru_maxrss * 1024);
    report_record(fd, REPORT_EXIT, payload, sizeof payload);
}

void timing_enable(const char *role)
{
    timing.enabled = 1;
    timing.role = role;
    timing.count = 0;
}

void mark(const char *step)
{
    struct timespec now;
    if (!timing.enabled || timing.count == MAX_MARKS)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    timing.marks[timing.count].step = step;
    timing.marks[timing.count].at = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    timing.count++;
}

void timing_flush(int fd)
{
    unsigned char payload[4000];
    size_t used = 0;
    if (!timing.enabled)
        return;
    for (int i = 0; i < timing.count; i++) {
        char name[96];
        int size = snprintf(name, sizeof name, "%s.%s", timing.role, timing.marks[i].step);
        if (size <= 0 || size >= (int)sizeof name || used + 1 + (size_t)size + 8 > sizeof payload)
            break;
        payload[used++] = (unsigned char)size;
        memcpy(payload + used, name, (size_t)size);
        used += (size_t)size;
        put_u64(payload + used, timing.marks[i].at);
        used += 8;
    }
    timing.count = 0;
    report_record(fd, REPORT_TIMINGS, payload, (uint32_t)used);
}

void describe(char *out, size_t size, const char *step, int err)
{
    snprintf(out, size, "%s: %s", step, strerror(err));
}

static struct {
    int fd;
    int as_record;
} failure = {-1, 1};

void fail_to(int fd, int as_record)
{
    failure.fd = fd;
    failure.as_record = as_record;
}

_Noreturn void fail_text(const char *text)
{
    if (failure.as_record)
        report_record(failure.fd, REPORT_ERROR, text, (uint32_t)strlen(text));
    else
        write_all(failure.fd, (const unsigned char *)text, strlen(text));
    _exit(SETUP_FAILED);
}

_Noreturn void fail_step(const char *step, int err)
{
    char text[512];
    describe(text, sizeof text, step, err);
    fail_text(text);
}
