/* udp_rel.h - reliability over datagrams: the pure state machine behind
 * transport_udp.
 *
 * A struct udp_rel turns datagrams of at most UDP_DGRAM_MAX bytes into a
 * reliable, ordered byte stream in each direction (doc/UDP.md is the
 * normative description of the wire format and the rules). It does no I/O
 * and never reads a clock: the caller feeds it datagrams that arrived
 * (udp_rel_input), asks it for datagrams to send (udp_rel_poll_output),
 * and runs its timers (udp_rel_next_timeout, udp_rel_tick) with the time it
 * passes in. All times are microseconds on any monotonic clock the caller
 * chooses, so that tests drive it with a fake clock and a loopback RTT of
 * 50 us is measured instead of rounded to 0.
 *
 * The stateless parts of the handshake (the header codec, the cookie, and
 * what a listener answers to a datagram from a peer it has no session
 * with) are pure functions here too.
 */
#ifndef SOCKCHAT_UDP_REL_H
#define SOCKCHAT_UDP_REL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- wire format (doc/UDP.md section 2) -------------------------------- */

#define UDP_DGRAM_MAX 1200 /* whole datagram, header included */
#define UDP_HDR_LEN 32
#define UDP_PAYLOAD_MAX (UDP_DGRAM_MAX - UDP_HDR_LEN) /* 1168 */
#define UDP_MAGIC 0x5343u                             /* "SC" */
#define UDP_VERSION 1
#define UDP_INIT_LEN UDP_DGRAM_MAX /* INIT is padded to this */
#define UDP_NONCE_LEN 8
#define UDP_COOKIE_KEY_LEN 32 /* crypto_auth_KEYBYTES */
#define UDP_COOKIE_LEN 36     /* 4-byte time + crypto_auth_BYTES */
#define UDP_COOKIE_LIFE_S 10  /* seconds a cookie stays valid */
#define UDP_WINDOW_PKTS 256   /* packets in flight / held out of order */
#define UDP_SACK_BITS 64

enum udp_type {
    UDP_T_INIT = 1,
    UDP_T_COOKIE = 2,
    UDP_T_ECHO = 3,
    UDP_T_ACCEPT = 4,
    UDP_T_DATA = 5,
    UDP_T_ACK = 6,
    UDP_T_PING = 7,
    UDP_T_FIN = 8,
    UDP_T_RST = 9,
};

#define UDP_F_ACK 0x0001u /* ack, sack and wnd are meaningful */
#define UDP_F_DUP 0x0002u /* a packet arrived twice since the last ack */

struct udp_hdr {
    uint8_t version;
    uint8_t type;   /* enum udp_type */
    uint16_t flags; /* UDP_F_* */
    uint16_t len;   /* payload bytes after the header */
    uint32_t cid;   /* connection id, chosen by the client */
    uint32_t seq;   /* packet sequence number */
    uint32_t ack;   /* next packet expected from the peer */
    uint64_t sack;  /* bit i: packet ack + 1 + i has arrived */
    uint32_t wnd;   /* receive window in bytes, counted from ack */
};

/*
 * Check and decode the header of the datagram d[0..n). CHAT_OK and *h
 * filled (the payload is d + UDP_HDR_LEN, h->len bytes), or CHAT_EPROTO
 * for anything malformed: short, long, wrong magic or version, unknown
 * type, or a length field that disagrees with n.
 */
int udp_hdr_parse(const uint8_t *d, size_t n, struct udp_hdr *h);
/* Encode h (magic and version added) into out[0..UDP_HDR_LEN). */
void udp_hdr_write(uint8_t *out, const struct udp_hdr *h);

/* ---- stateless handshake (doc/UDP.md section 4) ------------------------- */

/*
 * The cookie a listener gives a peer: a coarse time in seconds and a MAC
 * (HMAC-SHA512-256, libsodium crypto_auth) keyed with key over the time,
 * the connection id and peer, a canonical encoding of the peer's address
 * and port (at most 32 bytes; the caller builds it). out gets
 * UDP_COOKIE_LEN bytes.
 */
void udp_cookie_make(const uint8_t *key, uint32_t now_s, const uint8_t *peer,
                     size_t peer_len, uint32_t cid, uint8_t *out);
/* CHAT_OK, CHAT_ECRYPTO (forged, tampered, other peer or id) or
 * CHAT_ERANGE (genuine but older than UDP_COOKIE_LIFE_S, or from the
 * future). */
