/* test_secure.c - common/secure.c through secure.h: the handshake, sealed
 * frames, the client identity proof (doc/SECURE.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>
#include <sodium.h>

#include "err.h"
#include "secure.h"

#define B64 sodium_base64_VARIANT_ORIGINAL
#define PING "{\"type\":\"ping\",\"token\":\"k1\"}"

/* The server's long-term key, made once for the whole run. */
static uint8_t server_pk[SECURE_PK_BYTES];
static uint8_t server_sk[SECURE_SK_BYTES];

static int
group_setup(void **state)
{
    (void)state;
    crypto_sign_keypair(server_pk, server_sk);
    return 0;
}

/* xorshift32: a fixed, portable pseudo-random sequence. */
static uint32_t
rng_next(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* What the wire does to a handshake message: print it, parse it back. */
static cJSON *
wire(const cJSON *m)
{
    char *text = cJSON_PrintUnformatted(m);
    cJSON *back;

    assert_non_null(text);
    back = cJSON_ParseWithLength(text, strlen(text));
    assert_non_null(back);
    cJSON_free(text);
    return back;
}

static char *
b64_of(const uint8_t *bin, size_t n)
{
    size_t sz = sodium_base64_ENCODED_LEN(n, B64);
    char *s = g_malloc(sz);

    sodium_bin2base64(s, sz, bin, n, B64);
    return s;
}

static void
b64_decode(const cJSON *obj, const char *name, uint8_t *out, size_t n)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    size_t got = 0;

    assert_true(cJSON_IsString(f));
    assert_int_equal(sodium_base642bin(out, n, f->valuestring,
                                       strlen(f->valuestring), NULL, &got, NULL,
                                       B64),
                     0);
    assert_int_equal(got, n);
}

static void
set_str(cJSON *obj, const char *name, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
    assert_non_null(cJSON_AddStringToObject(obj, name, value));
}

static void
set_b64(cJSON *obj, const char *name, const uint8_t *bin, size_t n)
{
    char *s = b64_of(bin, n);

    set_str(obj, name, s);
    g_free(s);
}

/* Replace field name of obj by the JSON value json (NULL: remove it). */
static void
set_json(cJSON *obj, const char *name, const char *json)
{
    cJSON *v;

    cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
    if (json == NULL)
        return;
    v = cJSON_Parse(json);
    assert_non_null(v);
    cJSON_AddItemToObject(obj, name, v);
}

/* A client and a server session after a handshake over the "wire". */
struct pair {
    struct secure_session *c;
    struct secure_session *s;
};

static void
pair_new(struct pair *p)
{
    cJSON *req = NULL, *rep = NULL, *wreq, *wrep;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why = "x";

    assert_int_equal(secure_client_start(&p->c, &req), CHAT_OK);
    wreq = wire(req);
    assert_int_equal(secure_server_accept(server_sk, wreq, &p->s, &rep, &why),
                     CHAT_OK);
    assert_null(why);
    wrep = wire(rep);
    assert_int_equal(secure_client_finish(p->c, wrep, pk, &why), CHAT_OK);
    assert_null(why);
    assert_memory_equal(pk, server_pk, sizeof(pk));
    cJSON_Delete(req);
    cJSON_Delete(rep);
    cJSON_Delete(wreq);
    cJSON_Delete(wrep);
}

static void
pair_free(struct pair *p)
{
    secure_free(p->c);
    secure_free(p->s);
    p->c = p->s = NULL;
}

static void
seal_ok(struct secure_session *s, const char *text, bool final, uint8_t **out,
        size_t *len)
{
    size_t want = secure_sealed_len(s, strlen(text));

    assert_int_equal(secure_seal(s, text, strlen(text), final, out, len),
                     CHAT_OK);
    assert_int_equal(*len, want);
}

static void
open_expect(struct secure_session *s, const uint8_t *in, size_t n,
            const char *text, bool final)
{
    uint8_t *out = NULL;
    size_t len = 0;
    bool fin = !final;

    assert_int_equal(secure_open(s, in, n, &out, &len, &fin), CHAT_OK);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(out, text, len);
    assert_int_equal(out[len], '\0');
    assert_int_equal(fin, final);
    g_free(out);
}

/* Something that is not NULL, to see out-params cleared. */
static uint8_t poison[1];

static void
open_fails(struct secure_session *s, const uint8_t *in, size_t n)
{
    uint8_t *out = poison;
    size_t len = 99;
    bool fin = true;

    assert_int_equal(secure_open(s, in, n, &out, &len, &fin), CHAT_ECRYPTO);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_false(fin);
}

/* ---- a hand-made server, to send what secure.c never would ----------- */

struct raw_server {
    uint8_t kx_pk[crypto_kx_PUBLICKEYBYTES];
    uint8_t kx_sk[crypto_kx_SECRETKEYBYTES];
    uint8_t rx[crypto_kx_SESSIONKEYBYTES];
    uint8_t tx[crypto_kx_SESSIONKEYBYTES];
    uint8_t header[SECURE_HEADER_BYTES];
    crypto_secretstream_xchacha20poly1305_state push;
    bool header_sent;
};

/* Answer request as a server would, but signing ctx || a || b (where a and
 * b are the client's and the server's kx, swapped if swap) with sign_sk. */
static cJSON *
raw_reply(struct raw_server *r, const cJSON *request, const uint8_t *sign_sk,
          const char *ctx, bool swap)
{
    uint8_t ckx[SECURE_KX_BYTES], pk[SECURE_PK_BYTES], sig[SECURE_SIG_BYTES];
    uint8_t t[64 + 2 * SECURE_KX_BYTES];
    size_t clen = strlen(ctx);
    cJSON *rep = cJSON_CreateObject();

    assert_true(clen <= 64);
    b64_decode(request, "kx", ckx, sizeof(ckx));
    crypto_kx_keypair(r->kx_pk, r->kx_sk);
    assert_int_equal(
        crypto_kx_server_session_keys(r->rx, r->tx, r->kx_pk, r->kx_sk, ckx),
        0);
    crypto_secretstream_xchacha20poly1305_init_push(&r->push, r->header, r->tx);
    r->header_sent = false;
    memcpy(t, ctx, clen);
    memcpy(t + clen, swap ? r->kx_pk : ckx, SECURE_KX_BYTES);
    memcpy(t + clen + SECURE_KX_BYTES, swap ? ckx : r->kx_pk, SECURE_KX_BYTES);
    crypto_sign_detached(sig, NULL, t, clen + 2 * SECURE_KX_BYTES, sign_sk);
    crypto_sign_ed25519_sk_to_pk(pk, sign_sk);
    set_str(rep, "type", "secure");
    assert_non_null(cJSON_AddNumberToObject(rep, "v", 1));
    set_b64(rep, "kx", r->kx_pk, SECURE_KX_BYTES);
    set_b64(rep, "identity", pk, sizeof(pk));
    set_b64(rep, "sig", sig, sizeof(sig));
    return rep;
}

static uint8_t *
raw_push(struct raw_server *r, const char *text, unsigned char tag, size_t *len)
{
    size_t n = strlen(text);
    size_t o = r->header_sent ? 0 : SECURE_HEADER_BYTES;
    uint8_t *out = g_malloc(o + n + SECURE_ABYTES);

    memcpy(out, r->header, o);
    crypto_secretstream_xchacha20poly1305_push(
        &r->push, out + o, NULL, (const uint8_t *)text, n, NULL, 0, tag);
    r->header_sent = true;
    *len = o + n + SECURE_ABYTES;
    return out;
}

/* A client whose handshake with a raw server went through. */
static struct secure_session *
raw_pair(struct raw_server *r)
{
    struct secure_session *c = NULL;
    cJSON *req = NULL, *rep;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why;

    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    rep = raw_reply(r, req, server_sk, SECURE_CTX_SERVER, false);
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_OK);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    return c;
}

/* ---- handshake ------------------------------------------------------ */

static void
test_secure_messages_have_the_documented_shape(void **state)
{
    struct secure_session *c = NULL, *s = NULL;
    cJSON *req = NULL, *rep = NULL;
    uint8_t kx[SECURE_KX_BYTES], id[SECURE_PK_BYTES], sig[SECURE_SIG_BYTES];
    const cJSON *f;
    const char *why;

    (void)state;
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    assert_false(secure_established(c));
    f = cJSON_GetObjectItemCaseSensitive(req, "type");
    assert_string_equal(cJSON_GetStringValue(f), "secure");
    f = cJSON_GetObjectItemCaseSensitive(req, "v");
    assert_true(cJSON_IsNumber(f) && f->valuedouble == 1.0);
    f = cJSON_GetObjectItemCaseSensitive(req, "kx");
    assert_int_equal(strlen(cJSON_GetStringValue(f)), 44);
    b64_decode(req, "kx", kx, sizeof(kx));
    assert_int_equal(cJSON_GetArraySize(req), 3);

    assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                     CHAT_OK);
    assert_true(secure_established(s));
    f = cJSON_GetObjectItemCaseSensitive(rep, "type");
    assert_string_equal(cJSON_GetStringValue(f), "secure");
    b64_decode(rep, "kx", kx, sizeof(kx));
    b64_decode(rep, "identity", id, sizeof(id));
    assert_memory_equal(id, server_pk, sizeof(id));
    b64_decode(rep, "sig", sig, sizeof(sig));
    assert_int_equal(cJSON_GetArraySize(rep), 5);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
    secure_free(s);
}

