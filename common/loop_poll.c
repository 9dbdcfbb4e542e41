/* loop_poll.c - the poll(2) backend.
 *
 * Between select and epoll: no FD_SETSIZE bound, but the kernel still
 * scans the whole array on every wait. The array is kept dense; index[]
 * maps a descriptor to its slot so that add, mod and del are O(1).
 */
#include "loop_int.h"

#include <errno.h>
#include <poll.h>

#include <glib.h>

#include "err.h"

struct poll_state {
    GArray *pfds;  /* struct pollfd, dense */
    GArray *index; /* int per fd: slot in pfds, or -1 */
};

static int
poll_init(void **state)
{
    struct poll_state *s = g_new0(struct poll_state, 1);

    s->pfds = g_array_new(FALSE, FALSE, sizeof(struct pollfd));
    s->index = g_array_new(FALSE, FALSE, sizeof(int));
    *state = s;
    return CHAT_OK;
}

static short
poll_bits(unsigned events)
{
    return (short)(((events & LOOP_READ) ? POLLIN : 0) |
                   ((events & LOOP_WRITE) ? POLLOUT : 0));
}

static int *
poll_slot(struct poll_state *s, int fd)
{
    int none = -1;

    while ((guint)fd >= s->index->len)
        g_array_append_val(s->index, none);
    return &g_array_index(s->index, int, fd);
}

static int
poll_add(void *state, int fd, unsigned events)
{
    struct poll_state *s = state;
    struct pollfd p = {.fd = fd, .events = poll_bits(events)};
    int *slot = poll_slot(s, fd);

    if (*slot >= 0)
        return CHAT_ERANGE;
    *slot = (int)s->pfds->len;
    g_array_append_val(s->pfds, p);
    return CHAT_OK;
}

static int
poll_mod(void *state, int fd, unsigned old_events, unsigned events)
{
    struct poll_state *s = state;
    int *slot = poll_slot(s, fd);

    (void)old_events;
    if (*slot < 0)
        return CHAT_ERANGE;
    g_array_index(s->pfds, struct pollfd, *slot).events = poll_bits(events);
    return CHAT_OK;
}

static void
poll_del(void *state, int fd, unsigned old_events)
{
    struct poll_state *s = state;
    int *slot = poll_slot(s, fd);
    int last = (int)s->pfds->len - 1;

    (void)old_events;
    if (*slot < 0)
        return;
    /* Move the last entry into the hole to stay dense. */
    if (*slot != last) {
        struct pollfd moved = g_array_index(s->pfds, struct pollfd, last);

        g_array_index(s->pfds, struct pollfd, *slot) = moved;
        *poll_slot(s, moved.fd) = *slot;
    }
    g_array_set_size(s->pfds, (guint)last);
    *slot = -1;
}

static int
poll_run(void *state, struct loop *l, int timeout_ms,
         void (*report)(struct loop *l, int fd, unsigned events))
{
    struct poll_state *s = state;
    GArray *ready;
    guint i;
    int n;

    n = poll((struct pollfd *)(void *)s->pfds->data, s->pfds->len, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : CHAT_ESYS;
    if (n == 0)
        return 0;
    /* Callbacks add and delete descriptors, which reorders pfds: collect
     * what is ready first. */
    ready = g_array_sized_new(FALSE, FALSE, sizeof(struct pollfd), (guint)n);
    for (i = 0; i < s->pfds->len && ready->len < (guint)n; i++) {
        struct pollfd *p = &g_array_index(s->pfds, struct pollfd, i);

        if (p->revents)
            g_array_append_val(ready, *p);
    }
    for (i = 0; i < ready->len; i++) {
        const struct pollfd *p = &g_array_index(ready, struct pollfd, i);
        unsigned ev = 0;

        /* Errors and hang-ups show up as readable: recv() tells what. */
        if (p->revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))
            ev |= LOOP_READ;
        if (p->revents & (POLLOUT | POLLERR))
            ev |= LOOP_WRITE;
        report(l, p->fd, ev);
    }
    g_array_free(ready, TRUE);
    return n;
}

static void
poll_free(void *state)
{
    struct poll_state *s = state;

    g_array_free(s->pfds, TRUE);
    g_array_free(s->index, TRUE);
    g_free(s);
}

const struct loop_ops loop_poll_ops = {
    .name = "poll",
    .fd_limit = 0,
    .init = poll_init,
    .add = poll_add,
    .mod = poll_mod,
    .del = poll_del,
    .wait = poll_run,
    .free = poll_free,
};
