/* loadgen.c - sockchat and IRC load generator (bench/, never installed).
 *
 * One process, one thread, epoll, TCP_NODELAY, non-blocking sockets; it
 * follows doc/BENCHMARKS.md (and the shared BENCHMARK-METHOD). N clients
 * register and join a room, at most C connecting or registering at a time.
 * --proto sockchat (the default) says hello and join and counts a client as
 * registered at `welcome` and joined at `room`; --proto irc sends NICK and
 * USER, counts it registered at numeric 001, sends JOIN and counts it joined
 * at 366, and answers PING with PONG. Clients 0..S-1 are senders and members
 * too; each sends WARM + M messages (or, with --seconds, as many as fit in
 * the measured time) whose text carries its id, its own sequence number and
 * the send time (CLOCK_MONOTONIC, ns). A sockchat `say` frame is 100 bytes
 * on the wire; an IRC line is 100 bytes including "PRIVMSG #bench :" and
 * CRLF.
 *
 * --rooms K spreads the clients over K rooms (client i in room i % K, named
 * "#r0000" and up so that messages keep their size); every rule below then
 * holds per room.
 *
 * Window: a sender may have at most W messages that have not yet reached
 * all the other members of its room (the exact rule of the method, not an
 * echo-based approximation). Every receiver counts each new message of each
 * sender in a per-sender ring of W counters; the oldest outstanding message
 * is done when its counter reaches the room's size - 1. sockchatd also sends
 * the sender its own copy: it is checked but counts neither as a delivery
 * nor towards the window. IRC servers send no such copy.
 *
 * Every receiver parses every delivery and checks its content (size, sender
 * id against the nick, the filler) and the sender's sequence (no gap, no
 * duplicate, in order); with sockchat also the room seq (first 1, then
 * strictly +1; the server must be fresh). IRC has no room seq. Latency is
 * receive time (taken once per recv) minus the embedded send time, into 1 us
 * buckets up to 1 s (then 1 ms buckets up to 60 s, then an overflow bucket);
 * percentiles are the lower edge of their bucket. The measured phase starts
 * once every WARM message has reached every member (a barrier: senders pause
 * at WARM) and ends when the last measured message has reached everyone,
 * echoes included.
 *
 * --idle measures memory and liveness instead: the N clients only register
 * (no join); once all are registered (the connect time, for the connect
 * storm rows) and a settling second has passed, it reads the server's VmRSS
 * (--server-pid) against the reading taken before the first connect, then
 * every client sends one ping and times its pong, then all hold for --hold
 * seconds.
 *
 * --relay runs the optional "raw relay" ceiling instead: a minimal epoll
 * server (sockchat protocol only) that answers hello and join with canned
 * replies and turns each say into a message frame for every member of the
 * room (sender included, as sockchatd does), appending to per-client
 * buffers and flushing once per epoll_wait batch. It is not a chat server;
 * it measures the loopback TCP path and the load generator itself.
 *
 * --free-port prints a free TCP port on 127.0.0.1 (outside the ephemeral
 * range) for servers that cannot be told to pick one.
 *
 * --transport (implied by a udp:// or unix:// URL, and by --secure) drives
 * every connection through common/transport.h instead of raw sockets, so
 * that tcp://, udp:// and unix:// differ only in the URL: connects are
 * blocking with a timeout (one per loop pass), the loop watches what
 * transport_poll_events asks for (udp waits for READ, not WRITE, while its
 * window is full) and runs transport_tick when transport_next_timeout says
 * so. --secure adds the secure session of common/secure.h (doc/SECURE.md):
 * secure request, the server's signed reply (every client must see the same
 * server key; nothing is pinned), then every frame sealed both ways. The
 * workload, the window rule and every check are the same as without it.
 *
 * Loopback only: any other address is refused. Exit status: 0 when every
 * check passed, 1 when a check failed (loss, duplicate, order, room seq, an
 * error from the server, a member that left, a ping not answered), 2 for a
 * bad command line or a system error, 3 when the run did not complete
 * (--max-seconds, no progress for --stall-seconds (5), or a connection
 * lost).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <glib.h>

#include "err.h"
#include "secure.h"
#include "transport.h"

#define FRAME_HDR 4
#define FRAME_CAP (16u * 1024 * 1024) /* protocol's largest max_frame */
#define PRE_WELCOME_FRAME 65536       /* limit until welcome says */
#define READ_CHUNK (256u * 1024)
#define HIST_US 1000000u /* 1 us buckets below 1 s, */
#define HIST_MS 60000u   /* then 1 ms buckets below 60 s, then overflow */
#define HIST_LEN (HIST_US + (HIST_MS - 1000u) + 1u)
#define MAX_EVENTS 1024
#define NICK_PREFIX "lg"
#define TEXT_HEAD 37 /* "SSSS QQQQQQQQQQ TTTTTTTTTTTTTTTTTTTT " */
#define MAX_FIELDS 16
#define STALL_SECONDS 5   /* default: no byte received while sending: give up */
#define IRC_LINE_MAX 8192 /* longer than any server's, to be lenient */
#define PING_WAIT_S 5     /* idle mode: pongs missing after this fail */
#define ROOM_NAME_MAX 40
#define SEQ_MAX 9999999999ULL /* 10 digits in the text */
#define SAY_MAX 4200          /* largest say body: prefix, 4096 text, "} */

enum proto {
    PROTO_SOCKCHAT = 0,
    PROTO_IRC,
};

enum conn_state {
    CS_IDLE = 0, /* not connected yet */
    CS_CONNECTING,
    CS_SECURE, /* --secure: secure request sent, waiting for its reply */
    CS_HELLO,  /* hello (IRC: NICK, USER) sent, waiting for welcome (001) */
    CS_JOIN,   /* join sent, waiting for room (IRC: 366) */
    CS_READY,
    CS_DEAD,
};

enum phase {
    PH_CONNECT = 0,
    PH_WARM,
    PH_MEASURE,
    PH_SETTLE, /* idle mode: all registered, waiting before reading RSS */
    PH_PING,   /* idle mode: one ping out per client */
    PH_HOLD,   /* idle mode: holding the connections */
    PH_DONE,
};

struct obuf {
    uint8_t *p;
    size_t off, len, cap;
};

struct conn {
    int fd;
    struct transport *t;        /* --transport: owns fd */
    struct secure_session *sec; /* --secure */
    uint32_t ev;                /* --transport: epoll events registered */
    int64_t due_ms;             /* --transport: transport_tick due, -1 never */
    bool sealed;                /* --secure: established, frames are sealed */
    unsigned id;
    enum conn_state state;
    bool want_out;  /* EPOLLOUT registered */
    uint8_t *stash; /* an incomplete frame left from the last recv */
    size_t stash_len, stash_cap;
    struct obuf out;
    unsigned room;     /* id % rooms */
    uint64_t room_seq; /* last room seq seen; 0 = none yet */
    uint64_t *next;    /* per sender of the room (by slot): next seq, from 1 */
    uint64_t *gaps;    /* per slot: messages skipped and not yet seen */
    int64_t ping_ns;   /* idle mode: when the ping went out */
    int64_t pong_us;   /* idle mode: its round trip, -1 = none yet */
    /* relay mode only */
    char nick[32];
    bool pending; /* in the relay's flush list */
    struct relay_room *rroom;
};

struct sender {
    uint64_t sent;  /* sequences 1..sent are out */
    uint64_t acked; /* 1..acked reached all N-1 others */
    uint32_t *ring; /* W counters of receivers, by seq % W */
    uint64_t limit; /* send up to this sequence in the current phase */
    int64_t due_ns; /* rate mode: when the next one may go */
    bool dirty;     /* in lg.dirty: its window moved */
    bool done;      /* everything up to limit arrived everywhere */
};

struct counters {
    uint64_t gaps, dups, reorders, room_seq_errors, bad_deliveries;
    uint64_t server_errors, closed, peer_left, proto_errors, pings_lost;
    uint64_t rate_late; /* rate mode: sends held back by the window */
};

struct proc_sample {
    bool ok;
    double stat_s;      /* utime + stime */
    double user_s;      /* utime alone */
    double schedstat_s; /* sum over tasks of time on CPU */
};

struct lg {
    /* options */
    char *url, *room, *proto_name;
    int n, s, w, c, text_bytes, max_seconds, server_pid, rooms, seconds;
    int hold, settle_ms, stall_s;
    gint64 m, warm;
    double rate;
    gboolean json, relay, idle, free_port;
    gboolean use_transport, secure;
    int connect_ms;
    uint8_t server_pk[SECURE_PK_BYTES]; /* --secure: the first client's view */
    bool have_server_pk;
    char *say_tmp; /* --secure: a say body before sealing */

    enum proto proto;
    int slots;         /* senders per room at most: ceil(S / rooms) */
    char **room_names; /* by room index */
    size_t room_len;   /* every room name has this length */

    struct sockaddr_storage addr;
    socklen_t addr_len;
    int ep;
    struct conn *conns;
    struct sender *senders;
    /* With thousands of senders, a pass over all of them per epoll_wait
     * would cost more than the server's work: only the senders whose window
     * moved are refilled, and finished senders are counted as they finish. */
    unsigned *dirty;
    int ndirty, ndone;
    uint64_t *next_all, *gaps_all;
    uint8_t *scratch;
    size_t scratch_cap;
    uint32_t max_frame;
    size_t say_prefix_len; /* bytes before the text, room included */

    enum phase phase;
    int next_connect, in_flight, ready, pongs;
    int registered, registered_1s; /* and how many within 1 s of start */
    int64_t t_start, t_ready, t_measure, t_end, deadline;
    int64_t t_progress; /* last frame received */
    int64_t t_phase;    /* idle mode: when the current phase began */
    bool stalled, stopping;
    uint64_t deliveries; /* measured, to others */
    uint64_t echoes;     /* measured, to the sender itself */
    uint64_t *hist;
    uint64_t lat_sum_us, lat_max_us, lat_n;
    struct counters err;
    char first_error[256];
    struct proc_sample cpu0, cpu1;
    double self0, self1, busy0, busy1;
    long long overflows0, overflows1;
    long rss_kb, hwm_kb;
    long rss0_kb;         /* idle mode: before the first connect */
    long rss_end_kb;      /* idle mode: after the pings and the hold */
    long ready_overflows; /* ListenOverflows once all were registered */
};

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void note_error(struct lg *g, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
note_error(struct lg *g, const char *fmt, ...)
{
    va_list ap;

    if (g->first_error[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(g->first_error, sizeof(g->first_error), fmt, ap);
    va_end(ap);
}

/* ---- /proc readings ---------------------------------------------------- */

static struct proc_sample
proc_cpu(int pid)
{
    struct proc_sample r = {0};
    char path[64], buf[1024];
    FILE *f = NULL;
    char *p;
    unsigned long long ut = 0, st = 0;
    DIR *d = NULL;
    struct dirent *de;
    int i;

    if (pid <= 0)
        return r;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return r;
    if (!fgets(buf, sizeof(buf), f)) {
        fclose(f);
        return r;
    }
    fclose(f);
    /* The command name may hold spaces: fields count from the last ')'. */
    p = strrchr(buf, ')');
    if (!p)
        return r;
    p++;
    /* Field 3 follows ')'; utime and stime are fields 14 and 15. */
    for (i = 3; i < 14 && p; i++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p, " %llu %llu", &ut, &st) != 2)
        return r;
    r.stat_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    r.user_s = (double)ut / (double)sysconf(_SC_CLK_TCK);
    r.ok = true;

    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    d = opendir(path);
    if (!d)
        return r;
    while ((de = readdir(d)) != NULL) {
        unsigned long long ns = 0;

        if (de->d_name[0] == '.')
            continue;
        snprintf(buf, sizeof(buf), "/proc/%d/task/%s/schedstat", pid,
                 de->d_name);
        f = fopen(buf, "r");
        if (!f)
            continue;
        if (fscanf(f, "%llu", &ns) == 1)
            r.schedstat_s += (double)ns / 1e9;
        fclose(f);
    }
    closedir(d);
    return r;
}

static long
proc_status_kb(int pid, const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long v = -1;
    FILE *f;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* TcpExt ListenOverflows of this network namespace, or -1. */
static long long
listen_overflows(void)
{
    char names[4096], values[4096];
    char *sn = NULL, *sv = NULL, *tn, *tv;
    long long r = -1;
    FILE *f = fopen("/proc/net/netstat", "r");

    if (!f)
        return -1;
    while (fgets(names, sizeof(names), f) && fgets(values, sizeof(values), f)) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        tn = strtok_r(names, " \n", &sn);
        tv = strtok_r(values, " \n", &sv);
        while (tn && tv) {
            if (strcmp(tn, "ListenOverflows") == 0) {
                r = strtoll(tv, NULL, 10);
                break;
            }
            tn = strtok_r(NULL, " \n", &sn);
            tv = strtok_r(NULL, " \n", &sv);
        }
        break;
    }
    fclose(f);
    return r;
}

/* Seconds of CPU time the whole machine spent busy (not idle, iowait or
 * steal), from /proc/stat; -1 when unreadable. With the server's and the
 * load generator's own time it tells how much else was running. */
static double
machine_busy(void)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n;

    if (!f)
        return -1;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
               &v[9]);
    fclose(f);
    if (n < 8)
        return -1;
    /* user nice system [idle iowait] irq softirq [steal]; guest time is
     * already in user. */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) /
           (double)sysconf(_SC_CLK_TCK);
}

