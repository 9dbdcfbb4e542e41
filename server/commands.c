/* commands.c - what sockchatd does with each request.
 *
 * Every handler gets a request that message.c has already validated, so
 * what is left here is the state of the server: names, rooms, limits.
 * Replies carry the request's id; events to others do not.
 */
#include "commands.h"

#include <string.h>

#include "log.h"

/* Room a JSON string of a nick takes in a list, with quotes and comma. */
#define LIST_SLACK 64

static const char *
nick_of(const void *member)
{
    return ((const struct client *)member)->nick;
}

/* Add members' nicks to arr while the object stays under budget bytes.
 * Returns false when some were left out. */
static bool
add_nicks(cJSON *arr, const GPtrArray *members, size_t *budget)
{
    guint i;

    for (i = 0; i < members->len; i++) {
        const char *n = nick_of(g_ptr_array_index(members, i));
        size_t need = strlen(n) + 3;

        if (need > *budget)
            return false;
        *budget -= need;
        cJSON_AddItemToArray(arr, cJSON_CreateString(n));
    }
    return true;
}

static size_t
encoded_len(const cJSON *obj)
{
    size_t len = 0;
    char *s = msg_encode(obj, &len);

    g_free(s);
    return len;
}

cJSON *
commands_build_room(const struct room *r, size_t max_frame, const cJSON *id)
{
    /* The id counts against max_frame too. */
    cJSON *o = msg_new("room", id);
    cJSON *members, *history;
    size_t base, budget, used = 0, n = 0;
    bool truncated = false;
    GList *l;

    cJSON_AddStringToObject(o, "room", r->name);
    cJSON_AddStringToObject(o, "topic", r->topic);
    members = cJSON_AddArrayToObject(o, "members");
    history = cJSON_AddArrayToObject(o, "history");
    /* Room for "truncated":true and slack, decided up front. */
    base = encoded_len(o) + LIST_SLACK;
    budget = max_frame > base ? max_frame - base : 0;
    if (!add_nicks(members, r->members, &budget))
        truncated = true;
    /* The newest history entries that fit, kept oldest first. */
    for (l = r->history.tail; l; l = l->prev) {
        size_t len = strlen(l->data) + 1;

        if (len > budget - used) {
            truncated = true;
            break;
        }
        used += len;
        n++;
    }
    for (l = r->history.tail; n > 1; n--)
        l = l->prev;
    for (; n > 0 && l; l = l->next)
        cJSON_AddItemToArray(history, cJSON_CreateRaw(l->data));
    if (truncated)
        cJSON_AddTrueToObject(o, "truncated");
    return o;
}

cJSON *
commands_build_members(const struct room *r, size_t max_frame,
                       const cJSON *id)
{
    cJSON *o = msg_new("members", id);
    cJSON *members;
    size_t base, budget;

    GPtrArray *verified = g_ptr_array_new();
    guint i;

    cJSON_AddStringToObject(o, "room", r->name);
    members = cJSON_AddArrayToObject(o, "members");
    /* Members who proved a long-term key in a secure session. */
    cJSON *ver = cJSON_AddArrayToObject(o, "verified");
    base = encoded_len(o) + LIST_SLACK;
    budget = max_frame > base ? max_frame - base : 0;
    for (i = 0; i < r->members->len; i++)
        if (((const struct client *)g_ptr_array_index(r->members, i))
                ->verified)
            g_ptr_array_add(verified, g_ptr_array_index(r->members, i));
    if (!add_nicks(members, r->members, &budget) ||
        !add_nicks(ver, verified, &budget))
        cJSON_AddTrueToObject(o, "truncated");
    g_ptr_array_unref(verified);
    return o;
}

/* The most text bytes that surely fit a message event in max_frame: the
 * event's other fields take under 200 bytes, and JSON may escape each text
 * byte to two ('"' and '\\'). */
static size_t
max_text_for(size_t max_frame)
{
    size_t room = max_frame > 256 ? (max_frame - 256) / 2 : 0;

    return room < MSG_TEXT_MAX ? room : MSG_TEXT_MAX;
}

/* Whether an event of len bytes goes out; if not, c hears why. */
static bool
fits_frame(struct client *c, const struct msg_request *req, size_t len)
{
    size_t max = server_event_max(c->srv);
    char text[96];

    if (len <= max)
        return true;
    g_snprintf(text, sizeof(text),
               "the message does not fit in a frame of %zu bytes", max);
    client_send_error(c, PE_TEXT_TOO_LONG, text, req->type_str, req->id);
    return false;
}

