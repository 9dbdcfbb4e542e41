/*
 * itlib.c - black-box integration harness for sockchatd (see itlib.h).
 *
 * The framing and JSON checks here are written from PROTOCOL.md alone and do
 * not use common/'s codecs: a test client that shared the server's codec
 * would share its bugs too. Two parts of common/ are used. The byte stream
 * itself is common/transport's (transport_connect_url, send, recv, the
 * timers, poll_events), because that is the contract every transport
 * (tcp, udp with its own reliability, unix) offers, and driving all of them
 * through it is what lets one suite run unchanged on each: the harness
 * never asks which one it has. And with $IT_SECURE=1 the handshake, seal
 * and open are common/secure.c's (libsodium underneath), as a second
 * implementation of the cryptography would prove nothing more; what goes
 * into a sealed frame and how frames are cut stays the harness's own.
 */
#include "itlib.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "secure.h"
#include "transport.h"

#define IT_HDR 4
#define IT_DEFAULT_MAX_FRAME 65536
#define IT_WAIT_MS 5000          /* default bound of one expectation */
#define IT_STOP_MS 10000         /* SIGTERM to SIGKILL */
#define IT_START_MS 5000         /* port file must appear within this */
#define IT_READS_PER_FILL 16     /* bound one connection's turn in the pump */
#define IT_LOG_TAIL 16384
#define IT_LINGER_MS 3000        /* it_close(): the end must be delivered */
#define IT_RELAY_FLOWS 250       /* clients per lossy relay (it takes 256) */

/* A tests/lossy relay in front of one of a server's udp endpoints
 * ($IT_LOSSY): clients connect to url, it forwards to target. */
struct it_relay {
    pid_t pid;
    char *target;                /* the server's endpoint URL */
    char *url;                   /* where clients connect */
    char *log;                   /* its stdout+stderr (counts at SIGTERM) */
    unsigned flows;              /* client sockets sent through it */
};

struct it_server {
    unsigned id;                 /* never reused: connections name it */
    pid_t pid;
    char *dir;                   /* private temporary directory */
    char *url;                   /* first line of the port file */
    char **urls;                 /* every line of the port file */
    char *log;                   /* server stdout+stderr */
    size_t max_frame;
    GPtrArray *relays;           /* struct it_relay *, with $IT_LOSSY */
    char **lossy;                /* the relays' options, NULL: no relay */
};

struct it_conn {
    int fd;                      /* transport_fd(t): the test's handle */
    struct transport *t;
    unsigned server_id;          /* the server it reaches, 0 if unknown */
    bool shut;                   /* transport_shutdown() done */
    GByteArray *rx;              /* bytes not yet cut into frames */
    GQueue msgs;                 /* cJSON *, oldest first */
    enum it_rx end;              /* IT_RX_MSG while open */
    bool autopong;
    bool passive;
    bool sending;                /* inside it_send_raw(): pongs must wait */
    GQueue pings;                /* cJSON * pings to answer after the send */
    size_t max_frame;
    char nick[64];
    /* secure sessions */
    enum { SEC_PLAIN = 0, SEC_WAIT_REPLY, SEC_ON } sec_state;
    struct secure_session *sec;  /* SEC_ON */
    bool reply_cut;              /* SEC_WAIT_REPLY: the answer is queued */
    bool rx_final;               /* the server's TAG_FINAL was opened */
    /* it_send_raw() on a secure connection: raw bytes cut into frames */
    uint8_t txhdr[IT_HDR];
    size_t txhdr_len;
    bool tx_in_body;             /* header sent, payload being collected */
    size_t tx_need;
    GByteArray *txbody;
    bool tx_raw;                 /* after a length-level abuse: as it is */
};

static double scale = 1.0;
static char *sockchatd;
static char **wrapper;           /* NULL or the words of SOCKCHATD_WRAPPER */
static char **server_args;       /* NULL or the words of IT_SERVER_ARGS */
static char *listen_url;
static GHashTable *conns;        /* fd -> struct it_conn * */
static GPtrArray *servers;       /* struct it_server * still running */
static GPtrArray *kept;          /* cJSON * freed at cleanup */
static GPtrArray *strings;       /* char * freed at cleanup */
static GArray *deferred;         /* struct deferred, run at cleanup */
static bool secure_default;      /* $IT_SECURE=1 */
static char *process_home;       /* XDG_CONFIG_HOME of this process */
static GPtrArray *temp_dirs;     /* char *, removed at cleanup */
static char **lossy_args;        /* NULL or the words of $IT_LOSSY */
static unsigned server_ids;

struct deferred {
    GDestroyNotify fn;
    gpointer p;
};
static unsigned uniq_counter;
static int bad_stops;

static void conn_free(gpointer p);
static void remove_tree(const char *path);

static void
remove_process_home(void)
{
    remove_tree(process_home);
}

/* ---------------------------------------------------------------- basics */

int64_t
it_now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

int
it_ms(int ms)
{
    return (int)((double)ms * scale);
}

const char *
it_listen_url(void)
{
    return listen_url;
}

void
it_init(void)
{
    const char *v;
    GError *gerr = NULL;

    signal(SIGPIPE, SIG_IGN);
    v = getenv("IT_TIMEOUT_SCALE");
    if (v != NULL && *v != '\0') {
        scale = g_ascii_strtod(v, NULL);
        if (!(scale >= 1.0 && scale <= 100.0))
            scale = 1.0;
    }
    v = getenv("SOCKCHATD");
    sockchatd = g_strdup(v != NULL ? v : "");
    v = getenv("SOCKCHATD_WRAPPER");
    if (v != NULL && *v != '\0') {
        if (!g_shell_parse_argv(v, NULL, &wrapper, &gerr)) {
            fprintf(stderr, "it: cannot parse SOCKCHATD_WRAPPER: %s\n",
                gerr->message);
            g_clear_error(&gerr);
            wrapper = NULL;
        }
    }
    /* Options every server of the run gets, e.g. "--io epoll": the suites
     * run once per loop backend with nothing else changed. */
    v = getenv("IT_SERVER_ARGS");
    if (v != NULL && *v != '\0') {
        if (!g_shell_parse_argv(v, NULL, &server_args, &gerr)) {
            fprintf(stderr, "it: cannot parse IT_SERVER_ARGS: %s\n",
                gerr->message);
            g_clear_error(&gerr);
            server_args = NULL;
        }
    }
    v = getenv("IT_LISTEN");
    listen_url = g_strdup(v != NULL && *v != '\0' ? v : "tcp://127.0.0.1:0");
    v = getenv("IT_SECURE");
    secure_default = v != NULL && strcmp(v, "1") == 0;
    /* cmocka's filters (patterns with * and ?): run only the tests named
     * by $IT_ONLY, skip those named by $IT_SKIP. */
    v = getenv("IT_ONLY");
    if (v != NULL && *v != '\0')
        cmocka_set_test_filter(v);
    v = getenv("IT_SKIP");
    if (v != NULL && *v != '\0')
        cmocka_set_skip_filter(v);
    /* A lossy relay in front of every udp endpoint of every server, e.g.
     * "--drop 0.10 --dup 0.05 --reorder 0.10 --seed 42". */
    v = getenv("IT_LOSSY");
    if (v != NULL && *v != '\0') {
        if (!g_shell_parse_argv(v, NULL, &lossy_args, &gerr)) {
            fprintf(stderr, "it: cannot parse IT_LOSSY: %s\n",
                gerr->message);
            g_clear_error(&gerr);
            abort();
        }
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "it: cannot initialise libsodium\n");
        abort();
    }
    /* Whatever this process runs (a sockchatd started by a test itself)
     * keeps its keys here, never under the real home. Each server of
     * it_server_start() gets its own directory on top of that. */
    process_home = g_dir_make_tmp("sockchat-it-home-XXXXXX", &gerr);
    if (process_home == NULL) {
        fprintf(stderr, "it: temporary directory: %s\n", gerr->message);
        g_clear_error(&gerr);
        abort();
    }
    g_setenv("XDG_CONFIG_HOME", process_home, TRUE);
    atexit(remove_process_home);
    conns = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
        conn_free);
    servers = g_ptr_array_new();
    kept = g_ptr_array_new_with_free_func((GDestroyNotify)cJSON_Delete);
    strings = g_ptr_array_new_with_free_func(g_free);
    deferred = g_array_new(FALSE, FALSE, sizeof(struct deferred));
    temp_dirs = g_ptr_array_new_with_free_func(g_free);
}

gpointer
it_defer(GDestroyNotify fn, gpointer p)
{
    struct deferred d = { .fn = fn, .p = p };

    if (p != NULL)
        g_array_append_val(deferred, d);
    return p;
}

const char *
it_own(char *s)
{
    return it_defer(g_free, s);
}

static const char *
keep_str(char *s)
{
    g_ptr_array_add(strings, s);
    return s;
}

const cJSON *
it_keep(cJSON *m)
{
    if (m != NULL)
        g_ptr_array_add(kept, m);
    return m;
}

const char *
it_uniq(const char *prefix)
{
    return keep_str(g_strdup_printf("%s%u", prefix, ++uniq_counter));
}

const char *
it_json(const cJSON *m)
{
    char *s;

    if (m == NULL)
        return "(null)";
    s = cJSON_PrintUnformatted(m);
    if (s == NULL)
        return "(unprintable)";
    /* cJSON allocates with malloc: copy into GLib's allocator. */
    {
        char *g = g_strdup(s);

        cJSON_free(s);
        return keep_str(g);
    }
}

const char *
it_rx_name(enum it_rx why)
{
    switch (why) {
    case IT_RX_MSG:
        return "a message";
    case IT_RX_TIMEOUT:
        return "nothing (timeout)";
    case IT_RX_CLOSED:
        return "connection closed";
    case IT_RX_RESET:
        return "connection reset";
    case IT_RX_BAD:
        return "a malformed frame";
    }
    return "?";
}

/* ------------------------------------------------------------ addresses */

