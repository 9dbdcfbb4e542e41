/* test_message.c - msg_parse() rules of PROTOCOL.md sections 2-4.1, the
 * name and text rules, error codes and the builders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "message.h"

/* A string of n copies of c; g_free() it. */
static char *
repeat(char c, size_t n)
{
    char *s = g_malloc(n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static int
parse_n(const char *p, size_t n, struct msg_request *req, struct msg_error *err)
{
    return msg_parse((const uint8_t *)p, n, req, err);
}

static int
parse(const char *json, struct msg_request *req, struct msg_error *err)
{
    return parse_n(json, strlen(json), req, err);
}

/* Parse n bytes and expect refusal with code. */
static void
expect_err_n(const char *p, size_t n, enum proto_err code)
{
    struct msg_request req;
    struct msg_error err;
    int rc;

    rc = parse_n(p, n, &req, &err);
    if (rc != -1 || err.code != code)
        print_error("input: %.*s\ngot rc %d code %s (%s)\n", (int)n, p, rc,
                    proto_err_code(err.code), err.text);
    assert_int_equal(rc, -1);
    assert_int_equal(err.code, code);
    assert_true(err.text[0] != '\0');
    msg_request_cleanup(&req);
}

static void
expect_err(const char *json, enum proto_err code)
{
    expect_err_n(json, strlen(json), code);
}

/* Parse json, expect success with type t; the caller cleans up req. */
static void
expect_ok_req(const char *json, enum msg_type t, struct msg_request *req)
{
    struct msg_error err;
    int rc;

    rc = parse(json, req, &err);
    if (rc != 0)
        print_error("input: %s\ngot %s (%s)\n", json, proto_err_code(err.code),
                    err.text);
    assert_int_equal(rc, 0);
    assert_int_equal(err.code, PE_NONE);
    assert_int_equal(req->type, t);
    assert_non_null(req->root);
}

static void
expect_ok(const char *json, enum msg_type t)
{
    struct msg_request req;

    expect_ok_req(json, t, &req);
    msg_request_cleanup(&req);
}

/* Envelope of a say with the given raw JSON text value (quotes included). */
static char *
say_with(const char *text_json)
{
    return g_strdup_printf("{\"type\":\"say\",\"room\":\"#a\",\"text\":%s}",
                           text_json);
}

static void
expect_say_err(const char *text_json, enum proto_err code)
{
    char *j = say_with(text_json);

    expect_err(j, code);
    g_free(j);
}

static void
expect_say_ok(const char *text_json)
{
    char *j = say_with(text_json);

    expect_ok(j, MSG_SAY);
    g_free(j);
}

/* Valid requests */

static void
test_message_parses_hello(void **state)
{
    struct msg_request req;

    (void)state;
    expect_ok_req("{\"type\":\"hello\",\"version\":1,\"nick\":\"alice\","
                  "\"client\":\"sockchat/0.1\"}",
                  MSG_HELLO, &req);
    assert_string_equal(req.type_str, "hello");
    assert_int_equal(req.version, 1);
    assert_string_equal(req.nick, "alice");
    assert_string_equal(req.client, "sockchat/0.1");
    assert_null(req.id);
    assert_null(req.room);
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"hello\",\"version\":1.0,\"nick\":\"a\"}",
                  MSG_HELLO, &req);
    assert_null(req.client);
    msg_request_cleanup(&req);
}

static void
test_message_parses_every_type(void **state)
{
    struct msg_request req;

    (void)state;
    expect_ok("{\"type\":\"secure\",\"v\":1,\"kx\":\"AAAA\"}", MSG_SECURE);
    expect_ok("{\"type\":\"secure\"}", MSG_SECURE);

    expect_ok_req("{\"type\":\"join\",\"room\":\"#Lobby\"}", MSG_JOIN, &req);
    assert_string_equal(req.room, "#Lobby");
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"leave\",\"room\":\"#a\"}", MSG_LEAVE, &req);
    assert_string_equal(req.room, "#a");
    assert_null(req.reason);
    msg_request_cleanup(&req);
    expect_ok_req("{\"type\":\"leave\",\"room\":\"#a\",\"reason\":\"bye all\"}",
                  MSG_LEAVE, &req);
    assert_string_equal(req.reason, "bye all");
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"hi\"}", MSG_SAY,
                  &req);
    assert_string_equal(req.room, "#a");
    assert_string_equal(req.text, "hi");
    assert_false(req.action);
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"msg\",\"to\":\"bob\",\"text\":\"psst\"}",
                  MSG_MSG, &req);
    assert_string_equal(req.to, "bob");
    assert_string_equal(req.text, "psst");
    assert_null(req.room);
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"nick\",\"nick\":\"carol_2\"}", MSG_NICK, &req);
    assert_string_equal(req.nick, "carol_2");
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"topic\",\"room\":\"#a\",\"topic\":\"news\"}",
                  MSG_TOPIC, &req);
    assert_string_equal(req.topic, "news");
    msg_request_cleanup(&req);

    expect_ok("{\"type\":\"list\"}", MSG_LIST);

    expect_ok_req("{\"type\":\"who\",\"room\":\"#a\"}", MSG_WHO, &req);
    assert_string_equal(req.room, "#a");
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"ping\"}", MSG_PING, &req);
    assert_null(req.token);
    msg_request_cleanup(&req);
    expect_ok_req("{\"type\":\"ping\",\"token\":\"t1\"}", MSG_PING, &req);
    assert_string_equal(req.token, "t1");
    msg_request_cleanup(&req);

    expect_ok_req("{\"type\":\"pong\",\"token\":\"t2\"}", MSG_PONG, &req);
    assert_string_equal(req.token, "t2");
    msg_request_cleanup(&req);
    expect_ok("{\"type\":\"pong\"}", MSG_PONG);

    expect_ok_req("{\"type\":\"quit\"}", MSG_QUIT, &req);
    assert_null(req.reason);
    msg_request_cleanup(&req);
    expect_ok_req("{\"type\":\"quit\",\"reason\":\"later\"}", MSG_QUIT, &req);
    assert_string_equal(req.reason, "later");
    msg_request_cleanup(&req);
}

static void
test_message_ignores_unknown_fields(void **state)
{
    struct msg_request req;

    (void)state;
    expect_ok_req("{\"type\":\"join\",\"x\":[1,{\"y\":null}],\"room\":\"#a\","
                  "\"Room\":5}",
                  MSG_JOIN, &req);
    assert_string_equal(req.room, "#a");
    msg_request_cleanup(&req);
}

static void
test_message_allows_json_whitespace(void **state)
{
    (void)state;
    expect_ok(" \t\r\n{ \"type\" :\t\"list\" }", MSG_LIST);
    expect_ok("{\"type\":\"list\"} \t\r\n", MSG_LIST);
}

/* bad_json */

