#include "outq.h"

#include <string.h>

#include <glib.h>

#include "err.h"
#include "frame.h"

#define OUTQ_MIN_SLOTS 8

struct frame_blob {
    gint refs;
    size_t size; /* FRAME_HDR + payload */
    uint8_t data[];
};

struct frame_blob *
frame_blob_alloc(size_t n, uint8_t **payload)
{
    /* n is at most a frame: no overflow. A frame's size is driven by a
     * peer (a message, a history reply), so running out of memory is the
     * caller's to handle. */
    struct frame_blob *b = g_try_malloc(sizeof(*b) + FRAME_HDR + n);

    *payload = NULL;
    if (b == NULL)
        return NULL;
    b->refs = 1;
    b->size = FRAME_HDR + n;
    frame_put_header(b->data, (uint32_t)n);
    *payload = b->data + FRAME_HDR;
    return b;
}

struct frame_blob *
frame_blob_new(const void *p, size_t n)
{
    uint8_t *payload = NULL;
    struct frame_blob *b = frame_blob_alloc(n, &payload);

    if (b != NULL)
        memcpy(payload, p, n);
    return b;
}

struct frame_blob *
frame_blob_ref(struct frame_blob *b)
{
    b->refs++;
    return b;
}

void
frame_blob_unref(struct frame_blob *b)
{
    /* Single-threaded by design: no atomics needed. */
    if (b && --b->refs == 0)
        g_free(b);
}

size_t
frame_blob_size(const struct frame_blob *b)
{
    return b->size;
}

const uint8_t *
frame_blob_data(const struct frame_blob *b)
{
    return b->data;
}

void
outq_init(struct outq *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    q->cap = cap;
}

void
outq_cleanup(struct outq *q)
{
    size_t i;

    for (i = 0; i < q->count; i++)
        frame_blob_unref(q->ring[(q->head + i) & (q->slots - 1)].blob);
    g_free(q->ring);
    q->ring = NULL;
    q->slots = 0;
    q->head = 0;
    q->count = 0;
    q->head_off = 0;
    q->bytes = 0;
}

void
outq_shrink(struct outq *q)
{
    if (q->count == 0)
        outq_cleanup(q);
}

/* Make room for one more entry, doubling the ring and unwrapping it.
 * CHAT_ENOMEM leaves q as it was. */
static int
outq_grow(struct outq *q)
{
    struct outq_ref *ring;
    size_t slots, i;

    if (q->count < q->slots)
        return CHAT_OK;
    slots = q->slots ? q->slots * 2 : OUTQ_MIN_SLOTS;
    /* The ring grows with what a slow reader leaves queued. */
    ring = g_try_malloc_n(slots, sizeof(*ring));
    if (ring == NULL)
        return CHAT_ENOMEM;
    for (i = 0; i < q->count; i++)
        ring[i] = q->ring[(q->head + i) & (q->slots - 1)];
    g_free(q->ring);
    q->ring = ring;
    q->slots = slots;
    q->head = 0;
    return CHAT_OK;
}

int
outq_push_force(struct outq *q, struct frame_blob *b)
{
    if (outq_grow(q) != CHAT_OK)
        return CHAT_ENOMEM;
    q->ring[(q->head + q->count) & (q->slots - 1)].blob = frame_blob_ref(b);
    q->count++;
    q->bytes += b->size;
    return CHAT_OK;
}

int
outq_push(struct outq *q, struct frame_blob *b)
{
    if (b->size > q->cap || q->bytes > q->cap - b->size)
        return CHAT_EFULL;
    return outq_push_force(q, b);
}

void
outq_drop_unsent(struct outq *q)
{
    size_t keep = q->count > 0 && q->head_off > 0 ? 1 : 0;
    size_t i;

    for (i = keep; i < q->count; i++) {
        struct outq_ref *r = &q->ring[(q->head + i) & (q->slots - 1)];

        q->bytes -= r->blob->size;
        frame_blob_unref(r->blob);
        r->blob = NULL;
    }
    q->count = keep;
    if (keep == 0)
        outq_cleanup(q);
}

int
outq_iov(const struct outq *q, struct iovec *iov, int max)
{
    size_t i;
    int n = 0;

    for (i = 0; i < q->count && n < max; i++) {
        const struct frame_blob *b =
            q->ring[(q->head + i) & (q->slots - 1)].blob;
        size_t off = i == 0 ? q->head_off : 0;

        iov[n].iov_base = (void *)(uintptr_t)(b->data + off);
        iov[n].iov_len = b->size - off;
        n++;
    }
    return n;
}

void
outq_consume(struct outq *q, size_t n)
{
    while (n > 0 && q->count > 0) {
        struct outq_ref *r = &q->ring[q->head];
        size_t left = r->blob->size - q->head_off;

        if (n < left) {
            q->head_off += n;
            q->bytes -= n;
            return;
        }
        n -= left;
        q->bytes -= left;
        frame_blob_unref(r->blob);
        r->blob = NULL;
        q->head = (q->head + 1) & (q->slots - 1);
        q->count--;
        q->head_off = 0;
    }
}
