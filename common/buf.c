#include "buf.h"

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

/* Ensure want bytes of space after the data; want <= buf_room(b). */
static void
buf_make_room(struct buf *b, size_t want)
{
    size_t need, n;

    if (b->alloc - b->off - b->len >= want)
        return;
    need = b->len + want;
    if (b->alloc >= need && b->off > 0) {
        /* Enough space in total: slide the unread bytes to the front. */
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return;
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
    b->data = g_realloc(b->data, n);
    b->alloc = n;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    if (n > buf_room(b))
        return CHAT_EFULL;
    if (n == 0)
        return CHAT_OK;
    buf_make_room(b, n);
    memcpy(b->data + b->off + b->len, p, n);
    b->len += n;
    return CHAT_OK;
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
    buf_make_room(b, want);
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
