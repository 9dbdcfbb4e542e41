/* test_outq.c - the queue of shared frames behind every client's output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "err.h"
#include "frame.h"
#include "outq.h"

/* Allocation failure without a hook in common/: this program's own
 * g_try_malloc() and g_try_malloc_n() take the place of GLib's for outq.c
 * linked into it, and fail for sizes of at least fail_min, as
 * tests/faultshim.c makes malloc fail for the server. */
static size_t fail_min = SIZE_MAX;
static unsigned fail_count;

gpointer
g_try_malloc(gsize n)
{
    if (n >= fail_min) {
        fail_count++;
        return NULL;
    }
    return n ? malloc(n) : NULL;
}

gpointer
g_try_malloc_n(gsize blocks, gsize size)
{
    if (size != 0 && blocks > SIZE_MAX / size)
        return NULL;
    return g_try_malloc(blocks * size);
}

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

/* A frame that cannot be allocated is NULL, not an abort. */
static void
test_outq_blob_null_without_memory(void **state)
{
    uint8_t payload[200] = {0}, *p = payload;
    struct frame_blob *b;

    (void)state;
    fail_min = 128;
    fail_count = 0;
    assert_null(frame_blob_new(payload, sizeof(payload)));
    assert_null(frame_blob_alloc(sizeof(payload), &p));
    assert_null(p);
    assert_int_equal(fail_count, 2);
    b = frame_blob_new(payload, 10); /* small ones still fit */
    assert_non_null(b);
    frame_blob_unref(b);
    fail_min = SIZE_MAX;
    b = frame_blob_alloc(3, &p);
    assert_non_null(b);
    memcpy(p, "abc", 3);
    assert_int_equal(frame_blob_size(b), FRAME_HDR + 3);
    assert_memory_equal(frame_blob_data(b), "\0\0\0\3abc", 7);
    frame_blob_unref(b);
}

/* The ring cannot grow: every push fails with CHAT_ENOMEM (the cap is
 * still checked first) and leaves the queue as it was, mid-frame too. */
static void
test_outq_push_enomem_leaves_queue_intact(void **state)
{
    struct frame_blob *b = frame_blob_new("0123456789", 10); /* 14 bytes */
    struct frame_blob *big = frame_blob_new("x", 1);
    uint8_t before[256], after[256];
    size_t n, i;
    struct outq q;

    (void)state;
    outq_init(&q, 1000);
    for (i = 0; i < 8; i++) /* fills the first ring of 8 slots */
        assert_int_equal(outq_push(&q, b), CHAT_OK);
    outq_consume(&q, 3);
    n = gather(&q, before, 64);
    assert_int_equal(n, 8 * 14 - 3);
    fail_min = 16 * sizeof(struct outq_ref);
    assert_int_equal(outq_push(&q, b), CHAT_ENOMEM);
    assert_int_equal(outq_push_force(&q, b), CHAT_ENOMEM);
    q.cap = 8 * 14;
    assert_int_equal(outq_push(&q, b), CHAT_EFULL);
    q.cap = 1000;
    assert_int_equal(outq_bytes(&q), n);
    assert_int_equal(gather(&q, after, 64), n);
    assert_memory_equal(after, before, n);
    fail_min = SIZE_MAX;
    assert_int_equal(outq_push_force(&q, big), CHAT_OK);
    assert_int_equal(gather(&q, after, 64), n + FRAME_HDR + 1);
    assert_memory_equal(after, before, n);
    frame_blob_unref(b);
    frame_blob_unref(big);
    outq_cleanup(&q);
}

/* Dropping what is not yet begun keeps a frame partly written (the stream
 * stays framed) and frees the rest; with nothing begun the ring goes. */
static void
test_outq_drop_unsent_keeps_partial_head(void **state)
{
    struct frame_blob *a = frame_blob_new("first", 5);
    struct frame_blob *b = frame_blob_new("second", 6);
    struct frame_blob *e = frame_blob_new("err", 3);
    uint8_t out[64];
    struct outq q;

    (void)state;
    outq_init(&q, 1000);
    assert_int_equal(outq_push(&q, a), CHAT_OK);
    assert_int_equal(outq_push(&q, b), CHAT_OK);
    assert_int_equal(outq_push(&q, b), CHAT_OK);
    outq_consume(&q, 4); /* the header of "first" is out */
    outq_drop_unsent(&q);
    assert_int_equal(outq_bytes(&q), 5);
    fail_min = 1; /* the last word needs no allocation now */
    assert_int_equal(outq_push_force(&q, e), CHAT_OK);
    fail_min = SIZE_MAX;
    assert_int_equal(gather(&q, out, 64), 5 + FRAME_HDR + 3);
    assert_memory_equal(out, "first\0\0\0\3err", 12);
    outq_consume(&q, 5);
    /* Nothing begun: everything goes, the ring too. */
    outq_drop_unsent(&q);
    assert_int_equal(outq_bytes(&q), 0);
    assert_null(q.ring);
    outq_drop_unsent(&q); /* empty: nothing to do */
    frame_blob_unref(a);
    frame_blob_unref(b);
    frame_blob_unref(e);
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
        cmocka_unit_test(test_outq_blob_null_without_memory),
        cmocka_unit_test(test_outq_push_enomem_leaves_queue_intact),
        cmocka_unit_test(test_outq_drop_unsent_keeps_partial_head),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
