/* client.c - the client's session with the server, without a terminal.
 *
 * Receive: loop readable -> transport_recv into c->in -> frame_peek cuts
 * frames -> cJSON parses and client_event_parse() type-checks -> session
 * state is updated -> the renderer's callback -> effects that end the
 * session (bye, a refused hello). Send: client_input() builds requests
 * into a queue; the queue drains into c->out no faster than the rate the
 * server announced in welcome (so a pasted page or a long batch file is
 * not refused with rate_limited), and c->out drains as the socket allows.
 *
 * The server is network input like any other: every field is type-checked,
 * a frame that cannot be parsed is reported and skipped, and a framing
 * error (which leaves the stream out of step) ends the session.
 */
#include "client.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "buf.h"
#include "config.h"
#include "discover.h"
#include "err.h"
#include "frame.h"
#include "identity.h"
#include "log.h"
#include "message.h"
#include "secure.h"
#include "transport.h"

#define CLIENT_OUT_MAX (1024 * 1024) /* bytes queued for the server */
#define CLIENT_READ_CHUNK 16384
#define CLIENT_READS_PER_WAKE 16 /* then let stdin have a turn */
#define CLIENT_PENDING_MAX 4096  /* ids remembered without an answer */
/* Pacing margin: send a little slower than the server's bucket refills,
 * because arrival times at the server are not our send times. */
#define CLIENT_RATE_MARGIN 0.9

/* A request waiting in the queue, already serialized. */
struct client_req {
    char *json;
    size_t len;
    bool paced; /* counts against the server's rate (all but quit) */
    bool is_quit;
};

/* A request sent with an id, until its answer arrives. */
struct client_pending {
    enum msg_type type;
    char *room;         /* join leave: the room */
    char *prev_current; /* join: the current room before it */
};

struct client {
    struct client_config cfg;
    char **cfg_rooms; /* owned copies behind cfg.rooms */
    client_event_fn cb;
    void *cb_arg;

    struct transport *t;
    struct loop *loop;
    int fd;
    unsigned events; /* LOOP_* bits watched on fd */
    struct buf in;
    struct buf out;
    size_t max_frame;
    size_t max_text;

    enum client_state state;
    bool welcomed;
    enum client_exit end;
    char end_reason[512];
    bool quit_asked; /* we asked to quit: a bye is the normal end */

    char *nick;
    GPtrArray *rooms; /* char *, the rooms we are in */
    char *current;    /* NULL when in none */

    GHashTable *pending; /* id -> struct client_pending */
    uint32_t next_id;
    GQueue queue; /* struct client_req */

    bool paced; /* the server announced a rate */
    double per_sec, burst, tokens;
    int64_t refill_us;

    int64_t deadline_us; /* 0: none; welcome or bye wait */
    unsigned errors;

    /* Secure session (doc/SECURE.md). Until the handshake ends, sec_wait:
     * nothing but the server's plain reply is expected, nothing is sent.
     * Then secure: every frame both ways is sealed. */
    struct secure_session *sec;
    bool sec_wait;
    bool secure;
    bool peer_final;    /* the server's TAG_FINAL frame opened */
    bool bye_seen;      /* bye opened; waiting for the FINAL after it */
    char *bye_reason;   /* its reason, for the close that follows */
    bool offers_secure; /* welcome.features has "secure" */
    char server_fp[IDENTITY_FP_SIZE];
    char *known_servers, *known_host; /* owned copies behind cfg */
};

static void client_flush(struct client *c);
static void client_on_fd(struct loop *l, int fd, unsigned events, void *arg);

/* Helpers */

static int64_t
now_us(void)
{
    return g_get_monotonic_time();
}

static bool
name_char(char ch)
{
    return g_ascii_isalnum(ch) || ch == '_' || ch == '-';
}

bool
client_mentions(const char *nick, const char *text)
{
    size_t n, i, len;

    if (nick == NULL || text == NULL)
        return false;
    n = strlen(nick);
    len = strlen(text);
    if (n == 0 || n > len)
        return false;
    for (i = 0; i + n <= len; i++) {
        if (g_ascii_strncasecmp(text + i, nick, n) != 0)
            continue;
        if (i > 0 && name_char(text[i - 1]))
            continue;
        if (i + n < len && name_char(text[i + n]))
            continue;
        return true;
    }
    return false;
}

const char *
client_help_text(void)
{
    return "Commands:\n"
           "  /join ROOM              join ROOM, which becomes the current "
           "room\n"
           "  /leave [ROOM] [REASON]  leave ROOM (default: the current "
           "room)\n"
           "  /msg NICK TEXT          send TEXT to NICK alone\n"
           "  /nick NICK              change your nick\n"
           "  /topic [ROOM] TEXT      set the topic of ROOM (default: the "
           "current room)\n"
           "  /list                   list the rooms that have people in "
           "them\n"
           "  /who [ROOM]             list who is in ROOM (default: the "
           "current room)\n"
           "  /me TEXT                say TEXT as an action: * nick TEXT\n"
           "  /servers                list the servers on this host and "
           "the LAN (takes a second)\n"
           "  /info                   show the connection: transport, "
           "encryption, server key\n"
           "  /quit [REASON]          leave the server\n"
           "  /help                   show this help\n"
           "Any other line is said in the current room. A line that starts "
           "with //\n"
           "says the rest of it after one '/'. A room name without '#' "
           "gets one.\n";
}

static bool
same_name(const char *a, const char *b)
{
    return a != NULL && b != NULL && g_ascii_strcasecmp(a, b) == 0;
}

/* Event parsing */

static const struct {
    const char *name;
    enum client_ev type;
} client_ev_names[] = {
    {"welcome", CEV_WELCOME}, {"room", CEV_ROOM}, {"message", CEV_MESSAGE},
    {"joined", CEV_JOINED},   {"left", CEV_LEFT}, {"renamed", CEV_RENAMED},
    {"topic", CEV_TOPIC},     {"quit", CEV_QUIT}, {"rooms", CEV_ROOMS},
    {"members", CEV_MEMBERS}, {"ok", CEV_OK},     {"error", CEV_ERROR},
    {"ping", CEV_PING},       {"pong", CEV_PONG}, {"bye", CEV_BYE},
};

/* The string value of key, or NULL when absent or not a string. */
static const char *
get_str(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static const cJSON *
get_array(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsArray(it) ? it : NULL;
}

/* A whole number in [0, 2^62] from key. */
static bool
get_uint(const cJSON *obj, const char *key, uint64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d;

    *out = 0;
    if (!cJSON_IsNumber(it))
        return false;
    d = it->valuedouble;
    if (!isfinite(d) || d < 0.0 || d > 4611686018427387904.0 || d != floor(d))
        return false;
    *out = (uint64_t)d;
    return true;
}

static bool
malformed(struct client_event *ev, const char *why)
{
    ev->type = CEV_MALFORMED;
    ev->why = why;
    return false;
}

bool
client_event_parse(const cJSON *obj, struct client_event *ev)
{
    const cJSON *tr;
    uint64_t u;
    size_t i;

    memset(ev, 0, sizeof(*ev));
    ev->obj = obj;
    if (!cJSON_IsObject(obj))
        return malformed(ev, "not a JSON object");
    ev->type_str = get_str(obj, "type");
    if (ev->type_str == NULL)
        return malformed(ev, "no \"type\" string");
    ev->type = CEV_OTHER;
    for (i = 0; i < G_N_ELEMENTS(client_ev_names); i++)
        if (strcmp(client_ev_names[i].name, ev->type_str) == 0)
            ev->type = client_ev_names[i].type;

    /* Optional everywhere: a field of the wrong type counts as absent. */
    ev->room = get_str(obj, "room");
    ev->from = get_str(obj, "from");
    ev->to = get_str(obj, "to");
    ev->text = get_str(obj, "text");
    ev->nick = get_str(obj, "nick");
    ev->old_nick = get_str(obj, "old");
    ev->new_nick = get_str(obj, "new");
    ev->topic = get_str(obj, "topic");
    ev->by = get_str(obj, "by");
    ev->reason = get_str(obj, "reason");
    ev->code = get_str(obj, "code");
    ev->message = get_str(obj, "message");
    ev->request = get_str(obj, "request");
    ev->server = get_str(obj, "server");
    ev->motd = get_str(obj, "motd");
    ev->token = get_str(obj, "token");
    ev->action = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "action"));
    if (get_uint(obj, "ts", &u)) {
        ev->has_ts = true;
        ev->ts = (int64_t)u;
    }
    ev->has_seq = get_uint(obj, "seq", &ev->seq);
    tr = cJSON_GetObjectItemCaseSensitive(obj, "truncated");
    ev->truncated = cJSON_IsTrue(tr);
    ev->members = get_array(obj, "members");
    ev->rooms = get_array(obj, "rooms");
    ev->history = get_array(obj, "history");

    /* What each type cannot do without (PROTOCOL.md section 3). */
    switch (ev->type) {
    case CEV_WELCOME:
        if (ev->nick == NULL)
            return malformed(ev, "welcome without a nick");
        break;
    case CEV_ROOM:
        if (ev->room == NULL)
            return malformed(ev, "room reply without a room");
        break;
    case CEV_MESSAGE:
        if (ev->from == NULL || ev->text == NULL ||
            (ev->room == NULL && ev->to == NULL))
            return malformed(ev, "message without from, text, room or to");
        break;
    case CEV_JOINED:
    case CEV_LEFT:
        if (ev->room == NULL || ev->nick == NULL)
            return malformed(ev, "joined/left without room or nick");
        break;
    case CEV_RENAMED:
        if (ev->old_nick == NULL || ev->new_nick == NULL)
            return malformed(ev, "renamed without old or new");
        break;
    case CEV_TOPIC:
        if (ev->room == NULL || ev->topic == NULL)
            return malformed(ev, "topic without room or topic");
        break;
    case CEV_QUIT:
        if (ev->nick == NULL)
            return malformed(ev, "quit without a nick");
        break;
    case CEV_ROOMS:
        if (ev->rooms == NULL)
            return malformed(ev, "rooms without a list");
        break;
    case CEV_MEMBERS:
        if (ev->members == NULL)
            return malformed(ev, "members without a list");
        break;
    case CEV_ERROR:
        if (ev->code == NULL)
            return malformed(ev, "error without a code");
        break;
    default:
        break;
    }
    return true;
}

