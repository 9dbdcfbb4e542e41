/* secure.h - the secure session of PROTOCOL.md section 5 (doc/SECURE.md).
 *
 * Pure: no I/O, no clock, no globals. The caller moves frames; this module
 * builds and checks the two handshake messages (cJSON objects, sent as plain
 * frames) and seals and opens every later frame payload.
 *
 * Handshake: the client sends secure {v, kx}; the server answers secure {v,
 * kx, identity, sig}, sig = Ed25519 over SECURE_CTX_SERVER || client kx ||
 * server kx. Both derive one key per direction with crypto_kx and open one
 * crypto_secretstream_xchacha20poly1305 stream per direction.
 *
 * Sealed frames: the first frame each side sends is its 24-byte stream header
 * followed by one sealed message; every later frame is one sealed message.
 * The plaintext of a sealed message is one JSON message, or a batch: the
 * byte SECURE_BATCH_MARK, then one or more inner frames (4-byte big-endian
 * length L >= 1, then L bytes of one JSON message) exactly filling it.
 * Receivers walk every opened plaintext with secure_plain_next().
 * TAG_FINAL marks a side's last frame. Any frame that does not open (bit
 * flipped, truncated, replayed, reordered, after TAG_FINAL, unknown tag) ends
 * the receiving direction for good: every later secure_open() fails too.
 *
 * sodium_init() must have succeeded (in main) before any call here.
 */
#ifndef SOCKCHAT_SECURE_H
#define SOCKCHAT_SECURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include <cjson/cJSON.h>
#include <glib.h>
#include <sodium.h>

#define SECURE_VERSION 1
/* Signature contexts. Same length, so neither is a prefix of the other's
 * transcript; different, so a server signature never passes as a client's. */
#define SECURE_CTX_SERVER "sockchat secure v1 server"
#define SECURE_CTX_CLIENT "sockchat secure v1 client"

#define SECURE_KX_BYTES crypto_kx_PUBLICKEYBYTES   /* 32 */
#define SECURE_PK_BYTES crypto_sign_PUBLICKEYBYTES /* 32 */
#define SECURE_SK_BYTES crypto_sign_SECRETKEYBYTES /* 64 */
#define SECURE_SIG_BYTES crypto_sign_BYTES         /* 64 */
#define SECURE_HEADER_BYTES                                                    \
    crypto_secretstream_xchacha20poly1305_HEADERBYTES              /* 24 */
#define SECURE_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES /* 17 */
/* Most bytes a sealed frame adds to its plaintext (the first frame). A
 * plaintext of at most max_frame - SECURE_OVERHEAD_MAX always fits. */
#define SECURE_OVERHEAD_MAX (SECURE_HEADER_BYTES + SECURE_ABYTES) /* 41 */
/* A batch plaintext: this byte (never the first byte of a JSON text), then
 * per message a SECURE_BATCH_LEN_BYTES big-endian length and the message.
 * A batch of messages m1..mk has 1 + sum(4 + len(mi)) plaintext bytes. */
#define SECURE_BATCH_MARK 0x00
#define SECURE_BATCH_LEN_BYTES 4

struct secure_session; /* opaque; key material lives in sodium_malloc memory */

/*
 * Client, step 1. Makes an ephemeral X25519 key pair and the request
 * {"type":"secure","v":1,"kx":"<base64>"} to send as a plain frame.
 * CHAT_OK: *out (free with secure_free) and *request (cJSON_Delete it).
 * CHAT_ESYS (ENOMEM): nothing allocated. Out-params are cleared on entry.
 */
int secure_client_start(struct secure_session **out, cJSON **request);