static void
test_message_rejects_invalid_utf8(void **state)
{
    static const char nul_byte[] = "{\"type\":\"list\"}\0";

    (void)state;
    expect_err("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"\xff\"}",
               PE_BAD_JSON);
    /* overlong '/', UTF-8 encoded surrogate, truncated sequence */
    expect_err("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"\xc0\xaf\"}",
               PE_BAD_JSON);
    expect_err("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"\xed\xa0\x80\"}",
               PE_BAD_JSON);
    expect_err("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"\xe2\x82\"}",
               PE_BAD_JSON);
    /* a raw NUL byte, even after the object */
    expect_err_n(nul_byte, sizeof(nul_byte) - 1, PE_BAD_JSON);
    expect_err_n("{\"type\":\0\"list\"}", 16, PE_BAD_JSON);
}

static void
test_message_rejects_bom(void **state)
{
    (void)state;
    expect_err("\xef\xbb\xbf{\"type\":\"list\"}", PE_BAD_JSON);
    expect_err(" \xef\xbb\xbf{\"type\":\"list\"}", PE_BAD_JSON);
}

static void
test_message_rejects_non_object(void **state)
{
    (void)state;
    expect_err("[{\"type\":\"list\"}]", PE_BAD_JSON);
    expect_err("[]", PE_BAD_JSON);
    expect_err("42", PE_BAD_JSON);
    expect_err("\"list\"", PE_BAD_JSON);
    expect_err("true", PE_BAD_JSON);
    expect_err("null", PE_BAD_JSON);
    expect_err("", PE_BAD_JSON);
    expect_err("   ", PE_BAD_JSON);
    expect_err_n(NULL, 0, PE_BAD_JSON);
    expect_err("{\"type\":\"list\"", PE_BAD_JSON);
    expect_err("{\"type\":\"list\",}", PE_BAD_JSON);
    expect_err("{'type':'list'}", PE_BAD_JSON);
}

static void
test_message_rejects_trailing_bytes(void **state)
{
    (void)state;
    expect_err("{\"type\":\"list\"}x", PE_BAD_JSON);
    expect_err("{\"type\":\"list\"}{}", PE_BAD_JSON);
    expect_err("{\"type\":\"list\"} ,", PE_BAD_JSON);
    expect_err("{\"type\":\"list\"}\x0b", PE_BAD_JSON);
}

static void
test_message_rejects_control_bytes_between_tokens(void **state)
{
    (void)state;
    /* cJSON would skip these as whitespace; JSON does not allow them */
    expect_err("\x01{\"type\":\"list\"}", PE_BAD_JSON);
    expect_err("{\"type\"\x0c:\"list\"}", PE_BAD_JSON);
    expect_err("{\"type\":\"list\",\x1f\"a\":1}", PE_BAD_JSON);
}

/* {"type":"list","a": then levels-1 nested containers, so the deepest
 * container is at nesting level `levels`. */
static char *
nested(int levels, bool arrays)
{
    GString *s = g_string_new("{\"type\":\"list\",\"a\":");
    int i;

    for (i = 1; i < levels; i++)
        g_string_append(s, arrays ? "[" : "{\"a\":");
    g_string_append(s, "1");
    for (i = 1; i < levels; i++)
        g_string_append(s, arrays ? "]" : "}");
    g_string_append(s, "}");
    return g_string_free(s, FALSE);
}

static void
test_message_depth_limit(void **state)
{
    char *j;

    (void)state;
    j = nested(MSG_DEPTH_MAX, false);
    expect_ok(j, MSG_LIST);
    g_free(j);
    j = nested(MSG_DEPTH_MAX + 1, false);
    expect_err(j, PE_BAD_JSON);
    g_free(j);
    j = nested(MSG_DEPTH_MAX, true);
    expect_ok(j, MSG_LIST);
    g_free(j);
    j = nested(MSG_DEPTH_MAX + 1, true);
    expect_err(j, PE_BAD_JSON);
    g_free(j);
    /* well past cJSON's own limit of 1000 */
    j = nested(2000, true);
    expect_err(j, PE_BAD_JSON);
    g_free(j);
}

static void
test_message_rejects_duplicate_keys(void **state)
{
    GString *s;
    int i;

    (void)state;
    expect_err("{\"type\":\"list\",\"type\":\"list\"}", PE_BAD_JSON);
    expect_err("{\"type\":\"join\",\"room\":\"#a\",\"room\":\"#b\"}",
               PE_BAD_JSON);
    expect_err("{\"type\":\"list\",\"x\":[{\"k\":1,\"k\":2}]}", PE_BAD_JSON);
    /* the same key spelled with an escape */
    expect_err("{\"type\":\"list\",\"a\":1,\"\\u0061\":2}", PE_BAD_JSON);
    /* keys are case-sensitive: not duplicates */
    expect_ok("{\"type\":\"list\",\"a\":1,\"A\":2}", MSG_LIST);
    /* same key in sibling objects is fine */
    expect_ok("{\"type\":\"list\",\"x\":{\"k\":1},\"y\":{\"k\":1}}", MSG_LIST);

    /* a large object goes through the sorted check */
    s = g_string_new("{\"type\":\"list\"");
    for (i = 0; i < 100; i++)
        g_string_append_printf(s, ",\"k%d\":%d", i, i);
    g_string_append(s, "}");
    expect_ok(s->str, MSG_LIST);
    g_string_truncate(s, s->len - 1);
    g_string_append(s, ",\"k57\":0}");
    expect_err(s->str, PE_BAD_JSON);
    g_string_free(s, TRUE);
}

static void
test_message_rejects_lone_surrogates(void **state)
{
    struct msg_request req;

    (void)state;
    expect_say_err("\"\\ud800\"", PE_BAD_JSON);
    expect_say_err("\"a\\udc00b\"", PE_BAD_JSON);
    expect_say_err("\"\\ud800x\"", PE_BAD_JSON);
    expect_say_err("\"\\ud800\\u0041\"", PE_BAD_JSON);
    expect_say_err("\"\\ud800\\ud800\"", PE_BAD_JSON);
    expect_say_err("\"\\ude00\\ud83d\"", PE_BAD_JSON);
    expect_err("{\"type\":\"list\",\"\\udfff\":1}", PE_BAD_JSON);
    /* a proper pair decodes to U+1F600 */
    expect_ok_req(
        "{\"type\":\"say\",\"room\":\"#a\",\"text\":\"\\ud83d\\ude00\"}",
        MSG_SAY, &req);
    assert_string_equal(req.text, "\xf0\x9f\x98\x80");
    msg_request_cleanup(&req);
}

static void
test_message_bad_json_comes_first(void **state)
{
    (void)state;
    /* no type and a duplicate key: bad_json, not missing_field */
    expect_err("{\"a\":1,\"a\":2}", PE_BAD_JSON);
    expect_err("{\"id\":true,\"id\":1}", PE_BAD_JSON);
}

/* Escaped NUL */

