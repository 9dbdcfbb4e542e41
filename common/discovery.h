/* discovery.h - the beacon and probe datagrams of PROTOCOL.md section 7
 * (doc/DISCOVERY.md), the answer rate limiter, the table of servers a
 * client has seen, and the few socket calls the server and the client share.
 *
 * The codec, the limiter and the table are pure: no sockets, no clock
 * (callers pass monotonic milliseconds), no globals; only the last section
 * (sockets) does I/O. A datagram is DISCOVERY_MAGIC (4 bytes), one version
 * byte, then one JSON object, DISCOVERY_MAX bytes at most in all. A probe is
 * padded to at least DISCOVERY_PROBE_MIN bytes and a server answers one probe
 * with at most one beacon of at most DISCOVERY_MAX bytes, so an answer is never
 * more than DISCOVERY_AMP_MAX times the probe that asked for it.
 *
 * discovery_new_nonce() and discovery_new_instance() use libsodium's
 * randombytes: sodium_init() must have succeeded first.
 */
#ifndef SOCKCHAT_DISCOVERY_H
#define SOCKCHAT_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <glib.h>

#include "addr.h"

#define DISCOVERY_PORT 7711
#define DISCOVERY_MAGIC "SkCd" /* 53 6b 43 64 */
#define DISCOVERY_MAGIC_LEN 4
#define DISCOVERY_VERSION 1
#define DISCOVERY_HDR (DISCOVERY_MAGIC_LEN + 1)
/* Largest datagram, header included: fits the IPv6 minimum MTU (1280)
 * less the IPv6 and UDP headers, so it is never fragmented. */
#define DISCOVERY_MAX 1200
/* Smallest probe accepted; clients pad theirs to exactly this. */
#define DISCOVERY_PROBE_MIN 400
/* An answer is at most this many times the size of its probe. */
#define DISCOVERY_AMP_MAX 3
/* The IPv6 link-local group beacons and probes go to. */
#define DISCOVERY_GROUP6 "ff02::7711"
/* The IPv4 loopback broadcast address: reaches every server on this host
 * (several can share the discovery port, and a unicast datagram reaches
 * only one of them). */
#define DISCOVERY_LOOPBACK_BCAST4 "127.255.255.255"

#define DISCOVERY_NAME_MAX 64     /* bytes of a server name */
#define DISCOVERY_INSTANCE_LEN 32 /* lower-case hex of 16 random bytes */
#define DISCOVERY_NONCE_MIN 16    /* characters of A-Z a-z 0-9 _ - */
#define DISCOVERY_NONCE_MAX 64
#define DISCOVERY_NONCE_LEN 32 /* what discovery_new_nonce() makes */
#define DISCOVERY_ENDPOINTS_MAX 8
#define DISCOVERY_TRANSPORT_MAX 7        /* "tcp", "udp": 1-7 of a-z */
#define DISCOVERY_SECURE_MAX 15          /* "off", "optional", "required" */
#define DISCOVERY_FP_MAX 128             /* printable ASCII */
#define DISCOVERY_MEMBERS_MAX 32         /* members of the JSON object */
#define DISCOVERY_COUNT_MAX 2147483647.0 /* users, rooms */

enum discovery_kind {
    DISCOVERY_PROBE = 1,
    DISCOVERY_BEACON = 2,
};

/* Why a datagram was not accepted (one counter each on the server). */
enum discovery_bad {
    DISCOVERY_BAD_NONE = 0,
    DISCOVERY_BAD_SHORT,       /* fewer than DISCOVERY_HDR bytes */
    DISCOVERY_BAD_OVERSIZE,    /* more than DISCOVERY_MAX bytes */
    DISCOVERY_BAD_MAGIC,       /* foreign: not our magic */
    DISCOVERY_BAD_VERSION,     /* our magic, another version */
    DISCOVERY_BAD_JSON,        /* not one JSON object (with whitespace) */
    DISCOVERY_BAD_TYPE,        /* type missing, not a string, or unknown */
    DISCOVERY_BAD_FIELD,       /* a field missing, of the wrong type or
                                * out of its rules */
    DISCOVERY_BAD_PROBE_SMALL, /* a probe under DISCOVERY_PROBE_MIN */
    DISCOVERY_BAD_COUNT
};

/* "short", "oversize", ... for logs; NULL out of range. */
const char *discovery_bad_name(enum discovery_bad why);

struct discovery_endpoint {
    char transport[DISCOVERY_TRANSPORT_MAX + 1];
    uint16_t port;
};