/* Splits scheme://host:port; host without brackets. false if malformed. */
static bool
split_inet_url(const char *url, const char *scheme, char **host, char **port)
{
    const char *p, *end, *colon;
    size_t sl = strlen(scheme);

    *host = NULL;
    *port = NULL;
    if (strncmp(url, scheme, sl) != 0 || strncmp(url + sl, "://", 3) != 0)
        return false;
    p = url + sl + 3;
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL || end[1] != ':')
            return false;
        *host = g_strndup(p + 1, (gsize)(end - p - 1));
        colon = end + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL)
            return false;
        *host = g_strndup(p, (gsize)(colon - p));
    }
    *port = g_strdup(colon + 1);
    if (**port == '\0' || strspn(*port, "0123456789") != strlen(*port)) {
        g_free(*host);
        g_free(*port);
        *host = NULL;
        *port = NULL;
        return false;
    }
    return true;
}

/* Network safety: only 127.0.0.1 and ::1. */
static bool
host_is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0;
}

static bool
url_is_safe(const char *url)
{
    char *host = NULL, *port = NULL;
    bool ok = false;

    if (strncmp(url, "unix:", 5) == 0)
        return true;
    if (split_inet_url(url, "tcp", &host, &port) ||
        split_inet_url(url, "udp", &host, &port))
        ok = host_is_loopback(host);
    g_free(host);
    g_free(port);
    return ok;
}

/* ---------------------------------------------------------- connections */

static void conn_fill(struct it_conn *c);
static bool wait_io(int want, short ev, int64_t deadline);
static const char *server_connect_url(struct it_server *s, size_t i);
static bool server_running(unsigned id);

/* Frees c; its stream is closed as it is (it_close() lingers first). */
static void
conn_free(gpointer p)
{
    struct it_conn *c = p;
    cJSON *m;

    if (c == NULL)
        return;
    while ((m = g_queue_pop_head(&c->msgs)) != NULL)
        cJSON_Delete(m);
    while ((m = g_queue_pop_head(&c->pings)) != NULL)
        cJSON_Delete(m);
    g_byte_array_unref(c->rx);
    g_byte_array_unref(c->txbody);
    secure_free(c->sec);
    transport_close(c->t);
    g_free(c);
}

static struct it_conn *
conn_get(int fd)
{
    if (fd < 0 || conns == NULL)
        return NULL;
    return g_hash_table_lookup(conns, GINT_TO_POINTER(fd));
}

static int
conn_add(struct transport *t, size_t max_frame, unsigned server_id)
{
    struct it_conn *c = g_new0(struct it_conn, 1);

    c->t = t;
    c->fd = transport_fd(t);
    c->server_id = server_id;
    c->rx = g_byte_array_new();
    c->txbody = g_byte_array_new();
    g_queue_init(&c->msgs);
    g_queue_init(&c->pings);
    c->end = IT_RX_MSG;
    c->autopong = true;
    c->max_frame = max_frame != 0 ? max_frame : IT_DEFAULT_MAX_FRAME;
    g_hash_table_replace(conns, GINT_TO_POINTER(c->fd), c);
    return c->fd;
}

/* The readiness bits of t as poll(2) events. */
static short
poll_bits(const struct transport *t, unsigned want)
{
    unsigned ev = transport_poll_events(t, want);
    short e = 0;

    if (ev & TRANSPORT_READ)
        e |= POLLIN;
    if (ev & TRANSPORT_WRITE)
        e |= POLLOUT;
    return e;
}

/*
 * Runs c's transport timers if due (udp: retransmissions, acks,
 * keepalives; the stream backends have none). A stream that died there
 * (reset, or the peer stopped answering) ends the connection.
 */
static void
conn_tick(struct it_conn *c, int64_t now)
{
    int rc;

    if (transport_next_timeout(c->t, now) != 0)
        return;
    rc = transport_tick(c->t, now);
    if (rc == CHAT_OK || c->end != IT_RX_MSG)
        return;
    conn_fill(c);               /* recv says how it ended */
    if (c->end == IT_RX_MSG) {
        fprintf(stderr, "it: fd %d: the stream died: %s\n", c->fd,
            chat_strerror(rc));
        c->end = IT_RX_RESET;
    }
}

/*
 * Connects to url through common/transport, whatever its scheme: the
 * harness has no other code for any transport.
 *
 * rcvbuf is not applied any more. It used to shrink SO_RCVBUF before a TCP
 * connect, so that a client that never reads fills up sooner; the
 * transport connects by itself, and shrinking a TCP receive buffer after
 * the handshake (its window already advertised) makes the receiving
 * kernel prune and collapse queues, which on loopback runs in the sender's
 * send() and stalled the server by tens of ms a write (the slow consumer
 * test took 112 s instead of 0.1 s). The server's bounded queues are what
 * the tests exercise, and they fill without it.
 */
static int
connect_raw(const char *url, int rcvbuf, size_t max_frame,
    unsigned server_id)
{
    struct transport *t = NULL;
    char why[512] = "";
    int rc;

    (void)rcvbuf;
    if (!url_is_safe(url)) {
        fprintf(stderr, "it: refusing non-loopback URL %s\n", url);
        return -1;
    }
    rc = transport_connect_url(url, 0, it_ms(IT_WAIT_MS), &t, why,
        sizeof(why));
    if (rc != CHAT_OK) {
        fprintf(stderr, "it: connect %s: %s\n", url, why[0] != '\0' ? why :
            chat_strerror(rc));
        return -1;
    }
    return conn_add(t, max_frame, server_id);
}

/* mode: -1 the default ($IT_SECURE), 0 plain, 1 secure or nothing. */
static int
connect_mode(const char *url, int rcvbuf, size_t max_frame, int mode,
    unsigned server_id)
{
    int fd = connect_raw(url, rcvbuf, max_frame, server_id), rc;
    struct it_conn *c;

    if (fd < 0 || mode == 0 || (mode < 0 && !secure_default))
        return fd;
    rc = it_secure_handshake(fd, NULL);
    if (rc == 0)
        return fd;
    c = conn_get(fd);
    /* By default the test sees whatever came instead (server_full, a
     * close), as it would have on a plain connection. */
    if (mode < 0 && c != NULL && (rc == 1 || c->end != IT_RX_MSG))
        return fd;
    fprintf(stderr, "it: %s: no secure session\n", url);
    it_close(fd);
    return -1;
}

/* To endpoint i of s (through its relay with $IT_LOSSY). */
static int
connect_server(const struct it_server *cs, size_t i, int rcvbuf, int mode)
{
    struct it_server *s = NULL;
    const char *url;
    guint k;

    /* the harness's own (writable) record of cs: relays are started */
    for (k = 0; cs != NULL && k < servers->len; k++)
        if (g_ptr_array_index(servers, k) == cs)
            s = g_ptr_array_index(servers, k);
    if (s == NULL) {
        fprintf(stderr, "it: connect: not a running server\n");
        return -1;
    }
    url = server_connect_url(s, i);
    if (url == NULL)
        return -1;
    return connect_mode(url, rcvbuf, s->max_frame, mode, s->id);
}

int
it_connect_url(const char *url, int rcvbuf, size_t max_frame)
{
    return connect_mode(url, rcvbuf, max_frame, -1, 0);
}

int
it_connect_rcvbuf(const struct it_server *s, int rcvbuf)
{
    return connect_server(s, 0, rcvbuf, -1);
}

int
it_connect(const struct it_server *s)
{
    return it_connect_rcvbuf(s, 0);
}

int
it_connect_endpoint(const struct it_server *s, size_t i)
{
    return connect_server(s, i, 0, -1);
}

int
it_connect_plain(const struct it_server *s)
{
    return connect_server(s, 0, 0, 0);
}

int
it_connect_secure(const struct it_server *s)
{
    return connect_server(s, 0, 0, 1);
}

/* Reads what c's stream holds during a close: the bytes are dropped, what
 * matters is that the transport takes the peer's acks. */
static void
conn_drain(struct it_conn *c)
{
    uint8_t buf[16384];
    ssize_t r;
    int i;

    for (i = 0; i < IT_READS_PER_FILL; i++) {
        r = transport_recv(c->t, buf, sizeof(buf));
        if (r <= 0)
            return;
    }
}

/*
 * Closes the connections fds[0..n) in order: each ends its stream
 * (transport_shutdown), then the harness waits, at most IT_LINGER_MS
 * (scaled) for them all, until every transport has delivered that end
 * (transport_send_done: at once on tcp and unix, whose kernel lingers by
 * itself; on udp once the FIN is acknowledged, since a udp client has
 * nobody to deliver it after close), then closes them. A connection to a
 * server that is no longer running does not wait.
 */
static void
conns_close(const int *fds, size_t n)
{
    int64_t deadline = it_now_ms() + it_ms(IT_LINGER_MS);
    struct pollfd *pf = g_new0(struct pollfd, n > 0 ? n : 1);
    struct it_conn **pc = g_new0(struct it_conn *, n > 0 ? n : 1);
    size_t i, k;

    for (i = 0; i < n; i++) {
        struct it_conn *c = conn_get(fds[i]);

        if (c != NULL && !c->shut) {
            transport_shutdown(c->t);
            c->shut = true;
        }
    }
    for (;;) {
        int64_t now = it_now_ms(), left = deadline - now;
        int wait = left > 100 ? 100 : (int)left, r;

        k = 0;
        for (i = 0; i < n; i++) {
            struct it_conn *c = conn_get(fds[i]);
            int due;

            if (c == NULL || transport_send_done(c->t) ||
                (c->server_id != 0 && !server_running(c->server_id)))
                continue;
            due = transport_next_timeout(c->t, now);
            if (due >= 0 && due < wait)
                wait = due;
            pf[k].fd = c->fd;
            pf[k].events = poll_bits(c->t, TRANSPORT_READ);
            pf[k].revents = 0;
            pc[k++] = c;
        }
        if (k == 0 || left <= 0)
            break;
        do
            r = poll(pf, k, wait < 0 ? 0 : wait);
        while (r < 0 && errno == EINTR);
        now = it_now_ms();
        for (i = 0; i < k; i++) {
            if (pf[i].revents != 0)
                conn_drain(pc[i]);
            if (transport_next_timeout(pc[i]->t, now) == 0)
                (void)transport_tick(pc[i]->t, now);
        }
    }
    if (k > 0 && getenv("IT_VERBOSE") != NULL)
        fprintf(stderr, "it: %zu connection(s) closed before their end was "
            "delivered\n", k);
    for (i = 0; i < n; i++)
        if (conn_get(fds[i]) != NULL)
            g_hash_table_remove(conns, GINT_TO_POINTER(fds[i]));
    g_free(pf);
    g_free(pc);
}

