/* transport.h - a reliable, ordered byte stream, whatever carries it.
 *
 * Everything above this layer (frame, message, session, server, client)
 * sees only these calls and never learns which backend is underneath. A
 * backend is a const ops table in transport_<name>.c; transport.c finds it
 * by the endpoint URL's scheme.
 *
 * All descriptors are non-blocking and close-on-exec.
 */
#ifndef SOCKCHAT_TRANSPORT_H
#define SOCKCHAT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "addr.h"

struct transport; /* opaque */
struct transport_ops;

extern const struct transport_ops transport_tcp_ops, transport_udp_ops,
    transport_unix_ops;

/* Readiness bits, the same values as loop.h's LOOP_READ and LOOP_WRITE. */
#define TRANSPORT_READ 1u
#define TRANSPORT_WRITE 2u

/* The backend for a URL scheme ("tcp"), or NULL. */
const struct transport_ops *transport_find(const char *scheme);

/*
 * Listen on every address url resolves to (a bare host[:port] takes tcp and
 * def_port): up to max listeners in out[], their number in *n. CHAT_OK when
 * at least one is listening (why[] names any address that failed), else a
 * negative code with why[] filled.
 */
int transport_listen_url(const char *url, unsigned short def_port,
                         struct transport **out, size_t max, size_t *n,
                         char *why, size_t why_len);

/*
 * Accept one waiting peer on listener l. CHAT_OK with a new stream in *out,
 * CHAT_EAGAIN when none waits, CHAT_ESYS (errno: EMFILE, ...) otherwise.
 */
int transport_accept(struct transport *l, struct transport **out);

/*
 * Connect to the endpoint given by url (bare host[:port] takes def_port and
 * tcp), trying each resolved address in turn, waiting at most timeout_ms for
 * each. The stream returned is non-blocking. On failure why[] explains.
 */
int transport_connect_url(const char *url, unsigned short def_port,
                          int timeout_ms, struct transport **out, char *why,
                          size_t why_len);

/* Write up to n bytes. Bytes written (> 0), CHAT_EAGAIN, CHAT_ECLOSED (the
 * peer is gone) or CHAT_ESYS. */
ssize_t transport_send(struct transport *t, const void *p, size_t n);

/* Write the iovcnt buffers of iov in order, as one call where the backend
 * can (writev): bytes written (> 0, maybe fewer than all), or as send. */
ssize_t transport_sendv(struct transport *t, const struct iovec *iov,
                        int iovcnt);

/* Read up to n bytes. Bytes read (> 0), CHAT_EAGAIN, CHAT_ECLOSED (orderly
 * end of stream) or CHAT_ESYS (errno: ECONNRESET, ...). */
ssize_t transport_recv(struct transport *t, void *p, size_t n);

/* Stop sending: the peer reads end of stream after what was sent. */
void transport_shutdown(struct transport *t);

/* Close and free t. NULL is a no-op. */
void transport_close(struct transport *t);

/*
 * Abort: close and free t so that the peer sees a reset, whatever unread
 * or unsent bytes there are. tcp: SO_LINGER {1, 0} and close (RST). udp:
 * RST (doc/UDP.md 7.2), sent a few times over, since nobody is left to
 * repeat a lost one, then close without lingering. unix: a plain close (a
 * UNIX stream has no reset; the peer reads ECONNRESET only if unread data
 * was waiting here). NULL is a no-op.
 */
void transport_abort(struct transport *t);

/*
 * True when closing t now loses nothing it was asked to send. Stream
 * backends: always (their kernel goes on delivering after close()). udp
 * (whose client has nobody to deliver after close, doc/UDP.md 7.3): once,
 * after transport_shutdown, our FIN and so every byte before it is
 * acknowledged, or once the stream is over.
 */
bool transport_send_done(const struct transport *t);

/*
 * Timers. A backend that keeps its own reliability (udp) needs to run
 * retransmissions and keepalives; the stream backends have no timers.
 * transport_next_timeout: ms from now_ms until transport_tick() is due, or
 * -1 for never. transport_tick: run what is due; CHAT_OK, or CHAT_ECLOSED
 * (the peer reset or the stream ended) / CHAT_ESYS (errno ETIMEDOUT: the
 * peer stopped answering), after which the stream is dead.
 */
int transport_next_timeout(const struct transport *t, int64_t now_ms);
int transport_tick(struct transport *t, int64_t now_ms);

/* The readiness bits to watch on transport_fd(t) for a caller that wants
 * to read and/or write (TRANSPORT_* bits). A stream backend returns want;
 * udp waits for acks (READ) rather than WRITE while its window is full. */
unsigned transport_poll_events(const struct transport *t, unsigned want);

/* One line about the stream for people: "tcp 127.0.0.1:7710" or
 * "udp [::1]:7710 rtt 0.4 ms, 3 retransmitted". */
void transport_describe(const struct transport *t, char *out, size_t n);

/* The descriptor the loop watches. */
int transport_fd(const struct transport *t);
/* "tcp", "udp", "unix". */
const char *transport_name(const struct transport *t);
/* Peer and local addresses (borrowed from t). */
const struct addr *transport_peer(const struct transport *t);
const struct addr *transport_local(const struct transport *t);
/* The listening endpoint as a URL with the real port ("tcp://[::1]:40211"). */
void transport_format_url(const struct transport *t, char *out, size_t n);

#endif /* SOCKCHAT_TRANSPORT_H */
