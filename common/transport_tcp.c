/* transport_tcp.c - the byte stream over a TCP socket (IPv4 or IPv6).
 *
 * TCP already is a reliable ordered byte stream, so this backend is a thin
 * layer over the Berkeley calls; its value is that every call is traced
 * (--trace sockets) and every error becomes a chat_err.
 */
#include "transport_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "err.h"
#include "log.h"

#define TCP_BACKLOG 128

struct tcp_transport {
    struct transport base;
};

static struct tcp_transport *
tcp_alloc(int fd)
{
    struct tcp_transport *tt = g_new0(struct tcp_transport, 1);

    tt->base.ops = &transport_tcp_ops;
    tt->base.fd = fd;
    return tt;
}

static void
tcp_trace_setsockopt(int fd, const char *name, int v)
{
    trace_sock("setsockopt(fd=%d, %s=%d)", fd, name, v);
}

static int
tcp_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    trace_sock("socket(%s, SOCK_STREAM) = %d%s%s",
               family == AF_INET6 ? "AF_INET6" : "AF_INET", fd,
               fd < 0 ? " " : "", fd < 0 ? strerror(errno) : "");
    return fd;
}

static void
tcp_fill_local(struct transport *t)
{
    t->local.len = sizeof(t->local.ss);
    if (getsockname(t->fd, (struct sockaddr *)&t->local.ss, &t->local.len) < 0)
        t->local.len = 0;
}

static int
tcp_listen(const struct addr *a, struct transport **out)
{
    struct tcp_transport *tt = NULL;
    char where[ADDR_STR_MAX];
    int fd = -1, one = 1, rc, saved;

    *out = NULL;
    addr_format(a, where, sizeof(where));
    fd = tcp_socket(a->ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    /* A restarted server must not wait out TIME_WAIT to bind again. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    tcp_trace_setsockopt(fd, "SO_REUSEADDR", one);
    /* Decide explicitly: [::] must not also take IPv4, so that 0.0.0.0 and
     * [::] can both be listed, whatever net.ipv6.bindv6only says. */
    if (a->ss.ss_family == AF_INET6) {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
            goto fail;
        tcp_trace_setsockopt(fd, "IPV6_V6ONLY", one);
    }
    rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
    trace_sock("bind(fd=%d, %s) = %d%s%s", fd, where, rc, rc ? " " : "",
               rc ? strerror(errno) : "");
    if (rc < 0)
        goto fail;
    rc = listen(fd, TCP_BACKLOG);
    trace_sock("listen(fd=%d, backlog=%d) = %d", fd, TCP_BACKLOG, rc);
    if (rc < 0)
        goto fail;
    tt = tcp_alloc(fd);
    tcp_fill_local(&tt->base);
    *out = &tt->base;
    return CHAT_OK;
fail:
    saved = errno;
    close(fd);
    trace_sock("close(fd=%d)", fd);
    errno = saved;
    return CHAT_ESYS;
}

static void
tcp_set_nodelay(int fd)
{
    int one = 1;

    /* Chat lines are small and latency matters more than packet count. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
        tcp_trace_setsockopt(fd, "TCP_NODELAY", one);
}

static int
tcp_accept(struct transport *l, struct transport **out)
{
    struct tcp_transport *tt;
    struct addr peer;
    char where[ADDR_STR_MAX];
    int fd;

    *out = NULL;
    memset(&peer, 0, sizeof(peer));
    peer.len = sizeof(peer.ss);
    fd = accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len,
                 SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
            errno == ECONNABORTED)
            return CHAT_EAGAIN;
        trace_sock("accept(fd=%d) = -1 %s", l->fd, strerror(errno));
        return CHAT_ESYS;
    }
    addr_format(&peer, where, sizeof(where));
    trace_sock("accept(fd=%d) = %d from %s", l->fd, fd, where);
    if (peer.ss.ss_family != AF_UNIX)
        tcp_set_nodelay(fd);
    tt = tcp_alloc(fd);
    tt->base.peer = peer;
    tcp_fill_local(&tt->base);
    *out = &tt->base;
    return CHAT_OK;
}

static int
tcp_connect(const struct addr *a, struct transport **out)
{
    struct tcp_transport *tt;
    char where[ADDR_STR_MAX];
    int fd, rc;

    *out = NULL;
    addr_format(a, where, sizeof(where));
    fd = tcp_socket(a->ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    tt = tcp_alloc(fd);
    tt->base.peer = *a;
    *out = &tt->base;
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    trace_sock("connect(fd=%d, %s) = %d%s%s", fd, where, rc, rc ? " " : "",
               rc ? strerror(errno) : "");
    if (rc < 0 && errno != EINPROGRESS)
        return CHAT_ESYS;
    return CHAT_OK;
}

static int
tcp_connect_done(struct transport *t)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return CHAT_ESYS;
    if (err != 0) {
        errno = err;
        return CHAT_ESYS;
    }
    tcp_fill_local(t);
    tcp_set_nodelay(t->fd);
    return CHAT_OK;
}

static ssize_t
tcp_send(struct transport *t, const void *p, size_t n)
{
    ssize_t r;

    /* MSG_NOSIGNAL: a peer that vanished is an error code, not SIGPIPE. */
    do
        r = send(t->fd, p, n, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return CHAT_EAGAIN;
        trace_sock("send(fd=%d, %zu bytes) = -1 %s", t->fd, n,
                   strerror(errno));
        if (errno == EPIPE || errno == ECONNRESET)
            return CHAT_ECLOSED;
        return CHAT_ESYS;
    }
    trace_sock("send(fd=%d, %zu bytes) = %zd", t->fd, n, r);
    return r;
}

static ssize_t
tcp_recv(struct transport *t, void *p, size_t n)
{
    ssize_t r;

    do
        r = recv(t->fd, p, n, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return CHAT_EAGAIN;
        trace_sock("recv(fd=%d, %zu) = -1 %s", t->fd, n, strerror(errno));
        return CHAT_ESYS;
    }
    trace_sock("recv(fd=%d, %zu) = %zd%s", t->fd, n, r,
               r == 0 ? " (end of stream)" : "");
    if (r == 0)
        return CHAT_ECLOSED;
    return r;
}

static void
tcp_shutdown(struct transport *t)
{
    int rc = shutdown(t->fd, SHUT_WR);

    trace_sock("shutdown(fd=%d, SHUT_WR) = %d", t->fd, rc);
}

static void
tcp_close(struct transport *t)
{
    struct tcp_transport *tt = (struct tcp_transport *)t;

    if (t->fd >= 0) {
        close(t->fd);
        trace_sock("close(fd=%d)", t->fd);
    }
    g_free(tt);
}

const struct transport_ops transport_tcp_ops = {
    .name = "tcp",
    .listen = tcp_listen,
    .accept = tcp_accept,
    .connect = tcp_connect,
    .connect_done = tcp_connect_done,
    .send = tcp_send,
    .recv = tcp_recv,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};
