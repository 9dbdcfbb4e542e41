/* discovery.c - beacon and probe datagrams, the answer limiter, the table
 * of servers seen (discovery.h, doc/DISCOVERY.md).
 *
 * Every datagram is untrusted network input from anyone on the link: the
 * size is checked before anything else, JSON is parsed only from a whole
 * datagram with an explicit length, and every field is type- and
 * range-checked before it is copied into fixed-size storage.
 */
#include "discovery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "err.h"
#include "log.h"

/* ---- codec ------------------------------------------------------------ */

static const char *const bad_names[DISCOVERY_BAD_COUNT] = {
    [DISCOVERY_BAD_NONE] = "none",
    [DISCOVERY_BAD_SHORT] = "short",
    [DISCOVERY_BAD_OVERSIZE] = "oversize",
    [DISCOVERY_BAD_MAGIC] = "foreign",
    [DISCOVERY_BAD_VERSION] = "version",
    [DISCOVERY_BAD_JSON] = "json",
    [DISCOVERY_BAD_TYPE] = "type",
    [DISCOVERY_BAD_FIELD] = "field",
    [DISCOVERY_BAD_PROBE_SMALL] = "small-probe",
};

const char *
discovery_bad_name(enum discovery_bad why)
{
    if ((unsigned)why >= DISCOVERY_BAD_COUNT)
        return NULL;
    return bad_names[why];
}

