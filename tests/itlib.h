/*
 * itlib.h - black-box integration harness for sockchatd.
 *
 * It starts the real server ($SOCKCHATD, optionally behind the words of
 * $SOCKCHATD_WRAPPER) on the URL in $IT_LISTEN (default tcp://127.0.0.1:0;
 * "@DIR@" in it is the server's private directory, e.g.
 * unix://@DIR@/s), reads the bound URL back from --port-file and talks
 * frames to it. The byte stream is common/transport's, for every URL
 * (tcp, udp, unix): transport_connect_url, send, recv, its timers and
 * poll_events, so the same tests run on every transport and nothing here
 * or in them asks which one it is. Framing and JSON checks are implemented
 * here independently of common/, so that a bug shared by the server and
 * the library cannot hide itself.
 *
 * With $IT_LOSSY (words for tests/lossy, e.g. "--drop 0.10 --dup 0.05
 * --reorder 0.10 --seed 42") every udp endpoint of every server gets a
 * lossy relay in front of it, and clients connect through the relay
 * ($LOSSY names the binary; by default the lossy next to the test).
 *
 * Every wait is bounded; every bound is multiplied by $IT_TIMEOUT_SCALE
 * (default 1, valgrind runs use 10). Only loopback addresses are accepted.
 *
 * The it_expect_* helpers fail the running cmocka test with a message that
 * quotes what actually arrived. Messages they return are owned by the harness
 * and stay valid until it_test_cleanup().
 *
 * Secure sessions (doc/SECURE.md): with $IT_SECURE=1 every connection the
 * harness opens starts with the secure handshake (common/secure.c: the only
 * part of common/ the harness uses; its framing stays its own), then every
 * frame it sends is sealed and every frame it receives is opened, so the
 * tests do not know. it_send_raw() cuts the bytes it is given into frames:
 * a frame's payload is sealed (its header then announces the sealed length,
 * sent as soon as the header is complete), while a header of length 0 or
 * over max_frame is abuse at the frame level and goes out as it is, together
 * with every byte after it. The server's empty TAG_FINAL frame before a close
 * is consumed (it_expect_closed() insists on it in a secure session). A
 * server that answers the handshake with anything else (server_full) leaves
 * the connection plain, with that answer queued for the test. Servers are
 * started with XDG_CONFIG_HOME in their private directory, so that no test
 * writes a key under the real home.
 *
 * Connections are named by descriptors (their transport's) but belong to
 * the harness: close them with it_close() or it_reset(), never close().
 * While a test waits on one connection, the harness keeps reading every
 * other one into its own queue and runs their transports' timers (and
 * answers a server `ping` with `pong` unless told not to), so that idle
 * clients are not timed out behind the test's back.
 */
#ifndef SOCKCHAT_ITLIB_H
#define SOCKCHAT_ITLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <glib.h>

struct it_server;                               /* opaque */

/* Why it_recv_msg() returned. */
enum it_rx {
    IT_RX_MSG = 0,      /* a message */
    IT_RX_TIMEOUT,      /* nothing within the time given */
    IT_RX_CLOSED,       /* the server closed (EOF) */
    IT_RX_RESET,        /* the connection was reset */
    IT_RX_BAD,          /* the server broke the framing or sent bad JSON */
};

/* "connection closed" etc. */
const char *it_rx_name(enum it_rx why);

/* Absent-field markers returned by the getters below. */
#define IT_ABSENT "<absent>"
#define IT_NO_INT INT64_MIN

/* Reads the environment, ignores SIGPIPE. Call once from main(), before
 * cmocka runs: $IT_ONLY and $IT_SKIP are cmocka test filters (patterns
 * with * and ?) for the tests to run only, and to skip. */
void it_init(void);
/* ms multiplied by $IT_TIMEOUT_SCALE. */
int it_ms(int ms);
/* Monotonic milliseconds. */
int64_t it_now_ms(void);
/* The URL servers are told to listen on ($IT_LISTEN). */
const char *it_listen_url(void);

/*
 * Starts sockchatd with --listen $IT_LISTEN --port-file <tmp> and the extra
 * arguments (NULL-terminated), waits for the port file and returns the server,
 * or NULL after printing why. "@DIR@" in an argument is replaced by the
 * server's private temporary directory, which is also its XDG_CONFIG_HOME.
 */
