/* test_udp_rel.c - tests for common/udp_rel.c through udp_rel.h, and for
 * the udp transport built on it (common/transport_udp.c) on loopback.
 *
 * The state machine is pure, so most tests run two udp_rel instances over
 * a simulated network with a fake clock: every delay, loss, duplicate and
 * reordering comes from a seeded PRNG, so a failure reproduces exactly.
 * The transport tests use real sockets on 127.0.0.1 and ::1 only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "err.h"
#include "transport.h"
#include "transport_int.h"
#include "udp_rel.h"

#define MS INT64_C(1000)
#define SEC INT64_C(1000000)
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* splitmix64: a fixed, portable pseudo-random sequence whose outputs are
 * well mixed even from small seeds (xorshift32 gives runs of small values
 * after a sparse state, which here would be bursts of loss). */
static uint32_t
rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* true with probability pct/1000 */
static bool
rng_chance(uint64_t *s, unsigned permille)
{
    return rng_next(s) % 1000 < permille;
}

static const uint8_t test_key[UDP_COOKIE_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t peer_a[] = {4, 0x1e, 0x1e, 127, 0, 0, 1};
static const uint8_t peer_b[] = {4, 0x1e, 0x1f, 127, 0, 0, 1};

/* ---- the simulated network ---------------------------------------------- */

#define NET_MAX 4096

struct net_pkt {
    int64_t at; /* delivery time */
    uint64_t order;
    int to;     /* 0: the client (a), 1: the server side (b) */
    size_t len;
    uint8_t d[UDP_DGRAM_MAX];
};

/* What a test may do to a datagram before the network takes it. */
enum net_verdict {
    NET_PASS,
    NET_DROP,
};

struct net;
typedef enum net_verdict (*net_filter_fn)(struct net *n, int to,
                                          const uint8_t *d, size_t len);

struct net {
    struct udp_rel *a, *b;
    struct udp_rel_params pa, pb;
    int64_t now;
    uint64_t rng;
    int64_t delay;      /* one way */
    int64_t jitter;     /* extra, uniform in [0, jitter) */
    unsigned drop;      /* permille */
    unsigned dup;       /* permille */
    net_filter_fn filter;
    void *arg;
    struct net_pkt *q;
    size_t nq;
    uint64_t order;
    uint64_t sent[2], dropped, delivered;
    uint32_t cid;
    bool listener_replied_more; /* anti-amplification broken */
};

static void
net_init(struct net *n, uint32_t seed)
{
    memset(n, 0, sizeof(*n));
    n->rng = seed ? seed : 1;
    n->now = 1000 * SEC;
    n->delay = 1 * MS;
    n->q = calloc(NET_MAX, sizeof(*n->q));
    assert_non_null(n->q);
    udp_rel_params_default(&n->pa);
    udp_rel_params_default(&n->pb);
    n->cid = 0x11223344;
}

static void
net_cleanup(struct net *n)
{
    udp_rel_free(n->a);
    udp_rel_free(n->b);
    free(n->q);
}

static void
net_send(struct net *n, int to, const uint8_t *d, size_t len)
{
    int copies = 1, i;

    n->sent[to]++;
    if (n->filter && n->filter(n, to, d, len) == NET_DROP) {
        n->dropped++;
        return;
    }
    if (n->drop && rng_chance(&n->rng, n->drop)) {
        n->dropped++;
        return;
    }
    if (n->dup && rng_chance(&n->rng, n->dup))
        copies = 2;
    for (i = 0; i < copies; i++) {
        struct net_pkt *p;

        assert_true(n->nq < NET_MAX);
        p = &n->q[n->nq++];
        p->at = n->now + n->delay +
                (n->jitter ? (int64_t)(rng_next(&n->rng) % n->jitter) : 0);
        p->order = n->order++;
        p->to = to;
        p->len = len;
        memcpy(p->d, d, len);
    }
}

/* Deliver to the server side: the stateless listener until a session
 * exists, as transport_udp does. */
static void
net_to_server(struct net *n, const uint8_t *d, size_t len)
{
    uint8_t reply[UDP_DGRAM_MAX];
    struct udp_listen_result res;

    if (n->b) {
        udp_rel_input(n->b, n->now, d, len);
        return;
    }
    udp_listen_input(test_key, (uint32_t)(n->now / SEC), peer_a,
                     sizeof(peer_a), d, len, reply, &res);
    if (res.reply_len > len)
        n->listener_replied_more = true;
    if (res.verdict == UDP_LISTEN_REPLY)
        net_send(n, 0, reply, res.reply_len);
    else if (res.verdict == UDP_LISTEN_ACCEPT)
        n->b = udp_rel_new_server(&n->pb, res.cid, res.peer_isn, res.peer_wnd,
                                  n->now);
}

static void
net_flush(struct net *n)
{
    uint8_t d[UDP_DGRAM_MAX];
    size_t len;
    int guard;

    for (guard = 0; n->a && guard < 100000; guard++) {
        len = udp_rel_poll_output(n->a, n->now, d);
        if (len == 0)
            break;
        assert_true(len <= UDP_DGRAM_MAX);
        net_send(n, 1, d, len);
    }
    for (guard = 0; n->b && guard < 100000; guard++) {
        len = udp_rel_poll_output(n->b, n->now, d);
        if (len == 0)
            break;
        assert_true(len <= UDP_DGRAM_MAX);
        net_send(n, 0, d, len);
    }
}

static int64_t
net_min(int64_t a, int64_t b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/* One step: send what is due, move the clock to the next event (at most to
 * limit), deliver and run timers. false when nothing happens before limit. */
static bool
net_step(struct net *n, int64_t limit)
{
    int64_t next = -1, t;
    size_t i, best;

    net_flush(n);
    for (i = 0; i < n->nq; i++)
        next = net_min(next, n->q[i].at);
    if (n->a) {
        t = udp_rel_next_timeout(n->a, n->now);
        next = net_min(next, t >= 0 ? n->now + t : -1);
    }
    if (n->b) {
        t = udp_rel_next_timeout(n->b, n->now);
        next = net_min(next, t >= 0 ? n->now + t : -1);
    }
    if (next < 0 || next > limit) {
        if (limit > n->now)
            n->now = limit;
        return false;
    }
    if (next > n->now)
        n->now = next;
    /* Deliver everything due, earliest first (ties in sending order). */
    for (;;) {
        struct net_pkt p;

        best = n->nq;
        for (i = 0; i < n->nq; i++) {
            if (n->q[i].at > n->now)
                continue;
            if (best == n->nq || n->q[i].at < n->q[best].at ||
                (n->q[i].at == n->q[best].at &&
                 n->q[i].order < n->q[best].order))
                best = i;
        }
        if (best == n->nq)
            break;
        p = n->q[best];
        n->q[best] = n->q[--n->nq];
        n->delivered++;
        if (p.to == 0)
            udp_rel_input(n->a, n->now, p.d, p.len);
        else
            net_to_server(n, p.d, p.len);
    }
    if (n->a)
        udp_rel_tick(n->a, n->now);
    if (n->b)
        udp_rel_tick(n->b, n->now);
    return true;
}

typedef bool (*net_done_fn)(struct net *n, void *arg);

/* Run until done (or nothing happens, or the step or time bound). */
static bool
net_run(struct net *n, net_done_fn done, void *arg, long max_steps,
        int64_t max_time)
{
    int64_t end = n->now + max_time;
    long i;

    for (i = 0; i < max_steps && n->now < end; i++) {
        if (done && done(n, arg))
            return true;
        net_step(n, end);
    }
    return done ? done(n, arg) : true;
}

static bool
both_open(struct net *n, void *arg)
{
    (void)arg;
    return n->a && n->b && udp_rel_state(n->a) == UDP_REL_OPEN &&
           udp_rel_state(n->b) == UDP_REL_OPEN;
}

static void
net_connect(struct net *n)
{
    static const uint8_t nonce[UDP_NONCE_LEN] = {9, 8, 7, 6, 5, 4, 3, 2};

    n->a = udp_rel_new_client(&n->pa, n->cid, nonce, n->now);
    assert_int_equal(udp_rel_state(n->a), UDP_REL_INIT_SENT);
    assert_true(net_run(n, both_open, NULL, 10000, 60 * SEC));
}

/* Run for a stretch of fake time. */
static void
net_advance(struct net *n, int64_t dt)
{
    int64_t end = n->now + dt;
    long guard;

    for (guard = 0; guard < 1000000 && n->now < end; guard++)
        net_step(n, end);
    if (n->now < end)
        n->now = end;
}

/* ---- a byte stream with a known pattern --------------------------------- */

static uint8_t
pattern(uint64_t i)
{
    return (uint8_t)(i * 7 + (i >> 8) * 13 + 1);
}

struct flow {
    uint64_t written, read, total;
    bool closed;  /* writer closed after total */
    bool eof;     /* reader saw the end */
    bool bad;     /* a wrong byte */
    size_t read_chunk;
};

static void
flow_write(struct udp_rel *r, struct flow *f)
{
    uint8_t chunk[4096];
    ssize_t k;
    size_t i, want;

    while (f->written < f->total) {
        want = (size_t)MIN(sizeof(chunk), f->total - f->written);
        for (i = 0; i < want; i++)
            chunk[i] = pattern(f->written + i);
        k = udp_rel_write(r, chunk, want);
        if (k == CHAT_EAGAIN)
            return;
        assert_true(k > 0);
        f->written += (uint64_t)k;
    }
    if (!f->closed) {
        udp_rel_close(r);
        f->closed = true;
    }
}

static void
flow_read(struct udp_rel *r, struct flow *f)
{
    uint8_t chunk[4096];
    size_t want = f->read_chunk ? f->read_chunk : sizeof(chunk);
    ssize_t k;
    ssize_t i;

    for (;;) {
        k = udp_rel_read(r, chunk, want);
        if (k == CHAT_EAGAIN)
            return;
        if (k == CHAT_ECLOSED) {
            f->eof = udp_rel_eof(r);
            return;
        }
        assert_true(k > 0);
        for (i = 0; i < k; i++)
            if (chunk[i] != pattern(f->read + (uint64_t)i))
                f->bad = true;
        f->read += (uint64_t)k;
    }
}

struct duplex {
    struct flow ab, ba;
};

static bool
duplex_pump(struct net *n, void *arg)
{
    struct duplex *x = arg;

    flow_write(n->a, &x->ab);
    flow_write(n->b, &x->ba);
    flow_read(n->b, &x->ab);
    flow_read(n->a, &x->ba);
    return x->ab.eof && x->ba.eof && udp_rel_state(n->a) == UDP_REL_CLOSED &&
           udp_rel_state(n->b) == UDP_REL_CLOSED;
}

/* ---- header ------------------------------------------------------------- */

static size_t
make_dgram(uint8_t *d, uint8_t type, uint32_t cid, uint32_t seq, size_t len)
{
    struct udp_hdr h;

    memset(&h, 0, sizeof(h));
    h.type = type;
    h.cid = cid;
    h.seq = seq;
    h.len = (uint16_t)len;
    udp_hdr_write(d, &h);
    memset(d + UDP_HDR_LEN, 'x', len);
    return UDP_HDR_LEN + len;
}

static void
test_udp_rel_header_layout(void **state)
{
    static const uint8_t want[UDP_HDR_LEN] = {
        0x53, 0x43, 0x01, 0x05, 0x00, 0x01, 0x00, 0x03, /* magic ver type fl len */
        0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x07, /* cid seq */
        0x00, 0x00, 0x00, 0x03, 0x80, 0x00, 0x00, 0x00, /* ack sack.. */
        0x00, 0x00, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, /* ..sack wnd */
    };
    struct udp_hdr h, g;
    uint8_t d[UDP_HDR_LEN + 3];

    (void)state;
    memset(&h, 0, sizeof(h));
    h.type = UDP_T_DATA;
    h.flags = UDP_F_ACK;
    h.len = 3;
    h.cid = 0xdeadbeef;
    h.seq = 7;
    h.ack = 3;
    h.sack = 0x8000000000000001ull;
    h.wnd = 0x40000;
    udp_hdr_write(d, &h);
    assert_memory_equal(d, want, UDP_HDR_LEN);
    memcpy(d + UDP_HDR_LEN, "abc", 3);
    assert_int_equal(udp_hdr_parse(d, sizeof(d), &g), CHAT_OK);
    assert_int_equal(g.type, UDP_T_DATA);
    assert_int_equal(g.cid, 0xdeadbeef);
    assert_int_equal(g.seq, 7);
    assert_int_equal(g.ack, 3);
    assert_true(g.sack == 0x8000000000000001ull);
    assert_int_equal(g.wnd, 0x40000);
    assert_int_equal(g.len, 3);
}

static void
test_udp_rel_rejects_malformed(void **state)
{
    uint8_t d[UDP_DGRAM_MAX + 8];
    struct udp_hdr h;
    size_t n;

    (void)state;
    n = make_dgram(d, UDP_T_DATA, 1, 0, 10);
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_OK);
    /* truncated: the length field disagrees, or no whole header */
    assert_int_equal(udp_hdr_parse(d, n - 1, &h), CHAT_EPROTO);
    assert_int_equal(udp_hdr_parse(d, UDP_HDR_LEN - 1, &h), CHAT_EPROTO);
    assert_int_equal(udp_hdr_parse(d, 0, &h), CHAT_EPROTO);
    /* wrong magic, wrong version, unknown types */
    d[0] ^= 1;
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_EPROTO);
    d[0] ^= 1;
    d[2] = 2;
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_EPROTO);
    d[2] = UDP_VERSION;
    d[3] = 0;
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_EPROTO);
    d[3] = 10;
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_EPROTO);
    /* payload sizes per type */
    n = make_dgram(d, UDP_T_DATA, 1, 0, 0);
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_EPROTO);
    n = make_dgram(d, UDP_T_ACK, 1, 0, 1);
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_EPROTO);
    n = make_dgram(d, UDP_T_ECHO, 1, 0, UDP_COOKIE_LEN - 1);
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_EPROTO);
    /* larger than a datagram may be */
    n = make_dgram(d, UDP_T_INIT, 1, 0, UDP_PAYLOAD_MAX);
    assert_int_equal(udp_hdr_parse(d, n, &h), CHAT_OK);
    d[6] = (uint8_t)((UDP_PAYLOAD_MAX + 1) >> 8);
    d[7] = (uint8_t)(UDP_PAYLOAD_MAX + 1);
    assert_int_equal(udp_hdr_parse(d, n + 1, &h), CHAT_EPROTO);
}