static void
test_message_rejects_escaped_nul(void **state)
{
    struct msg_request req;
    struct msg_error err;

    (void)state;
    expect_say_err("\"a\\u0000b\"", PE_BAD_FIELD);
    expect_say_err("\"\\u0000\"", PE_BAD_FIELD);
    /* an escaped backslash, then a real \u0000 */
    expect_say_err("\"\\\\\\u0000\"", PE_BAD_FIELD);
    /* two escaped backslashes, then a real \u0000 */
    expect_say_err("\"\\\\\\\\\\u0000\"", PE_BAD_FIELD);
    /* in a key, and in an ignored field */
    expect_err("{\"type\":\"list\",\"a\\u0000\":1}", PE_BAD_FIELD);
    expect_err("{\"type\":\"list\",\"x\":[\"\\u0000\"]}", PE_BAD_FIELD);

    /* in the type: type is known, id is not trusted */
    assert_int_equal(
        parse("{\"type\":\"say\\u0000x\",\"id\":\"q\\u0000\"}", &req, &err),
        -1);
    assert_int_equal(err.code, PE_BAD_FIELD);
    assert_non_null(strstr(err.text, "control character"));
    assert_string_equal(req.type_str, "say");
    assert_null(req.id);
    msg_request_cleanup(&req);
}

static void
test_message_allows_escaped_backslash_u0000(void **state)
{
    struct msg_request req;

    (void)state;
    /* "\\u0000" is a backslash followed by the letters u0000 */
    expect_ok_req("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"\\\\u0000\"}",
                  MSG_SAY, &req);
    assert_string_equal(req.text, "\\u0000");
    msg_request_cleanup(&req);
    expect_ok_req(
        "{\"type\":\"say\",\"room\":\"#a\",\"text\":\"\\\\\\\\u0000\\\"\"}",
        MSG_SAY, &req);
    assert_string_equal(req.text, "\\\\u0000\"");
    msg_request_cleanup(&req);
}

/* Envelope: type and id */

static void
test_message_type_rules(void **state)
{
    struct msg_request req;
    struct msg_error err;

    (void)state;
    expect_err("{}", PE_MISSING_FIELD);
    expect_err("{\"Type\":\"list\"}", PE_MISSING_FIELD);
    expect_err("{\"type\":5}", PE_BAD_FIELD);
    expect_err("{\"type\":null}", PE_BAD_FIELD);
    expect_err("{\"type\":[\"list\"]}", PE_BAD_FIELD);
    expect_err("{\"type\":true}", PE_BAD_FIELD);

    assert_int_equal(parse("{\"type\":\"shout\",\"id\":7}", &req, &err), -1);
    assert_int_equal(err.code, PE_UNKNOWN_TYPE);
    assert_int_equal(req.type, MSG_UNKNOWN);
    assert_string_equal(req.type_str, "shout");
    assert_non_null(req.id);
    assert_true(req.id->valuedouble == 7.0);
    msg_request_cleanup(&req);

    /* type names are case-sensitive */
    expect_err("{\"type\":\"Say\"}", PE_UNKNOWN_TYPE);
    expect_err("{\"type\":\"\"}", PE_UNKNOWN_TYPE);
    expect_err("{\"type\":\"message\"}", PE_UNKNOWN_TYPE);
}

static void
expect_id_ok(const char *id_json)
{
    struct msg_request req;
    char *j = g_strdup_printf("{\"type\":\"list\",\"id\":%s}", id_json);

    expect_ok_req(j, MSG_LIST, &req);
    assert_non_null(req.id);
    msg_request_cleanup(&req);
    g_free(j);
}

static void
expect_id_bad(const char *id_json)
{
    struct msg_request req;
    struct msg_error err;
    char *j = g_strdup_printf("{\"type\":\"list\",\"id\":%s}", id_json);

    assert_int_equal(parse(j, &req, &err), -1);
    assert_int_equal(err.code, PE_BAD_FIELD);
    assert_int_equal(req.type, MSG_LIST);
    assert_null(req.id);
    msg_request_cleanup(&req);
    g_free(j);
}

static void
test_message_id_rules(void **state)
{
    char *s64 = repeat('i', MSG_ID_STR_MAX);
    char *s65 = repeat('i', MSG_ID_STR_MAX + 1);
    char *j;

    (void)state;
    expect_id_ok("0");
    expect_id_ok("42");
    expect_id_ok("1e3");
    expect_id_ok("9007199254740991");
    expect_id_ok("\"abc\"");
    expect_id_ok("\"\"");
    j = g_strdup_printf("\"%s\"", s64);
    expect_id_ok(j);
    g_free(j);

    expect_id_bad("-1");
    expect_id_bad("1.5");
    expect_id_bad("0.000001");
    expect_id_bad("9007199254740992");
    expect_id_bad("1e300");
    expect_id_bad("1e999");
    expect_id_bad("true");
    expect_id_bad("false");
    expect_id_bad("null");
    expect_id_bad("{}");
    expect_id_bad("[1]");
    j = g_strdup_printf("\"%s\"", s65);
    expect_id_bad(j);
    g_free(j);
    g_free(s64);
    g_free(s65);
}

static void
test_message_keeps_envelope_on_field_error(void **state)
{
    struct msg_request req;
    struct msg_error err;

    (void)state;
    assert_int_equal(
        parse("{\"type\":\"join\",\"id\":\"r1\",\"room\":\"lobby\"}", &req,
              &err),
        -1);
    assert_int_equal(err.code, PE_BAD_ROOM);
    assert_int_equal(req.type, MSG_JOIN);
    assert_string_equal(req.type_str, "join");
    assert_non_null(req.id);
    assert_string_equal(req.id->valuestring, "r1");
    assert_null(req.room);
    msg_request_cleanup(&req);

    /* order: type before id, id before unknown type, type before fields */
    expect_err("{\"id\":-1}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"shout\",\"id\":-1}", PE_BAD_FIELD);
    expect_err("{\"type\":\"shout\",\"room\":5}", PE_UNKNOWN_TYPE);
    expect_err("{\"type\":\"say\",\"room\":\"bad\",\"text\":\"\"}",
               PE_BAD_ROOM);
}

/* Fields */

static void
test_message_hello_rules(void **state)
{
    char *c64 = repeat('c', MSG_CLIENT_MAX);
    char *c65 = repeat('c', MSG_CLIENT_MAX + 1);
    char *j;

    (void)state;
    expect_err("{\"type\":\"hello\",\"nick\":\"a\"}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"hello\",\"version\":\"1\",\"nick\":\"a\"}",
               PE_BAD_FIELD);
    expect_err("{\"type\":\"hello\",\"version\":true,\"nick\":\"a\"}",
               PE_BAD_FIELD);
    expect_err("{\"type\":\"hello\",\"version\":2,\"nick\":\"a\"}",
               PE_VERSION_UNSUPPORTED);
    expect_err("{\"type\":\"hello\",\"version\":0,\"nick\":\"a\"}",
               PE_VERSION_UNSUPPORTED);
    expect_err("{\"type\":\"hello\",\"version\":1.5,\"nick\":\"a\"}",
               PE_VERSION_UNSUPPORTED);
    expect_err("{\"type\":\"hello\",\"version\":1}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"hello\",\"version\":1,\"nick\":7}", PE_BAD_FIELD);
    expect_err("{\"type\":\"hello\",\"version\":1,\"nick\":\"a b\"}",
               PE_BAD_NICK);
    expect_err("{\"type\":\"hello\",\"version\":1,\"nick\":\"\"}", PE_BAD_NICK);
    expect_err("{\"type\":\"hello\",\"version\":1,\"nick\":\"a\",\"client\":1}",
               PE_BAD_FIELD);
    expect_err("{\"type\":\"hello\",\"version\":1,\"nick\":\"a\","
               "\"client\":\"x\\ny\"}",
               PE_BAD_FIELD);

    j = g_strdup_printf(
        "{\"type\":\"hello\",\"version\":1,\"nick\":\"a\",\"client\":\"%s\"}",
        c64);
    expect_ok(j, MSG_HELLO);
    g_free(j);
    j = g_strdup_printf(
        "{\"type\":\"hello\",\"version\":1,\"nick\":\"a\",\"client\":\"%s\"}",
        c65);
    expect_err(j, PE_BAD_FIELD);
    g_free(j);
    g_free(c64);
    g_free(c65);
}