static void
test_secure_handshake_and_traffic_both_ways(void **state)
{
    const char *up[] = {"{\"type\":\"hello\",\"version\":1,\"nick\":\"ann\"}",
                        "{\"type\":\"join\",\"room\":\"#x\"}",
                        "{\"type\":\"say\",\"room\":\"#x\",\"text\":\"hi\"}"};
    const char *down[] = {"{\"type\":\"welcome\"}", "{\"type\":\"room\"}",
                          "{\"type\":\"message\",\"text\":\"hi\"}"};
    struct pair p;
    uint8_t *f = NULL;
    size_t len, i;

    (void)state;
    pair_new(&p);
    for (i = 0; i < 3; i++) {
        /* The first frame carries the 24-byte stream header. */
        assert_int_equal(secure_sealed_len(p.c, 10),
                         10 + SECURE_ABYTES +
                             (i == 0 ? SECURE_HEADER_BYTES : 0));
        seal_ok(p.c, up[i], false, &f, &len);
        open_expect(p.s, f, len, up[i], false);
        g_free(f);
        seal_ok(p.s, down[i], false, &f, &len);
        open_expect(p.c, f, len, down[i], false);
        g_free(f);
    }
    assert_false(secure_rx_finished(p.c));
    assert_false(secure_tx_finished(p.c));
    pair_free(&p);
}

static void
test_secure_server_speaks_first(void **state)
{
    struct pair p;
    uint8_t *f1 = NULL, *f2 = NULL;
    size_t l1, l2;

    (void)state;
    pair_new(&p);
    /* Each direction is its own stream: order between them is free. */
    seal_ok(p.s, "{\"type\":\"ping\"}", false, &f1, &l1);
    seal_ok(p.c, PING, false, &f2, &l2);
    open_expect(p.c, f1, l1, "{\"type\":\"ping\"}", false);
    open_expect(p.s, f2, l2, PING, false);
    g_free(f1);
    g_free(f2);
    pair_free(&p);
}

static void
test_secure_final_is_delivered_then_nothing(void **state)
{
    struct pair p;
    uint8_t *q = NULL, *b = NULL, *x = NULL;
    size_t ql, bl, xl = 7;

    (void)state;
    pair_new(&p);
    seal_ok(p.c, "{\"type\":\"quit\"}", true, &q, &ql);
    assert_true(secure_tx_finished(p.c));
    /* Nothing can be sealed after our own TAG_FINAL. */
    assert_int_equal(secure_seal(p.c, "{}", 2, false, &x, &xl), CHAT_EPROTO);
    assert_null(x);
    assert_int_equal(xl, 0);
    open_expect(p.s, q, ql, "{\"type\":\"quit\"}", true);
    assert_true(secure_rx_finished(p.s));
    /* The server still answers, and ends its own stream. */
    seal_ok(p.s, "{\"type\":\"bye\"}", true, &b, &bl);
    open_expect(p.c, b, bl, "{\"type\":\"bye\"}", true);
    assert_true(secure_rx_finished(p.c));
    /* A replay of the final frame, after it, is refused. */
    open_fails(p.s, q, ql);
    open_fails(p.c, b, bl);
    g_free(q);
    g_free(b);
    pair_free(&p);
}

static void
test_secure_frame_after_final_refused(void **state)
{
    struct raw_server r;
    struct secure_session *c;
    uint8_t *f;
    size_t len;

    (void)state;
    c = raw_pair(&r);
    f = raw_push(&r, "{\"a\":1}",
                 crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &len);
    open_expect(c, f, len, "{\"a\":1}", false);
    g_free(f);
    f = raw_push(&r, "{\"a\":2}",
                 crypto_secretstream_xchacha20poly1305_TAG_FINAL, &len);
    open_expect(c, f, len, "{\"a\":2}", true);
    g_free(f);
    /* A well-formed, authentic frame that follows TAG_FINAL. */
    f = raw_push(&r, "{\"a\":3}",
                 crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &len);
    open_fails(c, f, len);
    g_free(f);
    secure_free(c);
}

static void
test_secure_tags_other_than_message_final_refused(void **state)
{
    const unsigned char tags[] = {
        crypto_secretstream_xchacha20poly1305_TAG_PUSH,
        crypto_secretstream_xchacha20poly1305_TAG_REKEY,
        0x04, /* tag bytes libsodium does not define */
        0x80};
    struct raw_server r;
    struct secure_session *c;
    uint8_t *f;
    size_t len, i;

    (void)state;
    for (i = 0; i < sizeof(tags); i++) {
        c = raw_pair(&r);
        f = raw_push(&r, "{}", tags[i], &len);
        open_fails(c, f, len);
        g_free(f);
        secure_free(c);
    }
}

static void
test_secure_bad_signature(void **state)
{
    const size_t bits[] = {0, 7, 255, 256, 511};
    struct secure_session *c = NULL, *s = NULL;
    cJSON *req = NULL, *rep = NULL;
    uint8_t sig[SECURE_SIG_BYTES], pk[SECURE_PK_BYTES];
    const char *why;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
        assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                         CHAT_OK);
        b64_decode(rep, "sig", sig, sizeof(sig));
        sig[bits[i] / 8] ^= (uint8_t)(1u << (bits[i] % 8));
        set_b64(rep, "sig", sig, sizeof(sig));
        memset(pk, 0xaa, sizeof(pk));
        assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_ECRYPTO);
        assert_non_null(why);
        assert_false(secure_established(c));
        assert_true(sodium_is_zero(pk, sizeof(pk)));
        cJSON_Delete(req);
        cJSON_Delete(rep);
        secure_free(c);
        secure_free(s);
    }
}

static void
test_secure_wrong_context_refused(void **state)
{
    static const struct {
        const char *ctx;
        bool swap;
    } cases[] = {
        {"sockchat secure v2 server", false},
        {SECURE_CTX_CLIENT, false},
        {"", false},
        {"sockchat secure v1 server\n", false},
        {"sockchat secure v1", false},
        {SECURE_CTX_SERVER, true}, /* the two keys in the wrong order */
    };
    struct raw_server r;
    struct secure_session *c = NULL;
    cJSON *req = NULL, *rep;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
        rep = raw_reply(&r, req, server_sk, cases[i].ctx, cases[i].swap);
        assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_ECRYPTO);
        cJSON_Delete(req);
        cJSON_Delete(rep);
        secure_free(c);
    }
    /* The control: the right context passes with the same helper. */
    c = raw_pair(&r);
    assert_true(secure_established(c));
    secure_free(c);
}

