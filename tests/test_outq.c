/* test_outq.c - the queue of shared frames behind every client's output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "frame.h"
#include "outq.h"

/* Concatenate what outq_iov offers, at most max iovecs. */
static size_t
gather(const struct outq *q, uint8_t *out, int max)
{
    struct iovec iov[64];
    int n = outq_iov(q, iov, max), i;
    size_t len = 0;

    for (i = 0; i < n; i++) {
        memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    return len;
}

static void
test_outq_blob_is_framed(void **state)
{
    struct frame_blob *b = frame_blob_new("hello", 5);
    const uint8_t *d = frame_blob_data(b);

    (void)state;
    assert_int_equal(frame_blob_size(b), FRAME_HDR + 5);
    assert_memory_equal(d, "\x00\x00\x00\x05hello", 9);
    frame_blob_unref(b);
    frame_blob_unref(NULL);
}

static void
test_outq_starts_empty_without_memory(void **state)
{
    struct outq q;

    (void)state;
    outq_init(&q, 100);
    assert_int_equal(outq_bytes(&q), 0);
    assert_null(q.ring);
    outq_cleanup(&q);
}

static void
test_outq_partial_writes_resume_mid_frame(void **state)
{
    struct frame_blob *a = frame_blob_new("abc", 3);
    struct frame_blob *b = frame_blob_new("defgh", 5);
    uint8_t out[64];
    struct outq q;
    size_t n;

    (void)state;
    outq_init(&q, 1000);
    assert_int_equal(outq_push(&q, a), CHAT_OK);
    assert_int_equal(outq_push(&q, b), CHAT_OK);
    assert_int_equal(outq_bytes(&q), 7 + 9);
    outq_consume(&q, 5); /* header of a and one byte */
    assert_int_equal(outq_bytes(&q), 11);
    n = gather(&q, out, 64);
    assert_int_equal(n, 11);
    assert_memory_equal(out, "bc\x00\x00\x00\x05" "defgh", 11);
    /* only the first iovec when asked for one */
    assert_int_equal(gather(&q, out, 1), 2);
    outq_consume(&q, 11);
    assert_int_equal(outq_bytes(&q), 0);
    assert_int_equal(outq_iov(&q, (struct iovec[1]){{0}}, 1), 0);
    frame_blob_unref(a);
    frame_blob_unref(b);
    outq_cleanup(&q);
}

static void
test_outq_cap_refuses_without_queueing(void **state)
{
    struct frame_blob *b = frame_blob_new("0123456789", 10); /* 14 bytes */
    struct outq q;

    (void)state;
    outq_init(&q, 30);
    assert_int_equal(outq_push(&q, b), CHAT_OK);
    assert_int_equal(outq_push(&q, b), CHAT_OK);
    assert_int_equal(outq_push(&q, b), CHAT_EFULL);
    assert_int_equal(outq_bytes(&q), 28);
    /* a last word goes in whatever the cap */
    outq_push_force(&q, b);
    assert_int_equal(outq_bytes(&q), 42);
    frame_blob_unref(b);
    outq_cleanup(&q);
}

/* Two queues share one blob; it lives until both let go. Run under
 * valgrind/ASan, a premature free shows up as a use after free. */
static void
test_outq_shared_blob_outlives_one_queue(void **state)
{
    struct frame_blob *b = frame_blob_new("shared", 6);
    struct outq q1, q2;
    uint8_t out[16];

    (void)state;
    outq_init(&q1, 100);
    outq_init(&q2, 100);
    assert_int_equal(outq_push(&q1, b), CHAT_OK);
    assert_int_equal(outq_push(&q2, b), CHAT_OK);
    frame_blob_unref(b);
    outq_consume(&q1, outq_bytes(&q1));
    outq_cleanup(&q1);
    assert_int_equal(gather(&q2, out, 4), 10);
    assert_memory_equal(out + FRAME_HDR, "shared", 6);
    outq_cleanup(&q2);
}

/* Many pushes and consumes wrap the ring and grow it; the bytes come out
 * in order and the ring is given back once empty. */
static void
test_outq_ring_wraps_and_grows_in_order(void **state)
{
    struct outq q;
    uint8_t expect[4096], out[8192];
    size_t exp_len = 0, round, i;
    unsigned next = 0;

    (void)state;
    outq_init(&q, 1 << 20);
    for (round = 0; round < 50; round++) {
        size_t pushes = 1 + round % 13, drop;

        for (i = 0; i < pushes; i++) {
            uint8_t payload[3] = {(uint8_t)next, (uint8_t)(next >> 8), 0x55};
            struct frame_blob *b = frame_blob_new(payload, sizeof(payload));

            memcpy(expect + exp_len, frame_blob_data(b), frame_blob_size(b));
            exp_len += frame_blob_size(b);
            next++;
            assert_int_equal(outq_push(&q, b), CHAT_OK);
            frame_blob_unref(b);
        }
        assert_int_equal(outq_bytes(&q), exp_len);
        assert_int_equal(gather(&q, out, 64), exp_len);
        assert_memory_equal(out, expect, exp_len);
        drop = exp_len * (round % 4 + 1) / 5 + (round % 3);
        if (drop > exp_len)
            drop = exp_len;
        outq_consume(&q, drop);
        memmove(expect, expect + drop, exp_len - drop);
        exp_len -= drop;
    }
    outq_consume(&q, exp_len);
    assert_int_equal(outq_bytes(&q), 0);
    assert_non_null(q.ring);
    outq_shrink(&q);
    assert_null(q.ring);
    outq_cleanup(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outq_blob_is_framed),
        cmocka_unit_test(test_outq_starts_empty_without_memory),
        cmocka_unit_test(test_outq_partial_writes_resume_mid_frame),
        cmocka_unit_test(test_outq_cap_refuses_without_queueing),
        cmocka_unit_test(test_outq_shared_blob_outlives_one_queue),
        cmocka_unit_test(test_outq_ring_wraps_and_grows_in_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
