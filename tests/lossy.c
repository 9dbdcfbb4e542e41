/* lossy.c - a UDP relay that drops, duplicates, delays and reorders
 * datagrams, for testing the udp transport over a bad network.
 *
 *   lossy --listen 127.0.0.1:0 --to 127.0.0.1:7710 --drop 0.10 --dup 0.05 \
 *         --reorder 0.10 --delay-ms 0-20 --seed 42 --port-file F
 *
 * Clients send to the --listen address; each client source address gets
 * an upstream socket of its own, connected to --to, so the server sees one
 * peer per client, and replies go back the way they came. Every datagram,
 * in each direction, is
 *   dropped with probability --drop, otherwise
 *   delayed by a uniform draw from --delay-ms (A-B, or A),
 *   held back a further max(10 ms, 2 B) with probability --reorder, so that
 *   later datagrams overtake it, and
 *   sent twice (each copy with its own delay) with probability --dup.
 * The draws come from one PRNG per client and direction, seeded from
 * --seed and the client's number, so the n-th datagram of a flow meets the
 * same fate on every run whatever the other flows do.
 *
 * It relays only between loopback addresses, lives at most --max-seconds
 * (600 by default), and on SIGTERM or SIGINT prints its counts to stdout
 * and exits 0.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <glib.h>

#include "addr.h"
#include "err.h"

#define LOSSY_DGRAM_MAX 65536
#define LOSSY_MAX_CLIENTS 256
#define LOSSY_MAX_PENDING 16384
#define LOSSY_BATCH 64

enum dir {
    DIR_UP,   /* client to server */
    DIR_DOWN, /* server to client */
};

struct counts {
    uint64_t in, dropped, duplicated, reordered, out, overflow;
};

struct flow {
    struct addr client;
    int up_fd; /* connected to the server */
    GRand *rng[2];
};

struct pending {
    int64_t at_us;
    uint64_t order;
    struct flow *flow;
    enum dir dir;
    size_t len;
    uint8_t *data;
};

struct lossy {
    int listen_fd;
    struct addr to;
    double drop, dup, reorder;
    int delay_min_ms, delay_max_ms;
    guint32 seed;
    GPtrArray *flows;   /* struct flow */
    GPtrArray *pending; /* struct pending */
    uint64_t order;
    struct counts c[2];
    uint64_t refused_clients;
};

static volatile sig_atomic_t lossy_stop;

static void
lossy_on_signal(int sig)
{
    (void)sig;
    lossy_stop = 1;
}

static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool
is_loopback(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;

        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

        return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
    }
    return false;
}

