/* test_discovery.c - tests for common/discovery.c (the datagram codec, the
 * answer limiter, the table of servers seen) through discovery.h, and for
 * server/beacon.c through beacon.h on loopback: answers stay within the
 * amplification bound and the rate limits under a probe flood, and bad
 * datagrams are counted, never answered, and logged at most once a second.
 *
 * Only unicast to 127.0.0.1 leaves this process: the beacon runs without
 * --lan, which never sends a broadcast or multicast datagram. Broadcast and
 * multicast are tested only inside network namespaces (ip netns) that
 * it_discovery.sh creates and deletes.
 *
 * `test_discovery flood HOST PORT COUNT` is a helper for it_discovery.sh,
 * not a test: it sends COUNT probes to HOST:PORT by unicast, waits for the
 * answers, and prints "sent N bytes_sent B answers A bytes_received R".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <glib.h>
#include <sodium.h>

#include "beacon.h"
#include "discovery.h"
#include "err.h"
#include "loop.h"
#include "server.h"

/* ---- helpers ---------------------------------------------------------- */

/* Header + text into buf; returns the length. */
static size_t
dgram(uint8_t *buf, size_t cap, const char *json)
{
    size_t n = strlen(json);

    assert_true(n + DISCOVERY_HDR <= cap);
    memcpy(buf, DISCOVERY_MAGIC, DISCOVERY_MAGIC_LEN);
    buf[DISCOVERY_MAGIC_LEN] = DISCOVERY_VERSION;
    memcpy(buf + DISCOVERY_HDR, json, n);
    return n + DISCOVERY_HDR;
}

/* Header + cJSON text of obj. */
static size_t
dgram_obj(uint8_t *buf, size_t cap, const cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    size_t n;

    assert_non_null(s);
    n = dgram(buf, cap, s);
    cJSON_free(s);
    return n;
}

static const char good_beacon_json[] =
    "{\"type\":\"beacon\",\"name\":\"alpha\","
    "\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":1,"
    "\"endpoints\":[{\"transport\":\"tcp\",\"port\":7710},"
    "{\"transport\":\"udp\",\"port\":7710}],\"secure\":\"off\","
    "\"users\":3,\"rooms\":2}";

static enum discovery_bad
decode_why(const uint8_t *p, size_t n)
{
    struct discovery_msg m;
    enum discovery_bad why;

    if (discovery_decode(p, n, &m, &why) == CHAT_OK)
        return DISCOVERY_BAD_NONE;
    assert_int_not_equal(why, DISCOVERY_BAD_NONE);
    return why;
}

static void
fill_beacon(struct discovery_beacon *b, const char *name, const char *inst,
            uint16_t port)
{
    memset(b, 0, sizeof(*b));
    g_strlcpy(b->name, name, sizeof(b->name));
    g_strlcpy(b->instance, inst, sizeof(b->instance));
    b->version = 1;
    g_strlcpy(b->endpoints[0].transport, "tcp",
              sizeof(b->endpoints[0].transport));
    b->endpoints[0].port = port;
    b->n_endpoints = 1;
    g_strlcpy(b->secure, "off", sizeof(b->secure));
}

static struct addr
mkaddr(const char *ip, uint16_t port)
{
    struct addr a;

    memset(&a, 0, sizeof(a));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.ss;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        a.len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a.ss;

        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
        a.len = sizeof(*s4);
    }
    return a;
}

/* ---- codec ------------------------------------------------------------ */

static void
test_discovery_probe_round_trip(void **state)
{
    uint8_t buf[DISCOVERY_MAX];
    char nonce[DISCOVERY_NONCE_LEN + 1];
    struct discovery_msg m;
    enum discovery_bad why;
    size_t n;

    (void)state;
    discovery_new_nonce(nonce);
    assert_int_equal(strlen(nonce), DISCOVERY_NONCE_LEN);
    assert_int_equal(discovery_encode_probe(nonce, buf, sizeof(buf), &n),
                     CHAT_OK);
    /* Padded to exactly the minimum a server accepts. */
    assert_int_equal(n, DISCOVERY_PROBE_MIN);
    assert_memory_equal(buf, "SkCd\x01{", 6);
    assert_int_equal(discovery_decode(buf, n, &m, &why), CHAT_OK);
    assert_int_equal(m.kind, DISCOVERY_PROBE);
    assert_string_equal(m.nonce, nonce);
    /* Bad nonces are refused on the way out too. */
    assert_int_equal(discovery_encode_probe("short", buf, sizeof(buf), &n),
                     CHAT_ERANGE);
    assert_int_equal(discovery_encode_probe("has space in it, long enough", buf,
                                            sizeof(buf), &n),
                     CHAT_ERANGE);
    assert_int_equal(discovery_encode_probe(nonce, buf, 100, &n), CHAT_ETOOBIG);
}

