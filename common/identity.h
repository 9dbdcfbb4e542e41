/* identity.h - long-term Ed25519 keys and the files that remember them.
 *
 * Three small stores, all plain text, all rewritten atomically (a temporary
 * file in the same directory, fsync, then rename or link), described in
 * doc/SECURE.md:
 *   - a key file: this program's own Ed25519 key (mode 0600, refused when
 *     group or others have any access);
 *   - known servers (client): "host port fingerprint" lines, trust on first
 *     use as SSH's known_hosts;
 *   - reserved nicks (server): "nick fingerprint" lines.
 *
 * A fingerprint is the SHA-256 of the 32-byte public key in lower-case hex,
 * in groups of 4 so that people can read it to each other:
 *   "SHA256:6668 7aad f862 ... 2925" (16 groups, IDENTITY_FP_LEN chars).
 *
 * Errors are CHAT_ESYS (errno set), CHAT_EPROTO (a file that is not in its
 * format), CHAT_ERANGE (an argument out of its rules, or a key file whose
 * mode or owner is unsafe), CHAT_ETOOBIG (a file over its size cap),
 * CHAT_EFULL (the nick store is at its cap), each with a sentence in
 * err->text naming the file. No function here prints or exits.
 * sodium_init() must have succeeded before any call here.
 */
#ifndef SOCKCHAT_IDENTITY_H
#define SOCKCHAT_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define IDENTITY_PK_BYTES crypto_sign_PUBLICKEYBYTES /* 32 */
#define IDENTITY_SK_BYTES crypto_sign_SECRETKEYBYTES /* 64 */
/* "SHA256:" + 16 groups of 4 hex digits + 15 spaces. */
#define IDENTITY_FP_LEN (7 + 64 + 15)
#define IDENTITY_FP_SIZE (IDENTITY_FP_LEN + 1)
#define IDENTITY_HOST_MAX 255           /* bytes of a known-servers host */
#define IDENTITY_FILE_MAX (1024 * 1024) /* known servers, reserved nicks */

struct identity_error {
    char text[512];
};

/* ---- this program's own key ---------------------------------------- */

struct identity; /* opaque; the secret key lives in sodium_malloc memory */

/*
 * Load the key file at path, or create it (and its directory, mode 0700)
 * when it does not exist. Creation writes a temporary file of mode 0600 and
 * links it into place, so the key file never exists half-written and two
 * processes racing both end up with the same key. A file readable or
 * writable by group or others, or owned by another user, is refused
 * (CHAT_ERANGE) and left alone; so is a file not in the format
 * (CHAT_EPROTO): it is never overwritten. CHAT_OK: *out (identity_free it);
 * *created (may be NULL) says whether a new key was made.
 */
int identity_load_or_create(const char *path, struct identity **out,
                            bool *created, struct identity_error *err);
/* As identity_load_or_create, but a missing file is an error (CHAT_ESYS,
 * errno ENOENT). */
int identity_load(const char *path, struct identity **out,
                  struct identity_error *err);
/* A new key in memory only (tests, or a server run without a key file). */
int identity_generate(struct identity **out);

/* Borrowed until identity_free(). The secret key is crypto_sign's 64-byte
 * form (seed || public key), for secure_server_accept() and
 * secure_client_sign_hello(). */
const uint8_t *identity_public_key(const struct identity *id);
const uint8_t *identity_secret_key(const struct identity *id);
const char *identity_fingerprint_str(const struct identity *id);

/* Wipe the secret key and free. NULL is a no-op. */
void identity_free(struct identity *id);

/* Fingerprint of a public key into out (IDENTITY_FP_LEN chars + NUL). */
void identity_fingerprint(const uint8_t pk[IDENTITY_PK_BYTES],
                          char out[IDENTITY_FP_SIZE]);
/* True if s is exactly a fingerprint in the form above. */
bool identity_fingerprint_valid(const char *s);

/* ---- known servers (client, trust on first use) --------------------- */

enum identity_known {
    IDENTITY_KNOWN_NEW = 0,  /* no entry for host and port */
    IDENTITY_KNOWN_MATCH,    /* an entry with this fingerprint */
    IDENTITY_KNOWN_MISMATCH, /* entries, none with this fingerprint */
};

/* An entry of the file: what to show, and which line to remove. */
struct identity_known_entry {
    char host[IDENTITY_HOST_MAX + 1]; /* as written in the file */
    unsigned port;
    char fingerprint[IDENTITY_FP_SIZE];
    unsigned line; /* 1-based line in the file */
};