static void
test_secure_server_identity_changed(void **state)
{
    uint8_t other_pk[SECURE_PK_BYTES], other_sk[SECURE_SK_BYTES];
    uint8_t pk[SECURE_PK_BYTES];
    struct raw_server r;
    struct secure_session *c = NULL, *s = NULL;
    cJSON *req = NULL, *rep = NULL;
    const char *why;

    (void)state;
    crypto_sign_keypair(other_pk, other_sk);
    /* Another identity put on a reply signed by the real key. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                     CHAT_OK);
    set_b64(rep, "identity", other_pk, sizeof(other_pk));
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_ECRYPTO);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
    secure_free(s);

    /* A server that signs consistently with another key gets through the
     * handshake: the known-servers file is what must catch it, so finish
     * must hand back that other key. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    rep = raw_reply(&r, req, other_sk, SECURE_CTX_SERVER, false);
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_OK);
    assert_memory_equal(pk, other_pk, sizeof(pk));
    assert_memory_not_equal(pk, server_pk, sizeof(pk));
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
}

static void
test_secure_substituted_kx_refused(void **state)
{
    uint8_t mitm_pk[SECURE_KX_BYTES], mitm_sk[crypto_kx_SECRETKEYBYTES];
    uint8_t pk[SECURE_PK_BYTES];
    struct secure_session *c = NULL, *s = NULL;
    cJSON *req = NULL, *rep = NULL;
    const char *why;

    (void)state;
    crypto_kx_keypair(mitm_pk, mitm_sk);
    /* The server's kx replaced in the reply. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                     CHAT_OK);
    set_b64(rep, "kx", mitm_pk, sizeof(mitm_pk));
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_ECRYPTO);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
    secure_free(s);
    /* The client's kx replaced in the request: the server signs the
     * attacker's key, which the client does not accept. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    set_b64(req, "kx", mitm_pk, sizeof(mitm_pk));
    assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                     CHAT_OK);
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_ECRYPTO);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
    secure_free(s);
}

static void
test_secure_zero_kx_refused(void **state)
{
    uint8_t zero[SECURE_KX_BYTES] = {0};
    uint8_t pk[SECURE_PK_BYTES];
    struct secure_session *c = NULL, *s = (struct secure_session *)&s;
    cJSON *req = NULL, *rep = (cJSON *)&rep;
    struct raw_server r;
    const char *why = NULL;

    (void)state;
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    set_b64(req, "kx", zero, sizeof(zero));
    assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                     CHAT_ECRYPTO);
    assert_null(s);
    assert_null(rep);
    assert_non_null(why);
    cJSON_Delete(req);
    secure_free(c);

    /* A properly signed zero key from the server: no shared secret. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    rep = raw_reply(&r, req, server_sk, SECURE_CTX_SERVER, false);
    cJSON_Delete(rep);
    memset(r.kx_pk, 0, sizeof(r.kx_pk));
    {
        uint8_t t[sizeof(SECURE_CTX_SERVER) - 1 + 2 * SECURE_KX_BYTES];
        uint8_t ckx[SECURE_KX_BYTES], sig[SECURE_SIG_BYTES];
        size_t cl = sizeof(SECURE_CTX_SERVER) - 1;

        b64_decode(req, "kx", ckx, sizeof(ckx));
        memcpy(t, SECURE_CTX_SERVER, cl);
        memcpy(t + cl, ckx, sizeof(ckx));
        memcpy(t + cl + sizeof(ckx), zero, sizeof(zero));
        crypto_sign_detached(sig, NULL, t, sizeof(t), server_sk);
        rep = cJSON_CreateObject();
        set_str(rep, "type", "secure");
        set_json(rep, "v", "1");
        set_b64(rep, "kx", zero, sizeof(zero));
        set_b64(rep, "identity", server_pk, sizeof(server_pk));
        set_b64(rep, "sig", sig, sizeof(sig));
    }
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_ECRYPTO);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
}

/* Bad values for a field holding base64 of want bytes. g_free each. */
static GPtrArray *
bad_b64_values(size_t want)
{
    GPtrArray *v = g_ptr_array_new_with_free_func(g_free);
    uint8_t bin[128];
    char *s;
    size_t i;

    for (i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 37 + 11);
    g_ptr_array_add(v, g_strdup("1"));
    g_ptr_array_add(v, g_strdup("true"));
    g_ptr_array_add(v, g_strdup("null"));
    g_ptr_array_add(v, g_strdup("[]"));
    g_ptr_array_add(v, g_strdup("{}"));
    g_ptr_array_add(v, g_strdup("\"\""));
    g_ptr_array_add(v, g_strdup("\"!!!!\""));
    /* One byte short, one byte long, twice as long, empty. */
    s = b64_of(bin, want - 1);
    g_ptr_array_add(v, g_strdup_printf("\"%s\"", s));
    g_free(s);
    s = b64_of(bin, want + 1);
    g_ptr_array_add(v, g_strdup_printf("\"%s\"", s));
    g_free(s);
    s = b64_of(bin, want * 2);
    g_ptr_array_add(v, g_strdup_printf("\"%s\"", s));
    g_free(s);
    s = b64_of(bin, want);
    /* Without its padding; with padding in the middle; with a space; with
     * the URL-safe alphabet; with a trailing junk byte; non-canonical last
     * character (bits that base64 leaves unused are set). */
    g_ptr_array_add(v, g_strdup_printf("\"%.*s\"", (int)(strlen(s) - 1), s));
    g_ptr_array_add(v, g_strdup_printf("\"=%.*s\"", (int)(strlen(s) - 1), s));
    g_ptr_array_add(v, g_strdup_printf("\" %.*s\"", (int)(strlen(s) - 1), s));
    {
        char *u = g_strdup(s);

        u[0] = '-';
        u[1] = '_';
        g_ptr_array_add(v, g_strdup_printf("\"%s\"", u));
        g_free(u);
    }
    g_ptr_array_add(v, g_strdup_printf("\"%sA\"", s));
    {
        char *u = g_strdup(s);
        char *eq = strchr(u, '=');

        assert_non_null(eq);
        /* 'A' -> 'B' sets a bit that padding says must be zero; for other
         * letters flip to one that keeps the high bits. */
        eq[-1] = (char)(eq[-1] == 'A' ? 'B' : eq[-1] ^ 1);
        g_ptr_array_add(v, g_strdup_printf("\"%s\"", u));
        g_free(u);
    }
    g_free(s);
    s = g_malloc(20001);
    memset(s, 'A', 20000);
    s[20000] = '\0';
    g_ptr_array_add(v, g_strdup_printf("\"%s\"", s));
    g_free(s);
    return v;
}

static void
expect_accept_fails(const cJSON *req, int code)
{
    struct secure_session *s = (struct secure_session *)&s;
    cJSON *rep = (cJSON *)&rep;
    const char *why = NULL;
    char *text = req != NULL ? cJSON_PrintUnformatted(req) : NULL;
    int rc;

    rc = secure_server_accept(server_sk, req, &s, &rep, &why);
    if (rc != code)
        print_error("request %s: got %d want %d\n", text, rc, code);
    assert_int_equal(rc, code);
    assert_null(s);
    assert_null(rep);
    assert_non_null(why);
    cJSON_free(text);
}

static void
test_secure_malformed_request_refused(void **state)
{
    static const struct {
        const char *json;
        int code;
    } whole[] = {
        {"[]", CHAT_EPROTO}, {"\"secure\"", CHAT_EPROTO},
        {"1", CHAT_EPROTO},  {"null", CHAT_EPROTO},
        {"{}", CHAT_EPROTO}, {"{\"type\":\"secure\"}", CHAT_EPROTO},
    };
    static const struct {
        const char *field;
        const char *json; /* NULL: removed */
        int code;
    } fields[] = {
        {"v", NULL, CHAT_EPROTO},
        {"v", "\"1\"", CHAT_EPROTO},
        {"v", "true", CHAT_EPROTO},
        {"v", "null", CHAT_EPROTO},
        {"v", "[1]", CHAT_EPROTO},
        {"v", "{}", CHAT_EPROTO},
        {"v", "2", CHAT_ERANGE},
        {"v", "0", CHAT_ERANGE},
        {"v", "1.5", CHAT_ERANGE},
        {"v", "-1", CHAT_ERANGE},
        {"v", "1e300", CHAT_ERANGE},
        {"kx", NULL, CHAT_EPROTO},
        {"type", "\"hello\"", CHAT_EPROTO},
        {"type", "1", CHAT_EPROTO},
        {"type", "null", CHAT_EPROTO},
    };
    struct secure_session *c = NULL;
    cJSON *req = NULL, *m;
    GPtrArray *bad;
    size_t i;

    (void)state;
    expect_accept_fails(NULL, CHAT_EPROTO);
    for (i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        m = cJSON_Parse(whole[i].json);
        assert_non_null(m);
        expect_accept_fails(m, whole[i].code);
        cJSON_Delete(m);
    }
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        m = cJSON_Duplicate(req, 1);
        set_json(m, fields[i].field, fields[i].json);
        expect_accept_fails(m, fields[i].code);
        cJSON_Delete(m);
    }
    bad = bad_b64_values(SECURE_KX_BYTES);
    for (i = 0; i < bad->len; i++) {
        m = cJSON_Duplicate(req, 1);
        set_json(m, "kx", g_ptr_array_index(bad, i));
        expect_accept_fails(m, CHAT_EPROTO);
        cJSON_Delete(m);
    }
    g_ptr_array_free(bad, TRUE);
    /* Without "type" (the server dispatched on it already) it is fine, and
     * so are unknown fields. */
    m = cJSON_Duplicate(req, 1);
    set_json(m, "type", NULL);
    set_json(m, "extra", "{\"a\":[1,2]}");
    {
        struct secure_session *s = NULL;
        cJSON *rep = NULL;
        const char *why;

        assert_int_equal(secure_server_accept(server_sk, m, &s, &rep, &why),
                         CHAT_OK);
        cJSON_Delete(rep);
        secure_free(s);
    }
    cJSON_Delete(m);
    cJSON_Delete(req);
    secure_free(c);
}

/* A fresh client and a valid reply for it; mutate the reply and finish. */
static void
expect_finish_fails(const char *field, const char *json, int code)
{
    struct secure_session *c = NULL, *s = NULL;
    cJSON *req = NULL, *rep = NULL;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why = NULL;
    int rc;

    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                     CHAT_OK);
    set_json(rep, field, json);
    rc = secure_client_finish(c, rep, pk, &why);
    if (rc != code)
        print_error("reply field %s = %s: got %d want %d\n", field,
                    json != NULL ? json : "(removed)", rc, code);
    assert_int_equal(rc, code);
    assert_non_null(why);
    assert_false(secure_established(c));
    /* The handshake is used up: a correct reply is not accepted now. */
    set_json(rep, field, NULL);
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_EPROTO);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
    secure_free(s);
}

