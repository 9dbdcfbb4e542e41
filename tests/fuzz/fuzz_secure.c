/* fuzz_secure.c - libFuzzer target for the secure handshake and the sealed
 * frames (common/secure.c).
 *
 * Randomness is a fixed ChaCha20 stream restarted for every input, and the
 * identity keys come from fixed seeds, so that every key, header and
 * signature is the same on every run of the same input (and the seeds in
 * the corpus can carry a genuine server reply, hello proof or sealed frame).
 *
 * Input: byte 0, bit 0 set: from byte 1 on, the JSON value cJSON parses
 * (its longest prefix) is
 * - the client's secure request to secure_server_accept (server identity
 *   from seed 0x11..): success must give an established session and a reply
 *   that a real client accepts, with the server's key; failure must set why,
 *   leave *out and *reply NULL and return EPROTO, ERANGE or ECRYPTO;
 * - the server's reply to secure_client_finish after a real
 *   secure_client_start: success only if the harness's own check of kx,
 *   identity and sig (Ed25519 over SECURE_CTX_SERVER || client kx || server
 *   kx) passes; a failure zeroes server_pk and kills the session (a second
 *   finish and a seal fail);
 * - a hello to secure_server_verify_hello on an established pair (and on
 *   the client side and NULL, where identity or sig must be EPROTO): a
 *   proven key must verify under the harness's own transcript.
 * The bytes after the JSON value (all of them from byte 1 when bit 0 of
 * byte 0 is clear or nothing parses) are records for the established pair,
 * byte r first:
 *   r & 1       direction: 0 client -> server, 1 server -> client
 *   r & 0x80    sealed: L = next byte, then L bytes of plaintext; r & 0x40
 *               is final. The sender seals (EPROTO once its final is out,
 *               else sealed_len exact) and the receiver opens: same bytes
 *               and final flag, or ECRYPTO when its direction is over.
 *   r & 0xc0 == 0x40  replay: the last frame sealed in that direction with
 *               byte [next 2 bytes] XOR next byte: must never open.
 *   r & 0xc0 == 0   raw: L = next 2 bytes (big-endian), then L bytes given
 *               to secure_open. If they open, the sender sealing the same
 *               plaintext and final flag must produce exactly those bytes
 *               (nothing that was not sealed with the session's key opens).
 * A failed open ends the direction: every later open fails.
 * Every plaintext that opens also goes through secure_plain_next(): an empty
 * one holds no message, one that does not start with 0x00 is one message,
 * and one that does is a batch whose messages must exactly tile it or be
 * refused before the first. A sealed record whose plaintext is a
 * well-formed batch is sealed with secure_seal_batch() instead (same bytes
 * on the wire), and a raw frame that opens to one is sealed again with it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/uio.h>

#include <cjson/cJSON.h>
#include <glib.h>
#include <sodium.h>

#include "err.h"
#include "secure.h"

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

/* ---- deterministic randombytes ------------------------------------------ */

static uint8_t rng_key[crypto_stream_chacha20_KEYBYTES] = "sockchat fuzz rng key 0123456789";
static uint64_t rng_ctr;

static void
rng_buf(void *const buf, const size_t size)
{
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];

    memset(nonce, 0, sizeof(nonce));
    memcpy(nonce, &rng_ctr, sizeof(rng_ctr) < sizeof(nonce) ? sizeof(rng_ctr)
                                                           : sizeof(nonce));
    rng_ctr++;
    crypto_stream_chacha20(buf, size, nonce, rng_key);
}

static uint32_t
rng_random(void)
{
    uint32_t v;

    rng_buf(&v, sizeof(v));
    return v;
}

static const char *
rng_name(void)
{
    return "fuzz-chacha20";
}

static struct randombytes_implementation rng_impl = {
    .implementation_name = rng_name,
    .random = rng_random,
    .stir = NULL,
    .uniform = NULL,
    .buf = rng_buf,
    .close = NULL,
};

static uint8_t server_pk[SECURE_PK_BYTES], server_sk[SECURE_SK_BYTES];
static uint8_t client_id_pk[SECURE_PK_BYTES], client_id_sk[SECURE_SK_BYTES];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uint8_t seed[crypto_sign_SEEDBYTES];

    (void)argc;
    (void)argv;
    g_unsetenv("G_MESSAGES_DEBUG");
    CHECK(randombytes_set_implementation(&rng_impl) == 0);
    CHECK(sodium_init() >= 0);
    memset(seed, 0x11, sizeof(seed));
    crypto_sign_seed_keypair(server_pk, server_sk, seed);
    memset(seed, 0x22, sizeof(seed));
    crypto_sign_seed_keypair(client_id_pk, client_id_sk, seed);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static bool