static void
test_discovery_beacon_round_trip(void **state)
{
    uint8_t buf[DISCOVERY_MAX];
    struct discovery_beacon b, *d;
    struct discovery_msg m;
    enum discovery_bad why;
    cJSON *obj;
    size_t n;

    (void)state;
    fill_beacon(&b, "caf\xc3\xa9 \"lab\"", "00112233445566778899aabbccddeeff",
                7710);
    g_strlcpy(b.endpoints[1].transport, "udp",
              sizeof(b.endpoints[1].transport));
    b.endpoints[1].port = 7712;
    b.n_endpoints = 2;
    g_strlcpy(b.secure, "optional", sizeof(b.secure));
    g_strlcpy(b.fingerprint, "SHA256:6668 7aad", sizeof(b.fingerprint));
    b.users = 12;
    b.rooms = 4;
    g_strlcpy(b.nonce, "abcdefABCDEF0123456789_-", sizeof(b.nonce));
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_OK);
    assert_int_equal(discovery_decode(buf, n, &m, &why), CHAT_OK);
    assert_int_equal(m.kind, DISCOVERY_BEACON);
    d = &m.beacon;
    assert_string_equal(d->name, b.name);
    assert_string_equal(d->instance, b.instance);
    assert_int_equal(d->version, 1);
    assert_int_equal(d->n_endpoints, 2);
    assert_string_equal(d->endpoints[1].transport, "udp");
    assert_int_equal(d->endpoints[1].port, 7712);
    assert_string_equal(d->secure, "optional");
    assert_string_equal(d->fingerprint, b.fingerprint);
    assert_int_equal(d->users, 12);
    assert_int_equal(d->rooms, 4);
    assert_string_equal(d->nonce, b.nonce);

    /* Exactly the fields of the outline, and nothing else about the host. */
    obj = cJSON_ParseWithLength((const char *)buf + DISCOVERY_HDR,
                                n - DISCOVERY_HDR);
    assert_non_null(obj);
    assert_int_equal(cJSON_GetArraySize(obj), 10);
    cJSON_Delete(obj);

    /* No nonce, no fingerprint: both left out, and decode as empty. */
    b.nonce[0] = '\0';
    b.fingerprint[0] = '\0';
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_OK);
    assert_null(memmem(buf, n, "nonce", 5));
    assert_null(memmem(buf, n, "fingerprint", 11));
    assert_int_equal(discovery_decode(buf, n, &m, &why), CHAT_OK);
    assert_string_equal(m.beacon.nonce, "");
    assert_string_equal(m.beacon.fingerprint, "");

    /* The given JSON decodes, with extra whitespace after it. */
    n = dgram(buf, sizeof(buf), good_beacon_json);
    memcpy(buf + n, " \n", 2);
    assert_int_equal(decode_why(buf, n + 2), DISCOVERY_BAD_NONE);
}

static void
test_discovery_encode_rejects_bad_beacons(void **state)
{
    uint8_t buf[DISCOVERY_MAX];
    struct discovery_beacon b;
    size_t n;

    (void)state;
    fill_beacon(&b, "", "00112233445566778899aabbccddeeff", 7710);
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_ERANGE);
    fill_beacon(&b, "ok", "not hex", 7710);
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_ERANGE);
    fill_beacon(&b, "ok", "00112233445566778899aabbccddeeff", 0);
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_ERANGE);
    fill_beacon(&b, "ok", "00112233445566778899aabbccddeeff", 7710);
    b.n_endpoints = 0;
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_ERANGE);
    fill_beacon(&b, "bad \xff utf-8", "00112233445566778899aabbccddeeff", 7710);
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_ERANGE);
    fill_beacon(&b, "ok", "00112233445566778899aabbccddeeff", 7710);
    assert_int_equal(discovery_encode_beacon(&b, buf, 20, &n), CHAT_ETOOBIG);
}

static void
test_discovery_rejects_short_foreign_version_oversize(void **state)
{
    uint8_t buf[DISCOVERY_MAX + 64];
    struct discovery_msg m;
    enum discovery_bad why;
    size_t n, i;

    (void)state;
    n = dgram(buf, sizeof(buf), good_beacon_json);
    for (i = 0; i < DISCOVERY_HDR; i++)
        assert_int_equal(decode_why(buf, i), DISCOVERY_BAD_SHORT);
    /* Only the header: no JSON at all. */
    assert_int_equal(decode_why(buf, DISCOVERY_HDR), DISCOVERY_BAD_JSON);
    buf[0] = 'X';
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_MAGIC);
    buf[0] = 'S';
    buf[DISCOVERY_MAGIC_LEN] = 2;
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_VERSION);
    buf[DISCOVERY_MAGIC_LEN] = 0;
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_VERSION);
    buf[DISCOVERY_MAGIC_LEN] = DISCOVERY_VERSION;
    /* Oversize: checked before anything else, even with good content. */
    memset(buf + n, ' ', sizeof(buf) - n);
    assert_int_equal(discovery_decode(buf, DISCOVERY_MAX + 1, &m, &why),
                     CHAT_ETOOBIG);
    assert_int_equal(why, DISCOVERY_BAD_OVERSIZE);
    /* A length from recvfrom(MSG_TRUNC) larger than the buffer. */
    assert_int_equal(discovery_decode(buf, 65507, &m, &why), CHAT_ETOOBIG);
    /* DISCOVERY_MAX exactly is fine. */
    assert_int_equal(decode_why(buf, DISCOVERY_MAX), DISCOVERY_BAD_NONE);
}

static void
test_discovery_rejects_bad_json(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "not json",
        "[1,2,3]",
        "\"beacon\"",
        "42",
        "{\"type\":\"beacon\"} trailing",
        "{\"type\":\"probe\",\"type\":\"beacon\"}",
        "{\"a\":1}{\"b\":2}",
        "{\"type\":\"probe\",\"nonce\":\"0123456789abcdef\",}",
    };
    uint8_t buf[DISCOVERY_MAX];
    size_t i, n;

    (void)state;
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        n = dgram(buf, sizeof(buf), bad[i]);
        assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_JSON);
    }
    /* A NUL byte inside the JSON text. */
    n = dgram(buf, sizeof(buf), good_beacon_json);
    buf[20] = '\0';
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_JSON);
    /* Too many members. */
    {
        GString *s = g_string_new("{\"type\":\"probe\"");

        for (i = 0; i < DISCOVERY_MEMBERS_MAX; i++)
            g_string_append_printf(s, ",\"k%zu\":1", i);
        g_string_append_c(s, '}');
        n = dgram(buf, sizeof(buf), s->str);
        assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_JSON);
        g_string_free(s, TRUE);
    }
}

static void
test_discovery_rejects_bad_type(void **state)
{
    static const char *const bad[] = {
        "{}",
        "{\"type\":1}",
        "{\"type\":null}",
        "{\"type\":[\"beacon\"]}",
        "{\"type\":\"hello\"}",
        "{\"type\":\"Beacon\"}",
    };
    uint8_t buf[DISCOVERY_MAX];
    size_t i, n;

    (void)state;
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        n = dgram(buf, sizeof(buf), bad[i]);
        assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_TYPE);
    }
}

