/* beacon.h - sockchatd's side of discovery (doc/DISCOVERY.md).
 *
 * Without --lan the beacon only answers probes that reach it on loopback:
 * it binds 127.0.0.1, 127.255.255.255 (the loopback broadcast, so that
 * every server on the host hears a local client) and ::1 on the discovery
 * port, shared with other servers and clients (SO_REUSEADDR and
 * SO_REUSEPORT). With --lan it binds 0.0.0.0 and :: instead, joins the
 * IPv6 group on each interface, and also announces itself every interval
 * (jittered by up to 20% either way) to the IPv4 broadcast address and the
 * IPv6 group of every up interface.
 *
 * A probe is answered by unicast after a random 0-200 ms, at most once per
 * probe, with at most DISCOVERY_AMP_MAX times its size, and only while the
 * per-source and total token buckets allow. Everything else received is
 * counted, never answered, and logged at debug at most once a second.
 */
#ifndef SOCKCHAT_BEACON_H
#define SOCKCHAT_BEACON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "discovery.h"
#include "loop.h"

#define BEACON_INTERVAL_DEFAULT 5.0 /* seconds */
#define BEACON_INTERVAL_MIN 0.2
#define BEACON_INTERVAL_MAX 3600.0
#define BEACON_DELAY_MAX_MS 200 /* answers wait 0 to this, at random */
#define BEACON_PENDING_MAX 64   /* answers waiting for their time */

struct server;
struct beacon; /* opaque */

/* Reads the announced secure policy or fingerprint at each send; NULL or
 * "" from a fingerprint hook means none. Without hooks the beacon reads the
 * server's own: server_cfg()->secure and the key of server_identity(). */
typedef const char *(*beacon_str_fn)(void *arg);

struct beacon_config {
    bool lan;        /* --lan: every interface, announce */
    double interval; /* seconds between beacons (lan) */
    uint16_t port;   /* the discovery port; 0: any (tests) */
    struct discovery_limits limits;
    beacon_str_fn secure_policy; /* NULL: the server's --secure */
    beacon_str_fn fingerprint;   /* NULL: the server's identity, if any */
    void *hook_arg;
};

/* Defaults: loopback only, BEACON_INTERVAL_DEFAULT, DISCOVERY_PORT,
 * answers 2/s (burst 5) per source and 50/s (burst 100) in all. */
void beacon_config_defaults(struct beacon_config *cfg);

/*
 * Open the discovery sockets and watch them with l. The beacon reads the
 * server's name, listeners and counts (server_cfg, server_listeners,
 * server_stats) at every send. CHAT_OK and *out (beacon_free it);
 * otherwise a negative code with why[] filled. A loopback-only beacon
 * succeeds when at least one of its sockets could be bound.
 */
int beacon_new(struct server *srv, struct loop *l,
               const struct beacon_config *cfg, struct beacon **out, char *why,
               size_t why_len);
/* Stop watching and close. NULL is a no-op. */
void beacon_free(struct beacon *b);

/* Send what is due (answers, the periodic beacon). Call once per loop
 * pass; returns the ms until it wants to run again, -1 for never. */
int beacon_tick(struct beacon *b);

/* The discovery port bound (useful with port 0). */
uint16_t beacon_port(const struct beacon *b);

struct beacon_counters {
    uint64_t datagrams_in, bytes_in; /* everything received */
    uint64_t probes;                 /* valid probes received */
    uint64_t answers, answer_bytes;  /* answers sent */
    uint64_t beacons, beacon_bytes;  /* periodic beacons sent */
    uint64_t limited;                /* probes refused by a bucket */
    uint64_t queue_full;             /* probes refused: queue full */
    uint64_t amp_refused;            /* answers over the bound */
    uint64_t heard;                  /* beacons heard (ignored) */
    uint64_t send_errors;
    uint64_t bad[DISCOVERY_BAD_COUNT]; /* refused, by reason */
};
void beacon_get_counters(const struct beacon *b, struct beacon_counters *out);

#endif /* SOCKCHAT_BEACON_H */