/* Lifecycle */

static void
pending_free(gpointer p)
{
    struct client_pending *pd = p;

    g_free(pd->room);
    g_free(pd->prev_current);
    g_free(pd);
}

static void
req_free(struct client_req *r)
{
    g_free(r->json);
    g_free(r);
}

struct client *
client_new(const struct client_config *cfg, client_event_fn cb, void *arg)
{
    struct client *c = g_new0(struct client, 1);
    size_t i;

    c->cfg = *cfg;
    c->cfg_rooms = g_new0(char *, cfg->n_rooms + 1);
    for (i = 0; i < cfg->n_rooms; i++)
        c->cfg_rooms[i] = g_strdup(cfg->rooms[i]);
    c->cfg.rooms = (const char *const *)c->cfg_rooms;
    c->cfg.nick = NULL;
    c->known_servers = g_strdup(cfg->known_servers);
    c->known_host = g_strdup(cfg->known_host);
    c->cfg.known_servers = c->known_servers;
    c->cfg.known_host = c->known_host;
    if (c->cfg.timeout_ms <= 0)
        c->cfg.timeout_ms = CLIENT_DEFAULT_TIMEOUT * 1000;
    c->cb = cb;
    c->cb_arg = arg;
    c->fd = -1;
    /* frame_peek() enforces max_frame from the header alone, so the cap
     * only has to hold the largest frame any server may announce. */
    buf_init(&c->in, FRAME_HDR + FRAME_MAX_LIMIT);
    buf_init(&c->out, CLIENT_OUT_MAX);
    c->max_frame = FRAME_MAX_DEFAULT;
    c->max_text = MSG_TEXT_MAX;
    c->state = CLIENT_IDLE;
    c->nick = g_strdup(cfg->nick);
    c->rooms = g_ptr_array_new_with_free_func(g_free);
    c->pending = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                       pending_free);
    c->next_id = 1;
    g_queue_init(&c->queue);
    return c;
}

/* Best effort, at a close we did not negotiate: seal an empty TAG_FINAL
 * frame so that the server can tell our end from a cut, and hand it (with
 * whatever was waiting) to the socket without blocking. Nothing is reported:
 * the session is ending anyway. */
static void
client_send_final(struct client *c)
{
    uint8_t *sealed = NULL;
    size_t slen = 0;
    ssize_t n;
    int i;

    if (c->t == NULL || !c->secure || secure_tx_finished(c->sec))
        return;
    if (secure_sealed_len(c->sec, 0) > c->max_frame ||
        buf_room(&c->out) < FRAME_HDR + secure_sealed_len(c->sec, 0))
        return;
    if (secure_seal(c->sec, "", 0, true, &sealed, &slen) != CHAT_OK)
        return;
    (void)frame_encode(&c->out, c->max_frame, sealed, slen);
    g_free(sealed);
    for (i = 0; i < 64 && buf_len(&c->out) > 0; i++) {
        n = transport_send(c->t, buf_ptr(&c->out), buf_len(&c->out));
        if (n <= 0)
            break;
        buf_consume(&c->out, (size_t)n);
    }
}

static void
client_detach(struct client *c)
{
    if (c->t == NULL)
        return;
    if (c->loop != NULL && c->fd >= 0)
        loop_del_fd(c->loop, c->fd);
    transport_close(c->t);
    c->t = NULL;
    c->fd = -1;
}

void
client_free(struct client *c)
{
    struct client_req *r;

    if (c == NULL)
        return;
    client_send_final(c);
    client_detach(c);
    secure_free(c->sec);
    c->sec = NULL;
    g_free(c->bye_reason);
    g_free(c->known_servers);
    g_free(c->known_host);
    buf_cleanup(&c->in);
    buf_cleanup(&c->out);
    while ((r = g_queue_pop_head(&c->queue)) != NULL)
        req_free(r);
    g_hash_table_destroy(c->pending);
    g_ptr_array_free(c->rooms, TRUE);
    g_strfreev(c->cfg_rooms);
    g_free(c->nick);
    g_free(c->current);
    g_free(c);
}

/* Make s (which may hold text from the server) safe to print on a
 * terminal: bad UTF-8 and control characters become '?'. */
static void
clean_text(char *s)
{
    char *p = s;
    gunichar ch;
    int len;

    while (*p != '\0') {
        ch = g_utf8_get_char_validated(p, -1);
        if (ch == (gunichar)-1 || ch == (gunichar)-2) {
            *p++ = '?';
            continue;
        }
        len = g_utf8_skip[*(guchar *)p];
        if (ch < 0x20 || (ch >= 0x7f && ch <= 0x9f))
            memset(p, '?', (size_t)len);
        p += len;
    }
}

/* End the session once; the first reason given is the one kept. The
 * buffers stay until client_free(): a callback may still be reading one. */
