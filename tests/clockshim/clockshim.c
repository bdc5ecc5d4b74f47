/* A clock shim for tests (LD_PRELOAD): steps the wall clock of one process from outside.
 *
 * CLOCKSHIM_FILE names a small text file "<offset seconds> [<synchronized 0|1>]" that the test
 * rewrites in place while the process runs. CLOCK_REALTIME (clock_gettime, gettimeofday, time)
 * gets the offset added; CLOCK_MONOTONIC and the other clocks are left alone, so sleeps, timeouts
 * and asyncio keep working (libfaketime shifts those too, and breaks Python's sleep). With a
 * second field, adjtimex() reports the kernel's clock as synchronized (maximum error 0.1 s) or
 * not (16 s), as systemd-timesyncd or chrony would leave it; without it, the kernel answers.
 *
 * The file is mapped once and read on every call: no system call per clock reading.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#define MAP_BYTES 64

static const char *volatile shared;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_adjtimex)(struct timex *);

static const char *mapping(void)
{
    if (shared == NULL) {
        const char *path = getenv("CLOCKSHIM_FILE");
        int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0)
            return NULL;
        void *p = mmap(NULL, MAP_BYTES, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
            return NULL;
        shared = p;
    }
    return shared;
}

/* (offset, synchronized): synchronized is -1 when the file does not say. */
static double read_shim(int *synced)
{
    char buf[MAP_BYTES + 1];
    const char *p = mapping();
    *synced = -1;
    if (p == NULL)
        return 0.0;
    memcpy(buf, p, MAP_BYTES);
    buf[MAP_BYTES] = '\0';
    char *end;
    double offset = strtod(buf, &end);
    char *rest = end;
    long s = strtol(rest, &end, 10);
    if (end != rest)
        *synced = s != 0;
    return offset;
}

static void shift(struct timespec *ts)
{
    int synced;
    double offset = read_shim(&synced);
    long long whole = (long long)offset;
    long long nsec = ts->tv_nsec + (long long)((offset - (double)whole) * 1e9);
    ts->tv_sec += whole;
    while (nsec < 0) { nsec += 1000000000LL; ts->tv_sec -= 1; }
    while (nsec >= 1000000000LL) { nsec -= 1000000000LL; ts->tv_sec += 1; }
    ts->tv_nsec = nsec;
}

static int realtime(struct timespec *ts)
{
    if (real_clock_gettime == NULL)
        real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(CLOCK_REALTIME, ts);
    if (rc == 0)
        shift(ts);
    return rc;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (real_clock_gettime == NULL)
        real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    struct timespec ts;
    int rc = realtime(&ts);
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    if (realtime(&ts) != 0)
        return (time_t)-1;
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int adjtimex(struct timex *tx)
{
    if (real_adjtimex == NULL)
        real_adjtimex = dlsym(RTLD_NEXT, "adjtimex");
    int synced;
    read_shim(&synced);
    if (synced < 0 || tx->modes != 0)
        return real_adjtimex(tx);
    memset(tx, 0, sizeof *tx);
    tx->maxerror = synced ? 100000 : 16000000;
    tx->esterror = synced ? 1000 : 16000000;
    tx->status = synced ? STA_PLL : STA_UNSYNC;
    return synced ? TIME_OK : TIME_ERROR;
}
