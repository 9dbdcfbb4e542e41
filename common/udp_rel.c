/* udp_rel.c - reliability over datagrams, as a pure state machine.
 *
 * doc/UDP.md is the specification; this file follows its sections. The
 * shape is TCP's, cut down to what a chat stream on a LAN needs:
 * - packets, not bytes, carry sequence numbers; each DATA packet holds one
 *   contiguous slice of the stream and is retransmitted unchanged, so the
 *   receiver reassembles by packet number;
 * - a cumulative ack plus a 64-bit selective-ack bitmap in every header;
 * - RTO from measured RTT (RFC 6298, Karn's rule, exponential backoff);
 * - loss detected from SACK evidence (three later packets arrived, fewer
 *   for a short flight: RFC 6675 and RFC 5827) or by the RTO;
 * - a byte window the receiver advertises, and an AIMD congestion window
 *   (slow start, halving once per loss episode, one packet after an RTO).
 * Nothing here reads a clock or a socket: the caller passes now_us in and
 * moves datagrams in and out.
 */
#include "udp_rel.h"

#include <string.h>

#include <glib.h>
#include <sodium.h>

#include "buf.h"
#include "err.h"

G_STATIC_ASSERT(UDP_COOKIE_KEY_LEN == crypto_auth_KEYBYTES);
G_STATIC_ASSERT(UDP_COOKIE_LEN == 4 + crypto_auth_BYTES);
G_STATIC_ASSERT(UDP_SACK_BITS < UDP_WINDOW_PKTS);
/* The ring index is seq % UDP_WINDOW_PKTS, which must survive the wrap of
 * a 32-bit sequence number. */
G_STATIC_ASSERT((UDP_WINDOW_PKTS & (UDP_WINDOW_PKTS - 1)) == 0);

#define UDP_MSS UDP_PAYLOAD_MAX
#define UDP_INIT_CWND (10 * UDP_MSS) /* RFC 6928 */
#define UDP_MIN_CWND UDP_MSS
/* RFC 5681 lets ssthresh fall to 2 packets. Here it stops at 4: on a LAN
 * random loss is far likelier than congestion, and at 2 packets a flight
 * is too small for ack evidence, so 20% loss degenerates into RTOs (the
 * lossy-pipe test runs 6x faster, with 14 timeouts instead of 249). */
#define UDP_MIN_SSTHRESH (4 * UDP_MSS)
#define UDP_DUPTHRESH 3
#define UDP_RTT_GRANULARITY_US 1000 /* G of RFC 6298 */
#define UDP_RTT_SAMPLE_MAX_US 60000000
/* A client retries INIT and ECHO at most this far apart: a lost handshake
 * datagram should cost a second, not the 10 s of a fully backed-off RTO. */
#define UDP_HS_RTO_MAX_US 1000000
/* Both sides have sent FIN and ours is not yet acked. A live peer answers
 * our retransmissions, and pings after 5 s of silence; a peer that says
 * nothing for this long after its own FIN has closed (its last ack lost
 * with it), so the connection counts as closed rather than dead. */
#define UDP_LINGER_US 10000000

static const char udp_cookie_label[] = "sockchat udp cookie v1";

/* ---- byte order --------------------------------------------------------- */

static uint16_t
load_be16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t
load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static uint64_t
load_be64(const uint8_t *p)
{
    return (uint64_t)load_be32(p) << 32 | load_be32(p + 4);
}

static void
store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
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
store_be64(uint8_t *p, uint64_t v)
{
    store_be32(p, (uint32_t)(v >> 32));
    store_be32(p + 4, (uint32_t)v);
}

/* Serial-number arithmetic (RFC 1982): sequence numbers wrap. */
static bool
seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool
seq_gt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

/* ---- header ------------------------------------------------------------- */

/* The payload length each type must carry. */
static bool
udp_len_ok(uint8_t type, size_t len)
{
    switch (type) {
    case UDP_T_INIT:
        return len >= UDP_NONCE_LEN;
    case UDP_T_COOKIE:
        return len == UDP_NONCE_LEN + UDP_COOKIE_LEN;
    case UDP_T_ECHO:
        return len == UDP_COOKIE_LEN;
    case UDP_T_DATA:
        return len >= 1 && len <= UDP_PAYLOAD_MAX;
    case UDP_T_ACCEPT:
    case UDP_T_ACK:
    case UDP_T_PING:
    case UDP_T_FIN:
    case UDP_T_RST:
        return len == 0;
    }
    return false;
}

int
udp_hdr_parse(const uint8_t *d, size_t n, struct udp_hdr *h)
{
    memset(h, 0, sizeof(*h));
    /* Bounds first: nothing below reads past d[UDP_HDR_LEN). */
    if (n < UDP_HDR_LEN || n > UDP_DGRAM_MAX)
        return CHAT_EPROTO;
    if (load_be16(d) != UDP_MAGIC || d[2] != UDP_VERSION)
        return CHAT_EPROTO;
    h->version = d[2];
    h->type = d[3];
    h->flags = load_be16(d + 4);
    h->len = load_be16(d + 6);
    h->cid = load_be32(d + 8);
    h->seq = load_be32(d + 12);
    h->ack = load_be32(d + 16);
    h->sack = load_be64(d + 20);
    h->wnd = load_be32(d + 28);
    if (h->len != n - UDP_HDR_LEN || !udp_len_ok(h->type, h->len))
        return CHAT_EPROTO;
    return CHAT_OK;
}

void
udp_hdr_write(uint8_t *out, const struct udp_hdr *h)
{
    store_be16(out, UDP_MAGIC);
    out[2] = UDP_VERSION;
    out[3] = h->type;
    store_be16(out + 4, h->flags);
    store_be16(out + 6, h->len);
    store_be32(out + 8, h->cid);
    store_be32(out + 12, h->seq);
    store_be32(out + 16, h->ack);
    store_be64(out + 20, h->sack);
    store_be32(out + 28, h->wnd);
}

/* ---- cookie and listener ------------------------------------------------ */

#define UDP_PEER_MAX 32

static void
udp_cookie_mac(const uint8_t *key, uint32_t ts, const uint8_t *peer,
               size_t peer_len, uint32_t cid, uint8_t *mac)
{
    uint8_t msg[sizeof(udp_cookie_label) + 8 + UDP_PEER_MAX];
    size_t off = sizeof(udp_cookie_label);

    memcpy(msg, udp_cookie_label, sizeof(udp_cookie_label));
    store_be32(msg + off, ts);
    store_be32(msg + off + 4, cid);
    memcpy(msg + off + 8, peer, peer_len);
    crypto_auth(mac, msg, off + 8 + peer_len, key);
    sodium_memzero(msg, sizeof(msg));
}

void
udp_cookie_make(const uint8_t *key, uint32_t now_s, const uint8_t *peer,
                size_t peer_len, uint32_t cid, uint8_t *out)
{
    if (peer_len > UDP_PEER_MAX)
        peer_len = UDP_PEER_MAX; /* callers never pass more */
    store_be32(out, now_s);
    udp_cookie_mac(key, now_s, peer, peer_len, cid, out + 4);
}

