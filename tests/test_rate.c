/* test_rate.c - tests for server/rate.c through rate.h: the token bucket
 * {per_sec, burst} of PROTOCOL.md section 4.1. Time is passed in as now_ms,
 * so nothing here sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rate.h"

/* Take until refused at now_ms; returns how many were allowed (at most
 * limit, so that a broken bucket cannot loop forever). */
static unsigned
drain(struct rate *r, double per_sec, double burst, int64_t now_ms,
      unsigned limit)
{
    unsigned n = 0;

    while (n < limit && rate_take(r, per_sec, burst, now_ms))
        n++;
    return n;
}

static void
test_rate_full_bucket_allows_burst_then_refuses(void **state)
{
    struct rate r;
    int i;

    (void)state;
    rate_init(&r, 5, 1000);
    for (i = 0; i < 5; i++)
        assert_true(rate_take(&r, 1, 5, 1000));
    assert_false(rate_take(&r, 1, 5, 1000));
    assert_false(rate_take(&r, 1, 5, 1000));
}

static void
test_rate_refills_at_per_sec(void **state)
{
    struct rate r;

    (void)state;
    /* 2 per second: a token every 500 ms. */
    rate_init(&r, 3, 0);
    assert_int_equal(drain(&r, 2, 3, 0, 100), 3);
    assert_false(rate_take(&r, 2, 3, 250));
    assert_false(rate_take(&r, 2, 3, 490));
    /* A refusal took nothing: the token still arrives on time. */
    assert_true(rate_take(&r, 2, 3, 510));
    assert_false(rate_take(&r, 2, 3, 510));
    /* Two seconds later: four tokens, capped at burst 3. */
    assert_int_equal(drain(&r, 2, 3, 2600, 100), 3);
    /* One second: exactly two. */
    assert_int_equal(drain(&r, 2, 3, 3600, 100), 2);
}

static void
test_rate_refills_fractional_rate(void **state)
{
    struct rate r;

    (void)state;
    /* 0.5 per second: a token every 2 s. */
    rate_init(&r, 1, 10000);
    assert_true(rate_take(&r, 0.5, 1, 10000));
    assert_false(rate_take(&r, 0.5, 1, 11000));
    assert_false(rate_take(&r, 0.5, 1, 11900));
    assert_true(rate_take(&r, 0.5, 1, 12100));
    assert_false(rate_take(&r, 0.5, 1, 12100));
}

static void
test_rate_idle_never_exceeds_burst(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 4, 0);
    assert_int_equal(drain(&r, 10, 4, 0, 100), 4);
    /* An hour idle at 10/s would be 36000 tokens; the bucket holds 4. */
    assert_int_equal(drain(&r, 10, 4, 3600 * 1000, 100000), 4);
    /* A fresh bucket is full, not more. */
    rate_init(&r, 4, 0);
    assert_int_equal(drain(&r, 10, 4, 60 * 1000, 100000), 4);
}

static void
test_rate_zero_per_sec_is_unlimited(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 1, 0);
    assert_int_equal(drain(&r, 0, 1, 0, 10000), 10000);
    /* Even with an empty bucket at the same instant. */
    rate_init(&r, 0, 5);
    assert_int_equal(drain(&r, 0, 0, 5, 1000), 1000);
}

static void
test_rate_lowered_burst_takes_effect_at_once(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 10, 0);
    /* SIGHUP lowers burst to 2: a full bucket of 10 now holds 2. */
    assert_int_equal(drain(&r, 1, 2, 0, 100), 2);
    /* Raising it again adds no tokens by itself. */
    assert_false(rate_take(&r, 1, 10, 0));
    /* And the refill is then capped by the new burst. */
    assert_int_equal(drain(&r, 1, 10, 60 * 1000, 100), 10);
}

static void
test_rate_time_going_backwards_adds_nothing(void **state)
{
    struct rate r;

    (void)state;
    rate_init(&r, 2, 10000);
    assert_int_equal(drain(&r, 2, 2, 10000, 100), 2);
    /* The clock steps back: no tokens for it. */
    assert_false(rate_take(&r, 2, 2, 5000));
    assert_false(rate_take(&r, 2, 2, 9000));
    /* Back at the old time: still nothing. */
    assert_false(rate_take(&r, 2, 2, 10000));
    /* 500 ms after the latest time seen earns one token, not the 1.5 s
     * since the step back (which would be three, capped to two). */
    assert_int_equal(drain(&r, 2, 2, 10500, 100), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_full_bucket_allows_burst_then_refuses),
        cmocka_unit_test(test_rate_refills_at_per_sec),
        cmocka_unit_test(test_rate_refills_fractional_rate),
        cmocka_unit_test(test_rate_idle_never_exceeds_burst),
        cmocka_unit_test(test_rate_zero_per_sec_is_unlimited),
        cmocka_unit_test(test_rate_lowered_burst_takes_effect_at_once),
        cmocka_unit_test(test_rate_time_going_backwards_adds_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
