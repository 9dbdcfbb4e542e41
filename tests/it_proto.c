/*
 * it_proto.c - black-box protocol tests against a real sockchatd.
 *
 * Every request of PROTOCOL.md §3 with its reply and events, the decided edge
 * cases of §4.1, and the limits and signals of doc/SERVER-CLI.md. Tests that
 * need default options share one server; the others start their own.
 * Names come from it_uniq() so that tests sharing a server never collide.
 */
#include "itlib.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

static struct it_server *shared;

static int
group_setup(void **state)
{
    (void)state;
    shared = it_server_startv(NULL);
    return shared != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
    (void)state;
    it_test_cleanup(NULL);
    shared = NULL;
    return 0;
}

static int
cleanup(void **state)
{
    (void)state;
    it_test_cleanup(shared);
    return 0;
}

static struct it_server *
start_or_fail(const char *args)
{
    struct it_server *s = it_server_start_str(args);

    if (s == NULL)
        fail_msg("cannot start sockchatd %s", args != NULL ? args : "");
    return s;
}

static void
stop_ok(struct it_server *s)
{
    assert_int_equal(it_server_stop(s), 0);
}

static void
free_gstring(gpointer p)
{
    g_string_free(p, TRUE);
}

static const char *
upper(const char *s)
{
    return it_own(g_ascii_strup(s, -1));
}

static const char *
lower(const char *s)
{
    return it_own(g_ascii_strdown(s, -1));
}

static const cJSON *
limits_of(const cJSON *welcome)
{
    const cJSON *l = it_get(welcome, "limits");

    if (!cJSON_IsObject(l))
        fail_msg("welcome without limits object: %s", it_json(welcome));
    return l;
}

/* Expects the next message to be a quit {nick} (reason if non-NULL; a
 * reason with '|' lists the alternatives allowed). */
static const cJSON *
expect_quit(int fd, const char *nick, const char *reason)
{
    const cJSON *m = it_expect_type(fd, "quit");

    assert_string_equal(it_str(m, "nick"), nick);
    if (reason != NULL && !it_one_of(reason, it_str(m, "reason")))
        fail_msg("quit reason \"%s\", expected \"%s\"",
            it_str(m, "reason"), reason);
    else if (it_has(m, "reason"))
        assert_true(cJSON_IsString(it_get(m, "reason")));
    assert_true(it_ts_ok(m));
    return m;
}

/* Expects the next message to be `message` {room, from, text}. */
static const cJSON *
expect_message(int fd, const char *room, const char *from, const char *text)
{
    const cJSON *m = it_expect_type(fd, "message");

    if (room != NULL && g_ascii_strcasecmp(it_str(m, "room"), room) != 0)
        fail_msg("expected message in %s, got %s", room, it_json(m));
    assert_string_equal(it_str(m, "from"), from);
    assert_string_equal(it_str(m, "text"), text);
    assert_true(it_ts_ok(m));
    return m;
}

/* ------------------------------------------------------------ hello */

static void
test_proto_hello_welcome_fields(void **state)
{
    const char *nick = it_uniq("hw");
    const cJSON *w, *l, *r;
    int fd;

    (void)state;
    fd = it_connect(shared);
    assert_true(fd >= 0);
    assert_int_equal(it_send_json(fd, "{\"type\":\"hello\",\"version\":1,"
        "\"nick\":\"%s\",\"client\":\"it_proto/1\",\"id\":5}", nick), 0);
    w = it_expect_type(fd, "welcome");
    assert_int_equal(it_int(w, "version"), 1);
    assert_string_equal(it_str(w, "nick"), nick);
    assert_string_equal(it_str(w, "server"), "sockchat");
    assert_int_equal(it_int(w, "id"), 5);
    /* motd is left out when empty */
    if (it_has(w, "motd"))
        assert_true(cJSON_IsString(it_get(w, "motd")) &&
            it_str(w, "motd")[0] != '\0');
    l = limits_of(w);
    assert_int_equal(it_int(l, "max_frame"), 65536);
    assert_int_equal(it_int(l, "max_text"), 4096);
    assert_int_equal(it_int(l, "max_rooms"), 32);
    assert_int_equal(it_int(l, "max_queue"), 1048576);
    r = it_get(l, "rate");
    assert_true(cJSON_IsObject(r));
    assert_int_equal(it_int(r, "per_sec"), 10);
    assert_int_equal(it_int(r, "burst"), 20);
    assert_true(cJSON_IsArray(it_get(w, "features")));
    it_set_nick(fd, nick);
    it_ping(fd);
}

static void
test_proto_before_welcome(void **state)
{
    const cJSON *m;
    int fd, q;

    (void)state;
    fd = it_connect(shared);
    assert_true(fd >= 0);
    /* ping and pong are accepted before hello */
    assert_int_equal(it_send_json(fd, "{\"type\":\"ping\",\"token\":\"pre\"}"),
        0);
    m = it_expect_type(fd, "pong");
    assert_string_equal(it_str(m, "token"), "pre");
    assert_int_equal(it_send_json(fd, "{\"type\":\"pong\",\"token\":\"x\"}"),
        0);
    it_expect_silence(fd, 200);
    /* a known type gets not_registered, an unknown one unknown_type */
    assert_int_equal(it_send_json(fd, "{\"type\":\"join\",\"room\":\"#pre\","
        "\"id\":3}"), 0);
    m = it_expect_error(fd, "not_registered");
    assert_int_equal(it_int(m, "id"), 3);
    assert_int_equal(it_send_json(fd, "{\"type\":\"say\",\"room\":\"#pre\","
        "\"text\":\"x\"}"), 0);
    it_expect_error(fd, "not_registered");
    assert_int_equal(it_send_json(fd, "{\"type\":\"list\"}"), 0);
    it_expect_error(fd, "not_registered");
    assert_int_equal(it_send_json(fd, "{\"type\":\"frobnicate\"}"), 0);
    it_expect_error(fd, "unknown_type");
    /* the session went on */
    it_hello(fd, it_uniq("bw"));
    it_ping(fd);

    /* quit before hello: bye and close */
    q = it_connect(shared);
    assert_true(q >= 0);
    assert_int_equal(it_send_json(q, "{\"type\":\"quit\"}"), 0);
    it_expect_type(q, "bye");
    it_expect_closed(q);
}

static void
test_proto_hello_nick_in_use_then_retry(void **state)
{
    const char *nick = it_uniq("NickCase");
    const char *up = upper(nick), *low = lower(nick);
    int a, b;

    (void)state;
    a = it_register(shared, nick);
    b = it_connect(shared);
    assert_true(b >= 0);
    assert_int_equal(it_send_json(b, "{\"type\":\"hello\",\"version\":1,"
        "\"nick\":\"%s\",\"id\":\"h\"}", low), 0);
    assert_string_equal(it_str(it_expect_error(b, "nick_in_use"), "id"), "h");
    assert_int_equal(it_send_json(b, "{\"type\":\"hello\",\"version\":1,"
        "\"nick\":\"%s\"}", up), 0);
    it_expect_error(b, "nick_in_use");
    /* not registered yet, so not already_registered: retry works */
    it_hello(b, it_uniq("retry"));
    it_ping(a);
    it_ping(b);
}

/* ------------------------------------------------------------- join */

static void
test_proto_join_room_reply_and_joined(void **state)
{
    const char *room = it_uniq("#join");
    const cJSON *r, *mr = NULL, *mj = NULL;
    int a, b, c;

    (void)state;
    a = it_register(shared, it_uniq("ja"));
    r = it_join(a, room);
    assert_true(cJSON_IsString(it_get(r, "topic")));
    assert_true(cJSON_IsArray(it_get(r, "members")));
    assert_int_equal(cJSON_GetArraySize(it_get(r, "members")), 1);
    assert_true(it_array_has(it_get(r, "members"), it_nick(a), false));
    assert_true(cJSON_IsArray(it_get(r, "history")));
    assert_int_equal(cJSON_GetArraySize(it_get(r, "history")), 0);

    b = it_register(shared, it_uniq("jb"));
    r = it_join(b, room);
    assert_int_equal(cJSON_GetArraySize(it_get(r, "members")), 2);
    assert_true(it_array_has(it_get(r, "members"), it_nick(a), false));
    assert_true(it_array_has(it_get(r, "members"), it_nick(b), false));
    it_expect_joined(a, room, it_nick(b));

    /* the id goes into the room reply */
    c = it_register(shared, it_uniq("jc"));
    assert_int_equal(it_send_json(c, "{\"type\":\"join\",\"room\":\"%s\","
        "\"id\":\"j-1\"}", room), 0);
    it_expect_pair(c, "room", &mr, "joined", &mj);
    assert_string_equal(it_str(mr, "id"), "j-1");
    assert_string_equal(it_str(mj, "nick"), it_nick(c));
    it_expect_joined(a, room, it_nick(c));
    it_expect_joined(b, room, it_nick(c));

    /* joining again: room again, no joined to anyone */
    assert_int_equal(it_send_json(b, "{\"type\":\"join\",\"room\":\"%s\"}",
        room), 0);
    r = it_expect_type(b, "room");
    assert_int_equal(cJSON_GetArraySize(it_get(r, "members")), 3);
    it_expect_silence(b, 200);
    it_expect_silence(a, 10);
    it_expect_silence(c, 10);
}

/* ------------------------------------------------------------ leave */