int
udp_cookie_check(const uint8_t *key, uint32_t now_s, const uint8_t *peer,
                 size_t peer_len, uint32_t cid, const uint8_t *cookie)
{
    uint8_t mac[crypto_auth_BYTES];
    uint32_t ts = load_be32(cookie);
    int rc;

    if (peer_len > UDP_PEER_MAX)
        return CHAT_ECRYPTO;
    udp_cookie_mac(key, ts, peer, peer_len, cid, mac);
    rc = sodium_memcmp(mac, cookie + 4, sizeof(mac)) == 0 ? CHAT_OK
                                                          : CHAT_ECRYPTO;
    sodium_memzero(mac, sizeof(mac));
    if (rc != CHAT_OK)
        return rc;
    /* Unsigned difference: a time from the future is a huge age. */
    if (now_s - ts > UDP_COOKIE_LIFE_S)
        return CHAT_ERANGE;
    return CHAT_OK;
}

static size_t
udp_build_rst(uint32_t cid, uint8_t *out)
{
    struct udp_hdr h;

    memset(&h, 0, sizeof(h));
    h.type = UDP_T_RST;
    h.cid = cid;
    udp_hdr_write(out, &h);
    return UDP_HDR_LEN;
}

int
udp_listen_input(const uint8_t *key, uint32_t now_s, const uint8_t *peer,
                 size_t peer_len, const uint8_t *d, size_t n, uint8_t *reply,
                 struct udp_listen_result *res)
{
    const uint8_t *payload = d + UDP_HDR_LEN;
    struct udp_hdr h, c;
    int rc;

    memset(res, 0, sizeof(*res));
    res->verdict = UDP_LISTEN_DROP;
    rc = udp_hdr_parse(d, n, &h);
    if (rc != CHAT_OK)
        return rc;
    switch (h.type) {
    case UDP_T_INIT:
        /* Padded to the largest datagram: the COOKIE is far smaller, so
         * a spoofed INIT cannot be amplified, and the path is known to
         * carry full-size datagrams. */
        if (n < UDP_INIT_LEN)
            return CHAT_EPROTO;
        memset(&c, 0, sizeof(c));
        c.type = UDP_T_COOKIE;
        c.len = UDP_NONCE_LEN + UDP_COOKIE_LEN;
        c.cid = h.cid;
        udp_hdr_write(reply, &c);
        memcpy(reply + UDP_HDR_LEN, payload, UDP_NONCE_LEN);
        udp_cookie_make(key, now_s, peer, peer_len, h.cid,
                        reply + UDP_HDR_LEN + UDP_NONCE_LEN);
        res->reply_len = UDP_HDR_LEN + c.len;
        res->verdict = UDP_LISTEN_REPLY;
        break;
    case UDP_T_ECHO:
        rc = udp_cookie_check(key, now_s, peer, peer_len, h.cid, payload);
        if (rc != CHAT_OK)
            return rc;
        res->verdict = UDP_LISTEN_ACCEPT;
        res->cid = h.cid;
        res->peer_isn = h.seq;
        res->peer_wnd = h.wnd;
        res->reply_len = udp_build_rst(h.cid, reply);
        break;
    case UDP_T_DATA:
    case UDP_T_ACK:
    case UDP_T_PING:
    case UDP_T_FIN:
        res->verdict = UDP_LISTEN_STRAY;
        res->reply_len = udp_build_rst(h.cid, reply);
        break;
    default: /* COOKIE, ACCEPT, RST: never answered */
        return CHAT_OK;
    }
    /* The anti-amplification rule, enforced whatever the code above does. */
    if (res->reply_len > n) {
        res->reply_len = 0;
        res->verdict = UDP_LISTEN_DROP;
    }
    return CHAT_OK;
}

/* ---- the connection ----------------------------------------------------- */

struct snd_pkt {
    uint64_t off;    /* stream offset of the first byte */
    uint64_t order;  /* transmission counter at the last transmission */
    int64_t sent_us; /* time of the last transmission */
    uint16_t len;
    uint8_t xmits; /* transmissions so far (saturates) */
    bool fin;
    bool sacked;    /* the peer has it (selective ack) */
    bool lost;      /* deemed lost: waits for retransmission */
    bool rtx_done;  /* retransmitted since the last RTO: only the RTO may
                     * send it again, not more ack evidence */
    bool fast;      /* lost on ack evidence (for stats) */
};

struct rcv_slot {
    uint8_t *data; /* payload, NULL when len 0 */
    uint16_t len;
    bool present;
    bool fin;
};

enum rel_action {
    ACT_NONE,
    ACT_INIT,
    ACT_ECHO,
    ACT_RST,
    ACT_ACCEPT,
    ACT_RTX,
    ACT_PROBE,
    ACT_NEW,
    ACT_FIN,
    ACT_ACK,
    ACT_PING,
};

/* A loss episode lasts until everything sent before it is acked; it cuts
 * the window once. After fast retransmit the window holds still (RFC 6675);
 * after a timeout it grows again from one packet (slow start). */
enum rel_recovery {
    REC_NONE,
    REC_FAST,
    REC_RTO,
};

struct udp_rel {
    struct udp_rel_params p;
    enum udp_rel_state state;
    bool server;
    uint32_t cid;
    uint8_t nonce[UDP_NONCE_LEN];
    uint8_t cookie[UDP_COOKIE_LEN];
    int64_t born_us;

    /* handshake (client) */
    int64_t hs_due_us;
    int64_t hs_sent_us;
    uint32_t hs_rto_us;
    unsigned hs_xmits; /* of the current INIT or ECHO */
    bool accept_due;   /* server: (re)send ACCEPT */
    bool rst_due;

    /* sender */
    struct buf snd;       /* stream bytes from snd_off on */
    uint64_t snd_off;     /* stream offset of the first byte in snd */
    uint64_t snd_pkt_off; /* first byte not yet in a packet */
    uint32_t snd_una;     /* oldest unacknowledged packet */
    uint32_t snd_nxt;     /* next new packet */
    struct snd_pkt *ring; /* [snd_una, snd_nxt) at seq % UDP_WINDOW_PKTS */
    bool fin_queued, fin_sent, fin_acked;
    uint32_t peer_wnd;
    uint32_t peer_wnd_ack; /* the ack peer_wnd came with */
    uint32_t cwnd, ssthresh;
    enum rel_recovery recovery;
    uint32_t recover; /* recovery ends when snd_una reaches this */
    uint32_t dupacks;
    bool rto_armed;
    int64_t rto_due_us;
    uint32_t rto_us, srtt_us, rttvar_us;
    bool have_rtt;
    uint32_t min_rtt_us;
    uint64_t xmit_count; /* transmissions so far; orders them */
    /* RACK: the last-sent packet known delivered, and its RTT */
    uint64_t rack_order;
    uint32_t rack_rtt_us;
    bool rack_armed; /* reordering timer */
    int64_t rack_due_us;
    /* tail loss probe */
    bool pto_armed;
    int64_t pto_due_us;
    bool probe_due;
    bool probe_out;
    /* reordering: seen (the peer got a packet twice, so we retransmitted
     * too soon or the network duplicates), and how wide the window is */
    bool reordering;
    unsigned reo_mult;     /* reo window = reo_mult * srtt / 4, <= srtt */
    unsigned reo_decay;    /* loss episodes since it was widened */
    int64_t reo_bumped_us;