static void
test_secure_malformed_reply_refused(void **state)
{
    static const char *const b64_fields[] = {"kx", "identity", "sig"};
    static const size_t b64_len[] = {SECURE_KX_BYTES, SECURE_PK_BYTES,
                                     SECURE_SIG_BYTES};
    struct secure_session *c = NULL;
    cJSON *req = NULL, *m;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why;
    GPtrArray *bad;
    size_t f, i;

    (void)state;
    expect_finish_fails("v", NULL, CHAT_EPROTO);
    expect_finish_fails("v", "\"1\"", CHAT_EPROTO);
    expect_finish_fails("v", "2", CHAT_ERANGE);
    expect_finish_fails("type", "\"error\"", CHAT_EPROTO);
    expect_finish_fails("type", "[]", CHAT_EPROTO);
    for (f = 0; f < 3; f++) {
        expect_finish_fails(b64_fields[f], NULL, CHAT_EPROTO);
        bad = bad_b64_values(b64_len[f]);
        for (i = 0; i < bad->len; i++)
            expect_finish_fails(b64_fields[f], g_ptr_array_index(bad, i),
                                CHAT_EPROTO);
        g_ptr_array_free(bad, TRUE);
    }
    /* Not an object at all, or the server's plain error. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    assert_int_equal(secure_client_finish(c, NULL, pk, &why), CHAT_EPROTO);
    secure_free(c);
    cJSON_Delete(req);
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    m = cJSON_Parse("{\"type\":\"error\",\"code\":\"unknown_type\","
                    "\"message\":\"no\",\"request\":\"secure\"}");
    assert_int_equal(secure_client_finish(c, m, pk, &why), CHAT_EPROTO);
    cJSON_Delete(m);
    secure_free(c);
    cJSON_Delete(req);
}

/* Random JSON values, nested a little, for the fields the parser reads. */
static cJSON *
random_value(uint32_t *rng, int depth)
{
    uint8_t bin[80] = {0};
    char *s;
    cJSON *v;
    uint32_t k = rng_next(rng) % 9, i, n;

    switch (k) {
    case 0:
        return cJSON_CreateNumber((double)(int32_t)rng_next(rng) / 4.0);
    case 1:
        return cJSON_CreateBool(rng_next(rng) & 1);
    case 2:
        return cJSON_CreateNull();
    case 3:
    case 4:
        n = rng_next(rng) % sizeof(bin);
        for (i = 0; i < n; i++)
            bin[i] = (uint8_t)rng_next(rng);
        s = b64_of(bin, n);
        if (k == 4 && n > 0)
            s[rng_next(rng) % strlen(s)] = (char)(rng_next(rng) % 94 + 33);
        v = cJSON_CreateString(s);
        g_free(s);
        return v;
    case 5:
        return cJSON_CreateNumber(1);
    case 6:
        v = cJSON_CreateArray();
        if (depth < 3)
            cJSON_AddItemToArray(v, random_value(rng, depth + 1));
        return v;
    case 7:
        v = cJSON_CreateObject();
        if (depth < 3)
            cJSON_AddItemToObject(v, "kx", random_value(rng, depth + 1));
        return v;
    default:
        return cJSON_CreateString("secure");
    }
}

static void
test_secure_random_handshake_json_survives(void **state)
{
    static const char *const names[] = {"type", "v", "kx", "identity", "sig"};
    struct secure_session *c = NULL, *s;
    cJSON *req = NULL, *m, *rep;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why;
    uint32_t rng = 0x5ec0beefu;
    size_t i, f;
    int rc;

    (void)state;
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    for (i = 0; i < 3000; i++) {
        m = cJSON_Duplicate(req, 1);
        for (f = 0; f < 5; f++) {
            uint32_t what = rng_next(&rng) % 3;

            if (what == 0)
                continue;
            cJSON_DeleteItemFromObjectCaseSensitive(m, names[f]);
            if (what == 2)
                cJSON_AddItemToObject(m, names[f], random_value(&rng, 0));
        }
        s = NULL;
        rep = NULL;
        rc = secure_server_accept(server_sk, m, &s, &rep, &why);
        assert_true(rc == CHAT_OK || rc == CHAT_EPROTO || rc == CHAT_ERANGE ||
                    rc == CHAT_ECRYPTO);
        assert_true((rc == CHAT_OK) == (s != NULL && rep != NULL));
        cJSON_Delete(rep);
        secure_free(s);
        /* The same object as a reply: it can never verify. */
        {
            struct secure_session *c2 = NULL;
            cJSON *r2 = NULL;

            assert_int_equal(secure_client_start(&c2, &r2), CHAT_OK);
            assert_int_not_equal(secure_client_finish(c2, m, pk, &why),
                                 CHAT_OK);
            cJSON_Delete(r2);
            secure_free(c2);
        }
        cJSON_Delete(m);
    }
    cJSON_Delete(req);
    secure_free(c);
}

/* ---- sealed frames -------------------------------------------------- */

/* Flip every bit of the n-th frame (0: the first, with the header) in
 * turn, each time in a fresh session. */
static void
flip_every_bit(unsigned nth)
{
    struct pair p;
    uint8_t *f = NULL, *g = NULL;
    size_t len, glen, bit, total = 0, k;

    for (bit = 0; total == 0 || bit < total; bit++) {
        pair_new(&p);
        for (k = 0; k < nth; k++) {
            seal_ok(p.c, "{}", false, &g, &glen);
            open_expect(p.s, g, glen, "{}", false);
            g_free(g);
        }
        seal_ok(p.c, PING, false, &f, &len);
        total = len * 8;
        f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        open_fails(p.s, f, len);
        /* The direction is dead: even the genuine frame fails now. */
        f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        open_fails(p.s, f, len);
        g_free(f);
        pair_free(&p);
    }
    assert_int_equal(total, 8 * (strlen(PING) + SECURE_ABYTES +
                                 (nth == 0 ? SECURE_HEADER_BYTES : 0)));
}

static void
test_secure_flipped_bit_in_first_frame(void **state)
{
    (void)state;
    flip_every_bit(0);
}

static void
test_secure_flipped_bit_in_later_frame(void **state)
{
    (void)state;
    flip_every_bit(2);
}

static void
test_secure_reordered_frames_refused(void **state)
{
    struct pair p;
    uint8_t *f[3];
    size_t len[3], i;

    (void)state;
    /* Swapped after the first frame. */
    pair_new(&p);
    for (i = 0; i < 3; i++)
        seal_ok(p.c, PING, false, &f[i], &len[i]);
    open_expect(p.s, f[0], len[0], PING, false);
    open_fails(p.s, f[2], len[2]);
    open_fails(p.s, f[1], len[1]);
    for (i = 0; i < 3; i++)
        g_free(f[i]);
    pair_free(&p);
    /* The second frame first (it has no header). */
    pair_new(&p);
    for (i = 0; i < 2; i++)
        seal_ok(p.c, PING, false, &f[i], &len[i]);
    open_fails(p.s, f[1], len[1]);
    open_fails(p.s, f[0], len[0]);
    for (i = 0; i < 2; i++)
        g_free(f[i]);
    pair_free(&p);
}

static void
test_secure_replayed_frames_refused(void **state)
{
    struct pair p;
    uint8_t *f[2];
    size_t len[2], i, which;

    (void)state;
    for (which = 0; which < 2; which++) {
        pair_new(&p);
        for (i = 0; i < 2; i++)
            seal_ok(p.c, PING, false, &f[i], &len[i]);
        open_expect(p.s, f[0], len[0], PING, false);
        open_expect(p.s, f[1], len[1], PING, false);
        open_fails(p.s, f[which], len[which]);
        for (i = 0; i < 2; i++)
            g_free(f[i]);
        pair_free(&p);
    }
}

static void
test_secure_truncated_or_extended_frame_refused(void **state)
{
    struct pair p;
    uint8_t *f = NULL, *g = NULL, *x;
    size_t len = 0, glen, cut, nth;

    (void)state;
    for (nth = 0; nth < 2; nth++) {
        len = 0; /* set by the first seal below */
        for (cut = 0; cut <= len + 1; cut++) {
            pair_new(&p);
            if (nth == 1) {
                seal_ok(p.c, "{}", false, &g, &glen);
                open_expect(p.s, g, glen, "{}", false);
                g_free(g);
            }
            seal_ok(p.c, PING, false, &f, &len);
            if (cut < len) {
                open_fails(p.s, cut == 0 ? NULL : f, cut);
            } else if (cut == len + 1) {
                x = g_malloc(len + 1);
                memcpy(x, f, len);
                x[len] = 0;
                open_fails(p.s, x, len + 1);
                g_free(x);
            } else {
                open_expect(p.s, f, len, PING, false);
            }
            g_free(f);
            pair_free(&p);
        }
    }
}

static void
test_secure_frames_do_not_cross_sessions_or_directions(void **state)
{
    struct pair a, b;
    uint8_t *f = NULL;
    size_t len;

    (void)state;
    pair_new(&a);
    pair_new(&b);
    seal_ok(a.c, PING, false, &f, &len);
    open_fails(b.s, f, len);
    /* Reflected back to the sender: each direction has its own key. */
    open_fails(a.c, f, len);
    open_expect(a.s, f, len, PING, false);
    g_free(f);
    pair_free(&a);
    pair_free(&b);
}

static void
test_secure_rx_failure_keeps_tx(void **state)
{
    struct pair p;
    uint8_t junk[64] = {0}, *f = NULL;
    size_t len;
    const char *err = "{\"type\":\"error\",\"code\":\"secure_failed\"}";

    (void)state;
    pair_new(&p);
    open_fails(p.s, junk, sizeof(junk));
    /* The server can still tell the client why, sealed and final. */
    seal_ok(p.s, err, true, &f, &len);
    open_expect(p.c, f, len, err, true);
    g_free(f);
    pair_free(&p);
}

static void
test_secure_misuse_is_refused(void **state)
{
    struct secure_session *c = NULL, *s = NULL;
    cJSON *req = NULL, *rep = NULL;
    uint8_t *out = poison, pk[SECURE_PK_BYTES];
    size_t len = 5;
    bool fin = true;
    const char *why;

    (void)state;
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    assert_int_equal(secure_seal(c, "{}", 2, false, &out, &len), CHAT_EPROTO);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_int_equal(secure_open(c, (const uint8_t *)"{}", 2, &out, &len, &fin),
                     CHAT_EPROTO);
    assert_false(fin);
    assert_int_equal(secure_seal(NULL, "{}", 2, false, &out, &len),
                     CHAT_EPROTO);
    assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                     CHAT_OK);
    /* finish on a server session, then twice on a client session. */
    assert_int_equal(secure_client_finish(s, rep, pk, &why), CHAT_EPROTO);
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_OK);
    assert_int_equal(secure_client_finish(c, rep, pk, &why), CHAT_EPROTO);
    assert_true(secure_established(c));
    assert_int_equal(secure_seal(c, NULL, 3, false, &out, &len), CHAT_EPROTO);
    assert_false(secure_established(NULL));
    assert_false(secure_tx_finished(NULL));
    assert_false(secure_rx_finished(NULL));
    assert_int_equal(secure_sealed_len(NULL, 1), 1 + SECURE_OVERHEAD_MAX);
    secure_free(NULL);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    secure_free(c);
    secure_free(s);
}

