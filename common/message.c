/* message.c - parse, validate and build the JSON envelope (PROTOCOL.md 2-4).
 *
 * cJSON is lenient where the protocol is strict, so msg_parse() adds what it
 * lacks: UTF-8 validation, BOM refusal, strict whitespace between tokens,
 * nothing but whitespace after the object, a depth limit, duplicate-key
 * refusal and escaped NUL detection (cJSON silently truncates at \u0000).
 */
#include "message.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "log.h"

/* Below this, cJSON's "%1.15g" prints an integer exactly; from 10^15 up to
 * 2^53 it would print 15 significant digits and lose the rest. */
#define MSG_EXACT_PRINT_MAX 999999999999999.0

/* Objects with more members than this are checked for duplicate keys by
 * sorting, so that a frame full of keys cannot cost quadratic time. */
#define MSG_DUP_PAIRWISE_MAX 16

static const char *const proto_err_codes[PE_COUNT] = {
    [PE_NONE] = NULL,
    [PE_BAD_FRAME] = "bad_frame",
    [PE_FRAME_TOO_LARGE] = "frame_too_large",
    [PE_BAD_JSON] = "bad_json",
    [PE_UNKNOWN_TYPE] = "unknown_type",
    [PE_MISSING_FIELD] = "missing_field",
    [PE_BAD_FIELD] = "bad_field",
    [PE_NOT_REGISTERED] = "not_registered",
    [PE_ALREADY_REGISTERED] = "already_registered",
    [PE_VERSION_UNSUPPORTED] = "version_unsupported",
    [PE_BAD_NICK] = "bad_nick",
    [PE_NICK_IN_USE] = "nick_in_use",
    [PE_BAD_ROOM] = "bad_room",
    [PE_NOT_IN_ROOM] = "not_in_room",
    [PE_NO_SUCH_NICK] = "no_such_nick",
    [PE_NO_SUCH_ROOM] = "no_such_room",
    [PE_TOO_MANY_ROOMS] = "too_many_rooms",
    [PE_TEXT_TOO_LONG] = "text_too_long",
    [PE_RATE_LIMITED] = "rate_limited",
    [PE_SLOW_CONSUMER] = "slow_consumer",
    [PE_SERVER_FULL] = "server_full",
    [PE_TIMEOUT] = "timeout",
    [PE_ENCRYPTION_REQUIRED] = "encryption_required",
    [PE_SECURE_FAILED] = "secure_failed",
    [PE_NICK_RESERVED] = "nick_reserved",
};

static const char *const msg_type_names[] = {
    [MSG_UNKNOWN] = NULL, [MSG_HELLO] = "hello", [MSG_SECURE] = "secure",
    [MSG_JOIN] = "join",  [MSG_LEAVE] = "leave", [MSG_SAY] = "say",
    [MSG_MSG] = "msg",    [MSG_NICK] = "nick",   [MSG_TOPIC] = "topic",
    [MSG_LIST] = "list",  [MSG_WHO] = "who",     [MSG_PING] = "ping",
    [MSG_PONG] = "pong",  [MSG_QUIT] = "quit",
};

#define MSG_TYPE_COUNT (sizeof(msg_type_names) / sizeof(msg_type_names[0]))

const char *
proto_err_code(enum proto_err e)
{
    if ((int)e <= (int)PE_NONE || (int)e >= (int)PE_COUNT)
        return NULL;
    return proto_err_codes[e];
}

enum proto_err
proto_err_from_code(const char *code)
{
    int i;

    if (code == NULL)
        return PE_NONE;
    for (i = PE_NONE + 1; i < PE_COUNT; i++) {
        if (strcmp(proto_err_codes[i], code) == 0)
            return (enum proto_err)i;
    }
    return PE_NONE;
}