static void
test_proto_leave_ok_and_left(void **state)
{
    const char *room = it_uniq("#leave");
    const cJSON *ok = NULL, *left = NULL, *m;
    int a, b;

    (void)state;
    a = it_register(shared, it_uniq("la"));
    b = it_register(shared, it_uniq("lb"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));

    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\","
        "\"reason\":\"bye all\",\"id\":9}", room), 0);
    it_expect_pair(a, "ok", &ok, "left", &left);
    assert_int_equal(it_int(ok, "id"), 9);
    assert_string_equal(it_str(left, "nick"), it_nick(a));
    assert_string_equal(it_str(left, "reason"), "bye all");
    assert_true(it_ts_ok(left));
    m = it_expect_type(b, "left");
    assert_true(g_ascii_strcasecmp(it_str(m, "room"), room) == 0);
    assert_string_equal(it_str(m, "nick"), it_nick(a));
    assert_string_equal(it_str(m, "reason"), "bye all");
    assert_true(it_ts_ok(m));

    /* no longer in the room */
    assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"ghost\"}", room), 0);
    it_expect_error(a, "not_in_room");
    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\"}",
        room), 0);
    it_expect_error(a, "not_in_room");
    assert_int_equal(it_send_json(a, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"t\"}", room), 0);
    it_expect_error(a, "not_in_room");
    it_expect_silence(b, 100);
    assert_int_equal(it_send_json(b, "{\"type\":\"who\",\"room\":\"%s\"}",
        room), 0);
    m = it_expect_type(b, "members");
    assert_int_equal(cJSON_GetArraySize(it_get(m, "members")), 1);
    assert_true(it_array_has(it_get(m, "members"), it_nick(b), false));
}

/* -------------------------------------------------------------- say */

static void
test_proto_say_message_and_seq(void **state)
{
    const char *r1 = it_uniq("#say"), *r2 = it_uniq("#say");
    const cJSON *m;
    int a, b;

    (void)state;
    a = it_register(shared, it_uniq("sa"));
    b = it_register(shared, it_uniq("sb"));
    it_join(a, r1);
    it_join(b, r1);
    it_expect_joined(a, r1, it_nick(b));

    m = it_say(a, r1, "one");
    assert_int_equal(it_int(m, "seq"), 1);
    assert_true(it_ts_ok(m));
    m = expect_message(b, r1, it_nick(a), "one");
    assert_int_equal(it_int(m, "seq"), 1);

    /* the id is in the sender's copy (the reply), not in the others' */
    assert_int_equal(it_send_json(b, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"two\",\"id\":77}", r1), 0);
    m = expect_message(b, r1, it_nick(b), "two");
    assert_int_equal(it_int(m, "seq"), 2);
    assert_int_equal(it_int(m, "id"), 77);
    m = expect_message(a, r1, it_nick(b), "two");
    assert_int_equal(it_int(m, "seq"), 2);
    assert_false(it_has(m, "id"));

    m = it_say(a, r1, "three");
    assert_int_equal(it_int(m, "seq"), 3);
    m = expect_message(b, r1, it_nick(a), "three");
    assert_int_equal(it_int(m, "seq"), 3);

    /* seq counts per room */
    it_join(a, r2);
    m = it_say(a, r2, "other room");
    assert_int_equal(it_int(m, "seq"), 1);
    it_expect_silence(b, 100);
}

static void
test_proto_say_action(void **state)
{
    const char *room = it_uniq("#act");
    const cJSON *m;
    int a, b;

    (void)state;
    a = it_register(shared, it_uniq("aa"));
    b = it_register(shared, it_uniq("ab"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));
    assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"waves\",\"action\":true}", room), 0);
    m = expect_message(a, room, it_nick(a), "waves");
    assert_true(it_true(m, "action"));
    m = expect_message(b, room, it_nick(a), "waves");
    assert_true(it_true(m, "action"));
    assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"plain\",\"action\":false}", room), 0);
    m = expect_message(a, room, it_nick(a), "plain");
    assert_false(it_true(m, "action"));
    m = expect_message(b, room, it_nick(a), "plain");
    assert_false(it_true(m, "action"));
}

static void
test_proto_text_limits(void **state)
{
    const char *room = it_uniq("#txt");
    const char *t4096 = it_own(g_strnfill(4096, 'x'));
    const char *t4097 = it_own(g_strnfill(4097, 'x'));
    GString *e2048 = it_defer(free_gstring, g_string_new(NULL));
    int a, b, i;

    (void)state;
    for (i = 0; i < 2048; i++)
        g_string_append(e2048, "\xc3\xa9");     /* 4096 bytes of U+00E9 */
    a = it_register(shared, it_uniq("ta"));
    b = it_register(shared, it_uniq("tb"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));
    it_say(a, room, t4096);
    expect_message(b, room, it_nick(a), t4096);
    it_say(a, room, e2048->str);
    expect_message(b, room, it_nick(a), e2048->str);
    it_say(a, room, "tab\tis fine");
    expect_message(b, room, it_nick(a), "tab\tis fine");
    assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"%s\",\"id\":1}", room, t4097), 0);
    assert_int_equal(it_int(it_expect_error(a, "text_too_long"), "id"), 1);
    assert_int_equal(it_send_json(a, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"%s\"}", it_nick(b), t4097), 0);
    it_expect_error(a, "text_too_long");
    it_expect_silence(b, 100);
}

/* -------------------------------------------------------------- msg */

static void
test_proto_msg_private(void **state)
{
    const char *room = it_uniq("#msg");
    const cJSON *m;
    const char *ub;
    int a, b, c;

    (void)state;
    a = it_register(shared, it_uniq("ma"));
    b = it_register(shared, it_uniq("mb"));
    c = it_register(shared, it_uniq("mc"));
    it_join(a, room);
    it_join(c, room);
    it_expect_joined(a, room, it_nick(c));

    assert_int_equal(it_send_json(a, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"psst\",\"id\":4}", it_nick(b)), 0);
    m = it_expect_type(a, "message");
    assert_string_equal(it_str(m, "from"), it_nick(a));
    assert_string_equal(it_str(m, "to"), it_nick(b));
    assert_string_equal(it_str(m, "text"), "psst");
    assert_int_equal(it_int(m, "id"), 4);
    m = it_expect_type(b, "message");
    assert_string_equal(it_str(m, "from"), it_nick(a));
    assert_string_equal(it_str(m, "to"), it_nick(b));
    assert_string_equal(it_str(m, "text"), "psst");
    assert_true(it_ts_ok(m));
    assert_false(it_has(m, "room"));
    assert_false(it_has(m, "id"));
    it_expect_silence(c, 100);

    /* a msg to yourself arrives once */
    assert_int_equal(it_send_json(a, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"note to self\"}", it_nick(a)), 0);
    m = it_expect_type(a, "message");
    assert_string_equal(it_str(m, "text"), "note to self");
    it_expect_silence(a, 200);

    /* nicks are case-insensitive as targets too */
    ub = upper(it_nick(b));
    assert_int_equal(it_send_json(a, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"loud\"}", ub), 0);
    m = it_expect_type(a, "message");
    assert_string_equal(it_str(m, "text"), "loud");
    m = it_expect_type(b, "message");
    assert_string_equal(it_str(m, "text"), "loud");

    assert_int_equal(it_send_json(a, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"x\",\"id\":5}", it_uniq("nobody")), 0);
    assert_int_equal(it_int(it_expect_error(a, "no_such_nick"), "id"), 5);
    assert_int_equal(it_send_json(a, "{\"type\":\"msg\",\"to\":\"bad nick!\","
        "\"text\":\"x\"}"), 0);
    it_expect_error(a, "bad_nick");
    it_expect_silence(b, 50);
    it_expect_silence(c, 10);
}

/* ------------------------------------------------------------- nick */

static void
test_proto_nick_rename(void **state)
{
    const char *r1 = it_uniq("#nk"), *r2 = it_uniq("#nk"),
        *r3 = it_uniq("#nk");
    const char *old = it_uniq("na"), *nw = it_uniq("nz");
    const char *oldc = it_own(g_strdup(old)), *nwc = it_own(g_strdup(nw));
    const char *nwup = upper(nw), *bup;
    const cJSON *m;
    int a, b, c, d;

    (void)state;
    a = it_register(shared, old);
    b = it_register(shared, it_uniq("nb"));
    c = it_register(shared, it_uniq("nc"));
    it_join(a, r1);
    it_join(a, r2);
    it_join(b, r1);
    it_expect_joined(a, r1, it_nick(b));
    it_join(b, r2);
    it_expect_joined(a, r2, it_nick(b));
    it_join(c, r3);

    assert_int_equal(it_send_json(a, "{\"type\":\"nick\",\"nick\":\"%s\","
        "\"id\":12}", nwc), 0);
    m = it_expect_type(a, "renamed");
    assert_string_equal(it_str(m, "old"), oldc);
    assert_string_equal(it_str(m, "new"), nwc);
    assert_int_equal(it_int(m, "id"), 12);
    assert_true(it_ts_ok(m));
    it_set_nick(a, nwc);
    /* two shared rooms, one event */
    m = it_expect_type(b, "renamed");
    assert_string_equal(it_str(m, "old"), oldc);
    assert_string_equal(it_str(m, "new"), nwc);
    it_expect_silence(b, 200);
    it_expect_silence(a, 10);
    it_expect_silence(c, 10);
    it_say(a, r1, "under my new name");
    expect_message(b, r1, nwc, "under my new name");

    /* the old nick is free again */
    d = it_register(shared, oldc);
    it_close(d);

    /* case-only rename of yourself is allowed */
    assert_int_equal(it_send_json(a, "{\"type\":\"nick\",\"nick\":\"%s\"}",
        nwup), 0);
    m = it_expect_type(a, "renamed");
    assert_string_equal(it_str(m, "new"), nwup);
    it_set_nick(a, nwup);
    m = it_expect_type(b, "renamed");
    assert_string_equal(it_str(m, "new"), nwup);

    /* another's nick in another case is taken */
    bup = upper(it_nick(b));
    assert_int_equal(it_send_json(a, "{\"type\":\"nick\",\"nick\":\"%s\"}",
        bup), 0);
    it_expect_error(a, "nick_in_use");
    assert_int_equal(it_send_json(a, "{\"type\":\"nick\",\"nick\":\"no way\"}"),
        0);
    it_expect_error(a, "bad_nick");
    it_expect_silence(b, 100);
}