static double
self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- a flat JSON object scanner -------------------------------------- */

/* Deliveries are flat objects of strings and numbers; cJSON would allocate
 * a tree per frame and make the load generator, not the server, the
 * bottleneck. This scanner checks the object's syntax and lends pointers
 * into the frame. Anything nested makes it answer -2, and the caller falls
 * back to cJSON (welcome, room). */
struct jfield {
    const char *k, *v;
    size_t klen, vlen;
    bool str, esc;
};

static const char *
skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at the opening quote; the end of the string's content, or NULL. */
static const char *
scan_string(const char *p, const char *e, bool *esc)
{
    p++;
    while (p < e) {
        unsigned char ch = (unsigned char)*p;

        if (ch == '"')
            return p;
        if (ch < 0x20)
            return NULL;
        if (ch == '\\') {
            *esc = true;
            p++;
            if (p >= e)
                return NULL;
        }
        p++;
    }
    return NULL;
}

/* Number of fields, -1 when malformed, -2 when nested (use cJSON). */
static int
flat_scan(const char *p, size_t n, struct jfield *f, int maxf)
{
    const char *e = p + n;
    int nf = 0;

    p = skip_ws(p, e);
    if (p >= e || *p != '{')
        return -1;
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}')
        goto tail;
    for (;;) {
        struct jfield *x;
        const char *q;

        if (nf == maxf)
            return -2;
        x = &f[nf++];
        memset(x, 0, sizeof(*x));
        if (p >= e || *p != '"')
            return -1;
        q = scan_string(p, e, &x->esc);
        if (!q)
            return -1;
        x->k = p + 1;
        x->klen = (size_t)(q - p - 1);
        x->esc = false;
        p = skip_ws(q + 1, e);
        if (p >= e || *p != ':')
            return -1;
        p = skip_ws(p + 1, e);
        if (p >= e)
            return -1;
        if (*p == '"') {
            q = scan_string(p, e, &x->esc);
            if (!q)
                return -1;
            x->str = true;
            x->v = p + 1;
            x->vlen = (size_t)(q - p - 1);
            p = q + 1;
        } else if (*p == '{' || *p == '[') {
            return -2;
        } else {
            q = p;
            while (q < e &&
                   (g_ascii_isalnum(*q) || *q == '-' || *q == '+' || *q == '.'))
                q++;
            if (q == p)
                return -1;
            x->v = p;
            x->vlen = (size_t)(q - p);
            p = q;
        }
        p = skip_ws(p, e);
        if (p >= e)
            return -1;
        if (*p == '}')
            break;
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, e);
    }
tail:
    p = skip_ws(p + 1, e);
    return p == e ? nf : -1;
}

static const struct jfield *
field(const struct jfield *f, int nf, const char *key)
{
    size_t kl = strlen(key);
    int i;

    for (i = 0; i < nf; i++)
        if (f[i].klen == kl && memcmp(f[i].k, key, kl) == 0)
            return &f[i];
    return NULL;
}

static bool
field_is(const struct jfield *x, const char *s)
{
    size_t l = strlen(s);

    return x && x->str && !x->esc && x->vlen == l && memcmp(x->v, s, l) == 0;
}

/* Digits only, at most 20 of them, no overflow. */
static bool
parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0, d;
    size_t i;

    *out = 0;
    if (n == 0 || n > 20)
        return false;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* ---- buffers and sockets -------------------------------------------- */

static uint8_t *
obuf_reserve(struct obuf *b, size_t n)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (n > b->cap - b->len) {
        if (b->off > 0) {
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (n > b->cap - b->len) {
            size_t ncap = b->cap ? b->cap : 4096;

            while (n > ncap - b->len)
                ncap *= 2;
            b->p = g_realloc(b->p, ncap);
            b->cap = ncap;
        }
    }
    return b->p + b->len;
}

static void
store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void
obuf_frame(struct obuf *b, const char *json, size_t len)
{
    uint8_t *p = obuf_reserve(b, FRAME_HDR + len);

    store_be32(p, (uint32_t)len);
    memcpy(p + FRAME_HDR, json, len);
    b->len += FRAME_HDR + len;
}

static void
obuf_raw(struct obuf *b, const void *p, size_t len)
{
    memcpy(obuf_reserve(b, len), p, len);
    b->len += len;
}

/* --transport: watch what the transport asks for (udp wants READ, not
 * WRITE, while its window is full) and note when its timers are due. */
static void
tp_refresh(struct lg *g, struct conn *c)
{
    struct epoll_event ev = {0};
    unsigned want = TRANSPORT_READ, tev;
    int64_t now_ms = mono_ns() / 1000000;
    int due;

    if (c->out.len > c->out.off)
        want |= TRANSPORT_WRITE;
    tev = transport_poll_events(c->t, want);
    ev.events = (tev & TRANSPORT_READ ? (uint32_t)EPOLLIN : 0u) |
                (tev & TRANSPORT_WRITE ? (uint32_t)EPOLLOUT : 0u);
    if (ev.events != c->ev) {
        ev.data.u32 = c->id;
        if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
            c->ev = ev.events;
    }
    due = transport_next_timeout(c->t, now_ms);
    c->due_ms = due < 0 ? -1 : now_ms + due;
}

static void
conn_want_out(struct lg *g, struct conn *c, bool want)
{
    struct epoll_event ev = {0};

    if (c->t) {
        tp_refresh(g, c);
        return;
    }
    if (c->want_out == want || c->fd < 0)
        return;
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.u32 = c->id;
    if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = want;
}

static void
conn_kill(struct lg *g, struct conn *c, const char *why)
{
    if (c->state == CS_DEAD)
        return;
    if (why && g->phase != PH_DONE) {
        g->err.closed++;
        note_error(g, "client %u: %s", c->id, why);
    }
    if (c->state == CS_CONNECTING || c->state == CS_SECURE ||
        c->state == CS_HELLO)
        g->in_flight--;
    if (c->t) {
        epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
        transport_close(c->t);
        c->t = NULL;
    } else if (c->fd >= 0) {
        epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    secure_free(c->sec);
    c->sec = NULL;
    c->sealed = false;
    c->fd = -1;
    c->state = CS_DEAD;
}

/* --transport: as conn_flush. */
static bool
tp_flush(struct lg *g, struct conn *c)
{
    while (c->out.len > c->out.off) {
        ssize_t k = transport_send(c->t, c->out.p + c->out.off,
                                   c->out.len - c->out.off);

        if (k == CHAT_EAGAIN)
            break;
        if (k < 0) {
            char why[96];

            snprintf(why, sizeof(why), "send: %s", chat_strerror((int)k));
            conn_kill(g, c, why);
            return false;
        }
        c->out.off += (size_t)k;
    }
    tp_refresh(g, c);
    return true;
}

/* false when the connection died. */
static bool
conn_flush(struct lg *g, struct conn *c)
{
    if (c->t)
        return tp_flush(g, c);
    while (c->out.len > c->out.off) {
        ssize_t k = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off,
                         MSG_NOSIGNAL);

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (k < 0) {
            char why[96];

            snprintf(why, sizeof(why), "send: %s", strerror(errno));
            conn_kill(g, c, why);
            return false;
        }
        c->out.off += (size_t)k;
    }
    conn_want_out(g, c, c->out.len > c->out.off);
    return true;
}

static int
sock_tune(int fd)
{
    int one = 1;

    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Accepts tcp://127.x.y.z:PORT and tcp://[::1]:PORT only. */
static int
parse_url(const char *url, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *p, *colon;
    struct addrinfo hints = {0}, *ai = NULL;
    size_t hl;
    int rc = -1;

    memset(ss, 0, sizeof(*ss));
    *len = 0;
    if (strncmp(url, "tcp://", 6) != 0)
        return -1;
    p = url + 6;
    if (*p == '[') {
        const char *rb = strchr(p, ']');

        if (!rb || rb[1] != ':')
            return -1;
        hl = (size_t)(rb - p - 1);
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, p + 1, hl);
        colon = rb + 1;
    } else {
        colon = strrchr(p, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - p);
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, p, hl);
    }
    host[hl] = '\0';
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
        return -1;
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ai->ai_addr;

        if ((ntohl(a->sin_addr.s_addr) >> 24) == 127)
            rc = 0;
    } else if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ai->ai_addr;

        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            rc = 0;
    }
    if (rc == 0) {
        memcpy(ss, ai->ai_addr, ai->ai_addrlen);
        *len = ai->ai_addrlen;
    }
    freeaddrinfo(ai);
    return rc;
}

/* --transport: tcp:// and udp:// to a loopback address (the same check as
 * the raw sockets'), or unix:// with a path. */
static bool
tp_url_ok(const char *url)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char *tcp;
    bool ok;

    if (strncmp(url, "unix://", 7) == 0)
        return url[7] != '\0';
    if (strncmp(url, "udp://", 6) != 0)
        return parse_url(url, &ss, &len) == 0;
    tcp = g_strconcat("tcp://", url + 6, NULL);
    ok = parse_url(tcp, &ss, &len) == 0;
    g_free(tcp);
    return ok;
}

static void
raise_nofile(int need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)need
                          ? (rlim_t)need
                          : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- the load generator ---------------------------------------------- */

static void tp_connect(struct lg *g, struct conn *c);

static void
start_connect(struct lg *g, struct conn *c)
{
    struct epoll_event ev = {0};
    int fd;

    if (g->use_transport) {
        tp_connect(g, c);
        return;
    }
    fd = socket(g->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    g->in_flight++;
    c->state = CS_CONNECTING;
    if (fd < 0) {
        conn_kill(g, c, "socket failed");
        return;
    }
    c->fd = fd;
    sock_tune(fd);
    if (connect(fd, (struct sockaddr *)&g->addr, g->addr_len) != 0 &&
        errno != EINPROGRESS) {
        char why[96];

        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        conn_kill(g, c, why);
        return;
    }
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = c->id;
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        conn_kill(g, c, "epoll_ctl failed");
        return;
    }
    c->want_out = true;
}

static void
conn_send(struct lg *g, struct conn *c, const char *p, size_t n)
{
    obuf_raw(&c->out, p, n);
    conn_flush(g, c);
}

/* --secure: seal n bytes of JSON as the next frame and queue it. A frame
 * that cannot be sealed is a failed check (the stream is then out of step,
 * and the run stalls and says so). */
static void
seal_out(struct lg *g, struct conn *c, const char *p, size_t n)
{
    uint8_t *ct = NULL, *d;
    size_t len = 0;

    if (secure_seal(c->sec, p, n, false, &ct, &len) != CHAT_OK) {
        g->err.proto_errors++;
        note_error(g, "client %u: secure_seal failed", c->id);
        return;
    }
    d = obuf_reserve(&c->out, FRAME_HDR + len);
    store_be32(d, (uint32_t)len);
    memcpy(d + FRAME_HDR, ct, len);
    c->out.len += FRAME_HDR + len;
    g_free(ct);
}

static void
send_json(struct lg *g, struct conn *c, const char *json)
{
    if (c->sealed)
        seal_out(g, c, json, strlen(json));
    else
        obuf_frame(&c->out, json, strlen(json));
    conn_flush(g, c);
}