static void
test_udp_rel_input_ignores_junk(void **state)
{
    struct net n;
    uint8_t d[UDP_DGRAM_MAX];
    struct udp_rel_stats st;
    uint64_t rng = 77;
    size_t len, i, j;
    ssize_t k;

    (void)state;
    net_init(&n, 5);
    net_connect(&n);
    /* truncated, wrong magic, wrong version, wrong connection id */
    len = make_dgram(d, UDP_T_DATA, n.cid, 0, 5);
    assert_int_equal(udp_rel_input(n.b, n.now, d, len - 1), CHAT_EPROTO);
    d[1] = 0;
    assert_int_equal(udp_rel_input(n.b, n.now, d, len), CHAT_EPROTO);
    len = make_dgram(d, UDP_T_DATA, n.cid, 0, 5);
    d[2] = 9;
    assert_int_equal(udp_rel_input(n.b, n.now, d, len), CHAT_EPROTO);
    len = make_dgram(d, UDP_T_RST, n.cid + 1, 0, 0);
    assert_int_equal(udp_rel_input(n.b, n.now, d, len), CHAT_EPROTO);
    /* random junk, some of it with a valid magic */
    for (i = 0; i < 5000; i++) {
        len = rng_next(&rng) % UDP_DGRAM_MAX;
        for (j = 0; j < len; j++)
            d[j] = (uint8_t)rng_next(&rng);
        if (len >= 4 && i % 2) {
            d[0] = 0x53;
            d[1] = 0x43;
            d[2] = 1;
        }
        udp_rel_input(n.b, n.now, d, len);
    }
    udp_rel_get_stats(n.b, &st);
    assert_true(st.ignored >= 5004);
    assert_int_equal(udp_rel_state(n.b), UDP_REL_OPEN);
    k = udp_rel_read(n.b, d, sizeof(d));
    assert_int_equal(k, CHAT_EAGAIN);
    net_cleanup(&n);
}

/* ---- handshake ---------------------------------------------------------- */