static bool
addr_equal(const struct addr *a, const struct addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* host:port (IPv6 in brackets) to one loopback address. */
static bool
resolve_one(const char *text, bool passive, struct addr *out)
{
    struct endpoint ep;
    char why[256];
    size_t n = 0;

    if (addr_parse_url(text, "udp", 0, &ep, why, sizeof(why)) != CHAT_OK ||
        addr_resolve(&ep, passive, SOCK_DGRAM, out, 1, &n, why,
                     sizeof(why)) != CHAT_OK) {
        fprintf(stderr, "lossy: %s: %s\n", text, why);
        return false;
    }
    if (!is_loopback(out)) {
        fprintf(stderr, "lossy: %s: only loopback addresses are relayed\n",
                text);
        return false;
    }
    return true;
}

static bool
parse_delay(const char *s, int *lo, int *hi)
{
    char *end = NULL;
    long a, b;

    a = strtol(s, &end, 10);
    b = a;
    if (*end == '-')
        b = strtol(end + 1, &end, 10);
    if (*end != '\0' || a < 0 || b < a || b > 10000)
        return false;
    *lo = (int)a;
    *hi = (int)b;
    return true;
}

static void
pending_free(gpointer p)
{
    struct pending *q = p;

    g_free(q->data);
    g_free(q);
}

static void
flow_free(gpointer p)
{
    struct flow *f = p;

    if (f->up_fd >= 0)
        close(f->up_fd);
    g_rand_free(f->rng[0]);
    g_rand_free(f->rng[1]);
    g_free(f);
}

static struct flow *
flow_find(struct lossy *x, const struct addr *client)
{
    struct flow *f;
    guint i;

    for (i = 0; i < x->flows->len; i++) {
        f = g_ptr_array_index(x->flows, i);
        if (addr_equal(&f->client, client))
            return f;
    }
    if (x->flows->len >= LOSSY_MAX_CLIENTS) {
        x->refused_clients++;
        return NULL;
    }
    f = g_new0(struct flow, 1);
    f->client = *client;
    f->up_fd = socket(x->to.ss.ss_family,
                      SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->up_fd < 0 ||
        connect(f->up_fd, (const struct sockaddr *)&x->to.ss, x->to.len) <
            0) {
        fprintf(stderr, "lossy: upstream socket: %s\n", strerror(errno));
        if (f->up_fd >= 0)
            close(f->up_fd);
        g_free(f);
        return NULL;
    }
    /* A flow's fate depends on the seed and its number only. */
    f->rng[DIR_UP] = g_rand_new_with_seed(x->seed * 2654435761u +
                                          x->flows->len * 2 + 0);
    f->rng[DIR_DOWN] = g_rand_new_with_seed(x->seed * 2654435761u +
                                            x->flows->len * 2 + 1);
    g_ptr_array_add(x->flows, f);
    return f;
}

static void heap_push(GPtrArray *h, struct pending *q);

static void
enqueue(struct lossy *x, struct flow *f, enum dir d, const uint8_t *p,
        size_t len, int64_t now)
{
    struct counts *c = &x->c[d];
    GRand *r = f->rng[d];
    int copies = 1, i;

    c->in++;
    /* Draw all four every time, so one decision never shifts the others. */
    {
        double u_drop = g_rand_double(r), u_dup = g_rand_double(r);
        double u_reo = g_rand_double(r);
        int64_t delay[2];

        for (i = 0; i < 2; i++)
            delay[i] = (int64_t)g_rand_int_range(r, x->delay_min_ms * 1000,
                                                 x->delay_max_ms * 1000 + 1);
        if (u_drop < x->drop) {
            c->dropped++;
            return;
        }
        if (u_dup < x->dup) {
            copies = 2;
            c->duplicated++;
        }
        if (u_reo < x->reorder) {
            delay[0] += MAX(10000, 2000 * (int64_t)x->delay_max_ms);
            c->reordered++;
        }
        for (i = 0; i < copies; i++) {
            struct pending *q;

            if (x->pending->len >= LOSSY_MAX_PENDING) {
                c->overflow++;
                continue;
            }
            q = g_new0(struct pending, 1);
            q->at_us = now + delay[i];
            q->order = x->order++;
            q->flow = f;
            q->dir = d;
            q->len = len;
            q->data = g_malloc(len);
            memcpy(q->data, p, len);
            heap_push(x->pending, q);
        }
    }
}

/* The pending datagrams are a binary min-heap on (at_us, order): the next
 * one due is at the root, and a datagram costs O(log n) in and out, so the
 * relay keeps up with a busy link (a linear scan per delivery did not). */
static bool
pending_before(const struct pending *a, const struct pending *b)
{
    return a->at_us < b->at_us || (a->at_us == b->at_us && a->order < b->order);
}

static void
heap_swap(GPtrArray *h, guint i, guint j)
{
    gpointer t = h->pdata[i];

    h->pdata[i] = h->pdata[j];
    h->pdata[j] = t;
}

static void
heap_push(GPtrArray *h, struct pending *q)
{
    guint i = h->len;

    g_ptr_array_add(h, q);
    while (i > 0) {
        guint parent = (i - 1) / 2;

        if (!pending_before(h->pdata[i], h->pdata[parent]))
            break;
        heap_swap(h, i, parent);
        i = parent;
    }
}

/* Take the root off; the caller owns it. */
static struct pending *
heap_pop(GPtrArray *h)
{
    struct pending *top, *last = g_ptr_array_steal_index(h, h->len - 1);
    guint i = 0;

    if (h->len == 0)
        return last;
    top = h->pdata[0];
    h->pdata[0] = last;
    for (;;) {
        guint l = 2 * i + 1, r = l + 1, m = i;

        if (l < h->len && pending_before(h->pdata[l], h->pdata[m]))
            m = l;
        if (r < h->len && pending_before(h->pdata[r], h->pdata[m]))
            m = r;
        if (m == i)
            break;
        heap_swap(h, i, m);
        i = m;
    }
    return top;
}

static void
deliver_due(struct lossy *x, int64_t now)
{
    while (x->pending->len > 0) {
        struct pending *b = g_ptr_array_index(x->pending, 0);
        ssize_t r;

        if (b->at_us > now)
            return;
        b = heap_pop(x->pending);
        if (b->dir == DIR_UP)
            r = send(b->flow->up_fd, b->data, b->len, 0);
        else
            r = sendto(x->listen_fd, b->data, b->len, 0,
                       (const struct sockaddr *)&b->flow->client.ss,
                       b->flow->client.len);
        /* A refused or full send is one more loss on a lossy link. */
        if (r == (ssize_t)b->len)
            x->c[b->dir].out++;
        pending_free(b);
    }
}

static int
next_wait_ms(const struct lossy *x, int64_t now)
{
    const struct pending *q;

    if (x->pending->len == 0)
        return 200;
    q = g_ptr_array_index(x->pending, 0);
    if (q->at_us <= now)
        return 0;
    return (int)MIN((q->at_us - now + 999) / 1000, 200);
}

static void
read_clients(struct lossy *x, uint8_t *buf)
{
    int i;

    for (i = 0; i < LOSSY_BATCH; i++) {
        struct addr from;
        struct flow *f;
        ssize_t n;

        memset(&from, 0, sizeof(from));
        from.len = sizeof(from.ss);
        n = recvfrom(x->listen_fd, buf, LOSSY_DGRAM_MAX, 0,
                     (struct sockaddr *)&from.ss, &from.len);
        if (n < 0)
            return;
        if (!is_loopback(&from))
            continue;
        f = flow_find(x, &from);
        if (f)
            enqueue(x, f, DIR_UP, buf, (size_t)n, now_us());
    }
}

static void
read_server(struct lossy *x, struct flow *f, uint8_t *buf)
{
    int i;

    for (i = 0; i < LOSSY_BATCH; i++) {
        ssize_t n = recv(f->up_fd, buf, LOSSY_DGRAM_MAX, 0);

        if (n < 0)
            return; /* EAGAIN, or ICMP from a server that is gone */
        enqueue(x, f, DIR_DOWN, buf, (size_t)n, now_us());
    }
}

static void
print_counts(const struct lossy *x)
{
    static const char *const names[] = {"client->server", "server->client"};
    int d;

    for (d = 0; d < 2; d++)
        printf("lossy: %s: %llu in, %llu dropped, %llu duplicated, %llu "
               "reordered, %llu out, %llu overflow\n",
               names[d], (unsigned long long)x->c[d].in,
               (unsigned long long)x->c[d].dropped,
               (unsigned long long)x->c[d].duplicated,
               (unsigned long long)x->c[d].reordered,
               (unsigned long long)x->c[d].out,
               (unsigned long long)x->c[d].overflow);
    printf("lossy: %u clients, %llu refused\n", x->flows->len,
           (unsigned long long)x->refused_clients);
    fflush(stdout);
}

static bool
write_port_file(const char *path, const struct addr *a)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return false;
    fprintf(f, "%u\n", addr_port(a));
    if (fclose(f) != 0)
        return false;
    return rename(tmp, path) == 0;
}

