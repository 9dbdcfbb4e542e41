/* fuzz_message.c - libFuzzer target for the request parser and validators
 * (common/message.c).
 *
 * The input is one frame payload. msg_parse() must never crash or leak
 * (LeakSanitizer runs at exit and every -runs), and:
 * - on success: the request obeys PROTOCOL.md sections 2-4 (names valid,
 *   text and topic lengths and characters, id range, unused fields NULL);
 *   the payload was valid UTF-8 that plain cJSON accepts too; and the
 *   request rebuilt with the message.h builders, encoded and parsed again
 *   gives the same request (parse . encode . parse == parse). The events the
 *   server builds from its fields encode to valid JSON no longer than the
 *   sizes commands.c assumes (two bytes per text byte at most);
 * - on failure: err holds a known code and text, and what the envelope set
 *   (type, id) is still consistent.
 * The raw input also goes through msg_valid_nick/_room/_text and msg_fold.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <glib.h>

#include "message.h"

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

/* A fixed ts keeps encodings the same size on every run. */
#define FUZZ_TS INT64_C(1700000000000)

static bool
str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool
text_ok(const char *s, size_t min, size_t max)
{
    size_t len;

    if (s == NULL)
        return false;
    len = strlen(s);
    return len >= min && len <= max && msg_valid_text(s, len);
}

static bool
id_ok(const cJSON *id)
{
    if (id == NULL)
        return true;
    if (cJSON_IsString(id))
        return text_ok(id->valuestring, 0, MSG_ID_STR_MAX);
    if (!cJSON_IsNumber(id))
        return false;
    return id->valuedouble >= 0.0 && id->valuedouble <= MSG_ID_INT_MAX &&
           id->valuedouble == (double)(int64_t)id->valuedouble;
}

static bool
id_eq(const cJSON *a, const cJSON *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (cJSON_IsString(a))
        return cJSON_IsString(b) && strcmp(a->valuestring, b->valuestring) == 0;
    return cJSON_IsNumber(b) && a->valuedouble == b->valuedouble;
}

/* Section 2-4 rules for a request msg_parse() accepted. */
static void
check_request(const struct msg_request *r)
{
    bool uses_room = false, uses_text = false, uses_nick = false;
    bool uses_reason = false, uses_token = false;

    CHECK(r->root != NULL && cJSON_IsObject(r->root));
    CHECK(r->type != MSG_UNKNOWN);
    CHECK(str_eq(r->type_str, msg_type_name(r->type)));
    CHECK(id_ok(r->id));
    switch (r->type) {
    case MSG_HELLO:
        CHECK(r->version == PROTO_VERSION);
        CHECK(msg_valid_nick(r->nick));
        CHECK(r->client == NULL || text_ok(r->client, 0, MSG_CLIENT_MAX));
        uses_nick = true;
        break;
    case MSG_JOIN:
    case MSG_WHO:
        CHECK(msg_valid_room(r->room));
        uses_room = true;
        break;
    case MSG_LEAVE:
    case MSG_QUIT:
        if (r->type == MSG_LEAVE)
            CHECK(msg_valid_room(r->room));
        uses_room = r->type == MSG_LEAVE;
        CHECK(r->reason == NULL || text_ok(r->reason, 1, MSG_REASON_MAX));
        uses_reason = true;
        break;
    case MSG_SAY:
        CHECK(msg_valid_room(r->room));
        CHECK(text_ok(r->text, 1, MSG_TEXT_MAX));
        uses_room = uses_text = true;
        break;
    case MSG_MSG:
        CHECK(msg_valid_nick(r->to));
        CHECK(text_ok(r->text, 1, MSG_TEXT_MAX));
        uses_text = true;
        break;
    case MSG_NICK:
        CHECK(msg_valid_nick(r->nick));
        uses_nick = true;
        break;
    case MSG_TOPIC:
        CHECK(msg_valid_room(r->room));
        CHECK(text_ok(r->topic, 0, MSG_TOPIC_MAX));
        uses_room = true;
        break;
    case MSG_PING:
    case MSG_PONG:
        CHECK(r->token == NULL || text_ok(r->token, 0, MSG_TOKEN_MAX));
        uses_token = true;
        break;
    case MSG_LIST:
    case MSG_SECURE:
    case MSG_UNKNOWN:
        break;
    }
    /* Fields a type does not use are NULL (message.h). */
    if (r->type != MSG_HELLO)
        CHECK(r->version == 0 && r->client == NULL);
    if (!uses_nick)
        CHECK(r->nick == NULL);
    if (!uses_room)
        CHECK(r->room == NULL);
    if (!uses_text)
        CHECK(r->text == NULL);
    if (r->type != MSG_SAY)
        CHECK(!r->action);
    if (r->type != MSG_MSG)
        CHECK(r->to == NULL);
    if (r->type != MSG_TOPIC)
        CHECK(r->topic == NULL);
    if (!uses_reason)
        CHECK(r->reason == NULL);
    if (!uses_token)
        CHECK(r->token == NULL);
}

