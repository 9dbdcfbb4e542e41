/* beacon.c - answer discovery probes, and announce the server with --lan.
 *
 * Single-threaded and non-blocking like the rest of the server: the loop
 * says a discovery socket is readable, on_read() drains a bounded number of
 * datagrams and queues the answers that pass the checks, and beacon_tick()
 * sends what is due. Nothing received here is ever answered at once: the
 * random delay spreads the answers of many servers to one broadcast probe,
 * and the queue bound caps the work a flood can make.
 */
#include "beacon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include <glib.h>
#include <sodium.h>

#include "err.h"
#include "log.h"
#include "message.h"
#include "server.h"

#define BEACON_FDS 3
#define BEACON_READS_PER_WAKE 64 /* then let the chat have a turn */
#define BEACON_LISTENERS_MAX 32
#define BEACON_LOG_EVERY_MS 1000

struct pending {
    int64_t due_ms;
    int fd;
    struct addr to;
    size_t probe_len;
    char nonce[DISCOVERY_NONCE_MAX + 1];
};

struct beacon {
    struct server *srv;
    struct loop *loop;
    struct beacon_config cfg;
    char instance[DISCOVERY_INSTANCE_LEN + 1];
    int fds[BEACON_FDS];
    size_t n_fds;
    int fd4;      /* lan: the IPv4 socket beacons go out of, or -1 */
    int fd6;      /* lan: the IPv6 socket, joined to the group, or -1 */
    int fd_lo4;   /* loopback: 127.0.0.1, or -1 */
    int fd_bcast; /* loopback: 127.255.255.255, or -1 */
    uint16_t port;
    struct discovery_limiter *lim;
    struct pending pending[BEACON_PENDING_MAX];
    size_t n_pending;
    int64_t next_beacon_ms; /* lan: 0 never */
    GArray *targets;        /* struct discovery_target */
    struct beacon_counters c;
    int64_t logged_ms;     /* when ignored datagrams were last logged */
    uint64_t logged_total; /* what had been ignored then */
    bool warned_encode;
};

static int64_t
now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

void
beacon_config_defaults(struct beacon_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->interval = BEACON_INTERVAL_DEFAULT;
    cfg->port = DISCOVERY_PORT;
    cfg->limits.source_rate = 2;
    cfg->limits.source_burst = 5;
    cfg->limits.total_rate = 50;
    cfg->limits.total_burst = 100;
}

static uint64_t
ignored_total(const struct beacon_counters *c)
{
    uint64_t n = c->limited + c->queue_full + c->amp_refused + c->send_errors;
    size_t i;

    for (i = 1; i < DISCOVERY_BAD_COUNT; i++)
        n += c->bad[i];
    return n;
}

/* One debug line a second at most, however much arrives: a flood of junk
 * must not become a flood of log lines. */
static void
note_ignored(struct beacon *b, int64_t now)
{
    const struct beacon_counters *c = &b->c;
    uint64_t total = ignored_total(c);

    if (total == b->logged_total ||
        (b->logged_ms != 0 && now - b->logged_ms < BEACON_LOG_EVERY_MS))
        return;
    log_debug("discovery: ignored so far: foreign %" G_GUINT64_FORMAT
              ", short %" G_GUINT64_FORMAT ", oversize %" G_GUINT64_FORMAT
              ", version %" G_GUINT64_FORMAT ", json %" G_GUINT64_FORMAT
              ", type %" G_GUINT64_FORMAT ", field %" G_GUINT64_FORMAT
              ", small probe %" G_GUINT64_FORMAT
              "; probes rate-limited %" G_GUINT64_FORMAT
              ", queue full %" G_GUINT64_FORMAT
              ", send errors %" G_GUINT64_FORMAT,
              c->bad[DISCOVERY_BAD_MAGIC], c->bad[DISCOVERY_BAD_SHORT],
              c->bad[DISCOVERY_BAD_OVERSIZE], c->bad[DISCOVERY_BAD_VERSION],
              c->bad[DISCOVERY_BAD_JSON], c->bad[DISCOVERY_BAD_TYPE],
              c->bad[DISCOVERY_BAD_FIELD], c->bad[DISCOVERY_BAD_PROBE_SMALL],
              c->limited, c->queue_full, c->send_errors);
    b->logged_ms = now;
    b->logged_total = total;
}

/* ---- what a beacon says ----------------------------------------------- */

