/* loop.h - the readiness loop: which descriptors can be read or written.
 *
 * One backend per file (loop_select.c, loop_poll.c, loop_epoll.c), each a const
 * loop_ops table in loop_int.h, chosen at run time by name. The loop only
 * reports readiness; callers do the I/O.
 */
#ifndef SOCKCHAT_LOOP_H
#define SOCKCHAT_LOOP_H

#include <stdbool.h>

struct loop; /* opaque */

enum loop_event {
    LOOP_READ = 1,
    LOOP_WRITE = 2,
};

/* Called for each ready descriptor with the LOOP_* bits that are ready. */
typedef void (*loop_cb_fn)(struct loop *l, int fd, unsigned events, void *arg);

/*
 * A loop using backend name ("select", "poll", "epoll"; NULL for the
 * default, select). Unknown or
 * unavailable backends fall back to select and set *fell_back.
 * CHAT_OK and *out, or CHAT_ESYS.
 */
int loop_new(const char *name, struct loop **out, bool *fell_back);
void loop_free(struct loop *l); /* NULL is a no-op */
const char *loop_name(const struct loop *l);

/* The highest descriptor + 1 the backend can watch (FD_SETSIZE for select). */
int loop_fd_limit(const struct loop *l);

/* Watch fd for events. CHAT_OK, CHAT_ERANGE when the backend cannot hold
 * this fd (select: fd >= FD_SETSIZE), CHAT_ESYS. */
int loop_add_fd(struct loop *l, int fd, unsigned events, loop_cb_fn cb,
                void *arg);
/* Change the events watched for fd. */
int loop_mod_fd(struct loop *l, int fd, unsigned events);
/* Stop watching fd (before closing it). Safe to call from a callback, even
 * for a descriptor that is ready in the same pass: it will not be reported. */
void loop_del_fd(struct loop *l, int fd);

/* Wait at most timeout_ms (-1: forever) and run the callbacks of ready
 * descriptors. Returns the number ready, 0 on timeout or EINTR, CHAT_ESYS. */
int loop_run_once(struct loop *l, int timeout_ms);

#endif /* SOCKCHAT_LOOP_H */