static void
add_opt(cJSON *o, const char *key, const char *val)
{
    if (val != NULL)
        CHECK(cJSON_AddStringToObject(o, key, val) != NULL);
}

/* The request r rebuilt with the builders, as a client would send it. */
static cJSON *
rebuild(const struct msg_request *r)
{
    cJSON *o = NULL;

    switch (r->type) {
    case MSG_HELLO:
        o = msg_build_hello(r->nick, r->client);
        CHECK(o != NULL && msg_add_id(o, r->id));
        return o;
    case MSG_PING:
        o = msg_build_ping(r->token);
        CHECK(o != NULL && msg_add_id(o, r->id));
        return o;
    case MSG_PONG:
        o = msg_build_pong(r->token, r->id);
        CHECK(o != NULL);
        return o;
    default:
        break;
    }
    o = msg_new(r->type_str, r->id);
    CHECK(o != NULL);
    add_opt(o, "nick", r->nick);
    add_opt(o, "room", r->room);
    add_opt(o, "to", r->to);
    add_opt(o, "text", r->text);
    add_opt(o, "topic", r->topic);
    add_opt(o, "reason", r->reason);
    if (r->action)
        CHECK(cJSON_AddTrueToObject(o, "action") != NULL);
    return o;
}

/* parse . encode . parse == parse */
static void
check_roundtrip(const struct msg_request *r)
{
    struct msg_request back;
    struct msg_error err;
    cJSON *o = rebuild(r);
    size_t len = 0;
    char *json = msg_encode(o, &len);

    CHECK(json != NULL && len > 0 && strlen(json) == len);
    if (msg_parse((const uint8_t *)json, len, &back, &err) != 0) {
        fprintf(stderr, "re-encoded request refused (%s: %s): %s\n",
                proto_err_code(err.code), err.text, json);
        abort();
    }
    CHECK(back.type == r->type);
    CHECK(str_eq(back.type_str, r->type_str));
    CHECK(id_eq(back.id, r->id));
    CHECK(back.version == r->version);
    CHECK(str_eq(back.nick, r->nick));
    CHECK(str_eq(back.client, r->client));
    CHECK(str_eq(back.room, r->room));
    CHECK(str_eq(back.text, r->text));
    CHECK(back.action == r->action);
    CHECK(str_eq(back.to, r->to));
    CHECK(str_eq(back.topic, r->topic));
    CHECK(str_eq(back.reason, r->reason));
    CHECK(str_eq(back.token, r->token));
    msg_request_cleanup(&back);
    CHECK(back.root == NULL);
    g_free(json);
    cJSON_Delete(o);
}

/* Encode an event, check it is valid UTF-8 JSON of at most limit bytes. */
static void
check_event(cJSON *ev, size_t limit)
{
    size_t len = 0;
    char *json;
    cJSON *back;

    CHECK(ev != NULL);
    json = msg_encode(ev, &len);
    CHECK(json != NULL);
    if (len > limit) {
        fprintf(stderr, "event of %zu bytes over %zu: %.200s\n", len, limit,
                json);
        abort();
    }
    CHECK(g_utf8_validate(json, (gssize)len, NULL));
    back = cJSON_ParseWithLength(json, len);
    CHECK(back != NULL && cJSON_IsObject(back));
    cJSON_Delete(back);
    g_free(json);
    cJSON_Delete(ev);
}

/* What commands.c builds from r: the sizes it relies on. The fields other
 * than text take under 200 bytes, and a text byte is at most two (the
 * max_text_for() rule, PROTOCOL.md "max_text"). */
