#include "buf.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "err.h"

/* Smallest allocation: most chat frames fit, and a burst grows from here. */
#define BUF_MIN_ALLOC 512

void
buf_init(struct buf *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
}

void
buf_view(struct buf *b, const uint8_t *p, size_t n)
{
    b->data = (uint8_t *)(uintptr_t)p; /* never written through a view */
    b->off = 0;
    b->len = n;
    b->alloc = n;
    b->cap = n;
}

void
buf_cleanup(struct buf *b)
{
    g_free(b->data);
    b->data = NULL;
    b->off = 0;
    b->len = 0;
    b->alloc = 0;
}

size_t
buf_room(const struct buf *b)
{
    return b->cap - b->len;
}

/*
 * Ensure want bytes of space after the data; want <= buf_room(b). With
 * may_fail, an allocation that fails leaves b as it was (its bytes maybe
 * slid to the front) and gives CHAT_ENOMEM; without, it aborts as
 * g_realloc() does, for callers that rely on an append within the room
 * never failing.
 */
static int
buf_make_room(struct buf *b, size_t want, bool may_fail)
{
    size_t need, n;
    uint8_t *data;

    if (b->alloc - b->off - b->len >= want)
        return CHAT_OK;
    need = b->len + want;
    if (b->alloc >= need && b->off > 0) {
        /* Enough space in total: slide the unread bytes to the front. */
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return CHAT_OK;
    }
    n = b->alloc ? b->alloc : BUF_MIN_ALLOC;
    while (n < need)
        n = n > b->cap / 2 ? b->cap : n * 2;
    if (n < need)
        n = need;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    data = may_fail ? g_try_realloc(b->data, n) : g_realloc(b->data, n);
    if (data == NULL)
        return CHAT_ENOMEM; /* b->data is untouched, as realloc() leaves it */
    b->data = data;
    b->alloc = n;
    return CHAT_OK;
}

static int
buf_append_with(struct buf *b, const void *p, size_t n, bool may_fail)
{
    int rc;

    if (n > buf_room(b))
        return CHAT_EFULL;
    if (n == 0)
        return CHAT_OK;
    rc = buf_make_room(b, n, may_fail);
    if (rc != CHAT_OK)
        return rc;
    memcpy(b->data + b->off + b->len, p, n);
    b->len += n;
    return CHAT_OK;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    return buf_append_with(b, p, n, false);
}

int
buf_try_append(struct buf *b, const void *p, size_t n)
{
    return buf_append_with(b, p, n, true);
}

uint8_t *
buf_reserve(struct buf *b, size_t want, size_t *avail)
{
    size_t room = buf_room(b);

    *avail = 0;
    if (want > room)
        want = room;
    if (want == 0)
        return NULL;
    if (buf_make_room(b, want, true) != CHAT_OK)
        return NULL;
    *avail = b->alloc - b->off - b->len;
    if (*avail > room)
        *avail = room;
    return b->data + b->off + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
    b->len += n;
}

void
buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->off = 0;
        b->len = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

void
buf_shrink(struct buf *b)
{
    if (b->len == 0)
        buf_cleanup(b);
}
