/* message.h - the JSON envelope of PROTOCOL.md sections 2-4 (cJSON).
 *
 * Pure: no I/O. msg_parse() turns one complete frame payload into a
 * validated request; the msg_build_*() functions make replies and events as
 * cJSON objects that the caller serializes with msg_encode().
 */
#ifndef SOCKCHAT_MESSAGE_H
#define SOCKCHAT_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define MSG_NICK_MAX 24       /* characters of A-Z a-z 0-9 _ - */
#define MSG_ROOM_MAX 32       /* characters after the '#' */
#define MSG_TEXT_MAX 4096     /* bytes of UTF-8 */
#define MSG_TOPIC_MAX 256     /* bytes of UTF-8, may be empty */
#define MSG_REASON_MAX 256    /* bytes of UTF-8, quit/leave reason */
#define MSG_ID_STR_MAX 64     /* bytes of a string id */
#define MSG_TOKEN_MAX 64      /* bytes of a ping token */
#define MSG_CLIENT_MAX 64     /* bytes of hello.client */
#define MSG_DEPTH_MAX 16      /* nesting levels; top-level object is 1 */
#define MSG_ID_INT_MAX 9007199254740991.0 /* 2^53 - 1 */
#define PROTO_VERSION 1

/* Error codes of PROTOCOL.md section 4, in its order. */
enum proto_err {
    PE_NONE = 0,
    PE_BAD_FRAME,
    PE_FRAME_TOO_LARGE,
    PE_BAD_JSON,
    PE_UNKNOWN_TYPE,
    PE_MISSING_FIELD,
    PE_BAD_FIELD,
    PE_NOT_REGISTERED,
    PE_ALREADY_REGISTERED,
    PE_VERSION_UNSUPPORTED,
    PE_BAD_NICK,
    PE_NICK_IN_USE,
    PE_BAD_ROOM,
    PE_NOT_IN_ROOM,
    PE_NO_SUCH_NICK,
    PE_NO_SUCH_ROOM,
    PE_TOO_MANY_ROOMS,
    PE_TEXT_TOO_LONG,
    PE_RATE_LIMITED,
    PE_SLOW_CONSUMER,
    PE_SERVER_FULL,
    PE_TIMEOUT,
    PE_ENCRYPTION_REQUIRED,
    PE_SECURE_FAILED,
    PE_NICK_RESERVED,
    PE_COUNT
};

/* The stable wire string of e ("bad_json"), or NULL for PE_NONE/out of range. */
const char *proto_err_code(enum proto_err e);
/* Parse a wire string back; PE_NONE when unknown. */
enum proto_err proto_err_from_code(const char *code);
/* True when the server closes the connection after sending e (section 4). */
bool proto_err_closes(enum proto_err e);

enum msg_type {
    MSG_UNKNOWN = 0, /* a string type we do not know */
    MSG_HELLO,
    MSG_SECURE,
    MSG_JOIN,
    MSG_LEAVE,
    MSG_SAY,
    MSG_MSG,
    MSG_NICK,
    MSG_TOPIC,
    MSG_LIST,
    MSG_WHO,
    MSG_PING,
    MSG_PONG,
    MSG_QUIT,
};

/* "hello" for MSG_HELLO; NULL for MSG_UNKNOWN. */
const char *msg_type_name(enum msg_type t);

/* A validated request. Every string pointer is borrowed from root and lives
 * until msg_request_cleanup(). Fields a type does not use are NULL. */
struct msg_request {
    cJSON *root;          /* the parsed object, owned */
    enum msg_type type;   /* MSG_UNKNOWN if the envelope was unreadable too */
    const char *type_str; /* the type string as sent (NULL if none) */
    const cJSON *id;      /* the request's id, if valid (borrowed from root) */
    long version;         /* hello */
    const char *nick;     /* hello, nick */
    const char *client;   /* hello (optional) */
    const char *room;     /* join leave say topic who */
    const char *text;     /* say msg */
    bool action;          /* say (optional, default false) */
    const char *to;       /* msg */
    const char *topic;    /* topic ("" allowed) */
    const char *reason;   /* leave quit (optional) */
    const char *token;    /* ping pong (optional) */
};

