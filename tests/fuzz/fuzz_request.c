/* fuzz_request.c - libFuzzer target for sockchatd's whole request path:
 * bytes from several clients in, frames decoded as server.c does, each
 * frame through commands_dispatch() (message.c, commands.c, rooms.c,
 * rate.c), and every reply checked on its way out.
 *
 * server.c owns sockets, so this file stands in for it: it defines its own
 * struct server (opaque to commands.c) and the helpers server.h lists for
 * commands.c. The fakes follow server.c's logic (nick table, output queue
 * capped at max_queue with slow_consumer, client_close leaving rooms and
 * telling peers) with no I/O: output goes to a per-client struct buf that
 * the fake peer drains, or not. State lives for one input only, so runs are
 * deterministic; the clock is a counter.
 *
 * Layout of an input (text-friendly, so seeds are readable):
 *   byte 0     configuration (see config_from()); if a '\n' follows it is
 *              an empty record and skipped
 *   records    header byte h: client h & 3 (so '0'..'3');
 *              h & 0x40: that client does not read its replies this round;
 *              h & 0x80: raw record: the next byte k, then k + 1 bytes go
 *              to the client's socket as they are (headers and all);
 *              otherwise a frame record: the bytes up to the next '\n' (or
 *              the end) are one frame payload; the harness adds the length
 *              header (an empty payload is skipped).
 * A client that the server closes is replaced by a fresh connection.
 *
 * Checked (abort, so libFuzzer reports a crash), PROTOCOL.md 1-4:
 *   size     every frame queued for a client is 1..max_frame bytes;
 *   echo     the same for an error whose "request" echoes a long type;
 *   json     every frame is valid UTF-8 JSON, an object with a known
 *            "type"; an error carries a known code;
 *   id       a request with a valid id (other than pong) gets exactly one
 *            reply carrying that id, unless the sender was dropped as a slow
 *            consumer meanwhile;
 *   seq      a member sees a room's message seqs without gaps;
 *   state    rooms, members and the nick table agree; limits hold.
 * FUZZ_IGNORE=echo,id,... (environment) turns named checks into no-ops; use
 * it only while a reported bug awaits its fix (doc/FUZZING.md).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <glib.h>
#include <sodium.h>

#include "commands.h"
#include "err.h"
#include "frame.h"
#include "message.h"
#include "rooms.h"
#include "server.h"

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

#define NCLIENTS 4
#define QUEUE_RESERVE 1024 /* as server.c: room for a last error */
#define TICK_MS 50         /* fake time per frame */

/* ---- checks that FUZZ_IGNORE may switch off ----------------------------- */

enum fuzz_check {
    FC_SIZE,  /* reply over max_frame */
    FC_ECHO,  /* an error over max_frame for echoing a long unknown type */
    FC_JSON,  /* reply not valid JSON / UTF-8 / known type */
    FC_ID,    /* not exactly one reply with the request's id */
    FC_SEQ,   /* a gap in a room's seq */
    FC_STATE, /* rooms, members, nicks disagree */
    FC_COUNT
};

static const char *const check_names[FC_COUNT] = {
    [FC_SIZE] = "size", [FC_ECHO] = "echo", [FC_JSON] = "json",
    [FC_ID] = "id",     [FC_SEQ] = "seq",   [FC_STATE] = "state",
};

static bool ignored[FC_COUNT];
static bool trace; /* FUZZ_TRACE set: print every reply (for triage) */

static void G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN
    fail(enum fuzz_check fc, const char *fmt, ...);

