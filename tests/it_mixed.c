/*
 * it_mixed.c - one server, every transport at once, and the udp transport
 * under heavy loss.
 *
 * test_mixed_same_events: sockchatd listens on tcp, udp and unix together;
 * an observer on each joins one room, then an actor on each joins, talks
 * (interleaved, without waiting for echoes), sets the topic, leaves, quits
 * or just closes. Every observer must see the very same events (joined,
 * message with its seq, topic, left, quit), byte for byte, in the same
 * order: the room cannot tell which transport a member uses.
 *
 * test_mixed_udp_10k_messages_at_20pct_drop: 10,000 messages from one udp
 * client to another through the server, both behind tests/lossy dropping
 * 20% of the datagrams each way (fixed seed): every message arrives once,
 * in order, intact (text and seq), and so does every echo to the sender.
 *
 * With $IT_LOSSY, the udp endpoint of the first test is relayed too.
 */
#include "itlib.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

enum { NT = 3, ROUNDS = 10 };

static const char *const endpoints[NT + 1] = {
    "tcp://127.0.0.1:0", "udp://127.0.0.1:0", "unix://@DIR@/s", NULL,
};

static int
cleanup(void **state)
{
    (void)state;
    it_test_cleanup(NULL);
    return 0;
}

/* Registers nick on endpoint i of s. */
static int
register_on(const struct it_server *s, size_t i, const char *nick)
{
    int fd = it_connect_endpoint(s, i);

    if (fd < 0)
        fail_msg("cannot connect to %s", it_server_endpoint(s, i));
    it_hello(fd, nick);
    return fd;
}

/* Reads fd until a message of type arrives (others are dropped). */
static const cJSON *
skip_until(int fd, const char *type)
{
    int k;

    for (k = 0; k < 1000; k++) {
        enum it_rx why;
        cJSON *x = it_recv_msg(fd, it_ms(10000), &why);
        const cJSON *m;

        if (x == NULL)
            fail_msg("fd %d (%s): waiting for %s: got %s", fd, it_nick(fd),
                type, it_rx_name(why));
        m = it_keep(x);
        if (strcmp(it_str(m, "type"), type) == 0)
            return m;
    }
    fail_msg("fd %d: no %s in 1000 messages", fd, type);
    return NULL;
}

