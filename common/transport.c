#include "transport.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>

#include <glib.h>

#include "err.h"
#include "transport_int.h"

static const struct transport_ops *const transport_backends[] = {
    &transport_tcp_ops,
    &transport_udp_ops,
    &transport_unix_ops,
};

const struct transport_ops *
transport_find(const char *scheme)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(transport_backends); i++)
        if (strcmp(transport_backends[i]->name, scheme) == 0)
            return transport_backends[i];
    return NULL;
}

/* Parse url and resolve it for ops' socket type. */
static int
transport_resolve(const char *url, unsigned short def_port, bool passive,
                  const struct transport_ops **ops, struct addr *addrs,
                  size_t max, size_t *n, char *why, size_t why_len)
{
    struct endpoint ep;
    int rc;

    *ops = NULL;
    *n = 0;
    rc = addr_parse_url(url, "tcp", def_port, &ep, why, why_len);
    if (rc != CHAT_OK)
        return rc;
    *ops = transport_find(ep.scheme);
    if (!*ops) {
        snprintf(why, why_len, "transport '%s' is not available", ep.scheme);
        return CHAT_EADDR;
    }
    return addr_resolve(&ep, passive, (*ops)->socktype, addrs, max, n, why,
                        why_len);
}

int
transport_listen_url(const char *url, unsigned short def_port,
                     struct transport **out, size_t max, size_t *n, char *why,
                     size_t why_len)
{
    const struct transport_ops *ops;
    struct addr addrs[8];
    size_t count = 0, i;
    int rc;

    *n = 0;
    rc = transport_resolve(url, def_port, true, &ops, addrs,
                           G_N_ELEMENTS(addrs), &count, why, why_len);
    if (rc != CHAT_OK)
        return rc;
    for (i = 0; i < count && *n < max; i++) {
        struct transport *t = NULL;
        char where[ADDR_STR_MAX];

        rc = ops->listen(&addrs[i], &t);
        if (rc != CHAT_OK) {
            addr_format(&addrs[i], where, sizeof(where));
            snprintf(why, why_len, "%s: %s", where, chat_strerror(rc));
            continue;
        }
        t->is_listener = true;
        out[(*n)++] = t;
    }
    return *n > 0 ? CHAT_OK : CHAT_EADDR;
}

int
transport_accept(struct transport *l, struct transport **out)
{
    *out = NULL;
    return l->ops->accept(l, out);
}

int
transport_next_timeout(const struct transport *t, int64_t now_ms)
{
    return t->ops->next_timeout ? t->ops->next_timeout(t, now_ms) : -1;
}

int
transport_tick(struct transport *t, int64_t now_ms)
{
    return t->ops->tick ? t->ops->tick(t, now_ms) : CHAT_OK;
}

unsigned
transport_poll_events(const struct transport *t, unsigned want)
{
    return t->ops->poll_events ? t->ops->poll_events(t, want) : want;
}

void
transport_describe(const struct transport *t, char *out, size_t n)
{
    char where[ADDR_STR_MAX];

    if (t->ops->describe) {
        t->ops->describe(t, out, n);
        return;
    }
    addr_format(&t->peer, where, sizeof(where));
    snprintf(out, n, "%s %s", t->ops->name, where);
}

static int64_t
transport_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Wait for a started connect to finish, at most timeout_ms. A stream
 * backend finishes when the socket turns writable; udp exchanges its
 * handshake datagrams, so connect_done answers CHAT_EAGAIN until it is
 * through, and its timers resend what was lost meanwhile.
 */
static int
transport_wait_connected(struct transport *t, int timeout_ms)
{
    int64_t end = transport_now_ms() + timeout_ms;

    for (;;) {
        unsigned ev = transport_poll_events(t, TRANSPORT_WRITE);
        struct pollfd pfd = {.fd = t->fd, .events = 0};
        int64_t now = transport_now_ms();
        int wait = (int)(end - now), timer, n, rc;

        if (wait <= 0) {
            errno = ETIMEDOUT;
            return CHAT_ESYS;
        }
        timer = transport_next_timeout(t, now);
        if (timer >= 0 && timer < wait)
            wait = timer;
        if (ev & TRANSPORT_READ)
            pfd.events |= POLLIN;
        if (ev & TRANSPORT_WRITE)
            pfd.events |= POLLOUT;
        n = poll(&pfd, 1, wait);
        if (n < 0 && errno != EINTR)
            return CHAT_ESYS;
        rc = transport_tick(t, transport_now_ms());
        if (rc != CHAT_OK)
            return rc;
        if (n <= 0)
            continue;
        rc = t->ops->connect_done(t);
        if (rc != CHAT_EAGAIN)
            return rc;
    }
}

