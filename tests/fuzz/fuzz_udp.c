/* fuzz_udp.c - libFuzzer target for the UDP datagram layer
 * (common/udp_rel.c): the header codec, the stateless listener and the
 * reliability state machine on both ends.
 *
 * udp_hdr_parse() runs on the whole input; when it accepts, udp_hdr_write()
 * must give back the same 32 bytes (as for every datagram below).
 *
 * Then a client udp_rel (cid 0x01020304, nonce "fuzznonc", isn from byte 0),
 * a listener (fixed cookie key, peer and clock) and, once the listener
 * accepts the client's ECHO, a server udp_rel talk over a harness network
 * under a fake clock (starting at 1e12 us). Byte 0 picks the parameters
 * (bit 0: small buffers, 4 KiB send / 2 KiB receive; bits 1-2: isn
 * 0 / 0xfffffff0 / 0x7ffffff0 / 0xffffffff to cross the wrap). The rest is
 * records, op byte first (op & 0x0f):
 *   0, 1  inject a datagram (2-byte length & 0x7ff, then bytes) into the
 *         server (the listener before it exists) / the client
 *   2, 3  take the next datagram the client / server sends: bits 4-5 say
 *         deliver, drop, deliver twice, or deliver with byte [next] XOR'ed
 *         by the byte after (a corrupted copy, then the real one)
 *   4     advance the clock (next byte: x 1 ms, or x 100 ms when bit 4 of
 *         op is set) and run both timers
 *   5, 6  the client / server writes next 2 bytes' worth of a known stream
 *   7, 8  the server / client reads up to next 2 bytes' worth
 *   9, 10 close the client / server; 11, 12 abort it; 13 peer_gone client
 * Checks: whatever the listener is given, it answers no more than it got
 * and only ACCEPTs an ECHO whose cookie the harness recomputes as genuine
 * and fresh (a forged cookie never opens a connection); every datagram a
 * side sends parses and carries its cid; readable bytes stay within the
 * receive buffer, bytes read never exceed the payload bytes that side
 * accepted nor its bytes_received, and the stream read is, packet by packet
 * from the peer's isn, made of the payloads that arrived for those sequence
 * numbers (nothing after a FIN); udp_rel_write never takes more than
 * offered nor than udp_rel_writable said; timeouts are >= -1; and
 * udp_rel_free leaves no leak.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <glib.h>
#include <sodium.h>

#include "err.h"
#include "udp_rel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define FUZZ_CID 0x01020304u
#define T0_US INT64_C(1000000000000)
#define MAX_OPS 4096
#define READ_MAX (1u << 20) /* stream bytes kept for the content check */

static const uint8_t cookie_key[UDP_COOKIE_KEY_LEN] =
    "sockchat fuzz cookie key 0123456";
static const uint8_t peer_addr[18] = {10, 0, 0, 1, 0x1b, 0x1e, 'f', 'u', 'z',
                                      'z', 'p', 'e', 'e', 'r', 0, 0, 0, 0};
static const uint8_t nonce[UDP_NONCE_LEN] = {'f', 'u', 'z', 'z',
                                             'n', 'o', 'n', 'c'};

/* What one receiving side got: per sequence number, the payload of the
 * first datagram accepted with it (ambiguous when another differed). */
struct seen {
    GHashTable *pkts; /* seq -> GBytes (a FIN: empty, fin set below) */
    GHashTable *fins; /* seq -> 1 */
    GHashTable *amb;  /* seq -> 1: two different payloads arrived */
    uint64_t accepted_bytes;
    GByteArray *read; /* the stream read so far (up to READ_MAX) */
    uint64_t total_read;
    bool read_cut;
    uint32_t start; /* first seq of the peer's stream */
    bool start_known;
};

struct side {
    struct udp_rel *r;
    struct seen in;
    uint64_t wrote; /* stream bytes taken by udp_rel_write */
    size_t rcvbuf, sndbuf;
};

static void
seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    s->pkts = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                    (GDestroyNotify)g_bytes_unref);
    s->fins = g_hash_table_new(g_direct_hash, g_direct_equal);
    s->amb = g_hash_table_new(g_direct_hash, g_direct_equal);
    s->read = g_byte_array_new();
}

