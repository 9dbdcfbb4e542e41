/* transport_udp.c - the byte stream over UDP.
 *
 * udp_rel.c makes a reliable ordered stream out of datagrams; this file
 * gives it sockets, a clock and the transport ops, so that the server and
 * the client cannot tell it from TCP. doc/UDP.md is the specification.
 *
 * Connected-socket model. A listener is one UDP socket bound to addr:port
 * with SO_REUSEADDR and SO_REUSEPORT. It answers INIT with a COOKIE and
 * keeps no state. When a valid ECHO comes back, accept() makes a new UDP
 * socket, binds it to the same local address and port and connect()s it
 * to the peer: Linux then hands that peer's datagrams to the connected
 * socket (it scores an exact 4-tuple match above the listener), so every
 * session has a descriptor of its own for the readiness loop, as a TCP
 * connection has. Datagrams that reached the listener for a peer that
 * already has a session (the race right after accept) are dropped; the
 * reliability layer sends them again.
 */
#include "transport_int.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <sodium.h>

#include "err.h"
#include "log.h"
#include "udp_rel.h"

#define UDP_MAX_SESSIONS 4096 /* per listener, unless set otherwise */
#define UDP_ACCEPT_BATCH 64   /* datagrams a listener reads per accept() */
#define UDP_RECV_BATCH 64     /* datagrams a session reads per recv() */
#define UDP_FLUSH_BATCH 256   /* datagrams a session sends per flush */
/* Segmentation offload (doc/UDP.md section 8.4): one send hands the kernel
 * up to UDP_GSO_SEGS datagrams of one size (UDP_SEGMENT), and one receive
 * may return up to UDP_GRO_MAX bytes of datagrams the kernel kept together
 * (UDP_GRO). 48 x 1200 bytes stays below both the 64-segment limit of
 * older kernels and the 64 KiB of one IP packet. */
#define UDP_GSO_SEGS 48
#define UDP_GSO_MAX (UDP_GSO_SEGS * UDP_DGRAM_MAX)
#define UDP_GRO_MAX 65536
#define UDP_BLOCKED_RETRY_US 1000
#define UDP_PEER_KEY_MAX 32
#define UDP_LINGER_MAX_US 30000000 /* a closed session's last delivery */

/* What a listener shares with the sessions it made: the cookie key, the
 * session table (to drop late datagrams of a peer that has a session and
 * to enforce the limit), the sessions closed with data still undelivered
 * (see udp_close), and a reference count, as sessions may outlive their
 * listener. */
struct udp_reg {
    unsigned refs;
    uint8_t key[UDP_COOKIE_KEY_LEN];
    GHashTable *sessions;  /* GBytes peer key -> struct udp_transport */
    GHashTable *lingering; /* GBytes peer key -> struct udp_linger */
    struct udp_transport *listener; /* NULL once it is closed */
    size_t max_sessions;
};

/* Where a datagram to the listener was addressed (IP_PKTINFO), so that
 * replies and the session leave from that address even when the listener
 * is bound to a wildcard on a host with several. */
struct udp_dst {
    bool have;
    int family;
    struct in_addr v4;
    struct in6_addr v6;
    unsigned ifindex;
};

/* A session its owner closed before the peer had everything: the listener
 * goes on delivering it from the listening socket (same address and port),
 * as the kernel does for a TCP socket after close(). */
struct udp_linger {
    struct udp_rel *rel;
    struct addr peer;
    struct udp_dst dst; /* our address, as the session had it */
    int64_t until_us;
};

struct udp_transport {
    struct transport base; /* first: transport.c sees only this */
    struct udp_rel *rel;   /* sessions; NULL on a listener */
    struct udp_reg *reg;   /* the listener's, or NULL for a client */
    GBytes *peer_key;      /* a server session's key in reg->sessions */
    bool superseded; /* the peer's address made a new connection */
    bool head_fed;   /* the datagram at the head of the socket queue was
                      * given to rel but left queued: see udp_recv */
    bool blocked;    /* the socket said EAGAIN; pend waits */
    bool wake;       /* the send buffer reopened outside a send call */
    bool gso;        /* sends may hand the kernel a run (UDP_SEGMENT) */
    /* Datagrams rel gave us that the socket did not take yet: pend_len
     * bytes of datagrams of pend_seg bytes (the last maybe shorter), on
     * the heap only while the socket is full. */
    size_t pend_len, pend_seg;
    uint8_t *pend;
    /* listener counters: answered INITs, valid ECHOs refused for want of
     * room, and datagrams ignored (malformed, foreign, forged, late) */
    uint64_t cookies, refused, ignored;
    /* session counters: datagrams sent and the calls that sent them, and
     * datagrams received and the reads that took them (runs, section 8.4 of
     * doc/UDP.md, make the calls fewer than the datagrams) */
    uint64_t dgrams_out, sends_out, dgrams_in, reads_in;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t
udp_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *
udp_type_name(uint8_t type)
{
    static const char *const names[] = {"?",    "INIT", "COOKIE",
                                        "ECHO", "ACCEPT", "DATA",
                                        "ACK",  "PING", "FIN",
                                        "RST"};

    return type < G_N_ELEMENTS(names) ? names[type] : "?";
}

/* "DATA seq 7 ack 3 len 1168" for the socket trace. */
static void
udp_dgram_desc(const uint8_t *d, size_t n, char *out, size_t len)
{
    struct udp_hdr h;

    if (udp_hdr_parse(d, n, &h) != CHAT_OK) {
        snprintf(out, len, "malformed");
        return;
    }
    snprintf(out, len, "%s cid %08x seq %u ack %u len %u",
             udp_type_name(h.type), h.cid, h.seq, h.ack, h.len);
}

static int
udp_socket(int family)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    trace_sock("socket(%s, SOCK_DGRAM) = %d%s%s",
               family == AF_INET6 ? "AF_INET6" : "AF_INET", fd,
               fd < 0 ? " " : "", fd < 0 ? strerror(errno) : "");
    return fd;
}

static int
udp_setopt(int fd, int level, int name, const char *label)
{
    int one = 1;

    if (setsockopt(fd, level, name, &one, sizeof(one)) < 0) {
        trace_sock("setsockopt(fd=%d, %s=1) = -1 %s", fd, label,
                   strerror(errno));
        return CHAT_ESYS;
    }
    stream_trace_setsockopt(fd, label, one);
    return CHAT_OK;
}

static int
udp_bind(int fd, const struct addr *a)
{
    char where[ADDR_STR_MAX];
    int rc;

    rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
    if (log_trace_sockets()) {
        addr_format(a, where, sizeof(where));
        trace_sock("bind(fd=%d, %s) = %d%s%s", fd, where, rc, rc ? " " : "",
                   rc ? strerror(errno) : "");
    }
    return rc < 0 ? CHAT_ESYS : CHAT_OK;
}