b64_field(const cJSON *o, const char *name, uint8_t *out, size_t want)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    size_t bin_len = 0;

    if (!cJSON_IsString(f) || f->valuestring == NULL)
        return false;
    if (strlen(f->valuestring) !=
        sodium_base64_ENCODED_LEN(want, sodium_base64_VARIANT_ORIGINAL) - 1)
        return false;
    if (sodium_base642bin(out, want, f->valuestring, strlen(f->valuestring),
                          NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    return bin_len == want;
}

static void
check_err(int rc, const char *why)
{
    CHECK(rc == CHAT_EPROTO || rc == CHAT_ERANGE || rc == CHAT_ECRYPTO);
    CHECK(why != NULL && why[0] != '\0');
}

static bool
all_zero(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* An established pair, built the way client and server do it. ckx and skx
 * are the two kx keys of the transcript. */
struct pair {
    struct secure_session *c, *s;
    uint8_t ckx[SECURE_KX_BYTES], skx[SECURE_KX_BYTES];
};

static void
pair_make(struct pair *p)
{
    cJSON *req = NULL, *rep = NULL;
    const char *why = NULL;
    uint8_t pk[SECURE_PK_BYTES];

    memset(p, 0, sizeof(*p));
    CHECK(secure_client_start(&p->c, &req) == CHAT_OK);
    CHECK(!secure_established(p->c));
    CHECK(secure_server_accept(server_sk, req, &p->s, &rep, &why) == CHAT_OK);
    CHECK(why == NULL && secure_established(p->s));
    CHECK(secure_client_finish(p->c, rep, pk, &why) == CHAT_OK);
    CHECK(memcmp(pk, server_pk, sizeof(pk)) == 0);
    CHECK(secure_established(p->c));
    CHECK(b64_field(req, "kx", p->ckx, SECURE_KX_BYTES));
    CHECK(b64_field(rep, "kx", p->skx, SECURE_KX_BYTES));
    cJSON_Delete(req);
    cJSON_Delete(rep);
}

/* ---- the three JSON entries --------------------------------------------- */

static void
fuzz_accept(const cJSON *j)
{
    struct secure_session *s = (void *)1, *c = NULL;
    cJSON *rep = (void *)1, *req = NULL;
    const char *why = (void *)1;
    uint8_t pk[SECURE_PK_BYTES];
    int rc;

    rc = secure_server_accept(server_sk, j, &s, &rep, &why);
    if (rc != CHAT_OK) {
        check_err(rc, why);
        CHECK(s == NULL && rep == NULL);
        return;
    }
    CHECK(why == NULL && s != NULL && rep != NULL);
    CHECK(secure_established(s) && !secure_tx_finished(s) &&
          !secure_rx_finished(s));
    /* The request had a valid kx: the reply must satisfy a client whose
     * kx it is. We cannot be that client (no secret key), but the reply
     * must be well formed and carry our identity. */
    {
        uint8_t kx[SECURE_KX_BYTES], id[SECURE_PK_BYTES], sig[SECURE_SIG_BYTES];
        uint8_t ckx[SECURE_KX_BYTES];
        uint8_t t[sizeof(SECURE_CTX_SERVER) - 1 + 2 * SECURE_KX_BYTES];

        CHECK(b64_field(j, "kx", ckx, sizeof(ckx)));
        CHECK(b64_field(rep, "kx", kx, sizeof(kx)));
        CHECK(b64_field(rep, "identity", id, sizeof(id)));
        CHECK(b64_field(rep, "sig", sig, sizeof(sig)));
        CHECK(memcmp(id, server_pk, sizeof(id)) == 0);
        memcpy(t, SECURE_CTX_SERVER, sizeof(SECURE_CTX_SERVER) - 1);
        memcpy(t + sizeof(SECURE_CTX_SERVER) - 1, ckx, sizeof(ckx));
        memcpy(t + sizeof(SECURE_CTX_SERVER) - 1 + sizeof(ckx), kx, sizeof(kx));
        CHECK(crypto_sign_verify_detached(sig, t, sizeof(t), server_pk) == 0);
    }
    /* A fresh client can never finish with a reply made for another kx. */
    CHECK(secure_client_start(&c, &req) == CHAT_OK);
    {
        uint8_t ckx[SECURE_KX_BYTES], jkx[SECURE_KX_BYTES];

        CHECK(b64_field(req, "kx", ckx, sizeof(ckx)));
        CHECK(b64_field(j, "kx", jkx, sizeof(jkx)));
        rc = secure_client_finish(c, rep, pk, &why);
        if (memcmp(ckx, jkx, sizeof(ckx)) != 0)
            CHECK(rc == CHAT_ECRYPTO);
        else
            CHECK(rc == CHAT_OK && memcmp(pk, server_pk, sizeof(pk)) == 0);
    }
    secure_free(c);
    cJSON_Delete(req);
    secure_free(s);
    cJSON_Delete(rep);
}

static void
fuzz_finish(const cJSON *j)
{
    struct secure_session *c = NULL;
    cJSON *req = NULL;
    const char *why = (void *)1;
    uint8_t pk[SECURE_PK_BYTES], ckx[SECURE_KX_BYTES];
    uint8_t *out = (void *)1;
    size_t out_len = 1;
    int rc;

    CHECK(secure_client_start(&c, &req) == CHAT_OK);
    CHECK(b64_field(req, "kx", ckx, sizeof(ckx)));
    memset(pk, 0xa5, sizeof(pk));
    rc = secure_client_finish(c, j, pk, &why);
    if (rc != CHAT_OK) {
        check_err(rc, why);
        CHECK(all_zero(pk, sizeof(pk)));
        CHECK(!secure_established(c));
        CHECK(secure_seal(c, "{}", 2, false, &out, &out_len) == CHAT_EPROTO);
        CHECK(out == NULL && out_len == 0);
    } else {
        uint8_t kx[SECURE_KX_BYTES], id[SECURE_PK_BYTES], sig[SECURE_SIG_BYTES];
        uint8_t t[sizeof(SECURE_CTX_SERVER) - 1 + 2 * SECURE_KX_BYTES];
        const cJSON *v, *type;

        CHECK(why == NULL && secure_established(c));
        CHECK(cJSON_IsObject(j));
        v = cJSON_GetObjectItemCaseSensitive(j, "v");
        CHECK(cJSON_IsNumber(v) && v->valuedouble == SECURE_VERSION);
        type = cJSON_GetObjectItemCaseSensitive(j, "type");
        CHECK(type == NULL || (cJSON_IsString(type) &&
                               strcmp(type->valuestring, "secure") == 0));
        CHECK(b64_field(j, "kx", kx, sizeof(kx)));
        CHECK(b64_field(j, "identity", id, sizeof(id)));
        CHECK(b64_field(j, "sig", sig, sizeof(sig)));
        CHECK(memcmp(id, pk, sizeof(id)) == 0);
        memcpy(t, SECURE_CTX_SERVER, sizeof(SECURE_CTX_SERVER) - 1);
        memcpy(t + sizeof(SECURE_CTX_SERVER) - 1, ckx, sizeof(ckx));
        memcpy(t + sizeof(SECURE_CTX_SERVER) - 1 + sizeof(ckx), kx, sizeof(kx));
        if (crypto_sign_verify_detached(sig, t, sizeof(t), id) != 0) {
            fprintf(stderr, "client_finish accepted a bad signature\n");
            abort();
        }
        CHECK(secure_seal(c, "{}", 2, false, &out, &out_len) == CHAT_OK);
        CHECK(out_len == 2 + SECURE_OVERHEAD_MAX);
        g_free(out);
    }
    /* Used up, whatever happened. */
    CHECK(secure_client_finish(c, j, pk, &why) == CHAT_EPROTO);
    CHECK(why != NULL && all_zero(pk, sizeof(pk)));
    secure_free(c);
    cJSON_Delete(req);
}

static void
fuzz_hello(const struct pair *p, const cJSON *j)
{
    uint8_t pk[SECURE_PK_BYTES], id[SECURE_PK_BYTES], sig[SECURE_SIG_BYTES];
    uint8_t t[sizeof(SECURE_CTX_CLIENT) - 1 + 2 * SECURE_KX_BYTES +
              SECURE_PK_BYTES];
    const char *why = (void *)1;
    bool present = true, has;
    int rc;

    has = cJSON_IsObject(j) &&
          (cJSON_GetObjectItemCaseSensitive(j, "identity") != NULL ||
           cJSON_GetObjectItemCaseSensitive(j, "sig") != NULL);
    rc = secure_server_verify_hello(p->s, j, pk, &present, &why);
    if (rc != CHAT_OK) {
        check_err(rc, why);
        CHECK(rc != CHAT_ERANGE);
        CHECK(!present && all_zero(pk, sizeof(pk)));
        CHECK(!cJSON_IsObject(j) || has);
    } else if (!present) {
        CHECK(cJSON_IsObject(j) && !has);
        CHECK(all_zero(pk, sizeof(pk)));
    } else {
        CHECK(has);
        CHECK(b64_field(j, "identity", id, sizeof(id)));
        CHECK(b64_field(j, "sig", sig, sizeof(sig)));
        CHECK(memcmp(id, pk, sizeof(pk)) == 0);
        memcpy(t, SECURE_CTX_CLIENT, sizeof(SECURE_CTX_CLIENT) - 1);
        memcpy(t + sizeof(SECURE_CTX_CLIENT) - 1, p->ckx, SECURE_KX_BYTES);
        memcpy(t + sizeof(SECURE_CTX_CLIENT) - 1 + SECURE_KX_BYTES, p->skx,
               SECURE_KX_BYTES);
        memcpy(t + sizeof(SECURE_CTX_CLIENT) - 1 + 2 * SECURE_KX_BYTES,
               server_pk, SECURE_PK_BYTES);
        if (crypto_sign_verify_detached(sig, t, sizeof(t), id) != 0) {
            fprintf(stderr, "verify_hello accepted a bad signature\n");
            abort();
        }
    }
    /* Not a secure server session: fields are refused, never proven. */
    rc = secure_server_verify_hello(p->c, j, pk, &present, &why);
    CHECK(!present && all_zero(pk, sizeof(pk)));
    CHECK(rc == (has ? CHAT_EPROTO : cJSON_IsObject(j) ? CHAT_OK : CHAT_EPROTO));
    rc = secure_server_verify_hello(NULL, j, pk, &present, &why);
    CHECK(!present);
    CHECK(rc == (has ? CHAT_EPROTO : cJSON_IsObject(j) ? CHAT_OK : CHAT_EPROTO));

    /* The genuine proof always passes, even with the fuzzer's fields in
     * the hello. */
    if (cJSON_IsObject(j)) {
        cJSON *h = cJSON_Duplicate(j, true);

        CHECK(h != NULL);
        /* sign_hello replaces one "identity" and one "sig"; a client never
         * has duplicates, so drop the fuzzer's extra ones first. */
        while (cJSON_GetObjectItemCaseSensitive(h, "identity") != NULL)
            cJSON_DeleteItemFromObjectCaseSensitive(h, "identity");
        while (cJSON_GetObjectItemCaseSensitive(h, "sig") != NULL)
            cJSON_DeleteItemFromObjectCaseSensitive(h, "sig");
        CHECK(secure_client_sign_hello(p->c, client_id_sk, h) == CHAT_OK);
        CHECK(secure_server_verify_hello(p->s, h, pk, &present, &why) ==
              CHAT_OK);
        CHECK(present && memcmp(pk, client_id_pk, sizeof(pk)) == 0);
        CHECK(secure_client_sign_hello(p->s, client_id_sk, h) == CHAT_EPROTO);
        cJSON_Delete(h);
    }
}

/* ---- sealed frames ------------------------------------------------------ */

struct dir {
    struct secure_session *tx, *rx;
    bool rx_over; /* a failure or the final frame: nothing opens any more */
    bool tx_final;
    uint8_t *last; /* last frame sealed */
    size_t last_len;
};

static uint32_t
be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* The harness's own reading of doc/SECURE.md section 5: is pt a batch
 * (first byte 0x00) of one or more inner frames (4-byte length >= 1, then
 * that many bytes) that exactly fill it? */
static bool
batch_well_formed(const uint8_t *pt, size_t n)
{
    size_t off = 1;
    uint32_t l;

    if (n < 1 || pt[0] != 0 || n == 1)
        return false;
    while (off < n) {
        if (n - off < 4)
            return false;
        l = be32(pt + off);
        off += 4;
        if (l == 0 || l > n - off)
            return false;
        off += l;
    }
    return true;
}

/* Walk pt with secure_plain_next() and check what it gives against
 * batch_well_formed(). true for a well-formed batch: *msgs (g_free it)
 * then holds its *count messages, pointing into pt. */
static bool
plain_messages(const uint8_t *pt, size_t n, struct iovec **msgs, size_t *count)
{
    const uint8_t *msg = (const void *)1;
    size_t off = 0, len = 1, k = 0, at = 1;
    bool batch = n > 0 && pt[0] == 0, good = batch_well_formed(pt, n);
    int rc = secure_plain_next(pt, n, &off, &msg, &len);

    *msgs = NULL;
    *count = 0;
    if (n == 0) {
        CHECK(rc == CHAT_EAGAIN && msg == NULL && len == 0 && off == 0);
        return false;
    }
    if (!batch) {
        CHECK(rc == CHAT_OK && msg == pt && len == n && off == n);
        CHECK(secure_plain_next(pt, n, &off, &msg, &len) == CHAT_EAGAIN);
        return false;
    }
    if (!good) {
        /* Nothing of a malformed batch is ever handed out. */
        CHECK(rc == CHAT_EPROTO && msg == NULL && len == 0);
        return false;
    }
    *msgs = g_new0(struct iovec, (n - 1) / 5);
    while (rc == CHAT_OK) {
        CHECK(k < (n - 1) / 5);
        CHECK(len >= 1 && len == be32(pt + at) && msg == pt + at + 4);
        at += 4 + len;
        CHECK(off == at);
        (*msgs)[k].iov_base = (void *)(uintptr_t)msg;
        (*msgs)[k].iov_len = len;
        k++;
        rc = secure_plain_next(pt, n, &off, &msg, &len);
    }
    CHECK(rc == CHAT_EAGAIN && msg == NULL && len == 0 && at == n && k >= 1);
    CHECK(secure_batch_plain_len(*msgs, k) == n);
    *count = k;
    return true;
}

/* Seal plain as the next frame of d: with secure_seal_batch() when it is a
 * well-formed batch (which must give what secure_seal() would), else with
 * secure_seal(). Same contract as secure_seal(). */
static int
seal_plain(struct dir *d, const uint8_t *plain, size_t n, bool final,
           uint8_t **sealed, size_t *sealed_len)
{
    struct iovec *msgs = NULL;
    size_t count = 0, want;
    int rc;

    if (!plain_messages(plain, n, &msgs, &count))
        return secure_seal(d->tx, plain, n, final, sealed, sealed_len);
    want = secure_batch_sealed_len(d->tx, msgs, count);
    CHECK(want == secure_sealed_len(d->tx, n));
    *sealed = g_malloc(want);
    rc = secure_seal_batch(d->tx, msgs, count, final, NULL, *sealed, want,
                           sealed_len);
    if (rc != CHAT_OK) {
        CHECK(*sealed_len == 0);
        g_free(*sealed);
        *sealed = NULL;
    } else {
        CHECK(*sealed_len == want);
    }
    g_free(msgs);
    return rc;
}

/* An opened plaintext: walk its messages (plain_messages() checks them). */
static void
check_plain(const uint8_t *pt, size_t n)
{
    struct iovec *msgs = NULL;
    size_t count = 0;

    (void)plain_messages(pt, n, &msgs, &count);
    g_free(msgs);
}

static void
open_expect_fail(struct dir *d, const uint8_t *in, size_t n)
{
    uint8_t *out = (void *)1;
    size_t out_len = 1;
    bool final = true;
    int rc = secure_open(d->rx, in, n, &out, &out_len, &final);

    if (rc == CHAT_OK) {
        fprintf(stderr, "a replayed or altered frame of %zu bytes opened\n", n);
        abort();
    }
    CHECK(rc == CHAT_ECRYPTO);
    CHECK(out == NULL && out_len == 0 && !final);
    d->rx_over = true;
}

static void
seal_and_open(struct dir *d, const uint8_t *plain, size_t n, bool final)
{
    uint8_t *sealed = (void *)1, *out = NULL;
    size_t sealed_len = 1, out_len = 0, want;
    bool got_final = false;
    int rc;

    want = secure_sealed_len(d->tx, n);
    rc = seal_plain(d, plain, n, final, &sealed, &sealed_len);
    if (d->tx_final) {
        CHECK(rc == CHAT_EPROTO && sealed == NULL && sealed_len == 0);
        return;
    }
    CHECK(rc == CHAT_OK && sealed != NULL && sealed_len == want);
    CHECK(want == n + SECURE_ABYTES ||
          want == n + SECURE_ABYTES + SECURE_HEADER_BYTES);
    if (final) {
        d->tx_final = true;
        CHECK(secure_tx_finished(d->tx));
    }
    rc = secure_open(d->rx, sealed, sealed_len, &out, &out_len, &got_final);
    if (d->rx_over) {
        CHECK(rc == CHAT_ECRYPTO && out == NULL);
    } else {
        CHECK(rc == CHAT_OK && out != NULL);
        CHECK(out_len == n && memcmp(out, plain, n) == 0 && out[n] == '\0');
        CHECK(got_final == final);
        check_plain(out, out_len);
        if (final) {
            CHECK(secure_rx_finished(d->rx));
            d->rx_over = true;
        }
        g_free(out);
    }
    g_free(d->last);
    d->last = sealed;
    d->last_len = sealed_len;
}

static void
open_raw(struct dir *d, const uint8_t *in, size_t n)
{
    uint8_t *out = (void *)1, *again = NULL;
    size_t out_len = 1, again_len = 0;
    bool final = true;
    int rc = secure_open(d->rx, in, n, &out, &out_len, &final);

    if (rc != CHAT_OK) {
        CHECK(rc == CHAT_ECRYPTO);
        CHECK(out == NULL && out_len == 0 && !final);
        d->rx_over = true;
        return;
    }
    if (d->rx_over) {
        fprintf(stderr, "a frame opened after the direction ended\n");
        abort();
    }
    CHECK(out != NULL && out[out_len] == '\0');
    check_plain(out, out_len);
    /* It was genuine: the sender seals exactly these bytes next. */
    CHECK(!d->tx_final);
    CHECK(seal_plain(d, out, out_len, final, &again, &again_len) == CHAT_OK);
    if (again_len != n || memcmp(again, in, n) != 0) {
        fprintf(stderr, "a frame the sender did not seal opened\n");
        abort();
    }
    if (final) {
        d->tx_final = d->rx_over = true;
        CHECK(secure_rx_finished(d->rx));
    }
    g_free(d->last);
    d->last = again;
    d->last_len = again_len;
    g_free(out);
}

static void
fuzz_frames(struct pair *p, const uint8_t *data, size_t size)
{
    struct dir dirs[2];
    size_t i = 0;

    memset(dirs, 0, sizeof(dirs));
    dirs[0].tx = p->c;
    dirs[0].rx = p->s;
    dirs[1].tx = p->s;
    dirs[1].rx = p->c;
    while (i < size) {
        uint8_t r = data[i++];
        struct dir *d = &dirs[r & 1];
        size_t len;

        if (r & 0x80) {
            if (i >= size)
                break;
            len = data[i++];
            if (len > size - i)
                len = size - i;
            seal_and_open(d, data + i, len, (r & 0x40) != 0);
            i += len;
        } else if (r & 0x40) {
            size_t at;
            uint8_t x;

            if (size - i < 3)
                break;
            at = (size_t)data[i] << 8 | data[i + 1];
            x = data[i + 2];
            i += 3;
            if (d->last == NULL)
                continue;
            if (x != 0 && d->last_len > 0)
                d->last[at % d->last_len] ^= x;
            open_expect_fail(d, d->last, d->last_len);
        } else {
            if (size - i < 2)
                break;
            len = (size_t)data[i] << 8 | data[i + 1];
            i += 2;
            if (len > size - i)
                len = size - i;
            open_raw(d, data + i, len);
            i += len;
        }
        /* A direction that is over stays over. */
        if (d->rx_over) {
            uint8_t *out = (void *)1;
            size_t out_len = 1;
            bool final = true;

            CHECK(secure_open(d->rx, (const uint8_t *)"x", 1, &out, &out_len,
                              &final) == CHAT_ECRYPTO);
            CHECK(out == NULL && out_len == 0 && !final);
        }
    }
    g_free(dirs[0].last);
    g_free(dirs[1].last);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pair p;
    cJSON *j = NULL;
    const char *end = NULL;
    const uint8_t *rest;
    size_t rest_len;

    if (size < 1)
        return 0;
    rng_ctr = 0;
    pair_make(&p);
    if (data[0] & 1)
        j = cJSON_ParseWithLengthOpts((const char *)data + 1, size - 1, &end,
                                      false);
    data++;
    size--;
    if (j != NULL && end >= (const char *)data &&
        end <= (const char *)data + size) {
        rest = (const uint8_t *)end;
        rest_len = size - (size_t)(rest - data);
    } else {
        rest = data;
        rest_len = size;
    }
    if (j != NULL) {
        fuzz_accept(j);
        fuzz_finish(j);
        fuzz_hello(&p, j);
    }
    fuzz_frames(&p, rest, rest_len);
    cJSON_Delete(j);
    secure_free(p.c);
    secure_free(p.s);
    return 0;
}