/* Every required field of a beacon, missing in turn. */
static void
test_discovery_rejects_missing_fields(void **state)
{
    static const char *const required[] = {
        "name", "instance", "version", "endpoints", "secure", "users", "rooms",
    };
    uint8_t buf[DISCOVERY_MAX];
    size_t i, n;

    (void)state;
    for (i = 0; i < G_N_ELEMENTS(required); i++) {
        cJSON *obj = cJSON_Parse(good_beacon_json);

        assert_non_null(obj);
        cJSON_DeleteItemFromObjectCaseSensitive(obj, required[i]);
        n = dgram_obj(buf, sizeof(buf), obj);
        assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_FIELD);
        cJSON_Delete(obj);
    }
    /* A probe without its nonce. */
    n = dgram(buf, sizeof(buf), "{\"type\":\"probe\"}");
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_FIELD);
}

/* Fields of the wrong type or out of their rules. */
static void
test_discovery_rejects_wrong_types(void **state)
{
    static const struct {
        const char *key;
        const char *value; /* JSON text */
    } bad[] = {
        {"name", "1"},
        {"name", "\"\""},
        {"name", "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxx\""},
        {"name", "\"\xff\xfe\""},
        {"instance", "\"0123456789ABCDEF0123456789ABCDEF\""},
        {"instance", "\"0123456789abcdef\""},
        {"instance", "12345"},
        {"version", "\"1\""},
        {"version", "1.5"},
        {"version", "0"},
        {"version", "65536"},
        {"version", "1e400"},
        {"endpoints", "{}"},
        {"endpoints", "[]"},
        {"endpoints", "[1]"},
        {"endpoints", "[{\"transport\":\"tcp\"}]"},
        {"endpoints", "[{\"port\":7710}]"},
        {"endpoints", "[{\"transport\":\"TCP\",\"port\":7710}]"},
        {"endpoints", "[{\"transport\":\"tcp\",\"port\":0}]"},
        {"endpoints", "[{\"transport\":\"tcp\",\"port\":65536}]"},
        {"endpoints", "[{\"transport\":\"tcp\",\"port\":\"7710\"}]"},
        {"endpoints", "[{\"transport\":\"tcp\",\"port\":-1}]"},
        {"endpoints", "[{\"transport\":\"averylongname\",\"port\":1}]"},
        {"endpoints", "[{\"transport\":\"a\",\"port\":1},"
                      "{\"transport\":\"a\",\"port\":2},"
                      "{\"transport\":\"a\",\"port\":3},"
                      "{\"transport\":\"a\",\"port\":4},"
                      "{\"transport\":\"a\",\"port\":5},"
                      "{\"transport\":\"a\",\"port\":6},"
                      "{\"transport\":\"a\",\"port\":7},"
                      "{\"transport\":\"a\",\"port\":8},"
                      "{\"transport\":\"a\",\"port\":9}]"},
        {"secure", "true"},
        {"secure", "\"\""},
        {"secure", "\"off!\""},
        {"fingerprint", "\"\""},
        {"fingerprint", "42"},
        {"fingerprint", "\"tab\\there\""},
        {"users", "-1"},
        {"users", "\"3\""},
        {"users", "2.5"},
        {"users", "3000000000"},
        {"rooms", "null"},
        {"rooms", "true"},
        {"nonce", "\"short\""},
        {"nonce", "7"},
        {"nonce", "\"0123456789abcdef!\""},
    };
    uint8_t buf[DISCOVERY_MAX];
    size_t i, n;

    (void)state;
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        cJSON *obj = cJSON_Parse(good_beacon_json);
        cJSON *v = cJSON_Parse(bad[i].value);

        assert_non_null(obj);
        assert_non_null(v);
        cJSON_DeleteItemFromObjectCaseSensitive(obj, bad[i].key);
        cJSON_AddItemToObject(obj, bad[i].key, v);
        n = dgram_obj(buf, sizeof(buf), obj);
        if (decode_why(buf, n) != DISCOVERY_BAD_FIELD)
            fail_msg("%s = %s was accepted", bad[i].key, bad[i].value);
        cJSON_Delete(obj);
    }
}

/* A probe datagram of exactly size bytes, its pad a string or (quote
 * false) a number. */
static size_t
probe_of_size(uint8_t *buf, size_t cap, size_t size, bool quote)
{
    const char *q = quote ? "\"" : "";
    char json[DISCOVERY_MAX];
    size_t base;

    /* The size with a pad of one digit, "1". */
    base = (size_t)g_snprintf(json, sizeof(json),
                              "{\"type\":\"probe\",\"nonce\":"
                              "\"0123456789abcdef\",\"pad\":%s1%s}",
                              q, q) +
           DISCOVERY_HDR;
    assert_true(size > base);
    g_snprintf(json, sizeof(json),
               "{\"type\":\"probe\",\"nonce\":\"0123456789abcdef\","
               "\"pad\":%s1%0*d%s}",
               q, (int)(size - base), 0, q);
    return dgram(buf, cap, json);
}

static void
test_discovery_rejects_small_and_bad_probes(void **state)
{
    uint8_t buf[DISCOVERY_MAX];
    size_t n;

    (void)state;
    /* Valid but unpadded: refused (it would be amplified). */
    n = dgram(buf, sizeof(buf),
              "{\"type\":\"probe\",\"nonce\":\"0123456789abcdef\"}");
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_PROBE_SMALL);
    /* One byte short of the minimum, then exactly it. */
    n = probe_of_size(buf, sizeof(buf), DISCOVERY_PROBE_MIN - 1, true);
    assert_int_equal(n, DISCOVERY_PROBE_MIN - 1);
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_PROBE_SMALL);
    n = probe_of_size(buf, sizeof(buf), DISCOVERY_PROBE_MIN, true);
    assert_int_equal(n, DISCOVERY_PROBE_MIN);
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_NONE);
    /* pad of the wrong type. */
    n = probe_of_size(buf, sizeof(buf), DISCOVERY_PROBE_MIN, false);
    assert_int_equal(n, DISCOVERY_PROBE_MIN);
    assert_int_equal(decode_why(buf, n), DISCOVERY_BAD_FIELD);
}

/* ---- amplification bound ---------------------------------------------- */

