/* test_buf.c - tests for common/buf.c through buf.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "buf.h"
#include "err.h"

/* Allocation failure without a hook in common/: this program's own
 * g_try_realloc() takes the place of GLib's for buf.c linked into it, and
 * fails for sizes of at least fail_min, as tests/faultshim.c makes malloc
 * fail for the server. */
static size_t fail_min = SIZE_MAX;
static unsigned fail_count;

gpointer
g_try_realloc(gpointer mem, gsize n)
{
    if (n >= fail_min) {
        fail_count++;
        return NULL;
    }
    if (n == 0) {
        free(mem);
        return NULL;
    }
    return realloc(mem, n);
}

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
fill_pattern(uint8_t *p, size_t n, uint8_t start)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(start + i);
}

static void
test_buf_init_allocates_nothing(void **state)
{
    struct buf b;

    (void)state;
    memset(&b, 0xa5, sizeof(b));
    buf_init(&b, 1000);
    assert_null(b.data);
    assert_null(buf_ptr(&b));
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_room(&b), 1000);
    buf_cleanup(&b);
    assert_null(buf_ptr(&b));
}

static void
test_buf_append_consume(void **state)
{
    struct buf b;
    uint8_t in[300];

    (void)state;
    fill_pattern(in, sizeof(in), 7);
    buf_init(&b, 1000);
    assert_int_equal(buf_append(&b, in, 100), CHAT_OK);
    assert_int_equal(buf_append(&b, in + 100, 200), CHAT_OK);
    assert_int_equal(buf_len(&b), 300);
    assert_int_equal(buf_room(&b), 700);
    assert_memory_equal(buf_ptr(&b), in, 300);

    buf_consume(&b, 120);
    assert_int_equal(buf_len(&b), 180);
    assert_int_equal(buf_room(&b), 820);
    assert_memory_equal(buf_ptr(&b), in + 120, 180);

    /* Appending nothing is fine and changes nothing. */
    assert_int_equal(buf_append(&b, in, 0), CHAT_OK);
    assert_int_equal(buf_len(&b), 180);
    buf_cleanup(&b);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_room(&b), 1000);
}

static void
test_buf_cap_enforced(void **state)
{
    struct buf b;
    uint8_t in[64];

    (void)state;
    fill_pattern(in, sizeof(in), 0);
    buf_init(&b, 40);
    /* Over the cap on an empty buffer: refused, nothing allocated. */
    assert_int_equal(buf_append(&b, in, 41), CHAT_EFULL);
    assert_int_equal(buf_len(&b), 0);
    assert_null(buf_ptr(&b));

    assert_int_equal(buf_append(&b, in, 30), CHAT_OK);
    assert_int_equal(buf_room(&b), 10);
    /* One byte over the room: refused and nothing appended. */
    assert_int_equal(buf_append(&b, in + 30, 11), CHAT_EFULL);
    assert_int_equal(buf_len(&b), 30);
    assert_memory_equal(buf_ptr(&b), in, 30);
    /* Exactly the room: accepted, buffer full. */
    assert_int_equal(buf_append(&b, in + 30, 10), CHAT_OK);
    assert_int_equal(buf_len(&b), 40);
    assert_int_equal(buf_room(&b), 0);
    assert_int_equal(buf_append(&b, in, 1), CHAT_EFULL);
    assert_memory_equal(buf_ptr(&b), in, 40);

    /* Consuming makes room again. */
    buf_consume(&b, 5);
    assert_int_equal(buf_room(&b), 5);
    assert_int_equal(buf_append(&b, in, 5), CHAT_OK);
    assert_memory_equal(buf_ptr(&b), in + 5, 35);
    assert_memory_equal(buf_ptr(&b) + 35, in, 5);
    buf_cleanup(&b);
}