static void client_close(struct client *c, enum client_exit end,
                         const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
client_close(struct client *c, enum client_exit end, const char *fmt, ...)
{
    va_list ap;

    if (c->state == CLIENT_CLOSED)
        return;
    c->state = CLIENT_CLOSED;
    c->end = end;
    va_start(ap, fmt);
    g_vsnprintf(c->end_reason, sizeof(c->end_reason), fmt, ap);
    va_end(ap);
    clean_text(c->end_reason);
    c->deadline_us = 0;
    client_send_final(c);
    client_detach(c);
    log_info("session closed: %s", c->end_reason);
}

static void client_notice(struct client *c, enum client_notice kind,
                          const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
client_notice(struct client *c, enum client_notice kind, const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    log_info("%s", text);
    if (c->cfg.notice != NULL)
        c->cfg.notice(kind, text, c->cb_arg);
    g_free(text);
}

enum client_state
client_state(const struct client *c)
{
    return c->state;
}

enum client_exit
client_end(const struct client *c)
{
    return c->state == CLIENT_CLOSED ? c->end : CLIENT_EXIT_OK;
}

const char *
client_end_reason(const struct client *c)
{
    return c->end_reason;
}

const char *
client_nick(const struct client *c)
{
    return c->nick;
}

const char *
client_current_room(const struct client *c)
{
    return c->current;
}

unsigned
client_errors(const struct client *c)
{
    return c->errors;
}

size_t
client_queued(const struct client *c)
{
    return c->queue.length;
}

bool
client_secure(const struct client *c)
{
    return c->secure;
}

const char *
client_server_fingerprint(const struct client *c)
{
    return c->secure ? c->server_fp : NULL;
}

char *
client_info(const struct client *c)
{
    GString *s = g_string_new(NULL);
    char desc[256];
    char *nick;
    guint i;

    if (c->t != NULL) {
        transport_describe(c->t, desc, sizeof(desc));
        g_string_append_printf(s, "connection: %s\n", desc);
    } else {
        g_string_append(s, "connection: closed\n");
    }
    if (c->secure) {
        g_string_append_printf(s,
                               "encryption: secure session (X25519, "
                               "XChaCha20-Poly1305); the server reads "
                               "everything, others on the path do not\n"
                               "server key: %s\n",
                               c->server_fp);
        if (c->known_servers != NULL)
            g_string_append_printf(s, "known as:   %s port %u in %s\n",
                                   c->known_host, c->cfg.known_port,
                                   c->known_servers);
        g_string_append_printf(s, "your key:   %s\n",
                               c->cfg.identity != NULL
                                   ? identity_fingerprint_str(c->cfg.identity)
                                   : "none sent");
    } else {
        g_string_append_printf(
            s,
            "encryption: none: anyone on the path can read and change "
            "this session%s\n",
            c->offers_secure ? " (the server offers secure sessions: "
                               "reconnect with --secure)"
                             : "");
    }
    nick = g_strdup(c->nick);
    clean_text(nick);
    g_string_append_printf(s, "nick:       %s\n", nick);
    g_free(nick);
    g_string_append(s, "rooms:     ");
    for (i = 0; i < c->rooms->len; i++)
        g_string_append_printf(s, " %s",
                               (char *)g_ptr_array_index(c->rooms, i));
    if (c->rooms->len == 0)
        g_string_append(s, " none");
    if (c->current != NULL)
        g_string_append_printf(s, " (current: %s)", c->current);
    g_string_append_c(s, '\n');
    return g_string_free(s, FALSE);
}

/* Joined rooms */

static int
rooms_find(const struct client *c, const char *room)
{
    guint i;

    for (i = 0; i < c->rooms->len; i++)
        if (same_name(g_ptr_array_index(c->rooms, i), room))
            return (int)i;
    return -1;
}

static void
set_current(struct client *c, const char *room)
{
    char *old = c->current;

    c->current = g_strdup(room);
    g_free(old);
}

static void
rooms_add(struct client *c, const char *room)
{
    int i = rooms_find(c, room);

    if (i >= 0)
        g_ptr_array_remove_index(c->rooms, (guint)i);
    g_ptr_array_add(c->rooms, g_strdup(room));
    /* Take the server's spelling of the current room. */
    if (same_name(c->current, room))
        set_current(c, room);
}

static void
rooms_remove(struct client *c, const char *room)
{
    int i = rooms_find(c, room);

    if (i >= 0)
        g_ptr_array_remove_index(c->rooms, (guint)i);
    if (same_name(c->current, room))
        set_current(c, c->rooms->len > 0
                           ? g_ptr_array_index(c->rooms, c->rooms->len - 1)
                           : NULL);
}

/* Sending */

static int64_t
now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

/* Watch what the transport needs to read and, with bytes waiting, write
 * (a reliable-datagram backend may wait for acks rather than writability). */
static void
client_update_events(struct client *c)
{
    unsigned want = TRANSPORT_READ, ev;

    if (c->t == NULL)
        return;
    if (buf_len(&c->out) > 0)
        want |= TRANSPORT_WRITE;
    ev = transport_poll_events(c->t, want);
    if (ev != c->events && loop_mod_fd(c->loop, c->fd, ev) == CHAT_OK)
        c->events = ev;
}

static void
client_write(struct client *c)
{
    ssize_t n;

    while (c->t != NULL && buf_len(&c->out) > 0) {
        n = transport_send(c->t, buf_ptr(&c->out), buf_len(&c->out));
        if (n == CHAT_EAGAIN)
            break;
        if (n < 0) {
            client_close(c, CLIENT_EXIT_CLOSED,
                         "connection to the server lost: %s",
                         chat_strerror((int)n));
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    client_update_events(c);
}

/* Bytes a frame carrying len bytes of JSON takes in c->out. */
static size_t
client_frame_len(const struct client *c, size_t len)
{
    return FRAME_HDR + (c->secure ? secure_sealed_len(c->sec, len) : len);
}

/* The longest JSON request that fits in a frame the server takes. */
static size_t
client_json_max(const struct client *c)
{
    if (c->secure || c->sec_wait)
        return c->max_frame > SECURE_OVERHEAD_MAX
                   ? c->max_frame - SECURE_OVERHEAD_MAX
                   : 0;
    return c->max_frame;
}

/* Seal one serialized message (final: our TAG_FINAL) and frame it into
 * the output buffer. Everything is checked before sealing: a sealed frame
 * that is then dropped would put the stream out of step. */
static bool
client_put_sealed(struct client *c, const char *json, size_t len, bool final)
{
    uint8_t *sealed = NULL;
    size_t slen;
    int rc;

    if (secure_tx_finished(c->sec))
        return false; /* nothing goes after our FINAL (a late pong) */
    slen = secure_sealed_len(c->sec, len);
    if (slen > c->max_frame) {
        log_warn("a request of %zu bytes does not fit in a sealed frame", len);
        return false;
    }
    if (buf_room(&c->out) < FRAME_HDR + slen) {
        client_close(c, CLIENT_EXIT_CLOSED,
                     "the server is not reading: %d bytes waiting",
                     CLIENT_OUT_MAX);
        return false;
    }
    rc = secure_seal(c->sec, json, len, final, &sealed, &slen);
    if (rc == CHAT_OK)
        rc = frame_encode(&c->out, c->max_frame, sealed, slen);
    g_free(sealed);
    if (rc != CHAT_OK) {
        client_close(c, CLIENT_EXIT_CLOSED, "secure session failed: %s",
                     chat_strerror(rc));
        return false;
    }
    return true;
}

/* Frame one serialized message straight into the output buffer (sealed
 * in a secure session). */
static bool
client_put(struct client *c, const char *json, size_t len, bool final)
{
    int rc;

    if (c->secure)
        return client_put_sealed(c, json, len, final);
    rc = frame_encode(&c->out, c->max_frame, json, len);
    if (rc == CHAT_EFULL) {
        client_close(c, CLIENT_EXIT_CLOSED,
                     "the server is not reading: %d bytes waiting",
                     CLIENT_OUT_MAX);
        return false;
    }
    return rc == CHAT_OK;
}

/* Send obj now, ahead of the queue (hello, pong). Takes obj. */
static void
client_send_now(struct client *c, cJSON *obj)
{
    char *json;
    size_t len;

    json = msg_encode(obj, &len);
    cJSON_Delete(obj);
    if (json != NULL && client_put(c, json, len, false))
        client_write(c);
    g_free(json);
}

static void
rate_refill(struct client *c)
{
    int64_t now = now_us();

    if (now > c->refill_us)
        c->tokens += (double)(now - c->refill_us) / 1e6 * c->per_sec;
    if (c->tokens > c->burst)
        c->tokens = c->burst;
    c->refill_us = now;
}

/* Move queued requests into the output buffer as the pacing allows. */
static void
client_flush(struct client *c)
{
    struct client_req *r;

    /* During the handshake nothing may go out but its request. */
    while (c->t != NULL && !c->sec_wait &&
           (r = g_queue_peek_head(&c->queue)) != NULL) {
        if (r->paced && c->paced) {
            rate_refill(c);
            if (c->tokens < 1.0)
                break;
        }
        if (buf_room(&c->out) < client_frame_len(c, r->len))
            break; /* wait for the socket to drain */
        if (r->paced && c->paced)
            c->tokens -= 1.0;
        g_queue_pop_head(&c->queue);
        if (r->is_quit)
            c->deadline_us = now_us() + (int64_t)c->cfg.timeout_ms * 1000;
        /* In a secure session quit is our last frame: TAG_FINAL. */
        if (!client_put(c, r->json, r->len, r->is_quit)) {
            req_free(r);
            return;
        }
        req_free(r);
    }
    client_write(c);
}

/*
 * Queue obj (taken). CHAT_OK, or CHAT_ETOOBIG when it does not fit in a
 * frame this server takes (why says so; nothing queued).
 */
static int
client_enqueue(struct client *c, cJSON *obj, bool paced, bool is_quit,
               char *why, size_t why_len)
{
    struct client_req *r;
    char *json;
    size_t len;

    json = msg_encode(obj, &len);
    cJSON_Delete(obj);
    if (json == NULL) {
        g_snprintf(why, why_len, "cannot encode the request");
        return CHAT_EPROTO;
    }
    if (len == 0 || len > client_json_max(c)) {
        g_snprintf(why, why_len,
                   "request of %zu bytes is over the server's frame limit "
                   "of %zu bytes%s",
                   len, client_json_max(c),
                   c->secure ? " (less the sealing overhead)" : "");
        g_free(json);
        return CHAT_ETOOBIG;
    }
    r = g_new0(struct client_req, 1);
    r->json = json;
    r->len = len;
    r->paced = paced;
    r->is_quit = is_quit;
    g_queue_push_tail(&c->queue, r);
    client_flush(c);
    return CHAT_OK;
}

/* A new request object with the next id; *id_out gets that id. */
static cJSON *
client_request(struct client *c, const char *type, uint32_t *id_out)
{
    cJSON *id = cJSON_CreateNumber((double)c->next_id);
    cJSON *obj = msg_new(type, id);

    cJSON_Delete(id);
    *id_out = c->next_id;
    /* Stay within what every JSON reader takes exactly, and never 0. */
    c->next_id = c->next_id >= 0x7fffffffu ? 1 : c->next_id + 1;
    return obj;
}

static void
client_remember(struct client *c, uint32_t id, enum msg_type type,
                const char *room, const char *prev_current)
{
    struct client_pending *pd = g_new0(struct client_pending, 1);

    /* A server that never answers must not make this grow for ever. */
    if (g_hash_table_size(c->pending) >= CLIENT_PENDING_MAX)
        g_hash_table_remove_all(c->pending);
    pd->type = type;
    pd->room = g_strdup(room);
    pd->prev_current = g_strdup(prev_current);
    g_hash_table_replace(c->pending, GUINT_TO_POINTER(id), pd);
}

/* Queue a paced request; remembers it under its id. */
static enum client_input_rc
client_submit(struct client *c, cJSON *obj, uint32_t id, enum msg_type type,
              const char *room, char *why, size_t why_len)
{
    if (obj == NULL) {
        g_snprintf(why, why_len, "out of memory");
        return CLIENT_INPUT_ERROR;
    }
    if (client_enqueue(c, obj, true, false, why, why_len) != CHAT_OK)
        return CLIENT_INPUT_ERROR;
    client_remember(c, id, type, room, NULL);
    return CLIENT_INPUT_SENT;
}

static void
client_join(struct client *c, const char *room)
{
    char why[160];
    uint32_t id;
    cJSON *obj = client_request(c, "join", &id);
    char *prev = g_strdup(c->current);

    if (obj == NULL || !cJSON_AddStringToObject(obj, "room", room)) {
        cJSON_Delete(obj);
        g_free(prev);
        return;
    }
    /* /join switches at once, so that lines typed (or read) next go to
     * the new room in order; an error answer switches back. */
    if (client_enqueue(c, obj, true, false, why, sizeof(why)) == CHAT_OK) {
        client_remember(c, id, MSG_JOIN, room, prev);
        set_current(c, room);
    }
    g_free(prev);
}

void
client_quit(struct client *c, const char *reason)
{
    char why[160];
    uint32_t id;
    cJSON *obj;

    if (c->state != CLIENT_READY && c->state != CLIENT_HELLO)
        return;
    if (c->sec_wait) {
        /* Mid-handshake: nothing was said yet, there is nobody to tell. */
        c->quit_asked = true;
        client_close(c, CLIENT_EXIT_OK, "quit");
        return;
    }
    obj = client_request(c, "quit", &id);
    if (obj != NULL && reason != NULL && *reason != '\0')
        cJSON_AddStringToObject(obj, "reason", reason);
    c->quit_asked = true;
    c->state = CLIENT_QUITTING;
    if (obj == NULL ||
        client_enqueue(c, obj, false, true, why, sizeof(why)) != CHAT_OK)
        client_close(c, CLIENT_EXIT_OK, "quit");
}

/* Connecting */

/* hello: plain, or sealed and (with an identity) signed in a secure
 * session. */
static int
client_send_hello(struct client *c, char *why, size_t why_len)
{
    cJSON *hello;

    hello = msg_build_hello(c->nick, PACKAGE_NAME "/" PACKAGE_VERSION);
    if (hello == NULL) {
        g_snprintf(why, why_len, "out of memory");
        return CHAT_ESYS;
    }
    if (c->secure && c->cfg.identity != NULL &&
        secure_client_sign_hello(c->sec, identity_secret_key(c->cfg.identity),
                                 hello) != CHAT_OK) {
        cJSON_Delete(hello);
        g_snprintf(why, why_len, "cannot sign hello with your identity");
        return CHAT_ESYS;
    }
    client_send_now(c, hello);
    return CHAT_OK;
}

int
client_connect(struct client *c, const char *url, struct loop *l, char *why,
               size_t why_len)
{
    const char *sep;
    cJSON *req = NULL;
    int rc;

    rc = transport_connect_url(url, CLIENT_DEFAULT_PORT, c->cfg.timeout_ms,
                               &c->t, why, why_len);
    if (rc != CHAT_OK) {
        /* transport says "address: reason"; the caller names the URL. */
        sep = strstr(why, ": ");
        if (rc == CHAT_ESYS && sep != NULL)
            memmove(why, sep + 2, strlen(sep + 2) + 1);
        return rc;
    }
    c->loop = l;
    c->fd = transport_fd(c->t);
    c->events = transport_poll_events(c->t, TRANSPORT_READ);
    rc = loop_add_fd(l, c->fd, c->events, client_on_fd, c);
    if (rc != CHAT_OK) {
        g_snprintf(why, why_len, "cannot watch the connection: %s",
                   chat_strerror(rc));
        transport_close(c->t);
        c->t = NULL;
        c->fd = -1;
        return rc;
    }
    c->state = CLIENT_HELLO;
    c->deadline_us = now_us() + (int64_t)c->cfg.timeout_ms * 1000;
    if (c->cfg.secure != CLIENT_SECURE_OFF) {
        /* The secure request must be our first frame; hello waits for
         * the reply (client_handshake). */
        rc = secure_client_start(&c->sec, &req);
        if (rc != CHAT_OK) {
            g_snprintf(why, why_len, "cannot start a secure session: %s",
                       chat_strerror(rc));
            return rc;
        }
        c->sec_wait = true;
        client_send_now(c, req);
        return CHAT_OK;
    }
    return client_send_hello(c, why, why_len);
}

/* Receiving */

static void
apply_limits(struct client *c, const cJSON *welcome)
{
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(welcome, "limits");
    const cJSON *rate;
    uint64_t v, b;

    if (!cJSON_IsObject(limits))
        return;
    if (get_uint(limits, "max_frame", &v) && v >= 64 && v <= FRAME_MAX_LIMIT)
        c->max_frame = (size_t)v;
    if (get_uint(limits, "max_text", &v) && v >= 1 && v <= MSG_TEXT_MAX * 16)
        c->max_text = (size_t)v;
    rate = cJSON_GetObjectItemCaseSensitive(limits, "rate");
    if (cJSON_IsObject(rate) && get_uint(rate, "per_sec", &v) && v > 0 &&
        v < 1000000) {
        if (!get_uint(rate, "burst", &b) || b < 1 || b > 1000000)
            b = 1;
        c->paced = true;
        c->per_sec = (double)v * CLIENT_RATE_MARGIN;
        /* hello took one token of the server's bucket already. */
        c->burst = b > 1 ? (double)(b - 1) : 1.0;
        c->tokens = c->burst;
        c->refill_us = now_us();
    }
}

/* True when welcome's features array lists name. */
static bool
has_feature(const cJSON *welcome, const char *name)
{
    const cJSON *f = get_array(welcome, "features"), *it;

    cJSON_ArrayForEach(it, f)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, name) == 0)
            return true;
    }
    return false;
}

/* The request an answer is for, when it carries one of our ids. */
static bool
answer_id(const cJSON *obj, uint32_t *id)
{
    uint64_t v;

    *id = 0;
    if (!get_uint(obj, "id", &v) || v == 0 || v > 0x7fffffffu)
        return false;
    *id = (uint32_t)v;
    return true;
}

static void
client_state_before(struct client *c, const struct client_event *ev,
                    struct client_pending *pd)
{
    switch (ev->type) {
    case CEV_WELCOME:
        if (c->welcomed)
            break;
        c->welcomed = true;
        g_free(c->nick);
        c->nick = g_strdup(ev->nick);
        apply_limits(c, ev->obj);
        c->offers_secure = has_feature(ev->obj, "secure");
        if (c->state == CLIENT_HELLO) { /* not quitting already */
            c->state = CLIENT_READY;
            c->deadline_us = 0;
        }
        break;
    case CEV_ROOM:
        if (msg_valid_room(ev->room))
            rooms_add(c, ev->room);
        break;
    case CEV_LEFT:
        if (same_name(ev->nick, c->nick))
            rooms_remove(c, ev->room);
        break;
    case CEV_OK:
        if (pd != NULL && pd->type == MSG_LEAVE && pd->room != NULL)
            rooms_remove(c, pd->room);
        break;
    case CEV_RENAMED:
        if (same_name(ev->old_nick, c->nick) && msg_valid_nick(ev->new_nick)) {
            g_free(c->nick);
            c->nick = g_strdup(ev->new_nick);
        }
        break;
    case CEV_ERROR:
        if (c->welcomed)
            c->errors++;
        /* A refused join must not leave us talking into that room. */
        if (pd != NULL && pd->type == MSG_JOIN &&
            same_name(c->current, pd->room) && rooms_find(c, pd->room) < 0)
            set_current(c, pd->prev_current != NULL &&
                                   rooms_find(c, pd->prev_current) >= 0
                               ? pd->prev_current
                           : c->rooms->len > 0
                               ? g_ptr_array_index(c->rooms, c->rooms->len - 1)
                               : NULL);
        break;
    case CEV_PING:
        client_send_now(c, msg_build_pong(ev->token, NULL));
        break;
    default:
        break;
    }
}

/* The session ends with the server's bye. */
static void
client_close_bye(struct client *c, const char *reason)
{
    if (c->quit_asked)
        client_close(c, CLIENT_EXIT_OK, "bye");
    else
        client_close(c, CLIENT_EXIT_CLOSED,
                     "connection closed by the server: %s",
                     reason ? reason : "bye");
}

static void
client_state_after(struct client *c, const struct client_event *ev,
                   bool was_hello)
{
    enum proto_err pe;
    size_t i;

    switch (ev->type) {
    case CEV_WELCOME:
        if (was_hello && !c->secure && c->offers_secure)
            client_notice(c, CLIENT_NOTICE_HINT,
                          "this session is not encrypted, but the server "
                          "offers secure sessions: connect with --secure");
        if (!was_hello || c->state != CLIENT_READY)
            break;
        for (i = 0; i < c->cfg.n_rooms; i++)
            client_join(c, c->cfg.rooms[i]);
        /* The first room named is the current one, whatever the order
         * the answers come back in. */
        if (c->cfg.n_rooms > 0)
            set_current(c, c->cfg.rooms[0]);
        break;
    case CEV_ERROR:
        pe = proto_err_from_code(ev->code);
        if (was_hello)
            client_close(
                c, CLIENT_EXIT_REFUSED, "refused by the server: %s: %s%s",
                ev->code, ev->message ? ev->message : "",
                pe == PE_ENCRYPTION_REQUIRED && !c->secure
                    ? " (this server takes secure sessions only: connect "
                      "with --secure)"
                : pe == PE_NICK_RESERVED
                    ? " (the nick is reserved for another key: choose "
                      "another with -n)"
                    : "");
        else if (proto_err_closes(pe))
            client_close(c, CLIENT_EXIT_CLOSED,
                         "connection closed by the server: %s: %s", ev->code,
                         ev->message ? ev->message : "");
        break;
    case CEV_BYE:
        if (c->secure && !c->peer_final) {
            /* The server's FINAL frame comes next: wait for it, so that
             * the end of the session is authenticated. */
            c->bye_seen = true;
            g_free(c->bye_reason);
            c->bye_reason = g_strdup(ev->reason);
            c->state = CLIENT_QUITTING;
            c->deadline_us = now_us() + (int64_t)c->cfg.timeout_ms * 1000;
            break;
        }
        client_close_bye(c, ev->reason);
        break;
    default:
        break;
    }
}

/* Handle one frame payload. */
static void
client_handle(struct client *c, const uint8_t *p, size_t n)
{
    struct client_event ev;
    struct client_pending *pd = NULL;
    const char *end = NULL;
    cJSON *root;
    uint32_t id = 0;
    bool was_hello = !c->welcomed;
    size_t i;

    root = cJSON_ParseWithLengthOpts((const char *)p, n, &end, 0);
    if (root == NULL) {
        memset(&ev, 0, sizeof(ev));
        ev.type = CEV_MALFORMED;
        ev.why = "not valid JSON";
    } else {
        client_event_parse(root, &ev);
        for (i = (size_t)(end - (const char *)p); i < n; i++)
            if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
                break;
        if (i < n)
            malformed(&ev, "bytes after the JSON object");
        else
            ev.json_ok = cJSON_IsObject(root);
        if (ev.type == CEV_WELCOME && !was_hello)
            malformed(&ev, "a second welcome");
    }
    ev.raw = (const char *)p;
    ev.raw_len = n;
    if (ev.type != CEV_MALFORMED && answer_id(root, &id)) {
        pd = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(id));
        ev.answer = pd != NULL;
    }
    if (ev.type == CEV_MALFORMED)
        log_debug("malformed frame from the server: %s", ev.why);
    else if (was_hello && ev.type != CEV_WELCOME && ev.type != CEV_ERROR &&
             ev.type != CEV_PING && ev.type != CEV_PONG && ev.type != CEV_BYE)
        log_debug("unexpected %s before welcome", ev.type_str);
    if (ev.type != CEV_MALFORMED)
        client_state_before(c, &ev, pd);
    if (c->cb != NULL)
        c->cb(&ev, c->cb_arg);
    if (ev.type != CEV_MALFORMED)
        client_state_after(c, &ev, was_hello);
    if (pd != NULL)
        g_hash_table_remove(c->pending, GUINT_TO_POINTER(id));
    cJSON_Delete(root);
    /* While waiting for bye, anything heard shows the server is alive. */
    if (c->state == CLIENT_QUITTING && c->deadline_us != 0)
        c->deadline_us = now_us() + (int64_t)c->cfg.timeout_ms * 1000;
}