void
it_close(int fd)
{
    if (conn_get(fd) != NULL)
        conns_close(&fd, 1);
}

void
it_reset(int fd)
{
    struct it_conn *c = conn_get(fd);

    if (c == NULL)
        return;
    /* The peer sees a reset, on every transport (transport.h). */
    transport_abort(c->t);
    c->t = NULL;
    g_hash_table_remove(conns, GINT_TO_POINTER(fd));
}

void
it_shutdown(int fd)
{
    struct it_conn *c = conn_get(fd);

    if (c != NULL && !c->shut) {
        transport_shutdown(c->t);
        c->shut = true;
    }
}

void
it_set_autopong(int fd, bool on)
{
    struct it_conn *c = conn_get(fd);

    if (c != NULL)
        c->autopong = on;
}

void
it_set_passive(int fd, bool on)
{
    struct it_conn *c = conn_get(fd);

    if (c != NULL)
        c->passive = on;
}

const char *
it_nick(int fd)
{
    struct it_conn *c = conn_get(fd);

    return c != NULL ? c->nick : "";
}

/* -------------------------------------------------------------- receive */

/* Whole payload must be one JSON object with a string type (server side of
 * §1/§2), whitespace allowed after it. */
static cJSON *
parse_payload(const uint8_t *p, size_t n)
{
    const char *end = NULL;
    cJSON *m;

    m = cJSON_ParseWithLengthOpts((const char *)p, n, &end, false);
    if (m == NULL)
        return NULL;
    while (end != NULL && end < (const char *)p + n &&
        (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != (const char *)p + n || !cJSON_IsObject(m) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "type"))) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* Small direct write that never pumps (used for automatic pongs). */
static void
write_small(struct it_conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    ssize_t w;
    int tries = 0;

    while (off < n && tries++ < 100) {
        w = transport_send(c->t, p + off, n - off);
        if (w > 0) {
            off += (size_t)w;
        } else if (w == CHAT_EAGAIN) {
            struct pollfd pf = { .fd = c->fd,
                .events = poll_bits(c->t, TRANSPORT_WRITE) };

            (void)poll(&pf, 1, 10);
            conn_tick(c, it_now_ms());
        } else {
            return;
        }
    }
}

/* Appends a 4-byte big-endian length. */
static void
put_header(GByteArray *out, size_t n)
{
    uint8_t h[IT_HDR];

    h[0] = (uint8_t)(n >> 24);
    h[1] = (uint8_t)(n >> 16);
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
    g_byte_array_append(out, h, IT_HDR);
}

/* Appends one frame: header and payload as given. */
static void
put_frame(GByteArray *out, const void *p, size_t n)
{
    put_header(out, n);
    if (n > 0)
        g_byte_array_append(out, p, (guint)n);
}

/* Appends the next sealed frame of c's session. false if it cannot be
 * sealed (the client's TAG_FINAL went already). */
static bool
put_sealed(struct it_conn *c, GByteArray *out, const void *p, size_t n,
    bool final)
{
    uint8_t *ct = NULL;
    size_t ctlen = 0;

    if (secure_seal(c->sec, p, n, final, &ct, &ctlen) != CHAT_OK)
        return false;
    put_frame(out, ct, ctlen);
    g_free(ct);
    return true;
}

/* A pong may go out now: not inside a frame the test is still writing
 * (sending, or on a secure connection a payload still being collected
 * after its header went), and not during the handshake. */
static bool
can_pong(const struct it_conn *c)
{
    return !c->sending && !c->tx_in_body && c->sec_state != SEC_WAIT_REPLY;
}

static void
autopong(struct it_conn *c, const cJSON *ping)
{
    cJSON *pong = cJSON_CreateObject();
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(ping, "token");
    GByteArray *out = g_byte_array_new();
    char *txt;

    cJSON_AddStringToObject(pong, "type", "pong");
    if (tok != NULL)
        cJSON_AddItemToObject(pong, "token", cJSON_Duplicate(tok, true));
    txt = cJSON_PrintUnformatted(pong);
    cJSON_Delete(pong);
    if (txt == NULL) {
        g_byte_array_unref(out);
        return;
    }
    if (c->sec_state == SEC_ON) {
        if (!put_sealed(c, out, txt, strlen(txt), false))
            g_byte_array_set_size(out, 0);
    } else {
        put_frame(out, txt, strlen(txt));
    }
    cJSON_free(txt);
    if (out->len > 0)
        write_small(c, out->data, out->len);
    g_byte_array_unref(out);
}

/* One message from the server (a plain payload, or one message of an
 * opened sealed frame): parsed and queued, or answered if it is a ping.
 * false (and c->end = IT_RX_BAD) if it is not one JSON object with a
 * string type. */
static bool
conn_take(struct it_conn *c, const uint8_t *p, size_t n, bool sealed)
{
    cJSON *m = parse_payload(p, n);

    if (m == NULL) {
        fprintf(stderr, "it: fd %d: server sent a %spayload that is not "
            "one JSON object with a string type: %.*s\n", c->fd,
            sealed ? "sealed " : "", (int)(n > 200 ? 200 : n),
            (const char *)p);
        c->end = IT_RX_BAD;
        return false;
    }
    if (c->sec_state == SEC_WAIT_REPLY) {
        c->reply_cut = true;
        g_queue_push_tail(&c->msgs, m);
        return true;
    }
    if (c->autopong && strcmp(it_str(m, "type"), "ping") == 0) {
        /* never inside a frame the test is still writing */
        if (!can_pong(c)) {
            g_queue_push_tail(&c->pings, m);
        } else {
            autopong(c, m);
            cJSON_Delete(m);
        }
        return true;
    }
    g_queue_push_tail(&c->msgs, m);
    return true;
}

/* Opens one sealed frame of n bytes and takes each of its messages: one,
 * or every message of a batch in order (doc/SECURE.md section 5). false
 * (and c->end = IT_RX_BAD) if it does not open, is a malformed batch, or
 * holds a message conn_take() refuses. */
static bool
conn_open(struct it_conn *c, const uint8_t *body, uint32_t n)
{
    uint8_t *pt = NULL;
    const uint8_t *msg;
    size_t ptlen = 0, off = 0, mlen;
    bool final = false, ok = true;
    int rc = secure_open(c->sec, body, n, &pt, &ptlen, &final);

    if (rc != CHAT_OK) {
        fprintf(stderr, "it: fd %d: a sealed frame of %u bytes from "
            "the server did not open%s (%s)\n", c->fd, n,
            c->rx_final ? " after its TAG_FINAL" : "", chat_strerror(rc));
        c->end = IT_RX_BAD;
        return false;
    }
    if (final)
        c->rx_final = true;
    if (ptlen == 0 && !final) {
        /* the server's last word before a close is the only empty one */
        fprintf(stderr, "it: fd %d: the server sealed an empty message "
            "without TAG_FINAL\n", c->fd);
        ok = false;
    }
    while (ok && (rc = secure_plain_next(pt, ptlen, &off, &msg, &mlen)) ==
        CHAT_OK)
        ok = conn_take(c, msg, mlen, true);
    if (ok && rc == CHAT_EPROTO) {
        fprintf(stderr, "it: fd %d: the server sealed a malformed batch "
            "of %zu bytes\n", c->fd, ptlen);
        ok = false;
    }
    g_free(pt);
    if (!ok)
        c->end = IT_RX_BAD;
    return ok;
}

/* Cuts every whole frame out of c->rx (opening it in a secure session). */
static void
conn_cut(struct it_conn *c)
{
    while (c->end == IT_RX_MSG && c->rx->len >= IT_HDR) {
        const uint8_t *h = c->rx->data;
        uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
            (uint32_t)h[2] << 8 | (uint32_t)h[3];
        bool ok;

        /* The handshake's answer is plain, what follows it is sealed:
         * leave the rest until the session exists. */
        if (c->sec_state == SEC_WAIT_REPLY && c->reply_cut)
            return;
        if (n == 0 || n > c->max_frame) {
            fprintf(stderr, "it: fd %d: server sent a frame of %u bytes "
                "(max_frame %zu)\n", c->fd, n, c->max_frame);
            c->end = IT_RX_BAD;
            return;
        }
        if (c->rx->len - IT_HDR < n)
            return;
        if (c->sec_state == SEC_ON)
            ok = conn_open(c, h + IT_HDR, n);
        else
            ok = conn_take(c, h + IT_HDR, n, false);
        if (!ok)
            return;
        g_byte_array_remove_range(c->rx, 0, IT_HDR + n);
    }
}

/* Reads what is available on c (bounded). */
static void
conn_fill(struct it_conn *c)
{
    uint8_t buf[65536];
    ssize_t r;
    int i;

    for (i = 0; i < IT_READS_PER_FILL && c->end == IT_RX_MSG; i++) {
        r = transport_recv(c->t, buf, sizeof(buf));
        if (r > 0) {
            g_byte_array_append(c->rx, buf, (guint)r);
            conn_cut(c);
            continue;
        }
        if (r == CHAT_EAGAIN)
            return;
        if (r == CHAT_ECLOSED) {
            c->end = IT_RX_CLOSED;
        } else if (r == CHAT_ESYS && (errno == ECONNRESET || errno == EPIPE)) {
            c->end = IT_RX_RESET;
        } else {
            fprintf(stderr, "it: fd %d: recv: %s\n", c->fd,
                chat_strerror((int)r));
            c->end = IT_RX_RESET;
        }
    }
}

/* Whether wait_io() is over for want. */
static bool
want_done(struct it_conn *w, short ev)
{
    if (w == NULL)
        return false;
    if (ev == POLLIN)
        return !g_queue_is_empty(&w->msgs) || w->end != IT_RX_MSG;
    /* a reset stream cannot become writable: the send says why (one the
     * server half-closed still takes bytes) */
    return w->end == IT_RX_RESET;
}

/*
 * Polls every open connection (passive ones only if they are `want`),
 * reading into queues and running the transports' timers, until `want`
 * has a message or ended (POLLIN) or is writable (POLLOUT), or the
 * deadline passes. True if the condition holds. want < 0 just reads
 * everything until the deadline. What to poll for comes from
 * transport_poll_events(): a udp stream waits for acks (READ) when a
 * caller wants to write into a full window.
 */