/* ------------------------------------------------------------ topic */

static void
test_proto_topic(void **state)
{
    const char *room = it_uniq("#top");
    const char *t256 = it_own(g_strnfill(256, 't'));
    const char *t257 = it_own(g_strnfill(257, 't'));
    const cJSON *m, *r;
    int a, b, c;

    (void)state;
    a = it_register(shared, it_uniq("pa"));
    b = it_register(shared, it_uniq("pb"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));

    assert_int_equal(it_send_json(a, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"hello world\",\"id\":3}", room), 0);
    m = it_expect_type(a, "topic");
    assert_string_equal(it_str(m, "topic"), "hello world");
    assert_string_equal(it_str(m, "by"), it_nick(a));
    assert_true(g_ascii_strcasecmp(it_str(m, "room"), room) == 0);
    assert_int_equal(it_int(m, "id"), 3);
    assert_true(it_ts_ok(m));
    m = it_expect_type(b, "topic");
    assert_string_equal(it_str(m, "topic"), "hello world");
    assert_string_equal(it_str(m, "by"), it_nick(a));
    assert_false(it_has(m, "id"));

    assert_int_equal(it_send_json(b, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"%s\"}", room, t256), 0);
    assert_string_equal(it_str(it_expect_type(b, "topic"), "topic"), t256);
    assert_string_equal(it_str(it_expect_type(a, "topic"), "topic"), t256);
    assert_int_equal(it_send_json(b, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"%s\"}", room, t257), 0);
    it_expect_error(b, "text_too_long");
    it_expect_silence(a, 100);
    /* 0 bytes is a valid topic */
    assert_int_equal(it_send_json(a, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"\"}", room), 0);
    assert_string_equal(it_str(it_expect_type(a, "topic"), "topic"), "");
    assert_string_equal(it_str(it_expect_type(b, "topic"), "topic"), "");
    assert_int_equal(it_send_json(a, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"final\"}", room), 0);
    it_expect_type(a, "topic");
    it_expect_type(b, "topic");
    /* a joiner sees it; a non-member cannot set it */
    c = it_register(shared, it_uniq("pc"));
    assert_int_equal(it_send_json(c, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"mine\"}", room), 0);
    it_expect_error(c, "not_in_room");
    r = it_join(c, room);
    assert_string_equal(it_str(r, "topic"), "final");
}

/* ------------------------------------------------------- list and who */

static const cJSON *
find_room(const cJSON *rooms, const char *room)
{
    const cJSON *e;

    cJSON_ArrayForEach(e, rooms) {
        if (g_ascii_strcasecmp(it_str(e, "room"), room) == 0)
            return e;
    }
    return NULL;
}

static void
test_proto_list(void **state)
{
    const char *ra = it_uniq("#lsa"), *rb = it_uniq("#lsb"),
        *rc = it_uniq("#lsc");
    const cJSON *m, *rooms, *e;
    int a, b, c;

    (void)state;
    a = it_register(shared, it_uniq("xa"));
    b = it_register(shared, it_uniq("xb"));
    c = it_register(shared, it_uniq("xc"));
    it_join(a, ra);
    it_join(a, rb);
    it_join(b, ra);
    it_expect_joined(a, ra, it_nick(b));
    it_join(c, rc);
    assert_int_equal(it_send_json(c, "{\"type\":\"leave\",\"room\":\"%s\"}",
        rc), 0);
    it_expect_pair(c, "ok", &m, "left", &e);

    assert_int_equal(it_send_json(c, "{\"type\":\"list\",\"id\":8}"), 0);
    m = it_expect_type(c, "rooms");
    assert_int_equal(it_int(m, "id"), 8);
    rooms = it_get(m, "rooms");
    assert_true(cJSON_IsArray(rooms));
    e = find_room(rooms, ra);
    if (e == NULL)
        fail_msg("%s missing from %s", ra, it_json(m));
    assert_int_equal(it_int(e, "members"), 2);
    assert_true(cJSON_IsString(it_get(e, "topic")));
    e = find_room(rooms, rb);
    if (e == NULL)
        fail_msg("%s missing from %s", rb, it_json(m));
    assert_int_equal(it_int(e, "members"), 1);
    if (find_room(rooms, rc) != NULL)
        fail_msg("empty room %s is listed: %s", rc, it_json(m));
    it_expect_silence(a, 10);
}

static void
test_proto_who(void **state)
{
    const char *room = it_uniq("#who");
    const cJSON *m;
    int a, b, c;

    (void)state;
    a = it_register(shared, it_uniq("wa"));
    b = it_register(shared, it_uniq("wb"));
    c = it_register(shared, it_uniq("wc"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));
    /* a member */
    assert_int_equal(it_send_json(a, "{\"type\":\"who\",\"room\":\"%s\","
        "\"id\":2}", room), 0);
    m = it_expect_type(a, "members");
    assert_int_equal(it_int(m, "id"), 2);
    assert_true(g_ascii_strcasecmp(it_str(m, "room"), room) == 0);
    assert_int_equal(cJSON_GetArraySize(it_get(m, "members")), 2);
    assert_true(it_array_has(it_get(m, "members"), it_nick(a), false));
    assert_true(it_array_has(it_get(m, "members"), it_nick(b), false));
    /* not a member */
    assert_int_equal(it_send_json(c, "{\"type\":\"who\",\"room\":\"%s\"}",
        room), 0);
    m = it_expect_type(c, "members");
    assert_int_equal(cJSON_GetArraySize(it_get(m, "members")), 2);
    /* no such room, bad room */
    assert_int_equal(it_send_json(c, "{\"type\":\"who\",\"room\":\"%s\"}",
        it_uniq("#nosuch")), 0);
    it_expect_error(c, "no_such_room");
    assert_int_equal(it_send_json(c, "{\"type\":\"who\",\"room\":\"nohash\"}"),
        0);
    it_expect_error(c, "bad_room");
}

/* ------------------------------------------------------- ping and id */

static void
test_proto_ping_pong(void **state)
{
    const cJSON *m;
    int a;

    (void)state;
    a = it_register(shared, it_uniq("pp"));
    assert_int_equal(it_send_json(a, "{\"type\":\"ping\",\"token\":\"abc\","
        "\"id\":1}"), 0);
    m = it_expect_type(a, "pong");
    assert_string_equal(it_str(m, "token"), "abc");
    assert_int_equal(it_int(m, "id"), 1);
    assert_int_equal(it_send_json(a, "{\"type\":\"ping\"}"), 0);
    m = it_expect_type(a, "pong");
    assert_false(it_has(m, "token"));
    /* unknown fields are ignored */
    assert_int_equal(it_send_json(a, "{\"type\":\"ping\",\"token\":\"u\","
        "\"extra\":{\"x\":[1,2,null]},\"more\":true}"), 0);
    assert_string_equal(it_str(it_expect_type(a, "pong"), "token"), "u");
    /* a pong from a client is accepted and never answered */
    assert_int_equal(it_send_json(a, "{\"type\":\"pong\",\"token\":\"z\"}"),
        0);
    it_expect_silence(a, 200);
}

static void
test_proto_id_echo(void **state)
{
    const char *room = it_uniq("#id");
    const char *id64 = it_own(g_strnfill(64, 'i'));
    const cJSON *m, *ok = NULL, *left = NULL;
    int a;

    (void)state;
    a = it_register(shared, it_uniq("id"));
    it_join(a, room);
    assert_int_equal(it_send_json(a, "{\"type\":\"who\",\"room\":\"%s\","
        "\"id\":42}", room), 0);
    assert_int_equal(it_int(it_expect_type(a, "members"), "id"), 42);
    assert_int_equal(it_send_json(a, "{\"type\":\"who\",\"room\":\"%s\","
        "\"id\":0}", room), 0);
    assert_int_equal(it_int(it_expect_type(a, "members"), "id"), 0);
    assert_int_equal(it_send_json(a, "{\"type\":\"who\",\"room\":\"%s\","
        "\"id\":9007199254740991}", room), 0);
    assert_int_equal(it_int(it_expect_type(a, "members"), "id"),
        9007199254740991LL);
    assert_int_equal(it_send_json(a, "{\"type\":\"who\",\"room\":\"%s\","
        "\"id\":\"%s\"}", room, id64), 0);
    assert_string_equal(it_str(it_expect_type(a, "members"), "id"), id64);
    assert_int_equal(it_send_json(a, "{\"type\":\"ping\",\"id\":\"p\"}"), 0);
    assert_string_equal(it_str(it_expect_type(a, "pong"), "id"), "p");
    /* errors carry the id, and name the request when they say */
    assert_int_equal(it_send_json(a, "{\"type\":\"who\",\"room\":\"%s\","
        "\"id\":\"req-1\"}", it_uniq("#nosuch")), 0);
    m = it_expect_error(a, "no_such_room");
    assert_string_equal(it_str(m, "id"), "req-1");
    if (it_has(m, "request"))
        assert_string_equal(it_str(m, "request"), "who");
    /* ok carries it */
    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\","
        "\"id\":\"lv\"}", room), 0);
    it_expect_pair(a, "ok", &ok, "left", &left);
    assert_string_equal(it_str(ok, "id"), "lv");
}

/* ------------------------------------------------------ quit and close */