    /* receiver */
    struct buf rcv; /* in-order bytes for the reader */
    uint32_t rcv_nxt;
    struct rcv_slot *slots; /* [rcv_nxt, rcv_nxt + W) */
    size_t ooo_bytes;
    bool fin_known;
    uint32_t fin_seq;
    bool remote_fin;   /* the FIN has been reached in order */
    bool end_reported; /* read has returned CHAT_ECLOSED */
    bool lingering;    /* both FINs out, ours not yet acked */
    bool data_lost;    /* a reset discarded unread bytes */
    bool dup_seen;     /* a packet arrived twice since our last ack */
    uint32_t unacked;  /* in-order packets since our last ack */
    bool ack_due;
    bool ack_timer;
    int64_t ack_at_us;
    uint32_t adv_wnd; /* the window our last ack announced */

    /* liveness */
    int64_t last_rx_us;
    int64_t last_ping_us;
    bool ping_due;
    bool ping_out; /* a PING (or probe) waits for any answer */

    struct udp_rel_stats st;
};

void
udp_rel_params_default(struct udp_rel_params *p)
{
    memset(p, 0, sizeof(*p));
    p->sndbuf = 256 * 1024;
    p->rcvbuf = 256 * 1024;
    p->rto_init_us = 250000;
    p->rto_min_us = 50000;
    p->rto_max_us = 10000000;
    p->ack_delay_us = 10000;
    p->keepalive_us = 5000000;
    p->ping_retry_us = 1000000;
    p->idle_us = 30000000;
    p->isn = 0;
}

static struct udp_rel *
rel_alloc(const struct udp_rel_params *p, uint32_t cid, int64_t now)
{
    struct udp_rel *r = g_new0(struct udp_rel, 1);

    if (p)
        r->p = *p;
    else
        udp_rel_params_default(&r->p);
    /* A window smaller than one packet could never move a full one. */
    if (r->p.rcvbuf < UDP_MSS)
        r->p.rcvbuf = UDP_MSS;
    if (r->p.sndbuf < 1)
        r->p.sndbuf = 1;
    r->cid = cid;
    r->born_us = now;
    r->last_rx_us = now;
    r->last_ping_us = now - 1;
    buf_init(&r->snd, r->p.sndbuf);
    buf_init(&r->rcv, r->p.rcvbuf);
    r->ring = g_new0(struct snd_pkt, UDP_WINDOW_PKTS);
    r->slots = g_new0(struct rcv_slot, UDP_WINDOW_PKTS);
    r->snd_una = r->snd_nxt = r->p.isn;
    r->cwnd = UDP_INIT_CWND;
    r->ssthresh = UINT32_MAX;
    r->rto_us = r->p.rto_init_us;
    r->min_rtt_us = UINT32_MAX;
    r->reo_mult = 1;
    r->hs_rto_us = r->p.rto_init_us;
    r->adv_wnd = (uint32_t)MIN(r->p.rcvbuf, UINT32_MAX);
    return r;
}

struct udp_rel *
udp_rel_new_client(const struct udp_rel_params *p, uint32_t cid,
                   const uint8_t *nonce, int64_t now_us)
{
    struct udp_rel *r = rel_alloc(p, cid, now_us);

    memcpy(r->nonce, nonce, UDP_NONCE_LEN);
    r->state = UDP_REL_INIT_SENT;
    r->hs_due_us = now_us;
    return r;
}

struct udp_rel *
udp_rel_new_server(const struct udp_rel_params *p, uint32_t cid,
                   uint32_t peer_isn, uint32_t peer_wnd, int64_t now_us)
{
    struct udp_rel *r = rel_alloc(p, cid, now_us);

    r->server = true;
    r->state = UDP_REL_OPEN;
    r->rcv_nxt = peer_isn;
    r->peer_wnd = peer_wnd;
    r->peer_wnd_ack = r->snd_una;
    r->accept_due = true;
    return r;
}

static void
rel_drop_rcv(struct udp_rel *r)
{
    size_t i;

    for (i = 0; i < UDP_WINDOW_PKTS; i++) {
        g_free(r->slots[i].data);
        memset(&r->slots[i], 0, sizeof(r->slots[i]));
    }
    r->ooo_bytes = 0;
}

void
udp_rel_free(struct udp_rel *r)
{
    if (!r)
        return;
    rel_drop_rcv(r);
    g_free(r->slots);
    g_free(r->ring);
    buf_cleanup(&r->snd);
    buf_cleanup(&r->rcv);
    sodium_memzero(r->cookie, sizeof(r->cookie));
    g_free(r);
}

/* The connection is over (RESET, REFUSED, DEAD): stop every timer and give
 * the send side's memory back. Unread bytes stay until read says reset. */
static void
rel_finish(struct udp_rel *r, enum udp_rel_state s)
{
    r->state = s;
    r->rto_armed = false;
    r->rack_armed = false;
    r->pto_armed = false;
    r->probe_due = false;
    r->ack_timer = false;
    r->ack_due = false;
    r->ping_due = false;
    r->ping_out = false;
    r->accept_due = false;
    buf_cleanup(&r->snd);
    rel_drop_rcv(r);
}

static void rel_check_closed(struct udp_rel *r, int64_t now);

static struct snd_pkt *
rel_pkt(const struct udp_rel *r, uint32_t seq)
{
    return &r->ring[seq % UDP_WINDOW_PKTS];
}

static uint64_t
rel_unsent(const struct udp_rel *r)
{
    return r->snd_off + buf_len(&r->snd) - r->snd_pkt_off;
}

/* Bytes in flight that the network still holds (RFC 6675 "pipe"): sent,
 * neither acked nor sacked, not given up as lost. */
static uint64_t
rel_pipe(const struct udp_rel *r)
{
    uint64_t pipe = 0;
    uint32_t s;

    for (s = r->snd_una; s != r->snd_nxt; s++) {
        const struct snd_pkt *k = rel_pkt(r, s);

        if (!k->sacked && !k->lost)
            pipe += k->len;
    }
    return pipe;
}

/* Size of the next new DATA packet the windows allow now, 0 if none. */
static size_t
rel_new_len(const struct udp_rel *r, uint64_t pipe)
{
    uint64_t unsent = rel_unsent(r), flight, avail;
    size_t len;

    if (unsent == 0 || r->snd_nxt - r->snd_una >= UDP_WINDOW_PKTS)
        return 0;
    len = (size_t)MIN(unsent, (uint64_t)UDP_MSS);
    flight = r->snd_pkt_off - r->snd_off;
    avail = r->peer_wnd > flight ? r->peer_wnd - flight : 0;
    if (avail < len) {
        /* Wait for a useful window rather than dribble tiny packets,
         * unless nothing is in flight to bring a window update. */
        if (avail >= UDP_MSS / 2 || (flight == 0 && avail > 0))
            len = (size_t)avail;
        else
            return 0;
    }
    if (pipe > 0 && pipe + len > r->cwnd)
        return 0;
    return len;
}

/* The peer's window is closed and nothing is in flight to reopen it. */
static bool
rel_window_blocked(const struct udp_rel *r)
{
    return r->state == UDP_REL_OPEN && rel_unsent(r) > 0 &&
           r->snd_una == r->snd_nxt && rel_new_len(r, 0) == 0;
}

/* What poll_output would send now; for ACT_RTX the packet in *seq. The one
 * place that decides, so that next_timeout and poll_output agree. */