static void
test_udp_rel_cookie(void **state)
{
    uint8_t c[UDP_COOKIE_LEN];
    size_t i;

    (void)state;
    udp_cookie_make(test_key, 500, peer_a, sizeof(peer_a), 42, c);
    assert_int_equal(udp_cookie_check(test_key, 500, peer_a, sizeof(peer_a),
                                      42, c),
                     CHAT_OK);
    assert_int_equal(udp_cookie_check(test_key, 500 + UDP_COOKIE_LIFE_S,
                                      peer_a, sizeof(peer_a), 42, c),
                     CHAT_OK);
    /* expired, and from the future */
    assert_int_equal(udp_cookie_check(test_key, 501 + UDP_COOKIE_LIFE_S,
                                      peer_a, sizeof(peer_a), 42, c),
                     CHAT_ERANGE);
    assert_int_equal(udp_cookie_check(test_key, 499, peer_a, sizeof(peer_a),
                                      42, c),
                     CHAT_ERANGE);
    /* another address or port, another connection id, another key */
    assert_int_equal(udp_cookie_check(test_key, 500, peer_b, sizeof(peer_b),
                                      42, c),
                     CHAT_ECRYPTO);
    assert_int_equal(udp_cookie_check(test_key, 500, peer_a, sizeof(peer_a),
                                      43, c),
                     CHAT_ECRYPTO);
    {
        uint8_t other[UDP_COOKIE_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 9};

        assert_int_equal(udp_cookie_check(other, 500, peer_a, sizeof(peer_a),
                                          42, c),
                         CHAT_ECRYPTO);
    }
    /* any bit changed, time included */
    for (i = 0; i < UDP_COOKIE_LEN * 8; i++) {
        c[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_not_equal(udp_cookie_check(test_key, 500, peer_a,
                                              sizeof(peer_a), 42, c),
                             CHAT_OK);
        c[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
}

static void
test_udp_rel_listener_is_stateless_and_small(void **state)
{
    uint8_t d[UDP_DGRAM_MAX], reply[UDP_DGRAM_MAX];
    struct udp_listen_result res;
    struct udp_hdr h;
    uint64_t rng = 99;
    size_t len, i, j;
    uint8_t type;

    (void)state;
    /* INIT padded to 1200: a COOKIE of 76 bytes carrying the nonce */
    len = make_dgram(d, UDP_T_INIT, 5, 0, UDP_INIT_LEN - UDP_HDR_LEN);
    memcpy(d + UDP_HDR_LEN, "NONCE123", UDP_NONCE_LEN);
    assert_int_equal(udp_listen_input(test_key, 100, peer_a, sizeof(peer_a), d,
                                      len, reply, &res),
                     CHAT_OK);
    assert_int_equal(res.verdict, UDP_LISTEN_REPLY);
    assert_int_equal(res.reply_len, UDP_HDR_LEN + UDP_NONCE_LEN +
                                        UDP_COOKIE_LEN);
    assert_int_equal(udp_hdr_parse(reply, res.reply_len, &h), CHAT_OK);
    assert_int_equal(h.type, UDP_T_COOKIE);
    assert_int_equal(h.cid, 5);
    assert_memory_equal(reply + UDP_HDR_LEN, "NONCE123", UDP_NONCE_LEN);
    /* the ECHO of that cookie is accepted, from that peer, in time */
    len = make_dgram(d, UDP_T_ECHO, 5, 1234, UDP_COOKIE_LEN);
    memcpy(d + UDP_HDR_LEN, reply + UDP_HDR_LEN + UDP_NONCE_LEN,
           UDP_COOKIE_LEN);
    assert_int_equal(udp_listen_input(test_key, 105, peer_a, sizeof(peer_a), d,
                                      len, reply, &res),
                     CHAT_OK);
    assert_int_equal(res.verdict, UDP_LISTEN_ACCEPT);
    assert_int_equal(res.cid, 5);
    assert_int_equal(res.peer_isn, 1234);
    assert_true(res.reply_len <= len);
    assert_int_equal(udp_listen_input(test_key, 120, peer_a, sizeof(peer_a), d,
                                      len, reply, &res),
                     CHAT_ERANGE);
    assert_int_equal(res.verdict, UDP_LISTEN_DROP);
    assert_int_equal(udp_listen_input(test_key, 105, peer_b, sizeof(peer_b), d,
                                      len, reply, &res),
                     CHAT_ECRYPTO);
    assert_int_equal(res.verdict, UDP_LISTEN_DROP);
    /* an INIT without its padding gets nothing */
    len = make_dgram(d, UDP_T_INIT, 5, 0, UDP_NONCE_LEN);
    udp_listen_input(test_key, 100, peer_a, sizeof(peer_a), d, len, reply,
                     &res);
    assert_int_equal(res.verdict, UDP_LISTEN_DROP);
    assert_int_equal(res.reply_len, 0);
    /* never more bytes back than came in: every type, every size, junk */
    for (i = 0; i < 20000; i++) {
        type = (uint8_t)(rng_next(&rng) % 11);
        len = rng_next(&rng) % (UDP_DGRAM_MAX + 1);
        if (i % 3 == 0) {
            for (j = 0; j < len; j++)
                d[j] = (uint8_t)rng_next(&rng);
        } else if (len >= UDP_HDR_LEN) {
            make_dgram(d, type, rng_next(&rng), 0, len - UDP_HDR_LEN);
        }
        udp_listen_input(test_key, 100, peer_a, sizeof(peer_a), d, len, reply,
                         &res);
        assert_true(res.reply_len <= len);
        if (res.verdict == UDP_LISTEN_DROP)
            assert_int_equal(res.reply_len, 0);
    }
}

static void
test_udp_rel_handshake_under_loss(void **state)
{
    struct net n;
    struct udp_rel_stats st;
    int i;

    (void)state;
    for (i = 0; i < 50; i++) {
        net_init(&n, (uint32_t)(1000 + i));
        n.drop = 400; /* 40% */
        n.dup = 100;
        n.jitter = 5 * MS;
        net_connect(&n);
        assert_int_equal(udp_rel_state(n.a), UDP_REL_OPEN);
        assert_false(n.listener_replied_more);
        net_cleanup(&n);
    }
    /* no loss: one INIT, one ECHO, an RTT sample from the handshake */
    net_init(&n, 3);
    n.delay = 5 * MS;
    net_connect(&n);
    udp_rel_get_stats(n.a, &st);
    assert_int_equal(st.sent, 2);
    assert_int_equal(st.retransmits, 0);
    assert_true(st.srtt_us >= 9 * MS && st.srtt_us <= 11 * MS);
    net_cleanup(&n);
}

static enum net_verdict
drop_all_to_client(struct net *n, int to, const uint8_t *d, size_t len)
{
    (void)n;
    (void)d;
    (void)len;
    return to == 0 ? NET_DROP : NET_PASS;
}

static void
test_udp_rel_handshake_gives_up(void **state)
{
    struct net n;
    static const uint8_t nonce[UDP_NONCE_LEN];

    (void)state;
    net_init(&n, 4);
    n.filter = drop_all_to_client;
    n.a = udp_rel_new_client(&n.pa, n.cid, nonce, n.now);
    net_advance(&n, 31 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_DEAD);
    assert_int_equal(udp_rel_next_timeout(n.a, n.now), -1);
    /* the listener kept nothing: only stateless COOKIEs went out */
    assert_null(n.b);
    net_cleanup(&n);
}

static void
test_udp_rel_refused(void **state)
{
    struct net n;
    uint8_t d[UDP_DGRAM_MAX];
    static const uint8_t nonce[UDP_NONCE_LEN];
    size_t len;

    (void)state;
    net_init(&n, 4);
    n.a = udp_rel_new_client(&n.pa, n.cid, nonce, n.now);
    len = udp_rel_poll_output(n.a, n.now, d);
    assert_int_equal(len, UDP_INIT_LEN);
    len = make_dgram(d, UDP_T_RST, n.cid, 0, 0);
    assert_int_equal(udp_rel_input(n.a, n.now, d, len), CHAT_OK);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_REFUSED);
    assert_int_equal(udp_rel_read(n.a, d, sizeof(d)), CHAT_ECLOSED);
    assert_false(udp_rel_eof(n.a));
    net_cleanup(&n);
}

/* ---- delivery ----------------------------------------------------------- */

static void
test_udp_rel_in_order_delivery(void **state)
{
    struct net n;
    uint8_t buf[64];

    (void)state;
    net_init(&n, 7);
    net_connect(&n);
    assert_int_equal(udp_rel_write(n.a, "hello, ", 7), 7);
    assert_int_equal(udp_rel_write(n.a, "world", 5), 5);
    net_advance(&n, 100 * MS);
    assert_int_equal(udp_rel_readable(n.b), 12);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), 12);
    assert_memory_equal(buf, "hello, world", 12);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), CHAT_EAGAIN);
    /* and back */
    assert_int_equal(udp_rel_write(n.b, "hi", 2), 2);
    net_advance(&n, 100 * MS);
    assert_int_equal(udp_rel_read(n.a, buf, 1), 1);
    assert_true(udp_rel_read_left(n.a, 0));
    assert_false(udp_rel_read_left(n.a, 1));
    assert_int_equal(udp_rel_read(n.a, buf + 1, 1), 1);
    assert_memory_equal(buf, "hi", 2);
    net_cleanup(&n);
}

/* Drop the first transmission of the DATA packet with sequence number seq
 * (relative to the first DATA seen). */
struct drop_seq {
    bool have_base;
    uint32_t base;
    uint32_t seq;
    int times; /* drop this many transmissions */
    int64_t sent_at[16];
    int sends;
};

static enum net_verdict
drop_seq_filter(struct net *n, int to, const uint8_t *d, size_t len)
{
    struct drop_seq *ds = n->arg;
    struct udp_hdr h;

    if (to != 1 || udp_hdr_parse(d, len, &h) != CHAT_OK ||
        (h.type != UDP_T_DATA && h.type != UDP_T_FIN))
        return NET_PASS;
    if (!ds->have_base) {
        ds->have_base = true;
        ds->base = h.seq;
    }
    if (h.seq - ds->base != ds->seq)
        return NET_PASS;
    if (ds->sends < 16)
        ds->sent_at[ds->sends] = n->now;
    ds->sends++;
    if (ds->times > 0) {
        ds->times--;
        return NET_DROP;
    }
    return NET_PASS;
}

static void
test_udp_rel_tail_loss_probe(void **state)
{
    struct net n;
    struct drop_seq ds = {.seq = 0, .times = 1};
    struct udp_rel_stats st;
    uint8_t buf[16];

    (void)state;
    net_init(&n, 8);
    n.delay = 2 * MS;
    net_connect(&n);
    n.filter = drop_seq_filter;
    n.arg = &ds;
    /* a lone message is lost: no later packet can reveal it, so a probe
     * (the same packet again) goes out after 2 RTT + the ack delay,
     * well before the 50 ms minimum RTO */
    assert_int_equal(udp_rel_write(n.a, "x", 1), 1);
    net_advance(&n, 2 * SEC);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), 1);
    assert_int_equal(ds.sends, 2);
    udp_rel_get_stats(n.a, &st);
    assert_int_equal(st.retransmits, 1);
    assert_int_equal(st.timeouts, 0);
    assert_true(ds.sent_at[1] - ds.sent_at[0] >= 2 * 4 * MS);
    assert_true(ds.sent_at[1] - ds.sent_at[0] <= 2 * 4 * MS + 10 * MS + MS);
    net_cleanup(&n);
}

static void
test_udp_rel_retransmit_after_rto(void **state)
{
    struct net n;
    struct drop_seq ds = {.seq = 0, .times = 2};
    struct udp_rel_stats st;
    uint8_t buf[16];

    (void)state;
    net_init(&n, 8);
    n.delay = 2 * MS;
    net_connect(&n);
    n.filter = drop_seq_filter;
    n.arg = &ds;
    /* the probe is lost too: the RTO repairs it */
    assert_int_equal(udp_rel_write(n.a, "x", 1), 1);
    net_advance(&n, 2 * SEC);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), 1);
    assert_int_equal(ds.sends, 3);
    udp_rel_get_stats(n.a, &st);
    assert_int_equal(st.retransmits, 2);
    assert_int_equal(st.timeouts, 1);
    /* the RTO, re-armed by the probe, is the 50 ms minimum here */
    assert_true(ds.sent_at[2] - ds.sent_at[1] >= 50 * MS);
    assert_true(ds.sent_at[2] - ds.sent_at[1] <= 51 * MS);
    /* after backing off, a new sample brings the RTO back down */
    assert_int_equal(udp_rel_write(n.a, "y", 1), 1);
    net_advance(&n, 1 * SEC);
    udp_rel_get_stats(n.a, &st);
    assert_int_equal(st.rto_us, 50 * MS);
    net_cleanup(&n);
}