static void
test_message_room_rules(void **state)
{
    char *r32 = repeat('r', MSG_ROOM_MAX);
    char *r33 = repeat('r', MSG_ROOM_MAX + 1);
    char *j;

    (void)state;
    expect_err("{\"type\":\"join\"}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"join\",\"room\":5}", PE_BAD_FIELD);
    expect_err("{\"type\":\"join\",\"room\":null}", PE_BAD_FIELD);
    expect_err("{\"type\":\"join\",\"room\":\"lobby\"}", PE_BAD_ROOM);
    expect_err("{\"type\":\"join\",\"room\":\"#\"}", PE_BAD_ROOM);
    expect_err("{\"type\":\"join\",\"room\":\"#a b\"}", PE_BAD_ROOM);
    expect_err("{\"type\":\"join\",\"room\":\"#caf\xc3\xa9\"}", PE_BAD_ROOM);
    expect_err("{\"type\":\"who\",\"room\":\"##a\"}", PE_BAD_ROOM);
    expect_err("{\"type\":\"leave\",\"room\":\"a\"}", PE_BAD_ROOM);
    expect_err("{\"type\":\"topic\",\"room\":\"a\",\"topic\":\"t\"}",
               PE_BAD_ROOM);
    expect_err("{\"type\":\"say\",\"text\":\"hi\"}", PE_MISSING_FIELD);

    j = g_strdup_printf("{\"type\":\"join\",\"room\":\"#%s\"}", r32);
    expect_ok(j, MSG_JOIN);
    g_free(j);
    j = g_strdup_printf("{\"type\":\"join\",\"room\":\"#%s\"}", r33);
    expect_err(j, PE_BAD_ROOM);
    g_free(j);
    g_free(r32);
    g_free(r33);
}

static void
test_message_nick_rules(void **state)
{
    char *n24 = repeat('n', MSG_NICK_MAX);
    char *n25 = repeat('n', MSG_NICK_MAX + 1);
    char *j;

    (void)state;
    expect_err("{\"type\":\"nick\"}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"nick\",\"nick\":false}", PE_BAD_FIELD);
    expect_err("{\"type\":\"nick\",\"nick\":\"#a\"}", PE_BAD_NICK);
    expect_ok("{\"type\":\"nick\",\"nick\":\"A-z_09\"}", MSG_NICK);

    j = g_strdup_printf("{\"type\":\"nick\",\"nick\":\"%s\"}", n24);
    expect_ok(j, MSG_NICK);
    g_free(j);
    j = g_strdup_printf("{\"type\":\"nick\",\"nick\":\"%s\"}", n25);
    expect_err(j, PE_BAD_NICK);
    g_free(j);
    g_free(n24);
    g_free(n25);
}

static void
test_message_msg_rules(void **state)
{
    (void)state;
    expect_err("{\"type\":\"msg\",\"text\":\"hi\"}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"msg\",\"to\":3,\"text\":\"hi\"}", PE_BAD_FIELD);
    expect_err("{\"type\":\"msg\",\"to\":\"#a\",\"text\":\"hi\"}", PE_BAD_NICK);
    expect_err("{\"type\":\"msg\",\"to\":\"b c\",\"text\":\"hi\"}",
               PE_BAD_NICK);
    expect_err("{\"type\":\"msg\",\"to\":\"bob\"}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"msg\",\"to\":\"bob\",\"text\":\"\"}", PE_BAD_FIELD);
    expect_err("{\"type\":\"msg\",\"to\":\"bob\",\"text\":\"a\\rb\"}",
               PE_BAD_FIELD);
}

static void
test_message_text_rules(void **state)
{
    char *t4096 = repeat('t', MSG_TEXT_MAX);
    char *t4097 = repeat('t', MSG_TEXT_MAX + 1);
    GString *emoji = g_string_new("\"");
    char *j;
    int i;

    (void)state;
    expect_err("{\"type\":\"say\",\"room\":\"#a\"}", PE_MISSING_FIELD);
    expect_say_err("5", PE_BAD_FIELD);
    expect_say_err("null", PE_BAD_FIELD);
    expect_say_err("[\"hi\"]", PE_BAD_FIELD);
    expect_say_err("\"\"", PE_BAD_FIELD);

    j = g_strdup_printf("\"%s\"", t4096);
    expect_say_ok(j);
    g_free(j);
    j = g_strdup_printf("\"%s\"", t4097);
    expect_say_err(j, PE_TEXT_TOO_LONG);
    g_free(j);

    /* the cap is in bytes: 1024 four-byte characters fit, one byte more not */
    for (i = 0; i < MSG_TEXT_MAX / 4; i++)
        g_string_append(emoji, "\xf0\x9f\x98\x80");
    g_string_append(emoji, "\"");
    expect_say_ok(emoji->str);
    g_string_insert(emoji, 1, "x");
    expect_say_err(emoji->str, PE_TEXT_TOO_LONG);

    g_string_free(emoji, TRUE);
    g_free(t4096);
    g_free(t4097);
}

static void
test_message_text_control_chars(void **state)
{
    (void)state;
    expect_say_err("\"a\\nb\"", PE_BAD_FIELD);
    /* Raw control bytes in a string are not JSON at all (RFC 8259). */
    expect_say_err("\"a\nb\"", PE_BAD_JSON); /* raw newline */
    expect_say_err("\"a\tb\"", PE_BAD_JSON); /* raw tab */
    expect_say_err("\"a\\rb\"", PE_BAD_FIELD);
    expect_say_err("\"\\u0001\"", PE_BAD_FIELD);
    expect_say_err("\"\\u001f\"", PE_BAD_FIELD);
    expect_say_err("\"a\\u007fb\"", PE_BAD_FIELD); /* DEL */
    expect_say_err("\"\x7f\"", PE_BAD_FIELD);
    expect_say_err("\"a\\u0085b\"", PE_BAD_FIELD); /* NEL */
    expect_say_err("\"a\xc2\x85\"", PE_BAD_FIELD);
    expect_say_err("\"\\u0080\"", PE_BAD_FIELD);
    expect_say_err("\"\\u009f\"", PE_BAD_FIELD);
    expect_say_err("\"\\b\\f\"", PE_BAD_FIELD);

    expect_say_ok("\"a\\tb\"");
    expect_say_ok("\"\\u00a0\"");
    expect_say_ok("\"\\u0020~\"");
    expect_say_ok("\"caf\xc3\xa9 \\u2603\"");
}