static enum rel_action
rel_next_action(const struct udp_rel *r, int64_t now, uint32_t *seq)
{
    uint64_t pipe;
    uint32_t s;

    *seq = 0;
    switch (r->state) {
    case UDP_REL_INIT_SENT:
        return now >= r->hs_due_us ? ACT_INIT : ACT_NONE;
    case UDP_REL_ECHO_SENT:
        return now >= r->hs_due_us ? ACT_ECHO : ACT_NONE;
    case UDP_REL_RESET:
        return r->rst_due ? ACT_RST : ACT_NONE;
    case UDP_REL_REFUSED:
    case UDP_REL_DEAD:
        return ACT_NONE;
    case UDP_REL_OPEN:
    case UDP_REL_CLOSED:
        break;
    }
    if (r->accept_due)
        return ACT_ACCEPT;
    if (r->state == UDP_REL_OPEN) {
        pipe = rel_pipe(r);
        if (r->probe_due && r->snd_una != r->snd_nxt)
            return ACT_PROBE;
        for (s = r->snd_una; s != r->snd_nxt; s++) {
            const struct snd_pkt *k = rel_pkt(r, s);

            if (!k->lost)
                continue;
            /* Retransmissions first, in order, within the cwnd. */
            if (pipe == 0 || pipe + k->len <= r->cwnd) {
                *seq = s;
                return ACT_RTX;
            }
            goto control;
        }
        if (rel_new_len(r, pipe) > 0)
            return ACT_NEW;
        if (r->fin_queued && !r->fin_sent && rel_unsent(r) == 0 &&
            r->snd_nxt - r->snd_una < UDP_WINDOW_PKTS)
            return ACT_FIN;
    }
control:
    if (r->ack_due || (r->ack_timer && now >= r->ack_at_us))
        return ACT_ACK;
    if (r->ping_due)
        return ACT_PING;
    return ACT_NONE;
}

/* The probe timeout (RFC 8985 section 7): two RTTs, plus the peer's
 * ack delay when a single packet is out, never later than the RTO. */
static int64_t
rel_pto(const struct udp_rel *r)
{
    int64_t pto = 2 * (int64_t)r->srtt_us;

    if (r->snd_nxt - r->snd_una == 1)
        pto += r->p.ack_delay_us;
    return MIN(MAX(pto, (int64_t)1000), (int64_t)r->rto_us);
}

static void
rel_arm_rto(struct udp_rel *r, int64_t now)
{
    if (r->snd_una == r->snd_nxt) {
        r->pto_armed = false;
        if (!r->rto_armed && rel_window_blocked(r)) {
            r->rto_armed = true;
            r->rto_due_us = now + r->rto_us;
        }
        return;
    }
    if (!r->rto_armed) {
        r->rto_armed = true;
        r->rto_due_us = now + r->rto_us;
    }
    /* Also during fast recovery: with a small window every packet of a
     * flight can be lost, and a probe is cheaper than the RTO. */
    if (!r->pto_armed && !r->probe_out && r->have_rtt &&
        r->recovery != REC_RTO) {
        r->pto_armed = true;
        r->pto_due_us = now + rel_pto(r);
    }
}

static uint64_t
rel_sack_bits(const struct udp_rel *r)
{
    uint64_t sack = 0;
    unsigned i;

    for (i = 0; i < UDP_SACK_BITS; i++) {
        uint32_t s = r->rcv_nxt + 1 + i;

        if (r->slots[s % UDP_WINDOW_PKTS].present)
            sack |= (uint64_t)1 << i;
    }
    return sack;
}

static uint32_t
rel_rcv_window(const struct udp_rel *r)
{
    size_t used = buf_len(&r->rcv);

    return used >= r->p.rcvbuf ? 0 : (uint32_t)MIN(r->p.rcvbuf - used,
                                                   UINT32_MAX);
}

/* Every header after the handshake carries our receive state; sending one
 * is acking. */
static void
rel_fill_ack(struct udp_rel *r, struct udp_hdr *h)
{
    h->flags |= UDP_F_ACK;
    if (r->dup_seen)
        h->flags |= UDP_F_DUP;
    r->dup_seen = false;
    h->ack = r->rcv_nxt;
    h->sack = rel_sack_bits(r);
    h->wnd = rel_rcv_window(r);
    r->adv_wnd = h->wnd;
    r->ack_due = false;
    r->ack_timer = false;
    r->unacked = 0;
}

static size_t
rel_put_packet(struct udp_rel *r, struct snd_pkt *k, uint32_t seq,
               uint8_t *out)
{
    struct udp_hdr h;

    memset(&h, 0, sizeof(h));
    h.type = k->fin ? UDP_T_FIN : UDP_T_DATA;
    h.cid = r->cid;
    h.seq = seq;
    h.len = k->len;
    rel_fill_ack(r, &h);
    udp_hdr_write(out, &h);
    if (k->len > 0)
        memcpy(out + UDP_HDR_LEN, buf_ptr(&r->snd) + (k->off - r->snd_off),
               k->len);
    return UDP_HDR_LEN + k->len;
}

/* Send packet seq again. */
static size_t
rel_send_again(struct udp_rel *r, uint32_t seq, int64_t now, uint8_t *out)
{
    struct snd_pkt *k = rel_pkt(r, seq);
    size_t n = rel_put_packet(r, k, seq, out);

    k->sent_us = now;
    k->order = ++r->xmit_count;
    k->lost = false;
    k->rtx_done = true;
    if (k->xmits < UINT8_MAX)
        k->xmits++;
    r->st.retransmits++;
    if (k->fast)
        r->st.fast_retransmits++;
    k->fast = false;
    rel_arm_rto(r, now);
    return n;
}

/* Send the next new packet: data, or the FIN after all data. A probe may
 * exceed cwnd by this one packet. */
static size_t
rel_send_new(struct udp_rel *r, int64_t now, uint8_t *out, bool probe)
{
    uint32_t seq = r->snd_nxt;
    struct snd_pkt *k = rel_pkt(r, seq);
    size_t n;

    memset(k, 0, sizeof(*k));
    k->off = r->snd_pkt_off;
    if (r->fin_queued && rel_unsent(r) == 0) {
        k->fin = true;
        r->fin_sent = true;
        rel_check_closed(r, now);
    } else {
        k->len = (uint16_t)rel_new_len(r, probe ? 0 : rel_pipe(r));
    }
    k->xmits = 1;
    k->order = ++r->xmit_count;
    r->snd_pkt_off += k->len;
    r->snd_nxt++;
    r->st.bytes_sent += k->len;
    n = rel_put_packet(r, k, seq, out);
    k->sent_us = now;
    rel_arm_rto(r, now);
    return n;
}