static void
test_discovery_reply_bound(void **state)
{
    uint8_t buf[DISCOVERY_MAX];
    struct discovery_beacon b;
    size_t n, i;

    (void)state;
    assert_true(DISCOVERY_MAX <= DISCOVERY_AMP_MAX * DISCOVERY_PROBE_MIN);
    assert_false(discovery_reply_allowed(DISCOVERY_PROBE_MIN - 1, 1));
    assert_true(discovery_reply_allowed(
        DISCOVERY_PROBE_MIN, DISCOVERY_AMP_MAX * DISCOVERY_PROBE_MIN));
    assert_false(discovery_reply_allowed(
        DISCOVERY_PROBE_MIN, DISCOVERY_AMP_MAX * DISCOVERY_PROBE_MIN + 1));
    assert_false(discovery_reply_allowed(DISCOVERY_MAX + 1, 1));
    /* The largest beacon there can be still fits DISCOVERY_MAX: a name of
     * 64 control bytes (each escaped to 6), 8 endpoints, the longest
     * fingerprint and nonce. */
    fill_beacon(&b, "x", "00112233445566778899aabbccddeeff", 65535);
    memset(b.name, '\x01', DISCOVERY_NAME_MAX);
    b.name[DISCOVERY_NAME_MAX] = '\0';
    for (i = 0; i < DISCOVERY_ENDPOINTS_MAX; i++) {
        memset(b.endpoints[i].transport, 'z', DISCOVERY_TRANSPORT_MAX);
        b.endpoints[i].port = 65535;
    }
    b.n_endpoints = DISCOVERY_ENDPOINTS_MAX;
    memset(b.secure, 'z', DISCOVERY_SECURE_MAX);
    memset(b.fingerprint, '"', DISCOVERY_FP_MAX);
    b.users = b.rooms = 2147483647u;
    memset(b.nonce, 'n', DISCOVERY_NONCE_MAX);
    assert_int_equal(discovery_encode_beacon(&b, buf, sizeof(buf), &n),
                     CHAT_OK);
    assert_true(n <= DISCOVERY_MAX);
    assert_true(discovery_reply_allowed(DISCOVERY_PROBE_MIN, n));
}

/* ---- limiter ---------------------------------------------------------- */

static const uint8_t fixed_key[DISCOVERY_KEY_BYTES] = "sockchat-tests!";
static const struct discovery_limits test_limits = {
    .source_rate = 2, .source_burst = 5, .total_rate = 10, .total_burst = 20};

static unsigned
take_all(struct discovery_limiter *l, const struct addr *a, int64_t now,
         unsigned max)
{
    unsigned n = 0;

    while (n < max && discovery_limiter_allow(
                          l, (const struct sockaddr *)&a->ss, a->len, now))
        n++;
    return n;
}

static void
test_discovery_limiter_per_source(void **state)
{
    struct discovery_limiter *l =
        discovery_limiter_new(&test_limits, fixed_key, 0);
    struct addr a = mkaddr("192.0.2.1", 7711), a2 = mkaddr("192.0.2.1", 999);
    struct addr b = mkaddr("2001:db8::1", 7711);

    (void)state;
    assert_int_equal(take_all(l, &a, 0, 100), 5);
    /* Another port of the same host shares the bucket. */
    assert_int_equal(take_all(l, &a2, 0, 100), 0);
    /* Another host does not. */
    assert_int_equal(take_all(l, &b, 0, 100), 5);
    /* 2 a second: one token at 500 ms, refusals take nothing. */
    assert_int_equal(take_all(l, &a, 499, 100), 0);
    assert_int_equal(take_all(l, &a, 500, 100), 1);
    assert_int_equal(take_all(l, &a, 10000, 100), 5);
    discovery_limiter_free(l);
}

static void
test_discovery_limiter_total(void **state)
{
    struct discovery_limiter *l =
        discovery_limiter_new(&test_limits, fixed_key, 0);
    unsigned allowed = 0, i;
    char ip[32];

    (void)state;
    /* Forged sources, each with a full bucket: the total still holds. */
    for (i = 0; i < 500; i++) {
        struct addr a;

        g_snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255,
                   i & 255);
        a = mkaddr(ip, 1);
        allowed += take_all(l, &a, 0, 100);
    }
    assert_int_equal(allowed, 20);
    /* One second later: total_rate more. */
    for (i = 0; i < 500; i++) {
        struct addr a;

        g_snprintf(ip, sizeof(ip), "10.9.%u.%u", i >> 8, i & 255);
        a = mkaddr(ip, 1);
        allowed += take_all(l, &a, 1000, 100);
    }
    assert_int_equal(allowed, 30);
    discovery_limiter_free(l);
}

/* ---- table ------------------------------------------------------------ */

static void
test_discovery_table_dedups_by_instance(void **state)
{
    struct discovery_table *t = discovery_table_new();
    struct discovery_beacon b;
    const struct discovery_seen *s = NULL;
    struct addr v4 = mkaddr("10.0.0.2", 7711), v6 = mkaddr("fe80::2", 7711);

    (void)state;
    fill_beacon(&b, "alpha", "00112233445566778899aabbccddeeff", 7710);
    assert_int_equal(discovery_table_update(t, &b, &v4, 1000, &s),
                     DISCOVERY_EV_NEW);
    /* The same instance by IPv6, and again by IPv4: one server. */
    assert_int_equal(discovery_table_update(t, &b, &v6, 1001, &s),
                     DISCOVERY_EV_NONE);
    assert_int_equal(discovery_table_update(t, &b, &v4, 1002, &s),
                     DISCOVERY_EV_NONE);
    assert_int_equal(discovery_table_size(t), 1);
    assert_non_null(s);
    assert_int_equal(s->n_addrs, 2);
    /* Its counts change. */
    b.users = 4;
    assert_int_equal(discovery_table_update(t, &b, &v4, 1003, &s),
                     DISCOVERY_EV_CHANGED);
    assert_int_equal(s->beacon.users, 4);
    /* A second server on the same host listens on another port. */
    fill_beacon(&b, "beta", "ffeeddccbbaa99887766554433221100", 7720);
    assert_int_equal(discovery_table_update(t, &b, &v4, 1004, &s),
                     DISCOVERY_EV_NEW);
    assert_int_equal(discovery_table_size(t), 2);
    discovery_table_free(t);
}