static void
test_proto_quit(void **state)
{
    const char *r1 = it_uniq("#q"), *r2 = it_uniq("#q"), *r3 = it_uniq("#q");
    const cJSON *m;
    const char *an;
    int a, b, c;

    (void)state;
    a = it_register(shared, it_uniq("qa"));
    b = it_register(shared, it_uniq("qb"));
    c = it_register(shared, it_uniq("qc"));
    it_join(a, r1);
    it_join(a, r2);
    it_join(b, r1);
    it_expect_joined(a, r1, it_nick(b));
    it_join(b, r2);
    it_expect_joined(a, r2, it_nick(b));
    it_join(c, r3);
    an = it_own(g_strdup(it_nick(a)));
    assert_int_equal(it_send_json(a, "{\"type\":\"quit\",\"reason\":"
        "\"gone fishing\"}"), 0);
    m = it_expect_type(a, "bye");
    (void)m;
    it_expect_closed(a);
    /* two shared rooms, one quit */
    expect_quit(b, an, "gone fishing");
    it_expect_silence(b, 200);
    it_expect_silence(c, 10);
    /* the room goes on without a */
    assert_int_equal(it_send_json(b, "{\"type\":\"who\",\"room\":\"%s\"}",
        r1), 0);
    m = it_expect_type(b, "members");
    assert_false(it_array_has(it_get(m, "members"), an, true));
}

static void
test_proto_abrupt_close_and_reset(void **state)
{
    const char *room = it_uniq("#abr");
    const char *an, *bn;
    int a, b, c;

    (void)state;
    a = it_register(shared, it_uniq("ca"));
    b = it_register(shared, it_uniq("cb"));
    c = it_register(shared, it_uniq("cc"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));
    it_join(c, room);
    it_expect_joined(a, room, it_nick(c));
    it_expect_joined(b, room, it_nick(c));
    an = it_own(g_strdup(it_nick(a)));
    bn = it_own(g_strdup(it_nick(b)));
    it_close(a);
    expect_quit(b, an, "connection closed");
    expect_quit(c, an, "connection closed");
    it_reset(b);
    /* a reset on tcp and udp; unix has none: an orderly close */
    expect_quit(c, bn, IT_REASON_RESET);
    it_ping(c);
}

/* ------------------------------------------------ history and names */

static void
test_proto_history_on_rejoin(void **state)
{
    const char *room = it_uniq("#hist");
    const cJSON *r, *h, *m, *ok = NULL, *left = NULL;
    const char *an;
    int a, b;

    (void)state;
    a = it_register(shared, it_uniq("ha"));
    an = it_own(g_strdup(it_nick(a)));
    it_join(a, room);
    it_say(a, room, "h1");
    it_say(a, room, "h2");
    assert_int_equal(it_send_json(a, "{\"type\":\"topic\",\"room\":\"%s\","
        "\"topic\":\"kept topic\"}", room), 0);
    it_expect_type(a, "topic");
    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\"}",
        room), 0);
    it_expect_pair(a, "ok", &ok, "left", &left);
    /* empty now: not listed, but who still knows it */
    assert_int_equal(it_send_json(a, "{\"type\":\"list\"}"), 0);
    m = it_expect_type(a, "rooms");
    if (find_room(it_get(m, "rooms"), room) != NULL)
        fail_msg("empty room %s is listed: %s", room, it_json(m));

    b = it_register(shared, it_uniq("hb"));
    r = it_join(b, room);
    assert_string_equal(it_str(r, "topic"), "kept topic");
    assert_int_equal(cJSON_GetArraySize(it_get(r, "members")), 1);
    h = it_get(r, "history");
    assert_true(cJSON_IsArray(h));
    assert_int_equal(cJSON_GetArraySize(h), 2);
    assert_string_equal(it_str(cJSON_GetArrayItem(h, 0), "text"), "h1");
    assert_string_equal(it_str(cJSON_GetArrayItem(h, 0), "from"), an);
    assert_int_equal(it_int(cJSON_GetArrayItem(h, 0), "seq"), 1);
    assert_string_equal(it_str(cJSON_GetArrayItem(h, 1), "text"), "h2");
    assert_int_equal(it_int(cJSON_GetArrayItem(h, 1), "seq"), 2);
    assert_true(it_ts_ok(cJSON_GetArrayItem(h, 1)));
    /* seq continues */
    m = it_say(b, room, "h3");
    assert_int_equal(it_int(m, "seq"), 3);
}

static void
test_proto_case_insensitive_names(void **state)
{
    const char *room = it_uniq("#CaseRoom");
    const char *lroom = lower(room), *uroom = upper(room), *lnick;
    const cJSON *r, *m;
    int a, b, x;

    (void)state;
    a = it_register(shared, it_uniq("CaseNick"));
    b = it_register(shared, it_uniq("cb"));
    it_join(a, room);
    r = it_join(b, lroom);
    assert_int_equal(cJSON_GetArraySize(it_get(r, "members")), 2);
    assert_true(it_array_has(it_get(r, "members"), it_nick(a), false));
    it_expect_joined(a, room, it_nick(b));
    it_say(b, lroom, "same room?");
    expect_message(a, room, it_nick(b), "same room?");
    assert_int_equal(it_send_json(a, "{\"type\":\"who\",\"room\":\"%s\"}",
        uroom), 0);
    m = it_expect_type(a, "members");
    assert_int_equal(cJSON_GetArraySize(it_get(m, "members")), 2);
    assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"upper\"}", uroom), 0);
    m = expect_message(a, room, it_nick(a), "upper");
    m = expect_message(b, room, it_nick(a), "upper");

    /* nicks: unique ignoring case */
    lnick = lower(it_nick(a));
    x = it_connect(shared);
    assert_true(x >= 0);
    assert_int_equal(it_send_json(x, "{\"type\":\"hello\",\"version\":1,"
        "\"nick\":\"%s\"}", lnick), 0);
    it_expect_error(x, "nick_in_use");
    assert_int_equal(it_send_json(b, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"found you\"}", lnick), 0);
    it_expect_type(b, "message");
    m = it_expect_type(a, "message");
    assert_string_equal(it_str(m, "text"), "found you");
}

/* ------------------------------------------------------- own servers */

struct rec {
    char from[32];
    char text[32];
    int64_t seq;
};

static GArray *
collect_messages(int fd, int n)
{
    GArray *v = it_defer((GDestroyNotify)g_array_unref,
        g_array_new(FALSE, TRUE, sizeof(struct rec)));
    int i;

    for (i = 0; i < n; i++) {
        const cJSON *m = it_expect_type(fd, "message");
        struct rec r;

        memset(&r, 0, sizeof(r));
        g_strlcpy(r.from, it_str(m, "from"), sizeof(r.from));
        g_strlcpy(r.text, it_str(m, "text"), sizeof(r.text));
        r.seq = it_int(m, "seq");
        g_array_append_val(v, r);
    }
    return v;
}

static void
test_proto_ordering(void **state)
{
    enum { N = 100 };
    struct it_server *s = start_or_fail("--rate 0");
    const char *room = it_uniq("#ord");
    GArray *va, *vb, *vc;
    int a, b, c, i, na = 0, nb = 0;

    (void)state;
    a = it_register(s, it_uniq("oa"));
    b = it_register(s, it_uniq("ob"));
    c = it_register(s, it_uniq("oc"));
    it_join(a, room);
    it_join(b, room);
    it_expect_joined(a, room, it_nick(b));
    it_join(c, room);
    it_expect_joined(a, room, it_nick(c));
    it_expect_joined(b, room, it_nick(c));
    for (i = 0; i < N; i++) {
        assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
            "\"text\":\"a-%03d\"}", room, i), 0);
        assert_int_equal(it_send_json(b, "{\"type\":\"say\",\"room\":\"%s\","
            "\"text\":\"b-%03d\"}", room, i), 0);
    }
    vc = collect_messages(c, 2 * N);
    va = collect_messages(a, 2 * N);
    vb = collect_messages(b, 2 * N);
    for (i = 0; i < 2 * N; i++) {
        struct rec *rc = &g_array_index(vc, struct rec, i);
        struct rec *ra = &g_array_index(va, struct rec, i);
        struct rec *rb = &g_array_index(vb, struct rec, i);
        char want[16];

        if (rc->seq != i + 1)
            fail_msg("message %d at the observer has seq %lld, expected %d",
                i, (long long)rc->seq, i + 1);
        if (strcmp(rc->from, it_nick(a)) == 0)
            g_snprintf(want, sizeof(want), "a-%03d", na++);
        else
            g_snprintf(want, sizeof(want), "b-%03d", nb++);
        if (strcmp(rc->text, want) != 0)
            fail_msg("sender order broken at %d: %s from %s, expected %s",
                i, rc->text, rc->from, want);
        if (ra->seq != rc->seq || strcmp(ra->text, rc->text) != 0 ||
            rb->seq != rc->seq || strcmp(rb->text, rc->text) != 0)
            fail_msg("order differs at %d: observer %s/%lld, a %s/%lld, "
                "b %s/%lld", i, rc->text, (long long)rc->seq, ra->text,
                (long long)ra->seq, rb->text, (long long)rb->seq);
    }
    assert_int_equal(na, N);
    assert_int_equal(nb, N);
    stop_ok(s);
}

static void
test_proto_history_limit(void **state)
{
    struct it_server *s = start_or_fail("--history 3");
    const char *room = it_uniq("#hl");
    const cJSON *r, *h;
    char text[16];
    int a, b, i;

    (void)state;
    a = it_register(s, it_uniq("la"));
    it_join(a, room);
    for (i = 1; i <= 5; i++) {
        g_snprintf(text, sizeof(text), "m%d", i);
        it_say(a, room, text);
    }
    b = it_register(s, it_uniq("lb"));
    r = it_join(b, room);
    h = it_get(r, "history");
    assert_int_equal(cJSON_GetArraySize(h), 3);
    for (i = 0; i < 3; i++) {
        g_snprintf(text, sizeof(text), "m%d", i + 3);
        assert_string_equal(it_str(cJSON_GetArrayItem(h, i), "text"), text);
        assert_int_equal(it_int(cJSON_GetArrayItem(h, i), "seq"), i + 3);
    }
    stop_ok(s);
}