bool
proto_err_closes(enum proto_err e)
{
    switch (e) {
    case PE_BAD_FRAME:
    case PE_FRAME_TOO_LARGE:
    case PE_SLOW_CONSUMER:
    case PE_SERVER_FULL:
    case PE_TIMEOUT:
    case PE_ENCRYPTION_REQUIRED:
    case PE_VERSION_UNSUPPORTED:
    case PE_SECURE_FAILED:
        return true;
    default:
        return false;
    }
}

const char *
msg_type_name(enum msg_type t)
{
    if ((int)t <= (int)MSG_UNKNOWN || (size_t)t >= MSG_TYPE_COUNT)
        return NULL;
    return msg_type_names[t];
}

static enum msg_type
msg_type_lookup(const char *s)
{
    size_t i;

    for (i = MSG_UNKNOWN + 1; i < MSG_TYPE_COUNT; i++) {
        if (strcmp(msg_type_names[i], s) == 0)
            return (enum msg_type)i;
    }
    return MSG_UNKNOWN;
}

/* Names */

static bool
name_char(char c)
{
    return g_ascii_isalnum(c) || c == '_' || c == '-';
}

static bool
name_valid(const char *s, size_t max)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if (i >= max || !name_char(s[i]))
            return false;
    }
    return i > 0;
}

bool
msg_valid_nick(const char *s)
{
    return s != NULL && name_valid(s, MSG_NICK_MAX);
}

bool
msg_valid_room(const char *s)
{
    return s != NULL && s[0] == '#' && name_valid(s + 1, MSG_ROOM_MAX);
}

bool
msg_valid_text(const char *s, size_t len)
{
    const char *p;
    const char *end;
    gunichar c;

    if (s == NULL)
        return len == 0;
    if (len > G_MAXSSIZE || !g_utf8_validate_len(s, (gssize)len, NULL))
        return false;
    end = s + len;
    /* g_utf8_next_char() casts away const; step with its table instead. */
    for (p = s; p < end; p += g_utf8_skip[*(const guchar *)p]) {
        c = g_utf8_get_char(p);
        if ((c < 0x20 && c != '\t') || (c >= 0x7f && c <= 0x9f))
            return false;
    }
    return true;
}

char *
msg_fold(const char *s)
{
    if (s == NULL)
        return NULL;
    return g_ascii_strdown(s, -1);
}

int64_t
msg_now_ms(void)
{
    return g_get_real_time() / 1000;
}

/* Parsing */

static void msg_set_err(struct msg_error *err, enum proto_err code,
                        const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
msg_set_err(struct msg_error *err, enum proto_err code, const char *fmt, ...)
{
    va_list ap;

    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, ap);
    va_end(ap);
}

static bool
json_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int
hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Scan the raw bytes of a payload cJSON has accepted. Outside strings, a byte
 * below 0x20 other than JSON whitespace makes it invalid (cJSON skips any
 * such byte as if it were a space), and inside strings any byte below 0x20
 * does (it must be escaped): returns false. Inside strings, escapes
 * are stepped over whole, so "\\u0000" (a backslash, then "u0000") is not
 * taken for a \u0000 escape; *nul is set when a real one is seen.
 */
static bool
scan_raw(const uint8_t *p, size_t n, bool *nul)
{
    size_t i = 0;
    unsigned v;
    int h;
    int k;

    *nul = false;
    while (i < n) {
        if (p[i] == '"') {
            i++;
            while (i < n && p[i] != '"') {
                /* RFC 8259: control characters in a string must be
                 * escaped; cJSON lets raw ones through. */
                if (p[i] < 0x20)
                    return false;
                if (p[i] != '\\') {
                    i++;
                    continue;
                }
                if (n - i < 2)
                    return false;
                if (p[i + 1] != 'u') {
                    i += 2;
                    continue;
                }
                if (n - i < 6)
                    return false;
                v = 0;
                for (k = 2; k < 6; k++) {
                    h = hex_val(p[i + k]);
                    if (h < 0)
                        return false;
                    v = v * 16 + (unsigned)h;
                }
                if (v == 0)
                    *nul = true;
                i += 6;
            }
            i++; /* the closing quote */
            continue;
        }
        if (p[i] < 0x20 && !json_ws(p[i]))
            return false;
        i++;
    }
    return true;
}