static void
send_join(struct lg *g, struct conn *c)
{
    char buf[160];
    int len;

    if (g->proto == PROTO_IRC) {
        len = snprintf(buf, sizeof(buf), "JOIN %s\r\n", g->room_names[c->room]);
        conn_send(g, c, buf, (size_t)len);
    } else {
        snprintf(buf, sizeof(buf), "{\"type\":\"join\",\"room\":\"%s\"}",
                 g->room_names[c->room]);
        send_json(g, c, buf);
    }
}

/* The client's answer to a server's ping (sockchat) or PING (IRC). */
static void
send_pong(struct lg *g, struct conn *c, const char *tok, size_t toklen)
{
    char buf[160];
    int len;

    if (toklen > 64)
        toklen = 64;
    if (g->proto == PROTO_IRC) {
        len = snprintf(buf, sizeof(buf), "PONG :%.*s\r\n", (int)toklen, tok);
        conn_send(g, c, buf, (size_t)len);
    } else if (tok) {
        snprintf(buf, sizeof(buf), "{\"type\":\"pong\",\"token\":\"%.*s\"}",
                 (int)toklen, tok);
        send_json(g, c, buf);
    } else {
        send_json(g, c, "{\"type\":\"pong\"}");
    }
}

/* Idle mode: the client's own ping, token "p<id>". */
static void
send_ping(struct lg *g, struct conn *c, int64_t now)
{
    char buf[96];
    int len;

    c->ping_ns = now;
    c->pong_us = -1;
    if (g->proto == PROTO_IRC) {
        len = snprintf(buf, sizeof(buf), "PING :p%u\r\n", c->id);
        conn_send(g, c, buf, (size_t)len);
    } else {
        snprintf(buf, sizeof(buf), "{\"type\":\"ping\",\"token\":\"p%u\"}",
                 c->id);
        send_json(g, c, buf);
    }
}

static void
on_pong(struct lg *g, struct conn *c, const char *tok, size_t toklen,
        int64_t now)
{
    char want[24];
    int wl = snprintf(want, sizeof(want), "p%u", c->id);

    if (g->phase != PH_PING || c->pong_us >= 0)
        return;
    if (!tok || toklen != (size_t)wl || memcmp(tok, want, toklen) != 0) {
        g->err.proto_errors++;
        note_error(g, "client %u: pong with the wrong token", c->id);
        return;
    }
    c->pong_us = (now - c->ping_ns) / 1000;
    g->pongs++;
}

/* A client is registered: welcome (sockchat) or 001 (IRC). */
static void
on_registered(struct lg *g, struct conn *c)
{
    if (c->state != CS_HELLO)
        return;
    g->in_flight--;
    g->registered++;
    if (mono_ns() - g->t_start <= 1000000000)
        g->registered_1s++;
    if (g->idle) {
        c->state = CS_READY;
        g->ready++;
        return;
    }
    c->state = CS_JOIN;
    send_join(g, c);
}

static void
on_joined(struct lg *g, struct conn *c)
{
    if (c->state != CS_JOIN)
        return;
    c->state = CS_READY;
    g->ready++;
}

static void
send_hello(struct lg *g, struct conn *c)
{
    char buf[160];

    c->state = CS_HELLO;
    snprintf(buf, sizeof(buf),
             "{\"type\":\"hello\",\"version\":1,\"nick\":\"" NICK_PREFIX
             "%u\",\"client\":\"loadgen\"}",
             c->id);
    send_json(g, c, buf);
}

static void
on_connected(struct lg *g, struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof(err);
    char buf[160];
    int len;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        snprintf(buf, sizeof(buf), "connect: %s", strerror(err ? err : errno));
        conn_kill(g, c, buf);
        return;
    }
    if (g->proto == PROTO_IRC) {
        c->state = CS_HELLO;
        len = snprintf(buf, sizeof(buf),
                       "NICK " NICK_PREFIX "%u\r\nUSER " NICK_PREFIX
                       "%u 0 * :loadgen\r\n",
                       c->id, c->id);
        conn_send(g, c, buf, (size_t)len);
        return;
    }
    send_hello(g, c);
}

/* --secure, step 1: the plain secure request. */
static void
tp_secure_start(struct lg *g, struct conn *c)
{
    cJSON *req = NULL;
    char *txt;

    if (secure_client_start(&c->sec, &req) != CHAT_OK) {
        conn_kill(g, c, "secure_client_start failed");
        return;
    }
    txt = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!txt) {
        conn_kill(g, c, "out of memory");
        return;
    }
    c->state = CS_SECURE;
    send_json(g, c, txt);
    cJSON_free(txt);
}

/* --secure, step 2: the server's signed reply (a plain frame). Every client
 * must be shown the same server key; nothing is pinned in a file. */
static void
tp_secure_reply(struct lg *g, struct conn *c, const char *p, size_t n)
{
    cJSON *o = cJSON_ParseWithLength(p, n);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    uint8_t pk[SECURE_PK_BYTES];
    const char *why = NULL;

    if (!cJSON_IsObject(o) || !cJSON_IsString(type) ||
        strcmp(type->valuestring, "secure") != 0) {
        /* error (unknown_type, server_full ...): the run stops at once */
        g->err.server_errors++;
        note_error(g, "client %u: no secure reply: %.*s", c->id,
                   (int)(n < 120 ? n : 120), p);
        goto out;
    }
    if (secure_client_finish(c->sec, o, pk, &why) != CHAT_OK) {
        char m[160];

        g->err.proto_errors++;
        snprintf(m, sizeof(m), "secure handshake failed: %s", why ? why : "?");
        conn_kill(g, c, m);
        goto out;
    }
    if (!g->have_server_pk) {
        memcpy(g->server_pk, pk, sizeof(pk));
        g->have_server_pk = true;
    } else if (sodium_memcmp(pk, g->server_pk, sizeof(pk)) != 0) {
        g->err.proto_errors++;
        note_error(g, "client %u: another server key than client 0's", c->id);
    }
    c->sealed = true;
    send_hello(g, c);
out:
    cJSON_Delete(o);
}

/* --transport: connect (blocking, at most --connect-ms), then the secure
 * request or hello. */
static void
tp_connect(struct lg *g, struct conn *c)
{
    struct epoll_event ev = {0};
    char why[200], m[240];

    g->in_flight++;
    c->state = CS_CONNECTING;
    if (transport_connect_url(g->url, 0, g->connect_ms, &c->t, why,
                              sizeof(why)) != CHAT_OK) {
        snprintf(m, sizeof(m), "connect: %s", why);
        conn_kill(g, c, m);
        return;
    }
    c->fd = transport_fd(c->t);
    ev.events = EPOLLIN;
    ev.data.u32 = c->id;
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        conn_kill(g, c, "epoll_ctl failed");
        return;
    }
    c->ev = EPOLLIN;
    if (g->secure)
        tp_secure_start(g, c);
    else
        send_hello(g, c);
}