static void
test_discovery_table_restart_replaces(void **state)
{
    struct discovery_table *t = discovery_table_new();
    struct discovery_beacon b;
    const struct discovery_seen *s = NULL;
    struct addr v4 = mkaddr("10.0.0.2", 7711), other = mkaddr("10.0.0.3", 1);
    GPtrArray *list;

    (void)state;
    fill_beacon(&b, "alpha", "00112233445566778899aabbccddeeff", 7710);
    discovery_table_update(t, &b, &v4, 1000, NULL);
    /* The same port elsewhere is another server. */
    fill_beacon(&b, "alpha", "11112233445566778899aabbccddeeff", 7710);
    assert_int_equal(discovery_table_update(t, &b, &other, 1000, NULL),
                     DISCOVERY_EV_NEW);
    /* A new instance at the first address, same port: a restart. */
    fill_beacon(&b, "alpha", "22222233445566778899aabbccddeeff", 7710);
    assert_int_equal(discovery_table_update(t, &b, &v4, 2000, &s),
                     DISCOVERY_EV_RESTART);
    assert_int_equal(discovery_table_size(t), 2);
    list = discovery_table_list(t);
    assert_int_equal(list->len, 2);
    s = g_ptr_array_index(list, 0);
    assert_string_equal(s->beacon.instance, "22222233445566778899aabbccddeeff");
    g_ptr_array_unref(list);
    discovery_table_free(t);
}

static void
count_gone(const struct discovery_seen *s, void *arg)
{
    (void)s;
    (*(unsigned *)arg)++;
}

static void
test_discovery_table_expiry_follows_beacons(void **state)
{
    struct discovery_table *t = discovery_table_new();
    struct discovery_beacon b;
    const struct discovery_seen *s = NULL;
    struct addr a = mkaddr("10.0.0.2", 7711);
    unsigned gone = 0;

    (void)state;
    fill_beacon(&b, "alpha", "00112233445566778899aabbccddeeff", 7710);
    /* Heard once: the default expiry. */
    discovery_table_update(t, &b, &a, 1000, &s);
    assert_int_equal(discovery_seen_expiry(s), DISCOVERY_EXPIRY_DEFAULT);
    /* Answers to probes are not beacons: no period from them. */
    g_strlcpy(b.nonce, "0123456789abcdef", sizeof(b.nonce));
    discovery_table_update(t, &b, &a, 1500, &s);
    assert_int_equal(discovery_seen_expiry(s), DISCOVERY_EXPIRY_DEFAULT);
    b.nonce[0] = '\0';
    /* Beacons 2 s apart (copies via another path do not count). */
    discovery_table_update(t, &b, &a, 3000, &s);
    discovery_table_update(t, &b, &a, 3010, &s);
    assert_int_equal(discovery_seen_expiry(s), 6000);
    discovery_table_update(t, &b, &a, 4000, &s);
    assert_int_equal(discovery_seen_expiry(s), 6000);
    assert_int_equal(discovery_table_expire(t, 10000, count_gone, &gone), 0);
    assert_int_equal(discovery_table_expire(t, 10001, count_gone, &gone), 1);
    assert_int_equal(gone, 1);
    assert_int_equal(discovery_table_size(t), 0);
    /* Fast beacons: never below the minimum. */
    discovery_table_update(t, &b, &a, 20000, &s);
    discovery_table_update(t, &b, &a, 20200, &s);
    assert_int_equal(discovery_seen_expiry(s), DISCOVERY_EXPIRY_MIN);
    discovery_table_free(t);
}

/* ---- the beacon on loopback ------------------------------------------- */

/* The server, as the beacon sees it. */
struct server {
    struct server_config cfg;
};

void
server_stats(const struct server *s, unsigned *users, unsigned *rooms)
{
    (void)s;
    *users = 7;
    *rooms = 3;
}

void
server_listeners(const struct server *s, const char **names,
                 unsigned short *ports, size_t max, size_t *n)
{
    static const char *const nm[] = {"tcp", "tcp", "unix", "udp"};
    static const unsigned short pt[] = {7710, 7710, 0, 7712};
    size_t i;

    (void)s;
    *n = 0;
    for (i = 0; i < G_N_ELEMENTS(nm) && i < max; i++) {
        names[i] = nm[i];
        ports[i] = pt[i];
        (*n)++;
    }
}

const struct server_config *
server_cfg(const struct server *s)
{
    return &s->cfg;
}

const struct identity *
server_identity(const struct server *s)
{
    (void)s;
    return NULL;
}

struct live {
    struct server srv;
    struct loop *loop;
    struct beacon *b;
    uint16_t port;
};

static int
live_setup(void **state)
{
    struct live *lv = g_new0(struct live, 1);
    struct beacon_config cfg;
    char why[256];
    bool fell_back;

    lv->srv.cfg.name = g_strdup("test \x01 server");
    assert_int_equal(loop_new(NULL, &lv->loop, &fell_back), CHAT_OK);
    beacon_config_defaults(&cfg);
    cfg.port = 0;
    cfg.limits = test_limits;
    assert_int_equal(
        beacon_new(&lv->srv, lv->loop, &cfg, &lv->b, why, sizeof(why)),
        CHAT_OK);
    lv->port = beacon_port(lv->b);
    assert_int_not_equal(lv->port, 0);
    *state = lv;
    return 0;
}

static int
live_teardown(void **state)
{
    struct live *lv = *state;

    beacon_free(lv->b);
    loop_free(lv->loop);
    g_free(lv->srv.cfg.name);
    g_free(lv);
    return 0;
}

/* Run the loop and the beacon's timers until no answer is pending (at most
 * 2 s). */
static void
live_settle(struct live *lv)
{
    int64_t end = g_get_monotonic_time() / 1000 + 2000;
    int w;

    while (g_get_monotonic_time() / 1000 < end) {
        w = beacon_tick(lv->b);
        loop_run_once(lv->loop, w < 0 || w > 50 ? 50 : w);
        if (w < 0 && loop_run_once(lv->loop, 20) == 0 && beacon_tick(lv->b) < 0)
            return;
    }
}