struct it_server *it_server_start(const char *arg, ...) G_GNUC_NULL_TERMINATED;
/* As it_server_start() with an argument vector (NULL-terminated, may be NULL). */
struct it_server *it_server_startv(const char *const *extra);
/* As it_server_start() with the extra arguments split like a shell would. */
struct it_server *it_server_start_str(const char *extra);
/*
 * As it_server_startv(), listening on every URL of listen (NULL-terminated;
 * "@DIR@" substituted) instead of $IT_LISTEN. Its endpoints are then the
 * lines of its port file, in order: see it_server_endpoint().
 */
struct it_server *it_server_start_endpoints(const char *const *listen,
    const char *const *extra);
/*
 * The relay options for the servers started from now on ($IT_LOSSY at
 * first): words for tests/lossy, NULL or "" for no relay. 0, or -1 if args
 * do not parse. it_lossy() returns the current ones (NULL: none).
 */
int it_set_lossy(const char *args);
const char *it_lossy(void);
/* The server's process id (-1 if s is NULL). */
int it_server_pid(const struct it_server *s);
/* The number of endpoints s listens on, and the URL of endpoint i ("" if
 * none). Endpoint 0 is it_server_url(s). */
size_t it_server_n_endpoints(const struct it_server *s);
const char *it_server_endpoint(const struct it_server *s, size_t i);
/*
 * SIGTERM, wait (10 s scaled), SIGKILL if needed. Prints and returns the exit
 * status: the exit code, 128 + signal if killed by one, -1 if it hung. Frees s.
 * A non-zero status is also counted by it_bad_stops() and, when
 * $IT_STATUS_LOG is set, appended to that file as "pid status".
 */
int it_server_stop(struct it_server *s);
/* Waits up to timeout_ms for the server to exit by itself; status as above or
 * -2 if still running. On exit, s is freed. */
int it_server_wait(struct it_server *s, int timeout_ms);
/* Sends sig to the server. 0 or -1. */
int it_server_kill(const struct it_server *s, int sig);
const char *it_server_url(const struct it_server *s);
/* The server's private temporary directory (config files go there). */
const char *it_server_dir(const struct it_server *s);
/* True if the server binary lists opt (e.g. "--io") in its --help. */
bool it_server_has_option(const char *opt);
/* Number of server stops with a non-zero status so far. */
int it_bad_stops(void);

/*
 * Connects to url (tcp://, udp:// or unix://, loopback only) with
 * transport_connect_url(). rcvbuf is ignored (see connect_raw() in
 * itlib.c: it cannot be set before the transport connects, and after it
 * only hurts). With $IT_SECURE=1 the secure handshake follows. Returns a
 * harness-owned descriptor or -1.
 */
int it_connect_url(const char *url, int rcvbuf, size_t max_frame);
/* To the server's first endpoint (through a relay with $IT_LOSSY). */
int it_connect(const struct it_server *s);
int it_connect_rcvbuf(const struct it_server *s, int rcvbuf);
/* To endpoint i of the server (it_server_endpoint()). */
int it_connect_endpoint(const struct it_server *s, size_t i);
/*
 * Closes in order: the end of the stream (transport_shutdown) goes after
 * what was sent, and the harness waits until the transport has delivered
 * it (transport_send_done: at once on tcp and unix, whose kernel does the
 * rest; on udp until the FIN is acknowledged, at most 3 s scaled) before
 * it closes. -1 is a no-op.
 */
void it_close(int fd);
/* Aborts (transport_abort): a reset on tcp (SO_LINGER {1, 0}) and udp
 * (RST); a plain close on unix, which has no reset. */
void it_reset(int fd);
/* Half-close: the server reads the end of the stream; fd still reads. */
void it_shutdown(int fd);
/* Answer server pings automatically (default true). */
void it_set_autopong(int fd, bool on);
/* A passive connection is never read unless a test waits on it explicitly. */
void it_set_passive(int fd, bool on);
/* The nick registered on fd by it_register(), or "". */
const char *it_nick(int fd);
/* Tells the harness fd was renamed (after a successful `nick`). */
void it_set_nick(int fd, const char *nick);