static bool
client_in_room(const struct client *c, const struct room *r)
{
    guint i;

    for (i = 0; i < c->rooms->len; i++)
        if (g_ptr_array_index(c->rooms, i) == r)
            return true;
    return false;
}

/* The room of req->room if c is in it; else answers not_in_room. */
static struct room *
room_of_member(struct client *c, const struct msg_request *req)
{
    struct room *r = rooms_find(server_rooms(c->srv), req->room);

    if (!r || !client_in_room(c, r)) {
        char text[96];

        g_snprintf(text, sizeof(text), "you are not in %s", req->room);
        client_send_error(c, PE_NOT_IN_ROOM, text, req->type_str, req->id);
        return NULL;
    }
    return r;
}

/* A hello inside a secure session may prove a long-term key (a signature
 * over the handshake). false when the session ended or the request was
 * answered with an error. */
static bool
hello_identity(struct client *c, const struct msg_request *req)
{
    uint8_t pk[SECURE_PK_BYTES];
    const char *why = NULL;
    bool present = false;
    int rc;

    /* Without a session there is nothing to prove a key with: a hello
     * that claims one gets bad_field (the function says so). */
    rc = secure_server_verify_hello(c->sec, req->root, pk, &present, &why);
    if (rc == CHAT_EPROTO) {
        client_send_error(c, PE_BAD_FIELD, why, req->type_str, req->id);
        return false;
    }
    if (rc != CHAT_OK) {
        client_send_error(c, PE_SECURE_FAILED, why, req->type_str, req->id);
        client_close(c, "secure session failed");
        return false;
    }
    if (present) {
        c->verified = true;
        identity_fingerprint(pk, c->fp);
    }
    return true;
}

/* With --reserve-nicks, a nick belongs to the key that first used it;
 * anyone else (or a session without a key) gets nick_reserved. A free nick
 * taken by a proven key is reserved for it. */
static bool
nick_allowed(struct client *c, const struct msg_request *req)
{
    struct identity_nicks *nicks = server_nicks(c->srv);
    struct identity_error err;

    if (!nicks)
        return true;
    switch (identity_nicks_check(nicks, req->nick, c->verified ? c->fp : NULL)) {
    case IDENTITY_NICK_RESERVED:
        client_send_error(c, PE_NICK_RESERVED,
                          "that nick is reserved for another key",
                          req->type_str, req->id);
        return false;
    case IDENTITY_NICK_FREE:
        if (c->verified &&
            identity_nicks_reserve(nicks, req->nick, c->fp, &err) != CHAT_OK)
            log_warn("conn %u: cannot reserve %s: %s", c->id, req->nick,
                     err.text);
        break;
    case IDENTITY_NICK_OWNED:
        break;
    }
    return true;
}

static void
cmd_hello(struct client *c, const struct msg_request *req)
{
    const struct server_config *cfg = server_cfg(c->srv);
    cJSON *w, *limits, *rate, *features;

    if (c->registered) {
        client_send_error(c, PE_ALREADY_REGISTERED, "you said hello already",
                          req->type_str, req->id);
        return;
    }
    if (cfg->secure == SECURE_POLICY_REQUIRED && !c->sec) {
        client_send_error(c, PE_ENCRYPTION_REQUIRED,
                          "this server requires an encrypted session: "
                          "send secure first",
                          req->type_str, req->id);
        client_close(c, "encryption required");
        return;
    }
    if (!hello_identity(c, req))
        return;
    if (server_find_nick(c->srv, req->nick)) {
        client_send_error(c, PE_NICK_IN_USE, "that nick is taken",
                          req->type_str, req->id);
        return;
    }
    if (!nick_allowed(c, req))
        return;
    server_set_nick(c->srv, c, req->nick);
    c->registered = true;
    w = msg_new("welcome", req->id);
    cJSON_AddNumberToObject(w, "version", PROTO_VERSION);
    cJSON_AddStringToObject(w, "nick", c->nick);
    cJSON_AddStringToObject(w, "server", cfg->name);
    if (cfg->motd && cfg->motd[0])
        cJSON_AddStringToObject(w, "motd", cfg->motd);
    limits = cJSON_AddObjectToObject(w, "limits");
    cJSON_AddNumberToObject(limits, "max_frame", (double)cfg->max_frame);
    cJSON_AddNumberToObject(limits, "max_text",
                            (double)max_text_for(cfg->max_frame));
    cJSON_AddNumberToObject(limits, "max_rooms", cfg->max_rooms);
    cJSON_AddNumberToObject(limits, "max_queue", (double)cfg->max_queue);
    rate = cJSON_AddObjectToObject(limits, "rate");
    cJSON_AddNumberToObject(rate, "per_sec", cfg->rate);
    cJSON_AddNumberToObject(rate, "burst", cfg->burst);
    features = cJSON_AddArrayToObject(w, "features");
    if (cfg->secure != SECURE_POLICY_OFF)
        cJSON_AddItemToArray(features, cJSON_CreateString("secure"));
    client_send(c, w);
    cJSON_Delete(w);
    log_info("conn %u: %s is %s", c->id, c->peer, c->nick);
}