static int
udp_connect_fd(int fd, const struct addr *a)
{
    char where[ADDR_STR_MAX];
    int rc;

    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    if (log_trace_sockets()) {
        addr_format(a, where, sizeof(where));
        trace_sock("connect(fd=%d, %s) = %d%s%s", fd, where, rc,
                   rc ? " " : "", rc ? strerror(errno) : "");
    }
    return rc < 0 ? CHAT_ESYS : CHAT_OK;
}

static void
udp_set_port(struct addr *a, uint16_t port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
    else if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

/* The peer as the bytes the cookie covers and the session table is keyed
 * by: family, port, address (and scope for IPv6). */
static size_t
udp_peer_key(const struct addr *a, uint8_t *out)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;

        out[0] = 4;
        memcpy(out + 1, &sin->sin_port, 2);
        memcpy(out + 3, &sin->sin_addr, 4);
        return 7;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        uint32_t scope = sin6->sin6_scope_id;

        out[0] = 6;
        memcpy(out + 1, &sin6->sin6_port, 2);
        memcpy(out + 3, &sin6->sin6_addr, 16);
        memcpy(out + 19, &scope, 4);
        return 23;
    }
    return 0;
}

static struct udp_transport *
udp_alloc(int fd)
{
    struct udp_transport *u = g_new0(struct udp_transport, 1);

    u->base.ops = &transport_udp_ops;
    u->base.fd = fd;
    return u;
}

/*
 * Segmentation offload for a session's connected socket (doc/UDP.md
 * section 8.4): send runs of datagrams in one call where the kernel knows
 * UDP_SEGMENT (Linux 4.18), and take runs the peer sent that way in one
 * receive (UDP_GRO, Linux 5.0); without UDP_GRO the kernel cuts runs into
 * datagrams before they reach us. Both are optimisations: a kernel without
 * them gets one datagram per call, as any peer may send.
 */