/* A UDP socket bound to ip (an address of lo), non-blocking. */
static int
udp_from(const char *ip)
{
    struct addr a = mkaddr(ip, 0);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 1 << 20;

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    assert_int_equal(bind(fd, (struct sockaddr *)&a.ss, a.len), 0);
    return fd;
}

static void
send_to_beacon(int fd, uint16_t port, const uint8_t *p, size_t n)
{
    struct addr to = mkaddr("127.0.0.1", port);

    (void)sendto(fd, p, n, 0, (struct sockaddr *)&to.ss, to.len);
}

/* Read every datagram waiting on fd: count and bytes. */
static void
drain(int fd, unsigned *count, uint64_t *bytes, char *nonce_seen)
{
    uint8_t buf[DISCOVERY_MAX + 1];
    struct discovery_msg m;
    enum discovery_bad why;
    ssize_t r;

    while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
        (*count)++;
        *bytes += (uint64_t)r;
        assert_int_equal(discovery_decode(buf, (size_t)r, &m, &why), CHAT_OK);
        assert_int_equal(m.kind, DISCOVERY_BEACON);
        if (nonce_seen != NULL)
            g_strlcpy(nonce_seen, m.beacon.nonce, DISCOVERY_NONCE_MAX + 1);
    }
}

static void
test_beacon_answers_a_probe(void **state)
{
    struct live *lv = *state;
    uint8_t buf[DISCOVERY_MAX];
    char nonce[DISCOVERY_NONCE_LEN + 1], seen[DISCOVERY_NONCE_MAX + 1] = "";
    struct beacon_counters c;
    struct pollfd pfd;
    unsigned count = 0;
    uint64_t bytes = 0;
    size_t n;
    int fd = udp_from("127.0.0.1");

    discovery_new_nonce(nonce);
    assert_int_equal(discovery_encode_probe(nonce, buf, sizeof(buf), &n),
                     CHAT_OK);
    send_to_beacon(fd, lv->port, buf, n);
    live_settle(lv);
    pfd.fd = fd;
    pfd.events = POLLIN;
    assert_int_equal(poll(&pfd, 1, 1000), 1);
    drain(fd, &count, &bytes, seen);
    assert_int_equal(count, 1);
    assert_string_equal(seen, nonce);
    beacon_get_counters(lv->b, &c);
    assert_int_equal(c.probes, 1);
    assert_int_equal(c.answers, 1);
    close(fd);
}

static unsigned debug_lines;

static void
count_debug(const gchar *domain, GLogLevelFlags level, const gchar *msg,
            gpointer arg)
{
    (void)domain;
    (void)level;
    (void)msg;
    (void)arg;
    debug_lines++;
}

static void
test_beacon_ignores_junk_and_logs_once_a_second(void **state)
{
    struct live *lv = *state;
    static const char *const junk[] = {
        "{\"type\":\"beacon\"}",
        "[1]",
        "{\"type\":\"nope\"}",
        "{\"type\":\"probe\",\"nonce\":\"0123456789abcdef\"}",
    };
    uint8_t buf[DISCOVERY_MAX + 100];
    struct beacon_counters c;
    unsigned count = 0, i;
    uint64_t bytes = 0;
    guint h, h0;
    size_t n;
    int fd = udp_from("127.0.0.1");

    /* log.h's domain, or GLib's default one when glib.h came first. */
    h = g_log_set_handler("sockchat", G_LOG_LEVEL_DEBUG, count_debug, NULL);
    h0 = g_log_set_handler(NULL, G_LOG_LEVEL_DEBUG, count_debug, NULL);
    debug_lines = 0;
    for (i = 0; i < 400; i++) {
        switch (i % 7) {
        case 0: /* foreign */
            send_to_beacon(fd, lv->port, (const uint8_t *)"GET / HTTP/1.0\r\n",
                           16);
            break;
        case 1: /* short */
            send_to_beacon(fd, lv->port, (const uint8_t *)"SkC", 3);
            break;
        case 2: /* wrong version */
            n = dgram(buf, sizeof(buf), good_beacon_json);
            buf[DISCOVERY_MAGIC_LEN] = 9;
            send_to_beacon(fd, lv->port, buf, n);
            break;
        case 3: /* oversize */
            memset(buf, ' ', sizeof(buf));
            n = dgram(buf, sizeof(buf), "{}");
            send_to_beacon(fd, lv->port, buf, sizeof(buf));
            break;
        default:
            n = dgram(buf, sizeof(buf), junk[i % G_N_ELEMENTS(junk)]);
            send_to_beacon(fd, lv->port, buf, n);
            break;
        }
        if (i % 50 == 49)
            loop_run_once(lv->loop, 0);
    }
    live_settle(lv);
    g_log_remove_handler("sockchat", h);
    g_log_remove_handler(NULL, h0);
    drain(fd, &count, &bytes, NULL);
    assert_int_equal(count, 0);
    beacon_get_counters(lv->b, &c);
    assert_int_equal(c.answers, 0);
    assert_true(c.bad[DISCOVERY_BAD_MAGIC] > 0);
    assert_true(c.bad[DISCOVERY_BAD_SHORT] > 0);
    assert_true(c.bad[DISCOVERY_BAD_VERSION] > 0);
    assert_true(c.bad[DISCOVERY_BAD_OVERSIZE] > 0);
    assert_true(c.bad[DISCOVERY_BAD_FIELD] > 0);
    assert_true(c.bad[DISCOVERY_BAD_JSON] > 0);
    assert_true(c.bad[DISCOVERY_BAD_TYPE] > 0);
    assert_true(c.bad[DISCOVERY_BAD_PROBE_SMALL] > 0);
    /* The whole flood took well under 2 s: at most 3 log lines. */
    assert_true(debug_lines >= 1);
    assert_true(debug_lines <= 3);
    close(fd);
}

/* Probes from nsrc sources, per probes each: what comes back is within the
 * buckets, and never more bytes than DISCOVERY_AMP_MAX times what went in. */
