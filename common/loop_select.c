/* loop_select.c - the select(2) backend, the default.
 *
 * select() is the call the Berkeley socket model was taught with and runs
 * everywhere; its price is FD_SETSIZE. FD_SET on a descriptor at or above
 * FD_SETSIZE writes past the fd_set, so add() refuses such a descriptor and
 * the server turns the client away with server_full.
 */
#include "loop_int.h"

#include <errno.h>
#include <sys/select.h>

#include <glib.h>

#include "err.h"

struct select_state {
    fd_set rd, wr;
    int maxfd; /* highest fd watched, -1 for none */
};

static int
select_init(void **state)
{
    struct select_state *s = g_new0(struct select_state, 1);

    FD_ZERO(&s->rd);
    FD_ZERO(&s->wr);
    s->maxfd = -1;
    *state = s;
    return CHAT_OK;
}

static int
select_mod(void *state, int fd, unsigned old_events, unsigned events)
{
    struct select_state *s = state;

    (void)old_events;
    if (fd < 0 || fd >= FD_SETSIZE)
        return CHAT_ERANGE;
    if (events & LOOP_READ)
        FD_SET(fd, &s->rd);
    else
        FD_CLR(fd, &s->rd);
    if (events & LOOP_WRITE)
        FD_SET(fd, &s->wr);
    else
        FD_CLR(fd, &s->wr);
    /* select_del() may have lowered maxfd past a paused fd (events 0). */
    if (events && fd > s->maxfd)
        s->maxfd = fd;
    return CHAT_OK;
}

static int
select_add(void *state, int fd, unsigned events)
{
    return select_mod(state, fd, 0, events);
}

static void
select_del(void *state, int fd, unsigned old_events)
{
    struct select_state *s = state;

    (void)old_events;
    if (fd < 0 || fd >= FD_SETSIZE)
        return;
    FD_CLR(fd, &s->rd);
    FD_CLR(fd, &s->wr);
    while (s->maxfd >= 0 && !FD_ISSET(s->maxfd, &s->rd) &&
           !FD_ISSET(s->maxfd, &s->wr))
        s->maxfd--;
}

static int
select_wait(void *state, struct loop *l, int timeout_ms,
            void (*report)(struct loop *l, int fd, unsigned events))
{
    struct select_state *s = state;
    struct timeval tv, *tvp = NULL;
    fd_set rd = s->rd, wr = s->wr;
    int n, fd, maxfd = s->maxfd, done = 0;

    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    n = select(maxfd + 1, &rd, &wr, NULL, tvp);
    if (n < 0)
        return errno == EINTR ? 0 : CHAT_ESYS;
    for (fd = 0; fd <= maxfd && done < n; fd++) {
        unsigned ev = 0;

        if (FD_ISSET(fd, &rd))
            ev |= LOOP_READ;
        if (FD_ISSET(fd, &wr))
            ev |= LOOP_WRITE;
        if (ev) {
            done++;
            report(l, fd, ev);
        }
    }
    return n;
}

static void
select_free(void *state)
{
    g_free(state);
}

const struct loop_ops loop_select_ops = {
    .name = "select",
    .fd_limit = FD_SETSIZE,
    .init = select_init,
    .add = select_add,
    .mod = select_mod,
    .del = select_del,
    .wait = select_wait,
    .free = select_free,
};