static bool
wait_io(int want, short ev, int64_t deadline)
{
    GHashTableIter it;
    gpointer k, v;
    struct pollfd *pf = NULL;
    struct it_conn **pc = NULL;
    guint cap = 0, n;
    bool done = false;

    for (;;) {
        struct it_conn *w = conn_get(want);
        int64_t left, now;
        int r, wait;
        guint i;

        if (want >= 0 && w == NULL)
            break;
        if (want_done(w, ev)) {
            done = true;
            break;
        }
        if (cap < g_hash_table_size(conns)) {
            cap = g_hash_table_size(conns);
            pf = g_renew(struct pollfd, pf, cap);
            pc = g_renew(struct it_conn *, pc, cap);
        }
        now = it_now_ms();
        left = deadline - now;
        if (left < 0)
            left = 0;
        wait = left > 100 ? 100 : (int)left;
        n = 0;
        g_hash_table_iter_init(&it, conns);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            struct it_conn *c = v;
            unsigned bits = 0;
            int due;

            if (c->end == IT_RX_MSG && (!c->passive || c->fd == want))
                bits |= TRANSPORT_READ;
            if (c->fd == want && ev == POLLOUT) {
                bits |= TRANSPORT_WRITE;
                if (c->passive)
                    bits &= ~TRANSPORT_READ;
            }
            if (bits == 0)
                continue;
            due = transport_next_timeout(c->t, now);
            if (due >= 0 && due < wait)
                wait = due;
            pf[n].fd = c->fd;
            pf[n].events = poll_bits(c->t, bits);
            pf[n].revents = 0;
            pc[n] = c;
            n++;
        }
        r = poll(pf, n, wait);
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "it: poll: %s\n", strerror(errno));
            break;
        }
        for (i = 0; r > 0 && i < n; i++) {
            if (pf[i].revents == 0)
                continue;
            if (pf[i].fd == want && ev == POLLOUT &&
                (pf[i].revents & (POLLOUT | POLLERR | POLLHUP)))
                done = true;
            if (!(pf[i].events & POLLIN) ||
                !(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
                continue;
            /* after the peer's end, input is only acks for what we
             * still write (udp) */
            if (pc[i]->end == IT_RX_MSG)
                conn_fill(pc[i]);
            else
                conn_drain(pc[i]);
        }
        now = it_now_ms();
        for (i = 0; i < n; i++)
            conn_tick(pc[i], now);
        if (done)
            break;
        if (want_done(conn_get(want), ev)) {
            done = true;
            break;
        }
        if (it_now_ms() >= deadline)
            break;
    }
    g_free(pf);
    g_free(pc);
    return done;
}

void
it_pump(int ms)
{
    (void)wait_io(-1, POLLIN, it_now_ms() + ms);
}

cJSON *
it_recv_msg(int fd, int timeout_ms, enum it_rx *why)
{
    struct it_conn *c = conn_get(fd);
    enum it_rx dummy;

    if (why == NULL)
        why = &dummy;
    if (c == NULL) {
        *why = IT_RX_BAD;
        return NULL;
    }
    if (g_queue_is_empty(&c->msgs) && c->end == IT_RX_MSG)
        (void)wait_io(fd, POLLIN, it_now_ms() + timeout_ms);
    c = conn_get(fd);
    if (c == NULL) {
        *why = IT_RX_BAD;
        return NULL;
    }
    if (!g_queue_is_empty(&c->msgs)) {
        *why = IT_RX_MSG;
        return g_queue_pop_head(&c->msgs);
    }
    *why = c->end != IT_RX_MSG ? c->end : IT_RX_TIMEOUT;
    return NULL;
}

/* ----------------------------------------------------------------- send */

static int
send_all(struct it_conn *c, const uint8_t *b, size_t n)
{
    size_t off = 0;
    ssize_t w;
    int64_t deadline = it_now_ms() + it_ms(IT_WAIT_MS);
    int fd = c->fd;

    while (off < n) {
        c = conn_get(fd);
        if (c == NULL) {
            errno = EBADF;
            return -1;
        }
        w = transport_send(c->t, b + off, n - off);
        if (w > 0) {
            off += (size_t)w;
            deadline = it_now_ms() + it_ms(IT_WAIT_MS);
            continue;
        }
        if (w == CHAT_EAGAIN) {
            if (it_now_ms() >= deadline) {
                errno = ETIMEDOUT;
                return -1;
            }
            /* reads every connection meanwhile, this one included */
            (void)wait_io(fd, POLLOUT, deadline);
            continue;
        }
        if (w == CHAT_ECLOSED)
            errno = EPIPE;
        else if (w != CHAT_ESYS)
            errno = EIO;
        return -1;
    }
    return 0;
}

/* Sends out as one write sequence on c; pongs held meanwhile go after. */
static int
send_locked(struct it_conn *c, const uint8_t *p, size_t n)
{
    int fd = c->fd, rc, saved;
    cJSON *ping;

    c->sending = true;
    rc = send_all(c, p, n);
    saved = errno;
    c = conn_get(fd);
    if (c != NULL) {
        c->sending = false;
        while (can_pong(c) && (ping = g_queue_pop_head(&c->pings)) != NULL) {
            autopong(c, ping);
            cJSON_Delete(ping);
        }
    }
    errno = saved;
    return rc;
}

/*
 * What a test writes on a secure connection, cut into frames: a payload is
 * sealed, its header announcing the sealed length (sent as soon as the
 * header is complete, so that a frame left unfinished looks unfinished to
 * the server); a header of length 0 or over max_frame, and every byte after
 * it, go out as they are. false (errno EPROTO) if a payload cannot be sealed.
 */
static bool
tx_feed(struct it_conn *c, const uint8_t *p, size_t n, GByteArray *out)
{
    while (n > 0) {
        size_t take;

        if (c->tx_raw) {
            g_byte_array_append(out, p, (guint)n);
            return true;
        }
        if (!c->tx_in_body) {
            uint32_t len;

            take = MIN(IT_HDR - c->txhdr_len, n);
            memcpy(c->txhdr + c->txhdr_len, p, take);
            c->txhdr_len += take;
            p += take;
            n -= take;
            if (c->txhdr_len < IT_HDR)
                break;
            c->txhdr_len = 0;
            len = (uint32_t)c->txhdr[0] << 24 | (uint32_t)c->txhdr[1] << 16 |
                (uint32_t)c->txhdr[2] << 8 | (uint32_t)c->txhdr[3];
            if (len == 0 || len > c->max_frame) {
                c->tx_raw = true;
                g_byte_array_append(out, c->txhdr, IT_HDR);
                continue;
            }
            put_header(out, secure_sealed_len(c->sec, len));
            c->tx_in_body = true;
            c->tx_need = len;
            g_byte_array_set_size(c->txbody, 0);
            continue;
        }
        take = MIN(c->tx_need - c->txbody->len, n);
        g_byte_array_append(c->txbody, p, (guint)take);
        p += take;
        n -= take;
        if (c->txbody->len == c->tx_need) {
            uint8_t *ct = NULL;
            size_t ctlen = 0;

            c->tx_in_body = false;
            if (secure_seal(c->sec, c->txbody->data, c->txbody->len, false,
                &ct, &ctlen) != CHAT_OK) {
                errno = EPROTO;
                return false;
            }
            g_byte_array_append(out, ct, (guint)ctlen);
            g_free(ct);
            g_byte_array_set_size(c->txbody, 0);
        }
    }
    return true;
}

int
it_send_raw(int fd, const void *p, size_t n)
{
    struct it_conn *c = conn_get(fd);
    GByteArray *out;
    int rc;

    if (c == NULL) {
        errno = EBADF;
        return -1;
    }
    if (c->sec_state != SEC_ON)
        return send_locked(c, p, n);
    out = g_byte_array_new();
    if (!tx_feed(c, p, n, out)) {
        g_byte_array_unref(out);
        return -1;
    }
    rc = out->len > 0 ? send_locked(c, out->data, out->len) : 0;
    g_byte_array_unref(out);
    return rc;
}

int
it_send_wire(int fd, const void *p, size_t n)
{
    struct it_conn *c = conn_get(fd);

    if (c == NULL) {
        errno = EBADF;
        return -1;
    }
    return send_locked(c, p, n);
}

int
it_send_frame(int fd, const void *p, size_t n)
{
    GByteArray *f = g_byte_array_new();
    int rc;

    put_frame(f, p, n);
    rc = it_send_raw(fd, f->data, f->len);
    g_byte_array_unref(f);
    return rc;
}

int
it_send_json(int fd, const char *fmt, ...)
{
    va_list ap;
    char *s;
    int rc;

    va_start(ap, fmt);
    s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    rc = it_send_frame(fd, s, strlen(s));
    g_free(s);
    return rc;
}

/* ------------------------------------------------------ secure sessions */

bool
it_secure_default(void)
{
    return secure_default;
}

void
it_set_secure_default(bool on)
{
    secure_default = on;
}

int
it_secure_handshake(int fd, uint8_t server_pk[32])
{
    struct it_conn *c = conn_get(fd);
    struct secure_session *sess = NULL;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why = NULL;
    GByteArray *f;
    cJSON *req = NULL, *m;
    char *txt;
    int rc;

    if (server_pk != NULL)
        memset(server_pk, 0, SECURE_PK_BYTES);
    if (c == NULL || c->sec_state != SEC_PLAIN || c->end != IT_RX_MSG ||
        !g_queue_is_empty(&c->msgs) || c->rx->len != 0) {
        fprintf(stderr, "it: fd %d: the handshake needs a fresh connection\n",
            fd);
        return -1;
    }
    if (secure_client_start(&sess, &req) != CHAT_OK) {
        fprintf(stderr, "it: secure_client_start failed\n");
        return -1;
    }
    txt = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (txt == NULL) {
        secure_free(sess);
        return -1;
    }
    f = g_byte_array_new();
    put_frame(f, txt, strlen(txt));
    cJSON_free(txt);
    c->sec_state = SEC_WAIT_REPLY;
    c->reply_cut = false;
    rc = send_locked(c, f->data, f->len);
    g_byte_array_unref(f);
    /* Even if the request could not go (a server that refused us and
     * closed at once), what it said before closing is there to read. */
    (void)wait_io(fd, POLLIN, it_now_ms() + it_ms(IT_WAIT_MS));
    c = conn_get(fd);
    if (c == NULL) {
        secure_free(sess);
        return -1;
    }
    c->sec_state = SEC_PLAIN;
    c->reply_cut = false;
    m = g_queue_pop_head(&c->msgs);
    if (m == NULL) {
        secure_free(sess);
        fprintf(stderr, "it: fd %d: no answer to secure: %s\n", fd,
            rc != 0 ? g_strerror(errno) : it_rx_name(c->end != IT_RX_MSG ?
            c->end : IT_RX_TIMEOUT));
        return -1;
    }
    if (strcmp(it_str(m, "type"), "secure") != 0) {
        /* e.g. server_full or unknown_type: the test reads it */
        secure_free(sess);
        g_queue_push_head(&c->msgs, m);
        conn_cut(c);
        return 1;
    }
    rc = secure_client_finish(sess, m, pk, &why);
    cJSON_Delete(m);
    if (rc != CHAT_OK) {
        fprintf(stderr, "it: fd %d: secure handshake failed: %s (%s)\n", fd,
            why != NULL ? why : "?", chat_strerror(rc));
        secure_free(sess);
        return -1;
    }
    c->sec = sess;
    c->sec_state = SEC_ON;
    if (server_pk != NULL)
        memcpy(server_pk, pk, SECURE_PK_BYTES);
    conn_cut(c);                /* sealed frames that came with the answer */
    return 0;
}