static void
test_udp_rel_backoff_doubles(void **state)
{
    struct net n;
    struct drop_seq ds = {.seq = 0, .times = 6};
    uint8_t buf[16];
    int i;

    (void)state;
    net_init(&n, 9);
    n.delay = 2 * MS;
    net_connect(&n);
    n.filter = drop_seq_filter;
    n.arg = &ds;
    assert_int_equal(udp_rel_write(n.a, "y", 1), 1);
    net_advance(&n, 20 * SEC);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), 1);
    /* the original, one probe, then RTOs of 50, 100, 200, 400, 800 ms */
    assert_int_equal(ds.sends, 7);
    for (i = 2; i < 7; i++) {
        int64_t gap = ds.sent_at[i] - ds.sent_at[i - 1];
        int64_t want = (50 * MS) << (i - 2);

        assert_true(gap >= want && gap <= want + MS);
    }
    net_cleanup(&n);
}

static enum net_verdict
dup_everything(struct net *n, int to, const uint8_t *d, size_t len)
{
    (void)to;
    (void)d;
    (void)len;
    n->dup = 1000;
    return NET_PASS;
}

static void
test_udp_rel_duplicate_ignored(void **state)
{
    struct net n;
    struct udp_rel_stats st;
    uint8_t buf[64];

    (void)state;
    net_init(&n, 10);
    net_connect(&n);
    n.filter = dup_everything;
    assert_int_equal(udp_rel_write(n.a, "once", 4), 4);
    net_advance(&n, 200 * MS);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "once", 4);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), CHAT_EAGAIN);
    udp_rel_get_stats(n.b, &st);
    assert_true(st.duplicates >= 1);
    net_cleanup(&n);
}

/* Capture a's datagrams instead of sending them. */
static size_t
capture(struct udp_rel *r, int64_t now, uint8_t (*d)[UDP_DGRAM_MAX],
        size_t *len, size_t max)
{
    size_t k = 0;

    while (k < max && (len[k] = udp_rel_poll_output(r, now, d[k])) > 0)
        k++;
    return k;
}

static void
test_udp_rel_out_of_order_reassembled(void **state)
{
    struct net n;
    uint8_t d[8][UDP_DGRAM_MAX], buf[4 * UDP_PAYLOAD_MAX];
    size_t len[8], k, i;
    struct udp_rel_stats st;
    uint8_t src[3 * UDP_PAYLOAD_MAX];

    (void)state;
    net_init(&n, 11);
    net_connect(&n);
    for (i = 0; i < sizeof(src); i++)
        src[i] = pattern(i);
    assert_int_equal(udp_rel_write(n.a, src, sizeof(src)), sizeof(src));
    k = capture(n.a, n.now, d, len, 8);
    assert_int_equal(k, 3);
    /* 3, 2, 1: nothing readable until the first arrives; then all */
    assert_int_equal(udp_rel_input(n.b, n.now, d[2], len[2]), CHAT_OK);
    assert_int_equal(udp_rel_input(n.b, n.now, d[1], len[1]), CHAT_OK);
    assert_int_equal(udp_rel_readable(n.b), 0);
    assert_int_equal(udp_rel_input(n.b, n.now, d[0], len[0]), CHAT_OK);
    assert_int_equal(udp_rel_readable(n.b), sizeof(src));
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), sizeof(src));
    assert_memory_equal(buf, src, sizeof(src));
    udp_rel_get_stats(n.b, &st);
    assert_int_equal(st.duplicates, 0);
    /* b acks at once: the gaps were news */
    assert_int_equal(udp_rel_next_timeout(n.b, n.now), 0);
    net_cleanup(&n);
}

static void
test_udp_rel_sack_fast_retransmit(void **state)
{
    struct net n;
    struct drop_seq ds = {.seq = 2, .times = 1};
    struct flow f = {.total = 12 * UDP_PAYLOAD_MAX};
    struct duplex x;
    struct udp_rel_stats st;

    (void)state;
    net_init(&n, 12);
    n.delay = 10 * MS;
    net_connect(&n);
    n.filter = drop_seq_filter;
    n.arg = &ds;
    memset(&x, 0, sizeof(x));
    x.ab = f;
    flow_write(n.a, &x.ab);
    /* run one RTT and a bit: the loss must be repaired before any RTO */
    net_advance(&n, 25 * MS);
    flow_read(n.b, &x.ab);
    net_advance(&n, 25 * MS);
    flow_read(n.b, &x.ab);
    udp_rel_get_stats(n.a, &st);
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(st.fast_retransmits, 1);
    assert_int_equal(ds.sends, 2);
    /* the retransmission left about one RTT after the original */
    assert_true(ds.sent_at[1] - ds.sent_at[0] < 30 * MS);
    /* and halved the congestion window once */
    assert_true(st.cwnd < 10 * UDP_PAYLOAD_MAX);
    net_advance(&n, 200 * MS);
    flow_read(n.b, &x.ab);
    assert_int_equal(x.ab.read, x.ab.total);
    assert_false(x.ab.bad);
    net_cleanup(&n);
}

static void
test_udp_rel_send_buffer_full(void **state)
{
    struct net n;
    uint8_t src[1000], buf[8192];
    struct udp_rel_stats st;
    ssize_t k;
    size_t total = 0, i;

    (void)state;
    memset(src, 'q', sizeof(src));
    net_init(&n, 13);
    n.pa.sndbuf = 4096;
    n.delay = 20 * MS;
    net_connect(&n);
    for (i = 0; i < 10; i++) {
        k = udp_rel_write(n.a, src, sizeof(src));
        if (k == CHAT_EAGAIN)
            break;
        assert_true(k > 0);
        total += (size_t)k;
    }
    /* the buffer took exactly its cap, then refused */
    assert_int_equal(total, 4096);
    assert_int_equal(udp_rel_write(n.a, src, 1), CHAT_EAGAIN);
    assert_int_equal(udp_rel_writable(n.a), 0);
    /* sent but not acked still counts: no room after one flush */
    net_flush(&n);
    assert_int_equal(udp_rel_writable(n.a), 0);
    assert_true(udp_rel_wants_input(n.a));
    /* acks free it */
    net_advance(&n, 100 * MS);
    assert_int_equal(udp_rel_writable(n.a), 4096);
    assert_int_equal(udp_rel_write(n.a, src, 10), 10);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), 4096);
    udp_rel_get_stats(n.a, &st);
    assert_int_equal(st.retransmits, 0);
    net_cleanup(&n);
}

static void
test_udp_rel_receiver_window_respected(void **state)
{
    struct net n;
    struct duplex x;
    struct udp_rel_stats st;
    uint64_t before;

    (void)state;
    net_init(&n, 14);
    n.pb.rcvbuf = 8192;
    n.delay = 5 * MS;
    net_connect(&n);
    memset(&x, 0, sizeof(x));
    x.ab.total = 200000;
    /* the reader does not read: the writer stops at the window */
    flow_write(n.a, &x.ab);
    net_advance(&n, 2 * SEC);
    flow_write(n.a, &x.ab);
    net_advance(&n, 2 * SEC);
    udp_rel_get_stats(n.a, &st);
    assert_true(st.bytes_sent <= 8192);
    assert_true(udp_rel_readable(n.b) <= 8192);
    assert_int_equal(st.peer_wnd, 8192 - udp_rel_readable(n.b));
    /* no retransmissions: nothing was sent that could not be taken */
    assert_int_equal(st.retransmits, 0);
    /* a closed window is probed, not given up on */
    net_advance(&n, 20 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_OPEN);
    before = st.bytes_sent;
    /* the reader reads slowly: everything arrives, in order */
    x.ab.read_chunk = 1000;
    while (x.ab.read < x.ab.total && n.now < 2000 * SEC) {
        flow_read(n.b, &x.ab);
        flow_write(n.a, &x.ab);
        net_advance(&n, 10 * MS);
    }
    assert_int_equal(x.ab.read, x.ab.total);
    assert_false(x.ab.bad);
    udp_rel_get_stats(n.a, &st);
    assert_true(st.bytes_sent > before);
    net_cleanup(&n);
}

struct drop_type {
    uint8_t type;
    int to;
    int times;
};

static enum net_verdict
drop_type_filter(struct net *n, int to, const uint8_t *d, size_t len)
{
    struct drop_type *dt = n->arg;
    struct udp_hdr h;

    if (dt->times > 0 && to == dt->to &&
        udp_hdr_parse(d, len, &h) == CHAT_OK && h.type == dt->type) {
        dt->times--;
        return NET_DROP;
    }
    return NET_PASS;
}

static void
test_udp_rel_window_update_lost(void **state)
{
    struct net n;
    struct drop_type dt = {.type = UDP_T_ACK, .to = 0, .times = 1};
    struct count_pings {
        int dummy;
    } unused;
    uint8_t buf[16384];
    struct flow f = {.total = 30000};
    size_t first;

    (void)state;
    (void)unused;
    net_init(&n, 15);
    n.pb.rcvbuf = 4 * UDP_PAYLOAD_MAX;
    net_connect(&n);
    flow_write(n.a, &f);
    net_advance(&n, 500 * MS);
    assert_int_equal(udp_rel_readable(n.b), 4 * UDP_PAYLOAD_MAX);
    assert_true(udp_rel_wants_input(n.a));
    /* the reader empties its buffer; the ack that says so is lost, and
     * only the writer's window probe can find out */
    n.filter = drop_type_filter;
    n.arg = &dt;
    first = (size_t)udp_rel_read(n.b, buf, sizeof(buf));
    assert_int_equal(first, 4 * UDP_PAYLOAD_MAX);
    net_advance(&n, 3 * SEC);
    assert_int_equal(dt.times, 0); /* it was dropped */
    assert_int_equal(udp_rel_readable(n.b), 4 * UDP_PAYLOAD_MAX);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_OPEN);
    net_cleanup(&n);
}

