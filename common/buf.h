/* buf.h - a growable byte buffer with a hard cap.
 *
 * Data lives in [off, off + len) of the allocation. Only buf.c touches the
 * offsets; everyone else appends at the tail and consumes from the head.
 * Storage is allocated on first use and kept when drained, so a busy
 * connection does not free and regrow it on every pass; buf_shrink() gives
 * it back once the owner sees the buffer stay empty, so an idle connection
 * costs no buffer memory.
 */
#ifndef SOCKCHAT_BUF_H
#define SOCKCHAT_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data; /* NULL until the first append */
    size_t off;    /* start of unread bytes */
    size_t len;    /* unread bytes */
    size_t alloc;  /* size of data */
    size_t cap;    /* most bytes the buffer may hold */
};

/* A read-only view of n bytes at p, for frame_peek() on bytes that live
 * elsewhere: consume from it, never append to it or clean it up. */
void buf_view(struct buf *b, const uint8_t *p, size_t n);

/* Empty buffer that will hold at most cap bytes. No allocation yet. */
void buf_init(struct buf *b, size_t cap);
/* Free the storage; b is empty (same cap) afterwards. */
void buf_cleanup(struct buf *b);

static inline size_t
buf_len(const struct buf *b)
{
    return b->len;
}

static inline const uint8_t *
buf_ptr(const struct buf *b)
{
    return b->data ? b->data + b->off : NULL;
}

/* Bytes that can still be appended before the cap. */
size_t buf_room(const struct buf *b);

/* Append n bytes. CHAT_OK, or CHAT_EFULL (nothing appended) when n is more
 * than buf_room(). Never fails for lack of memory: growing the storage
 * aborts then, as g_malloc() does, so an append within buf_room() always
 * succeeds. */
int buf_append(struct buf *b, const void *p, size_t n);
/* As buf_append(), but growing the storage may fail: CHAT_ENOMEM, with
 * nothing appended and b as it was. For buffers whose size a peer drives,
 * so that running out of memory costs that peer, not the process. */
int buf_try_append(struct buf *b, const void *p, size_t n);

/* Make room for at least want bytes (clamped to the cap) at the tail and
 * return a pointer to it with the usable size in *avail. Commit what was
 * written with buf_commit(). For recv() straight into b. NULL with *avail
 * 0 when the buffer is full, or when the storage could not grow (then
 * buf_room() is not 0, and b is as it was). */
uint8_t *buf_reserve(struct buf *b, size_t want, size_t *avail);
void buf_commit(struct buf *b, size_t n);

/* Drop n bytes from the head (n <= buf_len). Keeps the storage. */
void buf_consume(struct buf *b, size_t n);

/* Free the storage if the buffer is empty. */
void buf_shrink(struct buf *b);

#endif /* SOCKCHAT_BUF_H */