struct secure_session *
it_secure_session(int fd)
{
    struct it_conn *c = conn_get(fd);

    return c != NULL && c->sec_state == SEC_ON ? c->sec : NULL;
}

bool
it_is_secure(int fd)
{
    return it_secure_session(fd) != NULL;
}

bool
it_got_final(int fd)
{
    struct it_conn *c = conn_get(fd);

    return c != NULL && c->rx_final;
}

GByteArray *
it_seal_frame(int fd, const void *plain, size_t n, bool final)
{
    struct it_conn *c = conn_get(fd);
    GByteArray *f;

    if (c == NULL || c->sec_state != SEC_ON)
        return NULL;
    f = g_byte_array_new();
    if (!put_sealed(c, f, plain, n, final)) {
        g_byte_array_unref(f);
        return NULL;
    }
    return it_defer((GDestroyNotify)g_byte_array_unref, f);
}

int
it_send_json_final(int fd, const char *fmt, ...)
{
    va_list ap;
    char *s;
    GByteArray *f;

    va_start(ap, fmt);
    s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    f = it_seal_frame(fd, s, strlen(s), true);
    g_free(s);
    if (f == NULL) {
        errno = EPROTO;
        return -1;
    }
    return it_send_wire(fd, f->data, f->len);
}

/* -------------------------------------------------------------- getters */

const cJSON *
it_get(const cJSON *m, const char *key)
{
    if (m == NULL)
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(m, key);
}

const char *
it_str(const cJSON *m, const char *key)
{
    const cJSON *v = it_get(m, key);

    return cJSON_IsString(v) && v->valuestring != NULL ? v->valuestring :
        IT_ABSENT;
}

int64_t
it_int(const cJSON *m, const char *key)
{
    const cJSON *v = it_get(m, key);

    /* range first, so that the cast below is defined; no libm needed */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -9007199254740992.0 &&
        v->valuedouble <= 9007199254740992.0) ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return IT_NO_INT;
    return (int64_t)v->valuedouble;
}

bool
it_one_of(const char *set, const char *s)
{
    size_t n = strlen(s);
    const char *p = set, *bar;

    for (;;) {
        bar = strchr(p, '|');
        if ((size_t)((bar != NULL ? bar : p + strlen(p)) - p) == n &&
            strncmp(p, s, n) == 0)
            return true;
        if (bar == NULL)
            return false;
        p = bar + 1;
    }
}

bool
it_has(const cJSON *m, const char *key)
{
    return it_get(m, key) != NULL;
}

bool
it_true(const cJSON *m, const char *key)
{
    return cJSON_IsTrue(it_get(m, key));
}

bool
it_ts_ok(const cJSON *m)
{
    int64_t ts = it_int(m, "ts");
    int64_t now = g_get_real_time() / 1000;

    return ts != IT_NO_INT && ts > now - 600000 && ts < now + 600000;
}

bool
it_array_has(const cJSON *arr, const char *s, bool ci)
{
    const cJSON *e;

    if (!cJSON_IsArray(arr))
        return false;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e))
            continue;
        if (ci ? g_ascii_strcasecmp(e->valuestring, s) == 0 :
            strcmp(e->valuestring, s) == 0)
            return true;
    }
    return false;
}

/* -------------------------------------------------------- expectations */

static G_GNUC_PRINTF(3, 4) void
it_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    print_error("%s:%d: %s\n", file, line, s);
    g_free(s);
    _fail(file, line);
}

const cJSON *
it_expect_type_within_at(const char *file, int line, int fd,
    const char *type, int ms)
{
    enum it_rx why;
    cJSON *m = it_recv_msg(fd, it_ms(ms), &why);

    if (m == NULL)
        it_fail(file, line, "fd %d (%s): expected `%s`, got %s", fd,
            it_nick(fd), type, it_rx_name(why));
    it_keep(m);
    if (strcmp(it_str(m, "type"), type) != 0)
        it_fail(file, line, "fd %d (%s): expected `%s`, got %s", fd,
            it_nick(fd), type, it_json(m));
    return m;
}

const cJSON *
it_expect_type_at(const char *file, int line, int fd, const char *type)
{
    return it_expect_type_within_at(file, line, fd, type, IT_WAIT_MS);
}

const cJSON *
it_expect_error_within_at(const char *file, int line, int fd,
    const char *code, int ms)
{
    enum it_rx why;
    cJSON *m = it_recv_msg(fd, it_ms(ms), &why);

    if (m == NULL)
        it_fail(file, line, "fd %d (%s): expected error `%s`, got %s", fd,
            it_nick(fd), code, it_rx_name(why));
    it_keep(m);
    if (strcmp(it_str(m, "type"), "error") != 0 ||
        strcmp(it_str(m, "code"), code) != 0)
        it_fail(file, line, "fd %d (%s): expected error `%s`, got %s", fd,
            it_nick(fd), code, it_json(m));
    if (!cJSON_IsString(it_get(m, "message")) ||
        it_str(m, "message")[0] == '\0')
        it_fail(file, line, "error without a human `message`: %s",
            it_json(m));
    return m;
}

const cJSON *
it_expect_error_at(const char *file, int line, int fd, const char *code)
{
    return it_expect_error_within_at(file, line, fd, code, IT_WAIT_MS);
}

void
it_expect_closed_at(const char *file, int line, int fd)
{
    enum it_rx why;
    cJSON *m = it_recv_msg(fd, it_ms(IT_WAIT_MS), &why);

    if (m != NULL) {
        it_keep(m);
        it_fail(file, line, "fd %d (%s): expected close, got %s", fd,
            it_nick(fd), it_json(m));
    }
    if (why != IT_RX_CLOSED && why != IT_RX_RESET)
        it_fail(file, line, "fd %d (%s): expected close, got %s", fd,
            it_nick(fd), it_rx_name(why));
    /* doc/SECURE.md 6: an orderly close is authenticated by TAG_FINAL */
    if (why == IT_RX_CLOSED && it_is_secure(fd) && !it_got_final(fd))
        it_fail(file, line, "fd %d (%s): the server closed a secure session "
            "without its TAG_FINAL frame", fd, it_nick(fd));
}

void
it_expect_silence_at(const char *file, int line, int fd, int ms)
{
    enum it_rx why;
    cJSON *m = it_recv_msg(fd, it_ms(ms), &why);

    if (m != NULL) {
        it_keep(m);
        it_fail(file, line, "fd %d (%s): expected silence, got %s", fd,
            it_nick(fd), it_json(m));
    }
    if (why != IT_RX_TIMEOUT)
        it_fail(file, line, "fd %d (%s): expected silence, got %s", fd,
            it_nick(fd), it_rx_name(why));
}


void
it_expect_pair_at(const char *file, int line, int fd, const char *a,
    const cJSON **ma, const char *b, const cJSON **mb)
{
    const cJSON *m[2];
    enum it_rx why;
    int i;

    for (i = 0; i < 2; i++) {
        cJSON *x = it_recv_msg(fd, it_ms(IT_WAIT_MS), &why);

        if (x == NULL)
            it_fail(file, line, "fd %d (%s): expected `%s` and `%s` (any "
                "order), got %s", fd, it_nick(fd), a, b, it_rx_name(why));
        m[i] = it_keep(x);
    }
    if (strcmp(it_str(m[0], "type"), a) == 0 &&
        strcmp(it_str(m[1], "type"), b) == 0) {
        *ma = m[0];
        *mb = m[1];
    } else if (strcmp(it_str(m[0], "type"), b) == 0 &&
        strcmp(it_str(m[1], "type"), a) == 0) {
        *ma = m[1];
        *mb = m[0];
    } else {
        it_fail(file, line, "fd %d (%s): expected `%s` and `%s` (any "
            "order), got %s then %s", fd, it_nick(fd), a, b, it_json(m[0]),
            it_json(m[1]));
    }
}

/* ---------------------------------------------------- session helpers */

/* s as a JSON string literal (quotes included); harness-owned. */
static const char *
jq(const char *s)
{
    cJSON *v = cJSON_CreateString(s);
    const char *out = it_json(v);

    cJSON_Delete(v);
    return out;
}

const cJSON *
it_hello_at(const char *file, int line, int fd, const char *nick)
{
    const cJSON *m;
    struct it_conn *c = conn_get(fd);

    if (c == NULL)
        it_fail(file, line, "hello %s: not a harness connection", nick);
    if (it_send_json(fd, "{\"type\":\"hello\",\"version\":1,\"nick\":%s}",
        jq(nick)) < 0)
        it_fail(file, line, "hello %s: send: %s", nick, strerror(errno));
    m = it_expect_type_at(file, line, fd, "welcome");
    if (strcmp(it_str(m, "nick"), nick) != 0)
        it_fail(file, line, "welcome for %s names %s", nick, it_json(m));
    g_strlcpy(c->nick, nick, sizeof(c->nick));
    return m;
}

void
it_set_nick(int fd, const char *nick)
{
    struct it_conn *c = conn_get(fd);

    if (c != NULL)
        g_strlcpy(c->nick, nick, sizeof(c->nick));
}

