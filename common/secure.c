/* secure.c - handshake and sealed frames of a secure session (secure.h). */
#include "secure.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "err.h"
#include "frame.h"

#define B64_VARIANT sodium_base64_VARIANT_ORIGINAL
#define CTX_LEN (sizeof(SECURE_CTX_SERVER) - 1)

/* Both contexts must have the same length (see secure.h). */
G_STATIC_ASSERT(sizeof(SECURE_CTX_SERVER) == sizeof(SECURE_CTX_CLIENT));
/* The client identity transcript is the largest thing we sign. */
#define TRANSCRIPT_MAX (CTX_LEN + 2 * SECURE_KX_BYTES + SECURE_PK_BYTES)

/* Everything secret, in one sodium_malloc() block: guard pages, mlock'd,
 * and wiped by secure_free(). Only uint8_t arrays, so sodium_malloc's
 * end-of-page placement needs no extra alignment. */
struct secure_keys {
    uint8_t kx_sk[crypto_kx_SECRETKEYBYTES]; /* ephemeral, until derived */
    uint8_t rx[crypto_kx_SESSIONKEYBYTES];   /* until the peer's header */
    crypto_secretstream_xchacha20poly1305_state push;
    crypto_secretstream_xchacha20poly1305_state pull;
};

struct secure_session {
    bool is_server;
    bool established;
    bool dead;            /* handshake failed; nothing more works */
    bool header_sent;     /* our stream header went out in a frame */
    bool header_received; /* the peer's header came; pull is ready */
    bool tx_final;        /* we sealed TAG_FINAL */
    bool rx_final;        /* we opened the peer's TAG_FINAL */
    bool rx_failed;       /* a frame did not open; the rx side is over */
    /* Public transcript, kept for the client identity proof. */
    uint8_t client_kx[SECURE_KX_BYTES];
    uint8_t server_kx[SECURE_KX_BYTES];
    uint8_t server_pk[SECURE_PK_BYTES];
    uint8_t header[SECURE_HEADER_BYTES]; /* our push header, until sent */
    struct secure_keys *k;
};

static struct secure_session *
session_new(bool is_server)
{
    struct secure_session *s = g_new0(struct secure_session, 1);

    s->is_server = is_server;
    s->k = sodium_malloc(sizeof(*s->k));
    if (s->k == NULL) {
        g_free(s);
        errno = ENOMEM;
        return NULL;
    }
    sodium_memzero(s->k, sizeof(*s->k));
    return s;
}

void
secure_free(struct secure_session *s)
{
    if (s == NULL)
        return;
    if (s->k != NULL) {
        sodium_memzero(s->k, sizeof(*s->k));
        sodium_free(s->k);
    }
    sodium_memzero(s, sizeof(*s));
    g_free(s);
}

/* ---- JSON fields ---------------------------------------------------- */

/* Decode field name of obj: a string that is the canonical padded base64
 * (ORIGINAL alphabet) of exactly want bytes. The length is checked before
 * decoding, so a huge string costs nothing. */
static bool
get_b64(const cJSON *obj, const char *name, uint8_t *out, size_t want)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    const char *str = NULL;
    size_t slen, bin_len = 0;

    if (!cJSON_IsString(f) || f->valuestring == NULL)
        return false;
    str = f->valuestring;
    slen = strlen(str);
    if (slen != sodium_base64_ENCODED_LEN(want, B64_VARIANT) - 1)
        return false;
    if (sodium_base642bin(out, want, str, slen, NULL, &bin_len, NULL,
                          B64_VARIANT) != 0)
        return false;
    return bin_len == want;
}

static bool
add_b64(cJSON *obj, const char *name, const uint8_t *bin, size_t n)
{
    char text[sodium_base64_ENCODED_LEN(SECURE_SIG_BYTES, B64_VARIANT)];

    if (n > SECURE_SIG_BYTES)
        return false;
    sodium_bin2base64(text, sizeof(text), bin, n, B64_VARIANT);
    /* Every member of that name goes (a parsed object may repeat one), so
     * that a reader taking the first or the last sees ours. */
    while (cJSON_GetObjectItemCaseSensitive(obj, name) != NULL)
        cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
    return cJSON_AddStringToObject(obj, name, text) != NULL;
}

/* Common checks of both handshake messages: an object, type "secure" when
 * type is present, v exactly 1. */