/* Secure handshake (doc/SECURE.md section 10, client side) */

/* A valid fingerprint that no key has: looking it up tells whether the
 * file has any entry for a host and port. */
#define CLIENT_NO_FP                                                           \
    "SHA256:0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 "      \
    "0000 0000 0000 0000"

/* Whether the known-servers file has an entry for our server. A file that
 * cannot be read counts as one: a damaged pin must not turn into a first
 * use, nor allow plain text. */
static bool
client_pinned(const struct client *c)
{
    struct identity_error err;
    enum identity_known known;

    if (c->known_servers == NULL || c->known_host == NULL)
        return false;
    if (identity_known_lookup(c->known_servers, c->known_host,
                              c->cfg.known_port, CLIENT_NO_FP, &known, NULL,
                              &err) != CHAT_OK) {
        log_warn("%s", err.text);
        return true;
    }
    return known != IDENTITY_KNOWN_NEW;
}

/* The server answered `secure` with a plain error: it does not offer
 * secure sessions (unknown_type), or refused the request. Neither is
 * authenticated: anyone on the path could have sent it. */
static void
client_handshake_error(struct client *c, const cJSON *root)
{
    const char *code = get_str(root, "code"), *msg = get_str(root, "message");
    char why[160];

    if (code == NULL || strcmp(code, "unknown_type") != 0) {
        client_close(c, CLIENT_EXIT_REFUSED,
                     "secure handshake refused by the server: %s: %s",
                     code != NULL ? code : "error", msg != NULL ? msg : "");
        return;
    }
    if (c->cfg.secure == CLIENT_SECURE_REQUIRED) {
        client_close(c, CLIENT_EXIT_REFUSED,
                     "the server does not offer secure sessions (it says "
                     "\"%s\", unauthenticated), and --secure requires one",
                     msg != NULL ? msg : code);
        return;
    }
    if (client_pinned(c)) {
        client_close(c, CLIENT_EXIT_REFUSED,
                     "%s port %u has a key in %s, but the answer says it "
                     "does not offer secure sessions: refusing to fall back "
                     "to plain text (someone may be downgrading the "
                     "connection)",
                     c->known_host, c->cfg.known_port, c->known_servers);
        return;
    }
    client_notice(c, CLIENT_NOTICE_WARNING,
                  "the server does not offer secure sessions: this session "
                  "is NOT encrypted");
    secure_free(c->sec);
    c->sec = NULL;
    c->sec_wait = false;
    if (client_send_hello(c, why, sizeof(why)) != CHAT_OK)
        client_close(c, CLIENT_EXIT_CLOSED, "%s", why);
}