int
main(int argc, char **argv)
{
    gchar *listen_s = NULL, *to_s = NULL, *delay_s = NULL, *port_file = NULL;
    gdouble drop = 0, dup = 0, reorder = 0;
    gint seed = 1, max_seconds = 600;
    GOptionEntry entries[] = {
        {"listen", 0, 0, G_OPTION_ARG_STRING, &listen_s,
         "where clients send (default 127.0.0.1:0)", "HOST:PORT"},
        {"to", 0, 0, G_OPTION_ARG_STRING, &to_s, "the server", "HOST:PORT"},
        {"drop", 0, 0, G_OPTION_ARG_DOUBLE, &drop, "loss probability", "P"},
        {"dup", 0, 0, G_OPTION_ARG_DOUBLE, &dup, "duplication probability",
         "P"},
        {"reorder", 0, 0, G_OPTION_ARG_DOUBLE, &reorder,
         "probability of being held back", "P"},
        {"delay-ms", 0, 0, G_OPTION_ARG_STRING, &delay_s,
         "one-way delay, uniform", "A-B"},
        {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "PRNG seed (default 1)", "N"},
        {"port-file", 0, 0, G_OPTION_ARG_FILENAME, &port_file,
         "write the listening port here", "FILE"},
        {"max-seconds", 0, 0, G_OPTION_ARG_INT, &max_seconds,
         "exit after this long (default 600)", "N"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *ctx = g_option_context_new("- a lossy UDP relay");
    GError *err = NULL;
    struct lossy x;
    struct addr at;
    struct sigaction sa;
    uint8_t *buf = NULL;
    int64_t deadline;
    int rc = 2;

    memset(&x, 0, sizeof(x));
    x.listen_fd = -1;
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "lossy: %s\n", err->message);
        g_error_free(err);
        goto out;
    }
    if (!to_s) {
        fprintf(stderr, "lossy: --to HOST:PORT is required\n");
        goto out;
    }
    if (drop < 0 || drop > 1 || dup < 0 || dup > 1 || reorder < 0 ||
        reorder > 1 || max_seconds <= 0) {
        fprintf(stderr, "lossy: probabilities are 0..1, --max-seconds > 0\n");
        goto out;
    }
    if (delay_s && !parse_delay(delay_s, &x.delay_min_ms, &x.delay_max_ms)) {
        fprintf(stderr, "lossy: --delay-ms takes A or A-B (ms, A <= B)\n");
        goto out;
    }
    if (!resolve_one(listen_s ? listen_s : "127.0.0.1:0", true, &at) ||
        !resolve_one(to_s, false, &x.to))
        goto out;
    x.drop = drop;
    x.dup = dup;
    x.reorder = reorder;
    x.seed = (guint32)seed;
    x.flows = g_ptr_array_new_with_free_func(flow_free);
    x.pending = g_ptr_array_new_with_free_func(pending_free);
    x.listen_fd = socket(at.ss.ss_family,
                         SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (x.listen_fd < 0 ||
        bind(x.listen_fd, (const struct sockaddr *)&at.ss, at.len) < 0) {
        fprintf(stderr, "lossy: listen: %s\n", strerror(errno));
        goto out;
    }
    at.len = sizeof(at.ss);
    getsockname(x.listen_fd, (struct sockaddr *)&at.ss, &at.len);
    if (port_file && !write_port_file(port_file, &at)) {
        fprintf(stderr, "lossy: %s: %s\n", port_file, strerror(errno));
        goto out;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = lossy_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    buf = g_malloc(LOSSY_DGRAM_MAX);
    deadline = now_us() + (int64_t)max_seconds * 1000000;
    while (!lossy_stop && now_us() < deadline) {
        struct pollfd *pfd = g_new0(struct pollfd, x.flows->len + 1);
        guint i, nflows = x.flows->len;

        pfd[0].fd = x.listen_fd;
        pfd[0].events = POLLIN;
        for (i = 0; i < nflows; i++) {
            struct flow *f = g_ptr_array_index(x.flows, i);

            pfd[i + 1].fd = f->up_fd;
            pfd[i + 1].events = POLLIN;
        }
        if (poll(pfd, nflows + 1, next_wait_ms(&x, now_us())) > 0) {
            if (pfd[0].revents)
                read_clients(&x, buf);
            for (i = 0; i < nflows; i++)
                if (pfd[i + 1].revents)
                    read_server(&x, g_ptr_array_index(x.flows, i), buf);
        }
        g_free(pfd);
        deliver_due(&x, now_us());
    }
    print_counts(&x);
    rc = 0;
out:
    if (x.listen_fd >= 0)
        close(x.listen_fd);
    if (x.flows)
        g_ptr_array_unref(x.flows);
    if (x.pending)
        g_ptr_array_unref(x.pending);
    g_free(buf);
    g_free(listen_s);
    g_free(to_s);
    g_free(delay_s);
    g_free(port_file);
    g_option_context_free(ctx);
    return rc;
}