static void
test_secure_free_at_every_stage(void **state)
{
    struct secure_session *c = NULL, *s = NULL;
    cJSON *req = NULL, *rep = NULL;
    struct pair p;
    uint8_t *f = NULL;
    size_t len;

    (void)state;
    /* Started only: the ephemeral secret is wiped and freed. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    secure_free(c);
    cJSON_Delete(req);
    /* Accepted, never used. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    {
        const char *why;

        assert_int_equal(secure_server_accept(server_sk, req, &s, &rep, &why),
                         CHAT_OK);
    }
    secure_free(s);
    secure_free(c);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    /* Mid-stream, both sides. valgrind and ASan see every byte here. */
    pair_new(&p);
    seal_ok(p.c, PING, false, &f, &len);
    open_expect(p.s, f, len, PING, false);
    g_free(f);
    pair_free(&p);
}

static void
test_secure_largest_and_empty_plaintext(void **state)
{
    const size_t max_frame = 65536;
    struct pair p;
    uint8_t *f = NULL, *out = NULL;
    char *big;
    size_t len, olen, n;
    bool fin;

    (void)state;
    pair_new(&p);
    n = max_frame - SECURE_OVERHEAD_MAX;
    big = g_malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    seal_ok(p.c, big, false, &f, &len);
    assert_int_equal(len, max_frame);
    open_expect(p.s, f, len, big, false);
    g_free(f);
    /* Later frames carry no header: 24 more plaintext bytes fit. */
    n = max_frame - SECURE_ABYTES;
    big = g_realloc(big, n + 1);
    memset(big, 'b', n);
    big[n] = '\0';
    seal_ok(p.c, big, false, &f, &len);
    assert_int_equal(len, max_frame);
    open_expect(p.s, f, len, big, false);
    g_free(f);
    g_free(big);
    /* Empty plaintext: legal for this layer (message.c judges it). */
    assert_int_equal(secure_seal(p.c, NULL, 0, false, &f, &len), CHAT_OK);
    assert_int_equal(len, SECURE_ABYTES);
    assert_int_equal(secure_open(p.s, f, len, &out, &olen, &fin), CHAT_OK);
    assert_int_equal(olen, 0);
    assert_int_equal(out[0], '\0');
    g_free(out);
    g_free(f);
    pair_free(&p);
}

/* ---- client identity ------------------------------------------------ */

static cJSON *
hello_json(void)
{
    cJSON *h = cJSON_Parse("{\"type\":\"hello\",\"version\":1,"
                           "\"nick\":\"ann\"}");

    assert_non_null(h);
    return h;
}

static void
test_secure_client_identity_proven(void **state)
{
    uint8_t cpk[SECURE_PK_BYTES], csk[SECURE_SK_BYTES], got[SECURE_PK_BYTES];
    struct pair p;
    cJSON *h, *wh;
    bool present = false;
    const char *why;

    (void)state;
    crypto_sign_keypair(cpk, csk);
    pair_new(&p);
    h = hello_json();
    assert_int_equal(secure_client_sign_hello(p.c, csk, h), CHAT_OK);
    /* Signing twice replaces the fields rather than duplicating them. */
    assert_int_equal(secure_client_sign_hello(p.c, csk, h), CHAT_OK);
    assert_int_equal(cJSON_GetArraySize(h), 5);
    /* A hello that already repeats a field (parsed from elsewhere) keeps
     * only ours: both copies go. */
    cJSON_AddStringToObject(h, "sig", "stale");
    cJSON_AddStringToObject(h, "sig", "stale again");
    assert_int_equal(secure_client_sign_hello(p.c, csk, h), CHAT_OK);
    assert_int_equal(cJSON_GetArraySize(h), 5);
    wh = wire(h);
    assert_int_equal(secure_server_verify_hello(p.s, wh, got, &present, &why),
                     CHAT_OK);
    assert_true(present);
    assert_memory_equal(got, cpk, sizeof(cpk));
    cJSON_Delete(h);
    cJSON_Delete(wh);
    pair_free(&p);
}

static void
test_secure_client_identity_absent(void **state)
{
    uint8_t got[SECURE_PK_BYTES];
    struct pair p;
    cJSON *h;
    bool present = true;
    const char *why;

    (void)state;
    pair_new(&p);
    h = hello_json();
    memset(got, 0x55, sizeof(got));
    assert_int_equal(secure_server_verify_hello(p.s, h, got, &present, &why),
                     CHAT_OK);
    assert_false(present);
    assert_true(sodium_is_zero(got, sizeof(got)));
    /* A plain session without the fields is fine too. */
    present = true;
    assert_int_equal(secure_server_verify_hello(NULL, h, got, &present, &why),
                     CHAT_OK);
    assert_false(present);
    cJSON_Delete(h);
    pair_free(&p);
}

static void
verify_fails(const struct secure_session *s, const cJSON *h, int code)
{
    uint8_t got[SECURE_PK_BYTES];
    bool present = true;
    const char *why = NULL;
    char *text = cJSON_PrintUnformatted(h);
    int rc;

    rc = secure_server_verify_hello(s, h, got, &present, &why);
    if (rc != code)
        print_error("hello %s: got %d want %d\n", text, rc, code);
    assert_int_equal(rc, code);
    assert_false(present);
    assert_non_null(why);
    assert_true(sodium_is_zero(got, sizeof(got)));
    cJSON_free(text);
}

static void
test_secure_client_identity_refused(void **state)
{
    uint8_t cpk[SECURE_PK_BYTES], csk[SECURE_SK_BYTES];
    uint8_t opk[SECURE_PK_BYTES], osk[SECURE_SK_BYTES];
    uint8_t sig[SECURE_SIG_BYTES];
    struct pair p, q;
    cJSON *h, *m;
    GPtrArray *bad;
    size_t i;

    (void)state;
    crypto_sign_keypair(cpk, csk);
    crypto_sign_keypair(opk, osk);
    pair_new(&p);
    pair_new(&q);
    h = hello_json();
    assert_int_equal(secure_client_sign_hello(p.c, csk, h), CHAT_OK);

    /* A proof made for session p does not work in session q. */
    verify_fails(q.s, h, CHAT_ECRYPTO);
    /* Nor in a plain session, nor verified by a client session. */
    verify_fails(NULL, h, CHAT_EPROTO);
    verify_fails(p.c, h, CHAT_EPROTO);
    /* Another key claimed with this signature. */
    m = cJSON_Duplicate(h, 1);
    set_b64(m, "identity", opk, sizeof(opk));
    verify_fails(p.s, m, CHAT_ECRYPTO);
    cJSON_Delete(m);
    /* One flipped bit of the signature. */
    m = cJSON_Duplicate(h, 1);
    b64_decode(m, "sig", sig, sizeof(sig));
    sig[10] ^= 0x10;
    set_b64(m, "sig", sig, sizeof(sig));
    verify_fails(p.s, m, CHAT_ECRYPTO);
    cJSON_Delete(m);
    /* Either field alone. */
    m = cJSON_Duplicate(h, 1);
    set_json(m, "sig", NULL);
    verify_fails(p.s, m, CHAT_EPROTO);
    cJSON_Delete(m);
    m = cJSON_Duplicate(h, 1);
    set_json(m, "identity", NULL);
    verify_fails(p.s, m, CHAT_EPROTO);
    cJSON_Delete(m);
    /* Wrong types, base64, lengths, in each field. */
    bad = bad_b64_values(SECURE_PK_BYTES);
    for (i = 0; i < bad->len; i++) {
        m = cJSON_Duplicate(h, 1);
        set_json(m, "identity", g_ptr_array_index(bad, i));
        verify_fails(p.s, m, CHAT_EPROTO);
        cJSON_Delete(m);
    }
    g_ptr_array_free(bad, TRUE);
    bad = bad_b64_values(SECURE_SIG_BYTES);
    for (i = 0; i < bad->len; i++) {
        m = cJSON_Duplicate(h, 1);
        set_json(m, "sig", g_ptr_array_index(bad, i));
        verify_fails(p.s, m, CHAT_EPROTO);
        cJSON_Delete(m);
    }
    g_ptr_array_free(bad, TRUE);
    /* hello that is not an object. */
    m = cJSON_CreateArray();
    verify_fails(p.s, m, CHAT_EPROTO);
    cJSON_Delete(m);
    /* The server cannot sign a hello, nor can an unfinished client. */
    assert_int_equal(secure_client_sign_hello(p.s, csk, h), CHAT_EPROTO);
    assert_int_equal(secure_client_sign_hello(NULL, csk, h), CHAT_EPROTO);
    cJSON_Delete(h);
    pair_free(&p);
    pair_free(&q);
}

