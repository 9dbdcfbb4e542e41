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

#include <stddef.h>
#include <sys/types.h>

#include "addr.h"

struct transport; /* opaque */
struct transport_ops;

extern const struct transport_ops transport_tcp_ops;

/* The backend for a URL scheme ("tcp"), or NULL. */
const struct transport_ops *transport_find(const char *scheme);

/*
 * Bind and listen on the address a with the backend for ep->scheme.
 * CHAT_OK and a listener in *out, or a negative code (errno kept for
 * CHAT_ESYS).
 */
int transport_listen(const struct endpoint *ep, const struct addr *a,
                     struct transport **out);

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

/* Read up to n bytes. Bytes read (> 0), CHAT_EAGAIN, CHAT_ECLOSED (orderly
 * end of stream) or CHAT_ESYS (errno: ECONNRESET, ...). */
ssize_t transport_recv(struct transport *t, void *p, size_t n);

/* Stop sending: the peer reads end of stream after what was sent. */
void transport_shutdown(struct transport *t);

/* Close and free t. NULL is a no-op. */
void transport_close(struct transport *t);

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