/* The server name as valid UTF-8 of at most DISCOVERY_NAME_MAX bytes. */
static void
fill_name(const char *name, char *out, size_t cap)
{
    char *valid =
        g_utf8_make_valid(name != NULL && *name ? name : "sockchat", -1);
    const char *end = valid;

    /* Cut at a character boundary. */
    while (*end != '\0') {
        const char *next = end + g_utf8_skip[*(const guchar *)end];

        if ((size_t)(next - valid) > DISCOVERY_NAME_MAX ||
            (size_t)(next - valid) >= cap)
            break;
        end = next;
    }
    memcpy(out, valid, (size_t)(end - valid));
    out[end - valid] = '\0';
    g_free(valid);
}

static void
fill_endpoints(struct beacon *b, struct discovery_beacon *bc)
{
    const char *names[BEACON_LISTENERS_MAX];
    unsigned short ports[BEACON_LISTENERS_MAX];
    size_t n = 0, i, j;

    server_listeners(b->srv, names, ports, BEACON_LISTENERS_MAX, &n);
    for (i = 0; i < n && bc->n_endpoints < DISCOVERY_ENDPOINTS_MAX; i++) {
        /* A UNIX socket is not reachable over the network. */
        if (names[i] == NULL || ports[i] == 0 || strcmp(names[i], "unix") == 0)
            continue;
        if (strlen(names[i]) > DISCOVERY_TRANSPORT_MAX)
            continue;
        /* 127.0.0.1:7710 and [::1]:7710 are one endpoint here. */
        for (j = 0; j < bc->n_endpoints; j++)
            if (bc->endpoints[j].port == ports[i] &&
                strcmp(bc->endpoints[j].transport, names[i]) == 0)
                break;
        if (j < bc->n_endpoints)
            continue;
        g_strlcpy(bc->endpoints[j].transport, names[i],
                  sizeof(bc->endpoints[j].transport));
        bc->endpoints[j].port = ports[i];
        bc->n_endpoints++;
    }
}

/* What --secure says, in the words of the beacon. */
static const char *
policy_name(enum secure_policy p)
{
    switch (p) {
    case SECURE_POLICY_OFF:
        return "off";
    case SECURE_POLICY_OPTIONAL:
        return "optional";
    case SECURE_POLICY_REQUIRED:
        return "required";
    }
    return "off";
}

/* The datagram announcing this server, answering nonce ("" for none). */
static int
build(struct beacon *b, const char *nonce, uint8_t *out, size_t cap,
      size_t *len)
{
    struct discovery_beacon bc;
    const char *s;
    unsigned users = 0, rooms = 0;
    int rc;

    memset(&bc, 0, sizeof(bc));
    fill_name(server_cfg(b->srv)->name, bc.name, sizeof(bc.name));
    memcpy(bc.instance, b->instance, sizeof(bc.instance));
    bc.version = PROTO_VERSION;
    fill_endpoints(b, &bc);
    /* Read at every send: SIGHUP may change the policy. */
    if (b->cfg.secure_policy != NULL)
        s = b->cfg.secure_policy(b->cfg.hook_arg);
    else
        s = policy_name(server_cfg(b->srv)->secure);
    g_strlcpy(bc.secure, s != NULL ? s : "off", sizeof(bc.secure));
    if (b->cfg.fingerprint != NULL)
        s = b->cfg.fingerprint(b->cfg.hook_arg);
    else
        s = server_identity(b->srv) != NULL
                ? identity_fingerprint_str(server_identity(b->srv))
                : NULL;
    if (s != NULL)
        g_strlcpy(bc.fingerprint, s, sizeof(bc.fingerprint));
    server_stats(b->srv, &users, &rooms);
    bc.users = users;
    bc.rooms = rooms;
    g_strlcpy(bc.nonce, nonce, sizeof(bc.nonce));
    rc = discovery_encode_beacon(&bc, out, cap, len);
    if (rc != CHAT_OK && !b->warned_encode) {
        /* Once: it will not get better by itself (no tcp/udp listener, or
         * a hook returned something out of the rules). */
        log_warn("discovery: cannot build a beacon: %s", chat_strerror(rc));
        b->warned_encode = true;
    }
    return rc;
}

/* ---- receiving -------------------------------------------------------- */

static void
queue_answer(struct beacon *b, int fd, const struct addr *from,
             const struct discovery_msg *m, size_t probe_len, int64_t now)
{
    struct pending *p;

    if (b->n_pending == BEACON_PENDING_MAX) {
        b->c.queue_full++;
        note_ignored(b, now);
        return;
    }
    if (!discovery_limiter_allow(b->lim, (const struct sockaddr *)&from->ss,
                                 from->len, now)) {
        b->c.limited++;
        note_ignored(b, now);
        return;
    }
    /* A socket bound to a broadcast address cannot send (that would be
     * its source address): answer from the 127.0.0.1 one. */
    if (fd == b->fd_bcast)
        fd = b->fd_lo4;
    if (fd < 0) {
        b->c.send_errors++;
        note_ignored(b, now);
        return;
    }
    p = &b->pending[b->n_pending++];
    memset(p, 0, sizeof(*p));
    p->due_ms = now + (int64_t)randombytes_uniform(BEACON_DELAY_MAX_MS + 1);
    p->fd = fd;
    p->to = *from;
    p->probe_len = probe_len;
    g_strlcpy(p->nonce, m->nonce, sizeof(p->nonce));
}