static void
udp_offload(struct udp_transport *u)
{
    /* Whether the kernel knows UDP_SEGMENT does not change while we run:
     * ask once (-1: not asked yet). */
    static int kernel_gso = -1;
    int v = 0;
    socklen_t len = sizeof(v);

    if (kernel_gso < 0) {
        kernel_gso =
            getsockopt(u->base.fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
        if (!kernel_gso)
            trace_sock("getsockopt(fd=%d, UDP_SEGMENT) = -1 %s", u->base.fd,
                       strerror(errno));
    }
    u->gso = kernel_gso;
    (void)udp_setopt(u->base.fd, SOL_UDP, UDP_GRO, "UDP_GRO");
}

static void
udp_linger_free(gpointer p)
{
    struct udp_linger *lg = p;

    udp_rel_free(lg->rel);
    g_free(lg);
}

static void
udp_reg_unref(struct udp_reg *reg)
{
    if (!reg || --reg->refs > 0)
        return;
    g_hash_table_destroy(reg->sessions);
    g_hash_table_destroy(reg->lingering);
    sodium_memzero(reg->key, sizeof(reg->key));
    g_free(reg);
}

/* ---- sending ------------------------------------------------------------ */

/* How many datagrams n bytes of datagrams of seg bytes each are (the last
 * may be shorter): a run's size in datagrams. */
static size_t
udp_dgram_count(size_t n, size_t seg)
{
    return (n + seg - 1) / seg;
}

/* What a send of count datagrams on a connected socket that returned r
 * means: CHAT_OK (sent, or lost the way the network loses datagrams) or
 * CHAT_EAGAIN (the socket is full). */
static int
udp_send_result(struct udp_transport *u, ssize_t r, size_t count)
{
    if (r >= 0) {
        u->dgrams_out += count;
        u->sends_out++;
        return CHAT_OK;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return CHAT_EAGAIN;
    /* A connected UDP socket reports an earlier datagram's ICMP port
     * unreachable here: nobody listens at the peer any more. */
    if (errno == ECONNREFUSED)
        udp_rel_peer_gone(u->rel);
    /* Anything else (ENOBUFS, a route gone) is a lost datagram, which the
     * reliability layer repairs. */
    return CHAT_OK;
}

/* Send one datagram on a connected socket. CHAT_OK (sent, or lost the way
 * the network loses datagrams) or CHAT_EAGAIN (the socket is full). */
static int
udp_send_dgram(struct udp_transport *u, const uint8_t *d, size_t n)
{
    char what[80];
    ssize_t r;

    do
        r = send(u->base.fd, d, n, 0);
    while (r < 0 && errno == EINTR);
    if (log_trace_sockets()) {
        udp_dgram_desc(d, n, what, sizeof(what));
        trace_sock("send(fd=%d, %zu bytes %s) = %zd%s%s", u->base.fd, n, what,
                   r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
    }
    return udp_send_result(u, r, 1);
}

/* Send a run of datagrams of seg bytes each (the last maybe shorter) in
 * one call: the kernel cuts it at seg bytes (UDP_SEGMENT) and, on
 * loopback or towards a socket that takes GRO, carries it as one packet.
 * CHAT_OK (sent or lost), CHAT_EAGAIN, or CHAT_ESYS: this socket cannot
 * (a device or route without segmentation offload says EIO or EINVAL), so
 * it stops trying and the caller sends them one by one. */
static int
udp_send_gso(struct udp_transport *u, const uint8_t *d, size_t n, size_t seg)
{
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov = {.iov_base = (void *)(uintptr_t)d, .iov_len = n};
    struct msghdr m;
    struct cmsghdr *c;
    uint16_t size = (uint16_t)seg;
    ssize_t r;

    memset(&m, 0, sizeof(m));
    memset(&cbuf, 0, sizeof(cbuf));
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf.buf;
    m.msg_controllen = sizeof(cbuf.buf);
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(size));
    memcpy(CMSG_DATA(c), &size, sizeof(size));
    do
        r = sendmsg(u->base.fd, &m, 0);
    while (r < 0 && errno == EINTR);
    trace_sock("sendmsg(fd=%d, %zu bytes in %zu datagrams, UDP_SEGMENT %zu) "
               "= %zd%s%s",
               u->base.fd, n, udp_dgram_count(n, seg), seg, r,
               r < 0 ? " " : "",
               r < 0 ? strerror(errno) : "");
    if (r < 0 && (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT)) {
        u->gso = false;
        return CHAT_ESYS;
    }
    return udp_send_result(u, r, udp_dgram_count(n, seg));
}

/* Send a run of datagrams of seg bytes each (the last maybe shorter): in
 * one call where the socket can, else one by one. Bytes sent off the
 * front: n, or fewer when the socket filled up. */
static size_t
udp_send_run(struct udp_transport *u, const uint8_t *d, size_t n, size_t seg)
{
    size_t off = 0, len;

    if (u->gso && n > seg) {
        switch (udp_send_gso(u, d, n, seg)) {
        case CHAT_OK:
            return n;
        case CHAT_EAGAIN:
            return 0;
        default:
            break;
        }
    }
    while (off < n) {
        len = MIN(seg, n - off);
        if (udp_send_dgram(u, d + off, len) == CHAT_EAGAIN)
            break;
        off += len;
    }
    return off;
}

/* Send run[0..len) (datagrams of seg bytes); what the socket does not take
 * waits in pend. false when the socket is full. */
static bool
udp_send_or_keep(struct udp_transport *u, const uint8_t *run, size_t len,
                 size_t seg)
{
    size_t sent = udp_send_run(u, run, len, seg);

    if (sent == len)
        return true;
    u->pend = g_memdup2(run + sent, len - sent);
    u->pend_len = len - sent;
    u->pend_seg = seg;
    u->blocked = true;
    return false;
}

/*
 * Send what rel has to send, until it has nothing or the socket is full.
 * Datagrams leave in runs: consecutive datagrams of one size (the last of
 * a run may be shorter), up to UDP_GSO_SEGS, go to the kernel in one call
 * (udp_send_gso). A bulk transfer is a run of full datagrams, so the
 * per-packet cost of the stack is paid once per run, not per datagram.
 */
static void
udp_flush(struct udp_transport *u, int64_t now)
{
    uint8_t run[UDP_GSO_MAX], *old = u->pend;
    size_t len = 0, seg = 0, n;
    bool sent;
    int i;

    u->blocked = false;
    if (old != NULL) {
        /* What waited goes first; what of it the socket still does not
         * take waits again. */
        u->pend = NULL;
        sent = udp_send_or_keep(u, old, u->pend_len, u->pend_seg);
        g_free(old);
        if (!sent)
            return;
    }
    for (i = 0; i < UDP_FLUSH_BATCH; i++) {
        n = udp_rel_poll_output(u->rel, now, run + len);
        if (n == 0)
            break;
        if (len > 0 && n > seg) {
            /* Longer than the run's datagrams: it starts the next run.
             * When the socket is full here, that datagram is lost as the
             * network loses one: the acks of those after it show the hole
             * and rel sends it again. */
            if (!udp_send_or_keep(u, run, len, seg))
                return;
            memmove(run, run + len, n);
            len = 0;
        }
        if (len == 0)
            seg = n;
        len += n;
        if (n < seg || !u->gso || len + UDP_DGRAM_MAX > sizeof(run)) {
            if (!udp_send_or_keep(u, run, len, seg))
                return;
            len = 0;
        }
    }
    if (len > 0)
        (void)udp_send_or_keep(u, run, len, seg);
}

/* ---- listener ----------------------------------------------------------- */

union udp_cmsg {
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
             CMSG_SPACE(sizeof(struct in_pktinfo))];
    struct cmsghdr align;
};

/* Make sure no other process serves addr:port: SO_REUSEPORT would let a
 * second server of the same user share the port silently. A socket without
 * the reuse options cannot bind while anyone holds the port. For port 0
 * this finds a free port and writes it into *a. */
static int
udp_claim_port(struct addr *a)
{
    struct addr got;
    int fd, rc;

    fd = udp_socket(a->ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    if (a->ss.ss_family == AF_INET6 &&
        udp_setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY") != CHAT_OK)
        goto fail;
    if (udp_bind(fd, a) != CHAT_OK)
        goto fail;
    memset(&got, 0, sizeof(got));
    got.len = sizeof(got.ss);
    if (getsockname(fd, (struct sockaddr *)&got.ss, &got.len) < 0)
        goto fail;
    udp_set_port(a, addr_port(&got));
    stream_close_fd(fd);
    return CHAT_OK;
fail:
    rc = CHAT_ESYS;
    stream_close_fd(fd);
    return rc;
}

static int
udp_listen(const struct addr *a, struct transport **out)
{
    struct udp_transport *u = NULL;
    struct udp_reg *reg;
    struct addr at = *a;
    int fd = -1, rc = CHAT_ESYS;

    *out = NULL;
    if (sodium_init() < 0)
        return CHAT_ECRYPTO;
    if (a->ss.ss_family != AF_INET && a->ss.ss_family != AF_INET6) {
        errno = EAFNOSUPPORT;
        return CHAT_ESYS;
    }
    rc = udp_claim_port(&at);
    if (rc != CHAT_OK)
        return rc;
    rc = CHAT_ESYS;
    fd = udp_socket(at.ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    /* Sessions bind the same address and port: both options, on every
     * socket of the group, before bind. */
    if (udp_setopt(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR") != CHAT_OK ||
        udp_setopt(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT") != CHAT_OK)
        goto out;
    if (at.ss.ss_family == AF_INET6) {
        if (udp_setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY") !=
                CHAT_OK ||
            udp_setopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO,
                       "IPV6_RECVPKTINFO") != CHAT_OK)
            goto out;
    } else if (udp_setopt(fd, IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO") !=
               CHAT_OK) {
        goto out;
    }
    if (udp_bind(fd, &at) != CHAT_OK)
        goto out;
    u = udp_alloc(fd);
    fd = -1;
    stream_fill_local(&u->base);
    reg = g_new0(struct udp_reg, 1);
    reg->refs = 1;
    reg->max_sessions = UDP_MAX_SESSIONS;
    reg->sessions = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                          (GDestroyNotify)g_bytes_unref, NULL);
    reg->lingering = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                           (GDestroyNotify)g_bytes_unref,
                                           udp_linger_free);
    /* The cookie key lives as long as the listener: a restart invalidates
     * every cookie in flight, which costs a client one more INIT. */
    randombytes_buf(reg->key, sizeof(reg->key));
    u->reg = reg;
    reg->listener = u;
    *out = &u->base;
    u = NULL;
    rc = CHAT_OK;
out:
    if (fd >= 0)
        stream_close_fd(fd);
    return rc;
}

/* recvmsg one datagram with where it was sent to. Its true length (more
 * than cap: truncated), CHAT_EAGAIN, or CHAT_ESYS. */
static ssize_t
udp_recv_from(int fd, uint8_t *d, size_t cap, struct addr *peer,
              struct udp_dst *dst)
{
    struct iovec iov = {.iov_base = d, .iov_len = cap};
    union udp_cmsg cbuf;
    struct msghdr m;
    struct cmsghdr *c;
    char where[ADDR_STR_MAX], what[80];
    ssize_t r;

    memset(peer, 0, sizeof(*peer));
    memset(dst, 0, sizeof(*dst));
    memset(&m, 0, sizeof(m));
    m.msg_name = &peer->ss;
    m.msg_namelen = sizeof(peer->ss);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf.buf;
    m.msg_controllen = sizeof(cbuf.buf);
    do
        r = recvmsg(fd, &m, MSG_TRUNC);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return CHAT_EAGAIN;
        trace_sock("recvmsg(fd=%d) = -1 %s", fd, strerror(errno));
        return CHAT_ESYS;
    }
    peer->len = m.msg_namelen;
    for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;

            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            dst->have = true;
            dst->family = AF_INET;
            dst->v4 = pi.ipi_addr;
        } else if (c->cmsg_level == IPPROTO_IPV6 &&
                   c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi6;

            memcpy(&pi6, CMSG_DATA(c), sizeof(pi6));
            dst->have = true;
            dst->family = AF_INET6;
            dst->v6 = pi6.ipi6_addr;
            dst->ifindex = pi6.ipi6_ifindex;
        }
    }
    if (log_trace_sockets()) {
        addr_format(peer, where, sizeof(where));
        udp_dgram_desc(d, (size_t)r < cap ? (size_t)r : cap, what,
                       sizeof(what));
        trace_sock("recvmsg(fd=%d) = %zd from %s %s", fd, r, where, what);
    }
    return r;
}

/* Send from the listening socket, from the address in dst. */
static void
udp_listener_send(struct udp_transport *l, const uint8_t *p, size_t len,
                  const struct addr *peer, const struct udp_dst *dst)
{
    struct iovec iov;
    union udp_cmsg cbuf;
    struct msghdr m;
    struct cmsghdr *c;
    char where[ADDR_STR_MAX], what[80];
    ssize_t r;

    iov.iov_base = (void *)(uintptr_t)p;
    iov.iov_len = len;
    memset(&cbuf, 0, sizeof(cbuf));
    memset(&m, 0, sizeof(m));
    m.msg_name = (void *)(uintptr_t)&peer->ss;
    m.msg_namelen = peer->len;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (dst->have) {
        m.msg_control = cbuf.buf;
        c = (struct cmsghdr *)(void *)cbuf.buf;
        if (dst->family == AF_INET) {
            struct in_pktinfo pi;

            memset(&pi, 0, sizeof(pi));
            pi.ipi_spec_dst = dst->v4;
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
            m.msg_controllen = CMSG_SPACE(sizeof(pi));
        } else {
            struct in6_pktinfo pi6;

            memset(&pi6, 0, sizeof(pi6));
            pi6.ipi6_addr = dst->v6;
            pi6.ipi6_ifindex = dst->ifindex;
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi6));
            memcpy(CMSG_DATA(c), &pi6, sizeof(pi6));
            m.msg_controllen = CMSG_SPACE(sizeof(pi6));
        }
    }
    do
        r = sendmsg(l->base.fd, &m, 0);
    while (r < 0 && errno == EINTR);
    if (log_trace_sockets()) {
        addr_format(peer, where, sizeof(where));
        udp_dgram_desc(p, len, what, sizeof(what));
        trace_sock("sendmsg(fd=%d, %zu bytes %s, %s) = %zd%s%s", l->base.fd,
                   len, what, where, r, r < 0 ? " " : "",
                   r < 0 ? strerror(errno) : "");
    }
}

