/* transport_stream.c - the Berkeley calls shared by the stream-socket
 * backends: tcp (IPv4 or IPv6) and unix (a path on this machine).
 *
 * A SOCK_STREAM socket already is a reliable ordered byte stream, so these
 * backends are a thin layer over the calls; their value is that every call
 * is traced (--trace sockets) and every error becomes a chat_err.
 */
#include "transport_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "err.h"
#include "log.h"

/* The kernel caps it at net.core.somaxconn: a connect storm should queue,
 * not overflow. */
#define STREAM_BACKLOG SOMAXCONN

static const char *
family_name(int family)
{
    switch (family) {
    case AF_INET:
        return "AF_INET";
    case AF_INET6:
        return "AF_INET6";
    case AF_UNIX:
        return "AF_UNIX";
    }
    return "AF_?";
}

struct transport *
stream_alloc(const struct transport_ops *ops, int fd)
{
    struct transport *t = g_new0(struct transport, 1);

    t->ops = ops;
    t->fd = fd;
    return t;
}

void
stream_trace_setsockopt(int fd, const char *name, int v)
{
    trace_sock("setsockopt(fd=%d, %s=%d)", fd, name, v);
}

int
stream_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    trace_sock("socket(%s, SOCK_STREAM) = %d%s%s", family_name(family), fd,
               fd < 0 ? " " : "", fd < 0 ? strerror(errno) : "");
    return fd;
}

void
stream_fill_local(struct transport *t)
{
    t->local.len = sizeof(t->local.ss);
    if (getsockname(t->fd, (struct sockaddr *)&t->local.ss, &t->local.len) < 0)
        t->local.len = 0;
}

void
stream_close_fd(int fd)
{
    int saved = errno;

    close(fd);
    trace_sock("close(fd=%d)", fd);
    errno = saved;
}

int
stream_bind_listen(const struct transport_ops *ops, int fd,
                   const struct addr *a, struct transport **out)
{
    struct transport *t;
    char where[ADDR_STR_MAX];
    int rc;

    *out = NULL;
    addr_format(a, where, sizeof(where));
    rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
    trace_sock("bind(fd=%d, %s) = %d%s%s", fd, where, rc, rc ? " " : "",
               rc ? strerror(errno) : "");
    if (rc < 0)
        goto fail;
    rc = listen(fd, STREAM_BACKLOG);
    trace_sock("listen(fd=%d, backlog=%d) = %d", fd, STREAM_BACKLOG, rc);
    if (rc < 0)
        goto fail;
    t = stream_alloc(ops, fd);
    stream_fill_local(t);
    *out = t;
    return CHAT_OK;
fail:
    stream_close_fd(fd);
    return CHAT_ESYS;
}

void
stream_set_nodelay(int fd)
{
    int one = 1;

    /* Chat lines are small and latency matters more than packet count. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
        stream_trace_setsockopt(fd, "TCP_NODELAY", one);
}

int
stream_accept(struct transport *l, struct transport **out)
{
    struct transport *t;
    struct addr peer;
    char where[ADDR_STR_MAX];
    int fd;

    *out = NULL;
    memset(&peer, 0, sizeof(peer));
    peer.len = sizeof(peer.ss);
    /* accept4 sets O_NONBLOCK and FD_CLOEXEC atomically, so no window
     * exists where the new socket blocks or leaks into a child. */
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
    if (peer.ss.ss_family == AF_INET || peer.ss.ss_family == AF_INET6)
        stream_set_nodelay(fd);
    t = stream_alloc(l->ops, fd);
    t->peer = peer;
    stream_fill_local(t);
    *out = t;
    return CHAT_OK;
}

int
stream_connect(const struct transport_ops *ops, const struct addr *a,
               struct transport **out)
{
    struct transport *t;
    char where[ADDR_STR_MAX];
    int fd, rc;

    *out = NULL;
    addr_format(a, where, sizeof(where));
    fd = stream_socket(a->ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    t = stream_alloc(ops, fd);
    t->peer = *a;
    *out = t;
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    trace_sock("connect(fd=%d, %s) = %d%s%s", fd, where, rc, rc ? " " : "",
               rc ? strerror(errno) : "");
    /* EINPROGRESS: under way (TCP). EAGAIN is not: a UNIX listener's
     * backlog is full and nothing was started; the caller may try again. */
    if (rc < 0 && errno == EAGAIN)
        return CHAT_EAGAIN;
    if (rc < 0 && errno != EINPROGRESS)
        return CHAT_ESYS;
    return CHAT_OK;
}

int
stream_connect_done(struct transport *t)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return CHAT_ESYS;
    if (err != 0) {
        errno = err;
        return CHAT_ESYS;
    }
    stream_fill_local(t);
    if (t->peer.ss.ss_family == AF_INET || t->peer.ss.ss_family == AF_INET6)
        stream_set_nodelay(t->fd);
    return CHAT_OK;
}

ssize_t
stream_send(struct transport *t, const void *p, size_t n)
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

ssize_t
stream_sendv(struct transport *t, const struct iovec *iov, int iovcnt)
{
    struct msghdr mh;
    ssize_t r;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)(uintptr_t)iov;
    mh.msg_iovlen = (size_t)iovcnt;
    /* sendmsg is writev with flags: one call for a whole queue of
     * frames, and MSG_NOSIGNAL as in send(). */
    do
        r = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return CHAT_EAGAIN;
        trace_sock("sendmsg(fd=%d, %d buffers) = -1 %s", t->fd, iovcnt,
                   strerror(errno));
        if (errno == EPIPE || errno == ECONNRESET)
            return CHAT_ECLOSED;
        return CHAT_ESYS;
    }
    trace_sock("sendmsg(fd=%d, %d buffers) = %zd", t->fd, iovcnt, r);
    return r;
}

ssize_t
stream_recv(struct transport *t, void *p, size_t n)
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

void
stream_shutdown(struct transport *t)
{
    int rc = shutdown(t->fd, SHUT_WR);

    trace_sock("shutdown(fd=%d, SHUT_WR) = %d", t->fd, rc);
}

void
stream_close(struct transport *t)
{
    if (t->fd >= 0)
        stream_close_fd(t->fd);
    g_free(t);
}
