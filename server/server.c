/* server.c - sockchatd's sockets: listeners, connections, output queues and
 * timers. The protocol itself is in commands.c.
 *
 * Single-threaded and non-blocking: the loop says which descriptors are
 * ready, and no call here ever waits. Output goes to a bounded per-client
 * queue; queues are flushed once per loop pass, so a burst of events costs
 * one send() per client, not one per event.
 */
#include "config.h"

#include "server.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#ifdef HAVE_MALLOC_TRIM
#include <malloc.h>
#endif

#include "err.h"
#include "frame.h"
#include "log.h"
#include "transport.h"

#define SERVER_MAX_LISTENERS 32
#define ACCEPTS_PER_PASS 64
#define CLOSE_GRACE_MS 2000      /* to flush a last error before closing */
#define TRIM_EVERY_MS 10000      /* server_trim at most this often */
#define ACCEPT_PAUSE_MS 100      /* after EMFILE: let descriptors free up */
#define TICK_MS 200
#define FLUSH_IOV 1024           /* frames handed to one sendmsg() (IOV_MAX) */
#define READ_CHUNK 16384         /* bytes read from a client at once */

struct listener {
    struct server *srv;
    struct transport *t;
};

struct server {
    struct server_config cfg;
    struct loop *loop;
    struct rooms *rooms;
    GPtrArray *listeners;  /* struct listener * */
    GHashTable *clients;   /* struct client * set (owns them) */
    GHashTable *nicks;     /* folded nick -> struct client * */
    GPtrArray *pending;    /* clients with output to flush this pass */
    GHashTable *timed;     /* clients whose transport runs timers */
    unsigned next_id;
    int64_t accept_paused_until;
    int64_t emfile_logged;
    int64_t next_sweep; /* monotonic ms of the next idle sweep */
    unsigned closing;   /* clients flushing a last word: not counted */
    bool stopping;      /* server_shutdown(): everyone gets bye, no quits */
    unsigned trim_peak; /* most clients since memory was last trimmed */
    int64_t trim_next;  /* not before this (monotonic ms) */
    struct frame_blob *bye; /* while stopping: the bye every client gets */
    uint8_t rx[READ_CHUNK];        /* every client's reads land here first */
    GByteArray *batch;             /* a secure batch's plaintext, built here */
    struct identity *id;           /* long-term key, for secure sessions */
    struct identity_nicks *reserved; /* reserved nicks, or NULL */
};

static void client_destroy(struct client *c);

static bool
client_sealing(const struct client *c)
{
    return c->sec && secure_established(c->sec);
}

/* Anything left to write to c: queued frames, a sealed batch part-sent, or
 * a secure session's TAG_FINAL still to seal. */
static bool
client_has_output(const struct client *c)
{
    return outq_bytes(&c->out) > 0 || c->sealed != NULL ||
           (c->final_due && !secure_tx_finished(c->sec));
}
static void client_say_bye(struct client *c);

/* A snapshot of the clients, safe to walk while some go away. */
static GPtrArray *
server_all_clients(struct server *s)
{
    GPtrArray *all = g_ptr_array_sized_new(g_hash_table_size(s->clients));
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, s->clients);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(all, k);
    return all;
}
static void client_on_io(struct loop *l, int fd, unsigned events, void *arg);

int64_t
server_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
config_copy(struct server_config *dst, const struct server_config *src)
{
    *dst = *src;
    dst->listen = g_strdupv(src->listen);
    dst->name = g_strdup(src->name);
    dst->motd = g_strdup(src->motd ? src->motd : "");
}

static void
config_clear(struct server_config *cfg)
{
    g_strfreev(cfg->listen);
    g_free(cfg->name);
    g_free(cfg->motd);
    memset(cfg, 0, sizeof(*cfg));
}

struct server *
server_new(const struct server_config *cfg, struct loop *l)
{
    struct server *s = g_new0(struct server, 1);

    config_copy(&s->cfg, cfg);
    s->loop = l;
    s->rooms = rooms_new(cfg->room_cap, cfg->history);
    s->listeners = g_ptr_array_new();
    s->clients = g_hash_table_new(g_direct_hash, g_direct_equal);
    s->nicks = g_hash_table_new(g_str_hash, g_str_equal);
    s->pending = g_ptr_array_new();
    s->batch = g_byte_array_new();
    s->timed = g_hash_table_new(g_direct_hash, g_direct_equal);
    return s;
}

void
server_free(struct server *s)
{
    GPtrArray *all;
    guint i;

    if (!s)
        return;
    all = server_all_clients(s);
    for (i = 0; i < all->len; i++)
        client_destroy(g_ptr_array_index(all, i));
    g_ptr_array_unref(all);
    for (i = 0; i < s->listeners->len; i++) {
        struct listener *ls = g_ptr_array_index(s->listeners, i);

        loop_del_fd(s->loop, transport_fd(ls->t));
        transport_close(ls->t);
        g_free(ls);
    }
    g_ptr_array_unref(s->listeners);
    g_byte_array_unref(s->batch);
    g_hash_table_destroy(s->clients);
    g_hash_table_destroy(s->nicks);
    g_ptr_array_unref(s->pending);
    g_hash_table_destroy(s->timed);
    rooms_free(s->rooms);
    identity_free(s->id);
    identity_nicks_free(s->reserved);
    config_clear(&s->cfg);
    g_free(s);
}

void
server_set_identity(struct server *s, struct identity *id,
                    struct identity_nicks *nicks)
{
    identity_free(s->id);
    identity_nicks_free(s->reserved);
    s->id = id;
    s->reserved = nicks;
}

const struct identity *
server_identity(const struct server *s)
{
    return s->id;
}

struct identity_nicks *
server_nicks(struct server *s)
{
    return s->reserved;
}