static void
test_message_say_action(void **state)
{
    struct msg_request req;

    (void)state;
    expect_ok_req("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"waves\","
                  "\"action\":true}",
                  MSG_SAY, &req);
    assert_true(req.action);
    msg_request_cleanup(&req);
    expect_ok_req("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"x\","
                  "\"action\":false}",
                  MSG_SAY, &req);
    assert_false(req.action);
    msg_request_cleanup(&req);
    expect_err("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"x\",\"action\":1}",
               PE_BAD_FIELD);
    expect_err("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"x\","
               "\"action\":\"true\"}",
               PE_BAD_FIELD);
    expect_err("{\"type\":\"say\",\"room\":\"#a\",\"text\":\"x\","
               "\"action\":null}",
               PE_BAD_FIELD);
}

static void
test_message_topic_rules(void **state)
{
    char *t256 = repeat('t', MSG_TOPIC_MAX);
    char *t257 = repeat('t', MSG_TOPIC_MAX + 1);
    struct msg_request req;
    char *j;

    (void)state;
    expect_ok_req("{\"type\":\"topic\",\"room\":\"#a\",\"topic\":\"\"}",
                  MSG_TOPIC, &req);
    assert_string_equal(req.topic, "");
    msg_request_cleanup(&req);
    expect_err("{\"type\":\"topic\",\"room\":\"#a\"}", PE_MISSING_FIELD);
    expect_err("{\"type\":\"topic\",\"room\":\"#a\",\"topic\":null}",
               PE_BAD_FIELD);
    expect_err("{\"type\":\"topic\",\"room\":\"#a\",\"topic\":\"a\\nb\"}",
               PE_BAD_FIELD);

    j = g_strdup_printf("{\"type\":\"topic\",\"room\":\"#a\",\"topic\":\"%s\"}",
                        t256);
    expect_ok(j, MSG_TOPIC);
    g_free(j);
    j = g_strdup_printf("{\"type\":\"topic\",\"room\":\"#a\",\"topic\":\"%s\"}",
                        t257);
    expect_err(j, PE_TEXT_TOO_LONG);
    g_free(j);
    g_free(t256);
    g_free(t257);
}

static void
test_message_reason_rules(void **state)
{
    char *r256 = repeat('r', MSG_REASON_MAX);
    char *r257 = repeat('r', MSG_REASON_MAX + 1);
    char *j;

    (void)state;
    expect_err("{\"type\":\"quit\",\"reason\":\"\"}", PE_BAD_FIELD);
    expect_err("{\"type\":\"quit\",\"reason\":1}", PE_BAD_FIELD);
    expect_err("{\"type\":\"quit\",\"reason\":\"a\\u0085\"}", PE_BAD_FIELD);
    expect_err("{\"type\":\"leave\",\"room\":\"#a\",\"reason\":false}",
               PE_BAD_FIELD);
    expect_err("{\"type\":\"leave\",\"room\":\"#a\",\"reason\":\"\\n\"}",
               PE_BAD_FIELD);

    j = g_strdup_printf("{\"type\":\"quit\",\"reason\":\"%s\"}", r256);
    expect_ok(j, MSG_QUIT);
    g_free(j);
    j = g_strdup_printf("{\"type\":\"quit\",\"reason\":\"%s\"}", r257);
    expect_err(j, PE_TEXT_TOO_LONG);
    g_free(j);
    j = g_strdup_printf(
        "{\"type\":\"leave\",\"room\":\"#a\",\"reason\":\"%s\"}", r257);
    expect_err(j, PE_TEXT_TOO_LONG);
    g_free(j);
    g_free(r256);
    g_free(r257);
}

static void
test_message_token_rules(void **state)
{
    char *t64 = repeat('k', MSG_TOKEN_MAX);
    char *t65 = repeat('k', MSG_TOKEN_MAX + 1);
    char *j;

    (void)state;
    expect_err("{\"type\":\"ping\",\"token\":1}", PE_BAD_FIELD);
    expect_err("{\"type\":\"pong\",\"token\":null}", PE_BAD_FIELD);
    j = g_strdup_printf("{\"type\":\"ping\",\"token\":\"%s\"}", t64);
    expect_ok(j, MSG_PING);
    g_free(j);
    j = g_strdup_printf("{\"type\":\"ping\",\"token\":\"%s\"}", t65);
    expect_err(j, PE_BAD_FIELD);
    g_free(j);
    j = g_strdup_printf("{\"type\":\"pong\",\"token\":\"%s\"}", t65);
    expect_err(j, PE_BAD_FIELD);
    g_free(j);
    g_free(t64);
    g_free(t65);
}

/* A string id or a ping token is echoed back: the text rule applies to it
 * (control characters are refused, tab is allowed). */
static void
expect_token_bad(const char *token_json)
{
    struct msg_request req;
    struct msg_error err;
    int rc;
    char *j = g_strdup_printf("{\"type\":\"ping\",\"token\":%s,"
                              "\"id\":\"t1\"}",
                              token_json);

    rc = parse(j, &req, &err);
    if (rc != -1 || err.code != PE_BAD_FIELD)
        print_error("input: %s\ngot %s (%s)\n", j, proto_err_code(err.code),
                    err.text);
    assert_int_equal(rc, -1);
    assert_int_equal(err.code, PE_BAD_FIELD);
    assert_true(err.text[0] != '\0');
    assert_int_equal(req.type, MSG_PING);
    assert_null(req.token);
    /* the id was fine: the error can carry it */
    assert_non_null(req.id);
    assert_string_equal(req.id->valuestring, "t1");
    msg_request_cleanup(&req);
    g_free(j);
}

static void
expect_token_ok(const char *token_json, const char *want)
{
    struct msg_request req;
    char *j = g_strdup_printf("{\"type\":\"ping\",\"token\":%s}",
                              token_json);

    expect_ok_req(j, MSG_PING, &req);
    assert_string_equal(req.token, want);
    msg_request_cleanup(&req);
    g_free(j);
}

static void
test_message_id_control_chars(void **state)
{
    struct msg_request req;

    (void)state;
    expect_id_bad("\"a\\u0001\"");
    expect_id_bad("\"\\u001f\"");
    expect_id_bad("\"\\n\"");
    expect_id_bad("\"a\\u007f\"");
    expect_id_bad("\"a\x7f\"");              /* raw DEL */
    expect_id_bad("\"\\u0085\"");
    expect_id_bad("\"a\xc2\x85\"");          /* raw U+0085 */
    expect_id_bad("\"\\u009f\"");
    /* tab and what is not a control character are fine */
    expect_id_ok("\"a\\tb\"");
    expect_id_ok("\"\\u00a0\"");
    expect_id_ok("\"\\u007e\"");
    expect_id_ok("\"caf\xc3\xa9\"");

    expect_ok_req("{\"type\":\"list\",\"id\":\"a\\tb\"}", MSG_LIST, &req);
    assert_string_equal(req.id->valuestring, "a\tb");
    msg_request_cleanup(&req);
    /* in any request (expect_id_bad() checks the id is not kept) */
    expect_err("{\"type\":\"ping\",\"token\":\"ok\",\"id\":\"\\u0001\"}",
               PE_BAD_FIELD);
}