/* Answer a peer without a session: at most as many bytes as it sent. */
static void
udp_listener_reply(struct udp_transport *l, const uint8_t *p, size_t len,
                   size_t got, const struct addr *peer,
                   const struct udp_dst *dst)
{
    if (len > got) /* udp_listen_input never asks; checked all the same */
        return;
    udp_listener_send(l, p, len, peer, dst);
}

/* ---- lingering ---------------------------------------------------------- */

/* Our address as a udp_dst, for sending from the listener. */
static void
udp_dst_from(const struct addr *local, struct udp_dst *dst)
{
    memset(dst, 0, sizeof(*dst));
    if (local->ss.ss_family == AF_INET) {
        dst->have = true;
        dst->family = AF_INET;
        dst->v4 = ((const struct sockaddr_in *)&local->ss)->sin_addr;
    } else if (local->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 =
            (const struct sockaddr_in6 *)&local->ss;

        dst->have = true;
        dst->family = AF_INET6;
        dst->v6 = sin6->sin6_addr;
        dst->ifindex = sin6->sin6_scope_id;
    }
}

/* Move a lingering session along: timers, output, and input nobody reads.
 * true when it is finished and can go. */
static bool
udp_linger_step(struct udp_transport *l, struct udp_linger *lg, int64_t now)
{
    uint8_t d[UDP_DGRAM_MAX];
    size_t n;
    int i;

    udp_rel_tick(lg->rel, now);
    /* Bytes the peer still sends are read and dropped, so that its FIN
     * gets through and acked. */
    for (i = 0; i < UDP_RECV_BATCH; i++)
        if (udp_rel_read(lg->rel, d, sizeof(d)) <= 0)
            break;
    for (i = 0; i < UDP_FLUSH_BATCH; i++) {
        n = udp_rel_poll_output(lg->rel, now, d);
        if (n == 0)
            break;
        udp_listener_send(l, d, n, &lg->peer, &lg->dst);
    }
    return udp_rel_send_done(lg->rel) || now >= lg->until_us;
}

static void
udp_linger_run(struct udp_transport *l, int64_t now)
{
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, l->reg->lingering);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (udp_linger_step(l, v, now))
            g_hash_table_iter_remove(&it);
}

/* The session's own socket: bound where the ECHO arrived, connected to
 * the peer. */