static void
test_buf_reserve_commit(void **state)
{
    struct buf b;
    uint8_t *p;
    size_t avail = 0;
    uint8_t in[100];

    (void)state;
    fill_pattern(in, sizeof(in), 3);
    buf_init(&b, 100);

    /* recv()-style: reserve, write part of it, commit what was written. */
    p = buf_reserve(&b, 50, &avail);
    assert_non_null(p);
    assert_true(avail >= 50);
    assert_true(avail <= 100);
    memcpy(p, in, 20);
    buf_commit(&b, 20);
    assert_int_equal(buf_len(&b), 20);
    assert_memory_equal(buf_ptr(&b), in, 20);

    /* Asking for more than the cap allows is clamped to the room. */
    p = buf_reserve(&b, 100000, &avail);
    assert_non_null(p);
    assert_int_equal(avail, 80);
    memcpy(p, in + 20, avail);
    buf_commit(&b, avail);
    assert_int_equal(buf_len(&b), 100);
    assert_memory_equal(buf_ptr(&b), in, 100);

    /* Full: nothing to reserve. */
    avail = 12345;
    p = buf_reserve(&b, 1, &avail);
    assert_null(p);
    assert_int_equal(avail, 0);

    /* After consuming, the reserved space is only what the cap allows. */
    buf_consume(&b, 30);
    p = buf_reserve(&b, 1000, &avail);
    assert_non_null(p);
    assert_int_equal(avail, 30);
    memcpy(p, in, 30);
    buf_commit(&b, 30);
    assert_memory_equal(buf_ptr(&b), in + 30, 70);
    assert_memory_equal(buf_ptr(&b) + 70, in, 30);
    buf_cleanup(&b);

    /* want 0 reserves nothing. */
    buf_init(&b, 100);
    avail = 7;
    assert_null(buf_reserve(&b, 0, &avail));
    assert_int_equal(avail, 0);
    buf_cleanup(&b);
}

/* Drained storage is kept (no free/regrow churn while busy) until
 * buf_shrink() gives it back. */
static void
test_buf_kept_when_drained_released_by_shrink(void **state)
{
    struct buf b;
    uint8_t in[600];

    (void)state;
    fill_pattern(in, sizeof(in), 9);
    buf_init(&b, 4096);
    assert_int_equal(buf_append(&b, in, sizeof(in)), CHAT_OK);
    assert_non_null(buf_ptr(&b));
    buf_consume(&b, 599);
    assert_non_null(buf_ptr(&b));
    assert_int_equal(buf_ptr(&b)[0], in[599]);
    buf_consume(&b, 1);
    assert_int_equal(buf_len(&b), 0);
    assert_non_null(b.data);
    assert_int_equal(buf_room(&b), 4096);

    /* Shrinking a non-empty buffer keeps its bytes. */
    assert_int_equal(buf_append(&b, in, 10), CHAT_OK);
    buf_shrink(&b);
    assert_memory_equal(buf_ptr(&b), in, 10);
    buf_consume(&b, 10);
    assert_non_null(b.data);
    buf_shrink(&b);
    assert_null(b.data);
    assert_null(buf_ptr(&b));
    assert_int_equal(buf_room(&b), 4096);

    /* Usable again after being released. */
    assert_int_equal(buf_append(&b, in, 10), CHAT_OK);
    assert_memory_equal(buf_ptr(&b), in, 10);
    buf_cleanup(&b);
}

/* Slide-to-front: a tail too short but enough space in total. */
static void
test_buf_slide_keeps_bytes(void **state)
{
    struct buf b;
    uint8_t in[800];
    size_t alloc;

    (void)state;
    fill_pattern(in, sizeof(in), 1);
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_append(&b, in, 400), CHAT_OK);
    alloc = b.alloc;
    buf_consume(&b, 300);
    /* 100 unread bytes at offset 300; 300 more do not fit at the tail of a
     * 512-byte allocation but fit after sliding to the front. */
    assert_int_equal(buf_append(&b, in + 400, 300), CHAT_OK);
    assert_int_equal(b.alloc, alloc); /* slid, did not grow */
    assert_int_equal(buf_len(&b), 400);
    assert_memory_equal(buf_ptr(&b), in + 300, 400);
    buf_cleanup(&b);
}

/* Grow with unread bytes not at the front. */
static void
test_buf_grow_keeps_bytes(void **state)
{
    struct buf b;
    uint8_t in[2000];
    size_t alloc;

    (void)state;
    fill_pattern(in, sizeof(in), 2);
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_append(&b, in, 400), CHAT_OK);
    alloc = b.alloc;
    buf_consume(&b, 100);
    assert_int_equal(buf_append(&b, in + 400, 1500), CHAT_OK);
    assert_true(b.alloc > alloc); /* grew */
    assert_int_equal(buf_len(&b), 1800);
    assert_memory_equal(buf_ptr(&b), in + 100, 1800);
    buf_cleanup(&b);
}

