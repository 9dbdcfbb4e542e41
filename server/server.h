/* server.h - sockchatd's connections, listeners and dispatch.
 *
 * Private to server/: server.c owns the sockets and queues; commands.c
 * handles one validated request at a time through the helpers below.
 */
#ifndef SOCKCHAT_SERVER_H
#define SOCKCHAT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <glib.h>

#include "addr.h"
#include "buf.h"
#include "loop.h"
#include "message.h"
#include "outq.h"
#include "rate.h"
#include "rooms.h"
#include "identity.h"
#include "secure.h"

/* --secure: whether clients may, or must, encrypt their session. */
enum secure_policy {
    SECURE_POLICY_OFF = 0,
    SECURE_POLICY_OPTIONAL,
    SECURE_POLICY_REQUIRED,
};

/* Limits that SIGHUP may change, and the rest of the configuration. */
struct server_config {
    char **listen;         /* NULL-terminated URLs */
    char *name;
    char *motd;            /* "" for none */
    unsigned max_clients;
    unsigned max_rooms;    /* rooms one client may be in */
    unsigned room_cap;     /* rooms the server keeps */
    unsigned history;
    double rate;           /* requests per second, 0 = off */
    double burst;
    size_t max_queue;      /* bytes queued per client */
    size_t max_frame;
    unsigned idle_timeout; /* seconds */
    enum secure_policy secure;
};

struct server;

struct client {
    struct server *srv;
    struct transport *t;
    int fd;
    unsigned id;            /* "conn %u" in logs */
    char peer[ADDR_STR_MAX];
    char *nick;             /* NULL before hello */
    char *nick_key;         /* folded nick, key of the nick table */
    bool registered;
    bool closing;           /* flushing a last error or bye, then close */
    bool shut;              /* SHUT_WR sent, draining input until EOF */
    struct buf in;
    struct outq out;        /* shared frames waiting for the socket */
    GPtrArray *rooms;       /* struct room *, rooms this client is in */
    struct rate rate;
    int64_t last_rx;        /* monotonic ms of the last complete frame */
    int64_t ping_at;        /* monotonic ms a ping was sent, 0 if none */
    int64_t close_by;       /* monotonic ms to give up flushing */
    unsigned ping_token;
    unsigned frames;        /* frames received: `secure` must be the first */
    struct secure_session *sec; /* NULL for a plaintext session */
    size_t raw_out;         /* queued bytes that go out unsealed (the
                             * secure reply, queued before sealing began) */
    struct frame_blob *sealed; /* a sealed batch being written, or NULL */
    size_t sealed_off;      /* bytes of it written */
    bool final_due;         /* TAG_FINAL goes after what is queued */
    bool verified;          /* proved a long-term key in hello */
    char fp[IDENTITY_FP_SIZE]; /* its fingerprint, when verified */
};

/* A new server using loop l and a copy of cfg. */
struct server *server_new(const struct server_config *cfg, struct loop *l);
void server_free(struct server *s); /* closes every connection */

/* Listen on url. CHAT_OK, or an error with why[] filled. */
int server_listen(struct server *s, const char *url, char *why,
                  size_t why_len);
/* Bound endpoints as URLs with real ports, one per line (g_free it). */
char *server_endpoints(const struct server *s);

/* Run timers: idle pings and timeouts, close deadlines. Call often; returns
 * the ms until it wants to run again. */
int server_tick(struct server *s);
/* Flush the output queued during a loop pass: call after every pass, so
 * that a burst of events costs one send() per client. */
void server_after_pass(struct server *s);
/* Apply new limits and motd (SIGHUP). */
void server_reconfigure(struct server *s, const struct server_config *cfg);
/* Send bye to every client and close them all (SIGTERM), flushing what the
 * sockets accept within deadline_ms. */
void server_shutdown(struct server *s, int deadline_ms);

/* Registered users and active rooms, for announcements (beacon). */
void server_stats(const struct server *s, unsigned *users, unsigned *rooms);
/* The listeners' endpoints: transport name and port of each, in order;
 * *n is set to their number (at most max). */
void server_listeners(const struct server *s, const char **names,
                      unsigned short *ports, size_t max, size_t *n);

/* The server's long-term key and the reserved-nicks store (NULL: nicks
 * are not reserved). The server takes both. */
void server_set_identity(struct server *s, struct identity *id,
                         struct identity_nicks *nicks);
const struct identity *server_identity(const struct server *s);
struct identity_nicks *server_nicks(struct server *s);

/* Payload bytes a frame to c may carry (max_frame less the seal of a
 * secure session), and that an event to many receivers may carry. */
size_t client_payload_max(const struct client *c);
size_t server_event_max(const struct server *s);

/* For commands.c. */
const struct server_config *server_cfg(const struct server *s);
struct rooms *server_rooms(struct server *s);
struct client *server_find_nick(struct server *s, const char *nick);
/* Give c the nick (registering or renaming it in the nick table). */
void server_set_nick(struct server *s, struct client *c, const char *nick);
/* Queue the encoded frame payload for c; on overflow c is dropped with
 * slow_consumer. false if c is (now) closing. */
bool client_send_raw(struct client *c, const char *json, size_t len);
/* From now on every frame for c is sealed with sec (which c owns); what is
 * queued already (the secure reply) goes out as it is. */
void client_start_sealing(struct client *c, struct secure_session *sec);
/* The same for a frame already built, shared with other receivers. */
bool client_send_blob(struct client *c, struct frame_blob *b);
/* Encode obj and queue it for c; obj is kept (caller deletes). */
bool client_send(struct client *c, const cJSON *obj);
/* Send an error reply to c. */
void client_send_error(struct client *c, enum proto_err code,
                       const char *text, const char *request,
                       const cJSON *id);
/* Encode obj once and queue it for every member of r but except (which
 * may be NULL). */
void server_send_room(struct server *s, struct room *r, const cJSON *obj,
                      const struct client *except);
/* Encode obj once and queue it for every client that shares a room with c,
 * each once, and c itself when include_self. */
void server_send_peers(struct server *s, struct client *c, const cJSON *obj,
                       bool include_self);
/* Start closing c: it leaves its rooms (others see quit with reason) and
 * the connection closes once its queue is flushed. */
void client_close(struct client *c, const char *reason);
int64_t server_now(void); /* monotonic ms */

/* commands.c: handle one frame payload from c. */
void commands_dispatch(struct client *c, const uint8_t *p, size_t n);

#endif /* SOCKCHAT_SERVER_H */