static void
on_read(struct loop *l, int fd, unsigned events, void *arg)
{
    struct beacon *b = arg;
    uint8_t buf[DISCOVERY_MAX + 1];
    struct discovery_msg m;
    enum discovery_bad why;
    struct addr from;
    size_t n;
    int64_t now = now_ms();
    int i;

    (void)l;
    (void)events;
    for (i = 0; i < BEACON_READS_PER_WAKE; i++) {
        if (discovery_recv(fd, buf, sizeof(buf), &n, &from) != CHAT_OK)
            break;
        b->c.datagrams_in++;
        b->c.bytes_in += n;
        if (discovery_decode(buf, n, &m, &why) != CHAT_OK) {
            b->c.bad[why]++;
            note_ignored(b, now);
            continue;
        }
        if (m.kind == DISCOVERY_BEACON) {
            b->c.heard++; /* our own, or another server's: not for us */
            continue;
        }
        b->c.probes++;
        queue_answer(b, fd, &from, &m, n, now);
    }
}

/* ---- sending ---------------------------------------------------------- */

static void
send_answer(struct beacon *b, const struct pending *p, int64_t now)
{
    uint8_t buf[DISCOVERY_MAX];
    struct discovery_target t;
    size_t len;
    ssize_t r;

    if (build(b, p->nonce, buf, sizeof(buf), &len) != CHAT_OK) {
        b->c.send_errors++;
        note_ignored(b, now);
        return;
    }
    /* Never more than DISCOVERY_AMP_MAX times what was received. */
    if (!discovery_reply_allowed(p->probe_len, len)) {
        b->c.amp_refused++;
        note_ignored(b, now);
        return;
    }
    memset(&t, 0, sizeof(t));
    t.dst = p->to;
    r = discovery_send_to(p->fd, &t, buf, len);
    if (r < 0) {
        b->c.send_errors++;
        note_ignored(b, now);
        return;
    }
    b->c.answers++;
    b->c.answer_bytes += (uint64_t)r;
}

static void
send_beacons(struct beacon *b, int64_t now)
{
    uint8_t buf[DISCOVERY_MAX];
    size_t len;
    guint i;

    if (build(b, "", buf, sizeof(buf), &len) != CHAT_OK)
        return;
    /* Interfaces come and go: look again every time. */
    if (discovery_lan_targets(b->port, b->targets) != CHAT_OK) {
        b->c.send_errors++;
        note_ignored(b, now);
        return;
    }
    for (i = 0; i < b->targets->len; i++) {
        const struct discovery_target *t =
            &g_array_index(b->targets, struct discovery_target, i);
        int fd = t->dst.ss.ss_family == AF_INET ? b->fd4 : b->fd6;
        ssize_t r;

        if (fd < 0)
            continue;
        /* An interface that came up since the last beacon joins now. */
        if (t->dst.ss.ss_family == AF_INET6)
            (void)discovery_join6(fd, t->ifindex);
        r = discovery_send_to(fd, t, buf, len);
        if (r < 0) {
            b->c.send_errors++;
            note_ignored(b, now);
            continue;
        }
        b->c.beacons++;
        b->c.beacon_bytes += (uint64_t)r;
    }
}

static int64_t
jittered(const struct beacon *b)
{
    /* interval x [0.8, 1.2]: servers started together drift apart. */
    double f = 0.8 + 0.4 * (double)randombytes_uniform(10001) / 10000.0;

    return (int64_t)(b->cfg.interval * 1000.0 * f);
}

int
beacon_tick(struct beacon *b)
{
    int64_t now = now_ms(), next = -1;
    size_t i;

    for (i = 0; i < b->n_pending;) {
        if (b->pending[i].due_ms <= now) {
            send_answer(b, &b->pending[i], now);
            b->pending[i] = b->pending[--b->n_pending];
            continue;
        }
        if (next < 0 || b->pending[i].due_ms < next)
            next = b->pending[i].due_ms;
        i++;
    }
    if (b->next_beacon_ms != 0) {
        if (now >= b->next_beacon_ms) {
            send_beacons(b, now);
            b->next_beacon_ms = now + jittered(b);
        }
        if (next < 0 || b->next_beacon_ms < next)
            next = b->next_beacon_ms;
    }
    if (next < 0)
        return -1;
    return next > now ? (int)(next - now) : 0;
}