int
it_register_welcome_at(const char *file, int line,
    const struct it_server *s, const char *nick, const cJSON **welcome)
{
    const cJSON *m;
    int fd;

    if (welcome != NULL)
        *welcome = NULL;
    fd = it_connect(s);
    if (fd < 0)
        it_fail(file, line, "cannot connect to %s",
            s != NULL ? s->url : "(no server)");
    m = it_hello_at(file, line, fd, nick);
    if (welcome != NULL)
        *welcome = m;
    return fd;
}

int
it_register_at(const char *file, int line, const struct it_server *s,
    const char *nick)
{
    return it_register_welcome_at(file, line, s, nick, NULL);
}

const cJSON *
it_join_at(const char *file, int line, int fd, const char *room)
{
    const cJSON *r = NULL, *j = NULL;

    if (it_send_json(fd, "{\"type\":\"join\",\"room\":%s}", jq(room)) < 0)
        it_fail(file, line, "join %s: send: %s", room, strerror(errno));
    it_expect_pair_at(file, line, fd, "room", &r, "joined", &j);
    if (g_ascii_strcasecmp(it_str(r, "room"), room) != 0)
        it_fail(file, line, "join %s: room reply %s", room, it_json(r));
    if (g_ascii_strcasecmp(it_str(j, "room"), room) != 0 ||
        g_ascii_strcasecmp(it_str(j, "nick"), it_nick(fd)) != 0 ||
        !it_ts_ok(j))
        it_fail(file, line, "join %s by %s: own joined event is %s", room,
            it_nick(fd), it_json(j));
    return r;
}

const cJSON *
it_expect_joined_at(const char *file, int line, int fd, const char *room,
    const char *nick)
{
    const cJSON *m = it_expect_type_at(file, line, fd, "joined");

    if (g_ascii_strcasecmp(it_str(m, "room"), room) != 0 ||
        g_ascii_strcasecmp(it_str(m, "nick"), nick) != 0 || !it_ts_ok(m))
        it_fail(file, line, "fd %d (%s): expected joined {%s, %s}, got %s",
            fd, it_nick(fd), room, nick, it_json(m));
    return m;
}

const cJSON *
it_say_at(const char *file, int line, int fd, const char *room,
    const char *text)
{
    const cJSON *m;

    if (it_send_json(fd, "{\"type\":\"say\",\"room\":%s,\"text\":%s}",
        jq(room), jq(text)) < 0)
        it_fail(file, line, "say: send: %s", strerror(errno));
    m = it_expect_type_at(file, line, fd, "message");
    if (strcmp(it_str(m, "from"), it_nick(fd)) != 0 ||
        strcmp(it_str(m, "text"), text) != 0 ||
        g_ascii_strcasecmp(it_str(m, "room"), room) != 0)
        it_fail(file, line, "fd %d (%s): say echo is %s", fd, it_nick(fd),
            it_json(m));
    return m;
}

void
it_ping_at(const char *file, int line, int fd)
{
    const char *tok = it_uniq("tok");
    const cJSON *m;

    if (it_send_json(fd, "{\"type\":\"ping\",\"token\":%s}", jq(tok)) < 0)
        it_fail(file, line, "fd %d (%s): ping: send: %s", fd, it_nick(fd),
            strerror(errno));
    m = it_expect_type_at(file, line, fd, "pong");
    if (strcmp(it_str(m, "token"), tok) != 0)
        it_fail(file, line, "fd %d: pong for token %s is %s", fd, tok,
            it_json(m));
}

const cJSON *
it_flood_until_quit_at(const char *file, int line, int flooder, int observer,
    const char *room, const char *victim)
{
    const int max_msgs = 4000;
    int64_t deadline = it_now_ms() + it_ms(60000);
    const cJSON *quit = NULL;
    bool flooder_quit = false;
    char *text = g_malloc(4001);
    int i, side;

    for (i = 0; i < max_msgs && it_now_ms() < deadline; i++) {
        g_snprintf(text, 4001, "%06d", i);
        memset(text + 6, 'f', 4000 - 6);
        text[4000] = '\0';
        if (it_send_json(flooder, "{\"type\":\"say\",\"room\":%s,"
            "\"text\":\"%s\"}", jq(room), text) < 0)
            it_fail(file, line, "flood: send: %s", strerror(errno));
        /* Each side reads up to its copy of this message. */
        for (side = 0; side < 2; side++) {
            int fd = side == 0 ? flooder : observer;

            for (;;) {
                enum it_rx why;
                cJSON *m = it_recv_msg(fd, it_ms(IT_WAIT_MS), &why);

                if (m == NULL) {
                    g_free(text);
                    it_fail(file, line, "flood: fd %d (%s) got %s", fd,
                        it_nick(fd), it_rx_name(why));
                }
                if (strcmp(it_str(m, "type"), "quit") == 0 &&
                    g_ascii_strcasecmp(it_str(m, "nick"), victim) == 0) {
                    if (side == 0) {
                        flooder_quit = true;
                        cJSON_Delete(m);
                    } else {
                        quit = it_keep(m);
                    }
                    continue;
                }
                if (strcmp(it_str(m, "type"), "message") == 0 &&
                    strcmp(it_str(m, "text"), text) == 0) {
                    cJSON_Delete(m);
                    break;
                }
                it_keep(m);
                g_free(text);
                it_fail(file, line, "flood: fd %d (%s) got unexpected %s",
                    fd, it_nick(fd), it_json(m));
            }
        }
        if (quit != NULL)
            break;
    }
    g_free(text);
    if (quit == NULL)
        it_fail(file, line, "flood: %s was not dropped after %d messages of "
            "4000 bytes", victim, i);
    if (!flooder_quit) {
        const cJSON *m = it_expect_type_at(file, line, flooder, "quit");

        if (g_ascii_strcasecmp(it_str(m, "nick"), victim) != 0)
            it_fail(file, line, "flood: flooder got %s", it_json(m));
    }
    return quit;
}

/* -------------------------------------------------------------- servers */

static int
decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* Status, or -2 if still running after ms. */
static int
reap(pid_t pid, int ms)
{
    int64_t deadline = it_now_ms() + ms;
    int st = 0;
    pid_t r;

    for (;;) {
        r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return decode_status(st);
        if (r < 0 && errno != EINTR)
            return -1;
        if (it_now_ms() >= deadline)
            return -2;
        g_usleep(2000);
    }
}

static void
dump_log(const struct it_server *s)
{
    char *txt = NULL;
    gsize len = 0;
    const char *from;

    if (s->log == NULL || !g_file_get_contents(s->log, &txt, &len, NULL))
        return;
    from = txt;
    if (len > IT_LOG_TAIL)
        from = txt + len - IT_LOG_TAIL;
    fprintf(stderr, "--- sockchatd pid %d output%s ---\n%s--- end ---\n",
        (int)s->pid, from != txt ? " (tail)" : "", from);
    g_free(txt);
}

/* Removes path and, for a directory, everything under it (symbolic links
 * are removed, never followed). */
static void
remove_tree(const char *path)
{
    struct stat st;
    GDir *d;
    const char *name;

    if (path == NULL || lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        (void)unlink(path);
        return;
    }
    (void)chmod(path, 0700);
    d = g_dir_open(path, 0, NULL);
    if (d != NULL) {
        while ((name = g_dir_read_name(d)) != NULL) {
            char *p = g_build_filename(path, name, NULL);

            remove_tree(p);
            g_free(p);
        }
        g_dir_close(d);
    }
    (void)rmdir(path);
}

static void relays_stop(struct it_server *s);

static void
server_free(struct it_server *s)
{
    if (s == NULL)
        return;
    relays_stop(s);
    if (s->relays != NULL)
        g_ptr_array_unref(s->relays);
    remove_tree(s->dir);
    g_free(s->dir);
    g_free(s->url);
    g_strfreev(s->urls);
    g_strfreev(s->lossy);
    g_free(s->log);
    g_free(s);
}

/* Reports the final status, forgets and frees s. */
static int
server_finish(struct it_server *s, int st)
{
    const char *path = getenv("IT_STATUS_LOG");

    fprintf(stderr, "it: sockchatd pid %d (%s) exited with status %d\n",
        (int)s->pid, s->url != NULL ? s->url : "?", st);
    if (st != 0) {
        bad_stops++;
        dump_log(s);
    } else if (getenv("IT_VERBOSE") != NULL) {
        dump_log(s);
    }
    if (path != NULL && *path != '\0') {
        FILE *f = fopen(path, "a");

        if (f != NULL) {
            fprintf(f, "%d %d\n", (int)s->pid, st);
            fclose(f);
        }
    }
    g_ptr_array_remove(servers, s);
    server_free(s);
    return st;
}

static char *
subst_dir(const char *arg, const char *dir)
{
    char **parts = g_strsplit(arg, "@DIR@", -1);
    char *out = g_strjoinv(dir, parts);

    g_strfreev(parts);
    return out;
}

static size_t
max_frame_of(const char *const *extra)
{
    size_t i;

    for (i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (strcmp(extra[i], "--max-frame") == 0 && extra[i + 1] != NULL)
            return (size_t)g_ascii_strtoull(extra[i + 1], NULL, 10);
        if (g_str_has_prefix(extra[i], "--max-frame="))
            return (size_t)g_ascii_strtoull(extra[i] + 12, NULL, 10);
    }
    return IT_DEFAULT_MAX_FRAME;
}

/*
 * Runs argv with stdin from /dev/null, stdout to out_path and stderr to
 * err_path (NULL: out_path too), and XDG_CONFIG_HOME=home when home is not
 * NULL. The environment is built before fork(): the child only execs (a
 * test may run threads).
 */
static pid_t
spawn_env(char **argv, const char *out_path, const char *err_path,
    const char *home)
{
    char **env = g_get_environ();
    pid_t pid;

    if (home != NULL)
        env = g_environ_setenv(env, "XDG_CONFIG_HOME", home, TRUE);
    pid = fork();
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = err_path != NULL ?
            open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600) : out;

        if (nul >= 0)
            dup2(nul, 0);
        if (out >= 0)
            dup2(out, 1);
        if (err >= 0)
            dup2(err, 2);
        execvpe(argv[0], argv, env);
        _exit(127);
    }
    g_strfreev(env);
    return pid;
}

