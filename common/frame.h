/* frame.h - the 4-byte big-endian length prefix of PROTOCOL.md section 1.
 *
 * Pure: works on buffers only. A frame is N (1 <= N <= max) then N bytes.
 */
#ifndef SOCKCHAT_FRAME_H
#define SOCKCHAT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define FRAME_HDR 4
#define FRAME_MAX_DEFAULT 65536
#define FRAME_MAX_LIMIT (16u * 1024 * 1024) /* most a config may set */

/*
 * Look at the head of b for one whole frame.
 * CHAT_OK: *body and *len give the payload, borrowed from b until the next
 * buf_ call on b; drop it with frame_consume(b, len).
 * CHAT_EAGAIN: more bytes are needed (a partial header or body).
 * CHAT_EPROTO: the length is 0 (bad_frame).
 * CHAT_ETOOBIG: the length is over max (frame_too_large); decided from the
 * header alone, before any of the body arrives.
 */
int frame_peek(const struct buf *b, size_t max, const uint8_t **body,
               size_t *len);

/* Drop one frame of payload length len from the head of b. */
void frame_consume(struct buf *b, size_t len);

/* Append header and payload to b. CHAT_ETOOBIG when n is 0 or over max,
 * CHAT_EFULL when b has no room for FRAME_HDR + n (nothing appended). */
int frame_encode(struct buf *b, size_t max, const void *p, size_t n);

/* Write the header for length n into out[FRAME_HDR]. */
void frame_put_header(uint8_t out[FRAME_HDR], uint32_t n);

#endif /* SOCKCHAT_FRAME_H */
