/* transport_int.h - what a transport backend implements. Private to
 * common/transport*.c. */
#ifndef SOCKCHAT_TRANSPORT_INT_H
#define SOCKCHAT_TRANSPORT_INT_H

#include <stdbool.h>

#include "transport.h"

/* Every backend's object starts with this. */
struct transport {
    const struct transport_ops *ops;
    int fd;
    bool is_listener;
    struct addr local;
    struct addr peer;
};

struct transport_ops {
    const char *name;
    int socktype; /* SOCK_STREAM or SOCK_DGRAM: what getaddrinfo resolves */
    int (*listen)(const struct addr *a, struct transport **out);
    int (*accept)(struct transport *l, struct transport **out);
    /* Start a non-blocking connect; CHAT_OK when done or in progress.
     * connect_done is called when the fd shows the events poll_events
     * asked for: CHAT_OK when connected, CHAT_EAGAIN to keep waiting (udp's
     * handshake), or an error. */
    int (*connect)(const struct addr *a, struct transport **out);
    int (*connect_done)(struct transport *t);
    ssize_t (*send)(struct transport *t, const void *p, size_t n);
    /* Optional: NULL means transport.c loops over send. */
    ssize_t (*sendv)(struct transport *t, const struct iovec *iov,
                     int iovcnt);
    ssize_t (*recv)(struct transport *t, void *p, size_t n);
    void (*shutdown)(struct transport *t);
    void (*close)(struct transport *t);
    /* Optional (NULL: no timers, events as wanted, address only). */
    int (*next_timeout)(const struct transport *t, int64_t now_ms);
    int (*tick)(struct transport *t, int64_t now_ms);
    unsigned (*poll_events)(const struct transport *t, unsigned want);
    void (*describe)(const struct transport *t, char *out, size_t n);
    /* Optional: NULL means close (abort) and true (send_done). */
    void (*abort)(struct transport *t);
    bool (*send_done)(const struct transport *t);
};

/* transport_stream.c: the calls shared by the SOCK_STREAM backends. */
struct transport *stream_alloc(const struct transport_ops *ops, int fd);
int stream_socket(int family);
void stream_close_fd(int fd); /* keeps errno */
void stream_trace_setsockopt(int fd, const char *name, int v);
void stream_fill_local(struct transport *t);
void stream_set_nodelay(int fd);
/* bind fd to a and listen; fd is closed on failure. */
int stream_bind_listen(const struct transport_ops *ops, int fd,
                       const struct addr *a, struct transport **out);
int stream_accept(struct transport *l, struct transport **out);
int stream_connect(const struct transport_ops *ops, const struct addr *a,
                   struct transport **out);
int stream_connect_done(struct transport *t);
ssize_t stream_send(struct transport *t, const void *p, size_t n);
ssize_t stream_sendv(struct transport *t, const struct iovec *iov, int iovcnt);
ssize_t stream_recv(struct transport *t, void *p, size_t n);
void stream_shutdown(struct transport *t);
void stream_close(struct transport *t);

/* transport_udp.c: the most sessions a udp listener l holds at once
 * (default 4096; a valid ECHO beyond it gets RST and no state), and how
 * many it holds now. Other transports: no-op, 0. */
void transport_udp_set_max_sessions(struct transport *l, size_t max);
size_t transport_udp_sessions(const struct transport *l);

#endif /* SOCKCHAT_TRANSPORT_INT_H */