static void
test_proto_history_truncated_to_max_frame(void **state)
{
    struct it_server *s = start_or_fail("--max-frame 1024 --rate 0");
    const char *room = it_uniq("#tr");
    const cJSON *w, *r, *h;
    const char *text;
    int a, b, i, n;

    (void)state;
    a = it_register_welcome(s, it_uniq("ta"), &w);
    assert_int_equal(it_int(limits_of(w), "max_frame"), 1024);
    it_join(a, room);
    for (i = 1; i <= 30; i++) {
        text = it_own(g_strdup_printf("%03d%097d", i, 0));
        it_say(a, room, text);
    }
    /* the harness refuses any frame over 1024 bytes from this server */
    b = it_register(s, it_uniq("tb"));
    r = it_join(b, room);
    assert_true(it_true(r, "truncated"));
    h = it_get(r, "history");
    n = cJSON_GetArraySize(h);
    assert_true(n >= 1 && n < 30);
    for (i = 0; i < n; i++)
        assert_int_equal(it_int(cJSON_GetArrayItem(h, i), "seq"),
            30 - n + 1 + i);

    /* a rooms list that cannot fit is cut and says so */
    for (i = 0; i < 30; i++) {
        /* "#" and 32 name characters, unique by the counter in front */
        char *room32 = g_strdup_printf("#%s%03d%s", it_uniq("l"), i,
            "________________________________");

        room32[33] = '\0';
        it_join(b, it_own(room32));
    }
    assert_int_equal(it_send_json(b, "{\"type\":\"list\"}"), 0);
    r = it_expect_type(b, "rooms");
    assert_true(it_true(r, "truncated"));
    assert_true(cJSON_GetArraySize(it_get(r, "rooms")) >= 1);
    stop_ok(s);
}

static void
test_proto_room_cap_forgets_lru_empty_room(void **state)
{
    struct it_server *s = start_or_fail("--room-cap 2");
    const char *r1 = it_uniq("#cap"), *r2 = it_uniq("#cap"),
        *r3 = it_uniq("#cap"), *r4 = it_uniq("#cap");
    const cJSON *ok = NULL, *left = NULL, *r, *m;
    int a, b;

    (void)state;
    a = it_register(s, it_uniq("ka"));
    b = it_register(s, it_uniq("kb"));
    it_join(a, r1);
    it_say(a, r1, "remember me");
    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\"}",
        r1), 0);
    it_expect_pair(a, "ok", &ok, "left", &left);
    it_join(a, r2);
    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\"}",
        r2), 0);
    it_expect_pair(a, "ok", &ok, "left", &left);
    /* both empty and kept: who knows them */
    assert_int_equal(it_send_json(b, "{\"type\":\"who\",\"room\":\"%s\"}",
        r1), 0);
    m = it_expect_type(b, "members");
    assert_int_equal(cJSON_GetArraySize(it_get(m, "members")), 0);
    /* a third room forgets the least recently used empty one, r1 */
    it_join(a, r3);
    assert_int_equal(it_send_json(b, "{\"type\":\"who\",\"room\":\"%s\"}",
        r1), 0);
    it_expect_error(b, "no_such_room");
    assert_int_equal(it_send_json(b, "{\"type\":\"who\",\"room\":\"%s\"}",
        r2), 0);
    it_expect_type(b, "members");
    /* r2 and r3 both in use: no room can be made */
    it_join(b, r2);
    assert_int_equal(it_send_json(b, "{\"type\":\"join\",\"room\":\"%s\"}",
        r4), 0);
    it_expect_error(b, "too_many_rooms");
    /* r1 comes back new: no history, seq from 1 */
    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\"}",
        r3), 0);
    it_expect_pair(a, "ok", &ok, "left", &left);
    r = it_join(a, r1);
    assert_int_equal(cJSON_GetArraySize(it_get(r, "history")), 0);
    assert_int_equal(it_int(it_say(a, r1, "fresh"), "seq"), 1);
    stop_ok(s);
}

static void
test_proto_server_full(void **state)
{
    struct it_server *s = start_or_fail("--max-clients 2");
    int a, b, c, d;

    (void)state;
    a = it_register(s, it_uniq("fa"));
    b = it_register(s, it_uniq("fb"));
    c = it_connect(s);
    assert_true(c >= 0);
    (void)it_send_json(c, "{\"type\":\"hello\",\"version\":1,"
        "\"nick\":\"%s\"}", it_uniq("fc"));
    it_expect_error(c, "server_full");
    it_expect_closed(c);
    it_ping(a);
    assert_int_equal(it_send_json(a, "{\"type\":\"quit\"}"), 0);
    it_expect_type(a, "bye");
    it_expect_closed(a);
    it_pump(it_ms(100));
    d = it_register(s, it_uniq("fd"));
    it_ping(d);
    it_ping(b);
    stop_ok(s);
}

static void
test_proto_too_many_rooms(void **state)
{
    struct it_server *s = start_or_fail("--max-rooms 2");
    const char *r1 = it_uniq("#mr"), *r2 = it_uniq("#mr"),
        *r3 = it_uniq("#mr");
    const cJSON *w, *ok = NULL, *left = NULL;
    int a;

    (void)state;
    a = it_register_welcome(s, it_uniq("ra"), &w);
    assert_int_equal(it_int(limits_of(w), "max_rooms"), 2);
    it_join(a, r1);
    it_join(a, r2);
    assert_int_equal(it_send_json(a, "{\"type\":\"join\",\"room\":\"%s\","
        "\"id\":6}", r3), 0);
    assert_int_equal(it_int(it_expect_error(a, "too_many_rooms"), "id"), 6);
    /* joining a room you are in is not one more */
    assert_int_equal(it_send_json(a, "{\"type\":\"join\",\"room\":\"%s\"}",
        r2), 0);
    it_expect_type(a, "room");
    it_ping(a);
    assert_int_equal(it_send_json(a, "{\"type\":\"leave\",\"room\":\"%s\"}",
        r1), 0);
    it_expect_pair(a, "ok", &ok, "left", &left);
    it_join(a, r3);
    stop_ok(s);
}

static void
test_proto_rate_limited(void **state)
{
    enum { N = 12 };
    struct it_server *s = start_or_fail("--rate 2 --burst 5");
    const cJSON *w, *r;
    int a, i, limited = 0, answered = 0;

    (void)state;
    a = it_register_welcome(s, it_uniq("rl"), &w);
    r = it_get(limits_of(w), "rate");
    assert_int_equal(it_int(r, "per_sec"), 2);
    assert_int_equal(it_int(r, "burst"), 5);
    for (i = 1; i <= N; i++)
        assert_int_equal(it_send_json(a, "{\"type\":\"list\",\"id\":%d}", i),
            0);
    /* every request is answered, in order: rooms or rate_limited */
    for (i = 1; i <= N; i++) {
        enum it_rx why;
        cJSON *m = it_recv_msg(a, it_ms(5000), &why);

        if (m == NULL)
            fail_msg("request %d of %d unanswered (%d answered)", i, N,
                answered);
        it_keep(m);
        if (strcmp(it_str(m, "type"), "rooms") == 0) {
            answered++;
        } else if (strcmp(it_str(m, "type"), "error") == 0 &&
            strcmp(it_str(m, "code"), "rate_limited") == 0) {
            limited++;
        } else {
            fail_msg("unexpected reply %s", it_json(m));
        }
        assert_int_equal(it_int(m, "id"), i);
    }
    /* burst 5 (hello may have used one), refill 2/s: most are refused */
    assert_true(answered >= 3);
    assert_true(limited >= 3);
    /* ping is never limited; the session survives */
    for (i = 0; i < 10; i++)
        it_ping(a);
    it_pump(1600);
    assert_int_equal(it_send_json(a, "{\"type\":\"list\"}"), 0);
    it_expect_type(a, "rooms");
    stop_ok(s);
}

static void
test_proto_idle_ping_then_timeout(void **state)
{
    struct it_server *s = start_or_fail("--idle-timeout 1");
    const char *room = it_uniq("#idle");
    const cJSON *m;
    const char *an;
    int a, o, p;
    int64_t t0;

    (void)state;
    a = it_register(s, it_uniq("ia"));
    o = it_register(s, it_uniq("io"));
    p = it_register(s, it_uniq("ip"));
    it_set_autopong(a, false);
    an = it_own(g_strdup(it_nick(a)));
    it_join(a, room);
    it_join(o, room);
    it_expect_joined(a, room, it_nick(o));
    it_join(p, room);
    it_expect_joined(a, room, it_nick(p));
    it_expect_joined(o, room, it_nick(p));
    t0 = it_now_ms();
    m = it_expect_type_within(a, "ping", 3000);
    assert_true(it_has(m, "token"));
    it_expect_error_within(a, "timeout", 3000);
    it_expect_closed(a);
    assert_true(it_now_ms() - t0 >= 500);
    /* the others answered their pings (the harness does) and stay */
    expect_quit(o, an, "timeout");
    expect_quit(p, an, "timeout");
    it_pump(2500);
    it_ping(o);
    it_ping(p);
    stop_ok(s);
}

