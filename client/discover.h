/* discover.h - finding servers from the client (doc/DISCOVERY.md).
 *
 * Three users: `sockchat --discover` (discover_main), connecting without an
 * address (discover_choose), and the /servers command of a session
 * (discover_session_print). Each sends probes to 127.0.0.1, ::1 and the
 * loopback broadcast address, and to the IPv4 broadcast address and the
 * IPv6 group of every up, non-loopback interface; listens for the answers
 * and for periodic beacons on the discovery port; and keeps one entry per
 * server instance (discovery.h's table).
 *
 * A beacon is a claim by whoever sent it, never proof of who a server is:
 * only the key the server proves in the secure handshake, checked against
 * the known-servers file, is. discover_trust() is the hook that says what
 * that file says of a fingerprint a beacon announces; discover_chose()
 * tells the handshake's trust decision (client.c) which address discovery
 * picked, so that a pinned server found at a new address is recognised by
 * the key it proves there.
 */
#ifndef SOCKCHAT_DISCOVER_H
#define SOCKCHAT_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <glib.h>

#include "discovery.h"
#include "identity.h"

#define DISCOVER_WINDOW_MS 1000 /* no address given, /servers */
#define DISCOVER_DEFAULT_S 2    /* --discover without --timeout */
#define DISCOVER_REPROBE_MS 300 /* a second probe, in case one was lost */

struct discover_opts {
    uint16_t port;             /* the discovery port (DISCOVERY_PORT) */
    bool probe;                /* send probes; false: listen only */
    bool json;                 /* one JSON object per server and line */
    bool watch;                /* print changes as they happen */
    const char *known_servers; /* for discover_trust(); NULL: unchecked */
};

/* What the known-servers file says of the fingerprint a server announces. */
enum discover_trust {
    DISCOVER_TRUST_NONE = 0,  /* no fingerprint announced */
    DISCOVER_TRUST_UNCHECKED, /* no known-servers file to check, or unreadable
                               */
    DISCOVER_TRUST_PINNED,    /* the pinned key for this host and port */
    DISCOVER_TRUST_NEW,       /* nothing pinned for this host and port */
    DISCOVER_TRUST_MISMATCH,  /* another key is pinned: do not trust */
    DISCOVER_TRUST_MOVED,     /* nothing pinned for this host and port, but
                               * this key is pinned under another address */
};

/* "none", "unchecked", "pinned", "new", "mismatch", "moved". */
const char *discover_trust_name(enum discover_trust t);

/*
 * The hook: look s's announced fingerprint up in the known-servers file at
 * known_path (identity.h), under the host and port discover_url() would
 * connect to; when nothing is pinned there, under any other host and port
 * (DISCOVER_TRUST_MOVED, and *pinned, which may be NULL, gets the first
 * such entry; it is zeroed otherwise). A mismatch at the host and port wins
 * over a pin elsewhere. Connecting still verifies the key the server
 * proves; this only tells a listing what to expect.
 */
enum discover_trust discover_trust(const struct discovery_seen *s,
                                   const char *known_path,
                                   struct identity_known_entry *pinned);

/*
 * Whether host and port, as the known-servers file keys them, are those of
 * the server discover_choose() picked (auto-connect or the user's pick) in
 * this process. The handshake's trust decision accepts a key pinned under
 * another address without asking only for such a server: the user asked
 * for "the server out there", not for one address.
 */
bool discover_chose(const char *host, unsigned port);

/* Whether the server discover_choose() picked announced a key pinned under
 * another address (DISCOVER_TRUST_MOVED): the client then tries a secure
 * session even without --secure, as it does for a pinned address, so that
 * the server can prove that key. */
bool discover_chose_moved(void);

/* The address to reach s at, without port ("10.0.0.2", "fe80::1%eth0"):
 * a LAN address before loopback, before IPv6 link-local. */
void discover_host(const struct discovery_seen *s, char *out, size_t n);
/* The URL to connect to s: its tcp endpoint, else its first one. */
void discover_url(const struct discovery_seen *s, char *out, size_t n);

/* Append one line (with '\n') describing s: text, or with o->json one JSON
 * object; event ("new", "gone", ...) is shown when not NULL. */
void discover_format(const struct discovery_seen *s,
                     const struct discover_opts *o, const char *event,
                     GString *out);

/* --discover: probe (unless o->probe is false) and listen for timeout_ms,
 * then print every server seen, sorted by name (with o->watch, print each
 * change as it happens instead). Returns the exit status: 0 when a server
 * was seen, 2 when none was (with a line on stderr). */
int discover_main(const struct discover_opts *o, int timeout_ms);

/*
 * No address given: discover for DISCOVER_WINDOW_MS. One server: its URL.
 * None: "localhost" (the old default), saying so on stderr. Several: with
 * interactive, list them on stdout and read a number or a name from stdin;
 * otherwise list them on stderr and fail. true with url[] filled; false
 * with *status set to an exit status.
 */
bool discover_choose(const struct discover_opts *o, bool interactive, char *url,
                     size_t n, int *status);

/* /servers: remember o (copied) for the session... */
void discover_session_setup(const struct discover_opts *o);
/* ...then discover for DISCOVER_WINDOW_MS (the session waits) and print
 * what was seen to out. */
void discover_session_print(FILE *out);

#endif /* SOCKCHAT_DISCOVER_H */
