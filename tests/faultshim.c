/* faultshim.c - socket faults for a process run under LD_PRELOAD.
 *
 * tests/it_faults.sh runs sockchatd with this library preloaded, so that the
 * server meets what real networks and kernels do now and then: a send that
 * takes only part of the buffer, a call interrupted by a signal (EINTR), a
 * socket that says "not now" although poll() said it was ready (EAGAIN), a
 * peer that resets the connection (ECONNRESET), and accept() failing for
 * transient reasons (EINTR, EAGAIN, ECONNABORTED, EMFILE).
 *
 * Wrapped: send, sendmsg, recv and accept4, and close only to forget a
 * descriptor. Faults are injected on SOCK_STREAM sockets only (TCP and
 * UNIX streams), never on datagram sockets, pipes (the signal pipe) or
 * files: anything else passes straight through. Decisions come from a
 * seeded xorshift generator, so a run is repeatable for a given seed and
 * order of calls.
 *
 * Also wrapped: malloc, calloc, realloc and free, so that large
 * allocations can fail as they do when memory runs out (malloc returns
 * NULL, errno ENOMEM). Only sizes of at least FAULT_MALLOC_MIN fail, so
 * that the many small allocations of GLib and libc (which g_malloc turns
 * into an abort) are left alone while the buffers a peer makes grow (an
 * input buffer, an output queue, a frame) are hit. The real allocator is
 * found with dlsym(RTLD_NEXT), which may itself allocate: those first few
 * requests are served from a static buffer, which free() then ignores.
 *
 * Environment:
 *   FAULT_RATE       fraction of calls that get a soft fault: a partial
 *                    send or short recv, EINTR or EAGAIN (default 0)
 *   FAULT_RESET      fraction of send/recv calls that reset the connection
 *                    (default 0); the descriptor then fails with ECONNRESET
 *                    until it is closed, and close() sends a TCP RST
 *   FAULT_MAX_RESETS resets at most (default unlimited)
 *   FAULT_ACCEPT     fraction of accept4 calls that fail (default: FAULT_RATE)
 *   FAULT_SEED       seed (default 1)
 *   FAULT_LOG        append one line per reset and a summary at exit
 *   FAULT_STOP_FILE  once this file exists, inject nothing more
 *   FAULT_START_FILE inject nothing until this file exists (so that the
 *                    process starts cleanly)
 *   FAULT_MALLOC     fraction of allocations of FAULT_MALLOC_MIN bytes or
 *                    more that fail (default 0)
 *   FAULT_MALLOC_MIN smallest size that may fail (default 1)
 *   FAULT_FD_LIMIT   accept4 fails with EMFILE, as a real descriptor limit
 *                    makes it, whenever the lowest free descriptor is at or
 *                    above this number (default 0: no limit). sockchatd fits
 *                    --max-clients below RLIMIT_NOFILE, so a real limit no
 *                    longer makes accept() fail; this stands for the other
 *                    descriptors a process may hold when it does.
 *
 * Not thread-safe (sockchatd is single-threaded). No allocation of its own.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SHIM_FD_MAX 65536
#define SHIM_IOV_MAX 1024
#define SHIM_STOP_CHECK_NS 20000000LL /* look for the stop file every 20 ms */
#define SHIM_BOOT_BYTES 65536         /* allocations made while resolving */
#define SHIM_BOOT_ALIGN 16

enum shim_kind {
    SK_PARTIAL = 0,
    SK_EINTR,
    SK_EAGAIN,
    SK_RESET,
    SK_ACCEPT,
    SK_COUNT,
};

static const char *const shim_kind_names[SK_COUNT] = {
    "partial", "eintr", "eagain", "reset", "accept",
};

static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_close)(int);

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);

static struct {
    bool env_ready, ready;
    double rate, reset, accept, malloc_rate;
    size_t malloc_min;
    long max_resets;
    long fd_limit;
    uint64_t rng;
    const char *log, *stop_file, *start_file;
    bool stopped, started;
    long long next_stop_check, next_start_check;
    unsigned long calls, faults[SK_COUNT];
    unsigned long malloc_big, malloc_failed;
} shim;

/* Memory handed out while dlsym() resolves the real allocator. Each block
 * is preceded by its size (for realloc); it is never reused or freed. */
static struct {
    bool resolving;
    size_t used;
    _Alignas(SHIM_BOOT_ALIGN) unsigned char bytes[SHIM_BOOT_BYTES];
} boot;

static unsigned char shim_reset_fd[SHIM_FD_MAX];

static double
env_double(const char *name, double def)
{
    const char *v = getenv(name);

    return v && *v ? strtod(v, NULL) : def;
}

/* The settings; safe to call from malloc (getenv and strtod do not
 * allocate). Before libc has set up the environment there are none yet,
 * and nothing is injected. */