/* Remember our host and port with the key the server proved; a file that
 * cannot be written leaves the trust to this session. */
static void
client_pin(struct client *c, const char *why)
{
    struct identity_error err;

    if (identity_known_add(c->known_servers, c->known_host, c->cfg.known_port,
                           c->server_fp, &err) != CHAT_OK)
        client_notice(c, CLIENT_NOTICE_WARNING,
                      "trusting the server for this session only: %s",
                      err.text);
    else
        client_notice(c, CLIENT_NOTICE_TRUSTED,
                      "%sremembered %s port %u with key %s in %s", why,
                      c->known_host, c->cfg.known_port, c->server_fp,
                      c->known_servers);
}

/* Look the key the server proved up in the known-servers file: true to go
 * on; false after closing (mismatch, refused, file trouble). */
static bool
client_check_known(struct client *c)
{
    struct identity_known_entry old, moved;
    struct identity_error err;
    struct client_trust_ask q;
    enum identity_known known;
    char *text, *hint = NULL;
    unsigned elsewhere = 0;
    bool trust;

    if (c->known_servers == NULL || c->known_host == NULL) {
        client_close(c, CLIENT_EXIT_REFUSED,
                     "no known-servers file to check the server's key "
                     "against");
        return false;
    }
    if (identity_known_lookup(c->known_servers, c->known_host,
                              c->cfg.known_port, c->server_fp, &known, &old,
                              &err) != CHAT_OK) {
        client_close(c, CLIENT_EXIT_REFUSED,
                     "cannot check the server's key: %s", err.text);
        return false;
    }
    if (known == IDENTITY_KNOWN_MATCH)
        return true;
    if (known == IDENTITY_KNOWN_MISMATCH) {
        text =
            identity_known_mismatch_text(c->known_servers, c->known_host,
                                         c->cfg.known_port, &old, c->server_fp);
        client_notice(c, CLIENT_NOTICE_REFUSAL, "%s", text);
        g_free(text);
        client_close(c, CLIENT_EXIT_REFUSED,
                     "refused: the key of %s port %u is not the one "
                     "remembered (line %u of %s); nothing was sent",
                     c->known_host, c->cfg.known_port, old.line,
                     c->known_servers);
        return false;
    }
    /* First use of this host and port. Is the key the server has just
     * proved (not the one a beacon announced) pinned under another
     * address: the same server with a new DHCP lease? */
    if (identity_known_find_fp(c->known_servers, c->server_fp, &elsewhere,
                               &moved, &err) != CHAT_OK) {
        client_close(c, CLIENT_EXIT_REFUSED,
                     "cannot check the server's key: %s", err.text);
        return false;
    }
    if (elsewhere > 0 && discover_chose(c->known_host, c->cfg.known_port)) {
        /* The user asked discovery for a server, and this one proved a key
         * they trusted already: nothing to ask. Its old entry stays; should
         * another key turn up there, that is a mismatch as before. */
        text = g_strdup_printf("the server proved the key pinned for %s "
                               "port %u (line %u): it moved; ",
                               moved.host, moved.port, moved.line);
        client_pin(c, text);
        g_free(text);
        return true;
    }
    if (elsewhere > 0) {
        /* Named by the user: an address is theirs to trust, but say why
         * the key looks familiar. */
        hint = g_strdup_printf("it is the key pinned for %s port %u (line %u "
                               "of %s): the same server at a new address?",
                               moved.host, moved.port, moved.line,
                               c->known_servers);
        client_notice(c, CLIENT_NOTICE_HINT, "%s port %u is new, but %s",
                      c->known_host, c->cfg.known_port, hint);
    }
    q.host = c->known_host;
    q.port = c->cfg.known_port;
    q.fingerprint = c->server_fp;
    q.known_servers = c->known_servers;
    if (c->cfg.accept_new) {
        trust = true;
    } else if (c->cfg.ask != NULL) {
        trust = c->cfg.ask(&q, c->cb_arg);
        if (!trust)
            client_close(c, CLIENT_EXIT_REFUSED,
                         "the server %s port %u was not trusted; nothing "
                         "was sent",
                         c->known_host, c->cfg.known_port);
    } else {
        trust = false;
        client_close(c, CLIENT_EXIT_REFUSED,
                     "%s port %u is a new server, with key %s. Compare it "
                     "with the fingerprint its operator gives, then connect "
                     "again with --accept-new to remember it%s%s%s",
                     c->known_host, c->cfg.known_port, c->server_fp,
                     hint != NULL ? " (" : "", hint != NULL ? hint : "",
                     hint != NULL ? ")" : "");
    }
    g_free(hint);
    if (!trust || c->state == CLIENT_CLOSED)
        return false;
    client_pin(c, "");
    return true;
}