size_t
client_payload_max(const struct client *c)
{
    return c->srv->cfg.max_frame - (c->sec ? SECURE_OVERHEAD_MAX : 0);
}

size_t
server_event_max(const struct server *s)
{
    /* Events go to plaintext and secure receivers alike: the seal of the
     * latter must fit too. */
    return s->cfg.max_frame -
           (s->cfg.secure != SECURE_POLICY_OFF ? SECURE_OVERHEAD_MAX : 0);
}

const struct server_config *
server_cfg(const struct server *s)
{
    return &s->cfg;
}

struct rooms *
server_rooms(struct server *s)
{
    return s->rooms;
}

void
server_reconfigure(struct server *s, const struct server_config *cfg)
{
    char **listen = s->cfg.listen;
    char *name = s->cfg.name;
    size_t max_frame = s->cfg.max_frame;
    GHashTableIter it;
    gpointer k, v;

    /* Listeners, the name and max-frame stay as they are: rebinding is a
     * restart's job, and every connection's input buffer and its peer's
     * idea of the frame limit were sized by max-frame at welcome. */
    s->cfg.listen = NULL;
    s->cfg.name = NULL;
    config_clear(&s->cfg);
    config_copy(&s->cfg, cfg);
    g_strfreev(s->cfg.listen);
    g_free(s->cfg.name);
    s->cfg.listen = listen;
    s->cfg.name = name;
    s->cfg.max_frame = max_frame;
    if (s->cfg.max_queue < max_frame + FRAME_HDR)
        s->cfg.max_queue = max_frame + FRAME_HDR;
    /* A queue already longer than a lowered cap drains before new frames
     * fit; it is never cut. */
    g_hash_table_iter_init(&it, s->clients);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct client *c = k;

        if (!c->closing)
            c->out.cap = MAX(s->cfg.max_queue, outq_bytes(&c->out));
    }
    rooms_set_limits(s->rooms, cfg->room_cap, cfg->history);
    log_info("configuration reloaded: motd, limits and rates now apply");
}

/* ---- nick table -------------------------------------------------------- */

struct client *
server_find_nick(struct server *s, const char *nick)
{
    char *key = msg_fold(nick);
    struct client *c = g_hash_table_lookup(s->nicks, key);

    g_free(key);
    return c;
}

void
server_set_nick(struct server *s, struct client *c, const char *nick)
{
    if (c->nick_key)
        g_hash_table_remove(s->nicks, c->nick_key);
    g_free(c->nick);
    g_free(c->nick_key);
    c->nick = g_strdup(nick);
    c->nick_key = msg_fold(nick);
    g_hash_table_insert(s->nicks, c->nick_key, c);
}

/* ---- output ------------------------------------------------------------ */

/* Keep c in the set of clients whose transport has timers running. */
static void
server_track_timers(struct client *c)
{
    if (transport_next_timeout(c->t, server_now()) >= 0)
        g_hash_table_add(c->srv->timed, c);
    else
        g_hash_table_remove(c->srv->timed, c);
}

static void
client_want(struct client *c)
{
    unsigned ev = 0;

    if (!c->closing || c->shut)
        ev |= LOOP_READ;
    if (client_has_output(c))
        ev |= LOOP_WRITE;
    /* The transport may need other events than the ones we want (udp
     * waits for acks, not writability, while its window is full). */
    loop_mod_fd(c->srv->loop, c->fd, transport_poll_events(c->t, ev));
    server_track_timers(c);
}

static void
client_mark_pending(struct client *c)
{
    /* Only an empty queue can be missing from the list: a non-empty one is
     * already there or waits for LOOP_WRITE. */
    g_ptr_array_add(c->srv->pending, c);
}

/* Send up to limit bytes from the head of c's queue as they are. CHAT_OK,
 * with data maybe left (the socket took what it could), or an error. */