/* The reason a request was refused: code plus human text. */
struct msg_error {
    enum proto_err code;
    char text[160];
};

/*
 * Parse and validate one frame payload (p, n) as a request.
 * Returns 0 with *req filled, or -1 with *err filled. On -1, req->type,
 * req->type_str and req->id are still set when the envelope got that far,
 * so the caller can answer with the right "request" and "id" (and decide
 * not_registered before a field error). Call msg_request_cleanup() in both
 * cases. Order of checks: UTF-8/JSON/depth/duplicates/BOM (bad_json), type
 * missing (missing_field) or not a string (bad_field), id (bad_field),
 * unknown type (unknown_type), then the type's own fields (missing_field,
 * bad_field, bad_nick, bad_room, text_too_long, version_unsupported).
 */
int msg_parse(const uint8_t *p, size_t n, struct msg_request *req,
              struct msg_error *err);
void msg_request_cleanup(struct msg_request *req);

/* Name rules of section 2. Length-checked, NUL-terminated input. */
bool msg_valid_nick(const char *s);
bool msg_valid_room(const char *s);
/* Text rule: valid UTF-8, no control characters but tab. Does not check the
 * length; the caller checks its own maximum (text vs topic). */
bool msg_valid_text(const char *s, size_t len);
/* ASCII case-folded copy for use as a key (nicks, rooms). g_free() it. */
char *msg_fold(const char *s);

/* Milliseconds since the Unix epoch (the server's ts). */
int64_t msg_now_ms(void);

/*
 * Builders. Each returns a new cJSON object (cJSON_Delete it) with "type"
 * set; id, when not NULL, is duplicated into the object as "id".
 * Optional string arguments that are NULL are left out.
 */
cJSON *msg_new(const char *type, const cJSON *id);
cJSON *msg_build_error(enum proto_err code, const char *text,
                       const char *request, const cJSON *id);
cJSON *msg_build_ok(const char *request, const cJSON *id);
/* Client side requests. */
cJSON *msg_build_hello(const char *nick, const char *client);
cJSON *msg_build_ping(const char *token);
cJSON *msg_build_pong(const char *token, const cJSON *id);
/* Events. room may be NULL for a private message (then to is set). */
cJSON *msg_build_message(const char *room, const char *to, const char *from,
                         const char *text, bool action, int64_t ts,
                         uint64_t seq);
/*
 * The same event as msg_encode(msg_build_message(...)) with id (or NULL)
 * added last as msg_add_id() adds it, encoded straight into JSON text: the
 * hot path of fan-out, where a cJSON tree costs about twenty allocations
 * and a printf per number. The bytes are the ones cJSON would print (field
 * order, escapes, numbers). NULL when out of memory (or seq > INT64_MAX);
 * the caller g_free()s the result.
 */
char *msg_encode_message(const char *room, const char *to, const char *from,
                         const char *text, bool action, int64_t ts,
                         uint64_t seq, const cJSON *id, size_t *len);
cJSON *msg_build_joined(const char *room, const char *nick, int64_t ts);
cJSON *msg_build_left(const char *room, const char *nick, const char *reason,
                      int64_t ts);
cJSON *msg_build_renamed(const char *old_nick, const char *new_nick,
                         int64_t ts, const cJSON *id);
cJSON *msg_build_topic(const char *room, const char *topic, const char *by,
                       int64_t ts, const cJSON *id);
cJSON *msg_build_quit(const char *nick, const char *reason, int64_t ts);
cJSON *msg_build_bye(const char *reason, const cJSON *id);

/* Add id (a validated request id; NULL adds nothing) to obj as "id",
 * printing large integers exactly. false when cJSON fails. */
bool msg_add_id(cJSON *obj, const cJSON *id);

/* Serialize obj compactly. Returns a g_malloc'd buffer of *len bytes (no
 * NUL counted) or NULL when cJSON fails. */
char *msg_encode(const cJSON *obj, size_t *len);

#endif /* SOCKCHAT_MESSAGE_H */