static void
cmd_join(struct client *c, const struct msg_request *req)
{
    const struct server_config *cfg = server_cfg(c->srv);
    struct rooms *rs = server_rooms(c->srv);
    struct room *r = rooms_find(rs, req->room);
    cJSON *reply, *ev;

    if (r && client_in_room(c, r)) {
        /* Joining again answers room again and tells nobody. */
        reply = commands_build_room(r, client_payload_max(c), req->id);
        client_send(c, reply);
        cJSON_Delete(reply);
        return;
    }
    if (c->rooms->len >= cfg->max_rooms) {
        client_send_error(c, PE_TOO_MANY_ROOMS,
                          "you are in as many rooms as allowed",
                          req->type_str, req->id);
        return;
    }
    if (!r && rooms_get_or_create(rs, req->room, &r) != CHAT_OK) {
        client_send_error(c, PE_TOO_MANY_ROOMS,
                          "the server has as many rooms as it keeps",
                          req->type_str, req->id);
        return;
    }
    room_add_member(rs, r, c);
    g_ptr_array_add(c->rooms, r);
    reply = commands_build_room(r, client_payload_max(c), req->id);
    client_send(c, reply);
    cJSON_Delete(reply);
    /* Dropped while its reply was queued (slow consumer, out of memory):
     * it has left the room again, and its quit is all the room hears. */
    if (c->closing)
        return;
    ev = msg_build_joined(r->name, c->nick, msg_now_ms());
    server_send_room(c->srv, r, ev, NULL);
    cJSON_Delete(ev);
}

static void
cmd_leave(struct client *c, const struct msg_request *req)
{
    struct room *r = room_of_member(c, req);
    cJSON *ev, *ok;

    if (!r)
        return;
    ev = msg_build_left(r->name, c->nick, req->reason, msg_now_ms());
    server_send_room(c->srv, r, ev, NULL);
    cJSON_Delete(ev);
    room_remove_member(server_rooms(c->srv), r, c);
    g_ptr_array_remove(c->rooms, r);
    ok = msg_build_ok(req->type_str, req->id);
    client_send(c, ok);
    cJSON_Delete(ok);
}

static void
cmd_say(struct client *c, const struct msg_request *req)
{
    struct room *r = room_of_member(c, req);
    int64_t now = msg_now_ms();
    size_t len = 0, mine_len = 0;
    char *json = NULL, *mine_json = NULL;
    struct frame_blob *shared;
    GPtrArray *members;
    guint i;

    if (!r)
        return;
    /* The seq is taken only once the event is known to go out, so that a
     * refused message leaves no gap that reads as a lost one. */
    json = msg_encode_message(r->name, NULL, c->nick, req->text, req->action,
                              now, r->seq + 1, NULL, &len);
    /* One encoding for everyone; the sender's copy carries its id, and
     * both must fit max_frame. Encoded straight to text: this runs for
     * every message (msg_encode_message). */
    if (json && req->id)
        mine_json = msg_encode_message(r->name, NULL, c->nick, req->text,
                                       req->action, now, r->seq + 1, req->id,
                                       &mine_len);
    if (!json || (req->id && !mine_json) ||
        !fits_frame(c, req, MAX(len, mine_len)))
        goto out;
    /* The frame first: a message that cannot be framed is not accepted,
     * takes no seq and reaches nobody, and the sender, whose request it
     * was, is dropped as out of memory (server_fan_out() does the same
     * for every receiver of an event that cannot be framed). */
    shared = frame_blob_new(json, len);
    if (!shared) {
        log_warn("conn %u: out of memory for a message; dropping it", c->id);
        client_send_error(c, PE_SERVER_FULL,
                          "the server ran out of memory; closing",
                          req->type_str, req->id);
        client_close(c, "out of memory");
        goto out;
    }
    room_next_seq(r);
    members = g_ptr_array_copy(r->members, NULL, NULL);
    for (i = 0; i < members->len; i++) {
        struct client *m = g_ptr_array_index(members, i);

        if (m == c && mine_json)
            client_send_raw(c, mine_json, mine_len);
        else
            client_send_blob(m, shared);
    }
    g_ptr_array_unref(members);
    frame_blob_unref(shared);
    room_push_history_take(server_rooms(c->srv), r, json);
    json = NULL;
out:
    g_free(json);
    g_free(mine_json);
}