static int
udp_session_socket(const struct udp_transport *l, const struct addr *peer,
                   const struct udp_dst *dst, int *out)
{
    struct addr local = l->base.local;
    int fd, rc = CHAT_ESYS;

    *out = -1;
    if (dst->have && dst->family == AF_INET &&
        local.ss.ss_family == AF_INET) {
        ((struct sockaddr_in *)&local.ss)->sin_addr = dst->v4;
    } else if (dst->have && dst->family == AF_INET6 &&
               local.ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&local.ss;

        sin6->sin6_addr = dst->v6;
        sin6->sin6_scope_id =
            IN6_IS_ADDR_LINKLOCAL(&dst->v6) ? dst->ifindex : 0;
    }
    fd = udp_socket(local.ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    if (udp_setopt(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR") != CHAT_OK ||
        udp_setopt(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT") != CHAT_OK)
        goto fail;
    if (local.ss.ss_family == AF_INET6 &&
        udp_setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY") != CHAT_OK)
        goto fail;
    if (udp_bind(fd, &local) != CHAT_OK || udp_connect_fd(fd, peer) != CHAT_OK)
        goto fail;
    *out = fd;
    return CHAT_OK;
fail:
    stream_close_fd(fd);
    return rc;
}

static int
udp_session_new(struct udp_transport *l, const struct addr *peer,
                const struct udp_dst *dst, const struct udp_listen_result *res,
                const uint8_t *key, size_t key_len, struct transport **out)
{
    struct udp_rel_params p;
    struct udp_transport *u;
    int fd = -1, rc;
    int64_t now = udp_now_us();

    rc = udp_session_socket(l, peer, dst, &fd);
    if (rc != CHAT_OK)
        return rc;
    u = udp_alloc(fd);
    udp_offload(u);
    u->base.peer = *peer;
    stream_fill_local(&u->base);
    udp_rel_params_default(&p);
    p.isn = randombytes_random();
    u->rel = udp_rel_new_server(&p, res->cid, res->peer_isn, res->peer_wnd,
                                now);
    u->reg = l->reg;
    u->reg->refs++;
    u->peer_key = g_bytes_new(key, key_len);
    g_hash_table_insert(u->reg->sessions, g_bytes_ref(u->peer_key), u);
    udp_flush(u, now); /* ACCEPT, from the new socket */
    *out = &u->base;
    return CHAT_OK;
}

static int
udp_accept(struct transport *t, struct transport **out)
{
    struct udp_transport *l = (struct udp_transport *)t;
    struct udp_reg *reg = l->reg;
    uint8_t d[UDP_DGRAM_MAX + 1], reply[UDP_DGRAM_MAX], key[UDP_PEER_KEY_MAX];
    struct udp_listen_result res;
    struct udp_transport *old;
    struct udp_dst dst;
    struct addr peer;
    size_t key_len;
    ssize_t n;
    GBytes *k;
    int i;

    *out = NULL;
    udp_linger_run(l, udp_now_us());
    for (i = 0; i < UDP_ACCEPT_BATCH; i++) {
        struct udp_linger *lg;
        struct udp_hdr h;

        n = udp_recv_from(t->fd, d, sizeof(d), &peer, &dst);
        if (n == CHAT_EAGAIN)
            return CHAT_EAGAIN;
        if (n < 0) {
            /* ICMP errors and the like concern some earlier reply, never
             * the listener itself: go on with the next datagram. */
            l->ignored++;
            continue;
        }
        key_len = udp_peer_key(&peer, key);
        if ((size_t)n > UDP_DGRAM_MAX || key_len == 0) {
            l->ignored++;
            continue;
        }
        k = g_bytes_new_static(key, key_len);
        old = g_hash_table_lookup(reg->sessions, k);
        lg = g_hash_table_lookup(reg->lingering, k);
        if (lg && udp_hdr_parse(d, (size_t)n, &h) == CHAT_OK &&
            h.cid == udp_rel_cid(lg->rel)) {
            /* The peer of a closed session, still being served. */
            udp_rel_input(lg->rel, udp_now_us(), d, (size_t)n);
            if (udp_linger_step(l, lg, udp_now_us()))
                g_hash_table_remove(reg->lingering, k);
            g_bytes_unref(k);
            continue;
        }
        g_bytes_unref(k);
        udp_listen_input(reg->key, (uint32_t)(udp_now_us() / 1000000), key,
                         key_len, d, (size_t)n, reply, &res);
        switch (res.verdict) {
        case UDP_LISTEN_DROP:
            l->ignored++;
            break;
        case UDP_LISTEN_REPLY:
            l->cookies++;
            udp_listener_reply(l, reply, res.reply_len, (size_t)n, &peer,
                               &dst);
            break;
        case UDP_LISTEN_STRAY:
            /* A session's datagram that beat its socket: drop. Otherwise
             * the peer talks to a session that is gone: tell it. */
            if (old)
                l->ignored++;
            else
                udp_listener_reply(l, reply, res.reply_len, (size_t)n, &peer,
                                   &dst);
            break;
        case UDP_LISTEN_ACCEPT:
            if (old) {
                /* The same ECHO again (a copy that beat the session's
                 * socket): the session answers its copies. A new id from
                 * that address and port means the old peer is gone; two
                 * connected sockets on one 4-tuple would split its
                 * datagrams, so the old session ends first and the
                 * client's next ECHO gets through. (Usually the session's
                 * own socket sees that ECHO: udp_session_foreign.) */
                if (udp_rel_cid(old->rel) != res.cid)
                    old->superseded = true;
                l->ignored++;
                break;
            }
            if (lg) {
                /* A new connection from that address and port: the old
                 * peer is gone, and so is the point of lingering. */
                k = g_bytes_new_static(key, key_len);
                g_hash_table_remove(reg->lingering, k);
                g_bytes_unref(k);
            }
            if (g_hash_table_size(reg->sessions) +
                    g_hash_table_size(reg->lingering) >=
                reg->max_sessions) {
                l->refused++;
                udp_listener_reply(l, reply, res.reply_len, (size_t)n, &peer,
                                   &dst);
                break;
            }
            return udp_session_new(l, &peer, &dst, &res, key, key_len, out);
        }
    }
    return CHAT_EAGAIN;
}

/* ---- client ------------------------------------------------------------- */

static int
udp_connect(const struct addr *a, struct transport **out)
{
    struct udp_rel_params p;
    struct udp_transport *u;
    uint8_t nonce[UDP_NONCE_LEN];
    uint32_t cid = 0;
    int fd;

    *out = NULL;
    if (sodium_init() < 0)
        return CHAT_ECRYPTO;
    fd = udp_socket(a->ss.ss_family);
    if (fd < 0)
        return CHAT_ESYS;
    u = udp_alloc(fd);
    udp_offload(u);
    u->base.peer = *a;
    *out = &u->base;
    /* connect() on UDP sends nothing: it fixes the peer, so the kernel
     * drops datagrams from anyone else and reports ICMP errors to us. */
    if (udp_connect_fd(fd, a) != CHAT_OK)
        return CHAT_ESYS;
    stream_fill_local(&u->base);
    while (cid == 0)
        cid = randombytes_random();
    randombytes_buf(nonce, sizeof(nonce));
    udp_rel_params_default(&p);
    p.isn = randombytes_random();
    u->rel = udp_rel_new_client(&p, cid, nonce, udp_now_us());
    udp_flush(u, udp_now_us()); /* INIT */
    return CHAT_OK;
}

/* ---- the session's stream ----------------------------------------------- */

/* Drop the datagram at the head of the socket queue. */
static int
udp_discard_head(struct udp_transport *u)
{
    uint8_t c;
    ssize_t r;

    do
        r = recv(u->base.fd, &c, sizeof(c), MSG_TRUNC);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        trace_sock("recv(fd=%d, discard) = -1 %s", u->base.fd,
                   strerror(errno));
        if (errno == ECONNREFUSED)
            udp_rel_peer_gone(u->rel);
        return CHAT_ESYS;
    }
    u->head_fed = false;
    return CHAT_OK;
}

/* Look at the next datagram without taking it off the queue: its true
 * length, CHAT_EAGAIN, or CHAT_ESYS. With UDP_GRO it may be a run of
 * datagrams the peer sent in one call; *seg is then their size (the last
 * may be shorter), else the whole length. */
static ssize_t
udp_peek(struct udp_transport *u, uint8_t *d, size_t cap, size_t *seg)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov = {.iov_base = d, .iov_len = cap};
    struct msghdr m;
    struct cmsghdr *c;
    char what[80];
    ssize_t r;
    int size;

    memset(&m, 0, sizeof(m));
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf.buf;
    m.msg_controllen = sizeof(cbuf.buf);
    do
        r = recvmsg(u->base.fd, &m, MSG_PEEK | MSG_TRUNC);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return CHAT_EAGAIN;
        trace_sock("recv(fd=%d) = -1 %s", u->base.fd, strerror(errno));
        if (errno == ECONNREFUSED)
            udp_rel_peer_gone(u->rel);
        return CHAT_ESYS;
    }
    *seg = (size_t)r;
    for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            memcpy(&size, CMSG_DATA(c), sizeof(size));
            if (size > 0 && (size_t)size < *seg)
                *seg = (size_t)size;
        }
    }
    if (log_trace_sockets()) {
        udp_dgram_desc(d, (size_t)r < cap ? (size_t)r : cap, what,
                       sizeof(what));
        if (*seg < (size_t)r)
            trace_sock("recv(fd=%d) = %zd in %zu datagrams of %zu, first %s",
                       u->base.fd, r, udp_dgram_count((size_t)r, *seg), *seg,
                       what);
        else
            trace_sock("recv(fd=%d) = %zd %s", u->base.fd, r, what);
    }
    return r;
}