static void
test_udp_rel_rtt_converges(void **state)
{
    struct net n;
    struct flow f = {.total = 2000000};
    struct udp_rel_stats st;

    (void)state;
    net_init(&n, 16);
    n.delay = 20 * MS;
    net_connect(&n);
    while (f.read < f.total && n.now < 2000 * SEC) {
        flow_write(n.a, &f);
        flow_read(n.b, &f);
        net_advance(&n, 5 * MS);
    }
    assert_int_equal(f.read, f.total);
    udp_rel_get_stats(n.a, &st);
    /* 40 ms round trip, plus at most the 10 ms ack delay */
    assert_true(st.srtt_us >= 39 * MS && st.srtt_us <= 51 * MS);
    assert_true(st.rttvar_us <= 10 * MS);
    assert_true(st.rto_us >= st.srtt_us && st.rto_us <= 100 * MS);
    assert_int_equal(st.retransmits, 0);
    net_cleanup(&n);
}

static void
test_udp_rel_idle_timeout_dead(void **state)
{
    struct net n;
    uint8_t buf[16];

    (void)state;
    net_init(&n, 17);
    net_connect(&n);
    /* the peer vanishes: nothing reaches a any more */
    udp_rel_free(n.b);
    n.b = NULL;
    n.filter = drop_all_to_client;
    net_advance(&n, 29 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_OPEN);
    net_advance(&n, 2 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_DEAD);
    assert_int_equal(udp_rel_next_timeout(n.a, n.now), -1);
    assert_int_equal(udp_rel_read(n.a, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_false(udp_rel_eof(n.a));
    assert_int_equal(udp_rel_write(n.a, "z", 1), CHAT_ECLOSED);
    net_cleanup(&n);
}

struct count_type {
    uint8_t type;
    int count[2];
};

static enum net_verdict
count_type_filter(struct net *n, int to, const uint8_t *d, size_t len)
{
    struct count_type *ct = n->arg;
    struct udp_hdr h;

    if (udp_hdr_parse(d, len, &h) == CHAT_OK && h.type == ct->type)
        ct->count[to]++;
    return NET_PASS;
}

static void
test_udp_rel_keepalive(void **state)
{
    struct net n;
    struct count_type ct = {.type = UDP_T_PING};

    (void)state;
    net_init(&n, 18);
    net_connect(&n);
    n.filter = count_type_filter;
    n.arg = &ct;
    /* two idle minutes: pings every 5 s keep both sides alive */
    net_advance(&n, 120 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_OPEN);
    assert_int_equal(udp_rel_state(n.b), UDP_REL_OPEN);
    assert_true(ct.count[0] + ct.count[1] >= 20);
    assert_true(ct.count[0] + ct.count[1] <= 26);
    net_cleanup(&n);
}

static void
test_udp_rel_keepalive_survives_loss(void **state)
{
    struct net n;

    (void)state;
    net_init(&n, 19);
    n.drop = 300;
    net_connect(&n);
    net_advance(&n, 600 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_OPEN);
    assert_int_equal(udp_rel_state(n.b), UDP_REL_OPEN);
    net_cleanup(&n);
}

static void
test_udp_rel_fin_after_data(void **state)
{
    struct net n;
    uint8_t buf[64];

    (void)state;
    net_init(&n, 20);
    n.delay = 3 * MS;
    net_connect(&n);
    assert_int_equal(udp_rel_write(n.a, "last words", 10), 10);
    udp_rel_close(n.a);
    assert_int_equal(udp_rel_write(n.a, "more", 4), CHAT_ECLOSED);
    net_advance(&n, 100 * MS);
    /* the data first, then the end, and the end stays */
    assert_int_equal(udp_rel_read(n.b, buf, 4), 4);
    assert_true(udp_rel_read_left(n.b, 6)); /* the end waits behind */
    assert_int_equal(udp_rel_read(n.b, buf + 4, 60), 6);
    assert_memory_equal(buf, "last words", 10);
    assert_false(udp_rel_read_left(n.b, 60));
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_true(udp_rel_eof(n.b));
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), CHAT_ECLOSED);
    /* half closed: b may still talk */
    assert_int_equal(udp_rel_write(n.b, "bye", 3), 3);
    udp_rel_close(n.b);
    net_advance(&n, 100 * MS);
    assert_int_equal(udp_rel_read(n.a, buf, sizeof(buf)), 3);
    assert_int_equal(udp_rel_read(n.a, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_true(udp_rel_eof(n.a));
    assert_int_equal(udp_rel_state(n.a), UDP_REL_CLOSED);
    assert_int_equal(udp_rel_state(n.b), UDP_REL_CLOSED);
    assert_int_equal(udp_rel_next_timeout(n.a, n.now), -1);
    assert_int_equal(udp_rel_next_timeout(n.b, n.now), -1);
    net_cleanup(&n);
}

static enum net_verdict
drop_fin_from_client(struct net *n, int to, const uint8_t *d, size_t len)
{
    struct udp_hdr h;
    int *left = n->arg;

    if (to == 1 && *left > 0 && udp_hdr_parse(d, len, &h) == CHAT_OK &&
        h.type == UDP_T_FIN) {
        (*left)--;
        return NET_DROP;
    }
    return NET_PASS;
}

static enum net_verdict
drop_all(struct net *n, int to, const uint8_t *d, size_t len)
{
    (void)n;
    (void)to;
    (void)d;
    (void)len;
    return NET_DROP;
}

static void
test_udp_rel_end_waits_for_our_fin(void **state)
{
    struct net n;
    uint8_t buf[64];
    int left = 1;

    (void)state;
    net_init(&n, 23);
    n.delay = 3 * MS;
    net_connect(&n);
    n.filter = drop_fin_from_client;
    n.arg = &left;
    /* both close at once; a's FIN is lost the first time */
    udp_rel_close(n.a);
    udp_rel_close(n.b);
    net_advance(&n, 8 * MS);
    /* a has b's FIN but not the ack of its own: a reader that would close
     * on end of stream must not yet, or the repair would be lost */
    assert_int_equal(udp_rel_read(n.a, buf, sizeof(buf)), CHAT_EAGAIN);
    net_advance(&n, 500 * MS);
    assert_int_equal(left, 0);
    assert_int_equal(udp_rel_read(n.a, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_true(udp_rel_eof(n.a));
    assert_int_equal(udp_rel_state(n.a), UDP_REL_CLOSED);
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_int_equal(udp_rel_state(n.b), UDP_REL_CLOSED);
    net_cleanup(&n);

    /* the peer vanishes after its FIN: give up after 10 s of silence, as
     * closed (everything was said both ways), not dead after 30 s */
    net_init(&n, 24);
    net_connect(&n);
    udp_rel_close(n.b);
    net_advance(&n, 50 * MS);
    n.filter = drop_all;
    udp_rel_close(n.a);
    net_advance(&n, 9 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_OPEN);
    assert_int_equal(udp_rel_read(n.a, buf, sizeof(buf)), CHAT_EAGAIN);
    net_advance(&n, 2 * SEC);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_CLOSED);
    assert_int_equal(udp_rel_read(n.a, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_true(udp_rel_eof(n.a));
    net_cleanup(&n);
}

/* 256 one-byte packets fill the window of packet numbers; the FIN and any
 * probe must wait for room rather than take the slot of a packet still
 * outstanding. */
static void
test_udp_rel_window_of_packets_full(void **state)
{
    struct net n;
    uint8_t buf[512], c;
    struct flow f;
    int i;

    (void)state;
    net_init(&n, 25);
    net_connect(&n);
    n.filter = drop_all;
    for (i = 0; i < 300; i++) {
        c = pattern((uint64_t)i);
        assert_int_equal(udp_rel_write(n.a, &c, 1), 1);
        net_flush(&n);
    }
    udp_rel_close(n.a);
    net_advance(&n, 2 * SEC); /* probes and RTOs, all lost */
    n.filter = NULL;
    net_advance(&n, 20 * SEC);
    memset(&f, 0, sizeof(f));
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), 300);
    for (i = 0; i < 300; i++)
        assert_int_equal(buf[i], pattern((uint64_t)i));
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_true(udp_rel_eof(n.b));
    net_cleanup(&n);
}

static void
test_udp_rel_rst(void **state)
{
    struct net n;
    uint8_t buf[64];

    (void)state;
    net_init(&n, 21);
    net_connect(&n);
    assert_int_equal(udp_rel_write(n.a, "data", 4), 4);
    net_advance(&n, 50 * MS);
    assert_int_equal(udp_rel_readable(n.b), 4);
    udp_rel_abort(n.a);
    assert_int_equal(udp_rel_state(n.a), UDP_REL_RESET);
    net_advance(&n, 50 * MS);
    /* the reset wins over unread data, and is not an orderly end */
    assert_int_equal(udp_rel_state(n.b), UDP_REL_RESET);
    assert_false(udp_rel_read_left(n.b, 1));
    assert_int_equal(udp_rel_read(n.b, buf, sizeof(buf)), CHAT_ECLOSED);
    assert_false(udp_rel_eof(n.b));
    assert_int_equal(udp_rel_write(n.b, "x", 1), CHAT_ECLOSED);
    assert_int_equal(udp_rel_next_timeout(n.b, n.now), -1);
    net_cleanup(&n);
}

static void
test_udp_rel_seq_wraps(void **state)
{
    struct net n;
    struct duplex x;

    (void)state;
    net_init(&n, 22);
    n.pa.isn = 0xffffffd0u;
    n.pb.isn = 0xfffffff0u;
    n.drop = 100;
    net_connect(&n);
    memset(&x, 0, sizeof(x));
    x.ab.total = 300000;
    x.ba.total = 300000;
    assert_true(net_run(&n, duplex_pump, &x, 2000000, 600 * SEC));
    assert_false(x.ab.bad);
    assert_false(x.ba.bad);
    net_cleanup(&n);
}

/* The stream arrives whole, once, in order, through loss, duplication and
 * reordering, both ways at once; many messages of random sizes. */
static void
lossy_pipe(uint32_t seed, unsigned drop, unsigned dup, int64_t jitter,
           uint64_t bytes)
{
    struct net n;
    struct duplex x;
    struct udp_rel_stats sa, sb;

    net_init(&n, seed);
    n.drop = drop;
    n.dup = dup;
    n.delay = 1 * MS;
    n.jitter = jitter; /* more than the spacing of packets: reordering */
    net_connect(&n);
    memset(&x, 0, sizeof(x));
    x.ab.total = bytes;
    x.ba.total = bytes / 2;
    x.ab.read_chunk = 700; /* the size of a chat message, roughly */
    assert_true(net_run(&n, duplex_pump, &x, 5000000, 3600 * SEC));
    assert_int_equal(x.ab.read, x.ab.total);
    assert_int_equal(x.ba.read, x.ba.total);
    assert_false(x.ab.bad);
    assert_false(x.ba.bad);
    assert_true(x.ab.eof && x.ba.eof);
    udp_rel_get_stats(n.a, &sa);
    udp_rel_get_stats(n.b, &sb);
    print_message("  seed %u drop %u.%u%% dup %u.%u%%: %llu+%llu bytes in "
                  "%.1f s fake time, %llu+%llu retransmitted (%llu fast, %llu "
                  "timeouts), %llu duplicates\n",
                  seed, drop / 10, drop % 10, dup / 10, dup % 10,
                  (unsigned long long)x.ab.total,
                  (unsigned long long)x.ba.total,
                  (double)(n.now - 1000 * SEC) / SEC - 0,
                  (unsigned long long)sa.retransmits,
                  (unsigned long long)sb.retransmits,
                  (unsigned long long)(sa.fast_retransmits +
                                       sb.fast_retransmits),
                  (unsigned long long)(sa.timeouts + sb.timeouts),
                  (unsigned long long)(sa.duplicates + sb.duplicates));
    net_cleanup(&n);
}

static void
test_udp_rel_lossy_pipe(void **state)
{
    (void)state;
    /* 10,000 messages of 700 bytes one way, half back, 20% loss */
    lossy_pipe(42, 200, 50, 4 * MS, 7000000);
    lossy_pipe(43, 200, 50, 4 * MS, 1000000);
    lossy_pipe(44, 0, 0, 0, 3000000);
    lossy_pipe(45, 500, 200, 10 * MS, 300000);
}

/* ---- the transport, on loopback ---------------------------------------- */

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The kernel behaviour the design stands on: a connected socket in a
 * SO_REUSEPORT group gets its peer's datagrams, the listener the others. */
static void
test_transport_udp_kernel_prefers_connected(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int l, s, c1, c2, one = 1, i, got_s = 0, got_l = 0, wrong = 0;
    char b[4];
    struct sockaddr_in ca;

    (void)state;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(l, (struct sockaddr *)&a, &len);
    c1 = socket(AF_INET, SOCK_DGRAM, 0);
    c2 = socket(AF_INET, SOCK_DGRAM, 0);
    assert_int_equal(connect(c1, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(connect(c2, (struct sockaddr *)&a, sizeof(a)), 0);
    len = sizeof(ca);
    getsockname(c1, (struct sockaddr *)&ca, &len);
    s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(connect(s, (struct sockaddr *)&ca, sizeof(ca)), 0);
    for (i = 0; i < 100; i++) {
        assert_int_equal(send(c1, "1", 1, 0), 1);
        assert_int_equal(send(c2, "2", 1, 0), 1);
    }
    usleep(50000);
    while (recv(s, b, sizeof(b), 0) == 1) {
        got_s++;
        wrong += b[0] != '1';
    }
    while (recv(l, b, sizeof(b), 0) == 1) {
        got_l++;
        wrong += b[0] != '2';
    }
    assert_int_equal(got_s, 100);
    assert_int_equal(got_l, 100);
    assert_int_equal(wrong, 0);
    close(l);
    close(s);
    close(c1);
    close(c2);
}

static struct transport *
listen_one(const char *url)
{
    struct transport *l[2];
    size_t n = 0;
    char why[256] = "";

    assert_int_equal(transport_listen_url(url, 0, l, 2, &n, why, sizeof(why)),
                     CHAT_OK);
    assert_int_equal(n, 1);
    assert_string_equal(transport_name(l[0]), "udp");
    return l[0];
}

/* A raw socket connected to the listener, for handcrafted datagrams. */
static int
raw_peer(struct transport *l)
{
    const struct addr *a = transport_local(l);
    int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (const struct sockaddr *)&a->ss, a->len), 0);
    return fd;
}

static void
test_transport_udp_no_state_before_echo(void **state)
{
    struct transport *l = listen_one("udp://127.0.0.1:0"), *t = NULL;
    uint8_t d[UDP_DGRAM_MAX], r[UDP_DGRAM_MAX + 8];
    size_t len;
    ssize_t got;
    int fd = raw_peer(l), i;
    char desc[256];

    (void)state;
    /* a flood of INITs: one small COOKIE each, no session, no state */
    len = make_dgram(d, UDP_T_INIT, 7, 0, UDP_INIT_LEN - UDP_HDR_LEN);
    for (i = 0; i < 20; i++) {
        assert_int_equal(send(fd, d, len, 0), (ssize_t)len);
        while (transport_accept(l, &t) == CHAT_OK)
            fail();
        got = recv(fd, r, sizeof(r), 0);
        assert_int_equal(got, UDP_HDR_LEN + UDP_NONCE_LEN + UDP_COOKIE_LEN);
        assert_true((size_t)got <= len);
        assert_int_equal(transport_udp_sessions(l), 0);
    }
    /* a short INIT, a stray DATA, junk: never more bytes back */
    len = make_dgram(d, UDP_T_INIT, 7, 0, UDP_NONCE_LEN);
    assert_int_equal(send(fd, d, len, 0), (ssize_t)len);
    transport_accept(l, &t);
    assert_int_equal(recv(fd, r, sizeof(r), 0), -1);
    len = make_dgram(d, UDP_T_DATA, 7, 0, 1);
    assert_int_equal(send(fd, d, len, 0), (ssize_t)len);
    transport_accept(l, &t);
    got = recv(fd, r, sizeof(r), 0);
    assert_int_equal(got, UDP_HDR_LEN); /* an RST */
    assert_int_equal(send(fd, "junk", 4, 0), 4);
    transport_accept(l, &t);
    assert_int_equal(recv(fd, r, sizeof(r), 0), -1);
    /* an ECHO with a forged cookie: nothing */
    len = make_dgram(d, UDP_T_ECHO, 7, 0, UDP_COOKIE_LEN);
    assert_int_equal(send(fd, d, len, 0), (ssize_t)len);
    assert_int_equal(transport_accept(l, &t), CHAT_EAGAIN);
    assert_int_equal(recv(fd, r, sizeof(r), 0), -1);
    assert_int_equal(transport_udp_sessions(l), 0);
    transport_describe(l, desc, sizeof(desc));
    print_message("  %s\n", desc);
    assert_non_null(strstr(desc, "0 sessions (0 closing), 20 cookies, 0 "
                                 "refused, 3 ignored"));
    close(fd);
    transport_close(l);
}

struct pair {
    struct transport *l, *c, *s;
};

static void
pair_open(struct pair *p, const char *url_fmt)
{
    char url[128], why[256] = "";
    int rc;

    p->l = listen_one(url_fmt);
    transport_format_url(p->l, url, sizeof(url));
    /* connect waits for the handshake; the listener must answer while it
     * does, so run connect's steps by hand here. */
    rc = transport_find("udp")->connect(transport_local(p->l), &p->c);
    assert_int_equal(rc, CHAT_OK);
    p->s = NULL;
    {
        int64_t end = mono_ms() + 3000;

        while (mono_ms() < end) {
            struct pollfd f[2] = {{.fd = transport_fd(p->l), .events = POLLIN},
                                  {.fd = transport_fd(p->c), .events = POLLIN}};

            poll(f, 2, 10);
            if (!p->s && transport_accept(p->l, &p->s) == CHAT_OK)
                continue;
            transport_tick(p->c, mono_ms());
            rc = transport_find("udp")->connect_done(p->c);
            if (rc == CHAT_OK && p->s)
                break;
        }
    }
    (void)why;
    assert_int_equal(rc, CHAT_OK);
    assert_non_null(p->s);
}

static void
pair_close(struct pair *p)
{
    transport_close(p->c);
    transport_close(p->s);
    transport_close(p->l);
}

/* Move bytes both ways through a loop that uses only the public calls,
 * as the server and client do. */
static void
pump_both(struct transport *a, struct transport *b, size_t total, int ms)
{
    struct transport *t[2] = {a, b};
    uint64_t wr[2] = {0, 0}, rd[2] = {0, 0};
    int64_t end = mono_ms() + ms;
    uint8_t buf[16384];
    int i, j;

    while ((rd[0] < total || rd[1] < total) && mono_ms() < end) {
        struct pollfd f[2];
        int wait = 50;

        for (i = 0; i < 2; i++) {
            unsigned want = TRANSPORT_READ |
                            (wr[i] < total ? TRANSPORT_WRITE : 0u);
            unsigned ev = transport_poll_events(t[i], want);
            int to = transport_next_timeout(t[i], mono_ms());

            f[i].fd = transport_fd(t[i]);
            f[i].events = (short)(((ev & TRANSPORT_READ) ? POLLIN : 0) |
                                  ((ev & TRANSPORT_WRITE) ? POLLOUT : 0));
            f[i].revents = 0;
            if (to >= 0 && to < wait)
                wait = to;
        }
        poll(f, 2, wait);
        for (i = 0; i < 2; i++) {
            if (transport_next_timeout(t[i], mono_ms()) == 0)
                assert_int_equal(transport_tick(t[i], mono_ms()), CHAT_OK);
            if (f[i].revents & POLLIN) {
                ssize_t k = transport_recv(t[i], buf, sizeof(buf));

                assert_true(k > 0 || k == CHAT_EAGAIN);
                for (j = 0; j < k; j++)
                    assert_int_equal(buf[j], pattern(rd[i] + (uint64_t)j));
                if (k > 0)
                    rd[i] += (uint64_t)k;
            }
            if ((f[i].revents & POLLOUT) && wr[i] < total) {
                size_t want = (size_t)MIN(sizeof(buf), total - wr[i]);
                ssize_t k;

                for (j = 0; j < (int)want; j++)
                    buf[j] = pattern(wr[i] + (uint64_t)j);
                k = transport_send(t[i], buf, want);
                assert_true(k > 0 || k == CHAT_EAGAIN);
                if (k > 0)
                    wr[i] += (uint64_t)k;
            }
        }
    }
    assert_int_equal(rd[0], total);
    assert_int_equal(rd[1], total);
}

/* A bulk transfer (1 MiB each way through pump_both, which writes 16 KiB
 * at a time) leaves in runs of datagrams, one call each (doc/UDP.md
 * section 8.4), and arrives in runs: far fewer calls than datagrams.
 * Only where the kernel has segmentation offload; elsewhere every
 * datagram is a call, which is checked too. */
static void
assert_bulk_in_runs(const struct transport *t)
{
    unsigned long long dout = 0, sends = 0, din = 0, reads = 0;
    int v = 0, fd = socket(AF_INET, SOCK_DGRAM, 0);
    socklen_t len = sizeof(v);
    bool gso;
    char desc[256];
    const char *p;

    assert_true(fd >= 0);
    gso = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
    close(fd);
    transport_describe(t, desc, sizeof(desc));
    p = strstr(desc, "retransmitted, ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "retransmitted, %llu datagrams sent in %llu "
                               "calls, %llu received in %llu",
                            &dout, &sends, &din, &reads),
                     4);
    /* 1 MiB is at least 898 datagrams of 1168 payload bytes each way */
    assert_true(dout >= 898);
    assert_true(din >= 898);
    if (gso) {
        assert_true(sends * 4 < dout);
        assert_true(reads * 4 < din);
    } else {
        assert_true(sends == dout);
    }
}

static void
transport_roundtrip(const char *url)
{
    struct pair p;
    char desc[256];
    uint8_t buf[64];
    ssize_t k;
    int i;

    pair_open(&p, url);
    assert_int_equal(transport_udp_sessions(p.l), 1);
    /* the session has its own socket, bound where the listener is */
    assert_int_not_equal(transport_fd(p.s), transport_fd(p.l));
    assert_int_equal(addr_port(transport_local(p.s)),
                     addr_port(transport_local(p.l)));
    pump_both(p.c, p.s, 1 << 20, 10000);
    transport_describe(p.c, desc, sizeof(desc));
    assert_non_null(strstr(desc, "udp "));
    assert_non_null(strstr(desc, " rtt "));
    assert_bulk_in_runs(p.c);
    assert_bulk_in_runs(p.s);
    /* orderly close: the reader gets the end after the data */
    assert_int_equal(transport_send(p.c, "bye", 3), 3);
    transport_shutdown(p.c);
    for (i = 0, k = CHAT_EAGAIN; i < 200 && k == CHAT_EAGAIN; i++) {
        struct pollfd f = {.fd = transport_fd(p.s), .events = POLLIN};

        poll(&f, 1, 10);
        k = transport_recv(p.s, buf, sizeof(buf));
    }
    assert_int_equal(k, 3);
    for (i = 0, k = CHAT_EAGAIN; i < 200 && k == CHAT_EAGAIN; i++) {
        struct pollfd f = {.fd = transport_fd(p.s), .events = POLLIN};

        poll(&f, 1, 10);
        k = transport_recv(p.s, buf, sizeof(buf));
    }
    assert_int_equal(k, CHAT_ECLOSED);
    pair_close(&p);
}

static void
test_transport_udp_roundtrip_ipv4(void **state)
{
    (void)state;
    transport_roundtrip("udp://127.0.0.1:0");
}

static void
test_transport_udp_roundtrip_ipv6(void **state)
{
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};

    (void)state;
    a.sin6_addr = in6addr_loopback;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (fd >= 0)
            close(fd);
        skip(); /* no IPv6 loopback here */
    }
    close(fd);
    transport_roundtrip("udp://[::1]:0");
}