static void
fail(enum fuzz_check fc, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "fuzz_request: check '%s' failed: ", check_names[fc]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ---- the fake server ---------------------------------------------------- */

struct server {
    struct server_config cfg;
    struct rooms *rooms;
    GHashTable *nicks; /* folded nick -> struct client * */
    struct client *clients[NCLIENTS];
    unsigned next_id;
    int64_t now;
};

/* Per-client harness state, indexed by slot. */
struct peer {
    struct buf out;   /* frames queued for the client, capped at max_queue */
    bool stalled;     /* does not read its replies this round */
    bool overflowed;  /* hit max_queue during the current request */
    GHashTable *seqs; /* folded room -> last seq seen (as pointer) */
};

/* The request being dispatched, to match replies by id. */
struct current {
    struct client *from;
    const cJSON *id; /* borrowed from req.root */
    unsigned id_replies;
};

static struct server *srv;
static struct peer peers[NCLIENTS];
static struct current cur;

static int
slot_of(const struct client *c)
{
    int i;

    for (i = 0; i < NCLIENTS; i++)
        if (srv->clients[i] == c)
            return i;
    CHECK(!"a client that is not connected");
    return -1;
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

/* Plaintext sessions only (--secure=off, no key): cmd_secure answers
 * unknown_type, hello proves nothing and no nick is reserved. The secure
 * layer has its own target (doc/FUZZING.md). */
const struct identity *
server_identity(const struct server *s)
{
    (void)s;
    return NULL;
}

struct identity_nicks *
server_nicks(struct server *s)
{
    (void)s;
    return NULL;
}

size_t
client_payload_max(const struct client *c)
{
    return c->srv->cfg.max_frame - (c->sec ? SECURE_OVERHEAD_MAX : 0);
}

size_t
server_event_max(const struct server *s)
{
    return s->cfg.max_frame -
           (s->cfg.secure != SECURE_POLICY_OFF ? SECURE_OVERHEAD_MAX : 0);
}

int64_t
server_now(void)
{
    return srv ? srv->now : 0;
}

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

static bool
known_type(const char *t)
{
    static const char *const types[] = {
        "welcome", "room",  "joined",  "left", "ok",  "message", "renamed",
        "topic",   "rooms", "members", "pong", "bye", "quit",    "error",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(types); i++)
        if (strcmp(t, types[i]) == 0)
            return true;
    return false;
}

static bool
same_id(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsString(a))
        return cJSON_IsString(b) && strcmp(a->valuestring, b->valuestring) == 0;
    return cJSON_IsNumber(a) && cJSON_IsNumber(b) &&
           a->valuedouble == b->valuedouble;
}

static int64_t
number_of(const cJSON *o, const char *key)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, key);

    if (!cJSON_IsNumber(n))
        return -1;
    return (int64_t)n->valuedouble;
}

/* Seq tracking for peer p: a message in a room continues what p saw. */
static void
seq_saw(struct peer *p, const char *room, int64_t seq)
{
    char *key;
    gpointer last;

    if (room == NULL || seq < 1)
        return;
    key = msg_fold(room);
    if (g_hash_table_lookup_extended(p->seqs, key, NULL, &last) &&
        !ignored[FC_SEQ] && seq != (int64_t)GPOINTER_TO_SIZE(last) + 1)
        fail(FC_SEQ, "%s: seq %lld after %lld", room, (long long)seq,
             (long long)GPOINTER_TO_SIZE(last));
    g_hash_table_insert(p->seqs, key, GSIZE_TO_POINTER((gsize)seq));
}

static void
seq_forget(struct peer *p, const char *room)
{
    char *key;

    if (room == NULL)
        return;
    key = msg_fold(room);
    g_hash_table_remove(p->seqs, key);
    g_free(key);
}

/* What p learns from one reply (parsed as o) about room seqs. */
static void
seq_track(struct client *c, struct peer *p, const cJSON *o, const char *type)
{
    const char *room =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "room"));

    if (strcmp(type, "message") == 0) {
        seq_saw(p, room, number_of(o, "seq"));
    } else if (strcmp(type, "room") == 0) {
        /* A (re)join: the history ends with the room's latest message (a
         * cut history keeps the newest), or says nothing when empty. */
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "history");
        const cJSON *last = NULL, *e;

        seq_forget(p, room);
        cJSON_ArrayForEach(e, h) last = e;
        if (last)
            seq_saw(p, room, number_of(last, "seq"));
    } else if (strcmp(type, "left") == 0 && c->nick) {
        const char *who =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "nick"));

        if (who && strcmp(who, c->nick) == 0)
            seq_forget(p, room);
    }
}