/*
 * A datagram with another connection id on a server session's socket. The
 * kernel hands a session everything from its peer's address and port, so
 * a client that restarted on the same port (or its INIT) arrives here, not
 * at the listener. Answer as the listener would, statelessly: INIT gets a
 * COOKIE (no larger than the INIT), and a valid ECHO proves the old peer is
 * gone, so this session ends (superseded) and the client's next ECHO finds
 * the listener. Anything else from a stranger is dropped: an RST carrying
 * its id would refuse the new connection. true when d was foreign.
 */
static bool
udp_session_foreign(struct udp_transport *u, const uint8_t *d, size_t n)
{
    uint8_t reply[UDP_DGRAM_MAX];
    struct udp_listen_result res;
    struct udp_hdr h;

    if (!u->reg || !u->peer_key || udp_hdr_parse(d, n, &h) != CHAT_OK ||
        h.cid == udp_rel_cid(u->rel))
        return false;
    udp_listen_input(u->reg->key, (uint32_t)(udp_now_us() / 1000000),
                     g_bytes_get_data(u->peer_key, NULL),
                     g_bytes_get_size(u->peer_key), d, n, reply, &res);
    if (res.verdict == UDP_LISTEN_REPLY && res.reply_len <= n)
        udp_send_dgram(u, reply, res.reply_len);
    else if (res.verdict == UDP_LISTEN_ACCEPT) {
        u->superseded = true;
        trace_sock("udp recv(fd=%d): the peer started a new connection",
                   u->base.fd);
    }
    return true;
}

/* Give rel the datagrams of one receive: n bytes of datagrams of seg bytes
 * each (the last maybe shorter; see udp_peek). A receive longer than the
 * buffer was truncated and is dropped whole, as is any datagram longer
 * than the protocol allows. On a server session, datagrams of another
 * connection are answered as the listener would (check_foreign). */
static void
udp_feed(struct udp_transport *u, int64_t now, const uint8_t *d, size_t n,
         size_t seg, bool check_foreign)
{
    size_t off, len;

    if (n > UDP_GRO_MAX || seg == 0 || seg > UDP_DGRAM_MAX)
        return;
    u->reads_in++;
    u->dgrams_in += udp_dgram_count(n, seg);
    for (off = 0; off < n; off += len) {
        len = MIN(seg, n - off);
        if (check_foreign && udp_session_foreign(u, d + off, len))
            continue;
        udp_rel_input(u->rel, now, d + off, len);
    }
}

/* How the stream ended, as the stream backends say it. */
static ssize_t
udp_end(const struct udp_transport *u)
{
    if (udp_rel_eof(u->rel))
        return CHAT_ECLOSED;
    switch (udp_rel_state(u->rel)) {
    case UDP_REL_DEAD:
        errno = ETIMEDOUT;
        break;
    case UDP_REL_REFUSED:
        errno = ECONNREFUSED;
        break;
    default:
        errno = ECONNRESET;
        break;
    }
    return CHAT_ESYS;
}

static bool
udp_over(const struct udp_transport *u)
{
    enum udp_rel_state s = udp_rel_state(u->rel);

    return s == UDP_REL_RESET || s == UDP_REL_REFUSED || s == UDP_REL_DEAD;
}

/*
 * Read what the socket holds into rel, then hand over in-order bytes.
 *
 * The readiness loop is level-triggered on the socket, but rel may hold
 * more in-order bytes than the caller's buffer takes (a datagram can close
 * a hole and release many). Bytes left in rel with an empty socket queue
 * would wait for the next datagram from the peer. So a datagram is read
 * with MSG_PEEK, given to rel, and taken off the queue only when
 * everything it made readable fits in this call; otherwise it stays at
 * the head, already fed (head_fed), and keeps the socket readable until
 * the caller has read the rest. The end of the stream counts as one more
 * thing to read.
 */
static ssize_t
udp_recv(struct transport *t, void *p, size_t n)
{
    struct udp_transport *u = (struct udp_transport *)t;
    uint8_t d[UDP_GRO_MAX];
    bool was_full = udp_rel_writable(u->rel) == 0;
    int64_t now = udp_now_us();
    size_t seg;
    ssize_t r;
    int i;

    if (n == 0)
        return CHAT_EAGAIN;
    if (u->superseded) {
        errno = ECONNRESET;
        return CHAT_ESYS;
    }
    for (i = 0; i < UDP_RECV_BATCH && !udp_over(u); i++) {
        if (u->head_fed) {
            if (udp_rel_read_left(u->rel, n) ||
                udp_discard_head(u) != CHAT_OK)
                break;
            continue;
        }
        if (udp_rel_readable(u->rel) >= n)
            break;
        r = udp_peek(u, d, sizeof(d), &seg);
        if (r < 0)
            break;
        udp_feed(u, now, d, (size_t)r, seg, true);
        u->head_fed = true;
        if (udp_rel_read_left(u->rel, n))
            break;
        if (udp_discard_head(u) != CHAT_OK)
            break;
    }
    udp_flush(u, now);
    if (was_full && udp_rel_writable(u->rel) > 0)
        u->wake = true;
    r = udp_rel_read(u->rel, p, n);
    if (r == CHAT_ECLOSED)
        return udp_end(u);
    if (r > 0)
        trace_sock("udp recv(fd=%d, %zu) = %zd in order", t->fd, n, r);
    return r;
}