static int
check_envelope(const cJSON *m, const char **why)
{
    const cJSON *t, *v;

    if (!cJSON_IsObject(m)) {
        *why = "the secure message is not a JSON object";
        return CHAT_EPROTO;
    }
    t = cJSON_GetObjectItemCaseSensitive(m, "type");
    if (t != NULL && (!cJSON_IsString(t) || t->valuestring == NULL ||
                      strcmp(t->valuestring, "secure") != 0)) {
        *why = "the message is not of type secure";
        return CHAT_EPROTO;
    }
    v = cJSON_GetObjectItemCaseSensitive(m, "v");
    if (v == NULL) {
        *why = "field 'v' is missing";
        return CHAT_EPROTO;
    }
    if (!cJSON_IsNumber(v)) {
        *why = "field 'v' must be a number";
        return CHAT_EPROTO;
    }
    if (v->valuedouble != (double)SECURE_VERSION) {
        *why = "secure version not supported (this end speaks 1)";
        return CHAT_ERANGE;
    }
    return CHAT_OK;
}

static cJSON *
new_secure_msg(void)
{
    cJSON *m = cJSON_CreateObject();

    if (m == NULL)
        return NULL;
    if (cJSON_AddStringToObject(m, "type", "secure") == NULL ||
        cJSON_AddNumberToObject(m, "v", SECURE_VERSION) == NULL) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* ---- transcripts ---------------------------------------------------- */

/* SECURE_CTX_SERVER || client kx || server kx. */
static size_t
server_transcript(uint8_t out[TRANSCRIPT_MAX], const uint8_t *ckx,
                  const uint8_t *skx)
{
    memcpy(out, SECURE_CTX_SERVER, CTX_LEN);
    memcpy(out + CTX_LEN, ckx, SECURE_KX_BYTES);
    memcpy(out + CTX_LEN + SECURE_KX_BYTES, skx, SECURE_KX_BYTES);
    return CTX_LEN + 2 * SECURE_KX_BYTES;
}

/* SECURE_CTX_CLIENT || client kx || server kx || server identity key. */
static size_t
client_transcript(uint8_t out[TRANSCRIPT_MAX], const struct secure_session *s)
{
    memcpy(out, SECURE_CTX_CLIENT, CTX_LEN);
    memcpy(out + CTX_LEN, s->client_kx, SECURE_KX_BYTES);
    memcpy(out + CTX_LEN + SECURE_KX_BYTES, s->server_kx, SECURE_KX_BYTES);
    memcpy(out + CTX_LEN + 2 * SECURE_KX_BYTES, s->server_pk, SECURE_PK_BYTES);
    return TRANSCRIPT_MAX;
}

/* Open our push stream with key tx (wiped afterwards); keep rx for the
 * peer's header. */
static void
open_streams(struct secure_session *s, uint8_t tx[crypto_kx_SESSIONKEYBYTES])
{
    crypto_secretstream_xchacha20poly1305_init_push(&s->k->push, s->header, tx);
    sodium_memzero(tx, crypto_kx_SESSIONKEYBYTES);
    sodium_memzero(s->k->kx_sk, sizeof(s->k->kx_sk));
    s->established = true;
}

/* ---- handshake ------------------------------------------------------ */

int
secure_client_start(struct secure_session **out, cJSON **request)
{
    struct secure_session *s = NULL;
    cJSON *req = NULL;
    int rc = CHAT_ESYS;

    *out = NULL;
    *request = NULL;
    s = session_new(false);
    if (s == NULL)
        goto out;
    crypto_kx_keypair(s->client_kx, s->k->kx_sk);
    req = new_secure_msg();
    if (req == NULL || !add_b64(req, "kx", s->client_kx, SECURE_KX_BYTES)) {
        errno = ENOMEM;
        goto out;
    }
    *out = s;
    *request = req;
    s = NULL;
    req = NULL;
    rc = CHAT_OK;
out:
    cJSON_Delete(req);
    secure_free(s);
    return rc;
}

int
secure_client_finish(struct secure_session *s, const cJSON *reply,
                     uint8_t server_pk[SECURE_PK_BYTES], const char **why)
{
    uint8_t transcript[TRANSCRIPT_MAX];
    uint8_t sig[SECURE_SIG_BYTES];
    uint8_t tx[crypto_kx_SESSIONKEYBYTES];
    size_t tlen;
    int rc;

    *why = NULL;
    sodium_memzero(server_pk, SECURE_PK_BYTES);
    if (s == NULL || s->is_server || s->established || s->dead) {
        *why = "the session is not waiting for a secure reply";
        return CHAT_EPROTO;
    }
    /* Whatever happens next, this handshake is used up. */
    s->dead = true;
    rc = check_envelope(reply, why);
    if (rc != CHAT_OK)
        goto out;
    rc = CHAT_EPROTO;
    if (!get_b64(reply, "kx", s->server_kx, SECURE_KX_BYTES)) {
        *why = "field 'kx' must be base64 of 32 bytes";
        goto out;
    }
    if (!get_b64(reply, "identity", s->server_pk, SECURE_PK_BYTES)) {
        *why = "field 'identity' must be base64 of 32 bytes";
        goto out;
    }
    if (!get_b64(reply, "sig", sig, SECURE_SIG_BYTES)) {
        *why = "field 'sig' must be base64 of 64 bytes";
        goto out;
    }
    rc = CHAT_ECRYPTO;
    tlen = server_transcript(transcript, s->client_kx, s->server_kx);
    if (crypto_sign_verify_detached(sig, transcript, tlen, s->server_pk) != 0) {
        *why = "the server's signature does not verify";
        goto out;
    }
    if (crypto_kx_client_session_keys(s->k->rx, tx, s->client_kx, s->k->kx_sk,
                                      s->server_kx) != 0) {
        *why = "the server's key exchange key is unusable";
        goto out;
    }
    open_streams(s, tx);
    s->dead = false;
    memcpy(server_pk, s->server_pk, SECURE_PK_BYTES);
    rc = CHAT_OK;
out:
    if (rc != CHAT_OK)
        sodium_memzero(s->k, sizeof(*s->k));
    sodium_memzero(tx, sizeof(tx));
    return rc;
}

int
secure_server_accept(const uint8_t identity_sk[SECURE_SK_BYTES],
                     const cJSON *request, struct secure_session **out,
                     cJSON **reply, const char **why)
{
    struct secure_session *s = NULL;
    cJSON *rep = NULL;
    uint8_t transcript[TRANSCRIPT_MAX];
    uint8_t sig[SECURE_SIG_BYTES];
    uint8_t tx[crypto_kx_SESSIONKEYBYTES];
    uint8_t client_kx[SECURE_KX_BYTES];
    size_t tlen;
    int rc;

    *out = NULL;
    *reply = NULL;
    *why = NULL;
    rc = check_envelope(request, why);
    if (rc != CHAT_OK)
        goto out;
    if (!get_b64(request, "kx", client_kx, SECURE_KX_BYTES)) {
        *why = "field 'kx' must be base64 of 32 bytes";
        rc = CHAT_EPROTO;
        goto out;
    }
    s = session_new(true);
    if (s == NULL) {
        *why = "out of memory";
        rc = CHAT_ESYS;
        goto out;
    }
    memcpy(s->client_kx, client_kx, SECURE_KX_BYTES);
    crypto_kx_keypair(s->server_kx, s->k->kx_sk);
    if (crypto_kx_server_session_keys(s->k->rx, tx, s->server_kx, s->k->kx_sk,
                                      s->client_kx) != 0) {
        *why = "the client's key exchange key is unusable";
        rc = CHAT_ECRYPTO;
        goto out;
    }
    crypto_sign_ed25519_sk_to_pk(s->server_pk, identity_sk);
    tlen = server_transcript(transcript, s->client_kx, s->server_kx);
    crypto_sign_detached(sig, NULL, transcript, tlen, identity_sk);
    rep = new_secure_msg();
    if (rep == NULL || !add_b64(rep, "kx", s->server_kx, SECURE_KX_BYTES) ||
        !add_b64(rep, "identity", s->server_pk, SECURE_PK_BYTES) ||
        !add_b64(rep, "sig", sig, SECURE_SIG_BYTES)) {
        *why = "out of memory";
        errno = ENOMEM;
        rc = CHAT_ESYS;
        goto out;
    }
    open_streams(s, tx);
    *out = s;
    *reply = rep;
    s = NULL;
    rep = NULL;
    rc = CHAT_OK;
out:
    sodium_memzero(tx, sizeof(tx));
    cJSON_Delete(rep);
    secure_free(s);
    return rc;
}

bool
secure_established(const struct secure_session *s)
{
    return s != NULL && s->established;
}

bool
secure_tx_finished(const struct secure_session *s)
{
    return s != NULL && s->tx_final;
}

bool
secure_rx_finished(const struct secure_session *s)
{
    return s != NULL && s->rx_final;
}

/* ---- sealed frames -------------------------------------------------- */

static size_t
overhead(const struct secure_session *s)
{
    if (s != NULL && s->header_sent)
        return SECURE_ABYTES;
    return SECURE_OVERHEAD_MAX;
}

size_t
secure_sealed_len(const struct secure_session *s, size_t n)
{
    size_t o = overhead(s);

    if (n > SIZE_MAX - o)
        return SIZE_MAX;
    return n + o;
}

/* Can s seal one more frame? */
static bool
can_seal(const struct secure_session *s)
{
    return s != NULL && s->established && !s->tx_final;
}

/* Seal n bytes of plain (n checked by the caller against MESSAGEBYTES_MAX)
 * into out, which holds overhead(s) + n bytes. Cannot fail. */
static void
seal_into(struct secure_session *s, const void *plain, size_t n, bool final,
          uint8_t *out)
{
    unsigned char tag;

    if (!s->header_sent) {
        memcpy(out, s->header, SECURE_HEADER_BYTES);
        out += SECURE_HEADER_BYTES;
    }
    if (plain == NULL)
        plain = ""; /* n == 0: never hand libsodium a NULL source */
    tag = final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
    crypto_secretstream_xchacha20poly1305_push(
        &s->k->push, out, NULL, (const unsigned char *)plain, n, NULL, 0, tag);
    s->header_sent = true;
    if (final) {
        s->tx_final = true;
        sodium_memzero(&s->k->push, sizeof(s->k->push));
    }
}

int
secure_seal(struct secure_session *s, const void *plain, size_t n, bool final,
            uint8_t **out, size_t *out_len)
{
    uint8_t *buf = NULL;
    size_t o;

    *out = NULL;
    *out_len = 0;
    if (!can_seal(s) || (plain == NULL && n > 0))
        return CHAT_EPROTO;
    o = overhead(s);
    if (n > crypto_secretstream_xchacha20poly1305_MESSAGEBYTES_MAX ||
        n > SIZE_MAX - o)
        return CHAT_ETOOBIG;
    buf = g_malloc(n + o);
    seal_into(s, plain, n, final, buf);
    *out = buf;
    *out_len = n + o;
    return CHAT_OK;
}

/* ---- batches -------------------------------------------------------- */

/* An inner frame's length is an outer frame's header (PROTOCOL.md 1.1). */
G_STATIC_ASSERT(SECURE_BATCH_LEN_BYTES == FRAME_HDR);

static uint32_t
load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* The inner frame of a batch at off: CHAT_OK with its message's length in
 * *len, or CHAT_EPROTO if it is not a whole inner frame of pt. */
static int
inner_frame(const uint8_t *pt, size_t n, size_t off, size_t *len)
{
    uint32_t l;

    *len = 0;
    if (off > n || n - off < SECURE_BATCH_LEN_BYTES)
        return CHAT_EPROTO;
    l = load_be32(pt + off);
    off += SECURE_BATCH_LEN_BYTES;
    /* Checked before looking at the body: n - off cannot underflow. */
    if (l == 0 || l > n - off)
        return CHAT_EPROTO;
    *len = l;
    return CHAT_OK;
}

/* The whole batch pt is well formed: at least one inner frame, each of at
 * least one byte, exactly filling it. */
static bool
batch_valid(const uint8_t *pt, size_t n)
{
    size_t off = 1, len;

    if (n <= off)
        return false; /* the mark alone */
    while (off < n) {
        if (inner_frame(pt, n, off, &len) != CHAT_OK)
            return false;
        off += SECURE_BATCH_LEN_BYTES + len;
    }
    return true;
}

int
secure_plain_next(const uint8_t *pt, size_t n, size_t *off, const uint8_t **msg,
                  size_t *msg_len)
{
    size_t len;

    *msg = NULL;
    *msg_len = 0;
    if (*off > n || (pt == NULL && n > 0))
        return CHAT_EPROTO;
    if (*off == n)
        return CHAT_EAGAIN; /* the end, or an empty plaintext */
    if (pt[0] != SECURE_BATCH_MARK) {
        /* One message, the whole plaintext. */
        if (*off != 0)
            return CHAT_EPROTO;
        *msg = pt;
        *msg_len = n;
        *off = n;
        return CHAT_OK;
    }
    if (*off == 0) {
        /* Nothing of a malformed batch may be delivered: check it all
         * before handing out the first message. */
        if (!batch_valid(pt, n))
            return CHAT_EPROTO;
        *off = 1;
    }
    if (inner_frame(pt, n, *off, &len) != CHAT_OK)
        return CHAT_EPROTO;
    *msg = pt + *off + SECURE_BATCH_LEN_BYTES;
    *msg_len = len;
    *off += SECURE_BATCH_LEN_BYTES + len;
    return CHAT_OK;
}

size_t
secure_batch_plain_len(const struct iovec *msgs, size_t count)
{
    size_t total = 1, i;

    for (i = 0; i < count; i++) {
        if (msgs[i].iov_len > SIZE_MAX - SECURE_BATCH_LEN_BYTES ||
            total > SIZE_MAX - SECURE_BATCH_LEN_BYTES - msgs[i].iov_len)
            return SIZE_MAX;
        total += SECURE_BATCH_LEN_BYTES + msgs[i].iov_len;
    }
    return total;
}

size_t
secure_batch_sealed_len(const struct secure_session *s,
                        const struct iovec *msgs, size_t count)
{
    size_t n = secure_batch_plain_len(msgs, count);

    if (n == SIZE_MAX)
        return SIZE_MAX;
    return secure_sealed_len(s, n);
}

int
secure_seal_batch(struct secure_session *s, const struct iovec *msgs,
                  size_t count, bool final, GByteArray *scratch, uint8_t *out,
                  size_t out_cap, size_t *out_len)
{
    GByteArray *plain = scratch;
    uint8_t *p;
    size_t n, want, i;

    *out_len = 0;
    if (!can_seal(s) || count == 0 || msgs == NULL || out == NULL)
        return CHAT_EPROTO;
    for (i = 0; i < count; i++) {
        if (msgs[i].iov_base == NULL || msgs[i].iov_len == 0)
            return CHAT_EPROTO;
        if (msgs[i].iov_len > UINT32_MAX)
            return CHAT_ETOOBIG;
    }
    n = secure_batch_plain_len(msgs, count);
    want = secure_sealed_len(s, n);
    if (n > crypto_secretstream_xchacha20poly1305_MESSAGEBYTES_MAX ||
        n > G_MAXUINT || want > out_cap)
        return CHAT_ETOOBIG;
    if (plain == NULL)
        plain = g_byte_array_sized_new((guint)n);
    g_byte_array_set_size(plain, (guint)n);
    p = plain->data;
    *p++ = SECURE_BATCH_MARK;
    for (i = 0; i < count; i++) {
        frame_put_header(p, (uint32_t)msgs[i].iov_len);
        p += SECURE_BATCH_LEN_BYTES;
        memcpy(p, msgs[i].iov_base, msgs[i].iov_len);
        p += msgs[i].iov_len;
    }
    seal_into(s, plain->data, n, final, out);
    *out_len = want;
    if (plain != scratch)
        g_byte_array_unref(plain);
    return CHAT_OK;
}

/* The receiving direction is over: wipe its state so nothing can open. */
static int
rx_fail(struct secure_session *s)
{
    s->rx_failed = true;
    sodium_memzero(s->k->rx, sizeof(s->k->rx));
    sodium_memzero(&s->k->pull, sizeof(s->k->pull));
    return CHAT_ECRYPTO;
}

int
secure_open(struct secure_session *s, const uint8_t *in, size_t n,
            uint8_t **out, size_t *out_len, bool *final)
{
    uint8_t *plain = NULL;
    unsigned long long mlen = 0;
    unsigned char tag = 0;

    *out = NULL;
    *out_len = 0;
    *final = false;
    if (s == NULL || !s->established)
        return CHAT_EPROTO;
    if (s->rx_failed || s->rx_final || (in == NULL && n > 0))
        return rx_fail(s);
    if (!s->header_received) {
        /* The first frame: the peer's stream header, then a message. */
        if (n < SECURE_HEADER_BYTES + SECURE_ABYTES)
            return rx_fail(s);
        if (crypto_secretstream_xchacha20poly1305_init_pull(&s->k->pull, in,
                                                            s->k->rx) != 0)
            return rx_fail(s);
        sodium_memzero(s->k->rx, sizeof(s->k->rx));
        s->header_received = true;
        in += SECURE_HEADER_BYTES;
        n -= SECURE_HEADER_BYTES;
    }
    if (n < SECURE_ABYTES)
        return rx_fail(s);
    plain = g_malloc(n - SECURE_ABYTES + 1);
    if (crypto_secretstream_xchacha20poly1305_pull(&s->k->pull, plain, &mlen,
                                                   &tag, in, n, NULL, 0) != 0) {
        g_free(plain);
        return rx_fail(s);
    }
    /* We only ever send MESSAGE and FINAL; PUSH and REKEY are refused so
     * that the stream's meaning stays exactly what doc/SECURE.md says. */
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        s->rx_final = true;
        *final = true;
        sodium_memzero(&s->k->pull, sizeof(s->k->pull));
    } else if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
        sodium_memzero(plain, (size_t)mlen);
        g_free(plain);
        return rx_fail(s);
    }
    plain[mlen] = '\0';
    *out = plain;
    *out_len = (size_t)mlen;
    return CHAT_OK;
}