/* A beacon: exactly what a server announces, and nothing else about it. */
struct discovery_beacon {
    char name[DISCOVERY_NAME_MAX + 1];
    char instance[DISCOVERY_INSTANCE_LEN + 1];
    unsigned version; /* protocol version (message.h PROTO_VERSION) */
    struct discovery_endpoint endpoints[DISCOVERY_ENDPOINTS_MAX];
    size_t n_endpoints;
    char secure[DISCOVERY_SECURE_MAX + 1];
    char fingerprint[DISCOVERY_FP_MAX + 1]; /* "" when none */
    uint32_t users;
    uint32_t rooms;
    char nonce[DISCOVERY_NONCE_MAX + 1]; /* "" unless it answers a probe */
};

struct discovery_msg {
    enum discovery_kind kind;
    char nonce[DISCOVERY_NONCE_MAX + 1]; /* probe */
    struct discovery_beacon beacon;      /* beacon */
};

/*
 * Decode one datagram (p, n) as received (n may be more than was read when
 * the caller passes the length recvfrom() returned with MSG_TRUNC).
 * CHAT_OK with *out filled; otherwise CHAT_ETOOBIG (oversize) or
 * CHAT_EPROTO, with *why saying which rule failed. *out and *why are
 * cleared on entry.
 */
int discovery_decode(const uint8_t *p, size_t n, struct discovery_msg *out,
                     enum discovery_bad *why);

/*
 * Encode a probe carrying nonce (DISCOVERY_NONCE_MIN-MAX of A-Z a-z 0-9 _ -)
 * padded to exactly DISCOVERY_PROBE_MIN bytes, into out (cap bytes).
 * CHAT_OK and *len; CHAT_ERANGE for a bad nonce, CHAT_ETOOBIG when cap is
 * too small.
 */
int discovery_encode_probe(const char *nonce, uint8_t *out, size_t cap,
                           size_t *len);

/*
 * Encode beacon b (every field checked by the rules of discovery_decode;
 * an empty nonce or fingerprint is left out). CHAT_OK and *len;
 * CHAT_ERANGE for a field out of its rules; CHAT_ETOOBIG when the datagram
 * would be over DISCOVERY_MAX or cap.
 */
int discovery_encode_beacon(const struct discovery_beacon *b, uint8_t *out,
                            size_t cap, size_t *len);

/* The amplification rule: may an answer of reply_len bytes go out for a
 * probe of probe_len bytes? */
bool discovery_reply_allowed(size_t probe_len, size_t reply_len);

/* Random nonce (DISCOVERY_NONCE_LEN hex digits) and instance id
 * (DISCOVERY_INSTANCE_LEN hex digits), NUL-terminated. */
void discovery_new_nonce(char out[DISCOVERY_NONCE_LEN + 1]);
void discovery_new_instance(char out[DISCOVERY_INSTANCE_LEN + 1]);

/* ---- answer rate limiter (server) ----------------------------------- */

struct discovery_limits {
    double source_rate; /* answers a second to one source address */
    double source_burst;
    double total_rate; /* answers a second in all */
    double total_burst;
};

#define DISCOVERY_SLOTS 1024 /* source buckets; sources share by hash */
#define DISCOVERY_KEY_BYTES 16

struct discovery_limiter; /* opaque */

/*
 * A limiter with full buckets at now_ms. Sources (their IP address; the
 * port is ignored) are hashed with a keyed hash into DISCOVERY_SLOTS token
 * buckets, so memory is fixed whatever a flood of forged sources does;
 * key (DISCOVERY_KEY_BYTES) fixes the hash key for tests, NULL draws one at
 * random. Never NULL (GLib aborts on OOM); discovery_limiter_free() it.
 */
struct discovery_limiter *
discovery_limiter_new(const struct discovery_limits *lim, const uint8_t *key,
                      int64_t now_ms);
void discovery_limiter_free(struct discovery_limiter *l); /* NULL: no-op */

/* May an answer go to src now? true takes one token from src's bucket and
 * one from the total; false takes none. */
bool discovery_limiter_allow(struct discovery_limiter *l,
                             const struct sockaddr *src, socklen_t len,
                             int64_t now_ms);

/* ---- servers seen (client) ------------------------------------------ */

#define DISCOVERY_SEEN_ADDRS 4 /* addresses kept per server */
#define DISCOVERY_EXPIRY_DEFAULT                                               \
    15000 /* ms, until the beacon period is known */
#define DISCOVERY_EXPIRY_MIN 3000
#define DISCOVERY_EXPIRY_MAX 300000
#define DISCOVERY_TABLE_MAX 256 /* servers kept at once */

/* One server, by instance id. */
struct discovery_seen {
    struct discovery_beacon beacon;          /* the latest (nonce cleared) */
    struct addr addrs[DISCOVERY_SEEN_ADDRS]; /* where it was heard, port 0 */
    size_t n_addrs;
    int64_t first_ms, last_ms; /* heard first and last */
    int64_t last_beacon_ms;    /* last unsolicited beacon, 0 none */
    int64_t gaps[3];           /* recent gaps between beacons */
    unsigned n_gaps;
    bool answered; /* answered one of our probes */
};