static void
seen_free(struct seen *s)
{
    g_hash_table_destroy(s->pkts);
    g_hash_table_destroy(s->fins);
    g_hash_table_destroy(s->amb);
    g_byte_array_unref(s->read);
}

static gpointer
key_of(uint32_t seq)
{
    /* seq + 1 so that seq 0 is not NULL; 0xffffffff wraps to 0, so keep
     * it apart with a 64-bit key where pointers allow. */
    return GSIZE_TO_POINTER((gsize)seq + 1);
}

/* The stream read must be the payloads of consecutive seqs from start. */
static void
seen_verify(const struct seen *s)
{
    size_t pos = 0;
    uint32_t seq = s->start;

    if (!s->start_known)
        return;
    while (pos < s->read->len) {
        GBytes *b;
        const uint8_t *p;
        gsize n;

        if (g_hash_table_contains(s->amb, key_of(seq)))
            return; /* cannot tell which one was kept */
        b = g_hash_table_lookup(s->pkts, key_of(seq));
        if (b == NULL) {
            fprintf(stderr, "read %u bytes at offset %zu with no packet "
                            "for seq %u\n", s->read->len, pos, seq);
            abort();
        }
        if (g_hash_table_contains(s->fins, key_of(seq))) {
            fprintf(stderr, "bytes read after the FIN (seq %u)\n", seq);
            abort();
        }
        p = g_bytes_get_data(b, &n);
        if (n > s->read->len - pos)
            n = s->read->len - pos;
        if (n > 0 && memcmp(s->read->data + pos, p, n) != 0) {
            fprintf(stderr, "bytes read at offset %zu differ from seq %u\n",
                    pos, seq);
            abort();
        }
        pos += n;
        seq++;
    }
}

static void
check_hdr_roundtrip(const uint8_t *d, size_t n)
{
    struct udp_hdr h;
    uint8_t back[UDP_HDR_LEN];

    if (udp_hdr_parse(d, n, &h) != CHAT_OK)
        return; /* *h is unspecified then */
    CHECK(n >= UDP_HDR_LEN && n <= UDP_DGRAM_MAX);
    CHECK(h.len == n - UDP_HDR_LEN && h.version == UDP_VERSION);
    CHECK(h.type >= UDP_T_INIT && h.type <= UDP_T_RST);
    udp_hdr_write(back, &h);
    CHECK(memcmp(back, d, UDP_HDR_LEN) == 0);
}

struct net {
    struct udp_rel_params prm;
    struct side cli, srv;
    int64_t now;
};

static void
check_side(struct side *s, int64_t now)
{
    struct udp_rel_stats st;

    if (s->r == NULL)
        return;
    udp_rel_get_stats(s->r, &st);
    CHECK(udp_rel_readable(s->r) <= s->rcvbuf);
    CHECK(s->in.total_read + udp_rel_readable(s->r) <= st.bytes_received);
    if (st.bytes_received > s->in.accepted_bytes) {
        fprintf(stderr, "bytes_received %llu over the %llu payload bytes "
                        "accepted\n", (unsigned long long)st.bytes_received,
                (unsigned long long)s->in.accepted_bytes);
        abort();
    }
    CHECK(st.bytes_sent <= s->wrote);
    CHECK(udp_rel_writable(s->r) <= s->sndbuf);
    CHECK(udp_rel_next_timeout(s->r, now) >= -1);
    CHECK(udp_rel_state_name(udp_rel_state(s->r)) != NULL);
    CHECK(udp_rel_cid(s->r) == FUZZ_CID);
}