size_t
udp_rel_poll_output(struct udp_rel *r, int64_t now_us, uint8_t *out)
{
    struct udp_hdr h;
    uint32_t seq;
    size_t n = 0;

    memset(&h, 0, sizeof(h));
    h.cid = r->cid;
    switch (rel_next_action(r, now_us, &seq)) {
    case ACT_NONE:
        rel_arm_rto(r, now_us);
        return 0;
    case ACT_INIT:
    case ACT_ECHO:
        if (r->state == UDP_REL_INIT_SENT) {
            h.type = UDP_T_INIT;
            h.len = UDP_INIT_LEN - UDP_HDR_LEN;
            memset(out + UDP_HDR_LEN, 0, h.len);
            memcpy(out + UDP_HDR_LEN, r->nonce, UDP_NONCE_LEN);
        } else {
            h.type = UDP_T_ECHO;
            h.len = UDP_COOKIE_LEN;
            memcpy(out + UDP_HDR_LEN, r->cookie, UDP_COOKIE_LEN);
        }
        h.seq = r->snd_una;
        h.wnd = rel_rcv_window(r);
        udp_hdr_write(out, &h);
        n = UDP_HDR_LEN + h.len;
        r->hs_sent_us = now_us;
        r->hs_xmits++;
        r->hs_due_us = now_us + r->hs_rto_us;
        r->hs_rto_us = (uint32_t)MIN((uint64_t)r->hs_rto_us * 2,
                                     MIN(r->p.rto_max_us, UDP_HS_RTO_MAX_US));
        if (r->hs_xmits > 1)
            r->st.retransmits++;
        break;
    case ACT_RST:
        n = udp_build_rst(r->cid, out);
        r->rst_due = false;
        break;
    case ACT_ACCEPT:
        h.type = UDP_T_ACCEPT;
        h.seq = r->snd_una;
        rel_fill_ack(r, &h);
        udp_hdr_write(out, &h);
        n = UDP_HDR_LEN;
        r->accept_due = false;
        break;
    case ACT_PROBE:
        /* New data if there is any (the window, not cwnd, permitting),
         * else the last packet again: either way its ack shows what the
         * tail lost, so RACK repairs it without waiting for the RTO. */
        r->probe_due = false;
        r->probe_out = true;
        r->rto_armed = false; /* re-armed after the probe */
        if (rel_new_len(r, 0) > 0 ||
            (r->fin_queued && !r->fin_sent && rel_unsent(r) == 0 &&
             r->snd_nxt - r->snd_una < UDP_WINDOW_PKTS)) {
            n = rel_send_new(r, now_us, out, true);
            break;
        }
        seq = r->snd_nxt;
        do
            seq--;
        while (rel_pkt(r, seq)->sacked && seq != r->snd_una);
        n = rel_send_again(r, seq, now_us, out);
        break;
    case ACT_RTX:
        n = rel_send_again(r, seq, now_us, out);
        break;
    case ACT_NEW:
    case ACT_FIN:
        n = rel_send_new(r, now_us, out, false);
        break;
    case ACT_ACK:
    case ACT_PING:
        /* A PING carries the ack fields too, so one datagram does both. */
        h.type = r->ping_due ? UDP_T_PING : UDP_T_ACK;
        h.seq = r->snd_nxt;
        rel_fill_ack(r, &h);
        udp_hdr_write(out, &h);
        n = UDP_HDR_LEN;
        if (h.type == UDP_T_PING) {
            r->ping_due = false;
            r->ping_out = true;
            r->last_ping_us = now_us;
        }
        break;
    }
    r->st.sent++;
    return n;
}

/* RFC 6298 section 2. */
static void
rel_rtt_sample(struct udp_rel *r, int64_t sample)
{
    uint64_t rtt, delta, rto;

    if (sample < 0)
        return;
    rtt = (uint64_t)MIN(sample, UDP_RTT_SAMPLE_MAX_US);
    if (rtt < r->min_rtt_us)
        r->min_rtt_us = (uint32_t)rtt;
    if (!r->have_rtt) {
        r->srtt_us = (uint32_t)rtt;
        r->rttvar_us = (uint32_t)(rtt / 2);
        r->have_rtt = true;
    } else {
        delta = r->srtt_us > rtt ? r->srtt_us - rtt : rtt - r->srtt_us;
        r->rttvar_us = (uint32_t)((3 * (uint64_t)r->rttvar_us + delta) / 4);
        r->srtt_us = (uint32_t)((7 * (uint64_t)r->srtt_us + rtt) / 8);
    }
    rto = r->srtt_us + MAX((uint64_t)UDP_RTT_GRANULARITY_US,
                           4 * (uint64_t)r->rttvar_us);
    rto = CLAMP(rto, r->p.rto_min_us, r->p.rto_max_us);
    /* A fresh sample also ends any backoff (Karn: samples come only from
     * packets sent once, so this one is unambiguous). */
    r->rto_us = (uint32_t)rto;
}

static void
rel_enter_recovery(struct udp_rel *r, uint64_t pipe, enum rel_recovery kind)
{
    /* A timeout during a timeout episode backs off the timer only; the
     * threshold was set when the episode began. */
    if (!(kind == REC_RTO && r->recovery == REC_RTO))
        r->ssthresh = (uint32_t)MAX(pipe / 2, (uint64_t)UDP_MIN_SSTHRESH);
    r->cwnd = kind == REC_RTO ? UDP_MIN_CWND : r->ssthresh;
    r->recovery = kind;
    r->recover = r->snd_nxt;
}

/* Mark packets lost on ack evidence. Two rules, either suffices:
 * - count (RFC 6675): DupThresh later packets sacked, or as many duplicate
 *   acks; a short flight with nothing more to send lowers the threshold
 *   (early retransmit, RFC 5827). Once per packet between RTOs.
 * - time (RACK, RFC 8985): a packet sent before one that arrived, and
 *   older than that one's RTT plus a reordering allowance. This one also
 *   catches a lost retransmission. Packets not yet old enough set the
 *   reordering timer.
 * One window reduction per loss episode. */
static void
rel_detect_losses(struct udp_rel *r, int64_t now)
{
    uint32_t out = r->snd_nxt - r->snd_una, thresh = UDP_DUPTHRESH;
    uint32_t sacked_above = 0, s;
    uint64_t pipe;
    int64_t reo, due, next = INT64_MAX;
    bool lost = false;
    struct snd_pkt *k;

    r->rack_armed = false;
    if (out == 0)
        return;
    if (out < UDP_DUPTHRESH + 1 && rel_unsent(r) == 0 &&
        !(r->fin_queued && !r->fin_sent))
        thresh = out > 1 ? out - 1 : 1;
    pipe = rel_pipe(r);
    /* Reordering allowed before time says lost: a quarter of the smoothed
     * RTT (not RFC 8985's min_rtt/4, which jitter defeats), >= 1 ms, wider
     * once the peer reported duplicates (RFC 8985 6.2, with our F_DUP for
     * its DSACK). */
    reo = MIN((int64_t)r->reo_mult * r->srtt_us / 4, (int64_t)r->srtt_us);
    reo = MAX(reo, (int64_t)1000);
    s = r->snd_nxt;
    do {
        s--;
        k = rel_pkt(r, s);
        if (k->sacked) {
            sacked_above++;
            continue;
        }
        if (k->lost)
            continue;
        due = k->sent_us + r->rack_rtt_us + reo;
        /* Counting later arrivals is no evidence once packets are known
         * to be reordered: then only time decides (RFC 8985 RACK.reord). */
        if ((!k->rtx_done && !r->reordering && sacked_above >= thresh) ||
            (k->order < r->rack_order && now >= due)) {
            k->lost = true;
            k->fast = true;
            lost = true;
        } else if (k->order < r->rack_order && due < next) {
            next = due;
        }
    } while (s != r->snd_una);
    k = rel_pkt(r, r->snd_una);
    if (!r->reordering && r->dupacks >= thresh && !k->sacked && !k->lost &&
        !k->rtx_done) {
        k->lost = true;
        k->fast = true;
        lost = true;
    }
    if (next != INT64_MAX) {
        r->rack_armed = true;
        r->rack_due_us = next;
    }
    if (lost && r->recovery == REC_NONE) {
        rel_enter_recovery(r, pipe, REC_FAST);
        /* Narrow the window again after 16 episodes without news. */
        if (++r->reo_decay >= 16) {
            r->reo_mult = 1;
            r->reo_decay = 0;
        }
    }
}

