/* fuzz_discovery.c - libFuzzer target for the discovery datagrams
 * (common/discovery.c: the codec and the table of servers seen).
 *
 * The whole input is one datagram for discovery_decode(); it is also
 * decoded with a length claimed past DISCOVERY_MAX (as recvfrom() with
 * MSG_TRUNC reports a cut datagram), which must be refused as oversize
 * without reading the bytes. Then the input is cut before every further
 * occurrence of the magic "SkCd" and each piece is decoded as a datagram of
 * its own, beacons going into a discovery_table from one of three source
 * addresses, under a fixed clock that advances with each piece.
 * Checks:
 * - a failure sets a known reason (discovery_bad_name) and returns
 *   ETOOBIG exactly for oversize, EPROTO otherwise, with *out cleared;
 * - a probe has a valid nonce and is at least DISCOVERY_PROBE_MIN bytes;
 *   re-encoding its nonce gives exactly DISCOVERY_PROBE_MIN bytes that
 *   decode to the same nonce; discovery_reply_allowed() never lets an
 *   answer be more than DISCOVERY_AMP_MAX times the probe;
 * - a beacon obeys every field rule (name 1-64 bytes of UTF-8, instance 32
 *   lower-case hex, version, 1-8 endpoints of a-z transport and port 1-65535,
 *   secure a-z, fingerprint printable, nonce empty or valid, counts), and
 *   discovery_encode_beacon() of it succeeds (or is ETOOBIG only when the
 *   decoded text was longer than its escaped form allows) and decodes to the
 *   same beacon;
 * - the table never holds more than DISCOVERY_TABLE_MAX servers or more
 *   than DISCOVERY_SEEN_ADDRS addresses each, its list is sorted by name and
 *   as long as its size, expiries stay in their bounds, and expiring far in
 *   the future empties it (with the gone callback called once per server).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <sodium.h>

#include "discovery.h"
#include "err.h"

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

#define T0_MS INT64_C(1000000)

static bool
str_bounded(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static bool
az(const char *s, size_t max)
{
    size_t n = strlen(s), i;

    if (n < 1 || n > max)
        return false;
    for (i = 0; i < n; i++)
        if (s[i] < 'a' || s[i] > 'z')
            return false;
    return true;
}

static bool
nonce_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n < DISCOVERY_NONCE_MIN || n > DISCOVERY_NONCE_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!g_ascii_isalnum(s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static void
check_beacon(const struct discovery_beacon *b)
{
    size_t i, n;

    CHECK(str_bounded(b->name, sizeof(b->name)));
    n = strlen(b->name);
    CHECK(n >= 1 && n <= DISCOVERY_NAME_MAX && g_utf8_validate(b->name, -1, NULL));
    CHECK(str_bounded(b->instance, sizeof(b->instance)));
    CHECK(strlen(b->instance) == DISCOVERY_INSTANCE_LEN);
    for (i = 0; i < DISCOVERY_INSTANCE_LEN; i++)
        CHECK(g_ascii_isdigit(b->instance[i]) ||
              (b->instance[i] >= 'a' && b->instance[i] <= 'f'));
    CHECK(b->version >= 1 && b->version <= 65535);
    CHECK(b->n_endpoints >= 1 && b->n_endpoints <= DISCOVERY_ENDPOINTS_MAX);
    for (i = 0; i < b->n_endpoints; i++) {
        CHECK(str_bounded(b->endpoints[i].transport,
                          sizeof(b->endpoints[i].transport)));
        CHECK(az(b->endpoints[i].transport, DISCOVERY_TRANSPORT_MAX));
        CHECK(b->endpoints[i].port >= 1);
    }
    CHECK(str_bounded(b->secure, sizeof(b->secure)));
    CHECK(az(b->secure, DISCOVERY_SECURE_MAX));
    CHECK(str_bounded(b->fingerprint, sizeof(b->fingerprint)));
    n = strlen(b->fingerprint);
    CHECK(n <= DISCOVERY_FP_MAX);
    for (i = 0; i < n; i++)
        CHECK(b->fingerprint[i] >= 0x20 && b->fingerprint[i] <= 0x7e);
    CHECK(b->users <= 2147483647u && b->rooms <= 2147483647u);
    CHECK(str_bounded(b->nonce, sizeof(b->nonce)));
    CHECK(b->nonce[0] == '\0' || nonce_ok(b->nonce));
}

static bool
beacon_eq(const struct discovery_beacon *a, const struct discovery_beacon *b)
{
    size_t i;

    if (strcmp(a->name, b->name) != 0 || strcmp(a->instance, b->instance) != 0 ||
        a->version != b->version || a->n_endpoints != b->n_endpoints ||
        strcmp(a->secure, b->secure) != 0 ||
        strcmp(a->fingerprint, b->fingerprint) != 0 || a->users != b->users ||
        a->rooms != b->rooms || strcmp(a->nonce, b->nonce) != 0)
        return false;
    for (i = 0; i < a->n_endpoints; i++)
        if (strcmp(a->endpoints[i].transport, b->endpoints[i].transport) != 0 ||
            a->endpoints[i].port != b->endpoints[i].port)
            return false;
    return true;
}

static bool
is_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;

    for (i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static void
check_amp(size_t probe_len)
{
    size_t r;

    for (r = 0; r <= DISCOVERY_MAX + 1; r += 97)
        if (discovery_reply_allowed(probe_len, r))
            CHECK(r <= DISCOVERY_AMP_MAX * probe_len);
    if (discovery_reply_allowed(probe_len, DISCOVERY_AMP_MAX * probe_len + 1))
        abort();
}

/* Decode one datagram and check the result; true with *m for a success. */
static bool
decode_one(const uint8_t *p, size_t n, struct discovery_msg *m)
{
    enum discovery_bad why = DISCOVERY_BAD_COUNT;
    uint8_t enc[DISCOVERY_MAX + 16];
    struct discovery_msg back;
    size_t len = 0;
    int rc;

    memset(m, 0x5a, sizeof(*m));
    rc = discovery_decode(p, n, m, &why);
    if (rc != CHAT_OK) {
        CHECK(why > DISCOVERY_BAD_NONE && why < DISCOVERY_BAD_COUNT);
        CHECK(discovery_bad_name(why) != NULL);
        CHECK(rc == (why == DISCOVERY_BAD_OVERSIZE ? CHAT_ETOOBIG : CHAT_EPROTO));
        CHECK(is_zero(m, sizeof(*m)));
        if (why == DISCOVERY_BAD_PROBE_SMALL)
            CHECK(n < DISCOVERY_PROBE_MIN);
        return false;
    }
    CHECK(why == DISCOVERY_BAD_NONE);
    CHECK(n >= DISCOVERY_HDR && n <= DISCOVERY_MAX);
    CHECK(memcmp(p, DISCOVERY_MAGIC, DISCOVERY_MAGIC_LEN) == 0);
    CHECK(memchr(p, '\0', n) == NULL);
    if (m->kind == DISCOVERY_PROBE) {
        CHECK(str_bounded(m->nonce, sizeof(m->nonce)) && nonce_ok(m->nonce));
        CHECK(n >= DISCOVERY_PROBE_MIN);
        check_amp(n);
        CHECK(discovery_encode_probe(m->nonce, enc, sizeof(enc), &len) ==
              CHAT_OK);
        CHECK(len == DISCOVERY_PROBE_MIN);
        check_amp(len);
        CHECK(discovery_decode(enc, len, &back, &why) == CHAT_OK);
        CHECK(back.kind == DISCOVERY_PROBE && strcmp(back.nonce, m->nonce) == 0);
        /* Too small a buffer is refused, not overrun. */
        CHECK(discovery_encode_probe(m->nonce, enc, len - 1, &len) ==
              CHAT_ETOOBIG);
        return true;
    }
    CHECK(m->kind == DISCOVERY_BEACON);
    check_beacon(&m->beacon);
    rc = discovery_encode_beacon(&m->beacon, enc, sizeof(enc), &len);
    if (rc == CHAT_ETOOBIG) {
        /* Only when escaping grew it past the limit (raw control or
         * non-ASCII characters become \uXXXX). */
        CHECK(n > DISCOVERY_MAX / 2);
        return true;
    }
    if (rc != CHAT_OK) {
        fprintf(stderr, "a decoded beacon does not encode (%d)\n", rc);
        abort();
    }
    CHECK(len >= DISCOVERY_HDR && len <= DISCOVERY_MAX);
    rc = discovery_decode(enc, len, &back, &why);
    if (rc != CHAT_OK) {
        fprintf(stderr, "a re-encoded beacon does not decode (%s): %.*s\n",
                discovery_bad_name(why), (int)len, (const char *)enc);
        abort();
    }
    CHECK(back.kind == DISCOVERY_BEACON);
    if (!beacon_eq(&back.beacon, &m->beacon)) {
        fprintf(stderr, "a beacon changed in a round trip: %.*s\n", (int)len,
                (const char *)enc);
        abort();
    }
    /* A cut buffer is refused, not overrun. */
    CHECK(discovery_encode_beacon(&m->beacon, enc, len - 1, &len) ==
          CHAT_ETOOBIG);
    return true;
}