/* The plain frame that answers our `secure` request. */
static void
client_handshake(struct client *c, const uint8_t *p, size_t n)
{
    uint8_t pk[SECURE_PK_BYTES];
    const char *type, *why = NULL;
    char err[160];
    cJSON *root;
    int rc;

    root = cJSON_ParseWithLength((const char *)p, n);
    type = get_str(root, "type");
    if (type != NULL && strcmp(type, "ping") == 0) {
        /* A pong now would be a plain frame the server cannot open. */
        cJSON_Delete(root);
        return;
    }
    if (type != NULL && strcmp(type, "error") == 0) {
        client_handshake_error(c, root);
        cJSON_Delete(root);
        return;
    }
    if (root == NULL) {
        client_close(c, CLIENT_EXIT_REFUSED,
                     "secure handshake failed: the server's reply is not "
                     "JSON");
        return;
    }
    rc = secure_client_finish(c->sec, root, pk, &why);
    cJSON_Delete(root);
    if (rc != CHAT_OK) {
        client_close(c, CLIENT_EXIT_REFUSED, "secure handshake failed: %s",
                     why != NULL ? why : chat_strerror(rc));
        return;
    }
    identity_fingerprint(pk, c->server_fp);
    if (!client_check_known(c))
        return;
    c->sec_wait = false;
    c->secure = true;
    client_notice(c, CLIENT_NOTICE_SECURE, "encrypted session; server key %s",
                  c->server_fp);
    /* A question on the terminal may have taken a while. */
    c->deadline_us = now_us() + (int64_t)c->cfg.timeout_ms * 1000;
    if (client_send_hello(c, err, sizeof(err)) != CHAT_OK)
        client_close(c, CLIENT_EXIT_CLOSED, "%s", err);
}

/* One frame payload from the server: the handshake reply, a plain
 * message, or a sealed one to open first. A sealed frame holds one message
 * or a batch of them (doc/SECURE.md section 5), handled in order. */
static void
client_frame(struct client *c, const uint8_t *body, size_t len)
{
    uint8_t *plain = NULL;
    const uint8_t *msg;
    size_t plen = 0, off = 0, mlen;
    bool final = false;
    int rc = CHAT_EAGAIN;

    if (c->sec_wait) {
        client_handshake(c, body, len);
        return;
    }
    if (!c->secure) {
        client_handle(c, body, len);
        return;
    }
    if (secure_open(c->sec, body, len, &plain, &plen, &final) != CHAT_OK) {
        client_close(c, CLIENT_EXIT_CLOSED, "secure session failed: %s",
                     c->peer_final
                         ? "the server sent a frame after its final one"
                         : "a frame from the server did not open (changed, "
                           "cut, replayed or not sealed)");
        return;
    }
    if (final)
        c->peer_final = true;
    while (c->state != CLIENT_CLOSED &&
           (rc = secure_plain_next(plain, plen, &off, &msg, &mlen)) == CHAT_OK)
        client_handle(c, msg, mlen);
    g_free(plain);
    if (c->state == CLIENT_CLOSED)
        return;
    if (rc == CHAT_EPROTO) {
        client_close(c, CLIENT_EXIT_CLOSED,
                     "secure session failed: the server sent a malformed "
                     "batch");
        return;
    }
    if (final) {
        if (c->bye_seen)
            client_close_bye(c, c->bye_reason);
        else
            client_close(c, CLIENT_EXIT_CLOSED,
                         "connection closed by the server (its final frame "
                         "came without bye)");
    }
}

/* The session ended under us: in a secure session, say whether the end
 * was the server's own. */