static void
test_proto_slow_consumer(void **state)
{
    /* the server wants max_queue >= max_frame + 4; 128 KiB is still small */
    struct it_server *s = start_or_fail("--max-queue 131072 --rate 0");
    const char *room = it_uniq("#slow");
    const cJSON *w, *q;
    const char *vn;
    int f, o, v, i;
    bool closed = false;

    (void)state;
    f = it_register_welcome(s, it_uniq("sf"), &w);
    assert_int_equal(it_int(limits_of(w), "max_queue"), 131072);
    o = it_register(s, it_uniq("so"));
    v = it_connect_rcvbuf(s, 4096);
    assert_true(v >= 0);
    it_hello(v, it_uniq("sv"));
    vn = it_own(g_strdup(it_nick(v)));
    it_join(f, room);
    it_join(o, room);
    it_expect_joined(f, room, it_nick(o));
    it_join(v, room);
    it_expect_joined(f, room, vn);
    it_expect_joined(o, room, vn);
    it_set_passive(v, true);            /* never reads from now on */

    q = it_flood_until_quit(f, o, room, vn);
    assert_string_equal(it_str(q, "reason"), "slow consumer");
    it_say(f, room, "still here");
    expect_message(o, room, it_nick(f), "still here");

    /* the victim gets what fitted, slow_consumer at best, then a close */
    it_set_passive(v, false);
    for (i = 0; i < 100000 && !closed; i++) {
        enum it_rx why;
        cJSON *m = it_recv_msg(v, it_ms(5000), &why);

        if (m == NULL) {
            if (why == IT_RX_TIMEOUT)
                fail_msg("slow consumer not closed");
            closed = why == IT_RX_CLOSED || why == IT_RX_RESET;
            assert_true(closed);
            break;
        }
        if (strcmp(it_str(m, "type"), "error") == 0 &&
            strcmp(it_str(m, "code"), "slow_consumer") != 0)
            fail_msg("slow consumer got %s", it_json(it_keep(m)));
        cJSON_Delete(m);
    }
    assert_true(closed);
    stop_ok(s);
}

static void
test_proto_sigterm_bye(void **state)
{
    enum { N = 4 };
    struct it_server *s = start_or_fail(NULL);
    const char *room = it_uniq("#term");
    int fds[N], d, i, k, st;
    int64_t t0;

    (void)state;
    /* everyone in one room: each would see the others go as quit events */
    for (i = 0; i < N; i++) {
        fds[i] = it_register(s, it_uniq("tm"));
        it_join(fds[i], room);
        for (k = 0; k < i; k++)
            it_expect_joined(fds[k], room, it_nick(fds[i]));
    }
    d = it_connect(s);                  /* never says hello */
    assert_true(d >= 0);
    it_pump(50);
    t0 = it_now_ms();
    assert_int_equal(it_server_kill(s, SIGTERM), 0);
    for (i = 0; i < N; i++) {
        enum it_rx why;
        cJSON *x = it_recv_msg(fds[i], it_ms(1000), &why);
        const cJSON *m;

        if (x == NULL)
            fail_msg("client %d: expected bye, got %s", i, it_rx_name(why));
        m = it_keep(x);
        /* bye is everyone's first and last word: no quit about co-members
         * before it (nor after it: the close must follow) */
        if (strcmp(it_str(m, "type"), "bye") != 0)
            fail_msg("client %d of %d: first message after SIGTERM is %s, "
                "expected bye", i, N, it_json(m));
        assert_string_equal(it_str(m, "reason"), "server shutting down");
        it_expect_closed(fds[i]);
    }
    st = it_server_wait(s, (int)(t0 + it_ms(1000) + 50 - it_now_ms()));
    if (st == -2)
        fail_msg("sockchatd still running %d ms after SIGTERM",
            (int)(it_now_ms() - t0));
    assert_int_equal(st, 0);
    /* the unregistered connection is closed too (bye optional) */
    {
        enum it_rx why;
        cJSON *m = it_recv_msg(d, it_ms(1000), &why);

        if (m != NULL) {
            it_keep(m);
            assert_string_equal(it_str(m, "type"), "bye");
            it_expect_closed(d);
        } else {
            assert_true(why == IT_RX_CLOSED || why == IT_RX_RESET);
        }
    }
}

static bool
write_file(const char *path, const char *text)
{
    char *tmp = g_strconcat(path, ".tmp", NULL);
    bool ok = g_file_set_contents(tmp, text, -1, NULL) &&
        rename(tmp, path) == 0;

    g_free(tmp);
    return ok;
}

static void
remove_conf_dir(gpointer dir)
{
    char *conf = g_build_filename(dir, "sockchatd.conf", NULL);
    char *tmp = g_strconcat(conf, ".tmp", NULL);

    (void)unlink(tmp);
    (void)unlink(conf);
    (void)rmdir(dir);
    g_free(tmp);
    g_free(conf);
    g_free(dir);
}

static void
test_proto_sighup_reloads_motd(void **state)
{
    char *dir = g_dir_make_tmp("sockchat-it-conf-XXXXXX", NULL);
    const char *conf;
    struct it_server *s;
    const cJSON *w = NULL;
    int a, b = -1, tries;

    (void)state;
    assert_non_null(dir);
    it_defer(remove_conf_dir, dir);     /* after the server has stopped */
    conf = it_own(g_build_filename(dir, "sockchatd.conf", NULL));
    assert_true(write_file(conf, "[sockchatd]\nmotd=first motd\n"
        "max-rooms=3\n"));
    s = start_or_fail(it_own(g_strdup_printf("--config %s --name itname",
        conf)));
    a = it_register_welcome(s, it_uniq("ha"), &w);
    assert_string_equal(it_str(w, "motd"), "first motd");
    assert_string_equal(it_str(w, "server"), "itname");
    assert_int_equal(it_int(limits_of(w), "max_rooms"), 3);

    assert_true(write_file(conf, "[sockchatd]\nmotd=second motd\n"
        "max-rooms=2\n"));
    assert_int_equal(it_server_kill(s, SIGHUP), 0);
    for (tries = 0; tries < 100; tries++) {
        b = it_register_welcome(s, it_uniq("hb"), &w);
        if (strcmp(it_str(w, "motd"), "second motd") == 0)
            break;
        it_close(b);
        b = -1;
        it_pump(it_ms(30));
    }
    if (b < 0)
        fail_msg("motd still \"%s\" after SIGHUP", it_str(w, "motd"));
    assert_string_equal(it_str(w, "server"), "itname");
    assert_int_equal(it_int(limits_of(w), "max_rooms"), 2);
    it_ping(a);
    stop_ok(s);
}

/*
 * With the select loop, a descriptor at or above FD_SETSIZE gets server_full
 * (SERVER-CLI). The server inherits our raised soft limit, so accept() can
 * return such descriptors; each connection pings and must get either pong or
 * server_full and a close, and once one is refused every later one is too
 * (the server's lowest free descriptor stays >= FD_SETSIZE).
 */
static void
test_proto_fd_setsize_server_full(void **state)
{
    enum { N = 1100 };
    struct rlimit old, rl;
    struct it_server *s;
    int fds[N], i, first_full = -1, accepted = 0, tries, probe;
    bool ok = false;

    (void)state;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < N + 200) {
        print_message("RLIMIT_NOFILE hard limit %llu is too low\n",
            (unsigned long long)old.rlim_max);
        skip();
    }
    rl = old;
    rl.rlim_cur = old.rlim_max;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536)
        rl.rlim_cur = 65536;
    if (rl.rlim_cur < old.rlim_cur)
        rl.rlim_cur = old.rlim_cur;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    if (it_server_has_option("--io"))
        s = start_or_fail("--max-clients 5000 --io=select");
    else
        s = start_or_fail("--max-clients 5000");

    for (i = 0; i < N; i++)
        fds[i] = -1;
    for (i = 0; i < N; i++) {
        enum it_rx why;
        cJSON *m;
        char tok[16];

        fds[i] = it_connect(s);
        if (fds[i] < 0)
            fail_msg("connection %d could not connect", i);
        g_snprintf(tok, sizeof(tok), "%d", i);
        /* may fail if the server refused us already: the reply tells */
        (void)it_send_json(fds[i], "{\"type\":\"ping\",\"token\":\"%s\"}",
            tok);
        m = it_recv_msg(fds[i], it_ms(5000), &why);
        if (m == NULL)
            fail_msg("connection %d: expected pong or server_full, got %s", i,
                it_rx_name(why));
        it_keep(m);
        if (strcmp(it_str(m, "type"), "pong") == 0 &&
            strcmp(it_str(m, "token"), tok) == 0) {
            if (first_full >= 0)
                fail_msg("connection %d accepted after connection %d got "
                    "server_full", i, first_full);
            accepted++;
        } else if (strcmp(it_str(m, "type"), "error") == 0 &&
            strcmp(it_str(m, "code"), "server_full") == 0) {
            if (first_full < 0)
                first_full = i;
            it_expect_closed(fds[i]);
            it_close(fds[i]);
            fds[i] = -1;
        } else {
            fail_msg("connection %d: expected pong or server_full, got %s", i,
                it_json(m));
        }
    }
    if (first_full < 0)
        fail_msg("all %d connections accepted with --max-clients 5000: some "
            "server descriptors are >= FD_SETSIZE (%d) and must get "
            "server_full", N, FD_SETSIZE);
    if (accepted < 900 || accepted > FD_SETSIZE - 4)
        fail_msg("%d connections accepted before server_full; expected a "
            "little under FD_SETSIZE (%d)", accepted, FD_SETSIZE);
    /* an accepted one is a working session */
    it_hello(fds[first_full - 1], it_uniq("fs"));
    it_ping(fds[first_full - 1]);
    /* freeing descriptors lets new clients in again */
    for (i = 0; i < 50; i++) {
        it_close(fds[i]);
        fds[i] = -1;
    }
    for (tries = 0; tries < 100 && !ok; tries++) {
        enum it_rx why;
        cJSON *m;

        probe = it_connect(s);
        assert_true(probe >= 0);
        (void)it_send_json(probe, "{\"type\":\"ping\"}");
        m = it_recv_msg(probe, it_ms(5000), &why);
        if (m == NULL)
            fail_msg("probe: %s", it_rx_name(why));
        it_keep(m);
        ok = strcmp(it_str(m, "type"), "pong") == 0;
        if (!ok && strcmp(it_str(m, "code"), "server_full") != 0)
            fail_msg("probe got %s", it_json(m));
        if (!ok) {
            it_close(probe);
            it_pump(30);
        }
    }
    assert_true(ok);
    for (i = 0; i < N; i++)
        it_close(fds[i]);
    stop_ok(s);
    (void)setrlimit(RLIMIT_NOFILE, &old);
}