static int
key_cmp(const void *a, const void *b)
{
    const char *const *ka = a;
    const char *const *kb = b;

    return strcmp(*ka, *kb);
}

/* True when obj (an object) has two members with the same key. */
static bool
has_dup_keys(const cJSON *obj)
{
    const cJSON *a;
    const cJSON *b;
    const char **keys = NULL;
    size_t count = 0;
    size_t i;
    bool dup = false;

    for (a = obj->child; a != NULL; a = a->next)
        count++;
    if (count <= MSG_DUP_PAIRWISE_MAX) {
        for (a = obj->child; a != NULL && !dup; a = a->next) {
            for (b = a->next; b != NULL; b = b->next) {
                if (strcmp(a->string, b->string) == 0) {
                    dup = true;
                    break;
                }
            }
        }
        return dup;
    }
    keys = g_new(const char *, count);
    i = 0;
    for (a = obj->child; a != NULL; a = a->next)
        keys[i++] = a->string;
    qsort(keys, count, sizeof(*keys), key_cmp);
    for (i = 1; i < count && !dup; i++)
        dup = strcmp(keys[i - 1], keys[i]) == 0;
    g_free(keys);
    return dup;
}

/*
 * Check item (a container at nesting level depth) and everything below it.
 * Returns PE_NONE or PE_BAD_JSON with why set to a static reason. Recursion
 * stops at MSG_DEPTH_MAX + 1 levels.
 */
static enum proto_err
check_tree(const cJSON *item, int depth, const char **why)
{
    const cJSON *c;
    enum proto_err r;

    if (depth > MSG_DEPTH_MAX) {
        *why = "JSON nesting is deeper than 16 levels";
        return PE_BAD_JSON;
    }
    if (cJSON_IsObject(item) && has_dup_keys(item)) {
        *why = "an object has a duplicate key";
        return PE_BAD_JSON;
    }
    for (c = item->child; c != NULL; c = c->next) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c))
            continue;
        r = check_tree(c, depth + 1, why);
        if (r != PE_NONE)
            return r;
    }
    return PE_NONE;
}

/* The bad_json stage. Returns PE_NONE with req->root set, or PE_BAD_JSON. */
static enum proto_err
parse_json(const uint8_t *p, size_t n, struct msg_request *req, bool *nul,
           struct msg_error *err)
{
    const char *end = NULL;
    const char *why = NULL;
    size_t used;
    size_t i;
    cJSON *root = NULL;

    *nul = false;
    if (n > G_MAXSSIZE || (n > 0 && p == NULL)) {
        msg_set_err(err, PE_BAD_JSON, "payload is not valid JSON");
        return PE_BAD_JSON;
    }
    if (n > 0 && !g_utf8_validate_len((const char *)p, (gssize)n, NULL)) {
        msg_set_err(err, PE_BAD_JSON, "payload is not valid UTF-8");
        return PE_BAD_JSON;
    }
    /* cJSON skips a BOM; the protocol refuses it. */
    if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        msg_set_err(err, PE_BAD_JSON, "payload starts with a byte-order mark");
        return PE_BAD_JSON;
    }
    root = cJSON_ParseWithLengthOpts((const char *)p, n, &end, 0);
    if (root == NULL) {
        msg_set_err(err, PE_BAD_JSON, "payload is not valid JSON");
        return PE_BAD_JSON;
    }
    req->root = root;
    used = (size_t)((const uint8_t *)end - p);
    for (i = used; i < n; i++) {
        if (!json_ws(p[i])) {
            msg_set_err(err, PE_BAD_JSON,
                        "payload has bytes after the JSON object");
            return PE_BAD_JSON;
        }
    }
    if (!scan_raw(p, used, nul)) {
        msg_set_err(err, PE_BAD_JSON, "payload is not valid JSON");
        return PE_BAD_JSON;
    }
    if (!cJSON_IsObject(root)) {
        msg_set_err(err, PE_BAD_JSON, "payload must be a JSON object");
        return PE_BAD_JSON;
    }
    if (check_tree(root, 1, &why) != PE_NONE) {
        msg_set_err(err, PE_BAD_JSON, "%s", why);
        return PE_BAD_JSON;
    }
    return PE_NONE;
}