/* Every frame queued for c passes here. */
static void
check_reply(struct client *c, const char *json, size_t len)
{
    size_t max = client_payload_max(c);
    const cJSON *t, *id;
    cJSON *o;

    if (trace)
        fprintf(stderr, "-> %d (%zu): %.*s\n", slot_of(c), len,
                (int)(len < 300 ? len : 300), json);
    if (len == 0)
        fail(FC_SIZE, "empty reply");
    if (!g_utf8_validate(json, (gssize)len, NULL) ||
        memchr(json, '\0', len) != NULL) {
        if (!ignored[FC_JSON])
            fail(FC_JSON, "reply is not UTF-8 text");
        return;
    }
    o = cJSON_ParseWithLength(json, len);
    if (o == NULL || !cJSON_IsObject(o)) {
        if (!ignored[FC_JSON])
            fail(FC_JSON, "reply is not a JSON object: %.300s", json);
        cJSON_Delete(o);
        return;
    }
    t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(t) || !known_type(t->valuestring)) {
        if (!ignored[FC_JSON])
            fail(FC_JSON, "reply without a known type: %.300s", json);
        cJSON_Delete(o);
        return;
    }
    if (len > max) {
        /* The request of an error is the type as sent (PROTOCOL.md 4.1),
         * which is not bounded by anything but the frame: a class of its
         * own, so that FUZZ_IGNORE can set it apart from other sizes. */
        const char *rq = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(o, "request"));
        enum fuzz_check fc = FC_SIZE;

        if (strcmp(t->valuestring, "error") == 0 && rq && strlen(rq) > 16)
            fc = FC_ECHO;
        if (!ignored[fc])
            fail(fc, "reply of %zu bytes (max_frame %zu): %.300s", len, max,
                 json);
    }
    if (strcmp(t->valuestring, "error") == 0 && !ignored[FC_JSON]) {
        const char *code =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "code"));

        if (code == NULL || proto_err_from_code(code) == PE_NONE ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "message")))
            fail(FC_JSON, "bad error reply: %.300s", json);
    }
    id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (c == cur.from && cur.id && id && same_id(cur.id, id))
        cur.id_replies++;
    seq_track(c, &peers[slot_of(c)], o, t->valuestring);
    cJSON_Delete(o);
}

/* server.c's client_queue(): the same bytes counted against the same cap
 * (a frame's header and payload), in a queue of the harness's own, so that
 * the fake does not depend on how server.c stores its output. */
static int
client_queue(struct client *c, const char *json, size_t len, bool force)
{
    struct buf *out = &peers[slot_of(c)].out;

    if (len > client_payload_max(c))
        return CHAT_ETOOBIG; /* server.c drops it with a warning */
    if (force)
        out->cap = buf_len(out) + QUEUE_RESERVE + len + FRAME_HDR;
    return frame_encode(out, srv->cfg.max_frame, json, len);
}

bool
client_send_raw(struct client *c, const char *json, size_t len)
{
    cJSON *err;
    char *e;
    size_t elen;
    int rc;

    if (c->closing)
        return false;
    check_reply(c, json, len);
    rc = client_queue(c, json, len, false);
    if (rc == CHAT_OK)
        return true;
    if (rc == CHAT_ETOOBIG)
        return false;
    peers[slot_of(c)].overflowed = true;
    err = msg_build_error(PE_SLOW_CONSUMER,
                          "you did not read fast enough; closing", NULL, NULL);
    e = msg_encode(err, &elen);
    if (e) {
        check_reply(c, e, elen);
        client_queue(c, e, elen, true);
    }
    g_free(e);
    cJSON_Delete(err);
    client_close(c, "slow consumer");
    return false;
}

/* commands.c hands shared, already framed messages to this one. */
void
client_start_sealing(struct client *c, struct secure_session *sec)
{
    c->sec = sec; /* replies go to a plain buffer here: nothing to split */
}

bool
client_send_blob(struct client *c, struct frame_blob *b)
{
    CHECK(frame_blob_size(b) > FRAME_HDR);
    return client_send_raw(c, (const char *)frame_blob_data(b) + FRAME_HDR,
                           frame_blob_size(b) - FRAME_HDR);
}

bool
client_send(struct client *c, const cJSON *obj)
{
    size_t len;
    char *json;
    bool ok;

    if (c->closing)
        return false;
    json = msg_encode(obj, &len);
    CHECK(json != NULL);
    ok = client_send_raw(c, json, len);
    g_free(json);
    return ok;
}

void
client_send_error(struct client *c, enum proto_err code, const char *text,
                  const char *request, const cJSON *id)
{
    cJSON *e = msg_build_error(code, text, request, id);

    CHECK(e != NULL);
    client_send(c, e);
    cJSON_Delete(e);
}

void
server_send_room(struct server *s, struct room *r, const cJSON *obj,
                 const struct client *except)
{
    size_t len;
    char *json = msg_encode(obj, &len);
    GPtrArray *members;
    guint i;

    (void)s;
    CHECK(json != NULL);
    members = g_ptr_array_copy(r->members, NULL, NULL);
    for (i = 0; i < members->len; i++)
        if (g_ptr_array_index(members, i) != except)
            client_send_raw(g_ptr_array_index(members, i), json, len);
    g_ptr_array_unref(members);
    g_free(json);
}