static void
cmd_msg(struct client *c, const struct msg_request *req)
{
    struct client *to = server_find_nick(c->srv, req->to);
    cJSON *ev, *mine;

    if (!to) {
        char text[96];

        g_snprintf(text, sizeof(text), "nobody called %s is here", req->to);
        client_send_error(c, PE_NO_SUCH_NICK, text, req->type_str, req->id);
        return;
    }
    ev = msg_build_message(NULL, to->nick, c->nick, req->text, false,
                           msg_now_ms(), 0);
    /* The sender's echo carries the id: it is the larger of the two. */
    mine = cJSON_Duplicate(ev, 1);
    msg_add_id(mine, req->id);
    if (fits_frame(c, req, encoded_len(mine))) {
        if (to != c)
            client_send(to, ev);
        client_send(c, mine);
    }
    cJSON_Delete(mine);
    cJSON_Delete(ev);
}

static void
cmd_nick(struct client *c, const struct msg_request *req)
{
    struct client *other = server_find_nick(c->srv, req->nick);
    char *old;
    cJSON *ev;

    if (other && other != c) {
        client_send_error(c, PE_NICK_IN_USE, "that nick is taken",
                          req->type_str, req->id);
        return;
    }
    if (!nick_allowed(c, req))
        return;
    old = g_strdup(c->nick);
    server_set_nick(c->srv, c, req->nick);
    ev = msg_build_renamed(old, c->nick, msg_now_ms(), NULL);
    server_send_peers(c->srv, c, ev, false);
    if (req->id)
        msg_add_id(ev, req->id);
    client_send(c, ev);
    cJSON_Delete(ev);
    log_info("conn %u: %s is now %s", c->id, old, c->nick);
    g_free(old);
}

static void
cmd_topic(struct client *c, const struct msg_request *req)
{
    struct room *r = room_of_member(c, req);
    int64_t ts = msg_now_ms();
    cJSON *ev;

    if (!r)
        return;
    room_set_topic(r, req->topic);
    ev = msg_build_topic(r->name, r->topic, c->nick, ts, NULL);
    /* Everyone but the sender gets the shared event; the sender's copy
     * answers its request and carries the id. */
    server_send_room(c->srv, r, ev, c);
    if (req->id)
        msg_add_id(ev, req->id);
    client_send(c, ev);
    cJSON_Delete(ev);
}

static void
cmd_list(struct client *c, const struct msg_request *req)
{
    GPtrArray *active = rooms_list_active(server_rooms(c->srv));
    cJSON *o = msg_new("rooms", req->id);
    cJSON *arr = cJSON_AddArrayToObject(o, "rooms");
    size_t base = encoded_len(o) + LIST_SLACK;
    size_t max = client_payload_max(c);
    size_t budget = max > base ? max - base : 0;
    guint i;

    for (i = 0; i < active->len; i++) {
        const struct room *r = g_ptr_array_index(active, i);
        cJSON *e = cJSON_CreateObject();
        size_t need;

        cJSON_AddStringToObject(e, "room", r->name);
        cJSON_AddStringToObject(e, "topic", r->topic);
        cJSON_AddNumberToObject(e, "members", r->members->len);
        need = encoded_len(e) + 1;
        if (need > budget) {
            cJSON_Delete(e);
            cJSON_AddTrueToObject(o, "truncated");
            break;
        }
        budget -= need;
        cJSON_AddItemToArray(arr, e);
    }
    client_send(c, o);
    cJSON_Delete(o);
    g_ptr_array_unref(active);
}

static void
cmd_who(struct client *c, const struct msg_request *req)
{
    struct room *r = rooms_find(server_rooms(c->srv), req->room);
    cJSON *o;

    if (!r) {
        char text[96];

        g_snprintf(text, sizeof(text), "there is no room %s", req->room);
        client_send_error(c, PE_NO_SUCH_ROOM, text, req->type_str, req->id);
        return;
    }
    o = commands_build_members(r, client_payload_max(c), req->id);
    client_send(c, o);
    cJSON_Delete(o);
}

static void
cmd_ping(struct client *c, const struct msg_request *req)
{
    cJSON *o = msg_build_pong(req->token, req->id);

    client_send(c, o);
    cJSON_Delete(o);
}

