/* transport_tcp.c - the byte stream over TCP, IPv4 or IPv6.
 *
 * Everything but listening is the shared stream code; what is TCP's own is
 * which socket options a listener needs.
 */
#include "transport_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "err.h"

static int
tcp_listen(const struct addr *a, struct transport **out)
{
    int fd, one = 1;

    *out = NULL;
    fd = stream_socket(a->ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    /* A restarted server must not wait out TIME_WAIT to bind again. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    stream_trace_setsockopt(fd, "SO_REUSEADDR", one);
    /* Decide explicitly: [::] must not also take IPv4, so that 0.0.0.0 and
     * [::] can both be listed, whatever net.ipv6.bindv6only says. */
    if (a->ss.ss_family == AF_INET6) {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
            goto fail;
        stream_trace_setsockopt(fd, "IPV6_V6ONLY", one);
    }
    return stream_bind_listen(&transport_tcp_ops, fd, a, out);
fail:
    stream_close_fd(fd);
    return CHAT_ESYS;
}

static int
tcp_connect(const struct addr *a, struct transport **out)
{
    return stream_connect(&transport_tcp_ops, a, out);
}

/* transport_abort: a zero linger time makes close() send RST and drop
 * whatever is queued either way. */
static void
tcp_abort(struct transport *t)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};

    if (t->fd >= 0 &&
        setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0)
        stream_trace_setsockopt(t->fd, "SO_LINGER{1,0}", 0);
    stream_close(t);
}

const struct transport_ops transport_tcp_ops = {
    .name = "tcp",
    .socktype = SOCK_STREAM,
    .listen = tcp_listen,
    .accept = stream_accept,
    .connect = tcp_connect,
    .connect_done = stream_connect_done,
    .send = stream_send,
    .sendv = stream_sendv,
    .recv = stream_recv,
    .shutdown = stream_shutdown,
    .close = stream_close,
    .abort = tcp_abort,
};