static void
test_message_token_control_chars(void **state)
{
    (void)state;
    expect_token_bad("\"a\\u0001\"");
    expect_token_bad("\"a\\r\"");
    expect_token_bad("\"\\u007f\"");
    expect_token_bad("\"a\x7f\"");           /* raw DEL */
    expect_token_bad("\"\\u0085\"");
    expect_token_bad("\"a\xc2\x85\"");       /* raw U+0085 */
    expect_token_bad("\"\\u009f\"");
    expect_token_ok("\"a\\tb\"", "a\tb");
    expect_token_ok("\"\"", "");
    expect_token_ok("\"\\u00a0~\"", "\xc2\xa0~");
    expect_err("{\"type\":\"pong\",\"token\":\"\\u0001\"}", PE_BAD_FIELD);
    /* a NUL anywhere is refused before the id is trusted (see above) */
    expect_err("{\"type\":\"ping\",\"token\":\"\\u0000\"}", PE_BAD_FIELD);
}

/* Names, text and folding */

static void
test_message_valid_names(void **state)
{
    char *s;

    (void)state;
    s = repeat('a', MSG_NICK_MAX);
    assert_true(msg_valid_nick(s));
    g_free(s);
    s = repeat('a', MSG_NICK_MAX + 1);
    assert_false(msg_valid_nick(s));
    g_free(s);
    assert_true(msg_valid_nick("a"));
    assert_true(msg_valid_nick("Zz-_9"));
    assert_false(msg_valid_nick(""));
    assert_false(msg_valid_nick(NULL));
    assert_false(msg_valid_nick("a.b"));
    assert_false(msg_valid_nick("\xc3\xa9"));
    assert_false(msg_valid_nick("#a"));

    s = g_strdup_printf("#%s", "r");
    assert_true(msg_valid_room(s));
    g_free(s);
    s = repeat('#', MSG_ROOM_MAX + 1);
    memset(s + 1, 'r', MSG_ROOM_MAX);
    assert_true(msg_valid_room(s));
    g_free(s);
    s = repeat('#', MSG_ROOM_MAX + 2);
    memset(s + 1, 'r', MSG_ROOM_MAX + 1);
    assert_false(msg_valid_room(s));
    g_free(s);
    assert_false(msg_valid_room("#"));
    assert_false(msg_valid_room("room"));
    assert_false(msg_valid_room(NULL));
    assert_false(msg_valid_room("#a/b"));
}

static void
test_message_valid_text(void **state)
{
    (void)state;
    assert_true(msg_valid_text("hello\tworld", 11));
    assert_true(msg_valid_text("caf\xc3\xa9", 5));
    assert_false(msg_valid_text("a\nb", 3));
    assert_false(msg_valid_text("a\x7f", 2));
    assert_false(msg_valid_text("\xc2\x85", 2));
    assert_false(msg_valid_text("\xc2\x9f", 2));
    assert_true(msg_valid_text("\xc2\xa0", 2));
    assert_false(msg_valid_text("\xff", 1));
    assert_false(msg_valid_text("ab\0c", 4));
    /* len bounds the scan: the newline after it is not looked at */
    assert_true(msg_valid_text("ab\n", 2));
}

static void
test_message_fold(void **state)
{
    char *f;

    (void)state;
    f = msg_fold("#LoBBy-X_9");
    assert_string_equal(f, "#lobby-x_9");
    g_free(f);
    f = msg_fold("\xc3\x89t\xc3\xa9");
    assert_string_equal(f, "\xc3\x89t\xc3\xa9"); /* ASCII only */
    g_free(f);
    assert_null(msg_fold(NULL));
}

static void
test_message_now_ms(void **state)
{
    int64_t a;
    int64_t b;

    (void)state;
    a = msg_now_ms();
    b = msg_now_ms();
    assert_true(a > INT64_C(1600000000000));
    assert_true(b >= a);
}

/* Error codes and type names */

static void
test_message_error_codes(void **state)
{
    int i;

    (void)state;
    assert_null(proto_err_code(PE_NONE));
    assert_null(proto_err_code(PE_COUNT));
    assert_string_equal(proto_err_code(PE_BAD_FRAME), "bad_frame");
    assert_string_equal(proto_err_code(PE_BAD_JSON), "bad_json");
    assert_string_equal(proto_err_code(PE_VERSION_UNSUPPORTED),
                        "version_unsupported");
    assert_string_equal(proto_err_code(PE_NICK_RESERVED), "nick_reserved");
    for (i = PE_NONE + 1; i < PE_COUNT; i++) {
        assert_non_null(proto_err_code((enum proto_err)i));
        assert_int_equal(proto_err_from_code(proto_err_code((enum proto_err)i)),
                         i);
    }
    assert_int_equal(proto_err_from_code("no_such_thing"), PE_NONE);
    assert_int_equal(proto_err_from_code(""), PE_NONE);
    assert_int_equal(proto_err_from_code(NULL), PE_NONE);
}

static void
test_message_error_closes(void **state)
{
    int i;
    int closing = 0;

    (void)state;
    assert_true(proto_err_closes(PE_BAD_FRAME));
    assert_true(proto_err_closes(PE_FRAME_TOO_LARGE));
    assert_true(proto_err_closes(PE_SLOW_CONSUMER));
    assert_true(proto_err_closes(PE_SERVER_FULL));
    assert_true(proto_err_closes(PE_TIMEOUT));
    assert_true(proto_err_closes(PE_ENCRYPTION_REQUIRED));
    assert_true(proto_err_closes(PE_VERSION_UNSUPPORTED));
    assert_true(proto_err_closes(PE_SECURE_FAILED));
    assert_false(proto_err_closes(PE_BAD_JSON));
    assert_false(proto_err_closes(PE_RATE_LIMITED));
    assert_false(proto_err_closes(PE_NONE));
    for (i = PE_NONE; i < PE_COUNT; i++) {
        if (proto_err_closes((enum proto_err)i))
            closing++;
    }
    assert_int_equal(closing, 8);
}

static void
test_message_type_names(void **state)
{
    struct msg_request req;
    char *j;
    int t;

    (void)state;
    assert_null(msg_type_name(MSG_UNKNOWN));
    assert_string_equal(msg_type_name(MSG_HELLO), "hello");
    assert_string_equal(msg_type_name(MSG_QUIT), "quit");
    assert_null(msg_type_name((enum msg_type)(MSG_QUIT + 1)));
    /* every name parses back to its type (fields may still be missing) */
    for (t = MSG_HELLO; t <= MSG_QUIT; t++) {
        struct msg_error err;

        j = g_strdup_printf("{\"type\":\"%s\"}",
                            msg_type_name((enum msg_type)t));
        (void)parse(j, &req, &err);
        assert_int_equal(req.type, t);
        assert_int_not_equal(err.code, PE_UNKNOWN_TYPE);
        msg_request_cleanup(&req);
        g_free(j);
    }
}

