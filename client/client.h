/* client.h - the client's connection and protocol state.
 *
 * Independent of the terminal: client.c owns the transport, the frame
 * buffers, the session (hello -> welcome, joined rooms, current room, nick,
 * request ids, automatic pong, pacing to the server's announced rate) and
 * the slash commands. Everything it receives is handed, parsed and
 * type-checked, to a callback; ui.c and batch.c decide how it looks.
 */
#ifndef SOCKCHAT_CLIENT_H
#define SOCKCHAT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "loop.h"

#define CLIENT_DEFAULT_PORT 7710
#define CLIENT_DEFAULT_ROOM "#general"
#define CLIENT_DEFAULT_TIMEOUT 10 /* seconds */

/* Exit statuses of sockchat (documented in --help). */
enum client_exit {
    CLIENT_EXIT_OK = 0,
    CLIENT_EXIT_USAGE = 1,       /* bad command line */
    CLIENT_EXIT_UNREACHABLE = 2, /* cannot connect, or no welcome in time */
    CLIENT_EXIT_REFUSED = 3,     /* the server refused the hello */
    CLIENT_EXIT_CLOSED = 4,      /* the server closed the session unasked */
    CLIENT_EXIT_FAILED = 5,      /* batch: some request got an error */
};

struct client;   /* opaque */
struct identity; /* identity.h */

/* Secure sessions (doc/SECURE.md): whether to send `secure` first. */
enum client_secure {
    CLIENT_SECURE_OFF = 0,  /* plain hello, no handshake */
    CLIENT_SECURE_TRY,      /* handshake; fall back to plain text when the
                             * server does not offer it, unless the host has
                             * a known-servers entry (then refuse, exit 3) */
    CLIENT_SECURE_REQUIRED, /* handshake or nothing (--secure): exit 3 */
};

/* A server seen for the first time: what to ask the user about. */
struct client_trust_ask {
    const char *host; /* as remembered in the file */
    unsigned port;
    const char *fingerprint;   /* identity_fingerprint() form */
    const char *known_servers; /* the file it would go into */
};

/* Ask whether to trust a new server (interactive mode); true: remember it.
 * Called with nothing sent yet after the handshake; may block on the
 * terminal (the welcome wait starts again afterwards). */
typedef bool (*client_ask_fn)(const struct client_trust_ask *q, void *arg);

enum client_notice {
    CLIENT_NOTICE_SECURE,  /* established: "secure session, server key ..." */
    CLIENT_NOTICE_TRUSTED, /* a new server key was remembered */
    CLIENT_NOTICE_WARNING, /* downgrade to plain, unauthenticated end, ... */
    CLIENT_NOTICE_REFUSAL, /* several lines said before a refusal (key
                            * mismatch); the end reason follows */
    CLIENT_NOTICE_HINT,    /* plain session with a server offering secure */
};

/* Something to tell the user that is not a message from the server. text
 * is borrowed, may hold several lines, and has no trailing newline. */
typedef void (*client_notice_fn)(enum client_notice kind, const char *text,
                                 void *arg);

struct client_config {
    const char *nick;         /* a valid nick (msg_valid_nick) */
    const char *const *rooms; /* valid room names joined after welcome */
    size_t n_rooms;           /* the first one becomes the current room */
    int timeout_ms;           /* connect, welcome and bye waits */
    /* Secure sessions; all zero/NULL: plain, as before. Strings copied. */
    enum client_secure secure;
    const char *known_servers;       /* known-servers file (identity.h) */
    const char *known_host;          /* the server as keyed in that file */
    unsigned known_port;             /* 1-65535 */
    bool accept_new;                 /* remember a new server without asking */
    const struct identity *identity; /* prove it in hello (borrowed, must
                                      * outlive the client); NULL: none */
    client_ask_fn ask;               /* NULL: a new server is refused unless
                                      * accept_new (batch) */
    client_notice_fn notice;         /* NULL: notices are only logged */
};

/* What a server message is, after parsing. */
enum client_ev {
    CEV_WELCOME,
    CEV_ROOM,
    CEV_MESSAGE,
    CEV_JOINED,
    CEV_LEFT,
    CEV_RENAMED,
    CEV_TOPIC,
    CEV_QUIT,
    CEV_ROOMS,
    CEV_MEMBERS,
    CEV_OK,
    CEV_ERROR,
    CEV_PING,
    CEV_PONG,
    CEV_BYE,
    CEV_OTHER,     /* a JSON object of a type this client does not know */
    CEV_MALFORMED, /* not a JSON object, or a known type with bad fields */
};

/*
 * One message from the server. Every pointer is borrowed and valid only
 * during the callback. Strings are as sent (UTF-8 not guaranteed, so
 * sanitise before printing); fields a type does not carry are NULL/false.
 * raw/raw_len is the frame payload exactly as received (not NUL-ended).
 */