/* Growth stops at the cap even when doubling would pass it. */
static void
test_buf_grow_to_exact_cap(void **state)
{
    struct buf b;
    uint8_t in[1500];

    (void)state;
    fill_pattern(in, sizeof(in), 4);
    buf_init(&b, 1500);
    assert_int_equal(buf_append(&b, in, 1000), CHAT_OK);
    assert_int_equal(buf_append(&b, in + 1000, 500), CHAT_OK);
    assert_int_equal(buf_room(&b), 0);
    assert_true(b.alloc >= 1500);
    assert_memory_equal(buf_ptr(&b), in, 1500);
    buf_cleanup(&b);
}

/*
 * Interleave appends, reserve/commit and consumes of pseudo-random sizes and
 * compare against a flat reference after every step. Sizes are chosen so
 * both the slide-to-front and the grow path run many times.
 */
static void
test_buf_random_interleave_matches_reference(void **state)
{
    enum { CAP = 5000, STEPS = 20000, CHUNK = 1200 };
    static uint8_t ref[CAP];
    uint8_t chunk[CHUNK];
    struct buf b;
    uint32_t seed = 0x2545f491u;
    size_t ref_len = 0, i, n, slides = 0, grows = 0, prev_alloc, prev_off;
    unsigned step;
    uint8_t next = 0;

    (void)state;
    buf_init(&b, CAP);
    for (step = 0; step < STEPS; step++) {
        uint32_t r = rng_next(&seed);
        size_t room = CAP - ref_len;
        int op = (int)(r % 8);

        prev_alloc = b.alloc;
        prev_off = b.off;
        if (op < 3) { /* append */
            n = rng_next(&seed) % (CHUNK + 1);
            for (i = 0; i < n; i++)
                chunk[i] = next++;
            if (n > room) {
                assert_int_equal(buf_append(&b, chunk, n), CHAT_EFULL);
                next = (uint8_t)(next - n); /* nothing went in */
            } else {
                assert_int_equal(buf_append(&b, chunk, n), CHAT_OK);
                memcpy(ref + ref_len, chunk, n);
                ref_len += n;
            }
        } else if (op < 5) { /* reserve, write some, commit */
            size_t want = rng_next(&seed) % (CHUNK + 1), avail = 0;
            uint8_t *p = buf_reserve(&b, want, &avail);

            if (want == 0 || room == 0) {
                assert_null(p);
                assert_int_equal(avail, 0);
            } else {
                assert_non_null(p);
                assert_true(avail >= (want < room ? want : room));
                assert_true(avail <= room);
                n = rng_next(&seed) % (avail + 1);
                for (i = 0; i < n; i++)
                    p[i] = next++;
                buf_commit(&b, n);
                memcpy(ref + ref_len, p, n);
                ref_len += n;
            }
        } else { /* consume */
            n = rng_next(&seed) % (ref_len + 1);
            buf_consume(&b, n);
            memmove(ref, ref + n, ref_len - n);
            ref_len -= n;
            /* An owner gives storage back once drained: regrow from 0. */
            if (ref_len == 0)
                buf_shrink(&b);
        }
        if (b.alloc > prev_alloc && prev_alloc)
            grows++;
        assert_int_equal(buf_len(&b), ref_len);
        assert_int_equal(buf_room(&b), CAP - ref_len);
        if (ref_len > 0) {
            assert_true(b.alloc <= CAP || b.alloc <= 512);
            assert_memory_equal(buf_ptr(&b), ref, ref_len);
        }
        /* Read-only peeks at the layout, to prove both paths ran. */
        if (b.alloc == prev_alloc && prev_off > 0 && b.off == 0 && ref_len > 0)
            slides++;
    }
    assert_true(grows > 10);
    assert_true(slides > 10);
    buf_cleanup(&b);
}

/* A growth that fails leaves the buffer as it was: same bytes, same
 * room, and a later growth works. */
