/* test_frame.c - tests for common/frame.c through frame.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "frame.h"

/* xorshift32: a fixed, portable pseudo-random sequence. */
static uint32_t
rng_next(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static void
append_ok(struct buf *b, const void *p, size_t n)
{
    assert_int_equal(buf_append(b, p, n), CHAT_OK);
}

static void
test_frame_header_split_across_reads(void **state)
{
    const uint8_t wire[] = {0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c'};
    const uint8_t *body = (const uint8_t *)"x";
    struct buf b;
    size_t len = 99, i;

    (void)state;
    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len),
                     CHAT_EAGAIN);
    assert_null(body);
    assert_int_equal(len, 0);
    for (i = 0; i < FRAME_HDR; i++) {
        append_ok(&b, wire + i, 1);
        body = (const uint8_t *)"x";
        len = 99;
        /* Header incomplete, or complete but no body yet. */
        assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len),
                         CHAT_EAGAIN);
        assert_null(body);
        assert_int_equal(len, 0);
    }
    append_ok(&b, wire + FRAME_HDR, 3);
    assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len), CHAT_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(body, "abc", 3);
    frame_consume(&b, len);
    assert_int_equal(buf_len(&b), 0);
    buf_cleanup(&b);
}

static void
test_frame_body_split_across_reads(void **state)
{
    uint8_t hdr[FRAME_HDR], payload[1000];
    const uint8_t *body = NULL;
    struct buf b;
    size_t len = 0, off;

    (void)state;
    for (off = 0; off < sizeof(payload); off++)
        payload[off] = (uint8_t)(off * 7);
    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    frame_put_header(hdr, sizeof(payload));
    append_ok(&b, hdr, sizeof(hdr));
    /* Deliver the body in uneven pieces; whole only at the last byte. */
    for (off = 0; off < sizeof(payload);) {
        size_t piece = off % 3 == 0 ? 97 : 13;

        if (piece > sizeof(payload) - off)
            piece = sizeof(payload) - off;
        assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len),
                         CHAT_EAGAIN);
        append_ok(&b, payload + off, piece);
        off += piece;
    }
    assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len), CHAT_OK);
    assert_int_equal(len, sizeof(payload));
    assert_memory_equal(body, payload, sizeof(payload));
    frame_consume(&b, len);
    assert_int_equal(buf_len(&b), 0);
    buf_cleanup(&b);
}

static void
test_frame_many_in_one_read(void **state)
{
    enum { NFRAMES = 50 };
    uint8_t wire[NFRAMES * (FRAME_HDR + NFRAMES)];
    const uint8_t *body = NULL;
    struct buf b;
    size_t len = 0, w = 0, i, j;
    int rc;

    (void)state;
    for (i = 1; i <= NFRAMES; i++) {
        frame_put_header(wire + w, (uint32_t)i);
        w += FRAME_HDR;
        for (j = 0; j < i; j++)
            wire[w++] = (uint8_t)i;
    }
    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    append_ok(&b, wire, w);
    append_ok(&b, "\0\0", 2); /* a partial header from the next frame */
    for (i = 1;
         (rc = frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len)) == CHAT_OK;
         i++) {
        assert_int_equal(len, i);
        for (j = 0; j < len; j++)
            assert_int_equal(body[j], (uint8_t)i);
        frame_consume(&b, len);
    }
    assert_int_equal(rc, CHAT_EAGAIN);
    assert_int_equal(i, NFRAMES + 1);
    assert_int_equal(buf_len(&b), 2);
    buf_cleanup(&b);
}

static void
test_frame_rejects_zero_length(void **state)
{
    const uint8_t hdr[FRAME_HDR] = {0, 0, 0, 0};
    const uint8_t *body = (const uint8_t *)"x";
    struct buf b;
    size_t len = 5;

    (void)state;
    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    append_ok(&b, hdr, sizeof(hdr));
    assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len),
                     CHAT_EPROTO);
    assert_null(body);
    assert_int_equal(len, 0);
    buf_cleanup(&b);
}