/* ---- client identity ------------------------------------------------ */

int
secure_client_sign_hello(const struct secure_session *s,
                         const uint8_t identity_sk[SECURE_SK_BYTES],
                         cJSON *hello)
{
    uint8_t transcript[TRANSCRIPT_MAX];
    uint8_t sig[SECURE_SIG_BYTES];
    uint8_t pk[SECURE_PK_BYTES];
    size_t tlen;

    if (s == NULL || s->is_server || !s->established || !cJSON_IsObject(hello))
        return CHAT_EPROTO;
    tlen = client_transcript(transcript, s);
    crypto_sign_detached(sig, NULL, transcript, tlen, identity_sk);
    crypto_sign_ed25519_sk_to_pk(pk, identity_sk);
    if (!add_b64(hello, "identity", pk, sizeof(pk)) ||
        !add_b64(hello, "sig", sig, sizeof(sig))) {
        errno = ENOMEM;
        return CHAT_ESYS;
    }
    return CHAT_OK;
}

int
secure_server_verify_hello(const struct secure_session *s, const cJSON *hello,
                           uint8_t client_pk[SECURE_PK_BYTES], bool *present,
                           const char **why)
{
    uint8_t transcript[TRANSCRIPT_MAX];
    uint8_t sig[SECURE_SIG_BYTES];
    uint8_t pk[SECURE_PK_BYTES];
    const cJSON *idf, *sigf;
    size_t tlen;

    *why = NULL;
    *present = false;
    sodium_memzero(client_pk, SECURE_PK_BYTES);
    if (!cJSON_IsObject(hello)) {
        *why = "hello is not a JSON object";
        return CHAT_EPROTO;
    }
    idf = cJSON_GetObjectItemCaseSensitive(hello, "identity");
    sigf = cJSON_GetObjectItemCaseSensitive(hello, "sig");
    if (idf == NULL && sigf == NULL)
        return CHAT_OK;
    if (s == NULL || !s->is_server || !s->established) {
        *why = "an identity can only be proven in a secure session";
        return CHAT_EPROTO;
    }
    if (idf == NULL || sigf == NULL) {
        *why = "fields 'identity' and 'sig' go together";
        return CHAT_EPROTO;
    }
    if (!get_b64(hello, "identity", pk, sizeof(pk))) {
        *why = "field 'identity' must be base64 of 32 bytes";
        return CHAT_EPROTO;
    }
    if (!get_b64(hello, "sig", sig, sizeof(sig))) {
        *why = "field 'sig' must be base64 of 64 bytes";
        return CHAT_EPROTO;
    }
    tlen = client_transcript(transcript, s);
    if (crypto_sign_verify_detached(sig, transcript, tlen, pk) != 0) {
        *why = "the identity signature does not verify";
        return CHAT_ECRYPTO;
    }
    memcpy(client_pk, pk, SECURE_PK_BYTES);
    *present = true;
    return CHAT_OK;
}