/* An id is a string of at most 64 bytes or an integer from 0 to 2^53-1. */
static bool
id_valid(const cJSON *id)
{
    double d;

    /* A string id is echoed back: the text rule keeps control characters
     * out of replies. */
    if (cJSON_IsString(id))
        return strlen(id->valuestring) <= MSG_ID_STR_MAX &&
               msg_valid_text(id->valuestring, strlen(id->valuestring));
    if (!cJSON_IsNumber(id))
        return false;
    d = id->valuedouble;
    /* The range test comes first so that the cast below is defined. */
    if (!(d >= 0.0 && d <= MSG_ID_INT_MAX))
        return false;
    return d == (double)(int64_t)d;
}

/*
 * Fetch field key of the request. Returns 0 with *out set (or NULL when the
 * field is absent and optional), or -1 with err filled.
 */
static int
get_string(const struct msg_request *req, const char *key, bool required,
           const char **out, struct msg_error *err)
{
    const cJSON *f;

    *out = NULL;
    f = cJSON_GetObjectItemCaseSensitive(req->root, key);
    if (f == NULL) {
        if (!required)
            return 0;
        msg_set_err(err, PE_MISSING_FIELD, "field '%s' is missing", key);
        return -1;
    }
    if (!cJSON_IsString(f)) {
        msg_set_err(err, PE_BAD_FIELD, "field '%s' must be a string", key);
        return -1;
    }
    *out = f->valuestring;
    return 0;
}

static int
get_nick(const struct msg_request *req, const char *key, const char **out,
         struct msg_error *err)
{
    if (get_string(req, key, true, out, err) < 0)
        return -1;
    if (!msg_valid_nick(*out)) {
        msg_set_err(err, PE_BAD_NICK,
                    "field '%s' is not a valid nick (1-24 of A-Z a-z 0-9 _ -)",
                    key);
        *out = NULL;
        return -1;
    }
    return 0;
}

static int
get_room(const struct msg_request *req, const char **out, struct msg_error *err)
{
    if (get_string(req, "room", true, out, err) < 0)
        return -1;
    if (!msg_valid_room(*out)) {
        msg_set_err(err, PE_BAD_ROOM,
                    "field 'room' is not a valid room ('#' and 1-32 of "
                    "A-Z a-z 0-9 _ -)");
        *out = NULL;
        return -1;
    }
    return 0;
}

/*
 * Fetch a text-like field: at most max bytes (else too_long), no control
 * characters, empty only when allow_empty. The length cap is checked before
 * the content scan.
 */
static int
get_text(const struct msg_request *req, const char *key, bool required,
         size_t max, enum proto_err too_long, bool allow_empty,
         const char **out, struct msg_error *err)
{
    const char *s = NULL;
    size_t len;

    *out = NULL;
    if (get_string(req, key, required, &s, err) < 0)
        return -1;
    if (s == NULL)
        return 0;
    len = strlen(s);
    if (len == 0 && !allow_empty) {
        msg_set_err(err, PE_BAD_FIELD, "field '%s' is empty", key);
        return -1;
    }
    if (len > max) {
        msg_set_err(err, too_long, "field '%s' is longer than %zu bytes", key,
                    max);
        return -1;
    }
    if (!msg_valid_text(s, len)) {
        msg_set_err(err, PE_BAD_FIELD,
                    "field '%s' contains a control character", key);
        return -1;
    }
    *out = s;
    return 0;
}