int
transport_connect_url(const char *url, unsigned short def_port,
                      int timeout_ms, struct transport **out, char *why,
                      size_t why_len)
{
    const struct transport_ops *ops;
    struct addr addrs[8];
    struct transport *t = NULL;
    size_t n = 0, i;
    int rc;

    *out = NULL;
    rc = transport_resolve(url, def_port, false, &ops, addrs,
                           G_N_ELEMENTS(addrs), &n, why, why_len);
    if (rc != CHAT_OK)
        return rc;
    rc = CHAT_EADDR;
    for (i = 0; i < n; i++) {
        char where[ADDR_STR_MAX];

        int64_t end = transport_now_ms() + timeout_ms;

        addr_format(&addrs[i], where, sizeof(where));
        rc = ops->connect(&addrs[i], &t);
        /* The listener's queue is full (a busy UNIX server): try again
         * every 10 ms within the timeout. */
        while (rc == CHAT_EAGAIN && transport_now_ms() < end) {
            transport_close(t);
            t = NULL;
            g_usleep(10000);
            rc = ops->connect(&addrs[i], &t);
        }
        if (rc == CHAT_EAGAIN) {
            snprintf(why, why_len, "%s: the server's listen queue is full",
                     where);
            transport_close(t);
            t = NULL;
            rc = CHAT_ESYS;
            errno = ETIMEDOUT;
            continue;
        }
        if (rc == CHAT_OK)
            rc = transport_wait_connected(t, timeout_ms);
        if (rc == CHAT_OK) {
            *out = t;
            return CHAT_OK;
        }
        snprintf(why, why_len, "%s: %s", where, chat_strerror(rc));
        transport_close(t);
        t = NULL;
    }
    return rc;
}

ssize_t
transport_send(struct transport *t, const void *p, size_t n)
{
    return t->ops->send(t, p, n);
}

ssize_t
transport_sendv(struct transport *t, const struct iovec *iov, int iovcnt)
{
    ssize_t total = 0, n;
    int i;

    if (t->ops->sendv)
        return t->ops->sendv(t, iov, iovcnt);
    for (i = 0; i < iovcnt; i++) {
        n = t->ops->send(t, iov[i].iov_base, iov[i].iov_len);
        if (n < 0)
            return total > 0 ? total : n;
        total += n;
        if ((size_t)n < iov[i].iov_len)
            break;
    }
    return total;
}

ssize_t
transport_recv(struct transport *t, void *p, size_t n)
{
    return t->ops->recv(t, p, n);
}

void
transport_shutdown(struct transport *t)
{
    t->ops->shutdown(t);
}

void
transport_close(struct transport *t)
{
    if (t)
        t->ops->close(t);
}

void
transport_abort(struct transport *t)
{
    if (!t)
        return;
    if (t->ops->abort)
        t->ops->abort(t);
    else
        t->ops->close(t);
}

bool
transport_send_done(const struct transport *t)
{
    return t->ops->send_done ? t->ops->send_done(t) : true;
}

int
transport_fd(const struct transport *t)
{
    return t->fd;
}

const char *
transport_name(const struct transport *t)
{
    return t->ops->name;
}

const struct addr *
transport_peer(const struct transport *t)
{
    return &t->peer;
}

const struct addr *
transport_local(const struct transport *t)
{
    return &t->local;
}

void
transport_format_url(const struct transport *t, char *out, size_t n)
{
    char where[ADDR_STR_MAX];

    addr_format(&t->local, where, sizeof(where));
    snprintf(out, n, "%s://%s", t->ops->name, where);
}