static void
test_message_cleanup_is_safe(void **state)
{
    struct msg_request req;
    struct msg_error err;

    (void)state;
    memset(&req, 0, sizeof(req));
    msg_request_cleanup(&req);
    msg_request_cleanup(NULL);
    assert_int_equal(parse("{\"type\":\"list\"}", &req, &err), 0);
    msg_request_cleanup(&req);
    assert_null(req.root);
    msg_request_cleanup(&req);
}

/* Builders */

/* Encode obj, parse it back with plain cJSON and free obj. */
static cJSON *
round_trip(cJSON *obj)
{
    cJSON *back;
    char *s;
    size_t len = 99;

    assert_non_null(obj);
    s = msg_encode(obj, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    assert_null(strchr(s, '\n'));
    back = cJSON_ParseWithLength(s, len);
    assert_non_null(back);
    g_free(s);
    cJSON_Delete(obj);
    return back;
}

static const char *
str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double
num_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static bool
has(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key) != NULL;
}

static void
test_message_build_error_and_ok(void **state)
{
    cJSON *id = cJSON_CreateString("req-1");
    cJSON *o;

    (void)state;
    o = round_trip(
        msg_build_error(PE_BAD_ROOM, "field 'room' is bad", "join", id));
    assert_string_equal(str_of(o, "type"), "error");
    assert_string_equal(str_of(o, "code"), "bad_room");
    assert_string_equal(str_of(o, "message"), "field 'room' is bad");
    assert_string_equal(str_of(o, "request"), "join");
    assert_string_equal(str_of(o, "id"), "req-1");
    cJSON_Delete(o);

    o = round_trip(msg_build_error(PE_BAD_JSON, "x", NULL, NULL));
    assert_false(has(o, "request"));
    assert_false(has(o, "id"));
    cJSON_Delete(o);
    assert_null(msg_build_error(PE_NONE, "x", NULL, NULL));

    o = round_trip(msg_build_ok("leave", id));
    assert_string_equal(str_of(o, "type"), "ok");
    assert_string_equal(str_of(o, "request"), "leave");
    assert_string_equal(str_of(o, "id"), "req-1");
    cJSON_Delete(o);
    cJSON_Delete(id);
}

static void
test_message_build_keeps_large_ids_exact(void **state)
{
    struct msg_request req;
    struct msg_error err;
    cJSON *o;
    char *s;
    size_t len;

    (void)state;
    assert_int_equal(
        parse("{\"type\":\"ping\",\"id\":9007199254740991}", &req, &err), 0);
    o = msg_build_pong(NULL, req.id);
    s = msg_encode(o, &len);
    assert_non_null(strstr(s, "\"id\":9007199254740991"));
    g_free(s);
    o = round_trip(o);
    assert_true(num_of(o, "id") == 9007199254740991.0);
    assert_false(has(o, "token"));
    cJSON_Delete(o);
    msg_request_cleanup(&req);

    assert_int_equal(parse("{\"type\":\"ping\",\"id\":12}", &req, &err), 0);
    o = round_trip(msg_build_pong("tok", req.id));
    assert_true(num_of(o, "id") == 12.0);
    assert_string_equal(str_of(o, "token"), "tok");
    cJSON_Delete(o);
    msg_request_cleanup(&req);
}

static void
test_message_build_message(void **state)
{
    const int64_t ts = INT64_C(1700000000123);
    cJSON *o;
    char *s;
    size_t len;

    (void)state;
    o = round_trip(
        msg_build_message("#a", NULL, "alice", "hi there", false, ts, 42));
    assert_string_equal(str_of(o, "type"), "message");
    assert_string_equal(str_of(o, "room"), "#a");
    assert_string_equal(str_of(o, "from"), "alice");
    assert_string_equal(str_of(o, "text"), "hi there");
    assert_true(num_of(o, "ts") == 1700000000123.0);
    assert_true(num_of(o, "seq") == 42.0);
    assert_false(has(o, "to"));
    assert_false(has(o, "action"));
    cJSON_Delete(o);

    o = round_trip(msg_build_message("#a", NULL, "alice", "waves", true, ts,
                                     INT64_C(9007199254740991)));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "action")));
    assert_true(num_of(o, "seq") == 9007199254740991.0);
    cJSON_Delete(o);

    /* private: "to" instead of "room", and no seq */
    o = msg_build_message(NULL, "bob", "alice", "psst", false, ts, 7);
    s = msg_encode(o, &len);
    assert_non_null(strstr(s, "\"ts\":1700000000123"));
    g_free(s);
    o = round_trip(o);
    assert_string_equal(str_of(o, "to"), "bob");
    assert_false(has(o, "room"));
    assert_false(has(o, "seq"));
    assert_true(num_of(o, "ts") == 1700000000123.0);
    cJSON_Delete(o);

    /* text with characters JSON must escape survives */
    o = round_trip(
        msg_build_message("#a", NULL, "a", "q\"\\\t\xc3\xa9", false, ts, 1));
    assert_string_equal(str_of(o, "text"), "q\"\\\t\xc3\xa9");
    cJSON_Delete(o);
}

static void
test_message_build_events(void **state)
{
    const int64_t ts = INT64_C(1700000000000);
    cJSON *id = cJSON_CreateNumber(5);
    cJSON *o;

    (void)state;
    o = round_trip(msg_build_joined("#a", "bob", ts));
    assert_string_equal(str_of(o, "type"), "joined");
    assert_string_equal(str_of(o, "room"), "#a");
    assert_string_equal(str_of(o, "nick"), "bob");
    assert_true(num_of(o, "ts") == 1700000000000.0);
    cJSON_Delete(o);

    o = round_trip(msg_build_left("#a", "bob", "gone", ts));
    assert_string_equal(str_of(o, "type"), "left");
    assert_string_equal(str_of(o, "reason"), "gone");
    cJSON_Delete(o);
    o = round_trip(msg_build_left("#a", "bob", NULL, ts));
    assert_false(has(o, "reason"));
    cJSON_Delete(o);

    o = round_trip(msg_build_renamed("bob", "Bob", ts, id));
    assert_string_equal(str_of(o, "type"), "renamed");
    assert_string_equal(str_of(o, "old"), "bob");
    assert_string_equal(str_of(o, "new"), "Bob");
    assert_true(num_of(o, "id") == 5.0);
    cJSON_Delete(o);

    o = round_trip(msg_build_topic("#a", "", "bob", ts, NULL));
    assert_string_equal(str_of(o, "type"), "topic");
    assert_string_equal(str_of(o, "topic"), "");
    assert_string_equal(str_of(o, "by"), "bob");
    assert_false(has(o, "id"));
    cJSON_Delete(o);

    o = round_trip(msg_build_quit("bob", "connection reset", ts));
    assert_string_equal(str_of(o, "type"), "quit");
    assert_string_equal(str_of(o, "nick"), "bob");
    assert_string_equal(str_of(o, "reason"), "connection reset");
    cJSON_Delete(o);

    o = round_trip(msg_build_bye(NULL, id));
    assert_string_equal(str_of(o, "type"), "bye");
    assert_false(has(o, "reason"));
    assert_true(num_of(o, "id") == 5.0);
    cJSON_Delete(o);

    o = round_trip(msg_new("rooms", NULL));
    assert_string_equal(str_of(o, "type"), "rooms");
    cJSON_Delete(o);
    assert_null(msg_new(NULL, NULL));
    cJSON_Delete(id);
}