/* ------------------------------------------------------ regressions */

/*
 * A `say` request of exactly `total` bytes whose text is all 'x' (id "big"):
 * the server's message event for it is longer than the request (its fixed
 * fields, the sender's nick and ts), so a request just under max-frame makes
 * an event over it.
 */
static void
send_say_of_size(int fd, const char *room, size_t total)
{
    char *empty = g_strdup_printf("{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"\",\"id\":\"big\"}", room);
    size_t n = strlen(empty);
    const char *text;

    g_free(empty);
    assert_true(total > n);
    text = it_own(g_strnfill(total - n, 'x'));
    assert_int_equal(it_send_json(fd, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"%s\",\"id\":\"big\"}", room, text), 0);
}

/* As send_say_of_size() for a private `msg` to `to` with id 5. */
static void
send_msg_of_size(int fd, const char *to, size_t total)
{
    char *empty = g_strdup_printf("{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"\",\"id\":5}", to);
    size_t n = strlen(empty);
    const char *text;

    g_free(empty);
    assert_true(total > n);
    text = it_own(g_strnfill(total - n, 'x'));
    assert_int_equal(it_send_json(fd, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"%s\",\"id\":5}", to, text), 0);
}

/*
 * With --max-frame 1024, a say or msg whose event would not fit a frame is
 * the sender's text_too_long (it used to be taken for a full queue and drop
 * every member of the room as a slow consumer), and welcome.limits.max_text
 * is min(4096, (max_frame - 256) / 2).
 */
static void
test_proto_event_over_max_frame_is_text_too_long(void **state)
{
    struct it_server *s = start_or_fail("--max-frame 1024 --rate 0");
    const char *room = it_uniq("#mf");
    const char *q384 = it_own(g_strnfill(384, 'q'));
    GString *quotes = it_defer(free_gstring, g_string_new(NULL));
    const cJSON *w, *e, *m;
    int a, o, p, i;

    (void)state;
    /* a long sender nick: it is in the event, not in the request */
    a = it_register_welcome(s, it_uniq("sender_with_long_n"), &w);
    assert_int_equal(it_int(limits_of(w), "max_frame"), 1024);
    assert_int_equal(it_int(limits_of(w), "max_text"), 384);
    o = it_register(s, it_uniq("mo"));
    p = it_register(s, it_uniq("mp"));
    it_join(a, room);
    it_join(o, room);
    it_expect_joined(a, room, it_nick(o));
    it_join(p, room);
    it_expect_joined(a, room, it_nick(p));
    it_expect_joined(o, room, it_nick(p));

    /* a request of 1000 bytes (it fits, sealed too: 17 more with
     * IT_SECURE=1), text ~940 bytes (under 4096) */
    send_say_of_size(a, room, 1000);
    e = it_expect_error(a, "text_too_long");
    assert_string_equal(it_str(e, "id"), "big");
    assert_string_equal(it_str(e, "request"), "say");
    /* nobody was dropped, nobody heard anything */
    it_expect_silence(o, 200);
    it_expect_silence(p, 10);
    it_ping(a);
    it_ping(o);
    it_ping(p);
    /* the room still works, and the refused say took no seq: a gap
     * would read as a lost message */
    it_say(a, room, "after the big one");
    m = expect_message(o, room, it_nick(a), "after the big one");
    assert_int_equal(it_int(m, "seq"), 1);
    expect_message(p, room, it_nick(a), "after the big one");

    /* an event that fits for the others but not with the sender's long id
     * added: the sender hears text_too_long, nobody gets anything */
    {
        char *enc = cJSON_PrintUnformatted(m);
        size_t base = strlen(enc) - strlen("after the big one");
        /* 100 bytes to spare without the id, 136 more with it; the
         * request itself (no nick, ts or seq) stays under the frame */
        size_t k = 1024 - base - 100;
        GString *id = it_defer(free_gstring, g_string_new(NULL));
        const char *text = it_own(g_strnfill(k, 'x'));

        cJSON_free(enc);
        for (i = 0; i < 64; i++)
            g_string_append(id, "\\\"");
        if (strlen(room) + k + id->len + 40 > 1024)
            fail_msg("test setup: the request would not fit the frame");
        assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
            "\"text\":\"%s\",\"id\":\"%s\"}", room, text, id->str), 0);
        e = it_expect_error(a, "text_too_long");
        assert_int_equal((int)strlen(it_str(e, "id")), 64);
        it_expect_silence(o, 200);
        it_expect_silence(p, 10);
        it_say(a, room, "still numbered");
        m = expect_message(o, room, it_nick(a), "still numbered");
        assert_int_equal(it_int(m, "seq"), 2);
        expect_message(p, room, it_nick(a), "still numbered");
    }

    /* max_text is what surely fits, even when every byte is escaped */
    for (i = 0; i < 384; i++)
        g_string_append(quotes, "\\\"");
    assert_int_equal(it_send_json(a, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"%s\",\"id\":1}", room, quotes->str), 0);
    m = it_expect_type(a, "message");
    assert_int_equal(it_int(m, "id"), 1);
    assert_int_equal((int)strlen(it_str(m, "text")), 384);
    m = it_expect_type(o, "message");
    assert_int_equal((int)strlen(it_str(m, "text")), 384);
    assert_true(strspn(it_str(m, "text"), "\"") == 384);
    it_expect_type(p, "message");
    it_say(a, room, q384);
    expect_message(o, room, it_nick(a), q384);
    expect_message(p, room, it_nick(a), q384);

    /* the same for a private message over the frame */
    send_msg_of_size(a, it_nick(o), 1000);
    e = it_expect_error(a, "text_too_long");
    assert_int_equal(it_int(e, "id"), 5);
    assert_string_equal(it_str(e, "request"), "msg");
    it_expect_silence(o, 200);
    it_expect_silence(p, 10);
    it_ping(a);
    it_ping(o);
    assert_int_equal(it_send_json(a, "{\"type\":\"msg\",\"to\":\"%s\","
        "\"text\":\"small\"}", it_nick(o)), 0);
    assert_string_equal(it_str(it_expect_type(a, "message"), "text"),
        "small");
    assert_string_equal(it_str(it_expect_type(o, "message"), "text"),
        "small");
    it_say(o, room, "observer still here");
    expect_message(a, room, it_nick(o), "observer still here");
    expect_message(p, room, it_nick(o), "observer still here");
    stop_ok(s);
}

/*
 * After a fatal error the server shuts its side and drains the client's
 * input until EOF: junk that follows the bad frame in the same write must not
 * turn the close into a reset (which could destroy the error). The client
 * reads the whole error, then EOF, and can still write for a while.
 */
static void
test_proto_fatal_error_drains_input(void **state)
{
    enum { JUNK = 65536 };
    const char *room = it_uniq("#drain");
    guint8 *buf = it_defer(g_free, g_malloc(4 + JUNK));
    const char *bn;
    enum it_rx why;
    cJSON *x;
    int o, b, i;

    (void)state;
    o = it_register(shared, it_uniq("dro"));
    it_join(o, room);
    b = it_register(shared, it_uniq("drb"));
    bn = it_own(g_strdup(it_nick(b)));
    it_join(b, room);
    it_expect_joined(o, room, bn);

    /* a zero-length frame, then 64 KiB of junk, in one write */
    memset(buf, 0, 4);
    for (i = 0; i < JUNK; i++)
        buf[4 + i] = (guint8)('a' + i % 26);
    if (it_send_raw(b, buf, 4 + JUNK) != 0)
        fail_msg("sending the bad frame and junk: %s (the server must read "
            "until EOF after its error)", g_strerror(errno));
    it_expect_error(b, "bad_frame");
    x = it_recv_msg(b, it_ms(5000), &why);
    if (x != NULL)
        fail_msg("after bad_frame: %s", it_json(it_keep(x)));
    if (why != IT_RX_CLOSED)
        fail_msg("after bad_frame: %s, expected EOF", it_rx_name(why));
    /* more junk after our EOF still goes into the drain, not into a reset
     * (a server that closed on the first chunk resets on the second, and
     * the third send fails); well inside the server's close deadline */
    for (i = 0; i < 3; i++) {
        if (it_send_raw(b, buf + 4, 1024) != 0)
            fail_msg("junk %d after the error: %s", i, g_strerror(errno));
        it_pump(30);
    }
    it_close(b);
    expect_quit(o, bn, "protocol error");
    it_expect_silence(o, 100);
    it_ping(o);
}

/*
 * Runs sockchatd (behind $SOCKCHATD_WRAPPER, like the harness) with args,
 * expecting it to exit by itself within 10 s (scaled). Returns its exit code,
 * 128 + signal if a signal ended it, or -1 if it was still running (it is
 * killed). *err gets what it wrote to stderr.
 */