/* ---- life ------------------------------------------------------------- */

static int
add_socket(struct beacon *b, const char *host, int *fd_out, char *why,
           size_t why_len)
{
    int fd = -1, rc;

    if (fd_out != NULL)
        *fd_out = -1;
    rc = discovery_socket(host, b->port, true, &fd, why, why_len);
    if (rc != CHAT_OK)
        return rc;
    rc = loop_add_fd(b->loop, fd, LOOP_READ, on_read, b);
    if (rc != CHAT_OK) {
        g_snprintf(why, why_len, "cannot watch the discovery socket: %s",
                   chat_strerror(rc));
        discovery_close(fd);
        return rc;
    }
    if (b->port == 0)
        b->port = discovery_socket_port(fd);
    b->fds[b->n_fds++] = fd;
    if (fd_out != NULL)
        *fd_out = fd;
    return CHAT_OK;
}

int
beacon_new(struct server *srv, struct loop *l, const struct beacon_config *cfg,
           struct beacon **out, char *why, size_t why_len)
{
    static const char *const local[] = {"127.0.0.1", DISCOVERY_LOOPBACK_BCAST4,
                                        "::1"};
    struct beacon *b = g_new0(struct beacon, 1);
    char one[256];
    size_t i;
    int rc = CHAT_EADDR;

    *out = NULL;
    why[0] = '\0';
    b->srv = srv;
    b->loop = l;
    b->cfg = *cfg;
    b->port = cfg->port;
    b->fd4 = b->fd6 = b->fd_lo4 = b->fd_bcast = -1;
    b->targets = g_array_new(FALSE, TRUE, sizeof(struct discovery_target));
    discovery_new_instance(b->instance);
    b->lim = discovery_limiter_new(&cfg->limits, NULL, now_ms());
    if (cfg->lan) {
        /* Both families must work for --lan: it is asked for. IPv6 may be
         * missing from the host altogether, though. */
        rc = add_socket(b, "0.0.0.0", &b->fd4, why, why_len);
        if (rc != CHAT_OK)
            goto out;
        if (add_socket(b, "::", &b->fd6, one, sizeof(one)) != CHAT_OK)
            log_warn("discovery: no IPv6: %s", one);
        if (b->fd6 >= 0 &&
            discovery_lan_targets(b->port, b->targets) == CHAT_OK)
            for (i = 0; i < b->targets->len; i++) {
                const struct discovery_target *t =
                    &g_array_index(b->targets, struct discovery_target, i);

                if (t->dst.ss.ss_family == AF_INET6 &&
                    discovery_join6(b->fd6, t->ifindex) != CHAT_OK)
                    log_debug("discovery: cannot join %s on %s: %s",
                              DISCOVERY_GROUP6, t->ifname, g_strerror(errno));
            }
        /* The first beacon soon, not one whole interval after start. */
        b->next_beacon_ms = now_ms() + 1 + randombytes_uniform(200);
    } else {
        int *fds[] = {&b->fd_lo4, &b->fd_bcast, NULL};

        for (i = 0; i < G_N_ELEMENTS(local); i++)
            if (add_socket(b, local[i], fds[i], one, sizeof(one)) != CHAT_OK) {
                log_debug("discovery: %s", one);
                if (why[0] == '\0')
                    g_strlcpy(why, one, why_len);
            }
        if (b->n_fds == 0) {
            rc = CHAT_EADDR;
            goto out;
        }
        why[0] = '\0';
    }
    if (cfg->lan)
        log_info("discovery: announcing on the LAN every %.1f s, answering "
                 "probes on udp port %u",
                 cfg->interval, b->port);
    else
        log_info("discovery: answering probes from this host on udp port %u",
                 b->port);
    *out = b;
    b = NULL;
    rc = CHAT_OK;
out:
    beacon_free(b);
    return rc;
}

void
beacon_free(struct beacon *b)
{
    size_t i;

    if (b == NULL)
        return;
    for (i = 0; i < b->n_fds; i++) {
        loop_del_fd(b->loop, b->fds[i]);
        discovery_close(b->fds[i]);
    }
    discovery_limiter_free(b->lim);
    g_array_free(b->targets, TRUE);
    g_free(b);
}

uint16_t
beacon_port(const struct beacon *b)
{
    return b->port;
}

void
beacon_get_counters(const struct beacon *b, struct beacon_counters *out)
{
    *out = b->c;
}