/* Give datagram d to side s (a udp_rel); track what it accepted. */
static void
rel_give(struct side *s, int64_t now, const uint8_t *d, size_t n)
{
    struct udp_hdr h;
    enum udp_rel_state before = udp_rel_state(s->r);
    int rc, hrc;

    hrc = udp_hdr_parse(d, n, &h);
    rc = udp_rel_input(s->r, now, d, n);
    CHECK(rc == CHAT_OK || rc == CHAT_EPROTO);
    if (hrc != CHAT_OK || h.cid != FUZZ_CID) {
        CHECK(rc == CHAT_EPROTO);
        return;
    }
    if (rc != CHAT_OK)
        return;
    /* The client learns the server's first seq from its ACCEPT. */
    if (before == UDP_REL_ECHO_SENT && udp_rel_state(s->r) == UDP_REL_OPEN &&
        h.type == UDP_T_ACCEPT) {
        s->in.start = h.seq;
        s->in.start_known = true;
    }
    if ((before == UDP_REL_OPEN || before == UDP_REL_CLOSED) &&
        (h.type == UDP_T_DATA || h.type == UDP_T_FIN)) {
        gpointer k = key_of(h.seq);
        GBytes *old = g_hash_table_lookup(s->in.pkts, k);
        bool fin = h.type == UDP_T_FIN;

        s->in.accepted_bytes += h.len;
        if (old == NULL) {
            g_hash_table_insert(s->in.pkts, k,
                                g_bytes_new(d + UDP_HDR_LEN, h.len));
            if (fin)
                g_hash_table_add(s->in.fins, k);
        } else {
            gsize on;
            const uint8_t *op = g_bytes_get_data(old, &on);

            if (on != h.len || (on > 0 && memcmp(op, d + UDP_HDR_LEN, on) != 0) ||
                fin != g_hash_table_contains(s->in.fins, k))
                g_hash_table_add(s->in.amb, k);
        }
    }
}

/* The listener's stateless answer; a server side is made on ACCEPT. */
static void
listen_give(struct net *net, const uint8_t *d, size_t n)
{
    uint8_t reply[UDP_DGRAM_MAX];
    struct udp_listen_result res;
    uint32_t now_s = (uint32_t)(net->now / 1000000);
    struct udp_hdr h;
    int rc;

    memset(&res, 0x5a, sizeof(res));
    rc = udp_listen_input(cookie_key, now_s, peer_addr, sizeof(peer_addr), d,
                          n, reply, &res);
    CHECK(rc == CHAT_OK || rc == CHAT_EPROTO || rc == CHAT_ECRYPTO ||
          rc == CHAT_ERANGE);
    if (res.reply_len > n) {
        fprintf(stderr, "listener answers %zu bytes to %zu\n", res.reply_len,
                n);
        abort();
    }
    if (rc != CHAT_OK || res.verdict == UDP_LISTEN_DROP) {
        CHECK(res.verdict == UDP_LISTEN_DROP && res.reply_len == 0);
        return;
    }
    CHECK(udp_hdr_parse(d, n, &h) == CHAT_OK);
    if (res.reply_len > 0) {
        struct udp_hdr rh;

        CHECK(udp_hdr_parse(reply, res.reply_len, &rh) == CHAT_OK);
        CHECK(rh.cid == h.cid);
    }
    switch (res.verdict) {
    case UDP_LISTEN_REPLY:
        CHECK(h.type == UDP_T_INIT && res.reply_len > 0);
        CHECK(memcmp(reply + UDP_HDR_LEN, d + UDP_HDR_LEN, UDP_NONCE_LEN) == 0);
        /* Deliver the COOKIE: the client ignores any that is not its own. */
        if (h.cid == FUZZ_CID && net->cli.r != NULL)
            rel_give(&net->cli, net->now, reply, res.reply_len);
        break;
    case UDP_LISTEN_ACCEPT: {
        uint8_t want[UDP_COOKIE_LEN];
        uint32_t ts;

        /* Recompute the cookie: only one we made, and fresh, may open. */
        CHECK(h.type == UDP_T_ECHO && h.len == UDP_COOKIE_LEN);
        ts = (uint32_t)d[UDP_HDR_LEN] << 24 | (uint32_t)d[UDP_HDR_LEN + 1] << 16 |
             (uint32_t)d[UDP_HDR_LEN + 2] << 8 | d[UDP_HDR_LEN + 3];
        udp_cookie_make(cookie_key, ts, peer_addr, sizeof(peer_addr), h.cid,
                        want);
        if (memcmp(want, d + UDP_HDR_LEN, UDP_COOKIE_LEN) != 0 ||
            now_s - ts > UDP_COOKIE_LIFE_S) {
            fprintf(stderr, "listener accepted a forged or stale cookie\n");
            abort();
        }
        CHECK(res.cid == h.cid && res.peer_isn == h.seq &&
              res.peer_wnd == h.wnd);
        if (h.cid == FUZZ_CID && net->srv.r == NULL) {
            net->srv.r = udp_rel_new_server(&net->prm, res.cid, res.peer_isn,
                                            res.peer_wnd, net->now);
            net->srv.in.start = res.peer_isn;
            net->srv.in.start_known = true;
        }
        break;
    }
    case UDP_LISTEN_STRAY:
        CHECK(h.type == UDP_T_DATA || h.type == UDP_T_ACK ||
              h.type == UDP_T_PING || h.type == UDP_T_FIN);
        break;
    default:
        CHECK(0);
    }
}