static void
make_addr(struct addr *a, unsigned i)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

    memset(a, 0, sizeof(*a));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(0x0a000001u + i);
    sin->sin_port = htons(7711);
    a->len = sizeof(*sin);
}

static void
gone_cb(const struct discovery_seen *s, void *arg)
{
    CHECK(s != NULL);
    (*(size_t *)arg)++;
}

static void
check_table(struct discovery_table *t)
{
    GPtrArray *l = discovery_table_list(t);
    guint i;

    CHECK(l->len == discovery_table_size(t));
    CHECK(l->len <= DISCOVERY_TABLE_MAX);
    for (i = 0; i < l->len; i++) {
        const struct discovery_seen *s = g_ptr_array_index(l, i);
        int64_t e = discovery_seen_expiry(s);

        CHECK(s->n_addrs >= 1 && s->n_addrs <= DISCOVERY_SEEN_ADDRS);
        CHECK(s->beacon.nonce[0] == '\0');
        CHECK(s->first_ms <= s->last_ms);
        CHECK(e == DISCOVERY_EXPIRY_DEFAULT ||
              (e >= DISCOVERY_EXPIRY_MIN && e <= DISCOVERY_EXPIRY_MAX));
        if (i > 0) {
            const struct discovery_seen *p = g_ptr_array_index(l, i - 1);

            CHECK(strcmp(p->beacon.name, s->beacon.name) <= 0);
        }
    }
    g_ptr_array_unref(l);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_unsetenv("G_MESSAGES_DEBUG");
    CHECK(sodium_init() >= 0);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct discovery_msg m;
    enum discovery_bad why;
    struct discovery_table *t;
    int64_t now = T0_MS;
    size_t start, k, pieces = 0, gone = 0, before;

    decode_one(data, size, &m);
    /* A cut datagram (MSG_TRUNC): refused on its claimed length alone. */
    CHECK(discovery_decode(data, DISCOVERY_MAX + 1 + size, &m, &why) ==
          CHAT_ETOOBIG);
    CHECK(why == DISCOVERY_BAD_OVERSIZE);

    t = discovery_table_new();
    start = 0;
    while (start < size && pieces < 64) {
        size_t end = size;
        const uint8_t *next = NULL;

        if (size - start > DISCOVERY_MAGIC_LEN)
            next = memmem(data + start + 1, size - start - 1, DISCOVERY_MAGIC,
                          DISCOVERY_MAGIC_LEN);
        if (next != NULL)
            end = (size_t)(next - data);
        pieces++;
        now += (int64_t)((end - start) * 37 % 20000);
        if (decode_one(data + start, end - start, &m) &&
            m.kind == DISCOVERY_BEACON) {
            struct addr src;
            const struct discovery_seen *seen = (void *)1;
            enum discovery_event ev;

            make_addr(&src, (unsigned)(end - start) % 3);
            before = discovery_table_size(t);
            ev = discovery_table_update(t, &m.beacon, &src, now, &seen);
            CHECK(ev >= DISCOVERY_EV_NONE && ev <= DISCOVERY_EV_RESTART);
            if (seen == NULL) {
                CHECK(ev == DISCOVERY_EV_NONE &&
                      before == DISCOVERY_TABLE_MAX);
            } else {
                CHECK(strcmp(seen->beacon.instance, m.beacon.instance) == 0);
                CHECK(seen->last_ms == now);
            }
            if (ev == DISCOVERY_EV_NEW)
                CHECK(discovery_table_size(t) == before + 1);
            else
                CHECK(discovery_table_size(t) <= before);
            check_table(t);
        }
        k = discovery_table_expire(t, now, gone_cb, &gone);
        CHECK(k <= DISCOVERY_TABLE_MAX);
        check_table(t);
        start = end;
    }
    gone = 0;
    before = discovery_table_size(t);
    k = discovery_table_expire(t, now + DISCOVERY_EXPIRY_MAX + 1, gone_cb, &gone);
    CHECK(k == before && gone == before && discovery_table_size(t) == 0);
    discovery_table_free(t);
    return 0;
}