/* An optional opaque string of at most max bytes (ping token). */
static int
get_short(const struct msg_request *req, const char *key, size_t max,
          const char **out, struct msg_error *err)
{
    if (get_string(req, key, false, out, err) < 0)
        return -1;
    if (*out != NULL && strlen(*out) > max) {
        msg_set_err(err, PE_BAD_FIELD, "field '%s' is longer than %zu bytes",
                    key, max);
        *out = NULL;
        return -1;
    }
    /* It is echoed back and may be printed: same rule as text. */
    if (*out != NULL && !msg_valid_text(*out, strlen(*out))) {
        msg_set_err(err, PE_BAD_FIELD,
                    "field '%s' contains a control character", key);
        *out = NULL;
        return -1;
    }
    return 0;
}

static int
parse_hello(struct msg_request *req, struct msg_error *err)
{
    const cJSON *v;

    v = cJSON_GetObjectItemCaseSensitive(req->root, "version");
    if (v == NULL) {
        msg_set_err(err, PE_MISSING_FIELD, "field 'version' is missing");
        return -1;
    }
    if (!cJSON_IsNumber(v)) {
        msg_set_err(err, PE_BAD_FIELD, "field 'version' must be a number");
        return -1;
    }
    if (v->valuedouble != (double)PROTO_VERSION) {
        msg_set_err(err, PE_VERSION_UNSUPPORTED,
                    "protocol version not supported (this server speaks %d)",
                    PROTO_VERSION);
        return -1;
    }
    req->version = PROTO_VERSION;
    if (get_nick(req, "nick", &req->nick, err) < 0)
        return -1;
    /* client is not text, so too long is bad_field; it is logged by the
     * server, so it must not carry control characters either. */
    return get_text(req, "client", false, MSG_CLIENT_MAX, PE_BAD_FIELD, true,
                    &req->client, err);
}

static int
parse_say(struct msg_request *req, struct msg_error *err)
{
    const cJSON *a;

    if (get_room(req, &req->room, err) < 0)
        return -1;
    if (get_text(req, "text", true, MSG_TEXT_MAX, PE_TEXT_TOO_LONG, false,
                 &req->text, err) < 0)
        return -1;
    a = cJSON_GetObjectItemCaseSensitive(req->root, "action");
    if (a == NULL)
        return 0;
    if (!cJSON_IsBool(a)) {
        msg_set_err(err, PE_BAD_FIELD, "field 'action' must be true or false");
        return -1;
    }
    req->action = cJSON_IsTrue(a);
    return 0;
}

static int
parse_fields(struct msg_request *req, struct msg_error *err)
{
    switch (req->type) {
    case MSG_HELLO:
        return parse_hello(req, err);
    case MSG_JOIN:
    case MSG_WHO:
        return get_room(req, &req->room, err);
    case MSG_LEAVE:
        if (get_room(req, &req->room, err) < 0)
            return -1;
        return get_text(req, "reason", false, MSG_REASON_MAX, PE_TEXT_TOO_LONG,
                        false, &req->reason, err);
    case MSG_SAY:
        return parse_say(req, err);
    case MSG_MSG:
        if (get_nick(req, "to", &req->to, err) < 0)
            return -1;
        return get_text(req, "text", true, MSG_TEXT_MAX, PE_TEXT_TOO_LONG,
                        false, &req->text, err);
    case MSG_NICK:
        return get_nick(req, "nick", &req->nick, err);
    case MSG_TOPIC:
        if (get_room(req, &req->room, err) < 0)
            return -1;
        return get_text(req, "topic", true, MSG_TOPIC_MAX, PE_TEXT_TOO_LONG,
                        true, &req->topic, err);
    case MSG_PING:
    case MSG_PONG:
        return get_short(req, "token", MSG_TOKEN_MAX, &req->token, err);
    case MSG_QUIT:
        return get_text(req, "reason", false, MSG_REASON_MAX, PE_TEXT_TOO_LONG,
                        false, &req->reason, err);
    case MSG_LIST:
    case MSG_SECURE: /* its fields belong to the secure handshake */
        return 0;
    case MSG_UNKNOWN:
    default:
        break;
    }
    msg_set_err(err, PE_UNKNOWN_TYPE, "unknown message type");
    return -1;
}