static void
client_warn_cut(struct client *c)
{
    if (c->secure && !c->peer_final)
        client_notice(c, CLIENT_NOTICE_WARNING,
                      "the server's end was not authenticated: the "
                      "connection ended without its final frame, so someone "
                      "else may have cut it");
}

static void
client_frames(struct client *c)
{
    const uint8_t *body;
    size_t len;
    int rc;

    while (c->state != CLIENT_CLOSED) {
        rc = frame_peek(&c->in, c->max_frame, &body, &len);
        if (rc == CHAT_EAGAIN)
            return;
        if (rc == CHAT_EPROTO) {
            client_close(c, CLIENT_EXIT_CLOSED,
                         "protocol error from the server: empty frame");
            return;
        }
        if (rc == CHAT_ETOOBIG) {
            client_close(c, CLIENT_EXIT_CLOSED,
                         "protocol error from the server: frame over the "
                         "limit of %zu bytes",
                         c->max_frame);
            return;
        }
        client_frame(c, body, len);
        frame_consume(&c->in, len);
    }
}

static void
client_read(struct client *c)
{
    uint8_t *p;
    size_t avail;
    ssize_t n;
    int i;

    for (i = 0; i < CLIENT_READS_PER_WAKE && c->t != NULL; i++) {
        p = buf_reserve(&c->in, CLIENT_READ_CHUNK, &avail);
        if (p == NULL || avail == 0) {
            client_close(c, CLIENT_EXIT_CLOSED,
                         "protocol error from the server: input overflow");
            return;
        }
        n = transport_recv(c->t, p, avail);
        if (n == CHAT_EAGAIN)
            return;
        if (n == CHAT_ECLOSED) {
            client_warn_cut(c);
            if (c->bye_seen)
                client_close_bye(c, c->bye_reason);
            else if (c->sec_wait)
                client_close(c, CLIENT_EXIT_CLOSED,
                             "connection closed by the server during the "
                             "secure handshake");
            else if (!c->welcomed)
                client_close(c, CLIENT_EXIT_CLOSED,
                             "connection closed by the server before "
                             "welcome");
            else if (c->state == CLIENT_QUITTING)
                client_close(c, CLIENT_EXIT_CLOSED,
                             "connection closed by the server before bye");
            else
                client_close(c, CLIENT_EXIT_CLOSED,
                             "connection closed by the server");
            return;
        }
        if (n < 0) {
            client_warn_cut(c);
            client_close(c, CLIENT_EXIT_CLOSED,
                         "connection to the server lost: %s",
                         chat_strerror((int)n));
            return;
        }
        buf_commit(&c->in, (size_t)n);
        client_frames(c);
    }
}

static void
client_on_fd(struct loop *l, int fd, unsigned events, void *arg)
{
    struct client *c = arg;

    (void)l;
    (void)fd;
    if (events & LOOP_READ)
        client_read(c);
    /* Reading may have opened a send window too (acks, for udp). */
    if (c->t != NULL)
        client_flush(c);
}

/* Timers */

static int
client_timeout_ms(struct client *c)
{
    struct client_req *r = g_queue_peek_head(&c->queue);
    int64_t now = now_us(), wait = -1, d;

    if (c->deadline_us != 0)
        wait = c->deadline_us > now ? c->deadline_us - now : 0;
    if (c->t != NULL) {
        d = transport_next_timeout(c->t, now / 1000);
        if (d >= 0 && (wait < 0 || d * 1000 < wait))
            wait = d * 1000;
    }
    if (r != NULL && r->paced && c->paced && c->t != NULL) {
        rate_refill(c);
        d = c->tokens >= 1.0
                ? 0
                : (int64_t)((1.0 - c->tokens) / c->per_sec * 1e6) + 1000;
        if (wait < 0 || d < wait)
            wait = d;
    }
    if (wait < 0)
        return -1;
    return (int)MIN(wait / 1000 + 1, 60000);
}

static void
client_tick(struct client *c)
{
    int rc;

    if (c->state == CLIENT_CLOSED || c->t == NULL)
        return;
    rc = transport_tick(c->t, now_ms());
    if (rc != CHAT_OK) {
        client_close(c, CLIENT_EXIT_CLOSED, "connection to the server lost: %s",
                     chat_strerror(rc));
        return;
    }
    if (c->deadline_us != 0 && now_us() >= c->deadline_us) {
        if (c->bye_seen) {
            client_warn_cut(c);
            client_close_bye(c, c->bye_reason);
        } else if (c->sec_wait)
            client_close(c, CLIENT_EXIT_UNREACHABLE,
                         "no answer to the secure handshake within %d s",
                         c->cfg.timeout_ms / 1000);
        else if (!c->welcomed)
            client_close(c, CLIENT_EXIT_UNREACHABLE,
                         "no welcome from the server within %d s",
                         c->cfg.timeout_ms / 1000);
        else
            client_close(c, CLIENT_EXIT_CLOSED,
                         "no bye from the server within %d s",
                         c->cfg.timeout_ms / 1000);
        return;
    }
    client_flush(c);
}

void
client_run_once(struct client *c, struct loop *l, int max_ms)
{
    int t = client_timeout_ms(c);

    if (t < 0 || (max_ms >= 0 && max_ms < t))
        t = max_ms;
    loop_run_once(l, t);
    client_tick(c);
}

/* Commands */

/* Split the first word off *s: returns it NUL-ended, *s at the rest. */
static char *
next_word(char **s)
{
    char *w = *s, *e;

    while (*w == ' ' || *w == '\t')
        w++;
    e = w;
    while (*e != '\0' && *e != ' ' && *e != '\t')
        e++;
    if (*e != '\0')
        *e++ = '\0';
    while (*e == ' ' || *e == '\t')
        e++;
    *s = e;
    return w;
}

/* ROOM or #ROOM into out[]; false with why when it is no room name. */
static bool
norm_room(const char *arg, char *out, size_t n, char *why, size_t why_len)
{
    g_snprintf(out, n, "%s%s", arg[0] == '#' ? "" : "#", arg);
    if (strlen(arg) + 2 > n || !msg_valid_room(out)) {
        g_snprintf(why, why_len,
                   "bad room name '%s': # then 1-%d of A-Z a-z 0-9 _ -", arg,
                   MSG_ROOM_MAX);
        return false;
    }
    return true;
}

static bool
check_text(const struct client *c, const char *text, size_t max, bool empty_ok,
           char *why, size_t why_len)
{
    size_t len = strlen(text);

    if (len == 0 && !empty_ok) {
        g_snprintf(why, why_len, "nothing to send");
        return false;
    }
    if (len > max) {
        g_snprintf(why, why_len,
                   "text_too_long: %zu bytes, the server takes at most %zu",
                   len, max);
        return false;
    }
    if (!msg_valid_text(text, len)) {
        g_snprintf(why, why_len,
                   "text is not valid UTF-8 or has control characters");
        return false;
    }
    (void)c;
    return true;
}

static bool
need_current(const struct client *c, char *why, size_t why_len)
{
    if (c->current != NULL)
        return true;
    g_snprintf(why, why_len, "you are in no room: /join one first");
    return false;
}

static enum client_input_rc
cmd_say(struct client *c, const char *text, bool action, char *why,
        size_t why_len)
{
    uint32_t id;
    cJSON *obj;

    if (!need_current(c, why, why_len) ||
        !check_text(c, text, c->max_text, false, why, why_len))
        return CLIENT_INPUT_ERROR;
    obj = client_request(c, "say", &id);
    if (obj != NULL && (!cJSON_AddStringToObject(obj, "room", c->current) ||
                        !cJSON_AddStringToObject(obj, "text", text) ||
                        (action && !cJSON_AddTrueToObject(obj, "action")))) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    return client_submit(c, obj, id, MSG_SAY, c->current, why, why_len);
}

static enum client_input_rc
cmd_with_room(struct client *c, const char *type, enum msg_type mt,
              const char *room, const char *reason, char *why, size_t why_len)
{
    uint32_t id;
    cJSON *obj = client_request(c, type, &id);

    if (obj != NULL && (!cJSON_AddStringToObject(obj, "room", room) ||
                        (reason != NULL && *reason != '\0' &&
                         !cJSON_AddStringToObject(obj, "reason", reason)))) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    return client_submit(c, obj, id, mt, room, why, why_len);
}