static void
test_message_build_requests_parse_back(void **state)
{
    struct msg_request req;
    struct msg_error err;
    cJSON *o;
    char *s;
    size_t len;

    (void)state;
    o = msg_build_hello("alice", "sockchat/0.1");
    s = msg_encode(o, &len);
    cJSON_Delete(o);
    assert_int_equal(msg_parse((const uint8_t *)s, len, &req, &err), 0);
    assert_int_equal(req.type, MSG_HELLO);
    assert_int_equal(req.version, PROTO_VERSION);
    assert_string_equal(req.nick, "alice");
    assert_string_equal(req.client, "sockchat/0.1");
    msg_request_cleanup(&req);
    g_free(s);

    o = msg_build_ping("t-1");
    s = msg_encode(o, &len);
    cJSON_Delete(o);
    assert_int_equal(msg_parse((const uint8_t *)s, len, &req, &err), 0);
    assert_int_equal(req.type, MSG_PING);
    assert_string_equal(req.token, "t-1");
    msg_request_cleanup(&req);
    g_free(s);

    o = round_trip(msg_build_ping(NULL));
    assert_false(has(o, "token"));
    cJSON_Delete(o);
}

static void
test_message_encode_null(void **state)
{
    size_t len = 5;

    (void)state;
    assert_null(msg_encode(NULL, &len));
    assert_int_equal(len, 0);
}

/* msg_encode_message writes the bytes cJSON would: every escape, both
 * targets, action, ids of every kind, and numbers at their limits. */
static void
test_message_encode_message_matches_cjson(void **state)
{
    static const char *const texts[] = {
        "",
        "hello",
        "quote \" backslash \\ slash /",
        "\b\f\n\r\t and \x01\x1f\x7f",
        "UTF-8: \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "<script>\u2028</script>",
    };
    static const char *const ids[] = {
        NULL, "7", "0", "9007199254740991", "9007199254740992", "1.5", "-3",
        "\"abc\"", "\"q\\\"uote\"", "{\"a\":[1,2]}", "null", "true",
    };
    static const int64_t tss[] = {0, 1795357276315, 999999999999999,
                                  INT64_MAX};
    char big[4097];
    size_t t, i, k, r;

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (t = 0; t <= G_N_ELEMENTS(texts); t++) {
        const char *text = t < G_N_ELEMENTS(texts) ? texts[t] : big;

        for (i = 0; i < G_N_ELEMENTS(ids); i++) {
            cJSON *id = ids[i] ? cJSON_Parse(ids[i]) : NULL;

            assert_true(ids[i] == NULL || id != NULL);
            for (k = 0; k < G_N_ELEMENTS(tss); k++) {
                for (r = 0; r < 2; r++) {
                    const char *room = r == 0 ? "#general" : NULL;
                    const char *to = r == 0 ? NULL : "b\"ob";
                    bool action = (t + k) % 2 == 1;
                    cJSON *ev = msg_build_message(room, to, "al\\ice", text,
                                                  action, tss[k], 42 + k);
                    size_t want_len, got_len;
                    char *want, *got;

                    assert_non_null(ev);
                    assert_true(msg_add_id(ev, id));
                    want = msg_encode(ev, &want_len);
                    got = msg_encode_message(room, to, "al\\ice", text, action,
                                             tss[k], 42 + k, id, &got_len);
                    assert_non_null(got);
                    assert_int_equal(got_len, want_len);
                    assert_string_equal(got, want);
                    g_free(want);
                    g_free(got);
                    cJSON_Delete(ev);
                }
            }
            cJSON_Delete(id);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_parses_hello),
        cmocka_unit_test(test_message_parses_every_type),
        cmocka_unit_test(test_message_ignores_unknown_fields),
        cmocka_unit_test(test_message_allows_json_whitespace),
        cmocka_unit_test(test_message_rejects_invalid_utf8),
        cmocka_unit_test(test_message_rejects_bom),
        cmocka_unit_test(test_message_rejects_non_object),
        cmocka_unit_test(test_message_rejects_trailing_bytes),
        cmocka_unit_test(test_message_rejects_control_bytes_between_tokens),
        cmocka_unit_test(test_message_depth_limit),
        cmocka_unit_test(test_message_rejects_duplicate_keys),
        cmocka_unit_test(test_message_rejects_lone_surrogates),
        cmocka_unit_test(test_message_bad_json_comes_first),
        cmocka_unit_test(test_message_rejects_escaped_nul),
        cmocka_unit_test(test_message_allows_escaped_backslash_u0000),
        cmocka_unit_test(test_message_type_rules),
        cmocka_unit_test(test_message_id_rules),
        cmocka_unit_test(test_message_keeps_envelope_on_field_error),
        cmocka_unit_test(test_message_hello_rules),
        cmocka_unit_test(test_message_room_rules),
        cmocka_unit_test(test_message_nick_rules),
        cmocka_unit_test(test_message_msg_rules),
        cmocka_unit_test(test_message_text_rules),
        cmocka_unit_test(test_message_text_control_chars),
        cmocka_unit_test(test_message_say_action),
        cmocka_unit_test(test_message_topic_rules),
        cmocka_unit_test(test_message_reason_rules),
        cmocka_unit_test(test_message_token_rules),
        cmocka_unit_test(test_message_id_control_chars),
        cmocka_unit_test(test_message_token_control_chars),
        cmocka_unit_test(test_message_valid_names),
        cmocka_unit_test(test_message_valid_text),
        cmocka_unit_test(test_message_fold),
        cmocka_unit_test(test_message_now_ms),
        cmocka_unit_test(test_message_error_codes),
        cmocka_unit_test(test_message_error_closes),
        cmocka_unit_test(test_message_type_names),
        cmocka_unit_test(test_message_cleanup_is_safe),
        cmocka_unit_test(test_message_build_error_and_ok),
        cmocka_unit_test(test_message_build_keeps_large_ids_exact),
        cmocka_unit_test(test_message_build_message),
        cmocka_unit_test(test_message_build_events),
        cmocka_unit_test(test_message_build_requests_parse_back),
        cmocka_unit_test(test_message_encode_null),
        cmocka_unit_test(test_message_encode_message_matches_cjson),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