static int
parse_request(const uint8_t *p, size_t n, struct msg_request *req,
              struct msg_error *err)
{
    const cJSON *t;
    const cJSON *id;
    bool nul = false;

    if (parse_json(p, n, req, &nul, err) != PE_NONE)
        return -1;

    t = cJSON_GetObjectItemCaseSensitive(req->root, "type");
    if (cJSON_IsString(t)) {
        req->type_str = t->valuestring;
        req->type = msg_type_lookup(req->type_str);
    }

    /* cJSON cuts a string at an escaped NUL, so what it returns for that
     * string is not what was sent: refuse before trusting any string,
     * including the id that would be echoed back. */
    if (nul) {
        msg_set_err(err, PE_BAD_FIELD,
                    "a string contains a control character (\\u0000)");
        return -1;
    }

    /* A valid id is kept before anything else is judged, so that every
     * error about this request can carry it back (section 2). */
    id = cJSON_GetObjectItemCaseSensitive(req->root, "id");
    if (id != NULL && id_valid(id))
        req->id = id;

    if (t == NULL) {
        msg_set_err(err, PE_MISSING_FIELD, "field 'type' is missing");
        return -1;
    }
    if (!cJSON_IsString(t)) {
        msg_set_err(err, PE_BAD_FIELD, "field 'type' must be a string");
        return -1;
    }
    if (id != NULL && req->id == NULL) {
        msg_set_err(err, PE_BAD_FIELD,
                    "field 'id' must be a string of at most 64 bytes or "
                    "an integer from 0 to 2^53-1");
        return -1;
    }

    if (req->type == MSG_UNKNOWN) {
        msg_set_err(err, PE_UNKNOWN_TYPE, "unknown message type");
        return -1;
    }
    return parse_fields(req, err);
}

int
msg_parse(const uint8_t *p, size_t n, struct msg_request *req,
          struct msg_error *err)
{
    memset(req, 0, sizeof(*req));
    memset(err, 0, sizeof(*err));
    if (parse_request(p, n, req, err) < 0) {
        log_debug("refused %zu-byte request: %s", n, proto_err_code(err->code));
        return -1;
    }
    return 0;
}

void
msg_request_cleanup(struct msg_request *req)
{
    if (req == NULL)
        return;
    cJSON_Delete(req->root);
    memset(req, 0, sizeof(*req));
}

/* Building */

/* Add an integer as a JSON number that prints exactly: cJSON prints doubles
 * with 15 significant digits, so larger values go in as raw digits. */
