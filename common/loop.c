#include "loop.h"

#include <glib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "log.h"
#include "loop_int.h"

struct loop {
    const struct loop_ops *ops;
    void *state;
    GArray *watch; /* struct loop_watch, indexed by fd */
};

static const struct loop_ops *const loop_backends[] = {
    &loop_select_ops,
    &loop_poll_ops,
#ifdef HAVE_EPOLL_CREATE1
    &loop_epoll_ops,
#endif
};

int
loop_new(const char *name, struct loop **out, bool *fell_back)
{
    const struct loop_ops *ops = &loop_select_ops;
    struct loop *l;
    size_t i;
    int rc;

    *out = NULL;
    *fell_back = false;
    if (name) {
        *fell_back = true;
        for (i = 0; i < G_N_ELEMENTS(loop_backends); i++)
            if (strcmp(loop_backends[i]->name, name) == 0) {
                ops = loop_backends[i];
                *fell_back = false;
            }
    }
    l = g_new0(struct loop, 1);
    l->watch = g_array_new(FALSE, TRUE, sizeof(struct loop_watch));
    rc = ops->init(&l->state);
    if (rc != CHAT_OK && ops != &loop_select_ops) {
        *fell_back = true;
        ops = &loop_select_ops;
        rc = ops->init(&l->state);
    }
    if (rc != CHAT_OK) {
        g_array_free(l->watch, TRUE);
        g_free(l);
        return rc;
    }
    l->ops = ops;
    *out = l;
    return CHAT_OK;
}

void
loop_free(struct loop *l)
{
    if (!l)
        return;
    l->ops->free(l->state);
    g_array_free(l->watch, TRUE);
    g_free(l);
}

const char *
loop_name(const struct loop *l)
{
    return l->ops->name;
}

int
loop_fd_limit(const struct loop *l)
{
    return l->ops->fd_limit;
}

static struct loop_watch *
loop_slot(struct loop *l, int fd)
{
    if (fd < 0 || (guint)fd >= l->watch->len)
        return NULL;
    return &g_array_index(l->watch, struct loop_watch, fd);
}

int
loop_add_fd(struct loop *l, int fd, unsigned events, loop_cb_fn cb, void *arg)
{
    struct loop_watch *w;
    int rc;

    if (fd < 0 || (l->ops->fd_limit && fd >= l->ops->fd_limit))
        return CHAT_ERANGE;
    if ((guint)fd >= l->watch->len)
        g_array_set_size(l->watch, (guint)fd + 1);
    w = loop_slot(l, fd);
    rc = l->ops->add(l->state, fd, events);
    if (rc != CHAT_OK)
        return rc;
    w->cb = cb;
    w->arg = arg;
    /* events 0 still marks the slot used: keep a private bit. */
    w->events = events | 0x80u;
    return CHAT_OK;
}

int
loop_mod_fd(struct loop *l, int fd, unsigned events)
{
    struct loop_watch *w = loop_slot(l, fd);
    int rc;

    if (!w || !w->events)
        return CHAT_ERANGE;
    if ((w->events & ~0x80u) == events)
        return CHAT_OK;
    rc = l->ops->mod(l->state, fd, w->events & ~0x80u, events);
    if (rc == CHAT_OK)
        w->events = events | 0x80u;
    return rc;
}

void
loop_del_fd(struct loop *l, int fd)
{
    struct loop_watch *w = loop_slot(l, fd);

    if (!w || !w->events)
        return;
    l->ops->del(l->state, fd, w->events & ~0x80u);
    memset(w, 0, sizeof(*w));
}

static void
loop_report(struct loop *l, int fd, unsigned events)
{
    struct loop_watch *w = loop_slot(l, fd);

    /* A callback earlier in this pass may have removed fd. */
    if (!w || !w->events)
        return;
    events &= w->events;
    if (events)
        w->cb(l, fd, events, w->arg);
}

int
loop_run_once(struct loop *l, int timeout_ms)
{
    return l->ops->wait(l->state, l, timeout_ms, loop_report);
}