static ssize_t
udp_send(struct transport *t, const void *p, size_t n)
{
    struct udp_transport *u = (struct udp_transport *)t;
    ssize_t r;

    if (u->superseded)
        return CHAT_ECLOSED;
    r = udp_rel_write(u->rel, p, n);
    udp_flush(u, udp_now_us());
    if (r == CHAT_ECLOSED && udp_rel_state(u->rel) == UDP_REL_DEAD) {
        errno = ETIMEDOUT;
        return CHAT_ESYS;
    }
    if (r > 0)
        trace_sock("udp send(fd=%d, %zu) = %zd queued", t->fd, n, r);
    return r;
}

/* Write the buffers into the stream in order, then send what they make:
 * frames queued together leave packed into full datagrams, not one
 * datagram (and one send) each. */
static ssize_t
udp_sendv(struct transport *t, const struct iovec *iov, int iovcnt)
{
    struct udp_transport *u = (struct udp_transport *)t;
    ssize_t total = 0, r = 0;
    int i;

    if (u->superseded)
        return CHAT_ECLOSED;
    for (i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        r = udp_rel_write(u->rel, iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            break;
        total += r;
        if ((size_t)r < iov[i].iov_len)
            break;
    }
    udp_flush(u, udp_now_us());
    if (total > 0) {
        trace_sock("udp sendv(fd=%d, %d buffers) = %zd queued", t->fd, iovcnt,
                   total);
        return total;
    }
    if (r == CHAT_ECLOSED && udp_rel_state(u->rel) == UDP_REL_DEAD) {
        errno = ETIMEDOUT;
        return CHAT_ESYS;
    }
    return r < 0 ? r : CHAT_EAGAIN;
}

static int
udp_connect_done(struct transport *t)
{
    struct udp_transport *u = (struct udp_transport *)t;
    uint8_t d[UDP_GRO_MAX];
    int64_t now = udp_now_us();
    size_t seg;
    ssize_t r;
    int i;

    /* Stop at ACCEPT: what follows it is stream data for udp_recv, and
     * must stay in the socket so that the socket stays readable. */
    for (i = 0; i < UDP_RECV_BATCH; i++) {
        enum udp_rel_state s = udp_rel_state(u->rel);

        if (s != UDP_REL_INIT_SENT && s != UDP_REL_ECHO_SENT)
            break;
        r = udp_peek(u, d, sizeof(d), &seg);
        if (r < 0)
            break;
        udp_feed(u, now, d, (size_t)r, seg, false);
        if (udp_discard_head(u) != CHAT_OK)
            break;
    }
    udp_flush(u, now);
    switch (udp_rel_state(u->rel)) {
    case UDP_REL_INIT_SENT:
    case UDP_REL_ECHO_SENT:
        return CHAT_EAGAIN;
    case UDP_REL_OPEN:
        stream_fill_local(t);
        return CHAT_OK;
    default:
        return (int)udp_end(u);
    }
}

static void
udp_shutdown(struct transport *t)
{
    struct udp_transport *u = (struct udp_transport *)t;

    if (!u->rel)
        return;
    udp_rel_close(u->rel);
    udp_flush(u, udp_now_us());
    trace_sock("udp shutdown(fd=%d): FIN queued", t->fd);
}

/*
 * Close. Unread input turns the close into RST, as with TCP; otherwise FIN
 * follows what was written. A server session whose peer does not have
 * everything yet is handed to its listener: once this socket is closed the
 * peer's datagrams reach the listening socket, and the listener goes on
 * delivering from it for up to UDP_LINGER_MAX_US. A client has no one to
 * hand over to; what is unacknowledged when it closes is lost, so a client
 * reads to the end of the stream first (the end waits for the ack of its
 * own FIN, see udp_rel_read).
 */
static void
udp_close(struct transport *t)
{
    struct udp_transport *u = (struct udp_transport *)t;
    struct udp_linger *lg;
    int64_t now = udp_now_us();

    if (u->rel) {
        if (udp_rel_readable(u->rel) > 0)
            udp_rel_abort(u->rel);
        else
            udp_rel_close(u->rel);
        if (!u->superseded && t->fd >= 0)
            udp_flush(u, now);
    }
    if (u->reg && u->peer_key &&
        g_hash_table_lookup(u->reg->sessions, u->peer_key) == u)
        g_hash_table_remove(u->reg->sessions, u->peer_key);
    if (u->rel && u->reg && u->reg->listener && u->peer_key &&
        !u->superseded && !udp_rel_send_done(u->rel)) {
        lg = g_new0(struct udp_linger, 1);
        lg->rel = u->rel;
        lg->peer = t->peer;
        udp_dst_from(&t->local, &lg->dst);
        lg->until_us = now + UDP_LINGER_MAX_US;
        g_hash_table_replace(u->reg->lingering, g_bytes_ref(u->peer_key), lg);
        u->rel = NULL;
        trace_sock("udp close(fd=%d): the listener delivers the rest", t->fd);
    }
    udp_rel_free(u->rel);
    if (u->peer_key)
        g_bytes_unref(u->peer_key);
    if (u->reg && u->reg->listener == u) {
        /* Lingering sessions end with their listener. */
        u->reg->listener = NULL;
        g_hash_table_remove_all(u->reg->lingering);
    }
    udp_reg_unref(u->reg);
    if (t->fd >= 0)
        stream_close_fd(t->fd);
    g_free(u->pend);
    g_free(u);
}

/*
 * transport_abort: RST at once, then close without lingering. Nobody is
 * left to repeat a lost RST, and a relay between the peers (tests/lossy)
 * swallows the ICMP port unreachable that would tell the peer later, so
 * the RST goes out UDP_ABORT_COPIES times; copies of an RST are harmless.
 */
#define UDP_ABORT_COPIES 3

static void
udp_abort(struct transport *t)
{
    struct udp_transport *u = (struct udp_transport *)t;
    uint8_t d[UDP_DGRAM_MAX];
    size_t n;
    int i;

    if (u->rel && !u->superseded && t->fd >= 0) {
        udp_rel_abort(u->rel);
        n = udp_rel_poll_output(u->rel, udp_now_us(), d);
        for (i = 0; n > 0 && i < UDP_ABORT_COPIES; i++)
            (void)udp_send_dgram(u, d, n);
    }
    udp_close(t);
}

/* transport_send_done: nothing of ours is left to deliver. */
static bool
udp_send_done(const struct transport *t)
{
    const struct udp_transport *u = (const struct udp_transport *)t;

    return !u->rel || u->superseded || udp_rel_send_done(u->rel);
}

/* ---- timers and readiness ----------------------------------------------- */

static int
udp_us_to_ms(int64_t us)
{
    if (us < 0)
        return -1;
    /* Round up: waking before the deadline would find nothing due. */
    us = (us + 999) / 1000;
    return us > INT_MAX ? INT_MAX : (int)us;
}

/* A listener's timers are its lingering sessions'. */
static int
udp_listener_next_timeout(const struct udp_transport *l)
{
    GHashTableIter it;
    gpointer k, v;
    int64_t now = udp_now_us(), best = -1, us;

    g_hash_table_iter_init(&it, l->reg->lingering);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const struct udp_linger *lg = v;

        us = udp_rel_next_timeout(lg->rel, now);
        us = us < 0 ? lg->until_us - now : MIN(us, lg->until_us - now);
        if (us < 0)
            us = 0;
        if (best < 0 || us < best)
            best = us;
    }
    return udp_us_to_ms(best);
}