static void
flood(struct live *lv, unsigned nsrc, unsigned per, unsigned *answers,
      uint64_t *bytes_in, uint64_t *bytes_out, int64_t *elapsed_ms)
{
    uint8_t buf[DISCOVERY_MAX];
    char nonce[DISCOVERY_NONCE_LEN + 1], ip[32];
    int *fds = g_new(int, nsrc);
    int64_t start = g_get_monotonic_time() / 1000;
    unsigned i, k;
    size_t n;

    *answers = 0;
    *bytes_in = *bytes_out = 0;
    discovery_new_nonce(nonce);
    assert_int_equal(discovery_encode_probe(nonce, buf, sizeof(buf), &n),
                     CHAT_OK);
    for (i = 0; i < nsrc; i++) {
        g_snprintf(ip, sizeof(ip), "127.0.%u.%u", 1 + i / 200, 2 + i % 200);
        fds[i] = udp_from(ip);
    }
    for (k = 0; k < per; k++) {
        for (i = 0; i < nsrc; i++) {
            send_to_beacon(fds[i], lv->port, buf, n);
            *bytes_in += n;
        }
        /* Let the server read, so that the kernel drops little. */
        for (i = 0; i < 50 && loop_run_once(lv->loop, 0) > 0; i++)
            beacon_tick(lv->b);
        beacon_tick(lv->b);
    }
    live_settle(lv);
    *elapsed_ms = g_get_monotonic_time() / 1000 - start;
    for (i = 0; i < nsrc; i++) {
        drain(fds[i], answers, bytes_out, NULL);
        close(fds[i]);
    }
    g_free(fds);
}

static void
test_beacon_flood_from_one_source(void **state)
{
    struct live *lv = *state;
    struct beacon_counters c;
    unsigned answers;
    uint64_t in, out;
    int64_t ms;

    flood(lv, 1, 2000, &answers, &in, &out, &ms);
    beacon_get_counters(lv->b, &c);
    print_message("one source: %u probes sent, %" G_GUINT64_FORMAT
                  " received (%" G_GUINT64_FORMAT
                  " bytes), %u answers (%" G_GUINT64_FORMAT
                  " bytes) in %" G_GINT64_FORMAT " ms\n",
                  2000u, c.probes, c.bytes_in, answers, out, ms);
    assert_true(c.probes > 100);
    assert_int_equal(answers, c.answers);
    /* Burst 5, then 2 a second. */
    assert_true(answers >= 5);
    assert_true(answers <= 5 + 2 * (ms / 1000 + 1));
    assert_true(out <= DISCOVERY_AMP_MAX * c.bytes_in);
    assert_true(out <= DISCOVERY_AMP_MAX * in);
}

static void
test_beacon_flood_from_many_sources(void **state)
{
    struct live *lv = *state;
    struct beacon_counters c;
    unsigned answers;
    uint64_t in, out;
    int64_t ms;

    flood(lv, 300, 3, &answers, &in, &out, &ms);
    beacon_get_counters(lv->b, &c);
    print_message("300 sources: %" G_GUINT64_FORMAT " probes received, %u "
                  "answers (%" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                  " bytes) in %" G_GINT64_FORMAT " ms\n",
                  c.probes, answers, out, c.bytes_in, ms);
    assert_int_equal(answers, c.answers);
    /* Each source could have 3: the total bucket (20, then 10 a second)
     * holds them all back. */
    assert_true(answers >= 20);
    assert_true(answers <= 20 + 10 * (ms / 1000 + 1));
    assert_true(out <= DISCOVERY_AMP_MAX * c.bytes_in);
}

static void
test_beacon_says_exactly_the_fields(void **state)
{
    struct live *lv = *state;
    uint8_t buf[DISCOVERY_MAX + 1];
    char nonce[DISCOVERY_NONCE_LEN + 1];
    struct discovery_msg m;
    enum discovery_bad why;
    struct pollfd pfd;
    cJSON *obj;
    ssize_t r;
    size_t n;
    int fd = udp_from("127.0.0.1");

    discovery_new_nonce(nonce);
    assert_int_equal(discovery_encode_probe(nonce, buf, sizeof(buf), &n),
                     CHAT_OK);
    send_to_beacon(fd, lv->port, buf, n);
    live_settle(lv);
    pfd.fd = fd;
    pfd.events = POLLIN;
    assert_int_equal(poll(&pfd, 1, 1000), 1);
    r = recv(fd, buf, sizeof(buf), 0);
    assert_true(r > 0);
    assert_int_equal(discovery_decode(buf, (size_t)r, &m, &why), CHAT_OK);
    /* The name made printable JSON, the endpoints without the UNIX socket
     * and without duplicates, the counts of the server. */
    assert_string_equal(m.beacon.name, "test \x01 server");
    assert_int_equal(m.beacon.n_endpoints, 2);
    assert_string_equal(m.beacon.endpoints[0].transport, "tcp");
    assert_int_equal(m.beacon.endpoints[0].port, 7710);
    assert_string_equal(m.beacon.endpoints[1].transport, "udp");
    assert_int_equal(m.beacon.endpoints[1].port, 7712);
    assert_string_equal(m.beacon.secure, "off");
    assert_string_equal(m.beacon.fingerprint, "");
    assert_int_equal(m.beacon.users, 7);
    assert_int_equal(m.beacon.rooms, 3);
    obj = cJSON_ParseWithLength((const char *)buf + DISCOVERY_HDR,
                                (size_t)r - DISCOVERY_HDR);
    assert_non_null(obj);
    /* type nonce name instance version endpoints secure users rooms */
    assert_int_equal(cJSON_GetArraySize(obj), 9);
    cJSON_Delete(obj);
    close(fd);
}

static const char *
fake_fingerprint(void *arg)
{
    (void)arg;
    return "SHA256:6668 7aad f862";
}

/* The policy comes from the server's configuration (read at every send),
 * the fingerprint from the hook. */