/* A small buffer read in small pieces: bytes a datagram released beyond
 * the caller's buffer are not stranded when the socket queue is empty. */
static void
test_transport_udp_small_reads_not_stranded(void **state)
{
    struct pair p;
    uint8_t src[5000], buf[7];
    size_t got = 0, i;
    int spins;

    (void)state;
    for (i = 0; i < sizeof(src); i++)
        src[i] = pattern(i);
    pair_open(&p, "udp://127.0.0.1:0");
    assert_int_equal(transport_send(p.c, src, sizeof(src)), sizeof(src));
    for (spins = 0; spins < 2000 && got < sizeof(src); spins++) {
        struct pollfd f = {.fd = transport_fd(p.s), .events = POLLIN};
        ssize_t k;

        /* wait only on readiness, as a level-triggered loop does */
        if (poll(&f, 1, 1000) <= 0)
            break;
        k = transport_recv(p.s, buf, sizeof(buf));
        if (k == CHAT_EAGAIN)
            continue;
        assert_true(k > 0);
        assert_memory_equal(buf, src + got, (size_t)k);
        got += (size_t)k;
    }
    assert_int_equal(got, sizeof(src));
    pair_close(&p);
}

static void
test_transport_udp_session_limit(void **state)
{
    struct pair p;
    struct transport *c2 = NULL, *s2 = NULL;
    char why[256] = "";
    int rc;
    int64_t end;

    (void)state;
    pair_open(&p, "udp://127.0.0.1:0");
    transport_udp_set_max_sessions(p.l, 1);
    rc = transport_find("udp")->connect(transport_local(p.l), &c2);
    assert_int_equal(rc, CHAT_OK);
    for (end = mono_ms() + 2000, rc = CHAT_EAGAIN;
         rc == CHAT_EAGAIN && mono_ms() < end;) {
        struct pollfd f = {.fd = transport_fd(c2), .events = POLLIN};

        poll(&f, 1, 10);
        assert_int_equal(transport_accept(p.l, &s2), CHAT_EAGAIN);
        transport_tick(c2, mono_ms());
        rc = transport_find("udp")->connect_done(c2);
    }
    /* refused with an RST, and the listener made nothing */
    assert_int_equal(rc, CHAT_ESYS);
    assert_int_equal(errno, ECONNREFUSED);
    assert_int_equal(transport_udp_sessions(p.l), 1);
    transport_close(c2);
    (void)why;
    pair_close(&p);
}