enum discovery_event {
    DISCOVERY_EV_NONE = 0, /* nothing changed that anyone would see */
    DISCOVERY_EV_NEW,      /* a server not seen before */
    DISCOVERY_EV_CHANGED,  /* users, rooms, name ... changed */
    DISCOVERY_EV_RESTART,  /* a new instance replaced one at its address */
    DISCOVERY_EV_GONE,     /* expired */
};

struct discovery_table; /* opaque */

struct discovery_table *discovery_table_new(void);
void discovery_table_free(struct discovery_table *t); /* NULL: no-op */

/*
 * Record beacon b heard from src (its port is dropped) at now_ms.
 * A beacon with the instance id of a server already seen updates it (an
 * address it was not heard from yet is added). A new instance id is a new
 * server, except that it replaces (DISCOVERY_EV_RESTART) any server heard
 * from the same address that shares one of its endpoints: two servers on
 * one host never listen on the same port, a restarted one does. Returns
 * what happened; *seen (may be NULL) lends the entry until the next call
 * that changes t. DISCOVERY_EV_NONE with *seen NULL when the table is full.
 */
enum discovery_event discovery_table_update(struct discovery_table *t,
                                            const struct discovery_beacon *b,
                                            const struct addr *src,
                                            int64_t now_ms,
                                            const struct discovery_seen **seen);

/* The expiry of s: 3 beacon periods as observed (a period is the largest of
 * the recent gaps between unsolicited beacons), kept within
 * DISCOVERY_EXPIRY_MIN-MAX; DISCOVERY_EXPIRY_DEFAULT until one is known. */
int64_t discovery_seen_expiry(const struct discovery_seen *s);

/*
 * Drop servers not heard from for their expiry, calling gone (may be NULL)
 * for each before it goes. Returns how many went.
 */
typedef void (*discovery_gone_fn)(const struct discovery_seen *s, void *arg);
size_t discovery_table_expire(struct discovery_table *t, int64_t now_ms,
                              discovery_gone_fn gone, void *arg);

/* The servers, sorted by name then address: a new array of borrowed
 * pointers valid until the next call that changes t (g_ptr_array_unref). */
GPtrArray *discovery_table_list(const struct discovery_table *t);
size_t discovery_table_size(const struct discovery_table *t);

/* ---- sockets (server and client) ------------------------------------- */

/*
 * A non-blocking, close-on-exec UDP socket bound to host (a numeric
 * literal: "0.0.0.0", "::", "127.0.0.1", DISCOVERY_LOOPBACK_BCAST4 ...) and
 * port (0: any). shared: SO_REUSEADDR and SO_REUSEPORT, so that several
 * servers and clients can all bind the discovery port of one host. IPv6
 * sockets are IPV6_V6ONLY; IPv4 ones get SO_BROADCAST. CHAT_OK and *fd, or
 * CHAT_EADDR / CHAT_ESYS with why[] filled.
 */
int discovery_socket(const char *host, uint16_t port, bool shared, int *fd,
                     char *why, size_t why_len);
/* The port fd is bound to, 0 if unknown. */
uint16_t discovery_socket_port(int fd);
void discovery_close(int fd); /* -1 is a no-op; keeps errno */

/* Where LAN datagrams go: the IPv4 broadcast address of each up,
 * broadcast-capable, non-loopback interface, and DISCOVERY_GROUP6 on each
 * up, multicast-capable, non-loopback interface with IPv6 (sin6_scope_id
 * is the interface). */
struct discovery_target {
    struct addr dst;  /* port set to the port asked for */
    unsigned ifindex; /* IPv6: the interface; IPv4: 0 */
    char ifname[16];
};
/* Fill out (a GArray of struct discovery_target, emptied first) from
 * getifaddrs(). CHAT_OK or CHAT_ESYS. */
int discovery_lan_targets(uint16_t port, GArray *out);

/* Join DISCOVERY_GROUP6 on interface ifindex (a join that is already there
 * counts as done). CHAT_OK or CHAT_ESYS. */
int discovery_join6(int fd, unsigned ifindex);

/* sendto() one datagram to t (IPv6: IPV6_MULTICAST_IF set to its
 * interface first). Bytes sent, or CHAT_EAGAIN / CHAT_ESYS. */
ssize_t discovery_send_to(int fd, const struct discovery_target *t,
                          const void *p, size_t n);

/* recvfrom() one datagram into p (cap bytes); *n is its real size, more
 * than cap when it was cut (MSG_TRUNC). CHAT_OK, CHAT_EAGAIN, CHAT_ESYS. */
int discovery_recv(int fd, void *p, size_t cap, size_t *n, struct addr *from);

#endif /* SOCKCHAT_DISCOVERY_H */