static void
test_beacon_announces_policy_and_fingerprint(void **state)
{
    struct live *lv = *state;
    struct beacon *b2 = NULL;
    struct beacon_config cfg;
    uint8_t buf[DISCOVERY_MAX + 1];
    char nonce[DISCOVERY_NONCE_LEN + 1], why[256];
    struct discovery_msg m;
    enum discovery_bad why_bad;
    struct pollfd pfd;
    ssize_t r;
    size_t n;
    int fd = udp_from("127.0.0.1");

    /* A second beacon, on a port of its own, with a fingerprint hook. */
    beacon_config_defaults(&cfg);
    cfg.port = 0;
    cfg.fingerprint = fake_fingerprint;
    assert_int_equal(
        beacon_new(&lv->srv, lv->loop, &cfg, &b2, why, sizeof(why)), CHAT_OK);
    lv->srv.cfg.secure = SECURE_POLICY_REQUIRED;
    discovery_new_nonce(nonce);
    assert_int_equal(discovery_encode_probe(nonce, buf, sizeof(buf), &n),
                     CHAT_OK);
    send_to_beacon(fd, beacon_port(b2), buf, n);
    {
        int64_t end = g_get_monotonic_time() / 1000 + 1000;

        while (g_get_monotonic_time() / 1000 < end) {
            int w = beacon_tick(b2);

            loop_run_once(lv->loop, w < 0 || w > 50 ? 50 : w);
            pfd.fd = fd;
            pfd.events = POLLIN;
            if (poll(&pfd, 1, 0) == 1)
                break;
        }
    }
    r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    assert_true(r > 0);
    assert_int_equal(discovery_decode(buf, (size_t)r, &m, &why_bad), CHAT_OK);
    assert_string_equal(m.beacon.secure, "required");
    assert_string_equal(m.beacon.fingerprint, "SHA256:6668 7aad f862");
    assert_string_equal(m.beacon.nonce, nonce);
    beacon_free(b2);
    close(fd);
}

/* ---- flood helper for it_discovery.sh --------------------------------- */

static int
flood_main(const char *host, const char *port_s, const char *count_s)
{
    uint8_t buf[DISCOVERY_MAX + 1];
    char nonce[DISCOVERY_NONCE_LEN + 1];
    struct addr to;
    struct endpoint ep;
    char why[128];
    size_t n, found = 0;
    unsigned long count = strtoul(count_s, NULL, 10), i;
    uint64_t sent_bytes = 0, got_bytes = 0, sent = 0, got = 0;
    int64_t end;
    ssize_t r;
    int fd, big = 1 << 22;

    memset(&ep, 0, sizeof(ep));
    g_strlcpy(ep.scheme, "udp", sizeof(ep.scheme));
    g_strlcpy(ep.host, host, sizeof(ep.host));
    ep.port = (uint16_t)strtoul(port_s, NULL, 10);
    if (count == 0 || count > 1000000 ||
        addr_resolve(&ep, false, SOCK_DGRAM, &to, 1, &found, why,
                     sizeof(why)) != CHAT_OK) {
        fprintf(stderr, "flood: bad arguments (%s)\n", why);
        return 2;
    }
    fd = socket(to.ss.ss_family, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("flood: socket");
        return 2;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    discovery_new_nonce(nonce);
    discovery_encode_probe(nonce, buf, sizeof(buf), &n);
    for (i = 0; i < count; i++) {
        r = sendto(fd, buf, n, 0, (struct sockaddr *)&to.ss, to.len);
        if (r > 0) {
            sent++;
            sent_bytes += (uint64_t)r;
        }
        /* Pace a little: a real flood of a LAN is not faster than this,
         * and the point is the server's limits, not the kernel's. */
        if (i % 100 == 99)
            g_usleep(1000);
    }
    /* Answers come within 200 ms; wait a full second. */
    end = g_get_monotonic_time() + 1000000;
    while (g_get_monotonic_time() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};

        if (poll(&pfd, 1, 100) <= 0)
            continue;
        r = recv(fd, buf, sizeof(buf), 0);
        if (r > 0) {
            got++;
            got_bytes += (uint64_t)r;
        }
    }
    close(fd);
    printf("sent %" G_GUINT64_FORMAT " bytes_sent %" G_GUINT64_FORMAT
           " answers %" G_GUINT64_FORMAT " bytes_received %" G_GUINT64_FORMAT
           "\n",
           sent, sent_bytes, got, got_bytes);
    return 0;
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discovery_probe_round_trip),
        cmocka_unit_test(test_discovery_beacon_round_trip),
        cmocka_unit_test(test_discovery_encode_rejects_bad_beacons),
        cmocka_unit_test(test_discovery_rejects_short_foreign_version_oversize),
        cmocka_unit_test(test_discovery_rejects_bad_json),
        cmocka_unit_test(test_discovery_rejects_bad_type),
        cmocka_unit_test(test_discovery_rejects_missing_fields),
        cmocka_unit_test(test_discovery_rejects_wrong_types),
        cmocka_unit_test(test_discovery_rejects_small_and_bad_probes),
        cmocka_unit_test(test_discovery_reply_bound),
        cmocka_unit_test(test_discovery_limiter_per_source),
        cmocka_unit_test(test_discovery_limiter_total),
        cmocka_unit_test(test_discovery_table_dedups_by_instance),
        cmocka_unit_test(test_discovery_table_restart_replaces),
        cmocka_unit_test(test_discovery_table_expiry_follows_beacons),
        cmocka_unit_test_setup_teardown(test_beacon_answers_a_probe, live_setup,
                                        live_teardown),
        cmocka_unit_test_setup_teardown(test_beacon_says_exactly_the_fields,
                                        live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(
            test_beacon_ignores_junk_and_logs_once_a_second, live_setup,
            live_teardown),
        cmocka_unit_test_setup_teardown(
            test_beacon_announces_policy_and_fingerprint, live_setup,
            live_teardown),
        cmocka_unit_test_setup_teardown(test_beacon_flood_from_one_source,
                                        live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_beacon_flood_from_many_sources,
                                        live_setup, live_teardown),
    };

    if (sodium_init() < 0)
        return 1;
    if (argc == 5 && strcmp(argv[1], "flood") == 0)
        return flood_main(argv[2], argv[3], argv[4]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