static void
check_events(const struct msg_request *r)
{
    const char *nick = "abcdefghijklmnopqrstuvwx"; /* MSG_NICK_MAX */

    switch (r->type) {
    case MSG_SAY:
        check_event(msg_build_message(r->room, NULL, nick, r->text, r->action,
                                      FUZZ_TS, UINT64_C(1) << 52),
                    200 + 2 * strlen(r->text));
        break;
    case MSG_MSG:
        check_event(
            msg_build_message(NULL, r->to, nick, r->text, false, FUZZ_TS, 0),
            200 + 2 * strlen(r->text));
        break;
    case MSG_TOPIC:
        check_event(msg_build_topic(r->room, r->topic, nick, FUZZ_TS, r->id),
                    400 + 2 * MSG_TOPIC_MAX);
        break;
    case MSG_LEAVE:
        check_event(msg_build_left(r->room, nick, r->reason, FUZZ_TS),
                    200 + 2 * MSG_REASON_MAX);
        break;
    case MSG_QUIT:
        check_event(msg_build_quit(nick, r->reason, FUZZ_TS),
                    200 + 2 * MSG_REASON_MAX);
        check_event(msg_build_bye(r->reason, r->id), 300 + 2 * MSG_REASON_MAX);
        break;
    case MSG_NICK:
        check_event(msg_build_renamed(nick, r->nick, FUZZ_TS, r->id), 400);
        break;
    case MSG_JOIN:
        check_event(msg_build_joined(r->room, nick, FUZZ_TS), 200);
        break;
    case MSG_PING:
        check_event(msg_build_pong(r->token, r->id), 400);
        break;
    default:
        check_event(msg_build_ok(r->type_str, r->id), 200);
        break;
    }
}

/* The name and text rules on the raw bytes. */
static void
check_validators(const uint8_t *data, size_t size)
{
    char *s = g_strndup((const char *)data, size);
    size_t len = strlen(s);
    size_t i;
    char *f;

    if (msg_valid_nick(s)) {
        CHECK(len >= 1 && len <= MSG_NICK_MAX);
        for (i = 0; i < len; i++)
            CHECK(g_ascii_isalnum(s[i]) || s[i] == '_' || s[i] == '-');
    }
    if (msg_valid_room(s)) {
        CHECK(len >= 2 && len <= MSG_ROOM_MAX + 1 && s[0] == '#');
        CHECK(msg_valid_nick(s + 1) || len - 1 > MSG_NICK_MAX);
    }
    if (msg_valid_text(s, len)) {
        CHECK(g_utf8_validate(s, (gssize)len, NULL));
        for (i = 0; i < len; i++)
            CHECK((unsigned char)s[i] >= 0x20 || s[i] == '\t');
        CHECK(memchr(s, 0x7f, len) == NULL);
        for (i = 0; i + 1 < len; i++) /* C1 controls, U+0080-U+009F */
            CHECK(!((unsigned char)s[i] == 0xc2 &&
                    (unsigned char)s[i + 1] >= 0x80 &&
                    (unsigned char)s[i + 1] <= 0x9f));
    }
    /* Folding keeps length and validity, and is idempotent. */
    f = msg_fold(s);
    CHECK(f != NULL && strlen(f) == len);
    CHECK(msg_valid_nick(f) == msg_valid_nick(s));
    CHECK(msg_valid_room(f) == msg_valid_room(s));
    {
        char *ff = msg_fold(f);

        CHECK(strcmp(f, ff) == 0);
        g_free(ff);
    }
    g_free(f);
    g_free(s);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* message.c logs every refusal at debug level: with G_MESSAGES_DEBUG
     * set, that would be a line per input. */
    g_unsetenv("G_MESSAGES_DEBUG");
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct msg_request req;
    struct msg_error err;
    int rc;

    memset(&err, 0x5a, sizeof(err)); /* msg_parse() must clear it */
    rc = msg_parse(data, size, &req, &err);
    if (rc == 0) {
        cJSON *plain;

        CHECK(err.code == PE_NONE);
        check_request(&req);
        /* The protocol is strict where cJSON is lenient, never laxer. */
        CHECK(size > 0 &&
              g_utf8_validate((const char *)data, (gssize)size, NULL));
        plain = cJSON_ParseWithLength((const char *)data, size);
        CHECK(plain != NULL && cJSON_IsObject(plain));
        cJSON_Delete(plain);
        check_roundtrip(&req);
        check_events(&req);
    } else {
        CHECK(rc == -1);
        CHECK(err.code > PE_NONE && err.code < PE_COUNT);
        CHECK(proto_err_code(err.code) != NULL);
        CHECK(proto_err_from_code(proto_err_code(err.code)) == err.code);
        CHECK(memchr(err.text, '\0', sizeof(err.text)) != NULL);
        CHECK(err.text[0] != '\0');
        CHECK(id_ok(req.id));
        if (req.type != MSG_UNKNOWN)
            CHECK(str_eq(req.type_str, msg_type_name(req.type)));
        /* A refused request's fields still belong to its type. */
        CHECK(req.nick == NULL || req.type == MSG_HELLO ||
              req.type == MSG_NICK);
        CHECK(req.text == NULL || req.type == MSG_SAY || req.type == MSG_MSG);
        if (req.type_str == NULL)
            CHECK(req.type == MSG_UNKNOWN);
    }
    msg_request_cleanup(&req);
    CHECK(req.root == NULL && req.type_str == NULL && req.id == NULL);
    check_validators(data, size);
    return 0;
}