/* v in exactly width decimal digits, zero-padded (high digits dropped). */
static void
put_digits(char *p, uint64_t v, int width)
{
    int i;

    for (i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* The text of message q of sender k: "kkkk qqqqqqqqqq tttt...t xxx...x". */
static void
put_text(const struct lg *g, char *t, unsigned k, uint64_t q)
{
    put_digits(t, k, 4);
    t[4] = ' ';
    put_digits(t + 5, q, 10);
    t[15] = ' ';
    put_digits(t + 16, (uint64_t)mono_ns(), 20);
    t[36] = ' ';
    memset(t + TEXT_HEAD, 'x', (size_t)g->text_bytes - TEXT_HEAD);
}

/* The JSON of a say of sender k with sequence q in room, at t: exactly
 * say_prefix_len + text_bytes + 2 bytes. */
static void
put_say(const struct lg *g, char *t, const char *room, unsigned k, uint64_t q)
{
    size_t tb = (size_t)g->text_bytes;

    memcpy(t, "{\"type\":\"say\",\"room\":\"", 22);
    memcpy(t + 22, room, g->room_len);
    memcpy(t + 22 + g->room_len, "\",\"text\":\"", 10);
    t += g->say_prefix_len;
    put_text(g, t, k, q);
    memcpy(t + tb, "\"}", 2);
}

/* Append one message of sender k with sequence q, in its room. */
static void
queue_say(struct lg *g, struct conn *c, unsigned k, uint64_t q)
{
    const char *room = g->room_names[c->room];
    size_t body, tb = (size_t)g->text_bytes;
    uint8_t *p;
    char *t;

    if (g->proto == PROTO_IRC) {
        /* "PRIVMSG #room :" text CRLF */
        body = g->say_prefix_len + tb + 2;
        p = obuf_reserve(&c->out, body);
        memcpy(p, "PRIVMSG ", 8);
        memcpy(p + 8, room, g->room_len);
        memcpy(p + 8 + g->room_len, " :", 2);
        t = (char *)p + g->say_prefix_len;
        put_text(g, t, k, q);
        memcpy(t + tb, "\r\n", 2);
        c->out.len += body;
        return;
    }
    body = g->say_prefix_len + tb + 2;
    if (c->sealed) {
        put_say(g, g->say_tmp, room, k, q);
        seal_out(g, c, g->say_tmp, body);
        return;
    }
    p = obuf_reserve(&c->out, FRAME_HDR + body);
    store_be32(p, (uint32_t)body);
    put_say(g, (char *)p + FRAME_HDR, room, k, q);
    c->out.len += FRAME_HDR + body;
}

static void
mark_dirty(struct lg *g, unsigned k)
{
    if (g->senders[k].dirty)
        return;
    g->senders[k].dirty = true;
    g->dirty[g->ndirty++] = k;
}

/* Sender k is done when its messages up to limit reached every other member
 * of its room and, with sockchat, its own copy came back. */
static void
update_done(struct lg *g, unsigned k)
{
    struct sender *sd = &g->senders[k];
    bool done = sd->acked >= sd->limit &&
                (g->proto == PROTO_IRC ||
                 g->conns[k].next[k / (unsigned)g->rooms] > sd->limit);

    if (done != sd->done) {
        sd->done = done;
        g->ndone += done ? 1 : -1;
    }
}

static void
fill_sender(struct lg *g, unsigned k, int64_t now)
{
    struct sender *sd = &g->senders[k];
    struct conn *c = &g->conns[k];
    bool queued = false;

    if (c->state != CS_READY)
        return;
    while (sd->sent < sd->limit) {
        if (g->rate > 0 && sd->due_ns > now)
            break;
        if (sd->sent - sd->acked >= (uint64_t)g->w) {
            if (g->rate > 0)
                g->err.rate_late++;
            break;
        }
        sd->sent++;
        queue_say(g, c, k, sd->sent);
        queued = true;
        if (g->rate > 0)
            sd->due_ns += (int64_t)(1e9 / g->rate);
    }
    if (queued)
        conn_flush(g, c);
}

/* Members of room r: clients r, r + K, r + 2K, ... below N. */
static uint32_t
room_size(const struct lg *g, unsigned r)
{
    return (uint32_t)(g->n / g->rooms + ((int)r < g->n % g->rooms ? 1 : 0));
}

static void
count_delivery(struct lg *g, unsigned k, uint64_t q)
{
    struct sender *sd = &g->senders[k];
    uint32_t others = room_size(g, k % (unsigned)g->rooms) - 1;

    if (q <= sd->acked || q > sd->sent) {
        g->err.bad_deliveries++;
        note_error(g, "sender %u seq %" PRIu64 " outside its window", k, q);
        return;
    }
    sd->ring[q % (uint64_t)g->w]++;
    while (sd->acked < sd->sent &&
           sd->ring[(sd->acked + 1) % (uint64_t)g->w] == others) {
        sd->acked++;
        sd->ring[sd->acked % (uint64_t)g->w] = 0;
        mark_dirty(g, k);
    }
    update_done(g, k);
}

/* Bucket of a latency in us: exact below 1 s, by the ms below 60 s. */
static uint32_t
hist_bucket(uint64_t us)
{
    if (us < HIST_US)
        return (uint32_t)us;
    if (us < (uint64_t)HIST_MS * 1000)
        return HIST_US + (uint32_t)(us / 1000 - 1000);
    return HIST_LEN - 1;
}

/* The lower edge of bucket i, in us (overflow: 60 s). */
static uint64_t
hist_value(uint32_t i)
{
    if (i < HIST_US)
        return i;
    return ((uint64_t)(i - HIST_US) + 1000) * 1000;
}

static uint64_t
over_1s(const struct lg *g)
{
    uint64_t n = 0;
    uint32_t i;

    for (i = HIST_US; i < HIST_LEN; i++)
        n += g->hist[i];
    return n;
}

/* "lg<k>" with k a sender of this receiver's room, or false. */
static bool
parse_nick(const struct lg *g, const struct conn *c, const char *p, size_t n,
           uint64_t *k)
{
    const size_t pl = strlen(NICK_PREFIX);

    *k = 0;
    return n > pl && memcmp(p, NICK_PREFIX, pl) == 0 &&
           parse_u64(p + pl, n - pl, k) && *k < (uint64_t)g->s &&
           *k % (uint64_t)g->rooms == c->room;
}

/* The text as queue_say made it, for sender k: its sequence and send time. */
static bool
parse_text(const struct lg *g, const char *t, size_t n, uint64_t k, uint64_t *q,
           uint64_t *ts)
{
    uint64_t k2;
    size_t i;

    *q = *ts = 0;
    if (n != (size_t)g->text_bytes || !parse_u64(t, 4, &k2) || k2 != k ||
        t[4] != ' ' || !parse_u64(t + 5, 10, q) || t[15] != ' ' ||
        !parse_u64(t + 16, 20, ts) || t[36] != ' ')
        return false;
    for (i = TEXT_HEAD; i < n; i++)
        if (t[i] != 'x')
            return false;
    return true;
}

/* One checked delivery of message q of sender k to client c. */
static void
on_delivery(struct lg *g, struct conn *c, uint64_t k, uint64_t q, uint64_t ts,
            int64_t now)
{
    unsigned slot = (unsigned)(k / (uint64_t)g->rooms);
    uint64_t exp = c->next[slot];
    int64_t lat;

    if (q < exp) {
        if (c->gaps[slot] > 0) {
            g->err.reorders++;
            c->gaps[slot]--;
        } else {
            g->err.dups++;
        }
        note_error(
            g, "client %u: sender %" PRIu64 " seq %" PRIu64 " after %" PRIu64,
            c->id, k, q, exp - 1);
        return;
    }
    if (q > exp) {
        g->err.gaps += q - exp;
        c->gaps[slot] += q - exp;
        note_error(g,
                   "client %u: sender %" PRIu64 " seq %" PRIu64
                   " expected %" PRIu64,
                   c->id, k, q, exp);
    }
    c->next[slot] = q + 1;

    if (k == c->id) {
        if (g->phase == PH_MEASURE)
            g->echoes++;
        update_done(g, (unsigned)k);
        return;
    }
    count_delivery(g, (unsigned)k, q);
    if (g->phase != PH_MEASURE || q <= (uint64_t)g->warm)
        return;
    g->deliveries++;
    lat = now - (int64_t)ts;
    if (lat < 0)
        lat = 0;
    lat /= 1000;
    g->hist[hist_bucket((uint64_t)lat)]++;
    g->lat_sum_us += (uint64_t)lat;
    if ((uint64_t)lat > g->lat_max_us)
        g->lat_max_us = (uint64_t)lat;
    g->lat_n++;
}

static void
on_message(struct lg *g, struct conn *c, const struct jfield *f, int nf,
           int64_t now)
{
    const struct jfield *from = field(f, nf, "from");
    const struct jfield *text = field(f, nf, "text");
    const struct jfield *seqf = field(f, nf, "seq");
    uint64_t rseq, k, q, ts;

    if (!field_is(field(f, nf, "room"), g->room_names[c->room]) || !from ||
        !from->str || !text || !text->str || text->esc || !seqf || seqf->str ||
        !parse_u64(seqf->v, seqf->vlen, &rseq) ||
        !parse_nick(g, c, from->v, from->vlen, &k) ||
        !parse_text(g, text->v, text->vlen, k, &q, &ts)) {
        g->err.bad_deliveries++;
        note_error(g, "client %u: malformed delivery %.*s", c->id,
                   (int)(text ? text->vlen : 0), text ? text->v : "");
        return;
    }
    /* Room seq: 1 first (fresh server, every client joined before anyone
     * spoke), then strictly +1. */
    if (rseq != c->room_seq + 1) {
        g->err.room_seq_errors++;
        note_error(g, "client %u: room seq %" PRIu64 " after %" PRIu64, c->id,
                   rseq, c->room_seq);
    }
    c->room_seq = rseq;
    on_delivery(g, c, k, q, ts, now);
}

/* Frames the flat scanner declines: welcome and room carry objects. */
static void
on_nested(struct lg *g, struct conn *c, const char *p, size_t n)
{
    cJSON *o = cJSON_ParseWithLength(p, n);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");

    if (!cJSON_IsObject(o) || !cJSON_IsString(type)) {
        g->err.proto_errors++;
        note_error(g, "client %u: bad JSON from server", c->id);
        goto out;
    }
    if (strcmp(type->valuestring, "welcome") == 0 && c->state == CS_HELLO) {
        const cJSON *lim = cJSON_GetObjectItemCaseSensitive(o, "limits");
        const cJSON *mf = cJSON_GetObjectItemCaseSensitive(lim, "max_frame");

        if (cJSON_IsNumber(mf) && mf->valuedouble >= 1024 &&
            mf->valuedouble <= FRAME_CAP)
            g->max_frame = (uint32_t)mf->valuedouble;
        on_registered(g, c);
    } else if (strcmp(type->valuestring, "room") == 0 && c->state == CS_JOIN) {
        on_joined(g, c);
    } else {
        g->err.proto_errors++;
        note_error(g, "client %u: unexpected %s", c->id, type->valuestring);
    }
out:
    cJSON_Delete(o);
}

static void
on_frame(struct lg *g, struct conn *c, const char *p, size_t n, int64_t now)
{
    struct jfield f[MAX_FIELDS];
    const struct jfield *type;
    int nf = flat_scan(p, n, f, MAX_FIELDS);

    if (nf == -2) {
        on_nested(g, c, p, n);
        return;
    }
    type = nf > 0 ? field(f, nf, "type") : NULL;
    if (!type || !type->str) {
        g->err.proto_errors++;
        note_error(g, "client %u: bad frame from server: %.*s", c->id,
                   (int)(n < 120 ? n : 120), p);
        return;
    }
    if (field_is(type, "message")) {
        on_message(g, c, f, nf, now);
    } else if (field_is(type, "joined")) {
        /* members arriving during the connect phase */
    } else if (field_is(type, "ping")) {
        const struct jfield *tok = field(f, nf, "token");

        if (tok && tok->str)
            send_pong(g, c, tok->v, tok->vlen);
        else
            send_pong(g, c, NULL, 0);
    } else if (field_is(type, "pong")) {
        const struct jfield *tok = field(f, nf, "token");

        on_pong(g, c, tok && tok->str ? tok->v : NULL, tok ? tok->vlen : 0,
                now);
    } else if (field_is(type, "error")) {
        const struct jfield *code = field(f, nf, "code");

        g->err.server_errors++;
        note_error(g, "client %u: server error %.*s", c->id,
                   code ? (int)code->vlen : 0, code ? code->v : "");
    } else if (field_is(type, "quit") || field_is(type, "left")) {
        if (g->phase != PH_DONE) {
            const struct jfield *nick = field(f, nf, "nick");
            const struct jfield *why = field(f, nf, "reason");

            g->err.peer_left++;
            note_error(g, "client %u: %.*s left: %.*s", c->id,
                       nick ? (int)nick->vlen : 0, nick ? nick->v : "",
                       why ? (int)why->vlen : 0, why ? why->v : "");
        }
    } else {
        g->err.proto_errors++;
        note_error(g, "client %u: unexpected %.*s", c->id, (int)type->vlen,
                   type->v);
    }
}

/* ---- IRC ------------------------------------------------------------- */

struct irc_msg {
    const char *prefix, *cmd;
    size_t prefix_len, cmd_len;
    const char *par[16];
    size_t par_len[16];
    int npar;
};

/* RFC 1459 shape: [":" prefix SP] command *(SP param) [SP ":" trailing].
 * Pointers are lent from the line. false when there is no command. */
static bool
irc_parse(const char *p, size_t n, struct irc_msg *m)
{
    const char *e = p + n, *q;

    memset(m, 0, sizeof(*m));
    if (p < e && *p == ':') {
        q = memchr(p, ' ', (size_t)(e - p));
        if (!q)
            return false;
        m->prefix = p + 1;
        m->prefix_len = (size_t)(q - p - 1);
        p = q;
    }
    while (p < e && *p == ' ')
        p++;
    q = p;
    while (q < e && *q != ' ')
        q++;
    if (q == p)
        return false;
    m->cmd = p;
    m->cmd_len = (size_t)(q - p);
    p = q;
    while (p < e && m->npar < 16) {
        while (p < e && *p == ' ')
            p++;
        if (p >= e)
            break;
        if (*p == ':') {
            m->par[m->npar] = p + 1;
            m->par_len[m->npar++] = (size_t)(e - p - 1);
            break;
        }
        q = p;
        while (q < e && *q != ' ')
            q++;
        m->par[m->npar] = p;
        m->par_len[m->npar++] = (size_t)(q - p);
        p = q;
    }
    return true;
}

static bool
irc_is(const struct irc_msg *m, const char *cmd)
{
    size_t l = strlen(cmd);

    return m->cmd_len == l && memcmp(m->cmd, cmd, l) == 0;
}

static void
on_privmsg(struct lg *g, struct conn *c, const struct irc_msg *m, int64_t now)
{
    const char *bang = m->prefix ? memchr(m->prefix, '!', m->prefix_len) : NULL;
    size_t nl = bang ? (size_t)(bang - m->prefix) : m->prefix_len;
    const char *room = g->room_names[c->room];
    uint64_t k, q, ts;

    if (m->npar != 2 || m->par_len[0] != g->room_len ||
        memcmp(m->par[0], room, g->room_len) != 0 || !m->prefix ||
        !parse_nick(g, c, m->prefix, nl, &k) ||
        !parse_text(g, m->par[1], m->par_len[1], k, &q, &ts)) {
        g->err.bad_deliveries++;
        note_error(g, "client %u: malformed delivery %.*s", c->id,
                   m->npar > 1 ? (int)m->par_len[1] : 0,
                   m->npar > 1 ? m->par[1] : "");
        return;
    }
    on_delivery(g, c, k, q, ts, now);
}

/* One line from an IRC server, without its CR LF. */
static void
on_line(struct lg *g, struct conn *c, const char *p, size_t n, int64_t now)
{
    struct irc_msg m;
    const char *last;
    size_t last_len;

    if (n == 0)
        return;
    if (!irc_parse(p, n, &m)) {
        g->err.proto_errors++;
        note_error(g, "client %u: bad line from server: %.*s", c->id,
                   (int)(n < 120 ? n : 120), p);
        return;
    }
    last = m.npar > 0 ? m.par[m.npar - 1] : NULL;
    last_len = m.npar > 0 ? m.par_len[m.npar - 1] : 0;
    if (irc_is(&m, "PRIVMSG")) {
        on_privmsg(g, c, &m, now);
    } else if (irc_is(&m, "PING")) {
        send_pong(g, c, last, last_len);
    } else if (irc_is(&m, "PONG")) {
        on_pong(g, c, last, last_len, now);
    } else if (irc_is(&m, "001")) {
        on_registered(g, c);
    } else if (irc_is(&m, "366")) {
        /* 366 <me> <channel> :End of /NAMES list */
        if (m.npar >= 2 && m.par_len[1] == g->room_len &&
            memcmp(m.par[1], g->room_names[c->room], g->room_len) == 0)
            on_joined(g, c);
    } else if (irc_is(&m, "ERROR")) {
        g->err.server_errors++;
        note_error(g, "client %u: server ERROR %.*s", c->id, (int)last_len,
                   last ? last : "");
    } else if (irc_is(&m, "QUIT") || irc_is(&m, "PART") || irc_is(&m, "KICK")) {
        if (g->phase != PH_DONE) {
            g->err.peer_left++;
            note_error(g, "client %u: %.*s %.*s: %.*s", c->id,
                       (int)m.prefix_len, m.prefix ? m.prefix : "",
                       (int)m.cmd_len, m.cmd, (int)last_len, last ? last : "");
        }
    } else if (m.cmd_len == 3 && (m.cmd[0] == '4' || m.cmd[0] == '5')) {
        /* an error numeric: 401, 404 (cannot send), 433 (nick in use) ... */
        g->err.server_errors++;
        note_error(g, "client %u: server error %.*s %.*s", c->id,
                   (int)m.cmd_len, m.cmd, (int)last_len, last ? last : "");
    }
    /* Anything else (002-005, LUSERS, MOTD, NOTICE, JOIN, 353, MODE) is
     * registration chatter. */
}

static uint32_t
load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

typedef void (*unit_fn)(struct lg *, struct conn *, const char *, size_t,
                        int64_t);

/* Complete sockchat frames from buf; the offset of the first incomplete. */
static size_t
split_frames(struct lg *g, struct conn *c, const uint8_t *buf, size_t len,
             int64_t now, unit_fn fn)
{
    size_t off = 0;

    while (len - off >= FRAME_HDR && c->state != CS_DEAD) {
        uint32_t n = load_be32(buf + off);
        uint32_t lim = g->relay ? PRE_WELCOME_FRAME
                       : c->state == CS_HELLO || c->state == CS_SECURE
                           ? PRE_WELCOME_FRAME
                           : g->max_frame;

        if (n == 0 || n > lim) {
            g->err.proto_errors++;
            conn_kill(g, c, "bad frame length");
            return off;
        }
        if (len - off - FRAME_HDR < n)
            break;
        fn(g, c, (const char *)buf + off + FRAME_HDR, n, now);
        off += FRAME_HDR + n;
    }
    return off;
}

/* Complete IRC lines (LF, with or without CR) from buf. */
static size_t
split_lines(struct lg *g, struct conn *c, const uint8_t *buf, size_t len,
            int64_t now, unit_fn fn)
{
    size_t off = 0;

    while (off < len && c->state != CS_DEAD) {
        const uint8_t *lf = memchr(buf + off, '\n', len - off);
        size_t n;

        if (!lf) {
            if (len - off > IRC_LINE_MAX) {
                g->err.proto_errors++;
                conn_kill(g, c, "line too long");
            }
            break;
        }
        n = (size_t)(lf - (buf + off));
        fn(g, c, (const char *)buf + off,
           n > 0 && buf[off + n - 1] == '\r' ? n - 1 : n, now);
        off += n + 1;
    }
    return off;
}

/* Read once, handle every complete frame or line, keep the rest. */
static void
on_readable(struct lg *g, struct conn *c, unit_fn fn)
{
    uint8_t *buf = g->scratch;
    size_t len = c->stash_len, off;
    ssize_t k;
    int64_t now;

    if (c->stash_len > 0)
        memcpy(buf, c->stash, c->stash_len);
    if (c->t) {
        /* udp: CHAT_EAGAIN when only acks came */
        k = transport_recv(c->t, buf + len, g->scratch_cap - len);
        if (k == CHAT_EAGAIN)
            return;
        if (k < 0) {
            char why[96];

            snprintf(why, sizeof(why), "%s",
                     k == CHAT_ECLOSED ? "closed by server"
                                       : chat_strerror((int)k));
            conn_kill(g, c, why);
            return;
        }
    } else {
        do
            k = recv(c->fd, buf + len, g->scratch_cap - len, 0);
        while (k < 0 && errno == EINTR);
    }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (k <= 0) {
        char why[96];

        snprintf(why, sizeof(why), "%s",
                 k == 0 ? "closed by server" : strerror(errno));
        conn_kill(g, c, why);
        return;
    }
    now = mono_ns();
    g->t_progress = now;
    len += (size_t)k;
    if (g->proto == PROTO_IRC)
        off = split_lines(g, c, buf, len, now, fn);
    else
        off = split_frames(g, c, buf, len, now, fn);
    if (c->state == CS_DEAD)
        return;
    c->stash_len = len - off;
    if (c->stash_len > c->stash_cap) {
        c->stash_cap = c->stash_len;
        c->stash = g_realloc(c->stash, c->stash_cap);
    }
    if (c->stash_len > 0)
        memcpy(c->stash, buf + off, c->stash_len);
}

/* --secure: every frame opened before on_frame sees it; the first one is
 * the plain answer to the secure request. A sealed frame holds one message
 * or a batch of them (doc/SECURE.md section 5). */
static void
on_sealed(struct lg *g, struct conn *c, const char *p, size_t n, int64_t now)
{
    uint8_t *plain = NULL;
    const uint8_t *msg;
    size_t plen = 0, off = 0, mlen;
    bool final = false;
    int rc = CHAT_EAGAIN;

    if (!c->sealed) {
        tp_secure_reply(g, c, p, n);
        return;
    }
    if (secure_open(c->sec, (const uint8_t *)p, n, &plain, &plen, &final) !=
        CHAT_OK) {
        g->err.proto_errors++;
        conn_kill(g, c, "a sealed frame did not open");
        return;
    }
    while (c->state != CS_DEAD &&
           (rc = secure_plain_next(plain, plen, &off, &msg, &mlen)) == CHAT_OK)
        on_frame(g, c, (const char *)msg, mlen, now);
    g_free(plain);
    if (c->state == CS_DEAD)
        return;
    if (rc == CHAT_EPROTO) {
        g->err.proto_errors++;
        conn_kill(g, c, "a sealed batch was malformed");
        return;
    }
    if (final)
        conn_kill(g, c, "the server ended the secure session");
}

/* --transport: run every timer that is due (udp retransmissions, acks,
 * keepalives) and bring *wake forward to the next one. */
static void
tp_timers(struct lg *g, int64_t *wake)
{
    int64_t now_ms = mono_ns() / 1000000;
    int i;

    for (i = 0; i < g->n; i++) {
        struct conn *c = &g->conns[i];

        if (!c->t || c->due_ms < 0)
            continue;
        if (c->due_ms <= now_ms) {
            int rc = transport_tick(c->t, now_ms);

            if (rc != CHAT_OK) {
                char why[96];

                snprintf(why, sizeof(why), "transport: %s", chat_strerror(rc));
                conn_kill(g, c, why);
                continue;
            }
            if (!conn_flush(g, c))
                continue;
        }
        if (c->due_ms >= 0 && c->due_ms * 1000000 < *wake)
            *wake = c->due_ms * 1000000;
    }
}

static bool
all_acked(const struct lg *g)
{
    return g->ndone == g->s;
}

/* After the limits changed: every sender's done flag anew, and every
 * sender gets a chance to send. */
static void
limits_changed(struct lg *g)
{
    int k;

    for (k = 0; k < g->s; k++) {
        update_done(g, (unsigned)k);
        mark_dirty(g, (unsigned)k);
    }
}

static void
begin_sending(struct lg *g, uint64_t limit, int64_t now)
{
    int k;

    g->t_progress = now;
    for (k = 0; k < g->s; k++) {
        g->senders[k].limit = limit;
        /* Stagger the senders evenly over one interval. */
        if (g->rate > 0)
            g->senders[k].due_ns = now + (int64_t)(1e9 / g->rate * k / g->s);
    }
    limits_changed(g);
}

/* Idle mode: every registered client sends its ping at once. */
static void
begin_pings(struct lg *g, int64_t now)
{
    int i;

    g->pongs = 0;
    for (i = 0; i < g->n; i++)
        if (g->conns[i].state == CS_READY)
            send_ping(g, &g->conns[i], now);
}

static void
advance(struct lg *g, int64_t now)
{
    if (g->phase == PH_CONNECT && g->ready == g->n) {
        g->t_ready = now;
        g->ready_overflows = listen_overflows();
        g->t_phase = now;
        if (g->idle) {
            g->phase = PH_SETTLE;
            return;
        }
        g->phase = PH_WARM;
        begin_sending(g, (uint64_t)g->warm, now);
    }
    if (g->phase == PH_SETTLE &&
        now - g->t_phase >= (int64_t)g->settle_ms * 1000000) {
        g->rss_kb = proc_status_kb(g->server_pid, "VmRSS");
        g->hwm_kb = proc_status_kb(g->server_pid, "VmHWM");
        g->phase = PH_PING;
        g->t_phase = mono_ns();
        begin_pings(g, g->t_phase);
        return;
    }
    if (g->phase == PH_PING &&
        (g->pongs == g->n ||
         now - g->t_phase >= (int64_t)PING_WAIT_S * 1000000000)) {
        g->err.pings_lost = (uint64_t)(g->n - g->pongs);
        if (g->pongs < g->n)
            note_error(g, "%d of %d pings not answered within %d s",
                       g->n - g->pongs, g->n, PING_WAIT_S);
        g->phase = PH_HOLD;
        g->t_phase = now;
    }
    if (g->phase == PH_HOLD &&
        now - g->t_phase >= (int64_t)g->hold * 1000000000) {
        g->rss_end_kb = proc_status_kb(g->server_pid, "VmRSS");
        g->hwm_kb = proc_status_kb(g->server_pid, "VmHWM");
        g->t_end = now;
        g->phase = PH_DONE;
        return;
    }
    if (g->phase == PH_WARM && all_acked(g)) {
        g->overflows1 = listen_overflows();
        g->cpu0 = proc_cpu(g->server_pid);
        g->self0 = self_cpu();
        g->busy0 = machine_busy();
        g->t_measure = mono_ns();
        g->phase = PH_MEASURE;
        begin_sending(g, g->seconds > 0 ? SEQ_MAX : (uint64_t)(g->warm + g->m),
                      g->t_measure);
    }
    if (g->phase == PH_MEASURE && g->seconds > 0 && !g->stopping &&
        now - g->t_measure >= (int64_t)g->seconds * 1000000000) {
        int k;

        /* Time is up: no new messages; the measured phase ends when the
         * ones sent have all arrived. */
        for (k = 0; k < g->s; k++)
            g->senders[k].limit = g->senders[k].sent;
        limits_changed(g);
        g->stopping = true;
    }
    if (g->phase == PH_MEASURE && (g->seconds == 0 || g->stopping) &&
        all_acked(g)) {
        g->t_end = mono_ns();
        g->cpu1 = proc_cpu(g->server_pid);
        g->self1 = self_cpu();
        g->busy1 = machine_busy();
        g->rss_kb = proc_status_kb(g->server_pid, "VmRSS");
        g->hwm_kb = proc_status_kb(g->server_pid, "VmHWM");
        g->phase = PH_DONE;
    }
}

static uint64_t
percentile(const struct lg *g, double pct)
{
    uint64_t want, acc = 0;
    uint32_t i;

    if (g->lat_n == 0)
        return 0;
    want = (uint64_t)((double)g->lat_n * pct / 100.0 + 0.999999);
    if (want == 0)
        want = 1;
    for (i = 0; i < HIST_LEN; i++) {
        acc += g->hist[i];
        if (acc >= want)
            return hist_value(i);
    }
    return (uint64_t)HIST_MS * 1000;
}

static uint64_t
error_total(const struct lg *g)
{
    const struct counters *e = &g->err;

    return e->gaps + e->dups + e->reorders + e->room_seq_errors +
           e->bad_deliveries + e->server_errors + e->closed + e->peer_left +
           e->proto_errors + e->pings_lost;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Idle mode: round-trip percentiles of the answered pings, in us. */
static void
ping_stats(const struct lg *g, int64_t *p50, int64_t *p99, int64_t *max,
           int *late)
{
    int64_t *v = g_new(int64_t, (gsize)g->n);
    int i, n = 0;

    *p50 = *p99 = *max = -1;
    *late = 0;
    for (i = 0; i < g->n; i++)
        if (g->conns[i].pong_us >= 0) {
            v[n++] = g->conns[i].pong_us;
            if (g->conns[i].pong_us >= 1000000)
                (*late)++;
        }
    if (n > 0) {
        qsort(v, (size_t)n, sizeof(*v), cmp_i64);
        *p50 = v[(n - 1) / 2];
        *p99 = v[(int)((double)(n - 1) * 0.99)];
        *max = v[n - 1];
    }
    g_free(v);
}

/* One message on the wire: frame header + say JSON, or the PRIVMSG line. */
static size_t
say_bytes(const struct lg *g)
{
    return (g->proto == PROTO_IRC ? 0 : FRAME_HDR) + g->say_prefix_len +
           (size_t)g->text_bytes + 2;
}

static void
report(struct lg *g, bool timed_out)
{
    double el = (double)(g->t_end - g->t_measure) / 1e9;
    double scpu =
        g->cpu0.ok && g->cpu1.ok ? g->cpu1.stat_s - g->cpu0.stat_s : -1;
    double ssch = g->cpu0.ok && g->cpu1.ok
                      ? g->cpu1.schedstat_s - g->cpu0.schedstat_s
                      : -1;
    double lcpu = g->self1 - g->self0;
    /* CPU time that neither the server nor the load generator used. */
    double others = g->busy0 >= 0 && g->busy1 >= 0 && scpu >= 0
                        ? g->busy1 - g->busy0 - scpu - lcpu
                        : -1;
    double dps = el > 0 ? (double)g->deliveries / el : 0;
    double per_m =
        g->deliveries && scpu >= 0 ? scpu / ((double)g->deliveries / 1e6) : -1;
    double per_m_sch =
        g->deliveries && ssch >= 0 ? ssch / ((double)g->deliveries / 1e6) : -1;
    uint64_t p50 = percentile(g, 50), p99 = percentile(g, 99),
             p999 = percentile(g, 99.9);
    double mean = g->lat_n ? (double)g->lat_sum_us / (double)g->lat_n : 0;
    long long ovf = g->overflows0 >= 0 && g->overflows1 >= 0
                        ? g->overflows1 - g->overflows0
                        : -1;
    long long ready_ovf = g->overflows0 >= 0 && g->ready_overflows >= 0
                              ? g->ready_overflows - g->overflows0
                              : -1;
    double connect_s =
        g->t_ready > 0 ? (double)(g->t_ready - g->t_start) / 1e9 : -1;
    double rss_per = g->idle && g->rss_kb > 0 && g->rss0_kb > 0
                         ? (double)(g->rss_kb - g->rss0_kb) * 1024.0 / g->n
                         : -1;
    uint64_t measured = 0;
    int64_t ping50 = -1, ping99 = -1, pingmax = -1;
    int ping_late = 0;
    int k;

    for (k = 0; k < g->s && g->senders; k++)
        if (g->senders[k].limit > (uint64_t)g->warm)
            measured += g->senders[k].limit - (uint64_t)g->warm;
    if (g->idle)
        ping_stats(g, &ping50, &ping99, &pingmax, &ping_late);
    if (timed_out || g->phase != PH_DONE)
        el = 0, dps = 0;
    if (g->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *e = cJSON_AddObjectToObject(o, "errors");
        char *s;

        cJSON_AddBoolToObject(o, "ok",
                              g->phase == PH_DONE && error_total(g) == 0);
        cJSON_AddStringToObject(o, "proto",
                                g->proto == PROTO_IRC ? "irc" : "sockchat");
        cJSON_AddStringToObject(o, "mode", g->idle ? "idle" : "traffic");
        if (g->use_transport) {
            char d[160] = "";

            /* only in this mode, so the raw sockets' output stays as it
             * was */
            cJSON_AddStringToObject(o, "transport", g->url);
            cJSON_AddBoolToObject(o, "secure", g->secure);
            if (g->conns && g->conns[0].t)
                transport_describe(g->conns[0].t, d, sizeof(d));
            cJSON_AddStringToObject(o, "client0_transport", d);
        }
        cJSON_AddNumberToObject(o, "clients", g->n);
        cJSON_AddNumberToObject(o, "rooms", g->rooms);
        cJSON_AddNumberToObject(o, "connecting", g->c);
        cJSON_AddNumberToObject(o, "senders", g->s);
        cJSON_AddNumberToObject(o, "window", g->w);
        cJSON_AddNumberToObject(o, "rate", g->rate);
        cJSON_AddNumberToObject(o, "warm", (double)g->warm);
        cJSON_AddNumberToObject(o, "messages", (double)measured);
        cJSON_AddNumberToObject(o, "text_bytes", g->text_bytes);
        cJSON_AddNumberToObject(o, "say_bytes", (double)say_bytes(g));
        cJSON_AddNumberToObject(o, "deliveries", (double)g->deliveries);
        cJSON_AddNumberToObject(o, "echoes", (double)g->echoes);
        cJSON_AddNumberToObject(o, "connect_s", connect_s);
        cJSON_AddNumberToObject(o, "registered", g->registered);
        cJSON_AddNumberToObject(o, "registered_within_1s", g->registered_1s);
        cJSON_AddNumberToObject(o, "connect_listen_overflows",
                                (double)ready_ovf);
        cJSON_AddNumberToObject(o, "elapsed_s", el);
        cJSON_AddNumberToObject(o, "deliveries_per_s", dps);
        cJSON_AddNumberToObject(o, "lat_p50_us", (double)p50);
        cJSON_AddNumberToObject(o, "lat_p99_us", (double)p99);
        cJSON_AddNumberToObject(o, "lat_p999_us", (double)p999);
        cJSON_AddNumberToObject(o, "lat_max_us", (double)g->lat_max_us);
        cJSON_AddNumberToObject(o, "lat_mean_us", mean);
        cJSON_AddNumberToObject(o, "lat_over_1s", (double)over_1s(g));
        cJSON_AddNumberToObject(o, "server_cpu_s", scpu);
        cJSON_AddNumberToObject(o, "server_cpu_schedstat_s", ssch);
        cJSON_AddNumberToObject(o, "server_user_s",
                                scpu >= 0 ? g->cpu1.user_s - g->cpu0.user_s
                                          : -1);
        cJSON_AddNumberToObject(o, "server_cpu_s_per_M", per_m);
        cJSON_AddNumberToObject(o, "server_cpu_schedstat_s_per_M", per_m_sch);
        cJSON_AddNumberToObject(o, "server_vmrss_kb", (double)g->rss_kb);
        cJSON_AddNumberToObject(o, "server_vmhwm_kb", (double)g->hwm_kb);
        if (g->idle) {
            cJSON_AddNumberToObject(o, "server_vmrss0_kb", (double)g->rss0_kb);
            cJSON_AddNumberToObject(o, "server_vmrss_end_kb",
                                    (double)g->rss_end_kb);
            cJSON_AddNumberToObject(o, "server_rss_per_client_b", rss_per);
            cJSON_AddNumberToObject(o, "pongs", g->pongs);
            cJSON_AddNumberToObject(o, "ping_p50_us", (double)ping50);
            cJSON_AddNumberToObject(o, "ping_p99_us", (double)ping99);
            cJSON_AddNumberToObject(o, "ping_max_us", (double)pingmax);
            cJSON_AddNumberToObject(o, "pings_over_1s", ping_late);
        }
        cJSON_AddNumberToObject(o, "loadgen_cpu_s", lcpu);
        cJSON_AddNumberToObject(o, "others_cpu_s", others);
        cJSON_AddNumberToObject(o, "listen_overflows", (double)ovf);
        cJSON_AddNumberToObject(o, "rate_window_stalls",
                                (double)g->err.rate_late);
        cJSON_AddNumberToObject(e, "seq_gaps", (double)g->err.gaps);
        cJSON_AddNumberToObject(e, "dups", (double)g->err.dups);
        cJSON_AddNumberToObject(e, "out_of_order", (double)g->err.reorders);
        cJSON_AddNumberToObject(e, "room_seq", (double)g->err.room_seq_errors);
        cJSON_AddNumberToObject(e, "bad_deliveries",
                                (double)g->err.bad_deliveries);
        cJSON_AddNumberToObject(e, "server_errors",
                                (double)g->err.server_errors);
        cJSON_AddNumberToObject(e, "closed", (double)g->err.closed);
        cJSON_AddNumberToObject(e, "peers_left", (double)g->err.peer_left);
        cJSON_AddNumberToObject(e, "protocol", (double)g->err.proto_errors);
        cJSON_AddNumberToObject(e, "pings_lost", (double)g->err.pings_lost);
        cJSON_AddBoolToObject(e, "timed_out", timed_out);
        cJSON_AddBoolToObject(e, "stalled", g->stalled);
        cJSON_AddBoolToObject(e, "completed", g->phase == PH_DONE);
        cJSON_AddStringToObject(e, "first", g->first_error);
        s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
        return;
    }
    if (g->idle) {
        printf("%s, %d of %d clients registered (%d within 1 s), all in "
               "%.3f s (at most %d at once; listen overflows %lld)\n",
               g->proto == PROTO_IRC ? "irc" : "sockchat", g->registered, g->n,
               g->registered_1s, connect_s, g->c, ready_ovf);
        printf("server VmRSS %ld kB before, %ld kB with them = %.0f bytes "
               "per client; after the pings %ld kB; VmHWM %ld kB\n",
               g->rss0_kb, g->rss_kb, rss_per, g->rss_end_kb, g->hwm_kb);
        printf("ping: %d of %d answered; us p50 %" PRId64 " p99 %" PRId64
               " max %" PRId64 "; over 1 s: %d\n",
               g->pongs, g->n, ping50, ping99, pingmax, ping_late);
        printf("errors: server errors %" PRIu64 ", closed %" PRIu64
               ", protocol %" PRIu64 ", pings lost %" PRIu64 "%s\n",
               g->err.server_errors, g->err.closed, g->err.proto_errors,
               g->err.pings_lost,
               timed_out             ? ", TIMED OUT"
               : g->phase != PH_DONE ? ", INCOMPLETE"
                                     : "");
        if (g->first_error[0])
            printf("first error: %s\n", g->first_error);
        return;
    }
    printf("%s, clients %d in %d room(s), senders %d, window %d, rate %g/s "
           "per sender, message %zu bytes on the wire\n",
           g->proto == PROTO_IRC ? "irc" : "sockchat", g->n, g->rooms, g->s,
           g->w, g->rate, say_bytes(g));
    if (g->use_transport) {
        char d[160] = "";

        if (g->conns && g->conns[0].t)
            transport_describe(g->conns[0].t, d, sizeof(d));
        printf("through common/transport: %s%s; client 0: %s\n", g->url,
               g->secure ? ", secure sessions" : "", d);
    }
    printf("connect+join %.3f s; measured %" PRIu64
           " messages after %" G_GINT64_FORMAT " warm per sender\n",
           connect_s, measured, g->warm);
    printf("deliveries %" PRIu64 " (+%" PRIu64 " echoes) in %.3f s = %.0f/s\n",
           g->deliveries, g->echoes, el, dps);
    printf("latency us: p50 %" PRIu64 " p99 %" PRIu64 " p99.9 %" PRIu64
           " max %" PRIu64 " mean %.1f (over 1 s: %" PRIu64 ")\n",
           p50, p99, p999, g->lat_max_us, mean, over_1s(g));
    printf("server cpu %.2f s (user %.2f, schedstat %.2f s) = %.3f s per "
           "million deliveries; VmRSS %ld kB, VmHWM %ld kB\n",
           scpu, scpu >= 0 ? g->cpu1.user_s - g->cpu0.user_s : -1, ssch, per_m,
           g->rss_kb, g->hwm_kb);
    printf("loadgen cpu %.2f s; other processes %.2f s; listen overflows "
           "%lld; rate window stalls %" PRIu64 "\n",
           lcpu, others, ovf, g->err.rate_late);
    printf("errors: gaps %" PRIu64 ", dups %" PRIu64 ", out-of-order %" PRIu64
           ", room seq %" PRIu64 ", malformed %" PRIu64 ", server errors "
           "%" PRIu64 ", closed %" PRIu64 ", peers left %" PRIu64
           ", protocol %" PRIu64 "%s\n",
           g->err.gaps, g->err.dups, g->err.reorders, g->err.room_seq_errors,
           g->err.bad_deliveries, g->err.server_errors, g->err.closed,
           g->err.peer_left, g->err.proto_errors,
           timed_out             ? ", TIMED OUT"
           : g->stalled          ? ", STALLED"
           : g->phase != PH_DONE ? ", INCOMPLETE"
                                 : "");
    if (g->first_error[0])
        printf("first error: %s\n", g->first_error);
}

static int
run_loadgen(struct lg *g)
{
    struct epoll_event evs[MAX_EVENTS];
    bool timed_out = false;
    int i, k;

    g->conns = g_new0(struct conn, (gsize)g->n);
    g->senders = g_new0(struct sender, (gsize)g->s);
    g->dirty = g_new0(unsigned, (gsize)g->s);
    /* Receiver i tracks only the senders of its room: sender k is in room
     * k % K, at slot k / K. */
    g->next_all = g_new0(uint64_t, (gsize)g->n * (gsize)g->slots);
    g->gaps_all = g_new0(uint64_t, (gsize)g->n * (gsize)g->slots);
    g->hist = g_new0(uint64_t, HIST_LEN);
    for (i = 0; i < g->n; i++) {
        g->conns[i].fd = -1;
        g->conns[i].id = (unsigned)i;
        g->conns[i].room = (unsigned)(i % g->rooms);
        g->conns[i].pong_us = -1;
        g->conns[i].next = g->next_all + (gsize)i * (gsize)g->slots;
        g->conns[i].gaps = g->gaps_all + (gsize)i * (gsize)g->slots;
        for (k = 0; k < g->slots; k++)
            g->conns[i].next[k] = 1;
    }
    for (k = 0; k < g->s; k++)
        g->senders[k].ring = g_new0(uint32_t, (gsize)g->w);

    g->rss0_kb = proc_status_kb(g->server_pid, "VmRSS");
    g->overflows0 = listen_overflows();
    g->t_start = mono_ns();
    g->deadline = g->t_start + (int64_t)g->max_seconds * 1000000000;
    while (g->phase != PH_DONE) {
        int64_t now = mono_ns(), wake = now + 100000000;
        int nev, tmo;

        if (now >= g->deadline) {
            timed_out = true;
            break;
        }
        if (g->err.closed > 0) {
            /* a lost member stalls every window; stop at once */
            break;
        }
        if (g->phase == PH_CONNECT && error_total(g) > 0) {
            /* refused registration (say, a nick in use) never completes */
            break;
        }
        if ((g->phase == PH_WARM || g->phase == PH_MEASURE) &&
            now - g->t_progress > (int64_t)g->stall_s * 1000000000 &&
            (g->rate == 0 || error_total(g) > 0)) {
            /* A lost or malformed message never completes its window. */
            g->stalled = true;
            break;
        }
        while (g->phase == PH_CONNECT && g->next_connect < g->n &&
               g->in_flight < g->c) {
            start_connect(g, &g->conns[g->next_connect++]);
            if (g->use_transport) {
                /* One blocking connect per pass: the others' I/O and
                 * timers run in between. */
                wake = now;
                break;
            }
        }
        if ((g->phase == PH_WARM || g->phase == PH_MEASURE) && g->rate > 0) {
            /* Paced: every sender may be due. */
            for (k = 0; k < g->s; k++) {
                fill_sender(g, (unsigned)k, now);
                if (g->senders[k].sent < g->senders[k].limit &&
                    g->senders[k].due_ns < wake)
                    wake = g->senders[k].due_ns;
            }
        } else if (g->phase == PH_WARM || g->phase == PH_MEASURE) {
            int nd = g->ndirty;

            g->ndirty = 0;
            for (i = 0; i < nd; i++) {
                g->senders[g->dirty[i]].dirty = false;
                fill_sender(g, g->dirty[i], now);
            }
        }
        if (g->use_transport)
            tp_timers(g, &wake);
        tmo = wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
        nev = epoll_wait(g->ep, evs, MAX_EVENTS, tmo);
        if (nev < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 2;
        }
        for (i = 0; i < nev; i++) {
            struct conn *c = &g->conns[evs[i].data.u32];

            if (c->state == CS_DEAD)
                continue;
            if (c->state == CS_CONNECTING) {
                on_connected(g, c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(g, c,
                            g->proto == PROTO_IRC ? on_line
                            : g->secure           ? on_sealed
                                                  : on_frame);
            /* udp: acks read may have opened the window; timers moved */
            if (c->state != CS_DEAD && (c->t || (evs[i].events & EPOLLOUT)))
                conn_flush(g, c);
        }
        advance(g, mono_ns());
    }
    if (g->phase != PH_DONE) {
        char what[64];

        snprintf(what, sizeof(what), "%s", "a client was lost");
        if (timed_out)
            snprintf(what, sizeof(what), "%s", "max-seconds reached");
        else if (g->stalled)
            snprintf(what, sizeof(what), "stalled (no progress for %d s)",
                     g->stall_s);
        g->t_end = mono_ns();
        if (g->phase != PH_MEASURE)
            g->t_measure = g->t_end;
        fprintf(stderr, "loadgen: %s in phase %d (%d/%d ready, %d in flight)\n",
                what, (int)g->phase, g->ready, g->n, g->in_flight);
    }
    /* Final check: every member saw every message of every sender of its
     * room (and, with sockchat, a sender its own). */
    if (g->phase == PH_DONE && !g->idle)
        for (i = 0; i < g->n; i++)
            for (k = g->conns[i].room; k < g->s; k += g->rooms) {
                uint64_t want = g->senders[k].limit + 1;
                uint64_t got = g->conns[i].next[k / g->rooms];

                if (k == i && g->proto == PROTO_IRC)
                    continue;
                if (got != want) {
                    g->err.gaps++;
                    note_error(g,
                               "client %d: sender %d ended at %" PRIu64
                               " of %" PRIu64,
                               i, k, got - 1, want - 1);
                }
            }
    report(g, timed_out);
    for (i = 0; i < g->n; i++) {
        if (g->conns[i].t)
            transport_close(g->conns[i].t);
        else if (g->conns[i].fd >= 0)
            close(g->conns[i].fd);
        secure_free(g->conns[i].sec);
        g_free(g->conns[i].stash);
        g_free(g->conns[i].out.p);
    }
    for (k = 0; k < g->s; k++)
        g_free(g->senders[k].ring);
    g_free(g->conns);
    g_free(g->senders);
    g_free(g->dirty);
    g_free(g->next_all);
    g_free(g->gaps_all);
    g_free(g->hist);
    if (timed_out || g->phase != PH_DONE)
        return 3;
    return error_total(g) == 0 ? 0 : 1;
}

/* ---- the raw relay ceiling -------------------------------------------- */

struct relay_room {
    char name[ROOM_NAME_MAX];
    GPtrArray *members;
    uint64_t seq;
};

struct relay {
    struct lg *g;
    GHashTable *rooms; /* name -> struct relay_room */
    GPtrArray *pending;
};

static struct relay *relay_of; /* the frame callback's context */

static void
relay_room_free(gpointer p)
{
    struct relay_room *rr = p;

    g_ptr_array_unref(rr->members);
    g_free(rr);
}

static void
relay_queue(struct relay *r, struct conn *c, const char *json, size_t n)
{
    obuf_frame(&c->out, json, n);
    if (!c->pending) {
        c->pending = true;
        g_ptr_array_add(r->pending, c);
    }
}

/* A connection that goes away leaves its room and the flush list. */
static void
relay_forget(struct relay *r, struct conn *c)
{
    if (c->rroom)
        g_ptr_array_remove_fast(c->rroom->members, c);
    g_ptr_array_remove_fast(r->pending, c);
    g_free(c->stash);
    g_free(c->out.p);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static void
relay_frame(struct lg *g, struct conn *c, const char *p, size_t n, int64_t now)
{
    struct relay *r = relay_of;
    struct jfield f[MAX_FIELDS];
    const struct jfield *type, *x;
    int nf = flat_scan(p, n, f, MAX_FIELDS);
    char buf[256];
    guint i;
    int len;

    (void)now;
    type = nf > 0 ? field(f, nf, "type") : NULL;
    if (!type) {
        conn_kill(g, c, NULL);
        return;
    }
    if (field_is(type, "say")) {
        struct relay_room *rr = c->rroom;
        GString *m;

        x = field(f, nf, "text");
        if (!x || !x->str || c->nick[0] == '\0' || !rr ||
            !field_is(field(f, nf, "room"), rr->name))
            return;
        /* Copy the text as it came (still JSON-escaped); no parse tree. */
        m = g_string_sized_new(x->vlen + 128);
        g_string_append_printf(m,
                               "{\"type\":\"message\",\"room\":\"%s\","
                               "\"from\":\"%s\",\"text\":\"",
                               rr->name, c->nick);
        g_string_append_len(m, x->v, (gssize)x->vlen);
        g_string_append_printf(m, "\",\"ts\":0,\"seq\":%" PRIu64 "}",
                               ++rr->seq);
        for (i = 0; i < rr->members->len; i++)
            relay_queue(r, g_ptr_array_index(rr->members, i), m->str, m->len);
        g_string_free(m, TRUE);
    } else if (field_is(type, "hello")) {
        x = field(f, nf, "nick");
        if (!x || !x->str || x->esc || x->vlen == 0 || x->vlen > 24)
            return;
        memcpy(c->nick, x->v, x->vlen);
        c->nick[x->vlen] = '\0';
        len = snprintf(buf, sizeof(buf),
                       "{\"type\":\"welcome\",\"version\":1,\"nick\":\"%s\","
                       "\"server\":\"relay\",\"limits\":{\"max_frame\":"
                       "65536},\"features\":[]}",
                       c->nick);
        relay_queue(r, c, buf, (size_t)len);
    } else if (field_is(type, "join")) {
        struct relay_room *rr;

        x = field(f, nf, "room");
        /* One room per connection is all the workloads need. */
        if (!x || !x->str || x->esc || x->vlen == 0 ||
            x->vlen >= ROOM_NAME_MAX || c->rroom)
            return;
        memcpy(buf, x->v, x->vlen);
        buf[x->vlen] = '\0';
        rr = g_hash_table_lookup(r->rooms, buf);
        if (!rr) {
            rr = g_new0(struct relay_room, 1);
            memcpy(rr->name, buf, x->vlen + 1);
            rr->members = g_ptr_array_new();
            g_hash_table_insert(r->rooms, rr->name, rr);
        }
        g_ptr_array_add(rr->members, c);
        c->rroom = rr;
        len = snprintf(buf, sizeof(buf),
                       "{\"type\":\"room\",\"room\":\"%s\",\"topic\":\"\","
                       "\"members\":[],\"history\":[]}",
                       rr->name);
        relay_queue(r, c, buf, (size_t)len);
    } else if (field_is(type, "ping")) {
        x = field(f, nf, "token");
        if (x && x->str && x->vlen <= 64)
            len = snprintf(buf, sizeof(buf),
                           "{\"type\":\"pong\",\"token\":\"%.*s\"}",
                           (int)x->vlen, x->v);
        else
            len = snprintf(buf, sizeof(buf), "{\"type\":\"pong\"}");
        relay_queue(r, c, buf, (size_t)len);
    }
}

static int
run_relay(struct lg *g)
{
    struct epoll_event evs[MAX_EVENTS], ev = {0};
    struct relay r = {0};
    GPtrArray *dead = NULL; /* killed while flushing the batch */
    int lfd = -1, one = 1, i, nconn = g->n + 64, hint = 0;
    int64_t deadline;
    int rc = 2;

    r.g = g;
    r.rooms =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, relay_room_free);
    r.pending = g_ptr_array_new();
    dead = g_ptr_array_new();
    relay_of = &r;
    g->conns = g_new0(struct conn, (gsize)nconn);
    lfd = socket(g->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 0);
    if (lfd < 0)
        goto out;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&g->addr, g->addr_len) != 0 ||
        listen(lfd, 4096) != 0) {
        perror("relay: bind/listen");
        goto out;
    }
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char host[64], port[16];

        getsockname(lfd, (struct sockaddr *)&ss, &sl);
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
        printf(ss.ss_family == AF_INET6 ? "tcp://[%s]:%s\n" : "tcp://%s:%s\n",
               host, port);
        fflush(stdout);
    }
    ev.events = EPOLLIN;
    ev.data.u32 = UINT32_MAX;
    epoll_ctl(g->ep, EPOLL_CTL_ADD, lfd, &ev);
    deadline = mono_ns() + (int64_t)g->max_seconds * 1000000000;
    for (i = 0; i < nconn; i++)
        g->conns[i].fd = -1;
    while (mono_ns() < deadline) {
        int nev = epoll_wait(g->ep, evs, MAX_EVENTS, 200);
        guint j;

        for (i = 0; i < nev; i++) {
            struct conn *c;

            if (evs[i].data.u32 == UINT32_MAX) {
                int fd;

                while ((fd = accept4(lfd, NULL, NULL,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int slot = -1, t;

                    for (t = 0; t < nconn; t++)
                        if (g->conns[(hint + t) % nconn].fd < 0) {
                            slot = (hint + t) % nconn;
                            break;
                        }
                    if (slot < 0) {
                        close(fd);
                        continue;
                    }
                    hint = (slot + 1) % nconn;
                    c = &g->conns[slot];
                    memset(c, 0, sizeof(*c));
                    c->fd = fd;
                    c->id = (unsigned)slot;
                    c->state = CS_READY;
                    sock_tune(fd);
                    ev.events = EPOLLIN;
                    ev.data.u32 = c->id;
                    epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            c = &g->conns[evs[i].data.u32];
            if (c->state == CS_DEAD)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(g, c, relay_frame);
            if (c->state != CS_DEAD && (evs[i].events & EPOLLOUT))
                conn_flush(g, c);
            if (c->state == CS_DEAD)
                relay_forget(&r, c);
        }
        /* Flush once per batch, as the method's ceiling does. */
        for (j = 0; j < r.pending->len; j++) {
            struct conn *c = g_ptr_array_index(r.pending, j);

            c->pending = false;
            if (!conn_flush(g, c))
                g_ptr_array_add(dead, c);
        }
        g_ptr_array_set_size(r.pending, 0);
        for (j = 0; j < dead->len; j++)
            relay_forget(&r, g_ptr_array_index(dead, j));
        g_ptr_array_set_size(dead, 0);
    }
    rc = 0;
out:
    if (lfd >= 0)
        close(lfd);
    for (i = 0; g->conns && i < nconn; i++) {
        if (g->conns[i].fd >= 0)
            close(g->conns[i].fd);
        g_free(g->conns[i].stash);
        g_free(g->conns[i].out.p);
    }
    g_free(g->conns);
    g_hash_table_unref(r.rooms);
    g_ptr_array_unref(r.pending);
    g_ptr_array_unref(dead);
    return rc;
}

/* ---- main ----------------------------------------------------------- */

static bool
room_ok(const char *r)
{
    size_t i, n = strlen(r);

    if (n < 2 || n > 33 || r[0] != '#')
        return false;
    for (i = 1; i < n; i++)
        if (!g_ascii_isalnum(r[i]) && r[i] != '_' && r[i] != '-')
            return false;
    return true;
}

/* Print a TCP port that 127.0.0.1 can bind now, picked at random below the
 * ephemeral range so that the clients' own ports do not take it first. */
static int
print_free_port(void)
{
    struct sockaddr_in a = {0};
    int i, fd;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < 200; i++) {
        int port = g_random_int_range(20000, 32000);

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 2;
        a.sin_port = htons((uint16_t)port);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            listen(fd, 1) == 0) {
            close(fd);
            printf("%d\n", port);
            return 0;
        }
        close(fd);
    }
    fprintf(stderr, "loadgen: no free port found\n");
    return 2;
}

int
main(int argc, char **argv)
{
    struct lg g = {
        .n = 100,
        .s = 10,
        .m = 1000,
        .warm = 100,
        .w = 8,
        .c = 64,
        .rooms = 1,
        .settle_ms = 1000,
        .max_seconds = 60,
        .max_frame = 65536,
        .connect_ms = 10000,
        .stall_s = STALL_SECONDS,
        .ep = -1,
    };
    GOptionEntry entries[] = {
        {"url", 0, 0, G_OPTION_ARG_STRING, &g.url,
         "Server (or, with --relay, where to listen): tcp://127.0.0.1:PORT "
         "or tcp://[::1]:PORT; loopback only. With --transport also "
         "udp://LOOPBACK:PORT and unix:///PATH (which imply --transport)",
         "URL"},
        {"transport", 0, 0, G_OPTION_ARG_NONE, &g.use_transport,
         "Connect through common/transport (tcp, udp, unix) instead of raw "
         "sockets; sockchat protocol only",
         NULL},
        {"secure", 0, 0, G_OPTION_ARG_NONE, &g.secure,
         "Encrypted sessions (common/secure; implies --transport)", NULL},
        {"stall-seconds", 0, 0, G_OPTION_ARG_INT, &g.stall_s,
         "Give up when no byte arrived for this long while messages are "
         "outstanding (default 5; udp under heavy loss backs off longer)",
         "S"},
        {"connect-ms", 0, 0, G_OPTION_ARG_INT, &g.connect_ms,
         "--transport: timeout of each (blocking) connect (default 10000)",
         "MS"},
        {"proto", 0, 0, G_OPTION_ARG_STRING, &g.proto_name,
         "Protocol: sockchat (default) or irc", "P"},
        {"clients", 'n', 0, G_OPTION_ARG_INT, &g.n, "Clients (default 100)",
         "N"},
        {"senders", 's', 0, G_OPTION_ARG_INT, &g.s,
         "Clients 0..S-1 also send (default 10)", "S"},
        {"rooms", 0, 0, G_OPTION_ARG_INT, &g.rooms,
         "Rooms; client i joins room i % K, named #r0000 and up (default 1: "
         "--room)",
         "K"},
        {"messages", 'm', 0, G_OPTION_ARG_INT64, &g.m,
         "Measured messages per sender (default 1000)", "M"},
        {"seconds", 0, 0, G_OPTION_ARG_INT, &g.seconds,
         "Measure for this long instead of -m messages, then let the "
         "messages in flight arrive",
         "T"},
        {"warm", 0, 0, G_OPTION_ARG_INT64, &g.warm,
         "Messages per sender before measuring (default 100)", "WARM"},
        {"window", 'w', 0, G_OPTION_ARG_INT, &g.w,
         "Messages a sender may have not yet delivered to all the other "
         "members of its room (default 8)",
         "W"},
        {"rate", 0, 0, G_OPTION_ARG_DOUBLE, &g.rate,
         "Messages per second per sender, 0 = as fast as the window allows "
         "(default 0)",
         "R"},
        {"connecting", 'c', 0, G_OPTION_ARG_INT, &g.c,
         "Most clients connecting or registering at once (default 64)", "C"},
        {"room", 0, 0, G_OPTION_ARG_STRING, &g.room, "Room (default #bench)",
         "NAME"},
        {"text-bytes", 0, 0, G_OPTION_ARG_INT, &g.text_bytes,
         "Bytes of text per message (default: 100 bytes on the wire)", "B"},
        {"idle", 0, 0, G_OPTION_ARG_NONE, &g.idle,
         "Register N clients, read the server's RSS, ping each once, hold",
         NULL},
        {"hold", 0, 0, G_OPTION_ARG_INT, &g.hold,
         "Idle mode: seconds to hold the connections at the end (default 0)",
         "S"},
        {"settle-ms", 0, 0, G_OPTION_ARG_INT, &g.settle_ms,
         "Idle mode: wait this long after the last registration before "
         "reading RSS (default 1000)",
         "MS"},
        {"server-pid", 0, 0, G_OPTION_ARG_INT, &g.server_pid,
         "Read the server's CPU time and memory from /proc/PID", "PID"},
        {"max-seconds", 0, 0, G_OPTION_ARG_INT, &g.max_seconds,
         "Give up after this long, with an error (default 60)", "S"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &g.json,
         "Print one JSON object instead of text", NULL},
        {"relay", 0, 0, G_OPTION_ARG_NONE, &g.relay,
         "Be the raw relay ceiling (sockchat) on --url instead: prints its "
         "URL, takes up to N+64 clients, exits after --max-seconds",
         NULL},
        {"free-port", 0, 0, G_OPTION_ARG_NONE, &g.free_port,
         "Print a free TCP port of 127.0.0.1 and exit", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *ctx =
        g_option_context_new("- sockchat and IRC load generator");
    GError *gerr = NULL;
    int rc = 2; /* a bad command line */
    int i, min_text;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "loadgen: %s\n", gerr->message);
        g_error_free(gerr);
        goto out;
    }
    if (g.free_port) {
        rc = print_free_port();
        goto out;
    }
    if (!g.room)
        g.room = g_strdup("#bench");
    if (!g.url) {
        fprintf(stderr, "loadgen: --url is required\n");
        goto out;
    }
    if (g.secure || strncmp(g.url, "udp://", 6) == 0 ||
        strncmp(g.url, "unix://", 7) == 0)
        g.use_transport = TRUE;
    if (g.use_transport) {
        if (!tp_url_ok(g.url)) {
            fprintf(stderr,
                    "loadgen: %s: need tcp:// or udp://LOOPBACK:PORT or "
                    "unix:///PATH\n",
                    g.url);
            goto out;
        }
        if (g.relay || g.idle || g.connect_ms < 1) {
            fprintf(stderr, "loadgen: --transport is for traffic runs\n");
            goto out;
        }
        if (sodium_init() < 0) {
            fprintf(stderr, "loadgen: sodium_init failed\n");
            goto out;
        }
    } else if (parse_url(g.url, &g.addr, &g.addr_len) != 0) {
        fprintf(stderr, "loadgen: %s: need tcp://LOOPBACK:PORT\n", g.url);
        goto out;
    }
    if (!g.proto_name || strcmp(g.proto_name, "sockchat") == 0) {
        g.proto = PROTO_SOCKCHAT;
    } else if (strcmp(g.proto_name, "irc") == 0) {
        g.proto = PROTO_IRC;
    } else {
        fprintf(stderr, "loadgen: --proto sockchat or irc\n");
        goto out;
    }
    if (g.use_transport && g.proto != PROTO_SOCKCHAT) {
        fprintf(stderr, "loadgen: --transport speaks sockchat only\n");
        goto out;
    }
    if (g.relay && g.proto != PROTO_SOCKCHAT) {
        fprintf(stderr, "loadgen: the relay speaks sockchat only\n");
        goto out;
    }
    if (g.idle)
        g.s = 1; /* no sender; keeps the checks below simple */
    if (!room_ok(g.room) || g.n < 2 || g.s < 1 || g.s > g.n || g.s > 9999 ||
        g.m < 1 || g.warm < 0 || g.w < 1 || g.c < 1 || g.rate < 0 ||
        g.max_seconds < 1 || g.stall_s < 1 || g.seconds < 0 || g.hold < 0 ||
        g.settle_ms < 0 || g.rooms < 1 || g.rooms > 10000 ||
        (!g.idle && g.n < 2 * g.rooms) || (uint64_t)(g.warm + g.m) > SEQ_MAX) {
        fprintf(stderr, "loadgen: bad option value\n");
        goto out;
    }
    g.slots = (g.s + g.rooms - 1) / g.rooms;
    g.room_names = g_new0(char *, (gsize)g.rooms + 1);
    for (i = 0; i < g.rooms; i++)
        g.room_names[i] =
            g.rooms == 1 ? g_strdup(g.room) : g_strdup_printf("#r%04d", i);
    g.room_len = strlen(g.room_names[0]);
    /* The bytes before the text, so that a message is 100 bytes on the wire:
     * `PRIVMSG #bench :` (IRC, then CR LF), or a frame header and
     * `{"type":"say","room":"#bench","text":"` (then `"}`). */
    g.say_prefix_len =
        g.proto == PROTO_IRC ? 8 + g.room_len + 2 : 22 + g.room_len + 10;
    min_text = TEXT_HEAD + 1;
    if (g.text_bytes == 0)
        g.text_bytes = 100 - (g.proto == PROTO_IRC ? 0 : FRAME_HDR) -
                       (int)g.say_prefix_len - 2;
    if (g.text_bytes < min_text)
        g.text_bytes = min_text;
    if (g.text_bytes > 4096) {
        fprintf(stderr, "loadgen: --text-bytes at most 4096\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(g.n + 128);
    g.scratch_cap = READ_CHUNK + FRAME_HDR + FRAME_CAP;
    g.scratch = g_malloc(g.scratch_cap);
    g.say_tmp = g_malloc(SAY_MAX);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0) {
        perror("epoll_create1");
        goto out;
    }
    rc = g.relay ? run_relay(&g) : run_loadgen(&g);
out:
    if (g.ep >= 0)
        close(g.ep);
    g_strfreev(g.room_names);
    g_free(g.scratch);
    g_free(g.say_tmp);
    g_free(g.url);
    g_free(g.room);
    g_free(g.proto_name);
    g_option_context_free(ctx);
    return rc;
}
