#include "frame.h"

#include "err.h"

static uint32_t
load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

void
frame_put_header(uint8_t out[FRAME_HDR], uint32_t n)
{
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
}

int
frame_peek(const struct buf *b, size_t max, const uint8_t **body, size_t *len)
{
    uint32_t n;

    *body = NULL;
    *len = 0;
    if (buf_len(b) < FRAME_HDR)
        return CHAT_EAGAIN;
    n = load_be32(buf_ptr(b));
    if (n == 0)
        return CHAT_EPROTO;
    if (n > max) /* reject before waiting for the body */
        return CHAT_ETOOBIG;
    if (buf_len(b) - FRAME_HDR < n) /* cannot underflow: checked above */
        return CHAT_EAGAIN;
    *body = buf_ptr(b) + FRAME_HDR;
    *len = n;
    return CHAT_OK;
}

void
frame_consume(struct buf *b, size_t len)
{
    buf_consume(b, FRAME_HDR + len);
}

int
frame_encode(struct buf *b, size_t max, const void *p, size_t n)
{
    uint8_t hdr[FRAME_HDR];
    int rc;

    if (n == 0 || n > max)
        return CHAT_ETOOBIG;
    if (buf_room(b) < FRAME_HDR || buf_room(b) - FRAME_HDR < n)
        return CHAT_EFULL;
    frame_put_header(hdr, (uint32_t)n);
    rc = buf_append(b, hdr, sizeof(hdr));
    if (rc == CHAT_OK)
        rc = buf_append(b, p, n);
    return rc;
}