/* The worked example of doc/SECURE.md section "Test vector": keys from
 * seeds of 32 bytes 0x01 (client kx), 0x02 (server kx), 0x03 (identity). */
static void
test_secure_doc_vector(void **state)
{
    static const char ckx_b64[] =
        "qy/KMomDIsII+y2rUEi9Q8NVxkMPWIiXy1dJYc+pgG8=";
    static const char skx_b64[] =
        "/Dszk2elIl1TqS04AyOv0DXXgXttG+R9lG9rCanL3AY=";
    static const char id_b64[] = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E=";
    static const char sig_b64[] = "nokFuArvkj0zu9Fo90OAWA1m6XBZlCRKE75MTVI4Wr"
                                  "iEPxNwGXiwnS3VSefq2xtdTwRnN/cD+1n6JdmE+C6f"
                                  "BQ==";
    static const char c2s_hex[] =
        "43eb74c847209a3af513e0fc824b791865665dcc727fc332f4ddfc614e0ab79a";
    static const char s2c_hex[] =
        "e0f480d42cd0d8a95993dd50976fb24ef81a6788b7b5bc722fc258410ac723ed";
    uint8_t seed[32], cpk[32], csk[32], spk[32], ssk[32], ipk[32], isk[64];
    uint8_t rx[32], tx[32], srx[32], stx[32], sig[64];
    uint8_t t[sizeof(SECURE_CTX_SERVER) - 1 + 64];
    char hex[65], *b;
    cJSON *m;

    (void)state;
    memset(seed, 1, sizeof(seed));
    crypto_kx_seed_keypair(cpk, csk, seed);
    memset(seed, 2, sizeof(seed));
    crypto_kx_seed_keypair(spk, ssk, seed);
    memset(seed, 3, sizeof(seed));
    crypto_sign_seed_keypair(ipk, isk, seed);
    b = b64_of(cpk, 32);
    assert_string_equal(b, ckx_b64);
    g_free(b);
    b = b64_of(spk, 32);
    assert_string_equal(b, skx_b64);
    g_free(b);
    b = b64_of(ipk, 32);
    assert_string_equal(b, id_b64);
    g_free(b);
    /* The signature in the document verifies over the transcript. */
    m = cJSON_CreateObject();
    set_str(m, "sig", sig_b64);
    b64_decode(m, "sig", sig, sizeof(sig));
    cJSON_Delete(m);
    memcpy(t, SECURE_CTX_SERVER, sizeof(SECURE_CTX_SERVER) - 1);
    memcpy(t + sizeof(SECURE_CTX_SERVER) - 1, cpk, 32);
    memcpy(t + sizeof(SECURE_CTX_SERVER) - 1 + 32, spk, 32);
    assert_int_equal(crypto_sign_verify_detached(sig, t, sizeof(t), ipk), 0);
    /* And the two direction keys are as documented. */
    assert_int_equal(crypto_kx_client_session_keys(rx, tx, cpk, csk, spk), 0);
    assert_int_equal(crypto_kx_server_session_keys(srx, stx, spk, ssk, cpk), 0);
    assert_memory_equal(tx, srx, 32);
    assert_memory_equal(rx, stx, 32);
    sodium_bin2hex(hex, sizeof(hex), tx, 32);
    assert_string_equal(hex, c2s_hex);
    sodium_bin2hex(hex, sizeof(hex), rx, 32);
    assert_string_equal(hex, s2c_hex);
}

/* ---- batches (doc/SECURE.md section 5) ------------------------------ */

/* Every message of pt, as secure_plain_next() gives them, must be want[]
 * (count of them), then CHAT_EAGAIN, and again CHAT_EAGAIN. */
static void
iterate_expect(const uint8_t *pt, size_t n, const char *const *want,
               size_t count)
{
    const uint8_t *msg = poison;
    size_t off = 0, len = 99, i;

    for (i = 0; i < count; i++) {
        assert_int_equal(secure_plain_next(pt, n, &off, &msg, &len), CHAT_OK);
        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(msg, want[i], len);
        assert_true(msg >= pt && msg + len <= pt + n);
    }
    assert_int_equal(off, n);
    assert_int_equal(secure_plain_next(pt, n, &off, &msg, &len), CHAT_EAGAIN);
    assert_null(msg);
    assert_int_equal(len, 0);
    assert_int_equal(secure_plain_next(pt, n, &off, &msg, &len), CHAT_EAGAIN);
}

/* pt is refused on the first call, with nothing delivered. */
static void
iterate_refused(const uint8_t *pt, size_t n)
{
    const uint8_t *msg = poison;
    size_t off = 0, len = 99;

    assert_int_equal(secure_plain_next(pt, n, &off, &msg, &len), CHAT_EPROTO);
    assert_null(msg);
    assert_int_equal(len, 0);
}

static struct iovec *
iov_of(const char *const *msgs, size_t count)
{
    struct iovec *v = g_new0(struct iovec, count);
    size_t i;

    for (i = 0; i < count; i++) {
        v[i].iov_base = (void *)(uintptr_t)msgs[i];
        v[i].iov_len = strlen(msgs[i]);
    }
    return v;
}

/* Seal msgs as one batch from tx, open it at rx and check every message
 * comes out in order; final as given. scratch may be NULL. */
static void
batch_round_trip(struct secure_session *tx, struct secure_session *rx,
                 const char *const *msgs, size_t count, bool final,
                 GByteArray *scratch)
{
    struct iovec *v = iov_of(msgs, count);
    size_t want = secure_batch_sealed_len(tx, v, count), len = 99, ptlen = 0;
    size_t plain = 1, i;
    uint8_t *out = g_malloc(want), *pt = NULL;
    bool fin = !final;

    for (i = 0; i < count; i++)
        plain += 4 + strlen(msgs[i]);
    assert_int_equal(secure_batch_plain_len(v, count), plain);
    assert_int_equal(want, secure_sealed_len(tx, plain));
    assert_int_equal(
        secure_seal_batch(tx, v, count, final, scratch, out, want, &len),
        CHAT_OK);
    assert_int_equal(len, want);
    assert_int_equal(secure_open(rx, out, len, &pt, &ptlen, &fin), CHAT_OK);
    assert_int_equal(fin, final);
    assert_int_equal(ptlen, plain);
    assert_int_equal(pt[0], SECURE_BATCH_MARK);
    iterate_expect(pt, ptlen, msgs, count);
    g_free(pt);
    g_free(out);
    g_free(v);
}

static void
test_secure_plain_next_single_message(void **state)
{
    static const char *const ping[] = {PING};
    static const char *const spaced[] = {" \t\r\n{}"};
    const uint8_t *msg = poison;
    size_t off = 0, len = 99;

    (void)state;
    iterate_expect((const uint8_t *)PING, strlen(PING), ping, 1);
    iterate_expect((const uint8_t *)spaced[0], strlen(spaced[0]), spaced, 1);
    /* Not JSON is still one message: the JSON layer judges it. */
    iterate_expect((const uint8_t *)"x", 1, (const char *const[]){"x"}, 1);
    /* An empty plaintext (the empty TAG_FINAL frame) holds no message. */
    iterate_expect((const uint8_t *)"", 0, NULL, 0);
    iterate_expect(NULL, 0, NULL, 0);
    /* An offset the iterator never gave. */
    off = 1;
    assert_int_equal(secure_plain_next((const uint8_t *)PING, strlen(PING),
                                       &off, &msg, &len),
                     CHAT_EPROTO);
    assert_null(msg);
    assert_int_equal(len, 0);
    off = strlen(PING) + 1;
    assert_int_equal(secure_plain_next((const uint8_t *)PING, strlen(PING),
                                       &off, &msg, &len),
                     CHAT_EPROTO);
}