static int
udp_next_timeout(const struct transport *t, int64_t now_ms)
{
    const struct udp_transport *u = (const struct udp_transport *)t;
    int64_t us;

    /* udp keeps its own microsecond clock (CLOCK_MONOTONIC) for RTT; the
     * answer is relative, so the caller's clock does not matter. */
    (void)now_ms;
    if (!u->rel)
        return udp_listener_next_timeout(u);
    if (u->superseded || u->wake || udp_over(u))
        return 0;
    us = udp_rel_next_timeout(u->rel, udp_now_us());
    if (u->blocked && (us < 0 || us > UDP_BLOCKED_RETRY_US))
        us = UDP_BLOCKED_RETRY_US;
    return udp_us_to_ms(us);
}

static int
udp_tick(struct transport *t, int64_t now_ms)
{
    struct udp_transport *u = (struct udp_transport *)t;
    int64_t now = udp_now_us();

    (void)now_ms;
    if (!u->rel) {
        udp_linger_run(u, now);
        return CHAT_OK;
    }
    u->wake = false;
    if (u->superseded)
        return CHAT_ECLOSED;
    udp_rel_tick(u->rel, now);
    udp_flush(u, now);
    switch (udp_rel_state(u->rel)) {
    case UDP_REL_RESET:
        return CHAT_ECLOSED;
    case UDP_REL_REFUSED:
        errno = ECONNREFUSED;
        return CHAT_ESYS;
    case UDP_REL_DEAD:
        errno = ETIMEDOUT;
        return CHAT_ESYS;
    default:
        return CHAT_OK;
    }
}

static unsigned
udp_poll_events(const struct transport *t, unsigned want)
{
    const struct udp_transport *u = (const struct udp_transport *)t;
    enum udp_rel_state s;
    unsigned ev = 0;

    if (!u->rel)
        return want & TRANSPORT_READ;
    s = udp_rel_state(u->rel);
    if (s == UDP_REL_INIT_SENT || s == UDP_REL_ECHO_SENT)
        return TRANSPORT_READ | (u->blocked ? TRANSPORT_WRITE : 0u);
    /* Acks arrive as datagrams to read: while rel waits for one, READ is
     * needed even by a caller that only wants to write. */
    if ((want & TRANSPORT_READ) || udp_rel_wants_input(u->rel))
        ev |= TRANSPORT_READ;
    if ((want & TRANSPORT_WRITE) &&
        (u->blocked || udp_rel_writable(u->rel) > 0))
        ev |= TRANSPORT_WRITE;
    return ev;
}

static void
udp_describe(const struct transport *t, char *out, size_t n)
{
    const struct udp_transport *u = (const struct udp_transport *)t;
    struct udp_rel_stats st;
    char where[ADDR_STR_MAX];
    enum udp_rel_state s;

    if (!u->rel) {
        addr_format(&t->local, where, sizeof(where));
        snprintf(out, n,
                 "udp %s listening, %u sessions (%u closing), %llu cookies, "
                 "%llu refused, %llu ignored",
                 where, g_hash_table_size(u->reg->sessions),
                 g_hash_table_size(u->reg->lingering),
                 (unsigned long long)u->cookies,
                 (unsigned long long)u->refused,
                 (unsigned long long)u->ignored);
        return;
    }
    addr_format(&t->peer, where, sizeof(where));
    udp_rel_get_stats(u->rel, &st);
    s = udp_rel_state(u->rel);
    snprintf(out, n,
             "udp %s rtt %.1f ms, rto %u ms, %llu retransmitted, %llu "
             "datagrams sent in %llu calls, %llu received in %llu%s%s",
             where, st.srtt_us / 1000.0, st.rto_us / 1000,
             (unsigned long long)st.retransmits,
             (unsigned long long)u->dgrams_out,
             (unsigned long long)u->sends_out,
             (unsigned long long)u->dgrams_in,
             (unsigned long long)u->reads_in,
             s == UDP_REL_OPEN ? "" : ", ",
             s == UDP_REL_OPEN ? "" : udp_rel_state_name(s));
}

void
transport_udp_set_max_sessions(struct transport *l, size_t max)
{
    struct udp_transport *u = (struct udp_transport *)l;

    if (l->ops == &transport_udp_ops && u->reg && !u->rel)
        u->reg->max_sessions = max;
}

size_t
transport_udp_sessions(const struct transport *l)
{
    const struct udp_transport *u = (const struct udp_transport *)l;

    if (l->ops != &transport_udp_ops || !u->reg)
        return 0;
    return g_hash_table_size(u->reg->sessions);
}

const struct transport_ops transport_udp_ops = {
    .name = "udp",
    .socktype = SOCK_DGRAM,
    .listen = udp_listen,
    .accept = udp_accept,
    .connect = udp_connect,
    .connect_done = udp_connect_done,
    .send = udp_send,
    .sendv = udp_sendv,
    .recv = udp_recv,
    .shutdown = udp_shutdown,
    .close = udp_close,
    .next_timeout = udp_next_timeout,
    .tick = udp_tick,
    .poll_events = udp_poll_events,
    .describe = udp_describe,
    .abort = udp_abort,
    .send_done = udp_send_done,
};
