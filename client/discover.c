/* discover.c - probe for servers, listen for beacons, list what answered.
 *
 * Sockets: a probe socket per family on an ephemeral port (answers come
 * back to it by unicast, and to no other program), and a listening socket
 * per family on the discovery port itself, shared with every other client
 * and server of the host, for the periodic beacons of servers run with
 * --lan. The IPv6 listening socket joins DISCOVERY_GROUP6 on each
 * interface. Probes go out twice, DISCOVER_REPROBE_MS apart, with the same
 * nonce: an answer that does not carry it is not ours and is dropped.
 */
#include "discover.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "err.h"
#include "identity.h"
#include "log.h"
#include "loop.h"
#include "ui.h"

#define DISCOVER_READS_PER_WAKE 64
#define DISCOVER_PICK_TRIES 3

enum { FD_PROBE4, FD_PROBE6, FD_LISTEN4, FD_LISTEN6, FD_COUNT };

typedef void (*discover_event_fn)(enum discovery_event ev,
                                  const struct discovery_seen *s, void *arg);

struct discover {
    struct discover_opts o;
    struct loop *loop;
    int fds[FD_COUNT];
    struct discovery_table *table;
    char nonce[DISCOVERY_NONCE_LEN + 1];
    GArray *targets; /* struct discovery_target */
    unsigned ignored;
    discover_event_fn cb;
    void *cb_arg;
};

static int64_t
now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

/* ---- what to show ----------------------------------------------------- */

const char *
discover_trust_name(enum discover_trust t)
{
    switch (t) {
    case DISCOVER_TRUST_NONE:
        return "none";
    case DISCOVER_TRUST_UNCHECKED:
        return "unchecked";
    case DISCOVER_TRUST_PINNED:
        return "pinned";
    case DISCOVER_TRUST_NEW:
        return "new";
    case DISCOVER_TRUST_MISMATCH:
        return "mismatch";
    case DISCOVER_TRUST_MOVED:
        return "moved";
    }
    return "unchecked";
}

/* Lower is better: what a user on another host could reach first. */
static int
addr_rank(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;

        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127 ? 2 : 0;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;

        if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
            return 3;
        if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr))
            return 4;
        return 1;
    }
    return 5;
}

static const struct addr *
best_addr(const struct discovery_seen *s)
{
    const struct addr *best = &s->addrs[0];
    size_t i;

    for (i = 1; i < s->n_addrs; i++)
        if (addr_rank(&s->addrs[i]) < addr_rank(best))
            best = &s->addrs[i];
    return best;
}

static void
host_string(const struct addr *a, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?", ifname[IF_NAMESIZE];

    if (a->ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr,
                  host, sizeof(host));
        g_strlcpy(out, host, n);
        return;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;

        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        /* A link-local address means nothing without its interface. */
        if (s6->sin6_scope_id != 0 &&
            if_indextoname(s6->sin6_scope_id, ifname) != NULL)
            g_snprintf(out, n, "%s%%%s", host, ifname);
        else if (s6->sin6_scope_id != 0)
            g_snprintf(out, n, "%s%%%u", host, s6->sin6_scope_id);
        else
            g_strlcpy(out, host, n);
        return;
    }
    g_strlcpy(out, "?", n);
}

void
discover_host(const struct discovery_seen *s, char *out, size_t n)
{
    host_string(best_addr(s), out, n);
}

static const struct discovery_endpoint *
best_endpoint(const struct discovery_seen *s)
{
    size_t i;

    for (i = 0; i < s->beacon.n_endpoints; i++)
        if (strcmp(s->beacon.endpoints[i].transport, "tcp") == 0)
            return &s->beacon.endpoints[i];
    return &s->beacon.endpoints[0];
}

void
discover_url(const struct discovery_seen *s, char *out, size_t n)
{
    const struct discovery_endpoint *ep = best_endpoint(s);
    char host[ADDR_HOST_MAX];

    discover_host(s, host, sizeof(host));
    if (strchr(host, ':') != NULL)
        g_snprintf(out, n, "%s://[%s]:%u", ep->transport, host, ep->port);
    else
        g_snprintf(out, n, "%s://%s:%u", ep->transport, host, ep->port);
}