static void
rel_grow_cwnd(struct udp_rel *r, uint64_t acked)
{
    uint64_t c = r->cwnd;

    if (c < r->ssthresh)
        c += MIN(acked, (uint64_t)2 * UDP_MSS); /* slow start, RFC 3465 */
    else
        c += MAX((uint64_t)1, (uint64_t)UDP_MSS * acked / c);
    r->cwnd = (uint32_t)MIN(c, (uint64_t)r->p.sndbuf + UDP_MSS);
}

/* RACK: remember the last-sent packet known to have arrived. An ack for
 * a retransmitted packet that comes sooner than the minimum RTT after the
 * retransmission acks the original, so it says nothing about the time. */
static void
rel_rack_update(struct udp_rel *r, const struct snd_pkt *k, int64_t now)
{
    int64_t rtt = now - k->sent_us;

    if (k->xmits > 1 && (!r->have_rtt || rtt < (int64_t)r->min_rtt_us))
        return;
    if (k->order > r->rack_order) {
        r->rack_order = k->order;
        r->rack_rtt_us = (uint32_t)MIN(MAX(rtt, (int64_t)0),
                                       (int64_t)UDP_RTT_SAMPLE_MAX_US);
    }
}

static void
rel_process_ack(struct udp_rel *r, const struct udp_hdr *h, int64_t now)
{
    uint32_t ack = h->ack;
    uint64_t acked = 0;
    int64_t newest = -1;
    bool progress = false;
    unsigned i;

    /* An ack beyond what we sent is bogus; one behind snd_una is stale
     * (reordered): its sack bits and window are older than what we know. */
    if (seq_gt(ack, r->snd_nxt) || seq_lt(ack, r->snd_una))
        return;
    if ((h->flags & UDP_F_DUP) &&
        now - r->reo_bumped_us >= (int64_t)r->srtt_us) {
        /* At most once a round trip: one burst is one piece of news. */
        r->reordering = true;
        r->reo_mult = MIN(r->reo_mult + 1, 4u);
        r->reo_decay = 0;
        r->reo_bumped_us = now;
    }
    while (r->snd_una != ack) {
        struct snd_pkt *k = rel_pkt(r, r->snd_una);

        if (!k->sacked) {
            /* A packet sacked earlier gave its sample then. */
            acked += k->len;
            rel_rack_update(r, k, now);
            if (k->xmits == 1 && k->sent_us > newest)
                newest = k->sent_us;
        }
        if (k->fin)
            r->fin_acked = true;
        buf_consume(&r->snd, k->len);
        r->snd_off += k->len;
        r->snd_una++;
        progress = true;
    }
    if (progress) {
        r->dupacks = 0;
        r->probe_out = false;
        r->pto_armed = false;
        if (r->snd_una == r->snd_nxt)
            r->probe_due = false;
    } else if (h->type == UDP_T_ACK && r->snd_una != r->snd_nxt) {
        r->dupacks++;
    }
    for (i = 0; i < UDP_SACK_BITS; i++) {
        uint32_t s = ack + 1 + i;
        struct snd_pkt *k;

        if (!seq_lt(s, r->snd_nxt))
            break;
        if (!(h->sack & ((uint64_t)1 << i)))
            continue;
        k = rel_pkt(r, s);
        if (k->sacked)
            continue;
        k->sacked = true;
        k->lost = false;
        acked += k->len;
        rel_rack_update(r, k, now);
        if (k->xmits == 1 && k->sent_us > newest)
            newest = k->sent_us;
    }
    if (!seq_lt(ack, r->peer_wnd_ack)) {
        r->peer_wnd = h->wnd;
        r->peer_wnd_ack = ack;
    }
    if (newest >= 0)
        rel_rtt_sample(r, now - newest);
    if (r->recovery != REC_NONE && !seq_lt(r->snd_una, r->recover))
        r->recovery = REC_NONE;
    if (acked > 0 && r->recovery != REC_FAST)
        rel_grow_cwnd(r, acked);
    if (progress || (r->snd_una == r->snd_nxt && !rel_window_blocked(r))) {
        /* RFC 6298 5.3: restart the timer for what is still out (or stop
         * a window probe once the window opened). */
        r->rto_armed = false;
        rel_arm_rto(r, now);
    }
    rel_detect_losses(r, now);
    rel_arm_rto(r, now);
}

static void
rel_deliver(struct udp_rel *r, int64_t now)
{
    unsigned delivered = 0;

    for (;;) {
        struct rcv_slot *sl = &r->slots[r->rcv_nxt % UDP_WINDOW_PKTS];
        bool fin = sl->fin;

        if (!sl->present)
            break;
        if (sl->len > 0) {
            /* Cannot fail: ooo_bytes + buf_len(rcv) <= rcvbuf = its cap. */
            (void)buf_append(&r->rcv, sl->data, sl->len);
            r->ooo_bytes -= sl->len;
            r->st.bytes_received += sl->len;
        }
        g_free(sl->data);
        memset(sl, 0, sizeof(*sl));
        r->rcv_nxt++;
        delivered++;
        if (fin) {
            r->remote_fin = true;
            r->ack_due = true;
            break;
        }
        r->unacked++;
    }
    /* Ack every second packet, a packet that closed a hole at once, and
     * otherwise within ack_delay. */
    if (r->unacked >= 2 || delivered > 1)
        r->ack_due = true;
    else if (!r->ack_due && !r->ack_timer && delivered > 0) {
        r->ack_timer = true;
        r->ack_at_us = now + r->p.ack_delay_us;
    }
}

static void
rel_receive(struct udp_rel *r, const struct udp_hdr *h, const uint8_t *payload,
            int64_t now)
{
    uint32_t seq = h->seq, dist = h->seq - r->rcv_nxt;
    struct rcv_slot *sl;
    size_t used;
    bool fin = h->type == UDP_T_FIN;

    if (r->remote_fin || seq_lt(seq, r->rcv_nxt)) {
        /* Already have it: our ack may have been lost; repeat it. */
        r->st.duplicates++;
        r->dup_seen = true;
        r->ack_due = true;
        return;
    }
    if (dist >= UDP_WINDOW_PKTS) {
        r->ack_due = true;
        return;
    }
    /* Nothing may follow the FIN, and there is only one FIN. */
    if (r->fin_known && (fin ? seq != r->fin_seq : !seq_lt(seq, r->fin_seq)))
        return;
    sl = &r->slots[seq % UDP_WINDOW_PKTS];
    if (sl->present) {
        r->st.duplicates++;
        r->dup_seen = true;
        r->ack_due = true;
        return;
    }
    used = buf_len(&r->rcv) + r->ooo_bytes;
    if (h->len > 0 && (used >= r->p.rcvbuf || h->len > r->p.rcvbuf - used)) {
        /* No room: the sender overran our window. Say where we are. */
        r->ack_due = true;
        return;
    }
    sl->present = true;
    sl->fin = fin;
    sl->len = h->len;
    if (h->len > 0) {
        sl->data = g_malloc(h->len);
        memcpy(sl->data, payload, h->len);
        r->ooo_bytes += h->len;
    }
    if (fin) {
        r->fin_known = true;
        r->fin_seq = seq;
    }
    if (dist != 0) {
        r->ack_due = true; /* a hole: tell the sender now */
        return;
    }
    rel_deliver(r, now);
}