/*
 * Look host (1-255 bytes, no whitespace or control bytes; compared ignoring
 * ASCII case) and port (1-65535) up in the known-servers file at path; fp
 * is the fingerprint the server just proved. A missing file has no entries.
 * CHAT_OK and *res; on IDENTITY_KNOWN_MISMATCH, *old (may be NULL) gets the
 * first entry for host and port. Lines are "host port fingerprint"; blank
 * lines and lines starting with '#' are comments. Any other line is
 * CHAT_EPROTO: a damaged pin must not turn silently into a first use.
 */
int identity_known_lookup(const char *path, const char *host, unsigned port,
                          const char *fp, enum identity_known *res,
                          struct identity_known_entry *old,
                          struct identity_error *err);

/*
 * Look fp (a fingerprint) up under every host and port of the known-servers
 * file at path: how a pinned server that moved to another address (a new
 * DHCP lease) is recognised. CHAT_OK and *count, the number of entries
 * pinning fp (0 for a missing file); when there is one, *first (may be
 * NULL) gets the first of them in file order. Lines and errors as for
 * identity_known_lookup(): a damaged line is CHAT_EPROTO, never "not
 * found". Only a key a server proved makes its result a reason to trust.
 */
int identity_known_find_fp(const char *path, const char *fp, unsigned *count,
                           struct identity_known_entry *first,
                           struct identity_error *err);

/* Append "host port fp" (host lower-cased) to the file, creating it (and its
 * directory) if needed; the file is rewritten atomically with every other
 * line kept as it was. Adding an entry that is there already is CHAT_OK. */
int identity_known_add(const char *path, const char *host, unsigned port,
                       const char *fp, struct identity_error *err);

/* Remove every entry for host and port (atomic rewrite, comments kept).
 * *removed (may be NULL) gets how many lines went. */
int identity_known_remove(const char *path, const char *host, unsigned port,
                          unsigned *removed, struct identity_error *err);

/* The warning a client prints on IDENTITY_KNOWN_MISMATCH: both
 * fingerprints, the file and line, and how to accept the new key. Several
 * lines, no trailing newline; g_free() it. */
char *identity_known_mismatch_text(const char *path, const char *host,
                                   unsigned port,
                                   const struct identity_known_entry *old,
                                   const char *new_fp);

/* ---- reserved nicks (server) ---------------------------------------- */

struct identity_nicks; /* opaque */

enum identity_nick {
    IDENTITY_NICK_FREE = 0, /* nobody reserved it */
    IDENTITY_NICK_OWNED,    /* reserved for the fingerprint given */
    IDENTITY_NICK_RESERVED, /* reserved for another key (or none given) */
};

/*
 * Load the store at path (NULL: memory only, nothing persists), holding at
 * most max reservations. A missing file is an empty store. Lines are
 * "nick fingerprint" (nick folded to lower case); blank and '#' lines are
 * comments; any other line, a duplicate nick, or more than max entries is
 * CHAT_EPROTO naming the line, so that no reservation is dropped silently.
 * CHAT_OK: *out (identity_nicks_free it).
 */
int identity_nicks_load(const char *path, size_t max,
                        struct identity_nicks **out,
                        struct identity_error *err);

/* What a client proving fp (NULL: no identity) may do with nick (compared
 * ignoring ASCII case). An invalid nick is IDENTITY_NICK_FREE: the nick
 * rules of message.h judge it elsewhere. */
enum identity_nick identity_nicks_check(const struct identity_nicks *st,
                                        const char *nick, const char *fp);

/* The fingerprint nick is reserved for, or NULL. Borrowed until the next
 * call that changes st. */
const char *identity_nicks_lookup(const struct identity_nicks *st,
                                  const char *nick);

/*
 * Reserve nick (a valid nick, message.h) for fp and rewrite the file
 * atomically. CHAT_OK when nick is now reserved for fp (also when it was
 * already); CHAT_ERANGE for an invalid nick or fingerprint, or a nick
 * reserved for another key; CHAT_EFULL at the cap. When the file cannot be
 * written (CHAT_ESYS) the store is left as it was.
 */
int identity_nicks_reserve(struct identity_nicks *st, const char *nick,
                           const char *fp, struct identity_error *err);

/* Drop the reservation of nick (if any) and rewrite the file. *removed (may
 * be NULL) says whether there was one. On CHAT_ESYS nothing changes. */
int identity_nicks_release(struct identity_nicks *st, const char *nick,
                           bool *removed, struct identity_error *err);

size_t identity_nicks_count(const struct identity_nicks *st);
void identity_nicks_free(struct identity_nicks *st); /* NULL is a no-op */

#endif /* SOCKCHAT_IDENTITY_H */