static void
test_transport_udp_second_server_refused(void **state)
{
    struct transport *l = listen_one("udp://127.0.0.1:0"), *l2[1];
    char url[128], why[256] = "";
    size_t n = 0;

    (void)state;
    transport_format_url(l, url, sizeof(url));
    /* SO_REUSEPORT must not let a second server share the port */
    assert_int_not_equal(transport_listen_url(url, 0, l2, 1, &n, why,
                                              sizeof(why)),
                         CHAT_OK);
    assert_int_equal(n, 0);
    transport_close(l);
}

static void
test_transport_udp_connect_refused(void **state)
{
    struct transport *l = listen_one("udp://127.0.0.1:0"), *c = NULL;
    char url[128], why[256] = "";
    int64_t t0;

    (void)state;
    transport_format_url(l, url, sizeof(url));
    transport_close(l); /* nobody there now: ICMP port unreachable */
    t0 = mono_ms();
    assert_int_not_equal(transport_connect_url(url, 0, 3000, &c, why,
                                               sizeof(why)),
                         CHAT_OK);
    assert_null(c);
    assert_true(mono_ms() - t0 < 2000);
    assert_non_null(strstr(why, "refused"));
}

static void
test_transport_udp_close_seen_by_peer(void **state)
{
    struct pair p;
    uint8_t buf[16];
    ssize_t k = CHAT_EAGAIN;
    int i;

    (void)state;
    pair_open(&p, "udp://127.0.0.1:0");
    /* the server end goes away: the client learns it, not by timeout */
    transport_close(p.s);
    p.s = NULL;
    for (i = 0; i < 300 && k == CHAT_EAGAIN; i++) {
        struct pollfd f = {.fd = transport_fd(p.c), .events = POLLIN};

        poll(&f, 1, 10);
        k = transport_recv(p.c, buf, sizeof(buf));
    }
    assert_int_equal(k, CHAT_ECLOSED);
    assert_int_equal(transport_udp_sessions(p.l), 0);
    transport_close(p.c);
    transport_close(p.l);
}

/* A server session closed with most of its output unsent: the listener
 * delivers the rest from the listening socket, as the kernel does for TCP
 * after close(). */
