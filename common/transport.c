#include "transport.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <glib.h>

#include "err.h"
#include "transport_int.h"

static const struct transport_ops *const transport_backends[] = {
    &transport_tcp_ops,
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

int
transport_listen(const struct endpoint *ep, const struct addr *a,
                 struct transport **out)
{
    const struct transport_ops *ops = transport_find(ep->scheme);

    *out = NULL;
    if (!ops)
        return CHAT_EADDR;
    return ops->listen(a, out);
}

int
transport_accept(struct transport *l, struct transport **out)
{
    *out = NULL;
    return l->ops->accept(l, out);
}

/* Wait for a started connect to finish, at most timeout_ms. */
static int
transport_wait_connected(struct transport *t, int timeout_ms)
{
    struct pollfd pfd = {.fd = t->fd, .events = POLLOUT};
    int n;

    do
        n = poll(&pfd, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return CHAT_ESYS;
    if (n == 0) {
        errno = ETIMEDOUT;
        return CHAT_ESYS;
    }
    return t->ops->connect_done(t);
}

int
transport_connect_url(const char *url, unsigned short def_port,
                      int timeout_ms, struct transport **out, char *why,
                      size_t why_len)
{
    const struct transport_ops *ops;
    struct endpoint ep;
    struct addr addrs[8];
    struct transport *t = NULL;
    size_t n = 0, i;
    int rc;

    *out = NULL;
    rc = addr_parse_url(url, "tcp", def_port, &ep, why, why_len);
    if (rc != CHAT_OK)
        return rc;
    ops = transport_find(ep.scheme);
    if (!ops) {
        snprintf(why, why_len, "transport '%s' is not available", ep.scheme);
        return CHAT_EADDR;
    }
    rc = addr_resolve(&ep, false, SOCK_STREAM, addrs, G_N_ELEMENTS(addrs), &n,
                      why, why_len);
    if (rc != CHAT_OK)
        return rc;
    rc = CHAT_EADDR;
    for (i = 0; i < n; i++) {
        char where[ADDR_STR_MAX];

        addr_format(&addrs[i], where, sizeof(where));
        rc = ops->connect(&addrs[i], &t);
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