static void
test_buf_try_append_fails_cleanly_without_memory(void **state)
{
    struct buf b;
    uint8_t in[2000];

    (void)state;
    fill_pattern(in, sizeof(in), 11);
    buf_init(&b, 4096);
    assert_int_equal(buf_try_append(&b, in, 300), CHAT_OK); /* 512 bytes */
    buf_consume(&b, 100); /* unread bytes now start past the front */
    fail_min = 1024;
    fail_count = 0;
    assert_int_equal(buf_try_append(&b, in + 300, 700), CHAT_ENOMEM);
    assert_int_equal(fail_count, 1);
    assert_int_equal(buf_len(&b), 200);
    assert_int_equal(buf_room(&b), 4096 - 200);
    assert_memory_equal(buf_ptr(&b), in + 100, 200);
    /* What fits in the storage it has still goes in. */
    assert_int_equal(buf_try_append(&b, in + 300, 300), CHAT_OK);
    assert_int_equal(buf_len(&b), 500);
    assert_memory_equal(buf_ptr(&b), in + 100, 500);
    /* The cap is still checked first. */
    assert_int_equal(buf_try_append(&b, in, 4000), CHAT_EFULL);
    fail_min = SIZE_MAX;
    assert_int_equal(buf_try_append(&b, in + 600, 1400), CHAT_OK);
    assert_int_equal(buf_len(&b), 1900);
    assert_memory_equal(buf_ptr(&b), in + 100, 1900);
    buf_cleanup(&b);
}

/* The first allocation can fail too: nothing is held afterwards. */
static void
test_buf_try_append_first_allocation_fails(void **state)
{
    struct buf b;
    uint8_t in[16] = {0};

    (void)state;
    buf_init(&b, 100);
    fail_min = 1;
    assert_int_equal(buf_try_append(&b, in, sizeof(in)), CHAT_ENOMEM);
    assert_null(buf_ptr(&b));
    assert_int_equal(buf_len(&b), 0);
    fail_min = SIZE_MAX;
    assert_int_equal(buf_try_append(&b, in, sizeof(in)), CHAT_OK);
    buf_cleanup(&b);
}

/* buf_reserve() gives NULL when the storage cannot grow, with room left
 * (which tells it from a full buffer), and the buffer as it was. */
static void
test_buf_reserve_null_without_memory(void **state)
{
    struct buf b;
    uint8_t in[600];
    size_t avail = 0;
    uint8_t *p;

    (void)state;
    fill_pattern(in, sizeof(in), 5);
    buf_init(&b, 8192);
    assert_int_equal(buf_try_append(&b, in, 500), CHAT_OK);
    fail_min = 1024;
    avail = 99;
    p = buf_reserve(&b, 4096, &avail);
    assert_null(p);
    assert_int_equal(avail, 0);
    assert_true(buf_room(&b) > 0);
    assert_int_equal(buf_len(&b), 500);
    assert_memory_equal(buf_ptr(&b), in, 500);
    /* Space the storage already has is still lent. */
    p = buf_reserve(&b, 12, &avail);
    assert_non_null(p);
    assert_int_equal(avail, 12);
    memcpy(p, in + 500, 12);
    buf_commit(&b, 12);
    assert_memory_equal(buf_ptr(&b), in, 512);
    fail_min = SIZE_MAX;
    p = buf_reserve(&b, 4096, &avail);
    assert_non_null(p);
    assert_true(avail >= 4096);
    buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_init_allocates_nothing),
        cmocka_unit_test(test_buf_append_consume),
        cmocka_unit_test(test_buf_cap_enforced),
        cmocka_unit_test(test_buf_reserve_commit),
        cmocka_unit_test(test_buf_kept_when_drained_released_by_shrink),
        cmocka_unit_test(test_buf_slide_keeps_bytes),
        cmocka_unit_test(test_buf_grow_keeps_bytes),
        cmocka_unit_test(test_buf_grow_to_exact_cap),
        cmocka_unit_test(test_buf_random_interleave_matches_reference),
        cmocka_unit_test(test_buf_try_append_fails_cleanly_without_memory),
        cmocka_unit_test(test_buf_try_append_first_allocation_fails),
        cmocka_unit_test(test_buf_reserve_null_without_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