/*
 * Client, step 2. Checks the server's reply (the parsed plain frame that
 * answered the request), verifies its signature, derives the keys and
 * opens the outgoing stream. CHAT_OK: the session is established and
 * server_pk holds the server's Ed25519 identity key, which the caller must
 * then check against its known-servers file (identity.h) before sending
 * anything. Errors, with a static reason in *why: CHAT_EPROTO (not a
 * well-formed secure reply: wrong type, missing field, wrong JSON type, bad
 * base64, wrong length; also a second call), CHAT_ERANGE (v is not 1),
 * CHAT_ECRYPTO (signature does not verify, unusable key). After an error the
 * session is dead: secure_free() it and close. server_pk is zeroed on entry.
 */
int secure_client_finish(struct secure_session *s, const cJSON *reply,
                         uint8_t server_pk[SECURE_PK_BYTES], const char **why);

/*
 * Server. identity_sk is the long-term Ed25519 secret key (borrowed, read
 * only during the call). request is the parsed secure request (any JSON:
 * every field is type- and length-checked). CHAT_OK: *out is established
 * (secure_free it) and *reply is the answer to send as a plain frame
 * (cJSON_Delete it; add the request's id with msg_add_id if it had one).
 * Errors as secure_client_finish (CHAT_EPROTO, CHAT_ERANGE, CHAT_ECRYPTO for a
 * client key that gives no shared secret, CHAT_ESYS), with *why set and
 * nothing allocated; the server answers error secure_failed and closes.
 */
int secure_server_accept(const uint8_t identity_sk[SECURE_SK_BYTES],
                         const cJSON *request, struct secure_session **out,
                         cJSON **reply, const char **why);

/* True once finish/accept succeeded. NULL is false. */
bool secure_established(const struct secure_session *s);
/* True after this side sealed its TAG_FINAL frame / opened the peer's. */
bool secure_tx_finished(const struct secure_session *s);
bool secure_rx_finished(const struct secure_session *s);

/* Exact payload length that secure_seal() will produce next for n bytes of
 * plaintext: n + SECURE_ABYTES, plus SECURE_HEADER_BYTES on the first frame.
 * Check it against max_frame and the output queue *before* sealing: a
 * sealed frame that is then dropped desynchronises the stream. */
size_t secure_sealed_len(const struct secure_session *s, size_t n);

/*
 * Seal n bytes of plain as the next frame payload: a serialized JSON
 * object, or a whole batch plaintext (it is sealed as it is, so a relay may
 * forward an opened batch with this). final marks this side's last frame
 * (TAG_FINAL).
 * CHAT_OK: *out (g_free it) holds *out_len bytes to frame and send.
 * CHAT_EPROTO: not established, or TAG_FINAL already sent (nothing sealed).
 * CHAT_ETOOBIG: n too large for any frame. Out-params cleared on entry.
 */
int secure_seal(struct secure_session *s, const void *plain, size_t n,
                bool final, uint8_t **out, size_t *out_len);

/*
 * Open one frame payload (in, n) from the peer.
 * CHAT_OK: *out (g_free it) holds *out_len bytes of authenticated plaintext,
 * NUL-terminated (the NUL not counted); *final is true if it was the peer's
 * TAG_FINAL frame, after which every further frame fails.
 * CHAT_ECRYPTO: the frame did not open (or came after TAG_FINAL, or after an
 * earlier failure); answer secure_failed and close. Nothing is output.
 * CHAT_EPROTO: the session is not established. Out-params cleared on entry.
 */
int secure_open(struct secure_session *s, const uint8_t *in, size_t n,
                uint8_t **out, size_t *out_len, bool *final);

/*
 * Iterate the messages of a plaintext pt of n bytes that secure_open()
 * returned (doc/SECURE.md section 5). Start with *off = 0 and call until
 * the result is not CHAT_OK.
 * CHAT_OK: *msg (borrowed from pt, NOT NUL-terminated) holds *msg_len >= 1
 * bytes of the next message, to be checked as a plain payload.
 * CHAT_EAGAIN: no more messages (an empty plaintext holds none).
 * CHAT_EPROTO: pt is a malformed batch (the mark alone, a length of 0, a
 * truncated length or message, bytes left over) or *off is not a position
 * this function gave. The whole batch is checked on the first call, so a
 * malformed batch yields CHAT_EPROTO before any of its messages: the
 * receiver delivers nothing from it and ends the session (secure_failed).
 * *msg and *msg_len are cleared on entry; *off moves past each message.
 */