/* A datagram arriving at the server's address. */
static void
to_server(struct net *net, const uint8_t *d, size_t n)
{
    check_hdr_roundtrip(d, n);
    if (net->srv.r != NULL)
        rel_give(&net->srv, net->now, d, n);
    /* The listener sees it too (as if the session were unknown): never
     * amplified, never a forged ACCEPT. */
    listen_give(net, d, n);
}

static void
to_client(struct net *net, const uint8_t *d, size_t n)
{
    check_hdr_roundtrip(d, n);
    rel_give(&net->cli, net->now, d, n);
}

static void
deliver(struct net *net, bool from_client, uint8_t mode, const uint8_t *arg)
{
    struct side *s = from_client ? &net->cli : &net->srv;
    uint8_t out[UDP_DGRAM_MAX];
    struct udp_hdr h;
    size_t n;

    if (s->r == NULL)
        return;
    n = udp_rel_poll_output(s->r, net->now, out);
    if (n == 0)
        return;
    CHECK(n <= UDP_DGRAM_MAX);
    CHECK(udp_hdr_parse(out, n, &h) == CHAT_OK);
    CHECK(h.cid == FUZZ_CID);
    if (h.type == UDP_T_INIT)
        CHECK(n == UDP_INIT_LEN);
    switch (mode) {
    case 1: /* lost */
        return;
    case 2: /* duplicated */
        if (from_client)
            to_server(net, out, n);
        else
            to_client(net, out, n);
        break;
    case 3: { /* a corrupted copy first */
        uint8_t bad[UDP_DGRAM_MAX];

        memcpy(bad, out, n);
        bad[arg[0] % n] ^= arg[1];
        if (from_client)
            to_server(net, bad, n);
        else
            to_client(net, bad, n);
        break;
    }
    default:
        break;
    }
    if (from_client)
        to_server(net, out, n);
    else
        to_client(net, out, n);
}

static void
do_write(struct side *s, size_t n)
{
    uint8_t buf[65536];
    size_t i, avail;
    ssize_t k;

    if (s->r == NULL)
        return;
    for (i = 0; i < n; i++)
        buf[i] = (uint8_t)((s->wrote + i) * 131 + ((s->wrote + i) >> 8));
    avail = udp_rel_writable(s->r);
    k = udp_rel_write(s->r, buf, n);
    if (k > 0) {
        CHECK((size_t)k <= n && (size_t)k <= avail);
        s->wrote += (size_t)k;
    } else {
        CHECK(k == CHAT_EAGAIN || k == CHAT_ECLOSED || n == 0);
    }
}

static void
do_read(struct side *s, size_t n)
{
    uint8_t buf[65536];
    size_t before;
    ssize_t k;

    if (s->r == NULL)
        return;
    before = udp_rel_readable(s->r);
    k = udp_rel_read(s->r, buf, n);
    if (k > 0) {
        CHECK((size_t)k <= n && (size_t)k <= before);
        s->in.total_read += (size_t)k;
        if (s->in.read->len + (size_t)k <= READ_MAX)
            g_byte_array_append(s->in.read, buf, (guint)k);
        else
            s->in.read_cut = true;
        if (!s->in.read_cut)
            seen_verify(&s->in);
    } else {
        CHECK(k == CHAT_EAGAIN || k == CHAT_ECLOSED || n == 0);
        if (k == CHAT_ECLOSED && udp_rel_eof(s->r))
            CHECK(udp_rel_readable(s->r) == 0);
    }
}