static int
client_send_queued(struct client *c, size_t limit)
{
    struct iovec iov[FLUSH_IOV];

    while (limit > 0 && outq_bytes(&c->out) > 0) {
        int cnt = outq_iov(&c->out, iov, FLUSH_IOV), use;
        size_t offered = 0;
        ssize_t n;

        for (use = 0; use < cnt && offered < limit; use++) {
            if (iov[use].iov_len > limit - offered)
                iov[use].iov_len = limit - offered;
            offered += iov[use].iov_len;
        }
        n = transport_sendv(c->t, iov, use);
        if (n == CHAT_EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        outq_consume(&c->out, (size_t)n);
        limit -= (size_t)n;
        if ((size_t)n < offered) /* the socket is full: no EAGAIN call */
            break;
    }
    return CHAT_OK;
}

/*
 * Seal what c has queued into c->sealed: every frame that fits one sealed
 * frame (SECURE.md 5: a batch, or the frame's message alone when only one
 * is queued), or the empty TAG_FINAL record once the queue is out. One seal
 * per receiver and flush, not per frame: under load a batch carries tens
 * of messages. The queue holds the shared plaintext frames until then.
 * CHAT_OK, CHAT_EAGAIN (nothing to seal), CHAT_ENOMEM or CHAT_ECRYPTO.
 */
static int
client_seal_next(struct client *c)
{
    struct iovec iov[FLUSH_IOV];
    size_t total = 0, want, ctlen = 0;
    struct frame_blob *blob;
    uint8_t *payload = NULL, *ct = NULL;
    int take = 0, i, rc;

    if (outq_bytes(&c->out) == 0) {
        if (!c->final_due || secure_tx_finished(c->sec))
            return CHAT_EAGAIN;
        /* The end: an empty message with TAG_FINAL. */
        want = secure_sealed_len(c->sec, 0);
        blob = frame_blob_alloc(want, &payload);
        if (blob == NULL)
            return CHAT_ENOMEM;
        rc = secure_seal(c->sec, "", 0, true, &ct, &ctlen);
    } else {
        /* Whole frames only (the queue's head is never part-sent here),
         * and at least one: client_queue() made sure it fits alone. A
         * batch's plaintext is 1 + the frames as queued (SECURE.md 5). */
        size_t cap = c->srv->cfg.max_frame - SECURE_OVERHEAD_MAX - 1;
        int cnt = outq_iov(&c->out, iov, FLUSH_IOV);

        for (; take < cnt; take++) {
            if (take > 0 && total + iov[take].iov_len > cap)
                break;
            total += iov[take].iov_len;
        }
        for (i = 0; i < take; i++) { /* the messages, without headers */
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + FRAME_HDR;
            iov[i].iov_len -= FRAME_HDR;
        }
        want = take == 1 ? secure_sealed_len(c->sec, iov[0].iov_len)
                         : secure_batch_sealed_len(c->sec, iov, (size_t)take);
        blob = frame_blob_alloc(want, &payload);
        if (blob == NULL)
            return CHAT_ENOMEM;
        if (take == 1)
            rc = secure_seal(c->sec, iov[0].iov_base, iov[0].iov_len, false,
                             &ct, &ctlen);
        else
            rc = secure_seal_batch(c->sec, iov, (size_t)take, false,
                                   c->srv->batch, payload, want, &ctlen);
    }
    if (rc != CHAT_OK || ctlen != want) { /* the lengths are promised */
        g_free(ct);
        frame_blob_unref(blob);
        return CHAT_ECRYPTO;
    }
    if (ct != NULL)
        memcpy(payload, ct, ctlen);
    g_free(ct);
    outq_consume(&c->out, total);
    c->sealed = blob;
    c->sealed_off = 0;
    return CHAT_OK;
}

/* client_flush() for a secure session: the unsealed head (the secure
 * reply), then sealed batches, one at a time. */
static int
client_flush_sealed(struct client *c)
{
    int rc;

    if (c->raw_out > 0) {
        size_t before = outq_bytes(&c->out);

        rc = client_send_queued(c, c->raw_out);
        if (rc != CHAT_OK)
            return rc;
        c->raw_out -= before - outq_bytes(&c->out);
        if (c->raw_out > 0)
            return CHAT_OK;
    }
    for (;;) {
        ssize_t n;
        size_t size;

        if (c->sealed == NULL) {
            rc = client_seal_next(c);
            if (rc == CHAT_EAGAIN)
                return CHAT_OK;
            if (rc != CHAT_OK)
                return rc;
        }
        size = frame_blob_size(c->sealed);
        n = transport_send(c->t, frame_blob_data(c->sealed) + c->sealed_off,
                           size - c->sealed_off);
        if (n == CHAT_EAGAIN)
            return CHAT_OK;
        if (n < 0)
            return (int)n;
        c->sealed_off += (size_t)n;
        if (c->sealed_off < size)
            return CHAT_OK; /* the socket is full */
        frame_blob_unref(c->sealed);
        c->sealed = NULL;
    }
}

/* Write what the socket takes. CHAT_OK (maybe data left), or an error after
 * which the connection must go. */
static int
client_flush(struct client *c)
{
    int rc = client_sealing(c) ? client_flush_sealed(c)
                               : client_send_queued(c, SIZE_MAX);

    if (rc != CHAT_OK)
        return rc;
    if (!client_has_output(c) && c->closing && !c->shut) {
        /* Everything said: send FIN, then read until the peer closes, so
         * that unread input does not turn our close into a reset that
         * destroys the error we just sent. */
        transport_shutdown(c->t);
        c->shut = true;
    }
    client_want(c);
    return CHAT_OK;
}

/* client_flush() failed with rc: the peer is gone. Say how to the others,
 * as a failed read does (ECONNRESET: reset; EPIPE: the peer closed, which
 * is all a UNIX stream can tell), and drop c. */
static void
client_flush_failed(struct client *c, int rc)
{
    const char *why = "connection error";

    if (rc == CHAT_ENOMEM) {
        log_warn("conn %u: out of memory for its output; dropping it", c->id);
        why = "out of memory";
    } else if (errno == ECONNRESET)
        why = "connection reset";
    else if (rc == CHAT_ECLOSED)
        why = "connection closed";
    client_close(c, why);
    client_destroy(c);
}

static void
server_flush_pending(struct server *s)
{
    guint i;

    for (i = 0; i < s->pending->len; i++) {
        struct client *c = g_ptr_array_index(s->pending, i);

        int rc;

        /* client_destroy() NULLs its entries. */
        if (c && (rc = client_flush(c)) != CHAT_OK)
            client_flush_failed(c, rc);
    }
    g_ptr_array_set_size(s->pending, 0);
}

/*
 * Queue frame b for c. A secure session's frames are queued as they are
 * too, shared with the other receivers, and sealed when they are flushed
 * (client_seal_next). CHAT_OK, CHAT_EFULL (the queue is full), CHAT_ENOMEM
 * (no memory for the queue; nothing queued), CHAT_ECLOSED (a secure
 * session whose end is already queued) or CHAT_ETOOBIG (over max_frame,
 * sealed: the builders keep replies under it, so this is a bug, and the
 * frame is dropped rather than the client).
 */
static int
client_queue(struct client *c, struct frame_blob *b, bool force)
{
    bool was_idle = !client_has_output(c);
    size_t len = frame_blob_size(b) - FRAME_HDR;
    size_t wire = frame_blob_size(b), sealed = len;
    int rc;

    if (client_sealing(c)) {
        if (c->final_due || secure_tx_finished(c->sec))
            return CHAT_ECLOSED;
        sealed = secure_sealed_len(c->sec, len);
    }
    if (sealed > c->srv->cfg.max_frame) {
        log_warn("conn %u: not sending a frame of %zu bytes (max-frame %zu)",
                 c->id, sealed, c->srv->cfg.max_frame);
        return CHAT_ETOOBIG;
    }
    if (!force && (wire > c->out.cap || outq_bytes(&c->out) > c->out.cap - wire))
        return CHAT_EFULL;
    rc = outq_push_force(&c->out, b);
    if (rc != CHAT_OK)
        return rc;
    if (was_idle)
        client_mark_pending(c);
    return CHAT_OK;
}

/* A secure session's last frame: an empty message with TAG_FINAL, so that
 * the client can tell our orderly end from a cut connection. It is sealed
 * once everything queued before it is out. */
static void
client_queue_final(struct client *c)
{
    bool was_idle = !client_has_output(c);

    if (!client_sealing(c) || c->final_due || secure_tx_finished(c->sec))
        return;
    c->final_due = true;
    if (was_idle)
        client_mark_pending(c);
}

void
client_start_sealing(struct client *c, struct secure_session *sec)
{
    c->sec = sec;
    c->raw_out = outq_bytes(&c->out);
}

/* obj framed in a new blob, or NULL when memory ran out. As msg_encode(),
 * but framed straight from cJSON's text: its g_strndup() copy would abort
 * where a reply as large as a frame (a room's history) may not fit. */
static struct frame_blob *
blob_of(const cJSON *obj)
{
    char *text = cJSON_PrintUnformatted(obj); /* NULL: malloc failed */
    struct frame_blob *b = NULL;

    if (text != NULL)
        b = frame_blob_new(text, strlen(text));
    cJSON_free(text);
    return b;
}

/* Queue error code for c whatever its queue holds: a last word before
 * closing it. Best effort: nothing is queued when memory runs out. */
static void
client_queue_last_error(struct client *c, enum proto_err code,
                        const char *text)
{
    cJSON *err = msg_build_error(code, text, NULL, NULL);
    struct frame_blob *eb = err ? blob_of(err) : NULL;

    if (eb)
        client_queue(c, eb, true);
    frame_blob_unref(eb);
    cJSON_Delete(err);
}

/*
 * Memory ran out for something c's traffic needed: its input buffer, its
 * output queue, or a frame for it (a reply, its sealed copy of an event).
 * Drop c, not the server: tell it (server_full, PROTOCOL.md 4.2) and close
 * it, so that its rooms see it quit with "out of memory". A plaintext
 * client loses what it had not begun to read, which frees that memory now
 * and lets the error be queued without growing the ring; a secure one
 * keeps it, since dropping sealed frames would leave the error unreadable.
 */
static void
client_drop_nomem(struct client *c, const char *what)
{
    if (c->closing)
        return;
    log_warn("conn %u: out of memory for its %s; dropping it", c->id, what);
    if (c->raw_out == 0) /* a secure reply part-sent stays whole */
        outq_drop_unsent(&c->out);
    client_queue_last_error(c, PE_SERVER_FULL,
                            "the server ran out of memory; closing");
    client_close(c, "out of memory");
}

bool
client_send_blob(struct client *c, struct frame_blob *b)
{
    int rc;

    if (c->closing)
        return false;
    rc = client_queue(c, b, false);
    if (rc == CHAT_OK)
        return true;
    if (rc == CHAT_ENOMEM) {
        client_drop_nomem(c, "output");
        return false;
    }
    if (rc != CHAT_EFULL)
        return false;
    /* The queue is full: this client does not read. Tell it (best effort:
     * the error waits behind what is queued) and let it go, so that nobody
     * else waits for it. */
    log_info("conn %u: output queue over %zu bytes, dropping", c->id,
             c->srv->cfg.max_queue);
    client_queue_last_error(c, PE_SLOW_CONSUMER,
                            "you did not read fast enough; closing");
    client_close(c, "slow consumer");
    return false;
}

bool
client_send_raw(struct client *c, const char *json, size_t len)
{
    struct frame_blob *b;
    bool ok;

    if (c->closing)
        return false;
    b = frame_blob_new(json, len);
    if (b == NULL) {
        client_drop_nomem(c, "output");
        return false;
    }
    ok = client_send_blob(c, b);
    frame_blob_unref(b);
    return ok;
}

bool
client_send(struct client *c, const cJSON *obj)
{
    struct frame_blob *b;
    bool ok;

    if (c->closing || obj == NULL)
        return false;
    b = blob_of(obj);
    if (b == NULL) {
        client_drop_nomem(c, "output");
        return false;
    }
    ok = client_send_blob(c, b);
    frame_blob_unref(b);
    return ok;
}

void
client_send_error(struct client *c, enum proto_err code, const char *text,
                  const char *request, const cJSON *id)
{
    cJSON *e = msg_build_error(code, text, request, id);

    client_send(c, e);
    cJSON_Delete(e);
}

/*
 * Send obj to every client of to but except, as one frame shared by their
 * queues. When that frame cannot be allocated, nobody gets it, and every
 * receiver is dropped as out of memory: an event (joined, left, quit, a
 * topic, a new nick) reports a change that has already happened, so a
 * member that missed it would no longer see the room as it is. (cmd_say
 * allocates its frame before the message takes a seq, and drops only the
 * sender when it cannot.)
 */
static void
server_fan_out(GPtrArray *to, const struct client *except, const cJSON *obj)
{
    struct frame_blob *b = blob_of(obj);
    guint i;

    for (i = 0; i < to->len; i++) {
        struct client *m = g_ptr_array_index(to, i);

        if (m == except)
            continue;
        if (b)
            client_send_blob(m, b);
        else
            client_drop_nomem(m, "events");
    }
    frame_blob_unref(b);
}

void
server_send_room(struct server *s, struct room *r, const cJSON *obj,
                 const struct client *except)
{
    /* Iterate over a copy: a slow consumer leaves the room as we go. */
    GPtrArray *members = g_ptr_array_copy(r->members, NULL, NULL);

    (void)s;
    server_fan_out(members, except, obj);
    g_ptr_array_unref(members);
}

void
server_send_peers(struct server *s, struct client *c, const cJSON *obj,
                  bool include_self)
{
    GHashTable *seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    GPtrArray *to = g_ptr_array_new();
    guint i, j;

    (void)s;
    g_hash_table_add(seen, c); /* c is added first or not at all */
    for (i = 0; i < c->rooms->len; i++) {
        struct room *r = g_ptr_array_index(c->rooms, i);

        for (j = 0; j < r->members->len; j++) {
            struct client *m = g_ptr_array_index(r->members, j);

            if (g_hash_table_add(seen, m))
                g_ptr_array_add(to, m);
        }
    }
    if (include_self)
        g_ptr_array_insert(to, 0, c);
    server_fan_out(to, NULL, obj);
    g_ptr_array_unref(to);
    g_hash_table_destroy(seen);
}

/* ---- closing ----------------------------------------------------------- */

void
client_close(struct client *c, const char *reason)
{
    struct server *s = c->srv;

    if (c->closing)
        return;
    if (c->registered) {
        cJSON *q = msg_build_quit(c->nick, reason, msg_now_ms());
        guint i;

        c->closing = true; /* nothing more is queued for c itself */
        if (!s->stopping) /* at shutdown, everyone's last word is bye */
            server_send_peers(s, c, q, false);
        cJSON_Delete(q);
        for (i = 0; i < c->rooms->len; i++)
            room_remove_member(s->rooms, g_ptr_array_index(c->rooms, i), c);
        g_ptr_array_set_size(c->rooms, 0);
        g_hash_table_remove(s->nicks, c->nick_key);
        log_info("conn %u: %s left: %s", c->id, c->nick,
                 reason ? reason : "quit");
    } else {
        log_debug("conn %u: closing before hello: %s", c->id,
                  reason ? reason : "quit");
    }
    c->closing = true;
    c->registered = false;
    c->close_by = server_now() + CLOSE_GRACE_MS;
    s->closing++;
    client_queue_final(c);
    /* Flush at the end of this pass, then shut down. */
    client_mark_pending(c);
}

static void
client_destroy(struct client *c)
{
    struct server *s = c->srv;
    guint i;

    if (!c->closing)
        client_close(c, "connection closed");
    for (i = 0; i < s->pending->len; i++)
        if (g_ptr_array_index(s->pending, i) == c)
            s->pending->pdata[i] = NULL;
    g_hash_table_remove(s->clients, c);
    g_hash_table_remove(s->timed, c);
    s->closing--; /* client_close() above made sure c was counted */
    loop_del_fd(s->loop, c->fd);
    transport_close(c->t);
    buf_cleanup(&c->in);
    outq_cleanup(&c->out);
    frame_blob_unref(c->sealed);
    secure_free(c->sec);
    g_ptr_array_unref(c->rooms);
    g_free(c->nick);
    g_free(c->nick_key);
    log_debug("conn %u: closed", c->id);
    g_free(c);
}

/* ---- input ------------------------------------------------------------- */

/* Open one sealed frame and hand its messages on: one, or each message of
 * a batch in order (doc/SECURE.md section 5). Nothing that fails to open
 * (tampered, replayed, reordered, truncated) and nothing of a malformed
 * batch reaches the chat layer: the session ends with secure_failed. */
static void
client_dispatch_sealed(struct client *c, struct buf *in, const uint8_t *body,
                       size_t len)
{
    uint8_t *pt = NULL;
    const uint8_t *msg;
    size_t ptlen = 0, off = 0, mlen;
    bool final = false;
    int rc = secure_open(c->sec, body, len, &pt, &ptlen, &final);

    frame_consume(in, len);
    if (rc != CHAT_OK) {
        log_info("conn %u: a sealed frame did not open; closing", c->id);
        client_send_error(c, PE_SECURE_FAILED,
                          "a frame failed authentication; closing", NULL,
                          NULL);
        client_close(c, "secure session failed");
        return;
    }
    while (!c->closing &&
           (rc = secure_plain_next(pt, ptlen, &off, &msg, &mlen)) == CHAT_OK)
        commands_dispatch(c, msg, mlen);
    g_free(pt);
    if (rc == CHAT_EPROTO && !c->closing) {
        log_info("conn %u: a sealed batch is malformed; closing", c->id);
        client_send_error(c, PE_SECURE_FAILED,
                          "a sealed batch is malformed; closing", NULL, NULL);
        client_close(c, "secure session failed");
        return;
    }
    /* The client's last word: whatever it said, nothing may follow. */
    if (final && !c->closing)
        client_close(c, "connection closed");
}

static void
client_handle_frames(struct client *c, struct buf *in)
{
    const uint8_t *body;
    size_t len;
    int rc;

    while (!c->closing) {
        rc = frame_peek(in, c->srv->cfg.max_frame, &body, &len);
        if (rc == CHAT_EAGAIN)
            return;
        if (rc == CHAT_EPROTO) {
            client_send_error(c, PE_BAD_FRAME, "a frame length must not be 0",
                              NULL, NULL);
            client_close(c, "protocol error");
            return;
        }
        if (rc == CHAT_ETOOBIG) {
            char text[96];

            g_snprintf(text, sizeof(text), "frames are limited to %zu bytes",
                       c->srv->cfg.max_frame);
            client_send_error(c, PE_FRAME_TOO_LARGE, text, NULL, NULL);
            client_close(c, "protocol error");
            return;
        }
        c->last_rx = server_now();
        c->ping_at = 0;
        c->frames++;
        if (client_sealing(c)) {
            client_dispatch_sealed(c, in, body, len);
            continue;
        }
        commands_dispatch(c, body, len);
        frame_consume(in, len);
    }
}

/* Handle n bytes just read into the server's read buffer. Whole frames are
 * handled straight from it; only a partial frame is kept in c->in, so a
 * client that sends whole frames never holds an input buffer. */
static void
client_take_input(struct client *c, size_t n)
{
    struct buf view;
    int rc = CHAT_OK;

    if (c->closing) {
        /* Frames that follow a close are ignored (PROTOCOL.md 1.4). */
        buf_cleanup(&c->in);
        return;
    }
    if (buf_len(&c->in) > 0) {
        /* n <= buf_room: see client_read */
        rc = buf_try_append(&c->in, c->srv->rx, n);
        if (rc == CHAT_OK)
            client_handle_frames(c, &c->in);
    } else {
        buf_view(&view, c->srv->rx, n);
        client_handle_frames(c, &view);
        if (!c->closing && buf_len(&view) > 0)
            rc = buf_try_append(&c->in, buf_ptr(&view), buf_len(&view));
    }
    if (rc == CHAT_ENOMEM) {
        /* The partial frame cannot be kept, so the stream cannot go on. */
        buf_cleanup(&c->in);
        client_drop_nomem(c, "input buffer");
    }
    if (buf_len(&c->in) == 0)
        buf_cleanup(&c->in);
}

/* Read once. false when the connection is gone and c was destroyed. */
static bool
client_read(struct client *c)
{
    uint8_t *rx = c->srv->rx;
    size_t want;
    ssize_t n;

    if (c->shut) {
        /* Draining after our FIN: discard until the peer closes (or the
         * close deadline passes). */
        n = transport_recv(c->t, rx, READ_CHUNK);
        if (n > 0 || n == CHAT_EAGAIN)
            return true;
        client_destroy(c);
        return false;
    }
    /* Never more than c->in could take, so its cap bounds a frame. */
    want = buf_room(&c->in) < READ_CHUNK ? buf_room(&c->in) : READ_CHUNK;
    if (want == 0) /* cannot happen: frames are handled as they complete */
        return true;
    n = transport_recv(c->t, rx, want);
    if (n == CHAT_EAGAIN)
        return true;
    if (n == CHAT_ECLOSED) {
        /* The peer may have only half-closed: answer what it sent, then
         * close after the replies are out. */
        client_handle_frames(c, &c->in);
        client_close(c, "connection closed");
        return true;
    }
    if (n < 0) {
        client_close(c, errno == ECONNRESET ? "connection reset"
                                            : "connection error");
        client_destroy(c);
        return false;
    }
    client_take_input(c, (size_t)n);
    return true;
}

/* Run c's transport timers. false when the stream died and c is gone. */
static bool
client_run_timers(struct client *c, int64_t now, int *wait)
{
    int due = transport_next_timeout(c->t, now), rc;

    if (due > 0) {
        if (due < *wait)
            *wait = due;
        return true;
    }
    if (due < 0) {
        g_hash_table_remove(c->srv->timed, c);
        return true;
    }
    rc = transport_tick(c->t, now);
    if (rc != CHAT_OK) {
        client_close(c, rc == CHAT_ECLOSED ? "connection reset" : "timeout");
        client_destroy(c);
        return false;
    }
    /* A tick may have opened the send window or changed what to watch. */
    if (client_has_output(c))
        client_mark_pending(c);
    client_want(c);
    due = transport_next_timeout(c->t, now);
    if (due >= 0 && due < *wait)
        *wait = due;
    return true;
}

static void
client_on_io(struct loop *l, int fd, unsigned events, void *arg)
{
    struct client *c = arg;

    (void)l;
    (void)fd;
    if ((events & LOOP_READ) && !client_read(c))
        return;
    /* Reading may have taken acks that let queued output go (udp). */
    if ((events & LOOP_WRITE) || client_has_output(c)) {
        int rc = client_flush(c);

        if (rc != CHAT_OK)
            client_flush_failed(c, rc);
    }
}

/* ---- accepting --------------------------------------------------------- */

/* Tell a client we cannot take it, without ever putting it in the loop. */
static void
server_refuse(struct server *s, struct transport *t, const char *why)
{
    cJSON *e = msg_build_error(PE_SERVER_FULL, why, NULL, NULL);
    uint8_t hdr[FRAME_HDR], scratch[1024];
    size_t len;
    char *json = msg_encode(e, &len);

    (void)s;
    if (json) {
        /* A new socket's send buffer is empty: these few bytes fit. */
        frame_put_header(hdr, (uint32_t)len);
        transport_send(t, hdr, sizeof(hdr));
        transport_send(t, json, len);
    }
    transport_shutdown(t);
    /* Unread input would make close() send a reset that can destroy the
     * error on its way; take what has arrived. */
    transport_recv(t, scratch, sizeof(scratch));
    g_free(json);
    cJSON_Delete(e);
    transport_close(t);
}

static void
server_pause_accept(struct server *s, bool pause)
{
    guint i;

    for (i = 0; i < s->listeners->len; i++) {
        struct listener *ls = g_ptr_array_index(s->listeners, i);

        loop_mod_fd(s->loop, transport_fd(ls->t), pause ? 0 : LOOP_READ);
    }
}

static void
server_accept_one(struct server *s, struct transport *t)
{
    struct client *c;
    char peer[ADDR_STR_MAX];
    int rc;

    addr_format(transport_peer(t), peer, sizeof(peer));
    /* Clients on their way out (a last error or bye being flushed) do
     * not hold a place. */
    if (g_hash_table_size(s->clients) - s->closing >= s->cfg.max_clients) {
        log_info("refusing %s: %u clients already", peer, s->cfg.max_clients);
        server_refuse(s, t, "the server is full; try again later");
        return;
    }
    c = g_new0(struct client, 1);
    c->srv = s;
    c->t = t;
    c->fd = transport_fd(t);
    c->id = ++s->next_id;
    g_strlcpy(c->peer, peer, sizeof(c->peer));
    buf_init(&c->in, FRAME_HDR + s->cfg.max_frame);
    outq_init(&c->out, s->cfg.max_queue);
    c->rooms = g_ptr_array_new();
    c->last_rx = server_now();
    rate_init(&c->rate, s->cfg.burst, c->last_rx);
    rc = loop_add_fd(s->loop, c->fd, LOOP_READ, client_on_io, c);
    if (rc != CHAT_OK) {
        log_warn("refusing %s: descriptor %d is beyond what the %s loop can "
                 "watch",
                 peer, c->fd, loop_name(s->loop));
        c->t = NULL;
        g_ptr_array_unref(c->rooms);
        g_free(c);
        server_refuse(s, t, "the server is full; try again later");
        return;
    }
    g_hash_table_add(s->clients, c);
    log_debug("conn %u: accepted %s over %s", c->id, peer, transport_name(t));
    if (s->stopping)
        client_say_bye(c);
}

static void
listener_on_io(struct loop *l, int fd, unsigned events, void *arg)
{
    struct listener *ls = arg;
    struct server *s = ls->srv;
    int i, rc;

    (void)l;
    (void)fd;
    (void)events;
    for (i = 0; i < ACCEPTS_PER_PASS; i++) {
        struct transport *t = NULL;

        rc = transport_accept(ls->t, &t);
        if (rc == CHAT_EAGAIN)
            return;
        if (rc != CHAT_OK) {
            int64_t now = server_now();

            /* EMFILE and friends: the pending connection stays queued and
             * the listener stays readable; pause instead of spinning. */
            if (now - s->emfile_logged > 1000) {
                log_warn("accept: %s; pausing new connections",
                         chat_strerror(rc));
                s->emfile_logged = now;
            }
            s->accept_paused_until = now + ACCEPT_PAUSE_MS;
            server_pause_accept(s, true);
            return;
        }
        server_accept_one(s, t);
    }
}

int
server_listen(struct server *s, const char *url, char *why, size_t why_len)
{
    struct transport *ts[8];
    size_t n = 0, i;
    int rc;

    if (s->listeners->len >= SERVER_MAX_LISTENERS) {
        g_snprintf(why, why_len, "too many listeners");
        return CHAT_EFULL;
    }
    rc = transport_listen_url(url, 7710, ts, G_N_ELEMENTS(ts), &n, why,
                              why_len);
    if (rc != CHAT_OK)
        return rc;
    for (i = 0; i < n; i++) {
        struct listener *ls = g_new0(struct listener, 1);

        ls->srv = s;
        ls->t = ts[i];
        rc = loop_add_fd(s->loop, transport_fd(ts[i]), LOOP_READ,
                         listener_on_io, ls);
        if (rc != CHAT_OK) {
            g_snprintf(why, why_len, "cannot watch a listening socket");
            transport_close(ts[i]);
            g_free(ls);
            continue;
        }
        g_ptr_array_add(s->listeners, ls);
    }
    return s->listeners->len > 0 ? CHAT_OK : CHAT_EADDR;
}

char *
server_endpoints(const struct server *s)
{
    GString *out = g_string_new(NULL);
    guint i;

    for (i = 0; i < s->listeners->len; i++) {
        const struct listener *ls = g_ptr_array_index(s->listeners, i);
        char url[ADDR_URL_MAX];

        transport_format_url(ls->t, url, sizeof(url));
        g_string_append_printf(out, "%s\n", url);
    }
    return g_string_free(out, FALSE);
}

void
server_stats(const struct server *s, unsigned *users, unsigned *rooms)
{
    GPtrArray *active = rooms_list_active(s->rooms);

    *users = g_hash_table_size(s->nicks);
    *rooms = active->len;
    g_ptr_array_unref(active);
}

void
server_listeners(const struct server *s, const char **names,
                 unsigned short *ports, size_t max, size_t *n)
{
    guint i;

    *n = 0;
    for (i = 0; i < s->listeners->len && *n < max; i++) {
        const struct listener *ls = g_ptr_array_index(s->listeners, i);

        names[*n] = transport_name(ls->t);
        ports[*n] = addr_port(transport_local(ls->t));
        (*n)++;
    }
}

/* ---- timers ------------------------------------------------------------ */

static void
client_check_idle(struct client *c, int64_t now)
{
    int64_t idle = (int64_t)c->srv->cfg.idle_timeout * 1000;

    if (c->closing) {
        if (now >= c->close_by)
            client_destroy(c);
        return;
    }
    /* Buffers are kept while busy and given back once idle. */
    buf_shrink(&c->in);
    outq_shrink(&c->out);
    if (idle <= 0)
        return;
    if (c->ping_at == 0 && now - c->last_rx >= idle) {
        char token[24];
        cJSON *ping;

        g_snprintf(token, sizeof(token), "k%u", ++c->ping_token);
        ping = msg_build_ping(token);
        client_send(c, ping);
        cJSON_Delete(ping);
        c->ping_at = now;
    } else if (c->ping_at != 0 && now - c->ping_at >= idle) {
        client_send_error(c, PE_TIMEOUT, "no answer to ping; closing", NULL,
                          NULL);
        client_close(c, "timeout");
    }
}

/*
 * Give memory back after a crowd has left. Buffers are released as clients
 * go idle or leave, but glibc keeps the freed pages in its heap, so the
 * server's RSS would stay at its peak for good. Once the clients have
 * fallen below half of their peak, trim: at most every TRIM_EVERY_MS, so
 * that churn does not make the sweep walk the heap over and over.
 */
static void
server_trim(struct server *s, int64_t now)
{
    unsigned n = g_hash_table_size(s->clients);

    if (n > s->trim_peak)
        s->trim_peak = n;
    if (n * 2 >= s->trim_peak || now < s->trim_next)
        return;
#ifdef HAVE_MALLOC_TRIM
    malloc_trim(0);
#endif
    log_debug("trimmed the heap: %u clients, %u at the peak", n, s->trim_peak);
    s->trim_peak = n;
    s->trim_next = now + TRIM_EVERY_MS;
}

int
server_tick(struct server *s)
{
    int64_t now = server_now();
    GPtrArray *all;
    guint i;

    int wait;

    if (s->accept_paused_until && now >= s->accept_paused_until) {
        s->accept_paused_until = 0;
        server_pause_accept(s, false);
    }
    /* Transport timers (udp retransmissions) run on time, for the few
     * clients that have them, and for listeners (udp keeps delivering a
     * closed session's last output from its listener). */
    wait = s->next_sweep > now ? (int)(s->next_sweep - now) : 0;
    for (i = 0; i < s->listeners->len; i++) {
        struct listener *ls = g_ptr_array_index(s->listeners, i);
        int due = transport_next_timeout(ls->t, now);

        if (due == 0)
            transport_tick(ls->t, now);
        due = transport_next_timeout(ls->t, now);
        if (due >= 0 && due < wait)
            wait = due;
    }
    if (g_hash_table_size(s->timed) > 0) {
        GPtrArray *timed = g_ptr_array_new();
        GHashTableIter it;
        gpointer k, v;

        g_hash_table_iter_init(&it, s->timed);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_ptr_array_add(timed, k);
        for (i = 0; i < timed->len; i++)
            client_run_timers(g_ptr_array_index(timed, i), now, &wait);
        g_ptr_array_unref(timed);
    }
    /* Sweeping every client is O(clients): do it a few times a second,
     * not on every pass. */
    if (now < s->next_sweep) {
        server_flush_pending(s);
        return wait;
    }
    s->next_sweep = now + TICK_MS;
    all = server_all_clients(s);
    for (i = 0; i < all->len; i++)
        client_check_idle(g_ptr_array_index(all, i), now);
    g_ptr_array_unref(all);
    server_flush_pending(s);
    server_trim(s, now);
    return wait < TICK_MS ? wait : TICK_MS;
}

void
server_after_pass(struct server *s)
{
    server_flush_pending(s);
}

/* Say bye to c and close it (server_shutdown, and anyone who connects
 * while the server stops). */
static void
client_say_bye(struct client *c)
{
    struct server *s = c->srv;

    if (!c->closing && s->bye)
        client_queue(c, s->bye, true);
    client_close(c, "server shutting down");
}

/*
 * At shutdown: whether closing c now loses nothing. Its bye (and FIN) must
 * be out and, over udp, acknowledged; and nothing it sent may be waiting
 * unread, since closing with unread input is a reset, and a reset lets the
 * receiver drop what it has not read yet: the bye among it (tcp, and udp
 * as UDP.md 7.2 says). So what it sent is read and dropped here; a client
 * that goes on sending is waited for until it closes, or the deadline.
 */
static bool
client_can_close_now(struct client *c)
{
    int i;

    if (!c->shut || client_has_output(c) || !transport_send_done(c->t))
        return false;
    for (i = 0; i < 16; i++) {
        ssize_t n = transport_recv(c->t, c->srv->rx, READ_CHUNK);

        if (n <= 0) /* nothing unread, or the peer is gone: no reset */
            return true;
    }
    return false;
}

/* True while closing now may lose what was said to a client, or a udp
 * listener still delivers for a session already closed. */
static bool
server_delivering(struct server *s)
{
    GHashTableIter it;
    gpointer k, v;
    guint i;

    g_hash_table_iter_init(&it, s->clients);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (!client_can_close_now(k))
            return true;
    for (i = 0; i < s->listeners->len; i++) {
        struct listener *ls = g_ptr_array_index(s->listeners, i);

        if (transport_next_timeout(ls->t, server_now()) >= 0)
            return true;
    }
    return false;
}

void
server_shutdown(struct server *s, int deadline_ms)
{
    int64_t end = server_now() + deadline_ms;
    GPtrArray *all = server_all_clients(s);
    cJSON *bye = msg_build_bye("server shutting down", NULL);
    guint i;

    log_info("shutting down: saying bye to %u clients",
             g_hash_table_size(s->clients));
    s->stopping = true;
    s->bye = bye ? blob_of(bye) : NULL; /* NULL: nobody gets a bye */
    for (i = 0; i < all->len; i++)
        client_say_bye(g_ptr_array_index(all, i));
    g_ptr_array_unref(all);
    cJSON_Delete(bye);
    /* The listeners stay in the loop: a udp listener reads the acks of the
     * sessions it delivers for, and whoever connects meanwhile is told bye
     * (server_accept_one). Transport timers keep running, so that a lost
     * bye or FIN is sent again. */
    server_flush_pending(s);
    while (server_delivering(s) && server_now() < end) {
        int wait = server_tick(s);
        int64_t left = end - server_now();

        if (wait < 0 || wait > 20)
            wait = 20;
        if (wait > left)
            wait = left > 0 ? (int)left : 0;
        loop_run_once(s->loop, wait);
        server_flush_pending(s);
    }
    if (server_delivering(s))
        log_info("shutting down: not every client had its bye within %d ms",
                 deadline_ms);
    frame_blob_unref(s->bye);
    s->bye = NULL;
}