enum discover_trust
discover_trust(const struct discovery_seen *s, const char *known_path,
               struct identity_known_entry *pinned)
{
    struct identity_error err;
    enum identity_known res = IDENTITY_KNOWN_NEW;
    char host[ADDR_HOST_MAX];
    unsigned count = 0;

    if (pinned != NULL)
        memset(pinned, 0, sizeof(*pinned));
    if (s->beacon.fingerprint[0] == '\0')
        return DISCOVER_TRUST_NONE;
    if (known_path == NULL)
        return DISCOVER_TRUST_UNCHECKED;
    discover_host(s, host, sizeof(host));
    if (identity_known_lookup(known_path, host, best_endpoint(s)->port,
                              s->beacon.fingerprint, &res, NULL,
                              &err) != CHAT_OK) {
        log_debug("%s: %s", known_path, err.text);
        return DISCOVER_TRUST_UNCHECKED;
    }
    switch (res) {
    case IDENTITY_KNOWN_MATCH:
        return DISCOVER_TRUST_PINNED;
    case IDENTITY_KNOWN_MISMATCH:
        /* Whatever is pinned elsewhere: this address has another key. */
        return DISCOVER_TRUST_MISMATCH;
    case IDENTITY_KNOWN_NEW:
        break;
    }
    /* Nothing pinned here: a pinned server that got a new address? */
    if (identity_known_find_fp(known_path, s->beacon.fingerprint, &count,
                               pinned, &err) != CHAT_OK) {
        log_debug("%s: %s", known_path, err.text);
        return DISCOVER_TRUST_UNCHECKED;
    }
    return count > 0 ? DISCOVER_TRUST_MOVED : DISCOVER_TRUST_NEW;
}

/* "10.0.0.5:7710", "[fe80::1%eth0]:7710": where a key is pinned. */
static void
pinned_string(const struct identity_known_entry *e, GString *out)
{
    bool v6 =
        strchr(e->host, ':') != NULL && !g_str_has_prefix(e->host, "unix:");

    g_string_append(out, v6 ? "[" : "");
    /* The file is the user's, but it is still printed to a terminal. */
    ui_put_clean(out, e->host);
    g_string_append_printf(out, "%s:%u", v6 ? "]" : "", e->port);
}

