/* outq.h - a bounded output queue of shared, immutable frames.
 *
 * A message that goes to many receivers is encoded and framed once into a
 * reference-counted blob; each receiver's queue holds a reference, not a
 * copy, and the queue is written with one writev() per flush. The queue's
 * ring of references is allocated on first use and given back by
 * outq_shrink() once empty, so an idle connection costs nothing.
 */
#ifndef SOCKCHAT_OUTQ_H
#define SOCKCHAT_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* One framed message: the 4-byte length header, then the payload. */
struct frame_blob;

/* A new blob (refcount 1) framing payload p of n bytes (1 <= n, the caller
 * checked the frame limit), or NULL when memory ran out. */
struct frame_blob *frame_blob_new(const void *p, size_t n);
/* As frame_blob_new(), but the n payload bytes are left for the caller to
 * write at *payload (NULL on failure) before the blob is queued or shared:
 * to allocate before a step that cannot be undone (sealing). */
struct frame_blob *frame_blob_alloc(size_t n, uint8_t **payload);
struct frame_blob *frame_blob_ref(struct frame_blob *b);
void frame_blob_unref(struct frame_blob *b); /* NULL is a no-op */
/* Header plus payload: its size and bytes (lent while b lives). */
size_t frame_blob_size(const struct frame_blob *b);
const uint8_t *frame_blob_data(const struct frame_blob *b);

struct outq_ref {
    struct frame_blob *blob;
};

struct outq {
    struct outq_ref *ring; /* NULL until the first push */
    size_t slots;          /* size of ring, a power of two */
    size_t head;           /* index of the oldest entry */
    size_t count;          /* entries queued */
    size_t head_off;       /* bytes of the oldest entry already written */
    size_t bytes;          /* bytes queued, minus head_off */
    size_t cap;            /* most bytes the queue may hold */
};

void outq_init(struct outq *q, size_t cap);
/* Drop every entry and free the ring. */
void outq_cleanup(struct outq *q);
/* Free the ring if the queue is empty. */
void outq_shrink(struct outq *q);

static inline size_t
outq_bytes(const struct outq *q)
{
    return q->bytes;
}

/* Queue a reference to b (the queue takes its own). CHAT_OK, CHAT_EFULL
 * when it would take the queue over its cap, or CHAT_ENOMEM when the ring
 * could not grow (in both cases nothing is queued and q is as it was). */
int outq_push(struct outq *q, struct frame_blob *b);
/* Queue b whatever the cap (a last error before closing). CHAT_OK, or
 * CHAT_ENOMEM (nothing queued). */
int outq_push_force(struct outq *q, struct frame_blob *b);
/* Drop every entry not yet begun, freeing what only they held. An entry
 * partly written stays, so that the stream stays framed; the ring is
 * freed when nothing stays. For a peer about to be closed: it loses what
 * it had not read, and a last error fits without the ring growing. */
void outq_drop_unsent(struct outq *q);

/* Fill up to max iovecs with the queued bytes, oldest first. Returns the
 * number filled. The pointers are valid until the next outq_* call. */
int outq_iov(const struct outq *q, struct iovec *iov, int max);
/* Drop the first n written bytes (n <= outq_bytes). */
void outq_consume(struct outq *q, size_t n);

#endif /* SOCKCHAT_OUTQ_H */