/* The room argument of /leave and /who, or the current room. */
static bool
room_arg(const struct client *c, char **rest, char *room, size_t n, char *why,
         size_t why_len)
{
    char *w;

    if (**rest == '\0') {
        if (!need_current(c, why, why_len))
            return false;
        g_snprintf(room, n, "%s", c->current);
        return true;
    }
    w = next_word(rest);
    return norm_room(w, room, n, why, why_len);
}

static enum client_input_rc
cmd_topic(struct client *c, const char *rest, char *why, size_t why_len)
{
    char room[MSG_ROOM_MAX + 3];
    const char *text = rest;
    size_t w;
    uint32_t id;
    cJSON *obj;

    /* "/topic #room text" names the room; "/topic text" means the current
     * one. A lone "#word" is the text, not a room with no topic. */
    room[0] = '\0';
    w = strcspn(rest, " \t");
    if (rest[0] == '#' && w < sizeof(room) &&
        rest[w + strspn(rest + w, " \t")]) {
        g_snprintf(room, sizeof(room), "%.*s", (int)w, rest);
        if (msg_valid_room(room))
            text = rest + w + strspn(rest + w, " \t");
        else
            room[0] = '\0';
    }
    if (room[0] == '\0') {
        if (!need_current(c, why, why_len))
            return CLIENT_INPUT_ERROR;
        g_snprintf(room, sizeof(room), "%s", c->current);
    }
    if (*text == '\0') {
        g_snprintf(why, why_len, "usage: /topic [ROOM] TEXT");
        return CLIENT_INPUT_ERROR;
    }
    if (!check_text(c, text, MSG_TOPIC_MAX, false, why, why_len))
        return CLIENT_INPUT_ERROR;
    obj = client_request(c, "topic", &id);
    if (obj != NULL && (!cJSON_AddStringToObject(obj, "room", room) ||
                        !cJSON_AddStringToObject(obj, "topic", text))) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    return client_submit(c, obj, id, MSG_TOPIC, room, why, why_len);
}

static enum client_input_rc
cmd_msg(struct client *c, char *rest, char *why, size_t why_len)
{
    char *to = next_word(&rest);
    uint32_t id;
    cJSON *obj;

    if (*to == '\0' || *rest == '\0') {
        g_snprintf(why, why_len, "usage: /msg NICK TEXT");
        return CLIENT_INPUT_ERROR;
    }
    if (!msg_valid_nick(to)) {
        g_snprintf(why, why_len, "bad nick '%s': 1-%d of A-Z a-z 0-9 _ -", to,
                   MSG_NICK_MAX);
        return CLIENT_INPUT_ERROR;
    }
    if (!check_text(c, rest, c->max_text, false, why, why_len))
        return CLIENT_INPUT_ERROR;
    obj = client_request(c, "msg", &id);
    if (obj != NULL && (!cJSON_AddStringToObject(obj, "to", to) ||
                        !cJSON_AddStringToObject(obj, "text", rest))) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    return client_submit(c, obj, id, MSG_MSG, NULL, why, why_len);
}

static enum client_input_rc
cmd_nick(struct client *c, char *rest, char *why, size_t why_len)
{
    char *nick = next_word(&rest);
    uint32_t id;
    cJSON *obj;

    if (*nick == '\0' || *rest != '\0') {
        g_snprintf(why, why_len, "usage: /nick NICK");
        return CLIENT_INPUT_ERROR;
    }
    if (!msg_valid_nick(nick)) {
        g_snprintf(why, why_len, "bad nick '%s': 1-%d of A-Z a-z 0-9 _ -", nick,
                   MSG_NICK_MAX);
        return CLIENT_INPUT_ERROR;
    }
    obj = client_request(c, "nick", &id);
    if (obj != NULL && !cJSON_AddStringToObject(obj, "nick", nick)) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    return client_submit(c, obj, id, MSG_NICK, NULL, why, why_len);
}

static enum client_input_rc
client_command(struct client *c, char *line, char *why, size_t why_len)
{
    char room[MSG_ROOM_MAX + 3];
    char *rest = line + 1;
    char *cmd = next_word(&rest);
    uint32_t id;
    cJSON *obj;

    if (g_ascii_strcasecmp(cmd, "join") == 0) {
        char *w = next_word(&rest);

        if (*w == '\0' || *rest != '\0') {
            g_snprintf(why, why_len, "usage: /join ROOM");
            return CLIENT_INPUT_ERROR;
        }
        if (!norm_room(w, room, sizeof(room), why, why_len))
            return CLIENT_INPUT_ERROR;
        client_join(c, room);
        return CLIENT_INPUT_SENT;
    }
    if (g_ascii_strcasecmp(cmd, "leave") == 0 ||
        g_ascii_strcasecmp(cmd, "part") == 0) {
        if (!room_arg(c, &rest, room, sizeof(room), why, why_len))
            return CLIENT_INPUT_ERROR;
        if (!check_text(c, rest, MSG_REASON_MAX, true, why, why_len))
            return CLIENT_INPUT_ERROR;
        return cmd_with_room(c, "leave", MSG_LEAVE, room, rest, why, why_len);
    }
    if (g_ascii_strcasecmp(cmd, "who") == 0) {
        if (!room_arg(c, &rest, room, sizeof(room), why, why_len))
            return CLIENT_INPUT_ERROR;
        if (*rest != '\0') {
            g_snprintf(why, why_len, "usage: /who [ROOM]");
            return CLIENT_INPUT_ERROR;
        }
        return cmd_with_room(c, "who", MSG_WHO, room, NULL, why, why_len);
    }
    if (g_ascii_strcasecmp(cmd, "msg") == 0)
        return cmd_msg(c, rest, why, why_len);
    if (g_ascii_strcasecmp(cmd, "nick") == 0)
        return cmd_nick(c, rest, why, why_len);
    if (g_ascii_strcasecmp(cmd, "topic") == 0)
        return cmd_topic(c, rest, why, why_len);
    if (g_ascii_strcasecmp(cmd, "me") == 0)
        return cmd_say(c, rest, true, why, why_len);
    if (g_ascii_strcasecmp(cmd, "list") == 0) {
        if (*rest != '\0') {
            g_snprintf(why, why_len, "usage: /list");
            return CLIENT_INPUT_ERROR;
        }
        obj = client_request(c, "list", &id);
        return client_submit(c, obj, id, MSG_LIST, NULL, why, why_len);
    }
    if (g_ascii_strcasecmp(cmd, "quit") == 0 ||
        g_ascii_strcasecmp(cmd, "exit") == 0) {
        if (!check_text(c, rest, MSG_REASON_MAX, true, why, why_len))
            return CLIENT_INPUT_ERROR;
        client_quit(c, rest);
        return CLIENT_INPUT_QUIT;
    }
    if (g_ascii_strcasecmp(cmd, "help") == 0)
        return CLIENT_INPUT_HELP;
    if (g_ascii_strcasecmp(cmd, "info") == 0) {
        if (*rest != '\0') {
            g_snprintf(why, why_len, "usage: /info");
            return CLIENT_INPUT_ERROR;
        }
        return CLIENT_INPUT_INFO;
    }
    /* discovery: printed here, between the erased input line and the
     * next prompt; nothing goes to the server */
    if (g_ascii_strcasecmp(cmd, "servers") == 0) {
        if (*rest != '\0') {
            g_snprintf(why, why_len, "usage: /servers");
            return CLIENT_INPUT_ERROR;
        }
        discover_session_print(stdout);
        return CLIENT_INPUT_NONE;
    }
    g_snprintf(why, why_len, "unknown command /%s (try /help)", cmd);
    return CLIENT_INPUT_ERROR;
}

enum client_input_rc
client_input(struct client *c, const char *line, char *why, size_t why_len)
{
    enum client_input_rc rc;
    char *copy;
    size_t n;

    why[0] = '\0';
    if (line == NULL)
        return CLIENT_INPUT_NONE;
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        n--;
    copy = g_strndup(line, n);
    if (strspn(copy, " \t") == n) {
        rc = CLIENT_INPUT_NONE;
    } else if (c->state != CLIENT_READY) {
        g_snprintf(why, why_len,
                   c->state == CLIENT_QUITTING
                       ? "quitting: nothing more is sent"
                       : "not connected");
        rc = CLIENT_INPUT_ERROR;
    } else if (copy[0] == '/' && copy[1] != '/') {
        rc = client_command(c, copy, why, why_len);
    } else {
        rc = cmd_say(c, copy[0] == '/' ? copy + 1 : copy, false, why, why_len);
    }
    g_free(copy);
    return rc;
}