/* 0, or -1 (errno set; ETIMEDOUT after 5 s scaled of no progress). */
int it_send_raw(int fd, const void *p, size_t n);
/* Sends a 4-byte big-endian length and the payload. */
int it_send_frame(int fd, const void *p, size_t n);
/* printf-style JSON text sent as one frame. */
int it_send_json(int fd, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/*
 * The next message from fd (caller owns it: cJSON_Delete), or NULL with *why
 * (may be NULL) telling timeout, close, reset or a broken frame.
 */
cJSON *it_recv_msg(int fd, int timeout_ms, enum it_rx *why);
/* Reads every connection for ms, queueing what arrives. */
void it_pump(int ms);

/*
 * Failing expectations (cmocka). Each is a macro that records the caller's
 * file and line; the default wait is 5 s (scaled), `ms` arguments are scaled.
 */
const cJSON *it_expect_type_at(const char *file, int line, int fd,
    const char *type);
const cJSON *it_expect_type_within_at(const char *file, int line, int fd,
    const char *type, int ms);
/* Next message must be error {code, message}; message must be non-empty. */
const cJSON *it_expect_error_at(const char *file, int line, int fd,
    const char *code);
const cJSON *it_expect_error_within_at(const char *file, int line, int fd,
    const char *code, int ms);
/* Next thing must be EOF or reset. */
void it_expect_closed_at(const char *file, int line, int fd);
/* Nothing may arrive (and no close) for ms. */
void it_expect_silence_at(const char *file, int line, int fd, int ms);
/* Next two messages are `a` and `b` in either order; *ma, *mb get them. */
void it_expect_pair_at(const char *file, int line, int fd, const char *a,
    const cJSON **ma, const char *b, const cJSON **mb);
/* hello {version 1, nick} on fd; expects and returns the welcome. */
const cJSON *it_hello_at(const char *file, int line, int fd, const char *nick);
/* Connects, hello {version 1, nick}, expects welcome. Returns the fd. */
int it_register_at(const char *file, int line, const struct it_server *s,
    const char *nick);
/* Like it_register, and *welcome gets the welcome. */
int it_register_welcome_at(const char *file, int line,
    const struct it_server *s, const char *nick, const cJSON **welcome);
/* join; expects `room` and the own `joined` (either order). Returns room. */
const cJSON *it_join_at(const char *file, int line, int fd, const char *room);
/* Expects `joined` {room, nick} as the next message on fd. */
const cJSON *it_expect_joined_at(const char *file, int line, int fd,
    const char *room, const char *nick);
/* say; expects the own `message` echo and returns it. */
const cJSON *it_say_at(const char *file, int line, int fd, const char *room,
    const char *text);
/* ping {token}; expects pong {token}: proves the session is alive. */
void it_ping_at(const char *file, int line, int fd);
/*
 * From `flooder`, says texts of 4000 bytes into room until `observer` (in the
 * room too) sees quit {nick: victim}; returns that quit. Every other message
 * either gets must be one of the flood. Bounded in count and time.
 */
const cJSON *it_flood_until_quit_at(const char *file, int line, int flooder,
    int observer, const char *room, const char *victim);

#define it_expect_type(fd, t) it_expect_type_at(__FILE__, __LINE__, fd, t)
#define it_expect_type_within(fd, t, ms) \
    it_expect_type_within_at(__FILE__, __LINE__, fd, t, ms)
#define it_expect_error(fd, c) it_expect_error_at(__FILE__, __LINE__, fd, c)
#define it_expect_error_within(fd, c, ms) \
    it_expect_error_within_at(__FILE__, __LINE__, fd, c, ms)
#define it_expect_closed(fd) it_expect_closed_at(__FILE__, __LINE__, fd)
#define it_expect_silence(fd, ms) \
    it_expect_silence_at(__FILE__, __LINE__, fd, ms)
#define it_expect_pair(fd, a, ma, b, mb) \
    it_expect_pair_at(__FILE__, __LINE__, fd, a, ma, b, mb)
#define it_hello(fd, nick) it_hello_at(__FILE__, __LINE__, fd, nick)
#define it_register(s, nick) it_register_at(__FILE__, __LINE__, s, nick)
#define it_register_welcome(s, nick, w) \
    it_register_welcome_at(__FILE__, __LINE__, s, nick, w)
#define it_join(fd, room) it_join_at(__FILE__, __LINE__, fd, room)
#define it_expect_joined(fd, room, nick) \
    it_expect_joined_at(__FILE__, __LINE__, fd, room, nick)
#define it_say(fd, room, text) it_say_at(__FILE__, __LINE__, fd, room, text)
#define it_ping(fd) it_ping_at(__FILE__, __LINE__, fd)
#define it_flood_until_quit(f, o, room, victim) \
    it_flood_until_quit_at(__FILE__, __LINE__, f, o, room, victim)

/*
 * What the rooms of a client see as its quit reason after it_reset(), on
 * every transport (PROTOCOL.md 4.5): "connection reset", or "connection
 * closed" where the transport has no reset (a UNIX stream socket, whose
 * close is an orderly end unless unread data was waiting).
 */
#define IT_REASON_RESET "connection reset|connection closed"
/* True if s is one of the '|'-separated alternatives of set. */
bool it_one_of(const char *set, const char *s);

/* Getters: absent or wrongly typed fields give IT_ABSENT / IT_NO_INT. */
const char *it_str(const cJSON *m, const char *key);
int64_t it_int(const cJSON *m, const char *key);
bool it_has(const cJSON *m, const char *key);
bool it_true(const cJSON *m, const char *key);
const cJSON *it_get(const cJSON *m, const char *key);
/* True if m has a numeric `ts` within 10 minutes of the local clock. */
bool it_ts_ok(const cJSON *m);
/* True if the string array arr holds s (ASCII case-insensitive if ci). */
bool it_array_has(const cJSON *arr, const char *s, bool ci);
/* Compact JSON text of m, owned by the harness until cleanup. */
const char *it_json(const cJSON *m);
/* A name unique in this process: prefix + counter (harness-owned). */
const char *it_uniq(const char *prefix);
/*
 * Runs fn(p) at the next it_test_cleanup() (last deferred first) and returns
 * p: whatever a test allocates is freed even when an assertion longjmps out.
 */
gpointer it_defer(GDestroyNotify fn, gpointer p);
/* it_defer(g_free, s). */
const char *it_own(char *s);
/* Keeps m (returned by it_recv_msg) until cleanup; returns it. */
const cJSON *it_keep(cJSON *m);

/* ---- secure sessions (doc/SECURE.md) ------------------------------ */

struct secure_session;                          /* common/secure.h */

/* Whether new connections do the handshake ($IT_SECURE=1 by default). */
bool it_secure_default(void);
void it_set_secure_default(bool on);
/* it_connect() that never / always does the handshake. it_connect_secure()
 * returns -1 unless the session was established. */
int it_connect_plain(const struct it_server *s);
int it_connect_secure(const struct it_server *s);
/*
 * The client's handshake on a fresh plain connection: plain `secure`, wait
 * for the plain reply, secure_client_finish(). 0: established (server_pk, if
 * not NULL, gets the server's Ed25519 key; no known-servers check is made);
 * 1: the server answered something else, which stays queued, and the
 * connection stays plain; -1: no answer, or the reply did not verify
 * (printed); the connection stays plain.
 */
int it_secure_handshake(int fd, uint8_t server_pk[32]);
/* The established session of fd, or NULL (plain). Owned by the harness. */
struct secure_session *it_secure_session(int fd);
bool it_is_secure(int fd);
/* The server's TAG_FINAL has been opened on fd. */
bool it_got_final(int fd);
/*
 * Seals n bytes as the next frame of fd's session (final: TAG_FINAL) and
 * returns the whole frame (4-byte header included) without sending it; the
 * stream has moved on, so a frame that is then dropped, replayed, reordered
 * or altered is noticed by the server. NULL if fd is not secure.
 */
GByteArray *it_seal_frame(int fd, const void *plain, size_t n, bool final);
/* Bytes sent exactly as given, even on a secure connection. */
int it_send_wire(int fd, const void *p, size_t n);
/* printf-style JSON sealed with TAG_FINAL (the client's last frame). */
int it_send_json_final(int fd, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* A private temporary directory, removed (recursively) at cleanup. */
const char *it_temp_dir(void);
/*
 * Runs sockchatd (behind $SOCKCHATD_WRAPPER) with args (NULL-terminated)
 * until it exits by itself; stdout and stderr are captured separately
 * (harness-owned, may be NULL). Returns the exit code, 128 + signal, or -1
 * if it did not exit within timeout_ms (scaled; then it is killed).
 */
int it_server_run(const char *const *args, int timeout_ms, const char **out,
    const char **err);

/*
 * Per-test cleanup: closes every connection, stops every server except keep
 * (their status counts in it_bad_stops()), runs what was deferred, frees
 * kept messages and strings.
 */
void it_test_cleanup(const struct it_server *keep);

#endif /* SOCKCHAT_ITLIB_H */
