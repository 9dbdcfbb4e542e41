/* fuzz_frame.c - libFuzzer target for the frame decoder (common/frame.c).
 *
 * The input is a byte stream as a peer would send it, delivered into a
 * struct buf in chunks whose sizes come from the input's first bytes, and
 * decoded the way server.c's client_read()/client_handle_frames() do it:
 * buf_reserve()/buf_commit() (or buf_append()), then frame_peek() and
 * frame_consume() until CHAT_EAGAIN, stopping at the first error.
 *
 * Layout of an input:
 *   byte 0       max selector (index into maxes[] below)
 *   byte 1       k = byte % 8 + 1 chunk-size bytes follow
 *   bytes 2..    k chunk sizes, used in turn; size = byte + 1, and bit 0 of
 *                the chunk's turn picks buf_append() or buf_reserve()
 *   the rest     the stream
 *
 * Invariants checked against a reference decoder written here (abort on
 * failure, so libFuzzer reports a crash):
 * - a frame is never of length 0 or over max; its body is the stream's
 *   bytes at the reference offset;
 * - the bytes consumed by frames add up to the reference offset;
 * - CHAT_EPROTO exactly for a zero header and CHAT_ETOOBIG exactly for a
 *   header over max, decided as soon as the 4 header bytes are in (never
 *   waiting for a body);
 * - a full buffer (cap FRAME_HDR + max) never answers CHAT_EAGAIN, so a
 *   reader can never stall on its own cap;
 * - frame_encode() of every decoded body gives back the original bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Small maxima reach the edges quickly; the real ones are covered too. */
static const size_t maxes[] = {
    1, 2, 3, 7, 64, 1024, 4096, FRAME_MAX_DEFAULT, FRAME_MAX_LIMIT,
};

static uint32_t
be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* Decode what is buffered, as the server does. Returns false once the
 * stream is refused (the server would close). *pos is the reference
 * decoder's offset into s of the first unconsumed byte; *got how many
 * bytes of s have been delivered. */
static bool
drain(struct buf *b, size_t max, const uint8_t *s, size_t got, size_t *pos)
{
    const uint8_t *body;
    size_t len;
    int rc;

    for (;;) {
        size_t have = got - *pos;

        CHECK(buf_len(b) == have);
        rc = frame_peek(b, max, &body, &len);
        if (have < FRAME_HDR) {
            CHECK(rc == CHAT_EAGAIN);
            CHECK(body == NULL && len == 0);
            return true;
        }
        /* The header is in: the verdict on its value cannot wait. */
        uint32_t n = be32(s + *pos);
        CHECK(memcmp(buf_ptr(b), s + *pos, FRAME_HDR) == 0);
        if (n == 0) {
            CHECK(rc == CHAT_EPROTO);
            CHECK(body == NULL && len == 0);
            return false;
        }
        if (n > max) {
            CHECK(rc == CHAT_ETOOBIG);
            CHECK(body == NULL && len == 0);
            return false;
        }
        if (have - FRAME_HDR < n) {
            CHECK(rc == CHAT_EAGAIN);
            CHECK(body == NULL && len == 0);
            /* A frame that fits the cap must be able to complete. */
            CHECK(buf_room(b) >= n - (have - FRAME_HDR));
            return true;
        }
        CHECK(rc == CHAT_OK);
        CHECK(len == n && len >= 1 && len <= max);
        CHECK(body == buf_ptr(b) + FRAME_HDR);
        CHECK(memcmp(body, s + *pos + FRAME_HDR, len) == 0);

        /* Re-encoding the body gives the bytes we were sent. */
        {
            struct buf e;

            buf_init(&e, FRAME_HDR + len);
            CHECK(frame_encode(&e, max, body, len) == CHAT_OK);
            CHECK(buf_len(&e) == FRAME_HDR + len);
            CHECK(memcmp(buf_ptr(&e), s + *pos, FRAME_HDR + len) == 0);
            /* No room left: a second frame is refused whole. */
            CHECK(frame_encode(&e, max, body, len) == CHAT_EFULL);
            CHECK(buf_len(&e) == FRAME_HDR + len);
            buf_cleanup(&e);
        }

        frame_consume(b, len);
        *pos += FRAME_HDR + len;
        CHECK(*pos <= got);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sizes, *s;
    size_t max, k, n, got = 0, pos = 0, turn = 0;
    struct buf b;
    bool alive = true;

    if (size < 2)
        return 0;
    max = maxes[data[0] % (sizeof(maxes) / sizeof(maxes[0]))];
    k = data[1] % 8 + 1;
    if (size < 2 + k)
        return 0;
    sizes = data + 2;
    s = data + 2 + k;
    n = size - 2 - k;

    /* frame_encode() refuses what frame_peek() would. */
    {
        struct buf e;
        uint8_t one = 'x';

        buf_init(&e, 64);
        CHECK(frame_encode(&e, max, &one, 0) == CHAT_ETOOBIG);
        CHECK(buf_len(&e) == 0);
        buf_cleanup(&e);
    }

    buf_init(&b, FRAME_HDR + max);
    while (alive && got < n) {
        size_t chunk = (size_t)sizes[turn % k] + 1;
        size_t room = buf_room(&b);

        if (chunk > n - got)
            chunk = n - got;
        /* Decoding after every read keeps a complete frame from sitting in
         * a full buffer, so there is always room for more. */
        CHECK(room > 0);
        if (chunk > room)
            chunk = room;
        if (turn & 1) {
            size_t avail = 0;
            uint8_t *p = buf_reserve(&b, chunk, &avail);

            CHECK(p != NULL && avail >= 1 && avail <= room);
            if (chunk > avail)
                chunk = avail;
            memcpy(p, s + got, chunk);
            buf_commit(&b, chunk);
        } else {
            CHECK(buf_append(&b, s + got, chunk) == CHAT_OK);
        }
        got += chunk;
        turn++;
        alive = drain(&b, max, s, got, &pos);
        /* What the server does with an idle connection's buffer. */
        if (alive && buf_len(&b) == 0 && (turn & 2))
            buf_shrink(&b);
    }
    /* Over the cap nothing is appended. */
    if (alive) {
        uint8_t big[8] = {0};
        size_t before = buf_len(&b);

        if (buf_room(&b) < sizeof(big)) {
            CHECK(buf_append(&b, big, sizeof(big)) == CHAT_EFULL);
            CHECK(buf_len(&b) == before);
        }
    }
    buf_cleanup(&b);
    return 0;
}