static void
side_init(struct side *s, const struct udp_rel_params *p)
{
    memset(s, 0, sizeof(*s));
    seen_init(&s->in);
    s->rcvbuf = p->rcvbuf < UDP_PAYLOAD_MAX ? UDP_PAYLOAD_MAX : p->rcvbuf;
    s->sndbuf = p->sndbuf;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_unsetenv("G_MESSAGES_DEBUG");
    CHECK(sodium_init() >= 0);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t isns[4] = {0, 0xfffffff0u, 0x7ffffff0u,
                                     0xffffffffu};
    struct net net;
    size_t i = 1, ops = 0;

    check_hdr_roundtrip(data, size);
    if (size < 1)
        return 0;
    memset(&net, 0, sizeof(net));
    udp_rel_params_default(&net.prm);
    if (data[0] & 1) {
        net.prm.sndbuf = 4096;
        net.prm.rcvbuf = 2048;
    }
    net.prm.isn = isns[(data[0] >> 1) & 3];
    net.now = T0_US;
    side_init(&net.cli, &net.prm);
    side_init(&net.srv, &net.prm);
    net.cli.r = udp_rel_new_client(&net.prm, FUZZ_CID, nonce, net.now);

    while (i < size && ops++ < MAX_OPS) {
        uint8_t op = data[i++];
        size_t len;

        switch (op & 0x0f) {
        case 0:
        case 1:
            if (size - i < 2)
                goto done;
            len = ((size_t)data[i] << 8 | data[i + 1]) & 0x7ff;
            i += 2;
            if (len > size - i)
                len = size - i;
            if ((op & 0x0f) == 0)
                to_server(&net, data + i, len);
            else
                to_client(&net, data + i, len);
            i += len;
            break;
        case 2:
        case 3: {
            static const uint8_t zero[2] = {0, 0};
            uint8_t mode = (op >> 4) & 3;
            const uint8_t *arg = zero;

            if (mode == 3) {
                if (size - i < 2)
                    goto done;
                arg = data + i;
                i += 2;
            }
            deliver(&net, (op & 0x0f) == 2, mode, arg);
            break;
        }
        case 4:
            if (i >= size)
                goto done;
            net.now += (int64_t)data[i++] * ((op & 0x10) ? 100000 : 1000);
            udp_rel_tick(net.cli.r, net.now);
            if (net.srv.r != NULL)
                udp_rel_tick(net.srv.r, net.now);
            break;
        case 5:
        case 6:
        case 7:
        case 8:
            if (size - i < 2)
                goto done;
            len = (size_t)data[i] << 8 | data[i + 1];
            i += 2;
            if ((op & 0x0f) == 5)
                do_write(&net.cli, len);
            else if ((op & 0x0f) == 6)
                do_write(&net.srv, len);
            else if ((op & 0x0f) == 7)
                do_read(&net.srv, len);
            else
                do_read(&net.cli, len);
            break;
        case 9:
            udp_rel_close(net.cli.r);
            break;
        case 10:
            if (net.srv.r != NULL)
                udp_rel_close(net.srv.r);
            break;
        case 11:
            udp_rel_abort(net.cli.r);
            break;
        case 12:
            if (net.srv.r != NULL)
                udp_rel_abort(net.srv.r);
            break;
        case 13:
            udp_rel_peer_gone(net.cli.r);
            break;
        default:
            break;
        }
        check_side(&net.cli, net.now);
        check_side(&net.srv, net.now);
    }
done:
    if (!net.cli.in.read_cut)
        seen_verify(&net.cli.in);
    if (!net.srv.in.read_cut)
        seen_verify(&net.srv.in);
    udp_rel_free(net.cli.r);
    udp_rel_free(net.srv.r);
    seen_free(&net.cli.in);
    seen_free(&net.srv.in);
    return 0;
}