static void
shim_env(void)
{
    extern char **environ;
    const char *seed;

    if (shim.env_ready || environ == NULL)
        return;
    shim.env_ready = true;
    shim.rate = env_double("FAULT_RATE", 0);
    shim.reset = env_double("FAULT_RESET", 0);
    shim.accept = env_double("FAULT_ACCEPT", shim.rate);
    shim.max_resets = (long)env_double("FAULT_MAX_RESETS", -1);
    shim.fd_limit = (long)env_double("FAULT_FD_LIMIT", 0);
    shim.malloc_rate = env_double("FAULT_MALLOC", 0);
    shim.malloc_min = (size_t)env_double("FAULT_MALLOC_MIN", 1);
    seed = getenv("FAULT_SEED");
    shim.rng = seed && *seed ? strtoull(seed, NULL, 10) : 1;
    /* xorshift must not start at 0; mix the seed a little. */
    shim.rng = shim.rng * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (shim.rng == 0)
        shim.rng = 1;
    shim.log = getenv("FAULT_LOG");
    shim.stop_file = getenv("FAULT_STOP_FILE");
    shim.start_file = getenv("FAULT_START_FILE");
}

static void
shim_init(void)
{
    if (shim.ready)
        return;
    shim_env();
    real_send =
        (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    real_sendmsg = (ssize_t(*)(int, const struct msghdr *, int))dlsym(
        RTLD_NEXT, "sendmsg");
    real_recv = (ssize_t(*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
    real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(
        RTLD_NEXT, "accept4");
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    shim.ready = true;
}

static uint64_t
shim_next(void)
{
    uint64_t x = shim.rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    shim.rng = x;
    return x;
}

/* Uniform in [0, 1). */
static double
shim_uniform(void)
{
    return (double)(shim_next() >> 11) / 9007199254740992.0;
}

/* 1..n-1 for n >= 2. */
static size_t
shim_shorter(size_t n)
{
    return 1 + (size_t)(shim_next() % (n - 1));
}

static long long
shim_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Between FAULT_START_FILE and FAULT_STOP_FILE (each looked for at most
 * every 20 ms). */
static bool
shim_active(void)
{
    long long now;

    if (shim.stopped)
        return false;
    if (!shim.start_file)
        shim.started = true;
    if (!shim.stop_file && shim.started)
        return true;
    now = shim_now_ns();
    if (!shim.started) {
        if (now < shim.next_start_check)
            return false;
        shim.next_start_check = now + SHIM_STOP_CHECK_NS;
        if (access(shim.start_file, F_OK) != 0)
            return false;
        shim.started = true;
    }
    if (shim.stop_file && now >= shim.next_stop_check) {
        shim.next_stop_check = now + SHIM_STOP_CHECK_NS;
        if (access(shim.stop_file, F_OK) == 0)
            shim.stopped = true;
    }
    return !shim.stopped;
}

static bool
shim_is_stream(int fd)
{
    int type = 0, saved = errno;
    socklen_t len = sizeof(type);
    bool r;

    r = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
        type == SOCK_STREAM;
    errno = saved;
    return r;
}

static void
shim_log_line(const char *line)
{
    int fd, saved = errno;

    if (!shim.log)
        return;
    fd = open(shim.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, line, strlen(line));

        (void)w;
        /* Not close(): this may run from malloc, before real_close is
         * known, and resolving it could allocate. */
        syscall(SYS_close, fd);
    }
    errno = saved;
}

static void
shim_do_reset(int fd, const char *call)
{
    struct linger lg = {1, 0};
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char peer[80] = "unix", line[200];

    /* close() will send RST instead of FIN, as after a real reset. */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (fd >= 0 && fd < SHIM_FD_MAX)
        shim_reset_fd[fd] = 1;
    shim.faults[SK_RESET]++;
    memset(&ss, 0, sizeof(ss));
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            char ip[INET_ADDRSTRLEN];

            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            snprintf(peer, sizeof(peer), "%s:%u", ip, ntohs(a->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            char ip[INET6_ADDRSTRLEN];

            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            snprintf(peer, sizeof(peer), "[%s]:%u", ip, ntohs(a->sin6_port));
        }
    }
    snprintf(line, sizeof(line), "reset pid=%d fd=%d call=%s peer=%s\n",
             (int)getpid(), fd, call, peer);
    shim_log_line(line);
}

/* What to do to this send/recv call. */
static enum shim_kind
shim_pick(int fd, size_t n, bool *fault)
{
    double u;

    *fault = false;
    shim_init();
    shim.calls++;
    if (!shim_active() || !shim_is_stream(fd))
        return SK_COUNT;
    u = shim_uniform();
    if (u < shim.reset && (shim.max_resets < 0 ||
                           (long)shim.faults[SK_RESET] < shim.max_resets)) {
        *fault = true;
        return SK_RESET;
    }
    if (u >= shim.reset + shim.rate)
        return SK_COUNT;
    *fault = true;
    switch (shim_next() % 3) {
    case 0:
        if (n >= 2)
            return SK_PARTIAL;
        return SK_EINTR;
    case 1:
        return SK_EINTR;
    default:
        return SK_EAGAIN;
    }
}

static bool
shim_was_reset(int fd)
{
    return fd >= 0 && fd < SHIM_FD_MAX && shim_reset_fd[fd];
}

ssize_t
send(int fd, const void *p, size_t n, int flags)
{
    bool fault;
    enum shim_kind k;

    shim_init();
    if (shim_was_reset(fd)) {
        errno = ECONNRESET;
        return -1;
    }
    k = shim_pick(fd, n, &fault);
    if (!fault)
        return real_send(fd, p, n, flags);
    switch (k) {
    case SK_RESET:
        shim_do_reset(fd, "send");
        errno = ECONNRESET;
        return -1;
    case SK_PARTIAL:
        shim.faults[SK_PARTIAL]++;
        return real_send(fd, p, shim_shorter(n), flags);
    case SK_EINTR:
        shim.faults[SK_EINTR]++;
        errno = EINTR;
        return -1;
    default:
        shim.faults[SK_EAGAIN]++;
        errno = EAGAIN;
        return -1;
    }
}

ssize_t
sendmsg(int fd, const struct msghdr *m, int flags)
{
    struct iovec iov[SHIM_IOV_MAX];
    struct msghdr cut;
    size_t total = 0, want, i;
    bool fault;
    enum shim_kind k;

    shim_init();
    if (shim_was_reset(fd)) {
        errno = ECONNRESET;
        return -1;
    }
    for (i = 0; i < m->msg_iovlen; i++)
        total += m->msg_iov[i].iov_len;
    k = shim_pick(fd, total, &fault);
    if (!fault || (k == SK_PARTIAL && m->msg_iovlen > SHIM_IOV_MAX))
        return real_sendmsg(fd, m, flags);
    switch (k) {
    case SK_RESET:
        shim_do_reset(fd, "sendmsg");
        errno = ECONNRESET;
        return -1;
    case SK_PARTIAL:
        /* The same buffers, cut after a random number of bytes. */
        shim.faults[SK_PARTIAL]++;
        want = shim_shorter(total);
        cut = *m;
        cut.msg_iov = iov;
        cut.msg_iovlen = 0;
        for (i = 0; i < m->msg_iovlen && want > 0; i++) {
            iov[i] = m->msg_iov[i];
            if (iov[i].iov_len > want)
                iov[i].iov_len = want;
            want -= iov[i].iov_len;
            cut.msg_iovlen++;
        }
        return real_sendmsg(fd, &cut, flags);
    case SK_EINTR:
        shim.faults[SK_EINTR]++;
        errno = EINTR;
        return -1;
    default:
        shim.faults[SK_EAGAIN]++;
        errno = EAGAIN;
        return -1;
    }
}

ssize_t
recv(int fd, void *p, size_t n, int flags)
{
    bool fault;
    enum shim_kind k;

    shim_init();
    if (shim_was_reset(fd)) {
        errno = ECONNRESET;
        return -1;
    }
    /* A peek must see what the next read will (udp_rel relies on it; it
     * is not a stream socket anyway). */
    if (flags & MSG_PEEK)
        return real_recv(fd, p, n, flags);
    k = shim_pick(fd, n, &fault);
    if (!fault)
        return real_recv(fd, p, n, flags);
    switch (k) {
    case SK_RESET:
        shim_do_reset(fd, "recv");
        errno = ECONNRESET;
        return -1;
    case SK_PARTIAL: /* a short read: the rest stays queued */
        shim.faults[SK_PARTIAL]++;
        return real_recv(fd, p, shim_shorter(n), flags);
    case SK_EINTR:
        shim.faults[SK_EINTR]++;
        errno = EINTR;
        return -1;
    default:
        shim.faults[SK_EAGAIN]++;
        errno = EAGAIN;
        return -1;
    }
}

int
accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    static const int errs[] = {EINTR, EAGAIN, ECONNABORTED, EMFILE};
    int fd2;

    shim_init();
    shim.calls++;
    if (shim_active() && shim.accept > 0 && shim_is_stream(fd) &&
        shim_uniform() < shim.accept) {
        /* The connection stays queued: the listener stays readable. */
        shim.faults[SK_ACCEPT]++;
        errno = errs[shim_next() % (sizeof(errs) / sizeof(errs[0]))];
        return -1;
    }
    if (shim.fd_limit > 0 && shim_is_stream(fd)) {
        int lowest = fcntl(fd, F_DUPFD_CLOEXEC, 0);

        if (lowest >= 0)
            real_close(lowest);
        if (lowest >= shim.fd_limit) {
            errno = EMFILE; /* the connection stays queued */
            return -1;
        }
    }
    fd2 = real_accept4(fd, sa, len, flags);
    if (fd2 >= 0 && fd2 < SHIM_FD_MAX)
        shim_reset_fd[fd2] = 0;
    return fd2;
}

int
close(int fd)
{
    shim_init();
    if (fd >= 0 && fd < SHIM_FD_MAX)
        shim_reset_fd[fd] = 0;
    return real_close(fd);
}

/* ---- allocation ---------------------------------------------------- */

static void *
boot_alloc(size_t n)
{
    size_t at =
        (boot.used + SHIM_BOOT_ALIGN - 1) & ~(size_t)(SHIM_BOOT_ALIGN - 1);

    /* Room for the size, then the block, both aligned. */
    if (n > sizeof(boot.bytes) || at > sizeof(boot.bytes) - SHIM_BOOT_ALIGN ||
        n > sizeof(boot.bytes) - SHIM_BOOT_ALIGN - at)
        return NULL;
    memcpy(boot.bytes + at, &n, sizeof(n));
    boot.used = at + SHIM_BOOT_ALIGN + n;
    return boot.bytes + at + SHIM_BOOT_ALIGN; /* zeroed: static, never reused */
}

static bool
is_boot(const void *p)
{
    const unsigned char *q = p;

    return q >= boot.bytes && q < boot.bytes + sizeof(boot.bytes);
}

/* true once the real allocator is known; false while dlsym() runs (the
 * caller then serves the request from boot). */
static bool
mem_resolve(void)
{
    if (real_free)
        return true;
    if (boot.resolving)
        return false;
    boot.resolving = true;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    boot.resolving = false;
    return real_malloc && real_calloc && real_realloc && real_free;
}

/* Whether this allocation of n bytes fails. */
static bool
mem_fail(size_t n, const char *call)
{
    char line[120];
    int saved = errno;

    shim_env();
    if (shim.malloc_rate <= 0 || n < shim.malloc_min)
        return false;
    shim.malloc_big++;
    if (!shim_active() || shim_uniform() >= shim.malloc_rate)
        return false;
    shim.malloc_failed++;
    snprintf(line, sizeof(line), "nomem pid=%d call=%s size=%zu\n",
             (int)getpid(), call, n);
    shim_log_line(line);
    errno = saved;
    return true;
}

void *
malloc(size_t n)
{
    if (!mem_resolve())
        return boot_alloc(n);
    if (mem_fail(n, "malloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return real_malloc(n);
}

void *
calloc(size_t k, size_t n)
{
    if (n != 0 && k > SIZE_MAX / n) {
        errno = ENOMEM;
        return NULL;
    }
    if (!mem_resolve())
        return boot_alloc(k * n);
    if (mem_fail(k * n, "calloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return real_calloc(k, n);
}

void *
realloc(void *p, size_t n)
{
    if (p != NULL && is_boot(p)) {
        size_t old;
        void *q;

        memcpy(&old, (unsigned char *)p - SHIM_BOOT_ALIGN, sizeof(old));
        q = malloc(n);
        if (q != NULL)
            memcpy(q, p, old < n ? old : n);
        return q;
    }
    if (!mem_resolve())
        return p == NULL ? boot_alloc(n) : NULL;
    if (n > 0 && mem_fail(n, "realloc")) {
        errno = ENOMEM; /* p stays allocated, as with a real failure */
        return NULL;
    }
    return real_realloc(p, n);
}

void
free(void *p)
{
    if (p == NULL || is_boot(p))
        return;
    if (mem_resolve())
        real_free(p);
}

__attribute__((destructor)) static void
shim_summary(void)
{
    char line[300];
    int n, i;

    if (!shim.ready && shim.malloc_big == 0)
        return;
    n = snprintf(line, sizeof(line), "summary pid=%d calls=%lu", (int)getpid(),
                 shim.calls);
    for (i = 0; i < SK_COUNT && n > 0 && (size_t)n < sizeof(line); i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " %s=%lu",
                      shim_kind_names[i], shim.faults[i]);
    if (n > 0 && (size_t)n < sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n,
                      " malloc_big=%lu malloc_failed=%lu", shim.malloc_big,
                      shim.malloc_failed);
    if (n > 0 && (size_t)n < sizeof(line) - 1) {
        line[n] = '\n';
        line[n + 1] = '\0';
    }
    shim_log_line(line);
}