static pid_t
spawn(char **argv, const char *out_path)
{
    return spawn_env(argv, out_path, NULL, NULL);
}

static bool
check_binary(void)
{
    if (sockchatd == NULL || sockchatd[0] != '/') {
        fprintf(stderr, "it: SOCKCHATD must be the absolute path of "
            "sockchatd (got \"%s\")\n", sockchatd != NULL ? sockchatd : "");
        return false;
    }
    if (access(sockchatd, X_OK) != 0) {
        fprintf(stderr, "it: %s: %s\n", sockchatd, strerror(errno));
        return false;
    }
    return true;
}

/* ---- lossy relays ($IT_LOSSY) */

/* tests/lossy: $LOSSY, else next to this test binary, else in the build
 * tree of $SOCKCHATD. NULL (printed) if none is there. */
static const char *
lossy_binary(void)
{
    static char *path;
    const char *v = getenv("LOSSY");
    char *exe, *dir, *top;

    if (path != NULL)
        return path;
    if (v != NULL && *v != '\0') {
        path = g_strdup(v);
    } else {
        exe = g_file_read_link("/proc/self/exe", NULL);
        if (exe != NULL) {
            dir = g_path_get_dirname(exe);
            path = g_build_filename(dir, "lossy", NULL);
            g_free(dir);
            g_free(exe);
        }
        if (path == NULL || access(path, X_OK) != 0) {
            g_free(path);
            dir = g_path_get_dirname(sockchatd);
            top = g_path_get_dirname(dir);
            path = g_build_filename(top, "tests", "lossy", NULL);
            g_free(top);
            g_free(dir);
        }
    }
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "it: IT_LOSSY is set but %s is not executable (set "
            "LOSSY to tests/lossy)\n", path);
        g_free(path);
        path = NULL;
    }
    return path;
}

static void
relay_stop(struct it_relay *r)
{
    char *txt = NULL;
    int st;

    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        st = reap(r->pid, it_ms(IT_WAIT_MS));
        if (st == -2) {
            kill(r->pid, SIGKILL);
            (void)reap(r->pid, it_ms(IT_WAIT_MS));
        }
        r->pid = -1;
        /* its counts, printed at SIGTERM */
        if (r->log != NULL && g_file_get_contents(r->log, &txt, NULL, NULL)) {
            fprintf(stderr, "it: relay %s -> %s, %u clients:\n%s", r->url,
                r->target, r->flows, txt);
            g_free(txt);
        }
    }
}

static void
relay_free(gpointer p)
{
    struct it_relay *r = p;

    relay_stop(r);
    g_free(r->target);
    g_free(r->url);
    g_free(r->log);
    g_free(r);
}

static void
relays_stop(struct it_server *s)
{
    guint i;

    for (i = 0; s->relays != NULL && i < s->relays->len; i++)
        relay_stop(g_ptr_array_index(s->relays, i));
}

/* Starts tests/lossy $IT_LOSSY in front of the udp endpoint target of s. */
static struct it_relay *
relay_start(struct it_server *s, const char *target)
{
    const char *bin = lossy_binary();
    char *host = NULL, *port = NULL, *pf = NULL, *txt = NULL;
    GPtrArray *argv;
    struct it_relay *r;
    int64_t deadline;
    size_t i;
    bool v6;

    if (bin == NULL || !split_inet_url(target, "udp", &host, &port))
        return NULL;
    v6 = strchr(host, ':') != NULL;
    r = g_new0(struct it_relay, 1);
    r->pid = -1;
    r->target = g_strdup(target);
    r->log = g_strdup_printf("%s/lossy-%u.log", s->dir, s->relays->len);
    pf = g_strdup_printf("%s/lossy-%u.port", s->dir, s->relays->len);
    argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(bin));
    g_ptr_array_add(argv, g_strdup("--listen"));
    g_ptr_array_add(argv, g_strdup_printf(v6 ? "[%s]:0" : "%s:0", host));
    g_ptr_array_add(argv, g_strdup("--to"));
    g_ptr_array_add(argv, g_strdup_printf(v6 ? "[%s]:%s" : "%s:%s", host,
        port));
    g_ptr_array_add(argv, g_strdup("--port-file"));
    g_ptr_array_add(argv, g_strdup(pf));
    for (i = 0; s->lossy[i] != NULL; i++)
        g_ptr_array_add(argv, g_strdup(s->lossy[i]));
    g_ptr_array_add(argv, NULL);
    r->pid = spawn((char **)argv->pdata, r->log);
    g_ptr_array_unref(argv);
    if (r->pid < 0) {
        fprintf(stderr, "it: fork: %s\n", strerror(errno));
        goto fail;
    }
    deadline = it_now_ms() + it_ms(IT_START_MS);
    while (!g_file_get_contents(pf, &txt, NULL, NULL) ||
        strchr(txt, '\n') == NULL) {
        g_free(txt);
        txt = NULL;
        if (reap(r->pid, 0) != -2) {
            r->pid = -1;
            fprintf(stderr, "it: lossy exited before writing its port\n");
            goto fail;
        }
        if (it_now_ms() >= deadline) {
            fprintf(stderr, "it: no port file from lossy\n");
            goto fail;
        }
        g_usleep(2000);
    }
    r->url = g_strdup_printf(v6 ? "udp://[%s]:%u" : "udp://%s:%u", host,
        (unsigned)g_ascii_strtoull(txt, NULL, 10));
    g_free(txt);
    g_free(pf);
    g_free(host);
    g_free(port);
    g_ptr_array_add(s->relays, r);
    if (getenv("IT_VERBOSE") != NULL)
        fprintf(stderr, "it: lossy pid %d on %s for %s\n", (int)r->pid,
            r->url, target);
    return r;

fail:
    g_free(pf);
    g_free(host);
    g_free(port);
    relay_free(r);
    return NULL;
}

/*
 * The URL a new client of endpoint i of s connects to: the endpoint itself,
 * or with $IT_LOSSY and a udp endpoint a relay in front of it. A relay
 * serves at most IT_RELAY_FLOWS client sockets (lossy keeps a flow per
 * client address for good), so more clients get another relay.
 */
static const char *
server_connect_url(struct it_server *s, size_t i)
{
    struct it_relay *r = NULL;
    const char *target;
    guint k;

    if (s->urls == NULL || i >= g_strv_length(s->urls)) {
        fprintf(stderr, "it: server pid %d has no endpoint %zu\n",
            (int)s->pid, i);
        return NULL;
    }
    target = s->urls[i];
    if (s->lossy == NULL || strncmp(target, "udp://", 6) != 0)
        return target;
    for (k = s->relays->len; k > 0 && r == NULL; k--) {
        struct it_relay *x = g_ptr_array_index(s->relays, k - 1);

        if (strcmp(x->target, target) == 0 && x->flows < IT_RELAY_FLOWS)
            r = x;
    }
    if (r == NULL)
        r = relay_start(s, target);
    if (r == NULL)
        return NULL;
    r->flows++;
    return r->url;
}

static bool
server_running(unsigned id)
{
    guint i;

    for (i = 0; servers != NULL && i < servers->len; i++) {
        const struct it_server *s = g_ptr_array_index(servers, i);

        if (s->id == id)
            return s->pid > 0;
    }
    return false;
}

/* Starts sockchatd with a --listen for each of listen[] (NULL-terminated),
 * and extra. */
static struct it_server *
server_start(const char *const *listen, const char *const *extra)
{
    struct it_server *s = NULL;
    GPtrArray *argv = NULL;
    GError *gerr = NULL;
    char **lurls = NULL, *portfile = NULL;
    int64_t deadline;
    size_t i, nl;

    if (!check_binary())
        return NULL;
    for (nl = 0; listen[nl] != NULL; nl++)
        ;
    s = g_new0(struct it_server, 1);
    s->id = ++server_ids;
    s->pid = -1;
    s->relays = g_ptr_array_new_with_free_func(relay_free);
    s->lossy = g_strdupv(lossy_args);
    s->dir = g_dir_make_tmp("sockchat-it-XXXXXX", &gerr);
    if (s->dir == NULL) {
        fprintf(stderr, "it: temporary directory: %s\n", gerr->message);
        g_clear_error(&gerr);
        goto fail;
    }
    lurls = g_new0(char *, nl + 1);
    for (i = 0; i < nl; i++) {
        lurls[i] = subst_dir(listen[i], s->dir);
        if (!url_is_safe(lurls[i])) {
            fprintf(stderr, "it: listen URL %s is not a loopback URL; "
                "refusing\n", lurls[i]);
            goto fail;
        }
    }
    portfile = g_build_filename(s->dir, "port", NULL);
    s->log = g_build_filename(s->dir, "server.log", NULL);
    s->max_frame = max_frame_of(extra);

    argv = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; wrapper != NULL && wrapper[i] != NULL; i++)
        g_ptr_array_add(argv, g_strdup(wrapper[i]));
    g_ptr_array_add(argv, g_strdup(sockchatd));
    for (i = 0; i < nl; i++) {
        g_ptr_array_add(argv, g_strdup("--listen"));
        g_ptr_array_add(argv, g_strdup(lurls[i]));
    }
    g_ptr_array_add(argv, g_strdup("--port-file"));
    g_ptr_array_add(argv, g_strdup(portfile));
    for (i = 0; server_args != NULL && server_args[i] != NULL; i++)
        g_ptr_array_add(argv, g_strdup(server_args[i]));
    for (i = 0; extra != NULL && extra[i] != NULL; i++)
        g_ptr_array_add(argv, subst_dir(extra[i], s->dir));
    g_ptr_array_add(argv, NULL);

    /* Its keys (sockchatd.key, reserved-nicks) land in its own directory. */
    s->pid = spawn_env((char **)argv->pdata, s->log, NULL, s->dir);
    if (s->pid < 0) {
        fprintf(stderr, "it: fork: %s\n", strerror(errno));
        goto fail;
    }
    g_ptr_array_add(servers, s);

    deadline = it_now_ms() + it_ms(IT_START_MS);
    for (;;) {
        char *txt = NULL;
        int st;

        /* written at once (rename), one endpoint URL a line */
        if (g_file_get_contents(portfile, &txt, NULL, NULL) &&
            strchr(txt, '\n') != NULL) {
            char **lines = g_strsplit(g_strstrip(txt), "\n", -1);
            GPtrArray *u = g_ptr_array_new();

            for (i = 0; lines[i] != NULL; i++)
                if (*g_strstrip(lines[i]) != '\0')
                    g_ptr_array_add(u, g_strdup(lines[i]));
            g_ptr_array_add(u, NULL);
            s->urls = (char **)g_ptr_array_free(u, FALSE);
            s->url = g_strdup(s->urls[0] != NULL ? s->urls[0] : "");
            g_strfreev(lines);
            g_free(txt);
            break;
        }
        g_free(txt);
        st = reap(s->pid, 0);
        if (st != -2) {
            fprintf(stderr, "it: sockchatd exited with status %d before "
                "writing its port file\n", st);
            s->pid = -1;
            bad_stops++;
            dump_log(s);
            goto fail;
        }
        if (it_now_ms() >= deadline) {
            fprintf(stderr, "it: no port file from sockchatd within %d ms\n",
                it_ms(IT_START_MS));
            kill(s->pid, SIGKILL);
            (void)reap(s->pid, it_ms(IT_WAIT_MS));
            s->pid = -1;
            bad_stops++;
            dump_log(s);
            goto fail;
        }
        g_usleep(5000);
    }
    for (i = 0; s->urls[i] != NULL; i++) {
        size_t j;
        bool scheme_ok = false;

        for (j = 0; j < nl; j++)
            if (strncmp(s->urls[i], lurls[j], 3) == 0)
                scheme_ok = true;
        if (!url_is_safe(s->urls[i]) || !scheme_ok) {
            fprintf(stderr, "it: port file names %s for --listen %s\n",
                s->urls[i], lurls[0]);
            kill(s->pid, SIGKILL);
            (void)reap(s->pid, it_ms(IT_WAIT_MS));
            goto fail;
        }
    }
    if (s->urls[0] == NULL) {
        fprintf(stderr, "it: empty port file\n");
        kill(s->pid, SIGKILL);
        (void)reap(s->pid, it_ms(IT_WAIT_MS));
        goto fail;
    }
    if (getenv("IT_VERBOSE") != NULL)
        fprintf(stderr, "it: sockchatd pid %d on %s\n", (int)s->pid, s->url);
    g_ptr_array_unref(argv);
    g_strfreev(lurls);
    g_free(portfile);
    return s;