static bool
nonce_valid(const char *s)
{
    size_t n = strlen(s), i;

    if (n < DISCOVERY_NONCE_MIN || n > DISCOVERY_NONCE_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!g_ascii_isalnum(s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* 1-max characters of a-z. */
static bool
word_valid(const char *s, size_t max)
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
instance_valid(const char *s)
{
    size_t i;

    if (strlen(s) != DISCOVERY_INSTANCE_LEN)
        return false;
    for (i = 0; i < DISCOVERY_INSTANCE_LEN; i++)
        if (!g_ascii_isdigit(s[i]) && (s[i] < 'a' || s[i] > 'f'))
            return false;
    return true;
}

static bool
name_valid(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= DISCOVERY_NAME_MAX && g_utf8_validate(s, -1, NULL);
}

/* "" (none) or 1-DISCOVERY_FP_MAX printable ASCII characters. */
static bool
fingerprint_valid(const char *s)
{
    size_t n = strlen(s), i;

    if (n > DISCOVERY_FP_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

/* A whole number in [lo, hi] from a JSON number. */
static bool
get_whole(const cJSON *it, double lo, double hi, double *out)
{
    double d;

    *out = 0;
    if (!cJSON_IsNumber(it))
        return false;
    d = it->valuedouble;
    /* In range first, so that the cast below is defined. */
    if (!isfinite(d) || d < lo || d > hi || d != (double)(int64_t)d)
        return false;
    *out = d;
    return true;
}

/* Copy the string member key of obj into out (cap bytes with the NUL).
 * false when absent, not a string, or too long. */
static bool
get_str(const cJSON *obj, const char *key, char *out, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    out[0] = '\0';
    if (!cJSON_IsString(it) || it->valuestring == NULL ||
        strlen(it->valuestring) >= cap)
        return false;
    memcpy(out, it->valuestring, strlen(it->valuestring) + 1);
    return true;
}

/* No member twice (which one would count?), and not too many. */
static bool
members_ok(const cJSON *obj)
{
    const cJSON *a, *b;
    size_t n = 0;

    for (a = obj->child; a != NULL; a = a->next) {
        if (a->string == NULL || ++n > DISCOVERY_MEMBERS_MAX)
            return false;
        for (b = a->next; b != NULL; b = b->next)
            if (b->string != NULL && strcmp(a->string, b->string) == 0)
                return false;
    }
    return true;
}

static bool
decode_endpoints(const cJSON *arr, struct discovery_beacon *b)
{
    const cJSON *it;
    double port;

    if (!cJSON_IsArray(arr))
        return false;
    cJSON_ArrayForEach(it, arr)
    {
        struct discovery_endpoint *ep;

        if (b->n_endpoints == DISCOVERY_ENDPOINTS_MAX || !cJSON_IsObject(it))
            return false;
        ep = &b->endpoints[b->n_endpoints];
        if (!get_str(it, "transport", ep->transport, sizeof(ep->transport)) ||
            !word_valid(ep->transport, DISCOVERY_TRANSPORT_MAX))
            return false;
        if (!get_whole(cJSON_GetObjectItemCaseSensitive(it, "port"), 1, 65535,
                       &port))
            return false;
        ep->port = (uint16_t)port;
        b->n_endpoints++;
    }
    return b->n_endpoints > 0;
}

static bool
decode_beacon(const cJSON *obj, struct discovery_beacon *b)
{
    const cJSON *it;
    double d;

    if (!get_str(obj, "name", b->name, sizeof(b->name)) || !name_valid(b->name))
        return false;
    if (!get_str(obj, "instance", b->instance, sizeof(b->instance)) ||
        !instance_valid(b->instance))
        return false;
    if (!get_whole(cJSON_GetObjectItemCaseSensitive(obj, "version"), 1, 65535,
                   &d))
        return false;
    b->version = (unsigned)d;
    if (!decode_endpoints(cJSON_GetObjectItemCaseSensitive(obj, "endpoints"),
                          b))
        return false;
    if (!get_str(obj, "secure", b->secure, sizeof(b->secure)) ||
        !word_valid(b->secure, DISCOVERY_SECURE_MAX))
        return false;
    it = cJSON_GetObjectItemCaseSensitive(obj, "fingerprint");
    if (it != NULL &&
        (!get_str(obj, "fingerprint", b->fingerprint, sizeof(b->fingerprint)) ||
         b->fingerprint[0] == '\0' || !fingerprint_valid(b->fingerprint)))
        return false;
    if (!get_whole(cJSON_GetObjectItemCaseSensitive(obj, "users"), 0,
                   DISCOVERY_COUNT_MAX, &d))
        return false;
    b->users = (uint32_t)d;
    if (!get_whole(cJSON_GetObjectItemCaseSensitive(obj, "rooms"), 0,
                   DISCOVERY_COUNT_MAX, &d))
        return false;
    b->rooms = (uint32_t)d;
    it = cJSON_GetObjectItemCaseSensitive(obj, "nonce");
    if (it != NULL && (!get_str(obj, "nonce", b->nonce, sizeof(b->nonce)) ||
                       !nonce_valid(b->nonce)))
        return false;
    return true;
}

int
discovery_decode(const uint8_t *p, size_t n, struct discovery_msg *out,
                 enum discovery_bad *why)
{
    const char *json, *end = NULL;
    size_t jlen;
    cJSON *root = NULL;
    const cJSON *type;
    int rc = CHAT_EPROTO;

    memset(out, 0, sizeof(*out));
    *why = DISCOVERY_BAD_NONE;
    /* Sizes first, before looking inside. */
    if (n < DISCOVERY_HDR) {
        *why = DISCOVERY_BAD_SHORT;
        return CHAT_EPROTO;
    }
    if (n > DISCOVERY_MAX) {
        *why = DISCOVERY_BAD_OVERSIZE;
        return CHAT_ETOOBIG;
    }
    if (memcmp(p, DISCOVERY_MAGIC, DISCOVERY_MAGIC_LEN) != 0) {
        *why = DISCOVERY_BAD_MAGIC;
        return CHAT_EPROTO;
    }
    if (p[DISCOVERY_MAGIC_LEN] != DISCOVERY_VERSION) {
        *why = DISCOVERY_BAD_VERSION;
        return CHAT_EPROTO;
    }
    json = (const char *)p + DISCOVERY_HDR;
    jlen = n - DISCOVERY_HDR;
    /* A NUL byte inside would let cJSON stop early on text we never saw. */
    if (memchr(json, '\0', jlen) != NULL) {
        *why = DISCOVERY_BAD_JSON;
        goto out;
    }
    root = cJSON_ParseWithLengthOpts(json, jlen, &end, false);
    if (root == NULL || !cJSON_IsObject(root) || !members_ok(root)) {
        *why = DISCOVERY_BAD_JSON;
        goto out;
    }
    /* Only whitespace may follow the object. */
    while (end != NULL && end < json + jlen &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != json + jlen) {
        *why = DISCOVERY_BAD_JSON;
        goto out;
    }
    type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!cJSON_IsString(type) || type->valuestring == NULL) {
        *why = DISCOVERY_BAD_TYPE;
        goto out;
    }
    if (strcmp(type->valuestring, "probe") == 0) {
        const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "pad");

        out->kind = DISCOVERY_PROBE;
        if (!get_str(root, "nonce", out->nonce, sizeof(out->nonce)) ||
            !nonce_valid(out->nonce) || (pad != NULL && !cJSON_IsString(pad))) {
            *why = DISCOVERY_BAD_FIELD;
            goto out;
        }
        /* Refused, not answered: see DISCOVERY_AMP_MAX. */
        if (n < DISCOVERY_PROBE_MIN) {
            *why = DISCOVERY_BAD_PROBE_SMALL;
            goto out;
        }
    } else if (strcmp(type->valuestring, "beacon") == 0) {
        out->kind = DISCOVERY_BEACON;
        if (!decode_beacon(root, &out->beacon)) {
            *why = DISCOVERY_BAD_FIELD;
            goto out;
        }
    } else {
        *why = DISCOVERY_BAD_TYPE;
        goto out;
    }
    rc = CHAT_OK;
out:
    cJSON_Delete(root);
    if (rc != CHAT_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* Header then the JSON text of obj into out. */
static int
encode(const cJSON *obj, uint8_t *out, size_t cap, size_t *len)
{
    char *s = cJSON_PrintUnformatted(obj);
    size_t n;
    int rc = CHAT_ETOOBIG;

    *len = 0;
    if (s == NULL)
        return CHAT_ESYS;
    n = strlen(s);
    if (cap < DISCOVERY_HDR || n > cap - DISCOVERY_HDR ||
        n > DISCOVERY_MAX - DISCOVERY_HDR)
        goto out;
    memcpy(out, DISCOVERY_MAGIC, DISCOVERY_MAGIC_LEN);
    out[DISCOVERY_MAGIC_LEN] = DISCOVERY_VERSION;
    memcpy(out + DISCOVERY_HDR, s, n);
    *len = DISCOVERY_HDR + n;
    rc = CHAT_OK;
out:
    cJSON_free(s);
    return rc;
}

int
discovery_encode_probe(const char *nonce, uint8_t *out, size_t cap, size_t *len)
{
    cJSON *obj = NULL;
    char pad[DISCOVERY_PROBE_MIN];
    size_t bare;
    int rc;

    *len = 0;
    if (nonce == NULL || !nonce_valid(nonce))
        return CHAT_ERANGE;
    if (cap < DISCOVERY_PROBE_MIN)
        return CHAT_ETOOBIG;
    obj = cJSON_CreateObject();
    if (obj == NULL)
        return CHAT_ESYS;
    cJSON_AddStringToObject(obj, "type", "probe");
    cJSON_AddStringToObject(obj, "nonce", nonce);
    cJSON_AddStringToObject(obj, "pad", "");
    rc = encode(obj, out, cap, &bare);
    if (rc != CHAT_OK || bare > DISCOVERY_PROBE_MIN)
        goto out;
    /* Fill "pad" so that the datagram is exactly DISCOVERY_PROBE_MIN. */
    memset(pad, '0', DISCOVERY_PROBE_MIN - bare);
    pad[DISCOVERY_PROBE_MIN - bare] = '\0';
    cJSON_ReplaceItemInObjectCaseSensitive(obj, "pad", cJSON_CreateString(pad));
    rc = encode(obj, out, cap, len);
out:
    cJSON_Delete(obj);
    return rc;
}

static bool
beacon_valid(const struct discovery_beacon *b)
{
    size_t i;

    if (!name_valid(b->name) || !instance_valid(b->instance) ||
        b->version < 1 || b->version > 65535 || b->n_endpoints < 1 ||
        b->n_endpoints > DISCOVERY_ENDPOINTS_MAX ||
        !word_valid(b->secure, DISCOVERY_SECURE_MAX) ||
        !fingerprint_valid(b->fingerprint) ||
        (double)b->users > DISCOVERY_COUNT_MAX ||
        (double)b->rooms > DISCOVERY_COUNT_MAX ||
        (b->nonce[0] != '\0' && !nonce_valid(b->nonce)))
        return false;
    for (i = 0; i < b->n_endpoints; i++)
        if (!word_valid(b->endpoints[i].transport, DISCOVERY_TRANSPORT_MAX) ||
            b->endpoints[i].port == 0)
            return false;
    return true;
}

int
discovery_encode_beacon(const struct discovery_beacon *b, uint8_t *out,
                        size_t cap, size_t *len)
{
    cJSON *obj = NULL, *eps, *ep;
    size_t i;
    int rc;

    *len = 0;
    if (!beacon_valid(b))
        return CHAT_ERANGE;
    obj = cJSON_CreateObject();
    if (obj == NULL)
        return CHAT_ESYS;
    cJSON_AddStringToObject(obj, "type", "beacon");
    if (b->nonce[0] != '\0')
        cJSON_AddStringToObject(obj, "nonce", b->nonce);
    cJSON_AddStringToObject(obj, "name", b->name);
    cJSON_AddStringToObject(obj, "instance", b->instance);
    cJSON_AddNumberToObject(obj, "version", b->version);
    eps = cJSON_AddArrayToObject(obj, "endpoints");
    for (i = 0; eps != NULL && i < b->n_endpoints; i++) {
        ep = cJSON_CreateObject();
        if (ep == NULL)
            break;
        cJSON_AddStringToObject(ep, "transport", b->endpoints[i].transport);
        cJSON_AddNumberToObject(ep, "port", b->endpoints[i].port);
        cJSON_AddItemToArray(eps, ep);
    }
    cJSON_AddStringToObject(obj, "secure", b->secure);
    if (b->fingerprint[0] != '\0')
        cJSON_AddStringToObject(obj, "fingerprint", b->fingerprint);
    cJSON_AddNumberToObject(obj, "users", b->users);
    cJSON_AddNumberToObject(obj, "rooms", b->rooms);
    rc = encode(obj, out, cap, len);
    cJSON_Delete(obj);
    return rc;
}

bool
discovery_reply_allowed(size_t probe_len, size_t reply_len)
{
    if (probe_len < DISCOVERY_PROBE_MIN || probe_len > DISCOVERY_MAX)
        return false;
    /* probe_len <= DISCOVERY_MAX: the product cannot overflow. */
    return reply_len <= probe_len * DISCOVERY_AMP_MAX;
}

static void
random_hex(char *out, size_t digits)
{
    uint8_t raw[DISCOVERY_NONCE_MAX / 2];

    randombytes_buf(raw, digits / 2);
    sodium_bin2hex(out, digits + 1, raw, digits / 2);
}

void
discovery_new_nonce(char out[DISCOVERY_NONCE_LEN + 1])
{
    random_hex(out, DISCOVERY_NONCE_LEN);
}

void
discovery_new_instance(char out[DISCOVERY_INSTANCE_LEN + 1])
{
    random_hex(out, DISCOVERY_INSTANCE_LEN);
}

/* ---- limiter ---------------------------------------------------------- */

struct bucket {
    double tokens;
    int64_t last_ms;
};

struct discovery_limiter {
    struct discovery_limits lim;
    uint8_t key[crypto_shorthash_KEYBYTES];
    struct bucket total;
    struct bucket slots[DISCOVERY_SLOTS];
};

static void
bucket_refill(struct bucket *b, double rate, double burst, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        b->last_ms = now_ms;
    }
    if (b->tokens > burst)
        b->tokens = burst;
}

struct discovery_limiter *
discovery_limiter_new(const struct discovery_limits *lim, const uint8_t *key,
                      int64_t now_ms)
{
    struct discovery_limiter *l = g_new0(struct discovery_limiter, 1);
    size_t i;

    G_STATIC_ASSERT(DISCOVERY_KEY_BYTES == crypto_shorthash_KEYBYTES);
    l->lim = *lim;
    if (key != NULL)
        memcpy(l->key, key, sizeof(l->key));
    else
        randombytes_buf(l->key, sizeof(l->key));
    l->total.tokens = lim->total_burst;
    l->total.last_ms = now_ms;
    for (i = 0; i < DISCOVERY_SLOTS; i++) {
        l->slots[i].tokens = lim->source_burst;
        l->slots[i].last_ms = now_ms;
    }
    return l;
}

void
discovery_limiter_free(struct discovery_limiter *l)
{
    if (l == NULL)
        return;
    sodium_memzero(l->key, sizeof(l->key));
    g_free(l);
}

/* The bucket of src's IP address (scope included, port excluded). */
static struct bucket *
limiter_slot(struct discovery_limiter *l, const struct sockaddr *src,
             socklen_t len)
{
    uint8_t in[1 + 16 + 4], h[crypto_shorthash_BYTES];
    size_t n = 0;
    uint64_t v;

    memset(in, 0, sizeof(in));
    if (src->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)src;

        in[0] = 4;
        memcpy(in + 1, &s4->sin_addr, 4);
        n = 5;
    } else if (src->sa_family == AF_INET6 &&
               len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)src;

        in[0] = 6;
        memcpy(in + 1, &s6->sin6_addr, 16);
        memcpy(in + 17, &s6->sin6_scope_id, 4);
        n = 21;
    } else {
        n = 1; /* anything else shares one bucket */
    }
    crypto_shorthash(h, in, n, l->key);
    memcpy(&v, h, sizeof(v));
    return &l->slots[v % DISCOVERY_SLOTS];
}

bool
discovery_limiter_allow(struct discovery_limiter *l, const struct sockaddr *src,
                        socklen_t len, int64_t now_ms)
{
    struct bucket *b = limiter_slot(l, src, len);

    bucket_refill(b, l->lim.source_rate, l->lim.source_burst, now_ms);
    bucket_refill(&l->total, l->lim.total_rate, l->lim.total_burst, now_ms);
    if (b->tokens < 1.0 || l->total.tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    l->total.tokens -= 1.0;
    return true;
}

/* ---- table ------------------------------------------------------------ */

#define GAP_MIN_MS 100 /* closer beacons are copies via another path */

struct discovery_table {
    GPtrArray *seen; /* struct discovery_seen *, owned */
};

struct discovery_table *
discovery_table_new(void)
{
    struct discovery_table *t = g_new0(struct discovery_table, 1);

    t->seen = g_ptr_array_new_with_free_func(g_free);
    return t;
}

void
discovery_table_free(struct discovery_table *t)
{
    if (t == NULL)
        return;
    g_ptr_array_free(t->seen, TRUE);
    g_free(t);
}

size_t
discovery_table_size(const struct discovery_table *t)
{
    return t->seen->len;
}

/* src with its port zeroed, so that addresses compare by host. */
static void
host_of(const struct addr *src, struct addr *out)
{
    *out = *src;
    if (out->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->ss)->sin_port = 0;
    else if (out->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = 0;
}

static bool
same_host(const struct addr *a, const struct addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr,
                      &((const struct sockaddr_in *)&b->ss)->sin_addr,
                      sizeof(struct in_addr)) == 0;
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;

        return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) ==
                   0 &&
               x->sin6_scope_id == y->sin6_scope_id;
    }
    return false;
}

static bool
seen_at(const struct discovery_seen *s, const struct addr *host)
{
    size_t i;

    for (i = 0; i < s->n_addrs; i++)
        if (same_host(&s->addrs[i], host))
            return true;
    return false;
}

static bool
share_endpoint(const struct discovery_beacon *a,
               const struct discovery_beacon *b)
{
    size_t i, j;

    for (i = 0; i < a->n_endpoints; i++)
        for (j = 0; j < b->n_endpoints; j++)
            if (a->endpoints[i].port == b->endpoints[j].port &&
                strcmp(a->endpoints[i].transport, b->endpoints[j].transport) ==
                    0)
                return true;
    return false;
}

/* Do a and b differ in what a listing shows? (nonce aside) */
static bool
beacon_differs(const struct discovery_beacon *a,
               const struct discovery_beacon *b)
{
    size_t i;

    if (strcmp(a->name, b->name) != 0 || a->version != b->version ||
        strcmp(a->secure, b->secure) != 0 ||
        strcmp(a->fingerprint, b->fingerprint) != 0 || a->users != b->users ||
        a->rooms != b->rooms || a->n_endpoints != b->n_endpoints)
        return true;
    for (i = 0; i < a->n_endpoints; i++)
        if (a->endpoints[i].port != b->endpoints[i].port ||
            strcmp(a->endpoints[i].transport, b->endpoints[i].transport) != 0)
            return true;
    return false;
}

static void
seen_heard(struct discovery_seen *s, const struct discovery_beacon *b,
           const struct addr *host, int64_t now_ms)
{
    bool unsolicited = b->nonce[0] == '\0';

    s->beacon = *b;
    s->beacon.nonce[0] = '\0';
    s->last_ms = now_ms;
    if (!unsolicited)
        s->answered = true;
    if (!seen_at(s, host) && s->n_addrs < DISCOVERY_SEEN_ADDRS)
        s->addrs[s->n_addrs++] = *host;
    if (!unsolicited)
        return;
    if (s->last_beacon_ms != 0) {
        int64_t gap = now_ms - s->last_beacon_ms;

        if (gap < GAP_MIN_MS)
            return;
        memmove(&s->gaps[1], &s->gaps[0], sizeof(s->gaps) - sizeof(s->gaps[0]));
        s->gaps[0] = gap;
        if (s->n_gaps < G_N_ELEMENTS(s->gaps))
            s->n_gaps++;
    }
    s->last_beacon_ms = now_ms;
}

enum discovery_event
discovery_table_update(struct discovery_table *t,
                       const struct discovery_beacon *b, const struct addr *src,
                       int64_t now_ms, const struct discovery_seen **seen)
{
    struct discovery_seen *s = NULL;
    struct addr host;
    enum discovery_event ev = DISCOVERY_EV_NEW;
    guint i;

    if (seen != NULL)
        *seen = NULL;
    host_of(src, &host);
    for (i = 0; i < t->seen->len; i++) {
        s = g_ptr_array_index(t->seen, i);
        if (strcmp(s->beacon.instance, b->instance) == 0) {
            ev = beacon_differs(&s->beacon, b) ? DISCOVERY_EV_CHANGED
                                               : DISCOVERY_EV_NONE;
            seen_heard(s, b, &host, now_ms);
            if (seen != NULL)
                *seen = s;
            return ev;
        }
    }
    /* A new instance: it replaces a server it restarted. */
    for (i = t->seen->len; i-- > 0;) {
        s = g_ptr_array_index(t->seen, i);
        if (seen_at(s, &host) && share_endpoint(&s->beacon, b)) {
            g_ptr_array_remove_index(t->seen, i);
            ev = DISCOVERY_EV_RESTART;
        }
    }
    if (t->seen->len >= DISCOVERY_TABLE_MAX)
        return DISCOVERY_EV_NONE;
    s = g_new0(struct discovery_seen, 1);
    s->first_ms = now_ms;
    seen_heard(s, b, &host, now_ms);
    g_ptr_array_add(t->seen, s);
    if (seen != NULL)
        *seen = s;
    return ev;
}

int64_t
discovery_seen_expiry(const struct discovery_seen *s)
{
    int64_t period = 0, e;
    unsigned i;

    for (i = 0; i < s->n_gaps; i++)
        if (s->gaps[i] > period)
            period = s->gaps[i];
    if (period == 0)
        return DISCOVERY_EXPIRY_DEFAULT;
    e = 3 * period;
    if (e < DISCOVERY_EXPIRY_MIN)
        e = DISCOVERY_EXPIRY_MIN;
    if (e > DISCOVERY_EXPIRY_MAX)
        e = DISCOVERY_EXPIRY_MAX;
    return e;
}

size_t
discovery_table_expire(struct discovery_table *t, int64_t now_ms,
                       discovery_gone_fn gone, void *arg)
{
    size_t n = 0;
    guint i;

    for (i = t->seen->len; i-- > 0;) {
        const struct discovery_seen *s = g_ptr_array_index(t->seen, i);

        if (now_ms - s->last_ms <= discovery_seen_expiry(s))
            continue;
        if (gone != NULL)
            gone(s, arg);
        g_ptr_array_remove_index(t->seen, i);
        n++;
    }
    return n;
}

static int
seen_cmp(gconstpointer pa, gconstpointer pb)
{
    const struct discovery_seen *a = *(const struct discovery_seen *const *)pa;
    const struct discovery_seen *b = *(const struct discovery_seen *const *)pb;
    char x[ADDR_STR_MAX], y[ADDR_STR_MAX];
    int c = strcmp(a->beacon.name, b->beacon.name);

    if (c != 0)
        return c;
    addr_format(&a->addrs[0], x, sizeof(x));
    addr_format(&b->addrs[0], y, sizeof(y));
    c = strcmp(x, y);
    return c != 0 ? c : strcmp(a->beacon.instance, b->beacon.instance);
}

GPtrArray *
discovery_table_list(const struct discovery_table *t)
{
    GPtrArray *out = g_ptr_array_sized_new(t->seen->len);
    guint i;

    for (i = 0; i < t->seen->len; i++)
        g_ptr_array_add(out, g_ptr_array_index(t->seen, i));
    g_ptr_array_sort(out, seen_cmp);
    return out;
}

/* ---- sockets ---------------------------------------------------------- */

static int
sock_fail(char *why, size_t why_len, const char *what, const char *where)
{
    g_snprintf(why, why_len, "%s %s: %s", what, where, g_strerror(errno));
    return CHAT_ESYS;
}

static void
set_int(int fd, int level, int name, const char *what, int v)
{
    /* Each of these is an improvement, none is required to work. */
    if (setsockopt(fd, level, name, &v, sizeof(v)) < 0)
        log_debug("setsockopt(fd=%d, %s): %s", fd, what, g_strerror(errno));
    trace_sock("setsockopt(fd=%d, %s=%d)", fd, what, v);
}

int
discovery_socket(const char *host, uint16_t port, bool shared, int *fd,
                 char *why, size_t why_len)
{
    struct addr a;
    char where[ADDR_STR_MAX];
    int s = -1, rc = CHAT_EADDR, one = 1;

    *fd = -1;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&a.ss)->sin_addr) ==
        1) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a.ss;

        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        a.len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, host,
                         &((struct sockaddr_in6 *)&a.ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.ss;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        a.len = sizeof(*s6);
    } else {
        g_snprintf(why, why_len, "not a numeric address: %s", host);
        return CHAT_EADDR;
    }
    addr_format(&a, where, sizeof(where));
    s = socket(a.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    trace_sock("socket(%s, SOCK_DGRAM) = %d",
               a.ss.ss_family == AF_INET ? "AF_INET" : "AF_INET6", s);
    if (s < 0) {
        rc = sock_fail(why, why_len, "socket for", where);
        goto out;
    }
    if (shared) {
        set_int(s, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", one);
        set_int(s, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", one);
    }
    if (a.ss.ss_family == AF_INET6) {
        /* Explicit: the IPv4 socket, if any, is a separate one. */
        if (setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
            rc = sock_fail(why, why_len, "IPV6_V6ONLY on", where);
            goto out;
        }
        /* Link-local scope: never past the first router. */
        set_int(s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", 1);
        /* Loop our own datagrams back: a client on this host hears us. */
        set_int(s, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", 1);
    } else {
        set_int(s, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", one);
    }
    if (bind(s, (const struct sockaddr *)&a.ss, a.len) < 0) {
        trace_sock("bind(fd=%d, %s) = -1 %s", s, where, g_strerror(errno));
        rc = sock_fail(why, why_len, "bind", where);
        goto out;
    }
    trace_sock("bind(fd=%d, %s) = 0", s, where);
    *fd = s;
    s = -1;
    rc = CHAT_OK;
out:
    discovery_close(s);
    return rc;
}

uint16_t
discovery_socket_port(int fd)
{
    struct addr a;

    memset(&a, 0, sizeof(a));
    a.len = sizeof(a.ss);
    if (getsockname(fd, (struct sockaddr *)&a.ss, &a.len) < 0)
        return 0;
    return addr_port(&a);
}

void
discovery_close(int fd)
{
    int saved = errno;

    if (fd < 0)
        return;
    close(fd);
    trace_sock("close(fd=%d)", fd);
    errno = saved;
}

static bool
target_known(const GArray *out, const struct discovery_target *t)
{
    guint i;

    for (i = 0; i < out->len; i++) {
        const struct discovery_target *o =
            &g_array_index(out, struct discovery_target, i);

        if (o->dst.len == t->dst.len &&
            memcmp(&o->dst.ss, &t->dst.ss, t->dst.len) == 0)
            return true;
    }
    return false;
}

int
discovery_lan_targets(uint16_t port, GArray *out)
{
    struct ifaddrs *ifs = NULL, *ifa;
    struct discovery_target t;

    g_array_set_size(out, 0);
    if (getifaddrs(&ifs) < 0)
        return CHAT_ESYS;
    for (ifa = ifs; ifa != NULL; ifa = ifa->ifa_next) {
        if (ifa->ifa_addr == NULL || !(ifa->ifa_flags & IFF_UP) ||
            (ifa->ifa_flags & IFF_LOOPBACK))
            continue;
        memset(&t, 0, sizeof(t));
        g_strlcpy(t.ifname, ifa->ifa_name, sizeof(t.ifname));
        if (ifa->ifa_addr->sa_family == AF_INET &&
            (ifa->ifa_flags & IFF_BROADCAST) && ifa->ifa_broadaddr != NULL &&
            ifa->ifa_broadaddr->sa_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&t.dst.ss;

            memcpy(s4, ifa->ifa_broadaddr, sizeof(*s4));
            s4->sin_port = htons(port);
            t.dst.len = sizeof(*s4);
        } else if (ifa->ifa_addr->sa_family == AF_INET6 &&
                   (ifa->ifa_flags & IFF_MULTICAST)) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t.dst.ss;

            t.ifindex = if_nametoindex(ifa->ifa_name);
            if (t.ifindex == 0)
                continue;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons(port);
            inet_pton(AF_INET6, DISCOVERY_GROUP6, &s6->sin6_addr);
            s6->sin6_scope_id = t.ifindex;
            t.dst.len = sizeof(*s6);
        } else {
            continue;
        }
        /* An interface with several addresses is one target. */
        if (!target_known(out, &t))
            g_array_append_val(out, t);
    }
    freeifaddrs(ifs);
    return CHAT_OK;
}

int
discovery_join6(int fd, unsigned ifindex)
{
    struct ipv6_mreq mr;
    int rc;

    memset(&mr, 0, sizeof(mr));
    inet_pton(AF_INET6, DISCOVERY_GROUP6, &mr.ipv6mr_multiaddr);
    mr.ipv6mr_interface = ifindex;
    rc = setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr, sizeof(mr));
    if (rc < 0 && errno == EADDRINUSE)
        return CHAT_OK; /* joined already */
    trace_sock("setsockopt(fd=%d, IPV6_JOIN_GROUP %s if %u) = %d", fd,
               DISCOVERY_GROUP6, ifindex, rc);
    return rc < 0 ? CHAT_ESYS : CHAT_OK;
}

ssize_t
discovery_send_to(int fd, const struct discovery_target *t, const void *p,
                  size_t n)
{
    char where[ADDR_STR_MAX];
    ssize_t r;

    if (t->dst.ss.ss_family == AF_INET6 &&
        IN6_IS_ADDR_MULTICAST(
            &((const struct sockaddr_in6 *)&t->dst.ss)->sin6_addr)) {
        unsigned idx = t->ifindex;

        if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx, sizeof(idx)) <
            0)
            return CHAT_ESYS;
    }
    r = sendto(fd, p, n, 0, (const struct sockaddr *)&t->dst.ss, t->dst.len);
    if (log_trace_sockets()) {
        addr_format(&t->dst, where, sizeof(where));
        trace_sock("sendto(fd=%d, %zu bytes, %s%s%s) = %zd%s%s", fd, n, where,
                   t->ifname[0] ? " via " : "", t->ifname, r, r < 0 ? " " : "",
                   r < 0 ? g_strerror(errno) : "");
    }
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? CHAT_EAGAIN
                                                       : CHAT_ESYS;
    return r;
}

int
discovery_recv(int fd, void *p, size_t cap, size_t *n, struct addr *from)
{
    ssize_t r;

    *n = 0;
    memset(from, 0, sizeof(*from));
    from->len = sizeof(from->ss);
    /* MSG_TRUNC: the real size, so that an oversize datagram is known. */
    r = recvfrom(fd, p, cap, MSG_TRUNC, (struct sockaddr *)&from->ss,
                 &from->len);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? CHAT_EAGAIN
                                                       : CHAT_ESYS;
    if (log_trace_sockets()) {
        char where[ADDR_STR_MAX];

        addr_format(from, where, sizeof(where));
        trace_sock("recvfrom(fd=%d) = %zd from %s", fd, r, where);
    }
    *n = (size_t)r;
    return CHAT_OK;
}