static void
format_json(const struct discovery_seen *s, const struct discover_opts *o,
            const char *event, const char *host, const char *url, GString *out)
{
    cJSON *obj = cJSON_CreateObject(), *arr, *ep;
    struct identity_known_entry pinned;
    enum discover_trust tr;
    char other[ADDR_HOST_MAX], *txt;
    size_t i;

    if (obj == NULL)
        return;
    if (event != NULL)
        cJSON_AddStringToObject(obj, "event", event);
    cJSON_AddStringToObject(obj, "name", s->beacon.name);
    cJSON_AddStringToObject(obj, "address", host);
    arr = cJSON_AddArrayToObject(obj, "addresses");
    for (i = 0; arr != NULL && i < s->n_addrs; i++) {
        host_string(&s->addrs[i], other, sizeof(other));
        cJSON_AddItemToArray(arr, cJSON_CreateString(other));
    }
    cJSON_AddStringToObject(obj, "url", url);
    cJSON_AddStringToObject(obj, "instance", s->beacon.instance);
    cJSON_AddNumberToObject(obj, "version", s->beacon.version);
    arr = cJSON_AddArrayToObject(obj, "endpoints");
    for (i = 0; arr != NULL && i < s->beacon.n_endpoints; i++) {
        ep = cJSON_CreateObject();
        if (ep == NULL)
            break;
        cJSON_AddStringToObject(ep, "transport",
                                s->beacon.endpoints[i].transport);
        cJSON_AddNumberToObject(ep, "port", s->beacon.endpoints[i].port);
        cJSON_AddItemToArray(arr, ep);
    }
    cJSON_AddStringToObject(obj, "encryption", s->beacon.secure);
    if (s->beacon.fingerprint[0] != '\0')
        cJSON_AddStringToObject(obj, "fingerprint", s->beacon.fingerprint);
    else
        cJSON_AddNullToObject(obj, "fingerprint");
    tr = discover_trust(s, o->known_servers, &pinned);
    cJSON_AddStringToObject(obj, "trust", discover_trust_name(tr));
    if (tr == DISCOVER_TRUST_MOVED && (ep = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(ep, "host", pinned.host);
        cJSON_AddNumberToObject(ep, "port", pinned.port);
        cJSON_AddItemToObject(obj, "pinned_as", ep);
    } else {
        cJSON_AddNullToObject(obj, "pinned_as");
    }
    cJSON_AddNumberToObject(obj, "users", s->beacon.users);
    cJSON_AddNumberToObject(obj, "rooms", s->beacon.rooms);
    txt = cJSON_PrintUnformatted(obj);
    if (txt != NULL) {
        g_string_append(out, txt);
        g_string_append_c(out, '\n');
        cJSON_free(txt);
    }
    cJSON_Delete(obj);
}

void
discover_format(const struct discovery_seen *s, const struct discover_opts *o,
                const char *event, GString *out)
{
    char host[ADDR_HOST_MAX], url[ADDR_URL_MAX];
    struct identity_known_entry pinned;
    enum discover_trust tr;
    size_t i;

    discover_host(s, host, sizeof(host));
    discover_url(s, url, sizeof(url));
    if (o->json) {
        format_json(s, o, event, host, url, out);
        return;
    }
    if (event != NULL)
        g_string_append_printf(out, "%s ", event);
    /* Everything in a beacon is someone's claim: no raw control bytes. */
    ui_put_clean(out, s->beacon.name);
    g_string_append_printf(out, "  %s  ", host);
    for (i = 0; i < s->beacon.n_endpoints; i++)
        g_string_append_printf(out, "%s%s:%u", i ? "," : "",
                               s->beacon.endpoints[i].transport,
                               s->beacon.endpoints[i].port);
    g_string_append_printf(out,
                           "  encryption=%s  fingerprint=", s->beacon.secure);
    tr = discover_trust(s, o->known_servers, &pinned);
    if (tr == DISCOVER_TRUST_NONE) {
        g_string_append(out, "-");
    } else if (tr == DISCOVER_TRUST_MOVED) {
        g_string_append_printf(out, "%s (moved: pinned as ",
                               s->beacon.fingerprint);
        pinned_string(&pinned, out);
        g_string_append_c(out, ')');
    } else {
        g_string_append_printf(out, "%s (%s)", s->beacon.fingerprint,
                               discover_trust_name(tr));
    }
    g_string_append_printf(out, "  users=%u  rooms=%u\n", s->beacon.users,
                           s->beacon.rooms);
}

/* ---- sockets ---------------------------------------------------------- */

static void discover_free(struct discover *d);

static void
on_read(struct loop *l, int fd, unsigned events, void *arg)
{
    struct discover *d = arg;
    uint8_t buf[DISCOVERY_MAX + 1];
    struct discovery_msg m;
    enum discovery_bad why;
    const struct discovery_seen *s;
    enum discovery_event ev;
    struct addr from;
    size_t n;
    int i;

    (void)l;
    (void)events;
    for (i = 0; i < DISCOVER_READS_PER_WAKE; i++) {
        if (discovery_recv(fd, buf, sizeof(buf), &n, &from) != CHAT_OK)
            break;
        if (discovery_decode(buf, n, &m, &why) != CHAT_OK ||
            m.kind != DISCOVERY_BEACON ||
            (m.beacon.nonce[0] != '\0' &&
             strcmp(m.beacon.nonce, d->nonce) != 0)) {
            /* Probes (ours, looped back, or other clients'), junk, and
             * answers to somebody else. */
            d->ignored++;
            continue;
        }
        ev = discovery_table_update(d->table, &m.beacon, &from, now_ms(), &s);
        if (ev != DISCOVERY_EV_NONE && s != NULL && d->cb != NULL)
            d->cb(ev, s, d->cb_arg);
    }
}

static int
open_socket(struct discover *d, int slot, const char *host, uint16_t port,
            bool shared, char *why, size_t why_len)
{
    int fd = -1, rc;

    rc = discovery_socket(host, port, shared, &fd, why, why_len);
    if (rc != CHAT_OK)
        return rc;
    rc = loop_add_fd(d->loop, fd, LOOP_READ, on_read, d);
    if (rc != CHAT_OK) {
        g_snprintf(why, why_len, "cannot watch a socket: %s",
                   chat_strerror(rc));
        discovery_close(fd);
        return rc;
    }
    d->fds[slot] = fd;
    return CHAT_OK;
}

static int
discover_new(const struct discover_opts *o, discover_event_fn cb, void *arg,
             struct discover **out, char *why, size_t why_len)
{
    struct discover *d = g_new0(struct discover, 1);
    char one[256] = "";
    bool fell_back;
    size_t i;
    int rc;

    *out = NULL;
    why[0] = '\0';
    d->o = *o;
    d->o.known_servers = NULL; /* not kept: borrowed by the caller */
    d->cb = cb;
    d->cb_arg = arg;
    for (i = 0; i < FD_COUNT; i++)
        d->fds[i] = -1;
    d->table = discovery_table_new();
    d->targets = g_array_new(FALSE, TRUE, sizeof(struct discovery_target));
    discovery_new_nonce(d->nonce);
    rc = loop_new(NULL, &d->loop, &fell_back);
    if (rc != CHAT_OK) {
        g_snprintf(why, why_len, "%s", chat_strerror(rc));
        goto out;
    }
    if (o->probe) {
        if (open_socket(d, FD_PROBE4, "0.0.0.0", 0, false, one, sizeof(one)) !=
            CHAT_OK)
            log_info("discovery over IPv4: %s", one);
        if (open_socket(d, FD_PROBE6, "::", 0, false, one, sizeof(one)) !=
            CHAT_OK)
            log_info("discovery over IPv6: %s", one);
    }
    /* Beacons: the shared discovery port. Not having it is fine while
     * probing: answers come to the probe sockets. */
    if (open_socket(d, FD_LISTEN4, "0.0.0.0", o->port, true, one,
                    sizeof(one)) != CHAT_OK)
        log_info("not listening for IPv4 beacons: %s", one);
    if (open_socket(d, FD_LISTEN6, "::", o->port, true, one, sizeof(one)) !=
        CHAT_OK)
        log_info("not listening for IPv6 beacons: %s", one);
    if (d->fds[FD_PROBE4] < 0 && d->fds[FD_PROBE6] < 0 &&
        d->fds[FD_LISTEN4] < 0 && d->fds[FD_LISTEN6] < 0) {
        g_snprintf(why, why_len, "no discovery socket: %s", one);
        rc = CHAT_ESYS;
        goto out;
    }
    if (discovery_lan_targets(o->port, d->targets) != CHAT_OK)
        log_info("cannot list the interfaces: %s", g_strerror(errno));
    for (i = 0; d->fds[FD_LISTEN6] >= 0 && i < d->targets->len; i++) {
        const struct discovery_target *t =
            &g_array_index(d->targets, struct discovery_target, i);

        if (t->dst.ss.ss_family == AF_INET6 &&
            discovery_join6(d->fds[FD_LISTEN6], t->ifindex) != CHAT_OK)
            log_info("cannot join %s on %s: %s", DISCOVERY_GROUP6, t->ifname,
                     g_strerror(errno));
    }
    *out = d;
    d = NULL;
    rc = CHAT_OK;
out:
    discover_free(d);
    return rc;
}

static void
discover_free(struct discover *d)
{
    size_t i;

    if (d == NULL)
        return;
    for (i = 0; i < FD_COUNT; i++)
        if (d->fds[i] >= 0) {
            loop_del_fd(d->loop, d->fds[i]);
            discovery_close(d->fds[i]);
        }
    loop_free(d->loop);
    discovery_table_free(d->table);
    g_array_free(d->targets, TRUE);
    g_free(d);
}

static void
send_probe(struct discover *d, int fd, const char *host,
           const struct discovery_target *lan, const uint8_t *p, size_t n)
{
    struct discovery_target t;

    if (fd < 0)
        return;
    if (lan != NULL) {
        t = *lan;
    } else {
        char why[128];
        struct endpoint ep;
        size_t count = 0;

        memset(&t, 0, sizeof(t));
        memset(&ep, 0, sizeof(ep));
        g_strlcpy(ep.scheme, "udp", sizeof(ep.scheme));
        g_strlcpy(ep.host, host, sizeof(ep.host));
        ep.port = d->o.port;
        if (addr_resolve(&ep, false, SOCK_DGRAM, &t.dst, 1, &count, why,
                         sizeof(why)) != CHAT_OK)
            return;
    }
    if (discovery_send_to(fd, &t, p, n) < 0)
        log_info("probe to %s%s%s: %s", host != NULL ? host : "",
                 lan != NULL ? lan->ifname : "", lan != NULL ? " (lan)" : "",
                 g_strerror(errno));
}

/* One round of probes: this host, then every LAN interface. */
static void
discover_probe(struct discover *d)
{
    uint8_t buf[DISCOVERY_PROBE_MIN];
    size_t n;
    guint i;

    if (discovery_encode_probe(d->nonce, buf, sizeof(buf), &n) != CHAT_OK)
        return;
    send_probe(d, d->fds[FD_PROBE4], "127.0.0.1", NULL, buf, n);
    send_probe(d, d->fds[FD_PROBE4], DISCOVERY_LOOPBACK_BCAST4, NULL, buf, n);
    send_probe(d, d->fds[FD_PROBE6], "::1", NULL, buf, n);
    for (i = 0; i < d->targets->len; i++) {
        const struct discovery_target *t =
            &g_array_index(d->targets, struct discovery_target, i);

        send_probe(d,
                   t->dst.ss.ss_family == AF_INET ? d->fds[FD_PROBE4]
                                                  : d->fds[FD_PROBE6],
                   NULL, t, buf, n);
    }
}

static void
on_gone(const struct discovery_seen *s, void *arg)
{
    struct discover *d = arg;

    if (d->cb != NULL)
        d->cb(DISCOVERY_EV_GONE, s, d->cb_arg);
}

/* Probe (twice) and listen for ms. */
static void
discover_run(struct discover *d, int ms)
{
    int64_t start = now_ms(), end = start + ms, now;
    int64_t reprobe = start + DISCOVER_REPROBE_MS;
    int wait;

    if (d->o.probe)
        discover_probe(d);
    while ((now = now_ms()) < end) {
        if (d->o.probe && reprobe != 0 && now >= reprobe) {
            discover_probe(d);
            reprobe = 0;
        }
        discovery_table_expire(d->table, now, on_gone, d);
        wait = (int)(end - now);
        if (d->o.probe && reprobe != 0 && reprobe - now < wait)
            wait = (int)(reprobe - now);
        /* Expiry is checked a few times a second. */
        if (wait > 250)
            wait = 250;
        if (loop_run_once(d->loop, wait) < 0 && errno != EINTR)
            break;
    }
    discovery_table_expire(d->table, now_ms(), on_gone, d);
}

/* ---- --discover ------------------------------------------------------- */

static const char *
event_name(enum discovery_event ev, bool json)
{
    switch (ev) {
    case DISCOVERY_EV_NEW:
        return json ? "new" : "+";
    case DISCOVERY_EV_CHANGED:
        return json ? "changed" : "*";
    case DISCOVERY_EV_RESTART:
        return json ? "restart" : "~";
    case DISCOVERY_EV_GONE:
        return json ? "gone" : "-";
    case DISCOVERY_EV_NONE:
        break;
    }
    return NULL;
}

struct watch {
    const struct discover_opts *o;
    unsigned seen;
};

static void
on_watch(enum discovery_event ev, const struct discovery_seen *s, void *arg)
{
    struct watch *w = arg;
    GString *line;

    if (ev == DISCOVERY_EV_NEW || ev == DISCOVERY_EV_RESTART)
        w->seen++;
    if (!w->o->watch)
        return;
    line = g_string_new(NULL);
    discover_format(s, w->o, event_name(ev, w->o->json), line);
    fputs(line->str, stdout);
    fflush(stdout);
    g_string_free(line, TRUE);
}

int
discover_main(const struct discover_opts *o, int timeout_ms)
{
    struct discover *d = NULL;
    struct watch w = {.o = o};
    GPtrArray *list;
    GString *out;
    char why[300];
    guint i;

    if (discover_new(o, on_watch, &w, &d, why, sizeof(why)) != CHAT_OK) {
        fprintf(stderr, "sockchat: cannot discover: %s\n", why);
        return CLIENT_EXIT_UNREACHABLE;
    }
    discover_run(d, timeout_ms);
    list = discovery_table_list(d->table);
    out = g_string_new(NULL);
    for (i = 0; !o->watch && i < list->len; i++)
        discover_format(g_ptr_array_index(list, i), o, NULL, out);
    fputs(out->str, stdout);
    fflush(stdout);
    g_string_free(out, TRUE);
    if (w.seen == 0)
        fprintf(stderr, "sockchat: no server %s within %d ms\n",
                o->probe ? "answered" : "was heard", timeout_ms);
    log_debug("%u datagrams ignored", d->ignored);
    g_ptr_array_unref(list);
    discover_free(d);
    return w.seen > 0 ? CLIENT_EXIT_OK : CLIENT_EXIT_UNREACHABLE;
}

/* ---- no address ------------------------------------------------------- */

/* The server discover_choose() picked, as the known-servers file would key
 * it (port 0: none). For client.c's trust decision, through
 * discover_chose(); a program-wide fact, as the session settings below. */
static char chosen_host[ADDR_HOST_MAX];
static unsigned chosen_port;
static bool chosen_moved; /* its beacon claims a key pinned elsewhere */

bool
discover_chose(const char *host, unsigned port)
{
    return chosen_port != 0 && host != NULL && port == chosen_port &&
           g_ascii_strcasecmp(host, chosen_host) == 0;
}

bool
discover_chose_moved(void)
{
    return chosen_port != 0 && chosen_moved;
}

static void
print_numbered(FILE *f, GPtrArray *list, const struct discover_opts *o)
{
    struct discover_opts text = *o;
    GString *line = g_string_new(NULL);
    guint i;

    text.json = false;
    for (i = 0; i < list->len; i++) {
        g_string_printf(line, "%3u) ", i + 1);
        discover_format(g_ptr_array_index(list, i), &text, NULL, line);
        fputs(line->str, f);
    }
    fflush(f);
    g_string_free(line, TRUE);
}

/* The server the user names by number or name; NULL when none or several
 * match. */
static const struct discovery_seen *
pick(GPtrArray *list, const char *answer)
{
    const struct discovery_seen *found = NULL;
    char *end = NULL;
    unsigned long k;
    guint i;

    k = strtoul(answer, &end, 10);
    if (end != answer && *end == '\0')
        return k >= 1 && k <= list->len ? g_ptr_array_index(list, k - 1) : NULL;
    for (i = 0; i < list->len; i++) {
        const struct discovery_seen *s = g_ptr_array_index(list, i);

        if (g_ascii_strcasecmp(s->beacon.name, answer) != 0)
            continue;
        if (found != NULL)
            return NULL; /* two servers of that name: use the number */
        found = s;
    }
    return found;
}

bool
discover_choose(const struct discover_opts *o, bool interactive, char *url,
                size_t n, int *status)
{
    struct discover *d = NULL;
    const struct discovery_seen *s = NULL;
    struct identity_known_entry pinned;
    enum discover_trust tr;
    GPtrArray *list = NULL;
    char why[300], line[256];
    bool ok = false;
    int tries;

    *status = CLIENT_EXIT_OK;
    if (discover_new(o, NULL, NULL, &d, why, sizeof(why)) != CHAT_OK) {
        fprintf(stderr,
                "sockchat: cannot discover servers (%s); trying "
                "localhost\n",
                why);
        g_strlcpy(url, "localhost", n);
        return true;
    }
    discover_run(d, DISCOVER_WINDOW_MS);
    list = discovery_table_list(d->table);
    if (list->len == 0) {
        fprintf(stderr, "sockchat: no server answered; trying localhost\n");
        g_strlcpy(url, "localhost", n);
        ok = true;
        goto out;
    }
    if (list->len == 1) {
        s = g_ptr_array_index(list, 0);
    } else if (!interactive) {
        fprintf(stderr, "sockchat: %u servers answered; name one:\n",
                list->len);
        print_numbered(stderr, list, o);
        *status = CLIENT_EXIT_USAGE;
        goto out;
    } else {
        printf("%u servers answered:\n", list->len);
        print_numbered(stdout, list, o);
        for (tries = 0; s == NULL && tries < DISCOVER_PICK_TRIES; tries++) {
            printf("Connect to which (number or name, empty to give up)? ");
            fflush(stdout);
            if (fgets(line, sizeof(line), stdin) == NULL)
                break;
            g_strstrip(line);
            if (line[0] == '\0')
                break;
            s = pick(list, line);
            if (s == NULL)
                printf("No single server is '%s'.\n", line);
        }
        if (s == NULL) {
            fprintf(stderr, "sockchat: no server chosen\n");
            *status = CLIENT_EXIT_USAGE;
            goto out;
        }
    }
    discover_url(s, url, n);
    discover_host(s, chosen_host, sizeof(chosen_host));
    chosen_port = best_endpoint(s)->port;
    tr = discover_trust(s, o->known_servers, &pinned);
    chosen_moved = tr == DISCOVER_TRUST_MOVED;
    if (tr == DISCOVER_TRUST_MISMATCH) {
        fprintf(stderr,
                "sockchat: warning: %s announces a key that is not "
                "the one pinned for it\n",
                url);
    } else if (tr == DISCOVER_TRUST_MOVED) {
        GString *where = g_string_new(NULL);

        pinned_string(&pinned, where);
        /* Only a claim until the handshake proves that key. */
        fprintf(stderr,
                "sockchat: %s announces the key pinned as %s (moved?); it "
                "is trusted if the server proves it\n",
                url, where->str);
        g_string_free(where, TRUE);
    }
    fprintf(stderr, "sockchat: found ");
    {
        GString *name = g_string_new(NULL);

        ui_put_clean(name, s->beacon.name);
        fprintf(stderr, "%s at %s\n", name->str, url);
        g_string_free(name, TRUE);
    }
    ok = true;
out:
    if (list != NULL)
        g_ptr_array_unref(list);
    discover_free(d);
    return ok;
}

/* ---- /servers --------------------------------------------------------- */

/* The session's settings: set once by main() for the command of client.c,
 * which has no other way to them (as ui.c's readline hooks). */
static struct discover_opts session_opts = {.port = DISCOVERY_PORT,
                                            .probe = true};
static char *session_known;

void
discover_session_setup(const struct discover_opts *o)
{
    session_opts = *o;
    session_opts.watch = false;
    g_free(session_known);
    session_known = g_strdup(o->known_servers);
    session_opts.known_servers = session_known;
}

void
discover_session_print(FILE *f)
{
    struct discover_opts o = session_opts;
    struct discover *d = NULL;
    GPtrArray *list;
    GString *out;
    char why[300];
    guint i;

    o.probe = true;
    if (discover_new(&o, NULL, NULL, &d, why, sizeof(why)) != CHAT_OK) {
        fprintf(f, "servers: cannot discover: %s\n", why);
        fflush(f);
        return;
    }
    discover_run(d, DISCOVER_WINDOW_MS);
    list = discovery_table_list(d->table);
    out = g_string_new(NULL);
    if (!o.json)
        g_string_append_printf(out, "servers: %u answered\n", list->len);
    for (i = 0; i < list->len; i++) {
        if (!o.json)
            g_string_append(out, "  ");
        discover_format(g_ptr_array_index(list, i), &o, NULL, out);
    }
    fputs(out->str, f);
    fflush(f);
    g_string_free(out, TRUE);
    g_ptr_array_unref(list);
    discover_free(d);
}