fail:
    if (s != NULL)
        g_ptr_array_remove(servers, s);
    if (argv != NULL)
        g_ptr_array_unref(argv);
    g_strfreev(lurls);
    g_free(portfile);
    server_free(s);
    return NULL;
}

struct it_server *
it_server_startv(const char *const *extra)
{
    const char *listen[] = { listen_url, NULL };

    return server_start(listen, extra);
}

struct it_server *
it_server_start_endpoints(const char *const *listen,
    const char *const *extra)
{
    if (listen == NULL || listen[0] == NULL)
        return it_server_startv(extra);
    return server_start(listen, extra);
}

int
it_set_lossy(const char *args)
{
    char **words = NULL;
    GError *gerr = NULL;

    if (args != NULL && *args != '\0' &&
        !g_shell_parse_argv(args, NULL, &words, &gerr)) {
        fprintf(stderr, "it: cannot parse lossy options: %s\n",
            gerr->message);
        g_clear_error(&gerr);
        return -1;
    }
    g_strfreev(lossy_args);
    lossy_args = words;
    return 0;
}

const char *
it_lossy(void)
{
    static char *text;

    g_free(text);
    text = lossy_args != NULL ? g_strjoinv(" ", lossy_args) : NULL;
    return text;
}

int
it_server_pid(const struct it_server *s)
{
    return s != NULL ? (int)s->pid : -1;
}

size_t
it_server_n_endpoints(const struct it_server *s)
{
    return s != NULL && s->urls != NULL ? g_strv_length(s->urls) : 0;
}

const char *
it_server_endpoint(const struct it_server *s, size_t i)
{
    if (i >= it_server_n_endpoints(s))
        return "";
    return s->urls[i];
}

struct it_server *
it_server_start(const char *arg, ...)
{
    GPtrArray *v = g_ptr_array_new_with_free_func(g_free);
    struct it_server *s;
    va_list ap;
    const char *a;

    va_start(ap, arg);
    for (a = arg; a != NULL; a = va_arg(ap, const char *))
        g_ptr_array_add(v, g_strdup(a));
    va_end(ap);
    g_ptr_array_add(v, NULL);
    s = it_server_startv((const char *const *)v->pdata);
    g_ptr_array_unref(v);
    return s;
}

struct it_server *
it_server_start_str(const char *extra)
{
    char **words = NULL;
    struct it_server *s;

    if (extra == NULL || *extra == '\0')
        return it_server_startv(NULL);
    if (!g_shell_parse_argv(extra, NULL, &words, NULL))
        return NULL;
    s = it_server_startv((const char *const *)words);
    g_strfreev(words);
    return s;
}

int
it_server_kill(const struct it_server *s, int sig)
{
    if (s == NULL || s->pid <= 0)
        return -1;
    return kill(s->pid, sig);
}

int
it_server_wait(struct it_server *s, int timeout_ms)
{
    int st;

    if (s == NULL)
        return -1;
    st = reap(s->pid, timeout_ms);
    if (st == -2)
        return -2;
    return server_finish(s, st);
}

int
it_server_stop(struct it_server *s)
{
    int st;

    if (s == NULL)
        return -1;
    kill(s->pid, SIGTERM);
    st = reap(s->pid, it_ms(IT_STOP_MS));
    if (st == -2) {
        fprintf(stderr, "it: sockchatd pid %d ignored SIGTERM for %d ms; "
            "SIGKILL\n", (int)s->pid, it_ms(IT_STOP_MS));
        kill(s->pid, SIGKILL);
        (void)reap(s->pid, it_ms(IT_WAIT_MS));
        st = -1;
    }
    return server_finish(s, st);
}

const char *
it_server_url(const struct it_server *s)
{
    return s != NULL ? s->url : "";
}

const char *
it_server_dir(const struct it_server *s)
{
    return s != NULL ? s->dir : "";
}

int
it_bad_stops(void)
{
    return bad_stops;
}

bool
it_server_has_option(const char *opt)
{
    char *out = NULL, *txt = NULL;
    char help[] = "--help";
    char *argv[] = { sockchatd, help, NULL };
    int fd;
    pid_t pid;
    bool has = false;

    if (!check_binary())
        return false;
    fd = g_file_open_tmp("sockchat-it-help-XXXXXX", &out, NULL);
    if (fd < 0)
        return false;
    close(fd);
    pid = spawn(argv, out);
    if (pid > 0 && reap(pid, it_ms(IT_WAIT_MS)) == -2) {
        kill(pid, SIGKILL);
        (void)reap(pid, it_ms(IT_WAIT_MS));
    }
    if (g_file_get_contents(out, &txt, NULL, NULL))
        has = strstr(txt, opt) != NULL;
    g_free(txt);
    (void)unlink(out);
    g_free(out);
    return has;
}

const char *
it_temp_dir(void)
{
    GError *gerr = NULL;
    char *dir = g_dir_make_tmp("sockchat-it-tmp-XXXXXX", &gerr);

    if (dir == NULL) {
        fprintf(stderr, "it: temporary directory: %s\n", gerr->message);
        g_clear_error(&gerr);
        fail();
    }
    g_ptr_array_add(temp_dirs, dir);
    return dir;
}

int
it_server_run(const char *const *args, int timeout_ms, const char **out,
    const char **err)
{
    const char *dir = it_temp_dir();
    char *out_path = g_build_filename(dir, "stdout", NULL);
    char *err_path = g_build_filename(dir, "stderr", NULL);
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    char *txt;
    pid_t pid;
    int st;
    size_t i;

    if (out != NULL)
        *out = "";
    if (err != NULL)
        *err = "";
    if (!check_binary()) {
        g_ptr_array_unref(argv);
        g_free(out_path);
        g_free(err_path);
        return -1;
    }
    for (i = 0; wrapper != NULL && wrapper[i] != NULL; i++)
        g_ptr_array_add(argv, g_strdup(wrapper[i]));
    g_ptr_array_add(argv, g_strdup(sockchatd));
    for (i = 0; args != NULL && args[i] != NULL; i++)
        g_ptr_array_add(argv, g_strdup(args[i]));
    g_ptr_array_add(argv, NULL);
    pid = spawn_env((char **)argv->pdata, out_path, err_path, NULL);
    g_ptr_array_unref(argv);
    st = pid > 0 ? reap(pid, it_ms(timeout_ms)) : -1;
    if (st == -2) {
        kill(pid, SIGKILL);
        (void)reap(pid, it_ms(IT_WAIT_MS));
        st = -1;
    }
    if (out != NULL && g_file_get_contents(out_path, &txt, NULL, NULL))
        *out = keep_str(txt);
    if (err != NULL && g_file_get_contents(err_path, &txt, NULL, NULL))
        *err = keep_str(txt);
    g_free(out_path);
    g_free(err_path);
    return st;
}

/* -------------------------------------------------------------- cleanup */

void
it_test_cleanup(const struct it_server *keep)
{
    GList *keys, *l;
    guint i;

    /* all at once: on udp each close waits for its FIN to be acked */
    keys = g_hash_table_get_keys(conns);
    {
        GArray *fds = g_array_new(FALSE, FALSE, sizeof(int));

        for (l = keys; l != NULL; l = l->next) {
            int fd = GPOINTER_TO_INT(l->data);

            g_array_append_val(fds, fd);
        }
        conns_close((const int *)(void *)fds->data, fds->len);
        g_array_free(fds, TRUE);
    }
    g_list_free(keys);
    for (i = servers->len; i > 0; i--) {
        struct it_server *s = g_ptr_array_index(servers, i - 1);

        if (s != keep)
            (void)it_server_stop(s);
    }
    for (i = deferred->len; i > 0; i--) {
        struct deferred *d = &g_array_index(deferred, struct deferred, i - 1);

        d->fn(d->p);
    }
    g_array_set_size(deferred, 0);
    for (i = 0; i < temp_dirs->len; i++)
        remove_tree(g_ptr_array_index(temp_dirs, i));
    g_ptr_array_set_size(temp_dirs, 0);
    g_ptr_array_set_size(kept, 0);
    g_ptr_array_set_size(strings, 0);
}