static void
cmd_quit(struct client *c, const struct msg_request *req)
{
    cJSON *o = msg_build_bye(req->reason, req->id);

    client_send(c, o);
    cJSON_Delete(o);
    client_close(c, req->reason);
}

static void
cmd_secure(struct client *c, const struct msg_request *req)
{
    const struct identity *id = server_identity(c->srv);
    struct secure_session *sec = NULL;
    cJSON *reply = NULL;
    const char *why = NULL;

    if (server_cfg(c->srv)->secure == SECURE_POLICY_OFF || !id) {
        client_send_error(c, PE_UNKNOWN_TYPE,
                          "this server does not offer secure sessions",
                          req->type_str, req->id);
        return;
    }
    /* Everything before the exchange would be unauthenticated. */
    if (c->frames != 1 || c->sec) {
        client_send_error(c, PE_SECURE_FAILED,
                          "secure must be the first request of a session",
                          req->type_str, req->id);
        client_close(c, "secure session failed");
        return;
    }
    if (secure_server_accept(identity_secret_key(id), req->root, &sec, &reply,
                             &why) != CHAT_OK) {
        client_send_error(c, PE_SECURE_FAILED, why, req->type_str, req->id);
        client_close(c, "secure session failed");
        return;
    }
    /* The answer travels in the clear; every frame after it is sealed. */
    msg_add_id(reply, req->id);
    client_send(c, reply);
    cJSON_Delete(reply);
    client_start_sealing(c, sec);
}

#define REQUEST_ECHO_MAX 64 /* bytes of an unknown type echoed back */

/* The type as sent goes back in an error's "request" (PROTOCOL.md 4.1),
 * but an unknown one is bounded only by the frame: past REQUEST_ECHO_MAX
 * it is left out, so that the error always fits max_frame. */
static const char *
request_echo(const struct msg_request *req)
{
    if (req->type_str && strlen(req->type_str) > REQUEST_ECHO_MAX)
        return NULL;
    return req->type_str;
}

/* Allowed before welcome (section 3). */
static bool
allowed_unregistered(enum msg_type t)
{
    return t == MSG_HELLO || t == MSG_SECURE || t == MSG_PING ||
           t == MSG_PONG || t == MSG_QUIT;
}

/* Not counted by the rate limit (section 4.1). */
static bool
rate_exempt(enum msg_type t)
{
    return t == MSG_PING || t == MSG_PONG || t == MSG_QUIT;
}

void
commands_dispatch(struct client *c, const uint8_t *p, size_t n)
{
    const struct server_config *cfg = server_cfg(c->srv);
    struct msg_request req;
    struct msg_error err;
    int rc;

    rc = msg_parse(p, n, &req, &err);
    if (!rate_exempt(req.type) &&
        !rate_take(&c->rate, cfg->rate, cfg->burst, server_now())) {
        client_send_error(c, PE_RATE_LIMITED,
                          "slow down: too many requests", request_echo(&req),
                          req.id);
        goto out;
    }
    if (req.type != MSG_UNKNOWN && !c->registered &&
        !allowed_unregistered(req.type)) {
        client_send_error(c, PE_NOT_REGISTERED, "say hello first",
                          request_echo(&req), req.id);
        goto out;
    }
    if (rc != 0) {
        client_send_error(c, err.code, err.text, request_echo(&req), req.id);
        if (proto_err_closes(err.code))
            client_close(c, "protocol error");
        goto out;
    }
    switch (req.type) {
    case MSG_HELLO:
        cmd_hello(c, &req);
        break;
    case MSG_SECURE:
        cmd_secure(c, &req);
        break;
    case MSG_JOIN:
        cmd_join(c, &req);
        break;
    case MSG_LEAVE:
        cmd_leave(c, &req);
        break;
    case MSG_SAY:
        cmd_say(c, &req);
        break;
    case MSG_MSG:
        cmd_msg(c, &req);
        break;
    case MSG_NICK:
        cmd_nick(c, &req);
        break;
    case MSG_TOPIC:
        cmd_topic(c, &req);
        break;
    case MSG_LIST:
        cmd_list(c, &req);
        break;
    case MSG_WHO:
        cmd_who(c, &req);
        break;
    case MSG_PING:
        cmd_ping(c, &req);
        break;
    case MSG_PONG:
        break; /* a pong is activity; it is never answered */
    case MSG_QUIT:
        cmd_quit(c, &req);
        break;
    case MSG_UNKNOWN:
        break; /* msg_parse() refused it above */
    }
out:
    msg_request_cleanup(&req);
}