void
server_send_peers(struct server *s, struct client *c, const cJSON *obj,
                  bool include_self)
{
    GHashTable *seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    GPtrArray *to = g_ptr_array_new();
    size_t len;
    char *json;
    guint i, j;

    (void)s;
    g_hash_table_add(seen, c);
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
    json = msg_encode(obj, &len);
    CHECK(json != NULL);
    for (i = 0; i < to->len; i++)
        client_send_raw(g_ptr_array_index(to, i), json, len);
    g_free(json);
    g_ptr_array_unref(to);
    g_hash_table_destroy(seen);
}

void
client_close(struct client *c, const char *reason)
{
    struct server *s = c->srv;

    if (c->closing)
        return;
    if (c->registered) {
        cJSON *q = msg_build_quit(c->nick, reason, msg_now_ms());
        guint i;

        c->closing = true;
        server_send_peers(s, c, q, false);
        cJSON_Delete(q);
        for (i = 0; i < c->rooms->len; i++)
            room_remove_member(s->rooms, g_ptr_array_index(c->rooms, i), c);
        g_ptr_array_set_size(c->rooms, 0);
        g_hash_table_remove(s->nicks, c->nick_key);
    }
    c->closing = true;
    c->registered = false;
}

/* ---- connections -------------------------------------------------------- */

static struct client *
client_connect(struct server *s)
{
    struct client *c = g_new0(struct client, 1);

    c->srv = s;
    c->fd = -1;
    c->id = ++s->next_id;
    g_strlcpy(c->peer, "[::1]:7710", sizeof(c->peer));
    buf_init(&c->in, FRAME_HDR + s->cfg.max_frame);
    c->rooms = g_ptr_array_new();
    rate_init(&c->rate, s->cfg.burst, s->now);
    c->last_rx = s->now;
    return c;
}

/* server.c's client_destroy(), without the socket. */
static void
client_destroy(struct client *c)
{
    if (!c->closing)
        client_close(c, "connection closed");
    buf_cleanup(&c->in);
    g_ptr_array_unref(c->rooms);
    g_free(c->nick);
    g_free(c->nick_key);
    g_free(c);
}

/* server.c's client_handle_frames(), with the id check around dispatch. */
static void
client_handle_frames(struct client *c)
{
    struct peer *p = &peers[slot_of(c)];
    const uint8_t *body;
    size_t len;
    int rc;

    while (!c->closing) {
        struct msg_request req;
        struct msg_error err;

        rc = frame_peek(&c->in, srv->cfg.max_frame, &body, &len);
        if (rc == CHAT_EAGAIN)
            return;
        if (rc == CHAT_EPROTO) {
            client_send_error(c, PE_BAD_FRAME, "a frame length must not be 0",
                              NULL, NULL);
            client_close(c, "protocol error");
            return;
        }
        if (rc == CHAT_ETOOBIG) {
            client_send_error(c, PE_FRAME_TOO_LARGE, "frames are too long",
                              NULL, NULL);
            client_close(c, "protocol error");
            return;
        }
        CHECK(rc == CHAT_OK);
        srv->now += TICK_MS;
        c->last_rx = srv->now;
        c->ping_at = 0;
        c->frames++;

        /* Our own parse, only to learn the request's id and type. */
        msg_parse(body, len, &req, &err);
        cur.from = c;
        cur.id = req.type == MSG_PONG ? NULL : req.id;
        cur.id_replies = 0;
        p->overflowed = false;

        commands_dispatch(c, body, len);

        if (cur.id && !p->overflowed && !ignored[FC_ID] &&
            cur.id_replies != 1) {
            char *id = cJSON_PrintUnformatted(cur.id);

            fail(FC_ID, "a %s request with id %.80s got %u replies with it",
                 req.type_str ? req.type_str : "(no type)", id, cur.id_replies);
        }
        memset(&cur, 0, sizeof(cur));
        msg_request_cleanup(&req);
        frame_consume(&c->in, len);
    }
}