static void
test_mixed_same_events(void **state)
{
    struct it_server *s;
    const char *room = it_uniq("#mixed");
    const char *topic = "set over unix", *last = "last over unix";
    int obs[NT], act[NT], i, k, n_events;
    const char *actn[NT];
    GPtrArray *seen[NT];
    int64_t seq_want = 1;
    int joined = 0, msgs = 0, topics = 0, lefts = 0, quits = 0;

    (void)state;
    s = it_server_start_endpoints(endpoints, NULL);
    if (s == NULL)
        fail_msg("cannot start sockchatd on tcp, udp and unix");
    assert_int_equal((int)it_server_n_endpoints(s), NT);
    for (i = 0; i < NT; i++) {
        print_message("endpoint %d: %s\n", i, it_server_endpoint(s, i));
        assert_true(strncmp(it_server_endpoint(s, i), endpoints[i], 3) == 0);
    }

    /* the observers, one per transport, in the room first */
    for (i = 0; i < NT; i++) {
        obs[i] = register_on(s, (size_t)i, it_uniq("obs"));
        it_join(obs[i], room);
        for (k = 0; k < i; k++)
            it_expect_joined(obs[k], room, it_nick(obs[i]));
    }
    /* from here on every observer records everything: the actors, one
     * per transport, join */
    for (i = 0; i < NT; i++) {
        actn[i] = it_uniq("act");
        act[i] = register_on(s, (size_t)i, actn[i]);
        it_join(act[i], room);
    }
    /* talk interleaved across transports; nobody waits for an echo */
    for (k = 0; k < ROUNDS; k++)
        for (i = 0; i < NT; i++)
            assert_int_equal(it_send_json(act[i], "{\"type\":\"say\","
                "\"room\":\"%s\",\"text\":\"t%d-%d\"}", room, i, k), 0);
    /* topic over unix, leave over tcp, quit over udp, all at once */
    assert_int_equal(it_send_json(act[2], "{\"type\":\"topic\",\"room\":"
        "\"%s\",\"topic\":\"%s\"}", room, topic), 0);
    assert_int_equal(it_send_json(act[0], "{\"type\":\"leave\",\"room\":"
        "\"%s\",\"reason\":\"leaving over tcp\"}", room), 0);
    assert_int_equal(it_send_json(act[1], "{\"type\":\"quit\",\"reason\":"
        "\"quitting over udp\"}"), 0);
    assert_int_equal(it_send_json(act[2], "{\"type\":\"say\",\"room\":"
        "\"%s\",\"text\":\"%s\"}", room, last), 0);
    (void)skip_until(act[1], "bye");
    it_expect_closed(act[1]);
    /* the unix actor closes without quit once nothing more can come to
     * it (unread data would make the close a reset) */
    for (k = 0, i = 0; k < 1000 && i != 3; k++) {
        enum it_rx why;
        cJSON *x = it_recv_msg(act[2], it_ms(10000), &why);
        const cJSON *m;

        if (x == NULL)
            fail_msg("unix actor: waiting for the others to go: got %s",
                it_rx_name(why));
        m = it_keep(x);
        if (strcmp(it_str(m, "type"), "left") == 0 &&
            strcmp(it_str(m, "nick"), actn[0]) == 0)
            i |= 1;
        if (strcmp(it_str(m, "type"), "quit") == 0 &&
            strcmp(it_str(m, "nick"), actn[1]) == 0)
            i |= 2;
    }
    it_pump(it_ms(50));
    {
        cJSON *x;

        while ((x = it_recv_msg(act[2], 0, NULL)) != NULL)
            cJSON_Delete(x);
    }
    it_close(act[2]);

    /* 3 joined, 31 messages, 1 topic, 1 left, 2 quits */
    n_events = NT + NT * ROUNDS + 1 + 1 + 1 + 2;
    for (i = 0; i < NT; i++) {
        seen[i] = it_defer((GDestroyNotify)g_ptr_array_unref,
            g_ptr_array_new_with_free_func(g_free));
        for (k = 0; k < n_events; k++) {
            enum it_rx why;
            cJSON *m = it_recv_msg(obs[i], it_ms(10000), &why);

            if (m == NULL)
                fail_msg("observer on %s: event %d of %d: got %s",
                    it_server_endpoint(s, (size_t)i), k + 1, n_events,
                    it_rx_name(why));
            it_keep(m);
            g_ptr_array_add(seen[i], g_strdup(it_json(m)));
        }
        it_expect_silence(obs[i], i == 0 ? 300 : 10);
    }
    /* the same events, in the same order, on every transport */
    for (k = 0; k < n_events; k++) {
        const char *e0 = g_ptr_array_index(seen[0], k);

        for (i = 1; i < NT; i++) {
            const char *ei = g_ptr_array_index(seen[i], k);

            if (strcmp(e0, ei) != 0)
                fail_msg("event %d differs:\n  %s saw %s\n  %s saw %s", k + 1,
                    it_server_endpoint(s, 0), e0,
                    it_server_endpoint(s, (size_t)i), ei);
        }
    }
    /* and they are the right ones */
    for (k = 0; k < n_events; k++) {
        const cJSON *m = it_keep(cJSON_Parse(g_ptr_array_index(seen[0], k)));
        const char *type = it_str(m, "type");

        if (strcmp(type, "joined") == 0) {
            assert_string_equal(it_str(m, "nick"), actn[joined]);
            joined++;
        } else if (strcmp(type, "message") == 0) {
            assert_int_equal(it_int(m, "seq"), seq_want);
            seq_want++;
            msgs++;
        } else if (strcmp(type, "topic") == 0) {
            assert_string_equal(it_str(m, "topic"), topic);
            assert_string_equal(it_str(m, "by"), actn[2]);
            topics++;
        } else if (strcmp(type, "left") == 0) {
            assert_string_equal(it_str(m, "nick"), actn[0]);
            assert_string_equal(it_str(m, "reason"), "leaving over tcp");
            lefts++;
        } else if (strcmp(type, "quit") == 0 &&
            strcmp(it_str(m, "nick"), actn[1]) == 0) {
            assert_string_equal(it_str(m, "reason"), "quitting over udp");
            quits++;
        } else if (strcmp(type, "quit") == 0 &&
            strcmp(it_str(m, "nick"), actn[2]) == 0) {
            assert_string_equal(it_str(m, "reason"), "connection closed");
            quits++;
        } else {
            fail_msg("unexpected event %s", it_json(m));
        }
    }
    assert_int_equal(joined, NT);
    assert_int_equal(msgs, NT * ROUNDS + 1);
    assert_int_equal(topics, 1);
    assert_int_equal(lefts, 1);
    assert_int_equal(quits, 2);
    print_message("%d events, identical on tcp, udp and unix\n", n_events);
    for (i = 0; i < NT; i++)
        it_ping(obs[i]);
    assert_int_equal(it_server_stop(s), 0);
}

/* ------------------------------------------- 10,000 messages, 20% loss */

enum { BULK_N = 10000, BULK_WINDOW = 400 };

/* Message i's text: its number, then filler that depends on it. */
static void
bulk_text(int i, char *out, size_t n)
{
    uint32_t x = (uint32_t)i * 2654435761u;
    size_t k, len;

    len = (size_t)g_snprintf(out, n, "m%05d-", i);
    for (k = 0; len + 1 < n && k < 64; k++, len++) {
        out[len] = "0123456789abcdefghijklmnopqrstuv"[(x >> 11) & 31];
        x = x * 1103515245u + 12345u;
    }
    out[len] = '\0';
}