static void
test_secure_batch_of_one_two_and_many(void **state)
{
    static const char *const one[] = {PING};
    static const char *const two[] = {"{\"type\":\"pong\"}", PING};
    const char *many[300];
    char *texts[300];
    GByteArray *scratch = g_byte_array_new();
    struct pair p;
    size_t i;

    (void)state;
    for (i = 0; i < 300; i++) {
        texts[i] = g_strdup_printf("{\"type\":\"message\",\"seq\":%zu,"
                                   "\"text\":\"%*s\"}",
                                   i, (int)(i % 40), "");
        many[i] = texts[i];
    }
    pair_new(&p);
    /* The server's first frame (with its header) is a batch... */
    batch_round_trip(p.s, p.c, one, 1, false, NULL);
    /* ...and so are later ones, mixed with single messages. */
    batch_round_trip(p.s, p.c, two, 2, false, scratch);
    batch_round_trip(p.s, p.c, many, 300, false, scratch);
    {
        uint8_t *f = NULL;
        size_t len = 0;

        seal_ok(p.s, PING, false, &f, &len);
        open_expect(p.c, f, len, PING, false);
        g_free(f);
    }
    batch_round_trip(p.s, p.c, two, 2, false, scratch);
    /* The client may batch too. */
    batch_round_trip(p.c, p.s, many, 300, false, NULL);
    batch_round_trip(p.c, p.s, one, 1, false, scratch);
    pair_free(&p);
    g_byte_array_unref(scratch);
    for (i = 0; i < 300; i++)
        g_free(texts[i]);
}

static void
test_secure_batch_malformed_refused(void **state)
{
    static const struct {
        const char *what;
        size_t n;
        uint8_t b[16];
    } bad[] = {
        {"the mark alone", 1, {0}},
        {"L = 0", 5, {0, 0, 0, 0, 0}},
        {"L = 0 after a message", 11, {0, 0, 0, 0, 1, '1', 0, 0, 0, 0, '2'}},
        {"truncated L", 4, {0, 0, 0, 1}},
        {"truncated L after a message", 8, {0, 0, 0, 0, 1, '1', 0, 0}},
        {"truncated body", 7, {0, 0, 0, 0, 3, '{', '}'}},
        {"L > remaining", 6, {0, 0, 0, 0, 200, '{'}},
        {"L huge", 7, {0, 0xff, 0xff, 0xff, 0xff, '{', '}'}},
        {"a trailing byte", 7, {0, 0, 0, 0, 1, '1', 0}},
        {"three trailing bytes", 9, {0, 0, 0, 0, 1, '1', 0, 0, 0}},
        {"a trailing message start", 10, {0, 0, 0, 0, 1, '1', 0, 0, 0, 9}},
        {"body cut after a message",
         12,
         {0, 0, 0, 0, 1, '1', 0, 0, 0, 3, '{', '}'}},
    };
    static const uint8_t good[] = {0, 0, 0, 0, 1, '1', 0, 0, 0, 2, '{', '}'};
    struct pair p;
    size_t i, k;

    (void)state;
    iterate_expect(good, sizeof(good), (const char *const[]){"1", "{}"}, 2);
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        const uint8_t *msg = NULL;
        size_t off = 0, len = 0;

        iterate_refused(bad[i].b, bad[i].n);
        /* Nothing is delivered even from a later call (the receiver
         * stops at the first CHAT_EPROTO; this only shows no bounds are
         * crossed). */
        for (k = 0; k < 4; k++)
            if (secure_plain_next(bad[i].b, bad[i].n, &off, &msg, &len) !=
                CHAT_OK)
                break;
        assert_int_equal(k, 0);
    }
    /* Sealed and authenticated does not make a malformed batch good: it
     * opens, and the iterator refuses it. */
    pair_new(&p);
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        uint8_t *f = NULL, *pt = NULL;
        size_t len = 0, ptlen = 0;
        bool fin = true;

        assert_int_equal(secure_seal(p.s, bad[i].b, bad[i].n, false, &f, &len),
                         CHAT_OK);
        assert_int_equal(secure_open(p.c, f, len, &pt, &ptlen, &fin), CHAT_OK);
        assert_false(fin);
        iterate_refused(pt, ptlen);
        g_free(pt);
        g_free(f);
    }
    pair_free(&p);
}

/* Random plaintexts that start with the mark (batches made well, then
 * often cut, extended or changed): the iterator either refuses at once or
 * gives messages that exactly tile the batch. */
static void
test_secure_batch_random_bytes(void **state)
{
    uint32_t seed = 0x5eed1234;
    uint8_t b[64];
    int round, refused = 0, accepted = 0;

    (void)state;
    for (round = 0; round < 20000; round++) {
        size_t n = 1, i, off = 0, len, at = 1, k = rng_next(&seed) % 5;
        const uint8_t *msg;
        int rc;

        for (i = 0; i < k; i++) {
            size_t l = rng_next(&seed) % 8;

            memset(b + n, 0, 3);
            b[n + 3] = (uint8_t)l;
            memset(b + n + 4, '{', l);
            n += 4 + l;
        }
        switch (rng_next(&seed) % 4) {
        case 0: /* cut */
            n -= rng_next(&seed) % n;
            break;
        case 1: /* extended */
            n += rng_next(&seed) % 4;
            memset(b + n - 1, (int)(rng_next(&seed) & 7), 1);
            break;
        case 2: /* one byte changed */
            b[rng_next(&seed) % n] = (uint8_t)rng_next(&seed);
            break;
        default:
            break;
        }
        b[0] = SECURE_BATCH_MARK;
        rc = secure_plain_next(b, n, &off, &msg, &len);
        if (rc == CHAT_EPROTO) {
            refused++;
            continue;
        }
        accepted++;
        while (rc == CHAT_OK) {
            assert_true(len >= 1);
            assert_ptr_equal(msg, b + at + 4);
            assert_int_equal(len, (size_t)b[at] << 24 |
                                      (size_t)b[at + 1] << 16 |
                                      (size_t)b[at + 2] << 8 | b[at + 3]);
            at += 4 + len;
            assert_int_equal(off, at);
            rc = secure_plain_next(b, n, &off, &msg, &len);
        }
        assert_int_equal(rc, CHAT_EAGAIN);
        assert_int_equal(at, n);
    }
    assert_true(refused > 0);
    assert_true(accepted > 0);
}

static void
test_secure_batch_with_final(void **state)
{
    static const char *const msgs[] = {"{\"type\":\"bye\"}",
                                       "{\"type\":\"error\"}"};
    struct iovec *v = iov_of(msgs, 2);
    struct pair p;
    uint8_t out[256], *f = NULL;
    size_t len = 0;

    (void)state;
    pair_new(&p);
    batch_round_trip(p.s, p.c, msgs, 2, false, NULL);
    /* The last frame may be a batch: its messages, then the end. */
    batch_round_trip(p.s, p.c, msgs, 2, true, NULL);
    assert_true(secure_tx_finished(p.s));
    assert_true(secure_rx_finished(p.c));
    /* Nothing more is sealed, as with a single message. */
    assert_int_equal(
        secure_seal_batch(p.s, v, 2, false, NULL, out, sizeof(out), &len),
        CHAT_EPROTO);
    assert_int_equal(len, 0);
    assert_int_equal(secure_seal(p.s, "{}", 2, false, &f, &len), CHAT_EPROTO);
    /* And a frame after the final one would not open. */
    seal_ok(p.c, PING, true, &f, &len);
    open_expect(p.s, f, len, PING, true);
    open_fails(p.s, f, len);
    g_free(f);
    pair_free(&p);
    g_free(v);
}

/* A batch that seals to exactly max_frame fits; one byte more is refused
 * with nothing sealed, and the stream goes on intact. */
static void
test_secure_batch_max_frame(void **state)
{
    const size_t max_frame = 65536;
    struct pair p;
    struct iovec v[2];
    uint8_t *out = g_malloc(max_frame + 1), *pt = NULL;
    char *big = g_malloc(max_frame);
    size_t len = 0, ptlen = 0, first;
    bool fin;
    int later;

    (void)state;
    memset(big, 'a', max_frame);
    pair_new(&p);
    for (later = 0; later < 2; later++) {
        /* 1 + 4 + 2 + 4 + n plaintext bytes, + 41 (first) or 17. */
        first = max_frame - (later ? SECURE_ABYTES : SECURE_OVERHEAD_MAX) - 1 -
                4 - 2 - 4;
        v[0].iov_base = (void *)(uintptr_t) "{}";
        v[0].iov_len = 2;
        v[1].iov_base = big;
        v[1].iov_len = first + 1;
        assert_int_equal(secure_batch_sealed_len(p.c, v, 2), max_frame + 1);
        assert_int_equal(
            secure_seal_batch(p.c, v, 2, false, NULL, out, max_frame, &len),
            CHAT_ETOOBIG);
        assert_int_equal(len, 0);
        v[1].iov_len = first;
        assert_int_equal(secure_batch_sealed_len(p.c, v, 2), max_frame);
        assert_int_equal(
            secure_seal_batch(p.c, v, 2, false, NULL, out, max_frame, &len),
            CHAT_OK);
        assert_int_equal(len, max_frame);
        assert_int_equal(secure_open(p.s, out, len, &pt, &ptlen, &fin),
                         CHAT_OK);
        assert_int_equal(
            ptlen, max_frame - (later ? SECURE_ABYTES : SECURE_OVERHEAD_MAX));
        g_free(pt);
    }
    pair_free(&p);
    g_free(big);
    g_free(out);
}