int udp_cookie_check(const uint8_t *key, uint32_t now_s, const uint8_t *peer,
                     size_t peer_len, uint32_t cid, const uint8_t *cookie);

enum udp_listen_verdict {
    UDP_LISTEN_DROP,   /* ignore it (malformed, foreign, forged) */
    UDP_LISTEN_REPLY,  /* send reply (a COOKIE) and keep no state */
    UDP_LISTEN_ACCEPT, /* a valid ECHO: create a session (or refuse it
                        * with reply, an RST, if there is no room) */
    UDP_LISTEN_STRAY,  /* stream traffic: if no session has this peer,
                        * send reply (an RST) */
};

struct udp_listen_result {
    enum udp_listen_verdict verdict;
    size_t reply_len; /* bytes in reply; never more than n */
    uint32_t cid;      /* ACCEPT: the connection id */
    uint32_t peer_isn; /* ACCEPT: the client's first sequence number */
    uint32_t peer_wnd; /* ACCEPT: the client's receive window */
};

/*
 * What a listener does with datagram d[0..n) from peer, a session-less
 * decision (no state is created here or by REPLY). reply must hold
 * UDP_DGRAM_MAX bytes. Whatever the verdict, reply_len <= n: a spoofed
 * source never gets more bytes than were sent in its name. CHAT_OK, or
 * CHAT_EPROTO (malformed) / CHAT_ECRYPTO / CHAT_ERANGE (bad ECHO cookie)
 * with verdict DROP.
 */
int udp_listen_input(const uint8_t *key, uint32_t now_s, const uint8_t *peer,
                     size_t peer_len, const uint8_t *d, size_t n,
                     uint8_t *reply, struct udp_listen_result *res);

/* ---- the reliable stream ------------------------------------------------ */

struct udp_rel; /* opaque */

struct udp_rel_params {
    size_t sndbuf;         /* most bytes written and not yet acked */
    size_t rcvbuf;         /* most bytes held for the reader, in order or not */
    uint32_t rto_init_us;  /* before the first RTT sample; also handshake */
    uint32_t rto_min_us;
    uint32_t rto_max_us;
    uint32_t ack_delay_us; /* longest an ack waits for a second packet */
    uint32_t keepalive_us; /* PING after this much silence from the peer */
    uint32_t ping_retry_us; /* then again every ping_retry_us */
    uint32_t idle_us;      /* dead after this much silence */
    uint32_t isn;          /* our first sequence number */
};

/* The defaults (doc/UDP.md section 6): 256 KiB buffers, RTO 250 ms before
 * a sample, 50 ms .. 10 s after, ack delay 10 ms, keepalive 5 s (retry 1 s),
 * idle 30 s, isn 0. */
void udp_rel_params_default(struct udp_rel_params *p);

enum udp_rel_state {
    UDP_REL_INIT_SENT, /* client: INIT out, waiting for COOKIE */
    UDP_REL_ECHO_SENT, /* client: ECHO out, waiting for ACCEPT */
    UDP_REL_OPEN,      /* data flows (one way may be finished) */
    UDP_REL_CLOSED,    /* both FINs delivered and acknowledged */
    UDP_REL_RESET,     /* RST received or sent, or the peer is unreachable */
    UDP_REL_REFUSED,   /* client: the listener refused us (RST) */
    UDP_REL_DEAD,      /* nothing heard for idle_us */
};

/*
 * A client side: it sends INIT (connection id cid, nonce) at once.
 * A server side: made after a valid ECHO carrying cid, peer_isn and
 * peer_wnd (struct udp_listen_result); it sends ACCEPT at once. p NULL takes the defaults. Never NULL (GLib
 * aborts on OOM). Free with udp_rel_free (NULL is a no-op).
 */
struct udp_rel *udp_rel_new_client(const struct udp_rel_params *p,
                                   uint32_t cid, const uint8_t *nonce,
                                   int64_t now_us);
struct udp_rel *udp_rel_new_server(const struct udp_rel_params *p,
                                   uint32_t cid, uint32_t peer_isn,
                                   uint32_t peer_wnd, int64_t now_us);
void udp_rel_free(struct udp_rel *r);

/* Take one datagram that arrived. CHAT_OK when it belonged to this
 * connection, CHAT_EPROTO when it was malformed or foreign (counted in
 * stats.ignored, otherwise without effect). */