static void
test_frame_rejects_oversize_header(void **state)
{
    const uint8_t hdr[FRAME_HDR] = {0x00, 0x01, 0x00, 0x01}; /* 65537 */
    const uint8_t big[FRAME_HDR] = {0xff, 0xff, 0xff, 0xff};
    const uint8_t *body = (const uint8_t *)"x";
    struct buf b;
    size_t len = 5;

    (void)state;
    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    /* Three bytes cannot decide yet. */
    append_ok(&b, hdr, 3);
    assert_int_equal(frame_peek(&b, 65536, &body, &len), CHAT_EAGAIN);
    /* The fourth decides, with no body at all. */
    append_ok(&b, hdr + 3, 1);
    assert_int_equal(frame_peek(&b, 65536, &body, &len), CHAT_ETOOBIG);
    assert_null(body);
    assert_int_equal(len, 0);
    buf_cleanup(&b);

    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    append_ok(&b, big, sizeof(big));
    assert_int_equal(frame_peek(&b, FRAME_MAX_LIMIT, &body, &len),
                     CHAT_ETOOBIG);
    buf_cleanup(&b);
}

static void
test_frame_accepts_exact_max(void **state)
{
    static uint8_t payload[FRAME_MAX_DEFAULT];
    const uint8_t *body = NULL;
    struct buf b;
    size_t len = 0;

    (void)state;
    memset(payload, 'm', sizeof(payload));
    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    assert_int_equal(
        frame_encode(&b, FRAME_MAX_DEFAULT, payload, FRAME_MAX_DEFAULT),
        CHAT_OK);
    assert_int_equal(buf_room(&b), 0);
    assert_memory_equal(buf_ptr(&b), "\x00\x01\x00\x00", FRAME_HDR);
    assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len), CHAT_OK);
    assert_int_equal(len, FRAME_MAX_DEFAULT);
    assert_memory_equal(body, payload, FRAME_MAX_DEFAULT);
    frame_consume(&b, len);
    assert_int_equal(buf_len(&b), 0);

    /* A header of exactly max waits for its body, it is not rejected. */
    append_ok(&b, "\x00\x01\x00\x00", FRAME_HDR);
    assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len),
                     CHAT_EAGAIN);
    buf_cleanup(&b);
}

static void
test_frame_accepts_length_one(void **state)
{
    const uint8_t wire[] = {0, 0, 0, 1, 'z'};
    const uint8_t *body = NULL;
    struct buf b;
    size_t len = 0;

    (void)state;
    buf_init(&b, FRAME_HDR + FRAME_MAX_DEFAULT);
    append_ok(&b, wire, sizeof(wire));
    assert_int_equal(frame_peek(&b, FRAME_MAX_DEFAULT, &body, &len), CHAT_OK);
    assert_int_equal(len, 1);
    assert_int_equal(body[0], 'z');
    frame_consume(&b, len);
    assert_int_equal(buf_len(&b), 0);
    buf_cleanup(&b);
}

static void
test_frame_encode_header_big_endian(void **state)
{
    static uint8_t payload[0x010203];
    uint8_t hdr[FRAME_HDR];
    struct buf b;

    (void)state;
    frame_put_header(hdr, 0x01020304u);
    assert_memory_equal(hdr, "\x01\x02\x03\x04", FRAME_HDR);
    frame_put_header(hdr, 1);
    assert_memory_equal(hdr, "\x00\x00\x00\x01", FRAME_HDR);

    buf_init(&b, FRAME_HDR + sizeof(payload));
    assert_int_equal(
        frame_encode(&b, sizeof(payload), payload, sizeof(payload)), CHAT_OK);
    assert_int_equal(buf_len(&b), FRAME_HDR + sizeof(payload));
    assert_memory_equal(buf_ptr(&b), "\x00\x01\x02\x03", FRAME_HDR);
    buf_cleanup(&b);

    buf_init(&b, 64);
    assert_int_equal(frame_encode(&b, 64, "hi!", 3), CHAT_OK);
    assert_memory_equal(buf_ptr(&b), "\x00\x00\x00\x03hi!", 7);
    buf_cleanup(&b);
}