static bool
add_int(cJSON *obj, const char *key, int64_t v)
{
    char digits[24];
    cJSON *item = NULL;

    if ((double)v >= -MSG_EXACT_PRINT_MAX && (double)v <= MSG_EXACT_PRINT_MAX) {
        item = cJSON_CreateNumber((double)v);
    } else {
        snprintf(digits, sizeof(digits), "%" PRId64, v);
        item = cJSON_CreateRaw(digits);
    }
    if (item == NULL)
        return false;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* Add an optional string; NULL values are left out. */
static bool
add_str(cJSON *obj, const char *key, const char *val)
{
    if (val == NULL)
        return true;
    return cJSON_AddStringToObject(obj, key, val) != NULL;
}

bool
msg_add_id(cJSON *obj, const cJSON *id)
{
    cJSON *copy = NULL;
    double d;

    if (id == NULL)
        return true;
    if (cJSON_IsNumber(id)) {
        d = id->valuedouble;
        if (d >= 0.0 && d <= MSG_ID_INT_MAX && d == (double)(int64_t)d)
            return add_int(obj, "id", (int64_t)d);
    }
    copy = cJSON_Duplicate(id, 1);
    if (copy == NULL)
        return false;
    if (!cJSON_AddItemToObject(obj, "id", copy)) {
        cJSON_Delete(copy);
        return false;
    }
    return true;
}

/* Return obj, or NULL (deleting obj) when any addition failed. */
static cJSON *
built(cJSON *obj, bool ok)
{
    if (!ok) {
        log_debug("cJSON allocation failed");
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

cJSON *
msg_new(const char *type, const cJSON *id)
{
    cJSON *obj = NULL;

    if (type == NULL)
        return NULL;
    obj = cJSON_CreateObject();
    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "type", type) && msg_add_id(obj, id));
}

cJSON *
msg_build_error(enum proto_err code, const char *text, const char *request,
                const cJSON *id)
{
    const char *c = proto_err_code(code);
    cJSON *obj = NULL;

    if (c == NULL)
        return NULL;
    obj = msg_new("error", id);
    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "code", c) &&
                          add_str(obj, "message", text != NULL ? text : c) &&
                          add_str(obj, "request", request));
}

cJSON *
msg_build_ok(const char *request, const cJSON *id)
{
    cJSON *obj = msg_new("ok", id);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "request", request));
}

cJSON *
msg_build_hello(const char *nick, const char *client)
{
    cJSON *obj = msg_new("hello", NULL);

    if (obj == NULL)
        return NULL;
    return built(obj, add_int(obj, "version", PROTO_VERSION) &&
                          add_str(obj, "nick", nick) &&
                          add_str(obj, "client", client));
}

cJSON *
msg_build_ping(const char *token)
{
    cJSON *obj = msg_new("ping", NULL);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "token", token));
}

cJSON *
msg_build_pong(const char *token, const cJSON *id)
{
    cJSON *obj = msg_new("pong", id);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "token", token));
}

cJSON *
msg_build_message(const char *room, const char *to, const char *from,
                  const char *text, bool action, int64_t ts, uint64_t seq)
{
    cJSON *obj = msg_new("message", NULL);
    bool ok;

    if (obj == NULL)
        return NULL;
    if (room != NULL)
        ok = add_str(obj, "room", room);
    else
        ok = add_str(obj, "to", to);
    ok = ok && add_str(obj, "from", from) && add_str(obj, "text", text);
    if (ok && action)
        ok = cJSON_AddTrueToObject(obj, "action") != NULL;
    ok = ok && add_int(obj, "ts", ts);
    /* seq counts per room; a private message has none. */
    if (ok && room != NULL)
        ok = seq <= INT64_MAX && add_int(obj, "seq", (int64_t)seq);
    return built(obj, ok);
}

/* Append s as a JSON string, escaped as cJSON prints it: '"', '\\' and
 * the control characters below 0x20 (short forms where JSON has them),
 * every other byte as it is (the text is valid UTF-8 already). */
static void
json_put_string(GString *o, const char *s)
{
    const char *run = s;

    g_string_append_c(o, '"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        g_string_append_len(o, run, s - run);
        run = s + 1;
        switch (ch) {
        case '"': g_string_append(o, "\\\""); break;
        case '\\': g_string_append(o, "\\\\"); break;
        case '\b': g_string_append(o, "\\b"); break;
        case '\f': g_string_append(o, "\\f"); break;
        case '\n': g_string_append(o, "\\n"); break;
        case '\r': g_string_append(o, "\\r"); break;
        case '\t': g_string_append(o, "\\t"); break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            g_string_append(o, esc);
            break;
        }
    }
    g_string_append_len(o, run, s - run);
    g_string_append_c(o, '"');
}

static void
json_put_key(GString *o, const char *key)
{
    g_string_append_c(o, ',');
    json_put_string(o, key);
    g_string_append_c(o, ':');
}

/* An integer as add_int() stores it and cJSON prints it. */
static void
json_put_int(GString *o, int64_t v)
{
    g_string_append_printf(o, "%" PRId64, v);
}