/* Bytes from the client's socket, read the way client_read() does. */
static void
client_deliver(struct client *c, const uint8_t *p, size_t n)
{
    while (n > 0 && !c->closing) {
        size_t avail = 0;
        uint8_t *dst = buf_reserve(&c->in, n, &avail);
        size_t take;

        /* Frames are handled as they complete, so there is always room. */
        CHECK(dst != NULL && avail > 0);
        take = n < avail ? n : avail;
        memcpy(dst, p, take);
        buf_commit(&c->in, take);
        p += take;
        n -= take;
        client_handle_frames(c);
    }
}

/* ---- consistency of the server's state ---------------------------------- */

static void
check_state(void)
{
    GPtrArray *active;
    guint registered = 0, i, j;
    int k;

    if (ignored[FC_STATE])
        return;
    for (k = 0; k < NCLIENTS; k++) {
        struct client *c = srv->clients[k];

        if (c->closing)
            continue;
        if (!c->registered) {
            if (c->rooms->len != 0 || c->nick_key != NULL)
                fail(FC_STATE, "unregistered client %d has a nick or rooms", k);
            continue;
        }
        registered++;
        if (!msg_valid_nick(c->nick) || c->nick_key == NULL ||
            g_ascii_strcasecmp(c->nick, c->nick_key) != 0 ||
            g_hash_table_lookup(srv->nicks, c->nick_key) != c)
            fail(FC_STATE, "client %d: nick table disagrees", k);
        if (c->rooms->len > srv->cfg.max_rooms)
            fail(FC_STATE, "client %d is in %u rooms (max %u)", k,
                 c->rooms->len, srv->cfg.max_rooms);
        for (i = 0; i < c->rooms->len; i++) {
            struct room *r = g_ptr_array_index(c->rooms, i);

            if (rooms_find(srv->rooms, r->name) != r || !room_has_member(r, c))
                fail(FC_STATE, "client %d: room %s does not list it", k,
                     r->name);
            for (j = i + 1; j < c->rooms->len; j++)
                if (g_ptr_array_index(c->rooms, j) == r)
                    fail(FC_STATE, "client %d is in %s twice", k, r->name);
        }
    }
    if (g_hash_table_size(srv->nicks) != registered)
        fail(FC_STATE, "%u nicks for %u registered clients",
             g_hash_table_size(srv->nicks), registered);
    if (rooms_count(srv->rooms) > srv->cfg.room_cap)
        fail(FC_STATE, "%zu rooms (cap %u)", rooms_count(srv->rooms),
             srv->cfg.room_cap);
    active = rooms_list_active(srv->rooms);
    for (i = 0; i < active->len; i++) {
        struct room *r = g_ptr_array_index(active, i);

        if (g_queue_get_length(&r->history) > srv->cfg.history)
            fail(FC_STATE, "%s keeps %u history entries (max %u)", r->name,
                 g_queue_get_length(&r->history), srv->cfg.history);
        for (j = 0; j < r->members->len; j++) {
            struct client *m = g_ptr_array_index(r->members, j);
            guint x;

            for (k = 0; k < NCLIENTS && srv->clients[k] != m; k++)
                ;
            if (k == NCLIENTS || m->closing || !m->registered)
                fail(FC_STATE, "%s lists a client that is gone", r->name);
            for (x = 0; x < m->rooms->len; x++)
                if (g_ptr_array_index(m->rooms, x) == r)
                    break;
            if (x == m->rooms->len)
                fail(FC_STATE, "%s lists client %d, which is not in it",
                     r->name, k);
        }
    }
    g_ptr_array_unref(active);
}

/* ---- one input ---------------------------------------------------------- */

/*
 * Byte 0: bits 0-1 max_frame {65536, 1024, 1500, 8192}; bits 2-3 history
 * {100, 0, 1, 3}; bits 4-5 room_cap {1024, 1, 2, 4}; bits 6-7 {32 rooms a
 * client, no rate, 1 MiB queue; 2 rooms, no rate, smallest queue; 32
 * rooms, 10/s burst 20, 1 MiB; 1 room, 1/s burst 1, smallest queue}.
 */