static void
test_transport_udp_close_lingers_in_listener(void **state)
{
    struct pair p;
    static uint8_t src[200000];
    uint8_t buf[16384];
    size_t got = 0, i, sent = 0;
    int spins;
    ssize_t k = 0;
    char desc[256];

    (void)state;
    for (i = 0; i < sizeof(src); i++)
        src[i] = pattern(i);
    pair_open(&p, "udp://127.0.0.1:0");
    while (sent < sizeof(src)) {
        k = transport_send(p.s, src + sent, sizeof(src) - sent);
        if (k <= 0)
            break;
        sent += (size_t)k;
    }
    assert_int_equal(sent, sizeof(src));
    transport_shutdown(p.s);
    transport_close(p.s);
    p.s = NULL;
    transport_describe(p.l, desc, sizeof(desc));
    assert_non_null(strstr(desc, "0 sessions (1 closing)"));
    for (spins = 0; spins < 5000 && k != CHAT_ECLOSED; spins++) {
        struct pollfd f[2] = {{.fd = transport_fd(p.c), .events = POLLIN},
                              {.fd = transport_fd(p.l), .events = POLLIN}};
        int to = transport_next_timeout(p.l, mono_ms());
        struct transport *none = NULL;

        poll(f, 2, to >= 0 && to < 50 ? to : 50);
        if (f[1].revents)
            assert_int_equal(transport_accept(p.l, &none), CHAT_EAGAIN);
        if (transport_next_timeout(p.l, mono_ms()) == 0)
            transport_tick(p.l, mono_ms());
        if (transport_next_timeout(p.c, mono_ms()) == 0)
            transport_tick(p.c, mono_ms());
        if (!(f[0].revents & POLLIN))
            continue;
        k = transport_recv(p.c, buf, sizeof(buf));
        if (k > 0) {
            assert_memory_equal(buf, src + got, (size_t)k);
            got += (size_t)k;
        }
    }
    assert_int_equal(got, sizeof(src));
    assert_int_equal(k, CHAT_ECLOSED);
    /* the client's ack of the FIN ends the lingering */
    for (spins = 0; spins < 100; spins++) {
        struct pollfd f = {.fd = transport_fd(p.l), .events = POLLIN};
        struct transport *none = NULL;

        transport_describe(p.l, desc, sizeof(desc));
        if (strstr(desc, "(0 closing)"))
            break;
        poll(&f, 1, 10);
        transport_accept(p.l, &none);
    }
    assert_non_null(strstr(desc, "(0 closing)"));
    transport_close(p.c);
    transport_close(p.l);
}

/* Let t (a listener or a session) take what arrived for it. */
static void
drive(struct transport *t, bool listener)
{
    struct transport *none = NULL;
    uint8_t buf[64];
    struct pollfd f = {.fd = transport_fd(t), .events = POLLIN};

    poll(&f, 1, 100);
    if (listener)
        assert_int_equal(transport_accept(t, &none), CHAT_EAGAIN);
    else
        assert_int_equal(transport_recv(t, buf, sizeof(buf)), CHAT_EAGAIN);
}

/* Handshake by hand from a raw socket: INIT, COOKIE, ECHO with cid; the
 * ECHO is left in echo[UDP_HDR_LEN + UDP_COOKIE_LEN] to send again. */
static void
raw_handshake(int fd, struct transport *t, bool listener, uint32_t cid,
              uint8_t *echo)
{
    uint8_t d[UDP_DGRAM_MAX], r[UDP_DGRAM_MAX + 8];
    size_t len;
    ssize_t got;

    len = make_dgram(d, UDP_T_INIT, cid, 0, UDP_INIT_LEN - UDP_HDR_LEN);
    assert_int_equal(send(fd, d, len, 0), (ssize_t)len);
    drive(t, listener);
    got = recv(fd, r, sizeof(r), 0);
    assert_int_equal(got, UDP_HDR_LEN + UDP_NONCE_LEN + UDP_COOKIE_LEN);
    len = make_dgram(echo, UDP_T_ECHO, cid, 0, UDP_COOKIE_LEN);
    memcpy(echo + UDP_HDR_LEN, r + UDP_HDR_LEN + UDP_NONCE_LEN,
           UDP_COOKIE_LEN);
    assert_int_equal(send(fd, echo, len, 0), (ssize_t)len);
}

/* A client restarted on the same address and port: the kernel gives its
 * INIT and ECHO to the old session's socket, which answers with a COOKIE
 * and, on a valid ECHO, ends, so that the retried ECHO reaches the
 * listener (two connected sockets on one 4-tuple would split the
 * datagrams between them). */
static void
test_transport_udp_new_connection_supersedes(void **state)
{
    struct transport *l = listen_one("udp://127.0.0.1:0"), *s1 = NULL;
    struct transport *s2 = NULL;
    uint8_t echo[UDP_HDR_LEN + UDP_COOKIE_LEN], r[UDP_DGRAM_MAX + 8];
    uint8_t buf[16];
    struct udp_hdr h;
    int fd = raw_peer(l), i;

    (void)state;
    raw_handshake(fd, l, true, 1111, echo);
    for (i = 0; i < 100 && !s1; i++) {
        struct pollfd f = {.fd = transport_fd(l), .events = POLLIN};

        poll(&f, 1, 10);
        transport_accept(l, &s1);
    }
    assert_non_null(s1);
    assert_int_equal(recv(fd, r, sizeof(r), 0), UDP_HDR_LEN);
    assert_int_equal(udp_hdr_parse(r, UDP_HDR_LEN, &h), CHAT_OK);
    assert_int_equal(h.type, UDP_T_ACCEPT);
    /* the same address and port, a new id: the old session answers */
    raw_handshake(fd, s1, false, 2222, echo);
    drive(s1, false);
    assert_int_equal(transport_next_timeout(s1, mono_ms()), 0);
    assert_int_equal(transport_tick(s1, mono_ms()), CHAT_ECLOSED);
    assert_int_equal(transport_recv(s1, buf, sizeof(buf)), CHAT_ESYS);
    assert_int_equal(errno, ECONNRESET);
    assert_int_equal(transport_accept(l, &s2), CHAT_EAGAIN);
    transport_close(s1);
    /* the ECHO again, as the client's timer sends it: now a session */
    assert_int_equal(send(fd, echo, sizeof(echo), 0), (ssize_t)sizeof(echo));
    for (i = 0; i < 100 && !s2; i++) {
        struct pollfd f = {.fd = transport_fd(l), .events = POLLIN};

        poll(&f, 1, 10);
        transport_accept(l, &s2);
    }
    assert_non_null(s2);
    assert_int_equal(transport_udp_sessions(l), 1);
    assert_int_equal(recv(fd, r, sizeof(r), 0), UDP_HDR_LEN);
    assert_int_equal(udp_hdr_parse(r, UDP_HDR_LEN, &h), CHAT_OK);
    assert_int_equal(h.type, UDP_T_ACCEPT);
    assert_int_equal(h.cid, 2222);
    transport_close(s2);
    transport_close(l);
    close(fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_rel_header_layout),
        cmocka_unit_test(test_udp_rel_rejects_malformed),
        cmocka_unit_test(test_udp_rel_input_ignores_junk),
        cmocka_unit_test(test_udp_rel_cookie),
        cmocka_unit_test(test_udp_rel_listener_is_stateless_and_small),
        cmocka_unit_test(test_udp_rel_handshake_under_loss),
        cmocka_unit_test(test_udp_rel_handshake_gives_up),
        cmocka_unit_test(test_udp_rel_refused),
        cmocka_unit_test(test_udp_rel_in_order_delivery),
        cmocka_unit_test(test_udp_rel_tail_loss_probe),
        cmocka_unit_test(test_udp_rel_retransmit_after_rto),
        cmocka_unit_test(test_udp_rel_backoff_doubles),
        cmocka_unit_test(test_udp_rel_duplicate_ignored),
        cmocka_unit_test(test_udp_rel_out_of_order_reassembled),
        cmocka_unit_test(test_udp_rel_sack_fast_retransmit),
        cmocka_unit_test(test_udp_rel_send_buffer_full),
        cmocka_unit_test(test_udp_rel_receiver_window_respected),
        cmocka_unit_test(test_udp_rel_window_update_lost),
        cmocka_unit_test(test_udp_rel_rtt_converges),
        cmocka_unit_test(test_udp_rel_idle_timeout_dead),
        cmocka_unit_test(test_udp_rel_keepalive),
        cmocka_unit_test(test_udp_rel_keepalive_survives_loss),
        cmocka_unit_test(test_udp_rel_fin_after_data),
        cmocka_unit_test(test_udp_rel_end_waits_for_our_fin),
        cmocka_unit_test(test_udp_rel_window_of_packets_full),
        cmocka_unit_test(test_udp_rel_rst),
        cmocka_unit_test(test_udp_rel_seq_wraps),
        cmocka_unit_test(test_udp_rel_lossy_pipe),
        cmocka_unit_test(test_transport_udp_kernel_prefers_connected),
        cmocka_unit_test(test_transport_udp_no_state_before_echo),
        cmocka_unit_test(test_transport_udp_roundtrip_ipv4),
        cmocka_unit_test(test_transport_udp_roundtrip_ipv6),
        cmocka_unit_test(test_transport_udp_small_reads_not_stranded),
        cmocka_unit_test(test_transport_udp_session_limit),
        cmocka_unit_test(test_transport_udp_second_server_refused),
        cmocka_unit_test(test_transport_udp_connect_refused),
        cmocka_unit_test(test_transport_udp_close_seen_by_peer),
        cmocka_unit_test(test_transport_udp_close_lingers_in_listener),
        cmocka_unit_test(test_transport_udp_new_connection_supersedes),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