static void
test_frame_encode_rejects_bad_length(void **state)
{
    uint8_t payload[101];
    struct buf b;

    (void)state;
    memset(payload, 1, sizeof(payload));
    buf_init(&b, 1000);
    assert_int_equal(frame_encode(&b, 100, payload, 0), CHAT_ETOOBIG);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(frame_encode(&b, 100, payload, 101), CHAT_ETOOBIG);
    assert_int_equal(buf_len(&b), 0);
    assert_null(buf_ptr(&b));
    assert_int_equal(frame_encode(&b, 100, payload, 100), CHAT_OK);
    assert_int_equal(buf_len(&b), FRAME_HDR + 100);
    buf_cleanup(&b);
}

static void
test_frame_encode_full_appends_nothing(void **state)
{
    uint8_t payload[50];
    struct buf b;

    (void)state;
    memset(payload, 2, sizeof(payload));
    /* One byte short of header + payload. */
    buf_init(&b, FRAME_HDR + sizeof(payload) - 1);
    assert_int_equal(frame_encode(&b, 1000, payload, sizeof(payload)),
                     CHAT_EFULL);
    assert_int_equal(buf_len(&b), 0);
    assert_null(buf_ptr(&b));
    buf_cleanup(&b);

    /* Less room than a header, with bytes already queued. */
    buf_init(&b, 10);
    append_ok(&b, "1234567", 7);
    assert_int_equal(frame_encode(&b, 1000, payload, 1), CHAT_EFULL);
    assert_int_equal(buf_len(&b), 7);
    assert_memory_equal(buf_ptr(&b), "1234567", 7);
    buf_cleanup(&b);

    /* Exactly enough room. */
    buf_init(&b, FRAME_HDR + sizeof(payload));
    assert_int_equal(frame_encode(&b, 1000, payload, sizeof(payload)), CHAT_OK);
    assert_int_equal(buf_room(&b), 0);
    buf_cleanup(&b);
}

static void
test_frame_round_trip_random_sizes(void **state)
{
    enum { MAX = 3000, ROUNDS = 200 };
    static uint8_t payload[MAX];
    uint32_t seed = 0x9e3779b9u, check_seed;
    const uint8_t *body = NULL;
    struct buf b;
    size_t len = 0, n, i;
    unsigned round, k;

    (void)state;
    buf_init(&b, 8 * (FRAME_HDR + MAX));
    for (round = 0; round < ROUNDS; round++) {
        unsigned nframes = 1 + rng_next(&seed) % 8;

        /* Encode nframes payloads, remembering the seed to regenerate. */
        check_seed = seed;
        for (k = 0; k < nframes; k++) {
            n = 1 + rng_next(&seed) % MAX;
            for (i = 0; i < n; i++)
                payload[i] = (uint8_t)rng_next(&seed);
            assert_int_equal(frame_encode(&b, MAX, payload, n), CHAT_OK);
        }
        seed = check_seed;
        for (k = 0; k < nframes; k++) {
            n = 1 + rng_next(&seed) % MAX;
            for (i = 0; i < n; i++)
                payload[i] = (uint8_t)rng_next(&seed);
            assert_int_equal(frame_peek(&b, MAX, &body, &len), CHAT_OK);
            assert_int_equal(len, n);
            assert_memory_equal(body, payload, n);
            frame_consume(&b, len);
        }
        assert_int_equal(frame_peek(&b, MAX, &body, &len), CHAT_EAGAIN);
        assert_int_equal(buf_len(&b), 0);
    }
    buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header_split_across_reads),
        cmocka_unit_test(test_frame_body_split_across_reads),
        cmocka_unit_test(test_frame_many_in_one_read),
        cmocka_unit_test(test_frame_rejects_zero_length),
        cmocka_unit_test(test_frame_rejects_oversize_header),
        cmocka_unit_test(test_frame_accepts_exact_max),
        cmocka_unit_test(test_frame_accepts_length_one),
        cmocka_unit_test(test_frame_encode_header_big_endian),
        cmocka_unit_test(test_frame_encode_rejects_bad_length),
        cmocka_unit_test(test_frame_encode_full_appends_nothing),
        cmocka_unit_test(test_frame_round_trip_random_sizes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