static void
config_from(uint8_t b, struct server_config *cfg)
{
    static const size_t frames[] = {65536, 1024, 1500, 8192};
    static const unsigned hist[] = {100, 0, 1, 3};
    static const unsigned caps[] = {1024, 1, 2, 4};
    static char name[] = "sockchat", motd[] = "fuzzing";

    memset(cfg, 0, sizeof(*cfg));
    cfg->name = name;
    cfg->motd = motd;
    cfg->max_clients = NCLIENTS;
    cfg->max_frame = frames[b & 3];
    cfg->history = hist[(b >> 2) & 3];
    cfg->room_cap = caps[(b >> 4) & 3];
    cfg->idle_timeout = 300;
    cfg->secure = SECURE_POLICY_OFF;
    switch (b >> 6) {
    case 0:
        cfg->max_rooms = 32;
        cfg->max_queue = 1048576;
        break;
    case 1:
        cfg->max_rooms = 2;
        cfg->max_queue = cfg->max_frame + FRAME_HDR;
        break;
    case 2:
        cfg->max_rooms = 32;
        cfg->rate = 10;
        cfg->burst = 20;
        cfg->max_queue = 1048576;
        break;
    default:
        cfg->max_rooms = 1;
        cfg->rate = 1;
        cfg->burst = 1;
        cfg->max_queue = cfg->max_frame + FRAME_HDR;
        break;
    }
}

static void
peer_reset(struct peer *p)
{
    buf_cleanup(&p->out);
    buf_init(&p->out, srv->cfg.max_queue);
    p->stalled = false;
    p->overflowed = false;
    g_hash_table_remove_all(p->seqs);
}

/* After each record: peers read (or not); closed clients go and are
 * replaced by new connections. */
static void
end_round(void)
{
    int k;

    for (k = 0; k < NCLIENTS; k++) {
        struct client *c = srv->clients[k];

        if (!peers[k].stalled) {
            buf_consume(&peers[k].out, buf_len(&peers[k].out));
            buf_shrink(&peers[k].out);
        }
        if (c->closing) {
            client_destroy(c);
            srv->clients[k] = client_connect(srv);
            peer_reset(&peers[k]);
        }
    }
    check_state();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *ign = getenv("FUZZ_IGNORE");
    int i;

    (void)argc;
    (void)argv;
    g_unsetenv("G_MESSAGES_DEBUG"); /* a log line per request otherwise */
    CHECK(sodium_init() >= 0);      /* as main() does, for secure.c */
    trace = getenv("FUZZ_TRACE") != NULL;
    if (ign) {
        char **names = g_strsplit(ign, ",", -1);
        char **n;

        for (n = names; *n; n++)
            for (i = 0; i < FC_COUNT; i++)
                if (strcmp(g_strstrip(*n), check_names[i]) == 0)
                    ignored[i] = true;
        g_strfreev(names);
    }
    for (i = 0; i < NCLIENTS; i++)
        peers[i].seqs =
            g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct server s;
    size_t pos = 1;
    int k;

    if (size < 1)
        return 0;
    memset(&s, 0, sizeof(s));
    config_from(data[0], &s.cfg);
    s.rooms = rooms_new(s.cfg.room_cap, s.cfg.history);
    s.nicks = g_hash_table_new(g_str_hash, g_str_equal);
    s.now = 1000;
    srv = &s;
    for (k = 0; k < NCLIENTS; k++) {
        s.clients[k] = client_connect(&s);
        peer_reset(&peers[k]);
    }

    while (pos < size) {
        uint8_t h = data[pos++];
        int slot = h & 3;
        struct client *c = s.clients[slot];
        const uint8_t *p = data + pos;
        size_t n;

        peers[slot].stalled = (h & 0x40) != 0;
        if (h & 0x80) {
            n = pos < size ? (size_t)data[pos++] + 1 : 0;
            p = data + pos;
            if (n > size - pos)
                n = size - pos;
            pos += n;
            client_deliver(c, p, n);
        } else {
            const uint8_t *nl = memchr(p, '\n', size - pos);
            uint8_t hdr[FRAME_HDR];

            n = nl ? (size_t)(nl - p) : size - pos;
            pos += n + (nl ? 1 : 0);
            if (n > 0) {
                frame_put_header(hdr, (uint32_t)n);
                client_deliver(c, hdr, sizeof(hdr));
                client_deliver(c, p, n);
            }
        }
        end_round();
    }

    /* Everyone hangs up; the survivors hear the quits. */
    for (k = 0; k < NCLIENTS; k++) {
        client_destroy(s.clients[k]);
        s.clients[k] = NULL;
    }
    for (k = 0; k < NCLIENTS; k++)
        peer_reset(&peers[k]);
    CHECK(g_hash_table_size(s.nicks) == 0);
    g_hash_table_destroy(s.nicks);
    rooms_free(s.rooms);
    srv = NULL;
    return 0;
}