static void
rel_check_closed(struct udp_rel *r, int64_t now)
{
    (void)now;
    if (r->state == UDP_REL_OPEN && r->remote_fin && r->fin_sent &&
        !r->fin_acked)
        r->lingering = true;
    if (r->state == UDP_REL_OPEN && r->fin_acked && r->remote_fin) {
        r->state = UDP_REL_CLOSED;
        r->rto_armed = false;
        r->ping_due = false;
        r->ping_out = false;
    }
}

int
udp_rel_input(struct udp_rel *r, int64_t now_us, const uint8_t *d, size_t n)
{
    const uint8_t *payload = d + UDP_HDR_LEN;
    struct udp_hdr h;

    if (udp_hdr_parse(d, n, &h) != CHAT_OK || h.cid != r->cid) {
        r->st.ignored++;
        return CHAT_EPROTO;
    }
    switch (r->state) {
    case UDP_REL_INIT_SENT:
        if (h.type == UDP_T_COOKIE &&
            sodium_memcmp(payload, r->nonce, UDP_NONCE_LEN) == 0) {
            if (r->hs_xmits == 1)
                rel_rtt_sample(r, now_us - r->hs_sent_us);
            memcpy(r->cookie, payload + UDP_NONCE_LEN, UDP_COOKIE_LEN);
            r->state = UDP_REL_ECHO_SENT;
            r->hs_due_us = now_us;
            r->hs_rto_us = r->rto_us;
            r->hs_xmits = 0;
            break;
        }
        if (h.type == UDP_T_RST) {
            rel_finish(r, UDP_REL_REFUSED);
            break;
        }
        r->st.ignored++;
        return CHAT_EPROTO;
    case UDP_REL_ECHO_SENT:
        if (h.type == UDP_T_ACCEPT && (h.flags & UDP_F_ACK) &&
            h.ack == r->snd_una) {
            if (r->hs_xmits == 1)
                rel_rtt_sample(r, now_us - r->hs_sent_us);
            r->state = UDP_REL_OPEN;
            r->rcv_nxt = h.seq;
            r->peer_wnd = h.wnd;
            r->peer_wnd_ack = h.ack;
            r->last_rx_us = now_us;
            break;
        }
        if (h.type == UDP_T_RST) {
            rel_finish(r, UDP_REL_REFUSED);
            break;
        }
        /* Early stream traffic: the peer resends it once we are open. */
        r->st.ignored++;
        return CHAT_EPROTO;
    case UDP_REL_OPEN:
    case UDP_REL_CLOSED:
        r->last_rx_us = now_us;
        r->ping_out = false;
        switch (h.type) {
        case UDP_T_RST:
            rel_finish(r, UDP_REL_RESET);
            break;
        case UDP_T_ECHO: /* our ACCEPT was lost */
            if (r->server)
                r->accept_due = true;
            break;
        case UDP_T_DATA:
        case UDP_T_FIN:
        case UDP_T_ACK:
        case UDP_T_PING:
            if (h.flags & UDP_F_ACK)
                rel_process_ack(r, &h, now_us);
            if (h.type == UDP_T_DATA || h.type == UDP_T_FIN)
                rel_receive(r, &h, payload, now_us);
            else if (h.type == UDP_T_PING)
                r->ack_due = true;
            rel_check_closed(r, now_us);
            rel_arm_rto(r, now_us);
            break;
        default: /* INIT, COOKIE, a repeated ACCEPT */
            break;
        }
        break;
    case UDP_REL_RESET:
    case UDP_REL_REFUSED:
    case UDP_REL_DEAD:
        break;
    }
    r->st.received++;
    return CHAT_OK;
}

ssize_t
udp_rel_write(struct udp_rel *r, const void *p, size_t n)
{
    size_t room;

    if (r->state > UDP_REL_OPEN || r->fin_queued)
        return CHAT_ECLOSED;
    if (n == 0)
        return 0;
    room = buf_room(&r->snd);
    if (room == 0)
        return CHAT_EAGAIN;
    if (n > room)
        n = room;
    (void)buf_append(&r->snd, p, n); /* fits: n <= room */
    return (ssize_t)n;
}

size_t
udp_rel_writable(const struct udp_rel *r)
{
    if (r->state > UDP_REL_OPEN || r->fin_queued)
        return 0;
    return buf_room(&r->snd);
}

static bool
rel_is_over(const struct udp_rel *r)
{
    return r->state == UDP_REL_RESET || r->state == UDP_REL_REFUSED ||
           r->state == UDP_REL_DEAD;
}

/* The peer's FIN has been reached and, if we sent one too, ours has been
 * acknowledged (or we stopped waiting): a reader that closes on end of
 * stream then loses nothing it wrote, the linger TCP does in the kernel. A
 * reader that has not sent FIN learns the end at once (half close); after
 * its own shutdown, read says CHAT_EAGAIN until that FIN is acked and then
 * CHAT_ECLOSED again. */
static bool
rel_end_reportable(const struct udp_rel *r)
{
    return r->remote_fin &&
           (!r->fin_queued || r->fin_acked || r->state != UDP_REL_OPEN);
}

ssize_t
udp_rel_read(struct udp_rel *r, void *p, size_t n)
{
    size_t k;
    uint32_t wnd, step;

    if (rel_is_over(r) && !udp_rel_eof(r)) {
        if (buf_len(&r->rcv) > 0)
            r->data_lost = true;
        buf_cleanup(&r->rcv);
        r->end_reported = true;
        return CHAT_ECLOSED;
    }
    k = MIN(n, buf_len(&r->rcv));
    if (k > 0) {
        memcpy(p, buf_ptr(&r->rcv), k);
        buf_consume(&r->rcv, k);
        buf_shrink(&r->rcv);
        /* Tell a sender that waits on our window once it opened enough to
         * matter (two packets, or half the buffer if that is less). */
        wnd = rel_rcv_window(r);
        step = (uint32_t)MIN((size_t)2 * UDP_MSS, r->p.rcvbuf / 2);
        if (r->state == UDP_REL_OPEN && !r->remote_fin && wnd > r->adv_wnd &&
            wnd - r->adv_wnd >= step)
            r->ack_due = true;
        return (ssize_t)k;
    }
    if (n > 0 && rel_end_reportable(r)) {
        r->end_reported = true;
        return CHAT_ECLOSED;
    }
    return CHAT_EAGAIN;
}

size_t
udp_rel_readable(const struct udp_rel *r)
{
    return buf_len(&r->rcv);
}

bool
udp_rel_eof(const struct udp_rel *r)
{
    return r->remote_fin && buf_len(&r->rcv) == 0 && !r->data_lost;
}

bool
udp_rel_read_left(const struct udp_rel *r, size_t n)
{
    size_t len = buf_len(&r->rcv);

    if (rel_is_over(r) && !udp_rel_eof(r))
        return false; /* one read reports the reset */
    if (len > n)
        return true;
    return len > 0 && rel_end_reportable(r) && !r->end_reported;
}

void
udp_rel_close(struct udp_rel *r)
{
    switch (r->state) {
    case UDP_REL_INIT_SENT:
        rel_finish(r, UDP_REL_RESET);
        break;
    case UDP_REL_ECHO_SENT:
        udp_rel_abort(r); /* the server may already hold a session */
        break;
    case UDP_REL_OPEN:
        r->fin_queued = true;
        break;
    default:
        break;
    }
}