static void
test_secure_batch_flipped_bit_refused(void **state)
{
    static const char *const msgs[] = {"{\"type\":\"pong\"}", PING};
    struct iovec *v = iov_of(msgs, 2);
    uint8_t out[256];
    size_t len, bit, nth;

    (void)state;
    for (nth = 0; nth < 2; nth++) {
        for (bit = 0;; bit++) {
            struct pair p;

            pair_new(&p);
            if (nth == 1)
                batch_round_trip(p.s, p.c, msgs, 2, false, NULL);
            assert_int_equal(secure_seal_batch(p.s, v, 2, false, NULL, out,
                                               sizeof(out), &len),
                             CHAT_OK);
            if (bit >= len * 8) {
                pair_free(&p);
                break;
            }
            out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            open_fails(p.c, out, len);
            pair_free(&p);
        }
    }
    g_free(v);
}

static void
test_secure_batch_misuse_refused(void **state)
{
    static const char *const msgs[] = {"{}", PING};
    struct iovec *v = iov_of(msgs, 2);
    struct secure_session *c = NULL;
    struct pair p;
    cJSON *req = NULL;
    uint8_t out[256];
    size_t len = 99;

    (void)state;
    pair_new(&p);
    /* No messages, an empty one, a NULL one. */
    assert_int_equal(
        secure_seal_batch(p.c, v, 0, false, NULL, out, sizeof(out), &len),
        CHAT_EPROTO);
    assert_int_equal(len, 0);
    v[1].iov_len = 0;
    assert_int_equal(
        secure_seal_batch(p.c, v, 2, false, NULL, out, sizeof(out), &len),
        CHAT_EPROTO);
    v[1].iov_len = strlen(PING);
    v[0].iov_base = NULL;
    assert_int_equal(
        secure_seal_batch(p.c, v, 2, false, NULL, out, sizeof(out), &len),
        CHAT_EPROTO);
    v[0].iov_base = (void *)(uintptr_t)msgs[0];
    /* Not even the header fits. */
    assert_int_equal(secure_seal_batch(p.c, v, 2, false, NULL, out,
                                       SECURE_OVERHEAD_MAX, &len),
                     CHAT_ETOOBIG);
    /* None of that sealed anything: the stream is intact. */
    batch_round_trip(p.c, p.s, msgs, 2, false, NULL);
    /* Not established, or no session. */
    assert_int_equal(secure_client_start(&c, &req), CHAT_OK);
    assert_int_equal(
        secure_seal_batch(c, v, 2, false, NULL, out, sizeof(out), &len),
        CHAT_EPROTO);
    assert_int_equal(
        secure_seal_batch(NULL, v, 2, false, NULL, out, sizeof(out), &len),
        CHAT_EPROTO);
    assert_int_equal(secure_batch_sealed_len(NULL, v, 2),
                     SECURE_OVERHEAD_MAX + 1 + 4 + 2 + 4 + strlen(PING));
    /* A batch plaintext whose length overflows. */
    v[1].iov_len = SIZE_MAX - 3;
    assert_int_equal(secure_batch_plain_len(v, 2), SIZE_MAX);
    assert_int_equal(secure_batch_sealed_len(p.c, v, 2), SIZE_MAX);
    cJSON_Delete(req);
    secure_free(c);
    pair_free(&p);
    g_free(v);
}

/* The batch vector of doc/SECURE.md section "Test vector": with the
 * server -> client key above and the stream header of 24 bytes 0x04, the
 * server's first frame holding the batch of PING and {"type":"ok","id":7}. */
static void
test_secure_doc_batch_vector(void **state)
{
    static const char key_hex[] =
        "e0f480d42cd0d8a95993dd50976fb24ef81a6788b7b5bc722fc258410ac723ed";
    static const char plain_hex[] =
        "00000000"
        "1c7b2274797065223a2270696e67222c22746f6b656e223a226b31227d"
        "000000147b2274797065223a226f6b222c226964223a377d";
    static const char sealed_hex[] =
        "040404040404040404040404040404040404040404040404"
        "20d336974c30202e46b1525ba37326ebd4d1e29a751a9856286842da3c3130cb"
        "6f4be6980231bf34254f1a3d568fbf106c0a5f64fb6e09b0cee0a9b32e799a15"
        "b13bc4486a567d8e9f0e";
    static const char *const msgs[] = {PING, "{\"type\":\"ok\",\"id\":7}"};
    crypto_secretstream_xchacha20poly1305_state st;
    struct iovec *v = iov_of(msgs, 2);
    uint8_t key[32], plain[57], sealed[98], out[57];
    unsigned long long mlen = 0;
    unsigned char tag = 0xff;
    size_t got = 0;

    (void)state;
    assert_int_equal(sodium_hex2bin(key, sizeof(key), key_hex, strlen(key_hex),
                                    NULL, &got, NULL),
                     0);
    assert_int_equal(got, sizeof(key));
    assert_int_equal(sodium_hex2bin(plain, sizeof(plain), plain_hex,
                                    strlen(plain_hex), NULL, &got, NULL),
                     0);
    assert_int_equal(got, sizeof(plain));
    assert_int_equal(sodium_hex2bin(sealed, sizeof(sealed), sealed_hex,
                                    strlen(sealed_hex), NULL, &got, NULL),
                     0);
    assert_int_equal(got, sizeof(sealed));
    /* The plaintext is the batch of the two messages... */
    assert_int_equal(secure_batch_plain_len(v, 2), sizeof(plain));
    iterate_expect(plain, sizeof(plain), msgs, 2);
    /* ...its sealed length what secure_batch_sealed_len() says for a
     * first frame... */
    assert_int_equal(secure_batch_sealed_len(NULL, v, 2), sizeof(sealed));
    /* ...and the sealed bytes open to it under the documented key. */
    assert_int_equal(
        crypto_secretstream_xchacha20poly1305_init_pull(&st, sealed, key), 0);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(
                         &st, out, &mlen, &tag, sealed + SECURE_HEADER_BYTES,
                         sizeof(sealed) - SECURE_HEADER_BYTES, NULL, 0),
                     0);
    assert_int_equal(mlen, sizeof(plain));
    assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    assert_memory_equal(out, plain, sizeof(plain));
    g_free(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secure_messages_have_the_documented_shape),
        cmocka_unit_test(test_secure_handshake_and_traffic_both_ways),
        cmocka_unit_test(test_secure_server_speaks_first),
        cmocka_unit_test(test_secure_final_is_delivered_then_nothing),
        cmocka_unit_test(test_secure_frame_after_final_refused),
        cmocka_unit_test(test_secure_tags_other_than_message_final_refused),
        cmocka_unit_test(test_secure_bad_signature),
        cmocka_unit_test(test_secure_wrong_context_refused),
        cmocka_unit_test(test_secure_server_identity_changed),
        cmocka_unit_test(test_secure_substituted_kx_refused),
        cmocka_unit_test(test_secure_zero_kx_refused),
        cmocka_unit_test(test_secure_malformed_request_refused),
        cmocka_unit_test(test_secure_malformed_reply_refused),
        cmocka_unit_test(test_secure_random_handshake_json_survives),
        cmocka_unit_test(test_secure_flipped_bit_in_first_frame),
        cmocka_unit_test(test_secure_flipped_bit_in_later_frame),
        cmocka_unit_test(test_secure_reordered_frames_refused),
        cmocka_unit_test(test_secure_replayed_frames_refused),
        cmocka_unit_test(test_secure_truncated_or_extended_frame_refused),
        cmocka_unit_test(
            test_secure_frames_do_not_cross_sessions_or_directions),
        cmocka_unit_test(test_secure_rx_failure_keeps_tx),
        cmocka_unit_test(test_secure_misuse_is_refused),
        cmocka_unit_test(test_secure_free_at_every_stage),
        cmocka_unit_test(test_secure_largest_and_empty_plaintext),
        cmocka_unit_test(test_secure_client_identity_proven),
        cmocka_unit_test(test_secure_client_identity_absent),
        cmocka_unit_test(test_secure_client_identity_refused),
        cmocka_unit_test(test_secure_doc_vector),
        cmocka_unit_test(test_secure_plain_next_single_message),
        cmocka_unit_test(test_secure_batch_of_one_two_and_many),
        cmocka_unit_test(test_secure_batch_malformed_refused),
        cmocka_unit_test(test_secure_batch_random_bytes),
        cmocka_unit_test(test_secure_batch_with_final),
        cmocka_unit_test(test_secure_batch_max_frame),
        cmocka_unit_test(test_secure_batch_flipped_bit_refused),
        cmocka_unit_test(test_secure_batch_misuse_refused),
        cmocka_unit_test(test_secure_doc_batch_vector),
    };

    if (sodium_init() < 0) {
        fprintf(stderr, "sodium_init failed\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
