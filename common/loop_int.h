/* loop_int.h - what a loop backend implements. Private to common/loop*.c. */
#ifndef SOCKCHAT_LOOP_INT_H
#define SOCKCHAT_LOOP_INT_H

#include "loop.h"

/* A watched descriptor: loop.c keeps a table of them indexed by fd. */
struct loop_watch {
    loop_cb_fn cb;
    void *arg;
    unsigned events; /* 0: slot unused */
};

struct loop_ops {
    const char *name;
    int fd_limit; /* 0: no limit beyond RLIMIT_NOFILE */
    /* Create backend state in *state. */
    int (*init)(void **state);
    int (*add)(void *state, int fd, unsigned events);
    int (*mod)(void *state, int fd, unsigned old_events, unsigned events);
    void (*del)(void *state, int fd, unsigned old_events);
    /* Wait, then call report(l, fd, events) for each ready fd. */
    int (*wait)(void *state, struct loop *l, int timeout_ms,
                void (*report)(struct loop *l, int fd, unsigned events));
    void (*free)(void *state);
};

extern const struct loop_ops loop_select_ops, loop_poll_ops;
#ifdef HAVE_EPOLL_CREATE1
extern const struct loop_ops loop_epoll_ops;
#endif

#endif /* SOCKCHAT_LOOP_INT_H */