void
udp_rel_abort(struct udp_rel *r)
{
    bool tell = r->state == UDP_REL_OPEN || r->state == UDP_REL_CLOSED ||
                r->state == UDP_REL_ECHO_SENT;

    if (rel_is_over(r))
        return;
    rel_finish(r, UDP_REL_RESET);
    r->rst_due = tell;
}

void
udp_rel_peer_gone(struct udp_rel *r)
{
    if (r->state == UDP_REL_INIT_SENT || r->state == UDP_REL_ECHO_SENT)
        rel_finish(r, UDP_REL_REFUSED);
    else if (r->state == UDP_REL_OPEN)
        rel_finish(r, UDP_REL_RESET);
}

/* When the next keepalive PING is due. */
static int64_t
rel_ping_at(const struct udp_rel *r)
{
    int64_t at = r->last_rx_us + r->p.keepalive_us;

    if (r->last_ping_us >= r->last_rx_us)
        at = MAX(at, r->last_ping_us + (int64_t)r->p.ping_retry_us);
    return at;
}

/* Lingering with nothing but our FIN unacknowledged. While data is
 * unacked the peer cannot have all of it, so only the idle timeout may end
 * the connection, and as dead, never as closed. */
static bool
rel_fin_only(const struct udp_rel *r)
{
    return r->lingering && !r->fin_acked && r->snd_nxt - r->snd_una == 1;
}

static bool
rel_linger_over(const struct udp_rel *r, int64_t now)
{
    return rel_fin_only(r) && now - r->last_rx_us >= UDP_LINGER_US;
}

static void
rel_rto_expired(struct udp_rel *r, int64_t now)
{
    uint64_t pipe;
    uint32_t s;

    if (r->snd_una != r->snd_nxt) {
        /* Everything not known to have arrived is lost; send it again
         * from one packet of cwnd up (RFC 5681 3.1, RFC 6675 5.1). */
        pipe = rel_pipe(r);
        for (s = r->snd_una; s != r->snd_nxt; s++) {
            struct snd_pkt *k = rel_pkt(r, s);

            k->rtx_done = false;
            k->fast = false;
            if (!k->sacked)
                k->lost = true;
        }
        rel_enter_recovery(r, pipe, REC_RTO);
        r->dupacks = 0;
        r->rack_armed = false;
        r->pto_armed = false;
        r->probe_due = false;
        r->probe_out = false;
        r->st.timeouts++;
    } else if (rel_window_blocked(r)) {
        r->ping_due = true; /* window probe: the answer carries it */
    } else {
        r->rto_armed = false;
        return;
    }
    r->rto_us = (uint32_t)MIN((uint64_t)r->rto_us * 2, r->p.rto_max_us);
    r->rto_due_us = now + r->rto_us;
}

void
udp_rel_tick(struct udp_rel *r, int64_t now_us)
{
    switch (r->state) {
    case UDP_REL_INIT_SENT:
    case UDP_REL_ECHO_SENT:
        if (now_us - r->born_us >= r->p.idle_us)
            rel_finish(r, UDP_REL_DEAD);
        return;
    case UDP_REL_OPEN:
        break;
    default:
        return;
    }
    if (now_us - r->last_rx_us >= r->p.idle_us) {
        rel_finish(r, UDP_REL_DEAD);
        return;
    }
    if (rel_linger_over(r, now_us)) {
        r->fin_acked = true; /* given up on; nothing more to send */
        rel_check_closed(r, now_us);
        return;
    }
    if (r->rto_armed && now_us >= r->rto_due_us)
        rel_rto_expired(r, now_us);
    if (r->rack_armed && now_us >= r->rack_due_us)
        rel_detect_losses(r, now_us);
    if (r->pto_armed && now_us >= r->pto_due_us) {
        r->pto_armed = false;
        if (r->snd_una != r->snd_nxt && r->recovery != REC_RTO)
            r->probe_due = true;
    }
    if (r->ack_timer && now_us >= r->ack_at_us) {
        r->ack_timer = false;
        r->ack_due = true;
    }
    if (now_us >= rel_ping_at(r))
        r->ping_due = true;
    /* The send buffer gives its memory back here, on a timer, not the
     * moment it empties: a busy stream empties and refills it all the
     * time, and would pay an allocation and a growth by doubling (copying
     * as it grows) each time. An idle stream's timer (the keepalive at the
     * latest) still frees it. */
    buf_shrink(&r->snd);
}

int64_t
udp_rel_next_timeout(const struct udp_rel *r, int64_t now_us)
{
    int64_t at = INT64_MAX;
    uint32_t seq;

    if (rel_next_action(r, now_us, &seq) != ACT_NONE)
        return 0;
    switch (r->state) {
    case UDP_REL_INIT_SENT:
    case UDP_REL_ECHO_SENT:
        at = MIN(r->hs_due_us, r->born_us + (int64_t)r->p.idle_us);
        break;
    case UDP_REL_OPEN:
        at = r->last_rx_us + (int64_t)r->p.idle_us;
        at = MIN(at, rel_ping_at(r));
        if (r->rto_armed)
            at = MIN(at, r->rto_due_us);
        if (r->rack_armed)
            at = MIN(at, r->rack_due_us);
        if (r->pto_armed)
            at = MIN(at, r->pto_due_us);
        if (r->ack_timer)
            at = MIN(at, r->ack_at_us);
        if (rel_fin_only(r))
            at = MIN(at, r->last_rx_us + UDP_LINGER_US);
        break;
    default:
        return -1;
    }
    return at <= now_us ? 0 : at - now_us;
}

bool
udp_rel_send_done(const struct udp_rel *r)
{
    switch (r->state) {
    case UDP_REL_OPEN:
        return r->fin_acked;
    case UDP_REL_INIT_SENT:
    case UDP_REL_ECHO_SENT:
        return false;
    default:
        return !r->rst_due;
    }
}

bool
udp_rel_wants_input(const struct udp_rel *r)
{
    switch (r->state) {
    case UDP_REL_INIT_SENT:
    case UDP_REL_ECHO_SENT:
        return true;
    case UDP_REL_OPEN:
        return r->snd_una != r->snd_nxt || rel_unsent(r) > 0 ||
               (r->fin_queued && !r->fin_acked) || r->ping_out;
    default:
        return false;
    }
}

enum udp_rel_state
udp_rel_state(const struct udp_rel *r)
{
    return r->state;
}

const char *
udp_rel_state_name(enum udp_rel_state s)
{
    switch (s) {
    case UDP_REL_INIT_SENT:
        return "init-sent";
    case UDP_REL_ECHO_SENT:
        return "echo-sent";
    case UDP_REL_OPEN:
        return "open";
    case UDP_REL_CLOSED:
        return "closed";
    case UDP_REL_RESET:
        return "reset";
    case UDP_REL_REFUSED:
        return "refused";
    case UDP_REL_DEAD:
        return "dead";
    }
    return "?";
}

uint32_t
udp_rel_cid(const struct udp_rel *r)
{
    return r->cid;
}

void
udp_rel_get_stats(const struct udp_rel *r, struct udp_rel_stats *st)
{
    *st = r->st;
    st->srtt_us = r->have_rtt ? r->srtt_us : 0;
    st->rttvar_us = r->rttvar_us;
    st->rto_us = r->rto_us;
    st->cwnd = r->cwnd;
    st->ssthresh = r->ssthresh;
    st->peer_wnd = r->peer_wnd;
}