struct client_event {
    enum client_ev type;
    const char *raw;
    size_t raw_len;
    bool json_ok;         /* raw is one JSON object (and whitespace) */
    const cJSON *obj;     /* the parsed object; NULL for unparsable JSON */
    const char *type_str; /* "message", ... (NULL when there was none) */
    const char *why;      /* CEV_MALFORMED: what is wrong */
    const char *room;
    const char *from;
    const char *to;
    const char *text;
    const char *nick;     /* welcome joined left quit */
    const char *old_nick; /* renamed */
    const char *new_nick; /* renamed */
    const char *topic;    /* room topic */
    const char *by;       /* topic */
    const char *reason;   /* left quit bye */
    const char *code;     /* error */
    const char *message;  /* error */
    const char *request;  /* error ok */
    const char *server;   /* welcome */
    const char *motd;     /* welcome */
    const char *token;    /* ping pong */
    bool action;          /* message */
    bool has_ts;
    int64_t ts; /* ms since the epoch */
    bool has_seq;
    uint64_t seq;
    bool truncated;       /* room rooms members */
    const cJSON *members; /* room members: array, check each item */
    const cJSON *rooms;   /* rooms: array of objects, check each item */
    const cJSON *history; /* room: array of message objects */
    bool answer;          /* carries the id of a request of ours */
};

/* Called for every frame received (and each one is parsed first). */
typedef void (*client_event_fn)(const struct client_event *ev, void *arg);

/*
 * Fill *ev from obj (a parsed server message), type-checking every field.
 * Returns true, or false with ev->type CEV_MALFORMED and ev->why set.
 * Pointers in *ev are borrowed from obj. raw/raw_len are left empty.
 */
bool client_event_parse(const cJSON *obj, struct client_event *ev);

/* A new client (not connected). cfg is copied; cb_arg is passed to cb and
 * to cfg->ask and cfg->notice. Never NULL. */
struct client *client_new(const struct client_config *cfg, client_event_fn cb,
                          void *arg);
/* Close and free. NULL is a no-op. */
void client_free(struct client *c);

/*
 * Connect to url (URL or host[:port], default port 7710), watch the stream
 * with l, and send hello (or first `secure`, per cfg.secure: hello follows
 * the handshake, sealed). CHAT_OK, or a negative code with why[] saying
 * what failed (the reason alone, without the URL).
 */
int client_connect(struct client *c, const char *url, struct loop *l, char *why,
                   size_t why_len);

enum client_state {
    CLIENT_IDLE,     /* not connected yet */
    CLIENT_HELLO,    /* hello sent, waiting for welcome */
    CLIENT_READY,    /* welcomed */
    CLIENT_QUITTING, /* quit queued or sent, waiting for bye */
    CLIENT_CLOSED,   /* the session is over: see client_end() */
};
enum client_state client_state(const struct client *c);

/* How a closed session ended; CLIENT_EXIT_OK while it is open. */
enum client_exit client_end(const struct client *c);
/* One line ("refused by the server: nick_in_use: ...") or "". */
const char *client_end_reason(const struct client *c);

/*
 * Run the loop once, waiting at most max_ms (-1: as long as the client
 * needs), then the client's timers (welcome and bye deadlines, pacing).
 */
void client_run_once(struct client *c, struct loop *l, int max_ms);

enum client_input_rc {
    CLIENT_INPUT_NONE,  /* empty line: nothing done */
    CLIENT_INPUT_SENT,  /* a request was queued */
    CLIENT_INPUT_HELP,  /* show client_help_text() */
    CLIENT_INPUT_INFO,  /* show client_info() */
    CLIENT_INPUT_QUIT,  /* quit queued: wait for the session to close */
    CLIENT_INPUT_ERROR, /* nothing sent; why[] says what is wrong */
};

/*
 * Act on one line typed or read (no newline): a slash command or text
 * said in the current room. Only while CLIENT_READY.
 */
enum client_input_rc client_input(struct client *c, const char *line, char *why,
                                  size_t why_len);

/* Queue quit (after everything queued before) and wait for bye. */
void client_quit(struct client *c, const char *reason);

/* Requests queued but not yet handed to the transport. */
size_t client_queued(const struct client *c);

/* The nick the server knows us by (the configured one before welcome). */
const char *client_nick(const struct client *c);
/* The current room, or NULL when in none. */
const char *client_current_room(const struct client *c);
/* Requests answered with an error since the start. */
unsigned client_errors(const struct client *c);

/* True once the secure handshake succeeded and the server was trusted:
 * every frame since is sealed. */
bool client_secure(const struct client *c);
/* The server's key fingerprint in a secure session, else NULL. */
const char *client_server_fingerprint(const struct client *c);
/* /info: transport, security and session, several lines each ending in
 * '\n'. g_free() it. */
char *client_info(const struct client *c);

/* True when text names nick as a whole word, ignoring ASCII case. */
bool client_mentions(const char *nick, const char *text);

/* The command help, several lines each ending in '\n'. */
const char *client_help_text(void);

#endif /* SOCKCHAT_CLIENT_H */