char *
msg_encode_message(const char *room, const char *to, const char *from,
                   const char *text, bool action, int64_t ts, uint64_t seq,
                   const cJSON *id, size_t *len)
{
    GString *o;

    *len = 0;
    if (from == NULL || text == NULL || (room == NULL && to == NULL) ||
        (room != NULL && seq > INT64_MAX))
        return NULL;
    o = g_string_sized_new(96 + strlen(text));
    g_string_append(o, "{\"type\":\"message\"");
    json_put_key(o, room != NULL ? "room" : "to");
    json_put_string(o, room != NULL ? room : to);
    json_put_key(o, "from");
    json_put_string(o, from);
    json_put_key(o, "text");
    json_put_string(o, text);
    if (action)
        g_string_append(o, ",\"action\":true");
    json_put_key(o, "ts");
    json_put_int(o, ts);
    if (room != NULL) {
        json_put_key(o, "seq");
        json_put_int(o, (int64_t)seq);
    }
    if (id != NULL) {
        double d = cJSON_IsNumber(id) ? id->valuedouble : -1.0;

        json_put_key(o, "id");
        if (d >= 0.0 && d <= MSG_ID_INT_MAX && d == (double)(int64_t)d) {
            json_put_int(o, (int64_t)d); /* as msg_add_id() */
        } else {
            char *p = cJSON_PrintUnformatted(id);

            if (p == NULL) {
                g_string_free(o, TRUE);
                return NULL;
            }
            g_string_append(o, p);
            cJSON_free(p);
        }
    }
    g_string_append_c(o, '}');
    *len = o->len;
    return g_string_free(o, FALSE);
}

cJSON *
msg_build_joined(const char *room, const char *nick, int64_t ts)
{
    cJSON *obj = msg_new("joined", NULL);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "room", room) &&
                          add_str(obj, "nick", nick) && add_int(obj, "ts", ts));
}

cJSON *
msg_build_left(const char *room, const char *nick, const char *reason,
               int64_t ts)
{
    cJSON *obj = msg_new("left", NULL);

    if (obj == NULL)
        return NULL;
    return built(obj,
                 add_str(obj, "room", room) && add_str(obj, "nick", nick) &&
                     add_str(obj, "reason", reason) && add_int(obj, "ts", ts));
}

cJSON *
msg_build_renamed(const char *old_nick, const char *new_nick, int64_t ts,
                  const cJSON *id)
{
    cJSON *obj = msg_new("renamed", id);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "old", old_nick) &&
                          add_str(obj, "new", new_nick) &&
                          add_int(obj, "ts", ts));
}

cJSON *
msg_build_topic(const char *room, const char *topic, const char *by, int64_t ts,
                const cJSON *id)
{
    cJSON *obj = msg_new("topic", id);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "room", room) &&
                          add_str(obj, "topic", topic) &&
                          add_str(obj, "by", by) && add_int(obj, "ts", ts));
}

cJSON *
msg_build_quit(const char *nick, const char *reason, int64_t ts)
{
    cJSON *obj = msg_new("quit", NULL);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "nick", nick) &&
                          add_str(obj, "reason", reason) &&
                          add_int(obj, "ts", ts));
}

cJSON *
msg_build_bye(const char *reason, const cJSON *id)
{
    cJSON *obj = msg_new("bye", id);

    if (obj == NULL)
        return NULL;
    return built(obj, add_str(obj, "reason", reason));
}

char *
msg_encode(const cJSON *obj, size_t *len)
{
    char *s = NULL;
    char *out = NULL;
    size_t n;

    *len = 0;
    if (obj == NULL)
        return NULL;
    s = cJSON_PrintUnformatted(obj);
    if (s == NULL)
        return NULL;
    n = strlen(s);
    out = g_strndup(s, n);
    cJSON_free(s);
    *len = n;
    return out;
}