int udp_rel_input(struct udp_rel *r, int64_t now_us, const uint8_t *d,
                  size_t n);

/* Queue up to n bytes for sending: bytes taken (> 0; fewer than n when the
 * send buffer fills), CHAT_EAGAIN when it is full, CHAT_ECLOSED after
 * udp_rel_close or when the connection is finished. */
ssize_t udp_rel_write(struct udp_rel *r, const void *p, size_t n);
/* Bytes udp_rel_write would take now (0 when it would not). */
size_t udp_rel_writable(const struct udp_rel *r);

/* Read up to n in-order bytes: bytes read (> 0), CHAT_EAGAIN, or
 * CHAT_ECLOSED at the end: udp_rel_eof() tells an orderly end (FIN after
 * all data) from a reset, refusal or death (udp_rel_state()). A reset
 * discards bytes not yet read. After udp_rel_close, the end is reported
 * only once our own FIN is acknowledged (doc/UDP.md section 7.1), so it
 * may be reported, then CHAT_EAGAIN, then reported again. */
ssize_t udp_rel_read(struct udp_rel *r, void *p, size_t n);
/* In-order bytes ready for udp_rel_read. */
size_t udp_rel_readable(const struct udp_rel *r);
/* True if after udp_rel_read(r, buf, n) the reader would still have
 * something coming without another datagram: bytes beyond n, or the end
 * of the stream behind the last bytes. (transport_udp keeps its socket
 * readable while this holds; see doc/UDP.md section 8.3.) */
bool udp_rel_read_left(const struct udp_rel *r, size_t n);
/* True once the peer's FIN has arrived and every byte before it was read. */
bool udp_rel_eof(const struct udp_rel *r);

/* Orderly close of our direction: FIN after the bytes written. */
void udp_rel_close(struct udp_rel *r);
/* Abort: send RST once, drop everything; state RESET. */
void udp_rel_abort(struct udp_rel *r);
/* The network says the peer is unreachable (ICMP): REFUSED while
 * connecting, else RESET. */
void udp_rel_peer_gone(struct udp_rel *r);

/* Next datagram to send into out (UDP_DGRAM_MAX bytes): its length, or 0
 * when nothing is due. Call until 0. */
size_t udp_rel_poll_output(struct udp_rel *r, int64_t now_us, uint8_t *out);
/* Microseconds until udp_rel_tick (then udp_rel_poll_output) is due: 0 now,
 * -1 never (the connection is over). */
int64_t udp_rel_next_timeout(const struct udp_rel *r, int64_t now_us);
/* Run the timers that are due: retransmission timeout, delayed ack,
 * keepalive, idle timeout. */
void udp_rel_tick(struct udp_rel *r, int64_t now_us);

/* True once nothing we wrote is left to deliver: our FIN (and so all data
 * before it) is acknowledged, or the connection is over. */
bool udp_rel_send_done(const struct udp_rel *r);

/* True while progress needs a datagram from the peer (handshake, data or
 * FIN not yet acknowledged, a keepalive unanswered, a closed window). */
bool udp_rel_wants_input(const struct udp_rel *r);

enum udp_rel_state udp_rel_state(const struct udp_rel *r);
const char *udp_rel_state_name(enum udp_rel_state s);
uint32_t udp_rel_cid(const struct udp_rel *r);

struct udp_rel_stats {
    uint32_t srtt_us; /* 0 before the first sample */
    uint32_t rttvar_us;
    uint32_t rto_us;
    uint32_t cwnd;     /* bytes */
    uint32_t ssthresh; /* bytes */
    uint32_t peer_wnd; /* bytes the peer last said it can take */
    uint64_t sent;     /* datagrams */
    uint64_t received; /* datagrams of this connection */
    uint64_t retransmits;      /* packets sent again, for any reason */
    uint64_t fast_retransmits; /* of which on ack evidence */
    uint64_t timeouts;         /* retransmission timeouts */
    uint64_t duplicates;       /* packets that had already arrived */
    uint64_t ignored;          /* malformed or foreign datagrams */
    uint64_t bytes_sent;       /* stream bytes, first transmissions */
    uint64_t bytes_received;   /* stream bytes delivered in order */
};

void udp_rel_get_stats(const struct udp_rel *r, struct udp_rel_stats *st);

#endif /* SOCKCHAT_UDP_REL_H */
