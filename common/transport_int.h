/* transport_int.h - what a transport backend implements. Private to
 * common/transport*.c. */
#ifndef SOCKCHAT_TRANSPORT_INT_H
#define SOCKCHAT_TRANSPORT_INT_H

#include "transport.h"

/* Every backend's object starts with this. */
struct transport {
    const struct transport_ops *ops;
    int fd;
    struct addr local;
    struct addr peer;
};

struct transport_ops {
    const char *name;
    int (*listen)(const struct addr *a, struct transport **out);
    int (*accept)(struct transport *l, struct transport **out);
    /* Non-blocking connect started; CHAT_OK when done or in progress
     * (EINPROGRESS), finish with connect_done after writability. */
    int (*connect)(const struct addr *a, struct transport **out);
    int (*connect_done)(struct transport *t);
    ssize_t (*send)(struct transport *t, const void *p, size_t n);
    ssize_t (*recv)(struct transport *t, void *p, size_t n);
    void (*shutdown)(struct transport *t);
    void (*close)(struct transport *t);
};

#endif /* SOCKCHAT_TRANSPORT_INT_H */