/*
 * Takes the next message on fd within ms, which must be bulk message *i
 * (seq seq0 + *i) from `from`; then ++*i. false on a timeout; any other
 * failure fails the test.
 */
static bool
bulk_take(int fd, const char *who, const char *from, int *i, int64_t seq0,
    int ms)
{
    char want[96];
    enum it_rx why;
    cJSON *x = it_recv_msg(fd, ms, &why);
    const cJSON *m;

    if (x == NULL) {
        if (why == IT_RX_TIMEOUT)
            return false;
        fail_msg("%s: message %d: got %s", who, *i, it_rx_name(why));
    }
    m = it_keep(x);
    bulk_text(*i, want, sizeof(want));
    if (strcmp(it_str(m, "type"), "message") != 0 ||
        strcmp(it_str(m, "from"), from) != 0 ||
        strcmp(it_str(m, "text"), want) != 0 ||
        it_int(m, "seq") != seq0 + *i)
        fail_msg("%s: expected message %d (seq %lld, \"%s\"), got %s", who,
            *i, (long long)(seq0 + *i), want, it_json(m));
    ++*i;
    return true;
}

static void
test_mixed_udp_10k_messages_at_20pct_drop(void **state)
{
    const char *const listen[] = { "udp://127.0.0.1:0", NULL };
    const char *const extra[] = { "--rate", "0", NULL };
    const char *room = it_uniq("#bulk");
    char *saved = g_strdup(it_lossy());
    struct it_server *s;
    const char *an;
    int a, b, sent = 0, got_a = 0, got_b = 0;
    int64_t t0, deadline, seq0 = 1;
    char text[96];

    (void)state;
    it_defer(g_free, saved);
    assert_int_equal(it_set_lossy("--drop 0.20 --seed 20"), 0);
    s = it_server_start_endpoints(listen, extra);
    (void)it_set_lossy(saved);
    if (s == NULL)
        fail_msg("cannot start sockchatd on udp");
    a = register_on(s, 0, it_uniq("bulka"));
    an = it_nick(a);
    b = register_on(s, 0, it_uniq("bulkb"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));

    t0 = it_now_ms();
    deadline = t0 + it_ms(120000);
    while (got_a < BULK_N || got_b < BULK_N) {
        int slow;

        if (it_now_ms() > deadline)
            fail_msg("after %lld ms: %d sent, %d received by b, %d echoed "
                "to a", (long long)(it_now_ms() - t0), sent, got_b, got_a);
        /* the sender stays at most BULK_WINDOW messages ahead of the
         * slower reader, so the server's queues never overflow */
        while (sent < BULK_N && sent - MIN(got_a, got_b) < BULK_WINDOW) {
            bulk_text(sent, text, sizeof(text));
            if (it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
                "\"text\":\"%s\"}", room, text) != 0)
                fail_msg("send %d: %s", sent, g_strerror(errno));
            sent++;
        }
        /* wait for the one further behind (reading both meanwhile) */
        slow = got_b <= got_a ? b : a;
        if (!(slow == b ? bulk_take(b, "b", an, &got_b, seq0, it_ms(10000)) :
            bulk_take(a, "a (echo)", an, &got_a, seq0, it_ms(10000))))
            fail_msg("%s stalled for 10 s: %d sent, %d received by b, %d "
                "echoed to a", slow == b ? "b" : "a", sent, got_b, got_a);
        while (got_b < sent && bulk_take(b, "b", an, &got_b, seq0, 0))
            ;
        while (got_a < sent && bulk_take(a, "a (echo)", an, &got_a, seq0, 0))
            ;
    }
    print_message("%d messages a -> server -> b, and the echoes to a, "
        "through 20%% drop each way: all there, once, in order, in %lld "
        "ms\n", BULK_N, (long long)(it_now_ms() - t0));
    /* nothing more: no duplicate, no straggler */
    it_expect_silence(b, 500);
    it_expect_silence(a, 10);
    it_ping(a);
    it_ping(b);
    it_close(a);
    it_close(b);
    assert_int_equal(it_server_stop(s), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mixed_same_events, cleanup),
        cmocka_unit_test_teardown(test_mixed_udp_10k_messages_at_20pct_drop,
            cleanup),
    };
    int rc;

    it_init();
    rc = cmocka_run_group_tests_name("it_mixed", tests, NULL, NULL);
    if (it_bad_stops() != 0) {
        fprintf(stderr, "it_mixed: %d server run(s) ended with a non-zero "
            "status\n", it_bad_stops());
        if (rc == 0)
            rc = 1;
    }
    return rc != 0 ? 1 : 0;
}