int secure_plain_next(const uint8_t *pt, size_t n, size_t *off,
                      const uint8_t **msg, size_t *msg_len);

/* Plaintext length of a batch of the count messages in msgs:
 * 1 + sum(SECURE_BATCH_LEN_BYTES + iov_len). SIZE_MAX on overflow. */
size_t secure_batch_plain_len(const struct iovec *msgs, size_t count);

/* Exact payload length secure_seal_batch() will produce next for msgs:
 * secure_sealed_len() of secure_batch_plain_len(). SIZE_MAX on overflow.
 * Keep it within max_frame: a batch never exceeds max_frame - 41 bytes of
 * plaintext on the first frame, max_frame - 17 on later ones. */
size_t secure_batch_sealed_len(const struct secure_session *s,
                               const struct iovec *msgs, size_t count);

/*
 * Seal the count (>= 1) messages of msgs (each one serialized JSON object
 * of 1 to UINT32_MAX bytes) as ONE frame payload holding a batch; final
 * marks this side's last frame (TAG_FINAL). The payload is written to out
 * (out_cap bytes, caller's memory); the batch plaintext is assembled in
 * scratch, which the caller may keep and pass again to save allocations
 * (its contents are replaced; NULL: a temporary one is used).
 * CHAT_OK: *out_len = secure_batch_sealed_len() bytes were written to out.
 * CHAT_EPROTO: not established, TAG_FINAL already sent, count 0, a NULL or
 * empty message. CHAT_ETOOBIG: the sealed batch would not fit in out_cap
 * (pass min(buffer, max_frame) to enforce the frame limit) or a message is
 * over UINT32_MAX bytes. On every error nothing is sealed, so the stream
 * stays intact. *out_len is cleared on entry.
 */
int secure_seal_batch(struct secure_session *s, const struct iovec *msgs,
                      size_t count, bool final, GByteArray *scratch,
                      uint8_t *out, size_t out_cap, size_t *out_len);

/*
 * Optional client identity, inside the established session (doc/SECURE.md
 * "Client identity"). Adds "identity" (base64 Ed25519 public key) and "sig"
 * (base64 Ed25519 signature over SECURE_CTX_CLIENT || client kx || server kx
 * || server identity key) to hello, replacing any already there.
 * identity_sk is borrowed. CHAT_OK; CHAT_EPROTO if s is not an established
 * client session; CHAT_ESYS (ENOMEM) if cJSON fails.
 */
int secure_client_sign_hello(const struct secure_session *s,
                             const uint8_t identity_sk[SECURE_SK_BYTES],
                             cJSON *hello);

/*
 * Server: check the identity proof in a hello (any JSON). s may be NULL (a
 * plain session). CHAT_OK with *present false: neither "identity" nor "sig"
 * is there. CHAT_OK with *present true: client_pk holds the proven key.
 * CHAT_EPROTO: only one of the two fields, a wrong JSON type, bad base64 or
 * length, or fields in a session that is not secure (answer bad_field).
 * CHAT_ECRYPTO: the signature does not verify for this session (answer
 * secure_failed and close). *why is set on error; client_pk zeroed on entry.
 */
int secure_server_verify_hello(const struct secure_session *s,
                               const cJSON *hello,
                               uint8_t client_pk[SECURE_PK_BYTES],
                               bool *present, const char **why);

/* Wipe every key and state (sodium_memzero) and free. NULL is a no-op. */
void secure_free(struct secure_session *s);

#endif /* SOCKCHAT_SECURE_H */