static int
run_to_exit(const char *const *args, const char **err)
{
    const char *bin = getenv("SOCKCHATD"), *wrap = getenv("SOCKCHATD_WRAPPER");
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    GString *text = g_string_new(NULL);
    GError *gerr = NULL;
    char **words = NULL;
    GPid pid;
    int errfd = -1, status = 0, rc;
    bool exited = false, eof = false;
    int64_t deadline;
    size_t i;

    it_defer((GDestroyNotify)g_ptr_array_unref, argv);
    it_defer(free_gstring, text);
    if (bin == NULL || bin[0] != '/')
        fail_msg("SOCKCHATD must be the absolute path of sockchatd");
    if (wrap != NULL && *wrap != '\0' &&
        !g_shell_parse_argv(wrap, NULL, &words, &gerr)) {
        const char *why = it_own(g_strdup(gerr->message));

        g_clear_error(&gerr);
        fail_msg("SOCKCHATD_WRAPPER: %s", why);
    }
    for (i = 0; words != NULL && words[i] != NULL; i++)
        g_ptr_array_add(argv, g_strdup(words[i]));
    g_strfreev(words);
    g_ptr_array_add(argv, g_strdup(bin));
    for (i = 0; args[i] != NULL; i++)
        g_ptr_array_add(argv, g_strdup(args[i]));
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL,
        G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH |
        G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, &pid, NULL, NULL, &errfd,
        &gerr)) {
        const char *why = it_own(g_strdup(gerr->message));

        g_clear_error(&gerr);
        fail_msg("cannot run sockchatd: %s", why);
    }
    deadline = it_now_ms() + it_ms(10000);
    while (!(exited && eof) && it_now_ms() < deadline) {
        struct pollfd pfd = { .fd = errfd, .events = POLLIN };

        if (!eof && poll(&pfd, 1, 20) > 0) {
            char b[512];
            ssize_t n = read(errfd, b, sizeof(b));

            if (n > 0)
                g_string_append_len(text, b, n);
            else if (n == 0 || errno != EINTR)
                eof = true;
        } else if (eof) {
            g_usleep(10000);
        }
        if (!exited && waitpid(pid, &status, WNOHANG) == pid)
            exited = true;
    }
    if (!exited) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
        rc = -1;
    } else if (WIFEXITED(status)) {
        rc = WEXITSTATUS(status);
    } else {
        rc = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
    }
    close(errfd);
    g_spawn_close_pid(pid);
    *err = it_own(g_strdup(text->str));
    return rc;
}

/* The config file in a fresh private directory (removed at cleanup). */
static const char *
conf_file(const char *text)
{
    char *dir = g_dir_make_tmp("sockchat-it-conf-XXXXXX", NULL);
    const char *conf;

    assert_non_null(dir);
    it_defer(remove_conf_dir, dir);     /* after the server has stopped */
    conf = it_own(g_build_filename(dir, "sockchatd.conf", NULL));
    assert_true(write_file(conf, text));
    return conf;
}

/* sockchatd --config (text) must exit 1 naming `what` on stderr. */
static void
expect_config_refused(const char *text, const char *what)
{
    const char *conf = conf_file(text);
    const char *args[] = { "--listen", "tcp://127.0.0.1:0", "--config", conf,
        NULL };
    const char *err;
    int st = run_to_exit(args, &err);

    if (st != 1)
        fail_msg("config \"%s\": sockchatd %s %d, expected exit 1; "
            "stderr: %s", text, st < 0 ? "still running," : "exited", st,
            err);
    if (strstr(err, what) == NULL)
        fail_msg("config \"%s\": stderr does not name %s: %s", text, what,
            err);
}

/*
 * An unknown key (a typo) or a file without the [sockchatd] group is an
 * error (exit 1, named on stderr): it used to pass silently as "the
 * defaults". A file with every documented key works.
 */
static void
test_proto_config_unknown_key_or_group(void **state)
{
    struct it_server *s;
    const cJSON *w, *l;
    const char *conf;

    (void)state;
    expect_config_refused("[sockchatd]\nmotd=typo below\nmax_clients=5\n",
        "max_clients");
    expect_config_refused("[sockchatd]\nmax-clients=5\nMotd=case\n", "Motd");
    expect_config_refused("[server]\nmotd=wrong group\n", "[sockchatd]");
    expect_config_refused("# nothing but a comment\n", "[sockchatd]");

    conf = conf_file("[sockchatd]\nname=cfgname\nmotd=from the file\n"
        "max-clients=50\nmax-rooms=7\nroom-cap=100\nhistory=10\nrate=5\n"
        "burst=9\nmax-queue=262144\nmax-frame=8192\nidle-timeout=60\n");
    s = start_or_fail(it_own(g_strdup_printf("--config %s", conf)));
    (void)it_register_welcome(s, it_uniq("cf"), &w);
    assert_string_equal(it_str(w, "server"), "cfgname");
    assert_string_equal(it_str(w, "motd"), "from the file");
    l = limits_of(w);
    assert_int_equal(it_int(l, "max_frame"), 8192);
    assert_int_equal(it_int(l, "max_text"), (8192 - 256) / 2);
    assert_int_equal(it_int(l, "max_rooms"), 7);
    assert_int_equal(it_int(l, "max_queue"), 262144);
    assert_int_equal(it_int(it_get(l, "rate"), "per_sec"), 5);
    assert_int_equal(it_int(it_get(l, "rate"), "burst"), 9);
    stop_ok(s);
}

/* A --port-file that cannot be written is exit 1 (2 means cannot listen). */
static void
test_proto_port_file_unwritable_exits_1(void **state)
{
    const char *conf = conf_file("[sockchatd]\n");
    const char *pf = it_own(g_build_filename(conf, "no-such-dir", "port",
        NULL));
    const char *args[] = { "--listen", "tcp://127.0.0.1:0", "--port-file", pf,
        NULL };
    const char *err;
    int st;

    (void)state;
    /* under the config file, which is not a directory: never writable */
    st = run_to_exit(args, &err);
    if (st != 1)
        fail_msg("--port-file %s: sockchatd %s %d, expected exit 1; "
            "stderr: %s", pf, st < 0 ? "still running," : "exited", st, err);
    if (strstr(err, pf) == NULL)
        fail_msg("stderr does not name %s: %s", pf, err);
}

static void
test_proto_shared_server_exits_cleanly(void **state)
{
    int st;

    (void)state;
    it_test_cleanup(shared);
    st = it_server_stop(shared);
    shared = NULL;
    assert_int_equal(st, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_proto_hello_welcome_fields, cleanup),
        cmocka_unit_test_teardown(test_proto_before_welcome, cleanup),
        cmocka_unit_test_teardown(test_proto_hello_nick_in_use_then_retry, cleanup),
        cmocka_unit_test_teardown(test_proto_join_room_reply_and_joined, cleanup),
        cmocka_unit_test_teardown(test_proto_leave_ok_and_left, cleanup),
        cmocka_unit_test_teardown(test_proto_say_message_and_seq, cleanup),
        cmocka_unit_test_teardown(test_proto_say_action, cleanup),
        cmocka_unit_test_teardown(test_proto_text_limits, cleanup),
        cmocka_unit_test_teardown(test_proto_msg_private, cleanup),
        cmocka_unit_test_teardown(test_proto_nick_rename, cleanup),
        cmocka_unit_test_teardown(test_proto_topic, cleanup),
        cmocka_unit_test_teardown(test_proto_list, cleanup),
        cmocka_unit_test_teardown(test_proto_who, cleanup),
        cmocka_unit_test_teardown(test_proto_ping_pong, cleanup),
        cmocka_unit_test_teardown(test_proto_id_echo, cleanup),
        cmocka_unit_test_teardown(test_proto_quit, cleanup),
        cmocka_unit_test_teardown(test_proto_abrupt_close_and_reset, cleanup),
        cmocka_unit_test_teardown(test_proto_history_on_rejoin, cleanup),
        cmocka_unit_test_teardown(test_proto_case_insensitive_names, cleanup),
        cmocka_unit_test_teardown(test_proto_ordering, cleanup),
        cmocka_unit_test_teardown(test_proto_history_limit, cleanup),
        cmocka_unit_test_teardown(test_proto_history_truncated_to_max_frame,
            cleanup),
        cmocka_unit_test_teardown(test_proto_room_cap_forgets_lru_empty_room,
            cleanup),
        cmocka_unit_test_teardown(test_proto_server_full, cleanup),
        cmocka_unit_test_teardown(test_proto_too_many_rooms, cleanup),
        cmocka_unit_test_teardown(test_proto_rate_limited, cleanup),
        cmocka_unit_test_teardown(test_proto_idle_ping_then_timeout, cleanup),
        cmocka_unit_test_teardown(test_proto_slow_consumer, cleanup),
        cmocka_unit_test_teardown(test_proto_sigterm_bye, cleanup),
        cmocka_unit_test_teardown(test_proto_sighup_reloads_motd, cleanup),
        cmocka_unit_test_teardown(test_proto_fd_setsize_server_full, cleanup),
        cmocka_unit_test_teardown(
            test_proto_event_over_max_frame_is_text_too_long, cleanup),
        cmocka_unit_test_teardown(test_proto_fatal_error_drains_input,
            cleanup),
        cmocka_unit_test_teardown(test_proto_config_unknown_key_or_group,
            cleanup),
        cmocka_unit_test_teardown(test_proto_port_file_unwritable_exits_1,
            cleanup),
        cmocka_unit_test_teardown(test_proto_shared_server_exits_cleanly, cleanup),
    };
    int rc;

    it_init();
    rc = cmocka_run_group_tests_name("it_proto", tests, group_setup,
        group_teardown);
    if (it_bad_stops() != 0) {
        fprintf(stderr, "it_proto: %d server run(s) ended with a non-zero "
            "status\n", it_bad_stops());
        if (rc == 0)
            rc = 1;
    }
    return rc != 0 ? 1 : 0;
}
