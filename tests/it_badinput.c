/*
 * it_badinput.c - table of hostile or malformed input against a real
 * sockchatd (PROTOCOL.md §1, §2, §4, §4.1).
 *
 * For every row three clients meet in a fresh room: an observer O, a speaker
 * S and the bad client B (B stays out of the room in the pre-hello rows).
 * B sends the row's bytes; its answer must be the row's error code (or reply);
 * if the row says the session survives, B proves it with ping/pong, otherwise
 * B must be closed. Then S says a marker: O (and S, and a surviving B) must
 * receive it, and O must have seen nothing else except B's quit with the
 * row's reason when B went away. Rows that need other server options start
 * their own server; the rest share one.
 *
 * Placeholders in a payload: @ROOM@ (the row's room), @ONICK_UP@ (O's nick in
 * upper case), @X<n>@ (n times 'x'), @NEST<n>@ (n nested objects).
 */
#include "itlib.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

enum act {
    ACT_FRAME,          /* payload framed by the harness */
    ACT_FRAME_SPLIT,    /* framed, written one byte at a time */
    ACT_RAW,            /* bytes sent as they are */
    ACT_RAW_CLOSE,      /* bytes, then a normal close */
    ACT_RAW_RESET,      /* bytes (maybe none), then an abort (it_reset) */
    ACT_DRIP,           /* bytes, then one byte every 200 ms, never a frame */
    ACT_FLOOD,          /* payload framed FLOOD_N times back to back */
    ACT_NEVER_READ,     /* B stops reading while S floods the room */
};

#define FLOOD_N 40
#define F_PRE 0x1       /* B never says hello: not registered, not in room */
#define F_FAST 0x2      /* the answer is due at once (decided from a header) */

struct bad_case {
    const char *name;
    enum act act;
    const char *bytes;
    size_t len;         /* 0: strlen(bytes) */
    const char *code;   /* expected error code, NULL for none */
    const char *reply;  /* expected reply type when there is no error */
    bool survives;
    const char *quit_reason;    /* seen by O when a registered B goes */
    const char *srv;    /* own server's options, NULL: the shared server */
    unsigned flags;
    const char *req;    /* the request type, checked against error.request */
    int id;             /* non-zero: the error must carry this id */
    bool no_id;         /* the id itself is bad: the error must carry none */
};

#define B(s) .bytes = (s), .len = sizeof(s) - 1
#define PE "protocol error"

static const struct bad_case cases[] = {
    /* ---- framing (§1) */
    { "frame_length_0", ACT_RAW, B("\0\0\0\0"), .code = "bad_frame",
      .quit_reason = PE, .flags = F_FAST },
    { "frame_length_max_plus_1_header_only", ACT_RAW, B("\x00\x01\x00\x01"),
      .code = "frame_too_large", .quit_reason = PE, .flags = F_FAST },
    { "frame_length_4GiB_header_only", ACT_RAW, B("\xff\xff\xff\xff"),
      .code = "frame_too_large", .quit_reason = PE, .flags = F_FAST },
    { "frame_truncated_then_close", ACT_RAW_CLOSE,
      B("\x00\x00\x00\x64{\"type\":\"pi"), .quit_reason = "connection closed" },
    { "frame_partial_held_slowloris", ACT_DRIP, B("\x00\x00\x03\xe8{"),
      .code = "timeout", .quit_reason = "timeout", .srv = "--idle-timeout 1" },
    { "frame_partial_then_reset", ACT_RAW_RESET,
      B("\x00\x00\x00\x64{\"ty"), .quit_reason = IT_REASON_RESET },
    { "reset_mid_session", ACT_RAW_RESET, B(""),
      .quit_reason = IT_REASON_RESET },
    { "frame_split_bytewise_ok", ACT_FRAME_SPLIT,
      B("{\"type\":\"ping\",\"token\":\"split\"}"), .reply = "pong",
      .survives = true },

    /* ---- JSON (§1, §4.1) */
    { "json_invalid", ACT_FRAME, B("{\"type\":\"ping\""), .code = "bad_json",
      .survives = true },
    { "json_not_json", ACT_FRAME, B("hello"), .code = "bad_json",
      .survives = true },
    { "json_invalid_utf8_ff", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\xff\"}"), .code = "bad_json",
      .survives = true },
    { "json_overlong_utf8", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\xc0\xaf\"}"), .code = "bad_json",
      .survives = true },
    { "json_utf8_encoded_surrogate", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\xed\xa0\x80\"}"), .code = "bad_json",
      .survives = true },
    { "json_truncated_utf8", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\xe2\x82\"}"), .code = "bad_json",
      .survives = true },
    { "json_bom", ACT_FRAME, B("\xef\xbb\xbf{\"type\":\"ping\"}"),
      .code = "bad_json", .survives = true },
    { "json_depth_17", ACT_FRAME, B("{\"type\":\"ping\",\"x\":@NEST16@}"),
      .code = "bad_json", .survives = true },
    { "json_depth_16_ok", ACT_FRAME,
      B("{\"type\":\"ping\",\"x\":@NEST15@}"), .reply = "pong",
      .survives = true },
    { "json_top_array", ACT_FRAME, B("[{\"type\":\"ping\"}]"),
      .code = "bad_json", .survives = true },
    { "json_top_number", ACT_FRAME, B("1"), .code = "bad_json",
      .survives = true },
    { "json_top_string", ACT_FRAME, B("\"ping\""), .code = "bad_json",
      .survives = true },
    { "json_top_null", ACT_FRAME, B("null"), .code = "bad_json",
      .survives = true },
    { "json_trailing_bytes", ACT_FRAME, B("{\"type\":\"ping\"}x"),
      .code = "bad_json", .survives = true },
    { "json_two_objects", ACT_FRAME,
      B("{\"type\":\"ping\"}{\"type\":\"ping\"}"), .code = "bad_json",
      .survives = true },
    { "json_trailing_nul", ACT_FRAME, B("{\"type\":\"ping\"}\0"),
      .code = "bad_json", .survives = true },
    { "json_trailing_whitespace_ok", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"ws\"} \t\r\n "), .reply = "pong",
      .survives = true },
    { "json_duplicate_type", ACT_FRAME,
      B("{\"type\":\"ping\",\"type\":\"ping\"}"), .code = "bad_json",
      .survives = true },
    { "json_duplicate_key", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"a\",\"token\":\"b\"}"),
      .code = "bad_json", .survives = true },
    { "json_lone_high_surrogate", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\\ud800\"}"), .code = "bad_json",
      .survives = true },
    { "json_lone_low_surrogate", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"a\\udc00b\"}"), .code = "bad_json",
      .survives = true },
    { "json_surrogate_pair_ok", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\\ud83d\\ude00\"}"), .reply = "pong",
      .survives = true },

    /* ---- envelope and registration (§2, §3, §4.1) */
    { "type_missing", ACT_FRAME, B("{\"token\":\"x\",\"id\":7}"),
      .code = "missing_field", .survives = true, .id = 7 },
    { "type_not_string", ACT_FRAME, B("{\"type\":5,\"id\":7}"),
      .code = "bad_field", .survives = true, .id = 7 },
    { "type_null", ACT_FRAME, B("{\"type\":null}"), .code = "bad_field",
      .survives = true },
    { "type_unknown", ACT_FRAME, B("{\"type\":\"frobnicate\",\"id\":7}"),
      .code = "unknown_type", .survives = true, .id = 7 },
    { "type_unknown_before_hello", ACT_FRAME,
      B("{\"type\":\"frobnicate\",\"id\":7}"), .code = "unknown_type",
      .survives = true, .flags = F_PRE, .id = 7 },
    { "join_before_hello", ACT_FRAME,
      B("{\"type\":\"join\",\"room\":\"#x\",\"id\":7}"),
      .code = "not_registered", .survives = true, .flags = F_PRE,
      .req = "join", .id = 7 },
    { "say_before_hello", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"hi\"}"),
      .code = "not_registered", .survives = true, .flags = F_PRE,
      .req = "say" },
    { "ping_before_hello_ok", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"pre\"}"), .reply = "pong",
      .survives = true, .flags = F_PRE },
    { "quit_before_hello", ACT_FRAME, B("{\"type\":\"quit\"}"),
      .reply = "bye", .flags = F_PRE },
    { "pong_unsolicited", ACT_FRAME, B("{\"type\":\"pong\",\"token\":\"u\"}"),
      .survives = true },
    { "hello_twice", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":1,\"nick\":\"@X10@\",\"id\":7}"),
      .code = "already_registered", .survives = true, .req = "hello",
      .id = 7 },
    { "hello_version_2", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":2,\"nick\":\"vv2\"}"),
      .code = "version_unsupported", .flags = F_PRE },
    { "hello_version_string", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":\"1\",\"nick\":\"vvs\"}"),
      .code = "bad_field", .survives = true, .flags = F_PRE },
    { "hello_missing_nick", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":1,\"id\":7}"),
      .code = "missing_field", .survives = true, .flags = F_PRE, .id = 7 },
    { "hello_missing_version", ACT_FRAME,
      B("{\"type\":\"hello\",\"nick\":\"nov\"}"), .code = "missing_field",
      .survives = true, .flags = F_PRE },
    { "hello_nick_25_chars", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":1,\"nick\":\"@X25@\"}"),
      .code = "bad_nick", .survives = true, .flags = F_PRE },
    { "hello_nick_space", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":1,\"nick\":\"a b\"}"),
      .code = "bad_nick", .survives = true, .flags = F_PRE },
    { "hello_nick_empty", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":1,\"nick\":\"\"}"),
      .code = "bad_nick", .survives = true, .flags = F_PRE },
    { "hello_nick_non_ascii", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":1,\"nick\":\"n\xc3\xaf" "ck\"}"),
      .code = "bad_nick", .survives = true, .flags = F_PRE },
    { "hello_nick_in_use_other_case", ACT_FRAME,
      B("{\"type\":\"hello\",\"version\":1,\"nick\":\"@ONICK_UP@\","
        "\"id\":7}"),
      .code = "nick_in_use", .survives = true, .flags = F_PRE, .id = 7 },

    /* ---- nick, rooms, text (§2, §4.1) */
    { "nick_25_chars", ACT_FRAME, B("{\"type\":\"nick\",\"nick\":\"@X25@\"}"),
      .code = "bad_nick", .survives = true, .req = "nick" },
    { "nick_bad_char", ACT_FRAME, B("{\"type\":\"nick\",\"nick\":\"a.b\"}"),
      .code = "bad_nick", .survives = true },
    { "nick_not_string", ACT_FRAME, B("{\"type\":\"nick\",\"nick\":5}"),
      .code = "bad_field", .survives = true },
    { "nick_in_use_other_case", ACT_FRAME,
      B("{\"type\":\"nick\",\"nick\":\"@ONICK_UP@\",\"id\":7}"),
      .code = "nick_in_use", .survives = true, .id = 7 },
    { "join_missing_room", ACT_FRAME, B("{\"type\":\"join\",\"id\":7}"),
      .code = "missing_field", .survives = true, .req = "join", .id = 7 },
    { "join_room_not_string", ACT_FRAME, B("{\"type\":\"join\",\"room\":5}"),
      .code = "bad_field", .survives = true },
    { "join_room_without_hash", ACT_FRAME,
      B("{\"type\":\"join\",\"room\":\"room\"}"), .code = "bad_room",
      .survives = true },
    { "join_room_33_chars", ACT_FRAME,
      B("{\"type\":\"join\",\"room\":\"#@X33@\"}"), .code = "bad_room",
      .survives = true },
    { "join_room_hash_only", ACT_FRAME, B("{\"type\":\"join\",\"room\":\"#\"}"),
      .code = "bad_room", .survives = true },
    { "join_room_bad_char", ACT_FRAME,
      B("{\"type\":\"join\",\"room\":\"#a b\"}"), .code = "bad_room",
      .survives = true },
    { "join_too_many_rooms", ACT_FRAME,
      B("{\"type\":\"join\",\"room\":\"#another\",\"id\":7}"),
      .code = "too_many_rooms", .survives = true, .srv = "--max-rooms 1",
      .req = "join", .id = 7 },
    { "say_missing_text", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\"}"), .code = "missing_field",
      .survives = true },
    { "say_text_not_string", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":[\"a\"]}"),
      .code = "bad_field", .survives = true },
    { "say_text_4097_bytes", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"@X4097@\","
        "\"id\":7}"),
      .code = "text_too_long", .survives = true, .req = "say", .id = 7 },
    { "say_text_empty", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_newline", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"a\\nb\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_carriage_return", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"a\\rb\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_control_u0001", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"a\\u0001b\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_del_raw", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"a\x7f\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_del_escaped", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"\\u007f\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_c1_u0085_raw", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"a\xc2\x85\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_c1_u009f_escaped", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"\\u009f\"}"),
      .code = "bad_field", .survives = true },
    { "say_text_nul_escaped", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"a\\u0000b\"}"),
      .code = "bad_field", .survives = true },
    { "say_action_not_bool", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"@ROOM@\",\"text\":\"hi\","
        "\"action\":\"yes\"}"),
      .code = "bad_field", .survives = true },
    { "say_not_in_room", ACT_FRAME,
      B("{\"type\":\"say\",\"room\":\"#nowhere\",\"text\":\"hi\",\"id\":7}"),
      .code = "not_in_room", .survives = true, .req = "say", .id = 7 },
    { "msg_missing_to", ACT_FRAME, B("{\"type\":\"msg\",\"text\":\"hi\"}"),
      .code = "missing_field", .survives = true },
    { "msg_to_bad_nick", ACT_FRAME,
      B("{\"type\":\"msg\",\"to\":\"no one\",\"text\":\"hi\"}"),
      .code = "bad_nick", .survives = true },
    { "msg_to_unknown_nick", ACT_FRAME,
      B("{\"type\":\"msg\",\"to\":\"nobody_here\",\"text\":\"hi\"}"),
      .code = "no_such_nick", .survives = true },
    { "topic_257_bytes", ACT_FRAME,
      B("{\"type\":\"topic\",\"room\":\"@ROOM@\",\"topic\":\"@X257@\"}"),
      .code = "text_too_long", .survives = true },
    { "topic_not_string", ACT_FRAME,
      B("{\"type\":\"topic\",\"room\":\"@ROOM@\",\"topic\":false}"),
      .code = "bad_field", .survives = true },
    { "leave_reason_not_string", ACT_FRAME,
      B("{\"type\":\"leave\",\"room\":\"@ROOM@\",\"reason\":{}}"),
      .code = "bad_field", .survives = true },
    { "who_no_such_room", ACT_FRAME,
      B("{\"type\":\"who\",\"room\":\"#never_made\"}"),
      .code = "no_such_room", .survives = true },

    /* ---- id (§4.1) */
    { "id_negative", ACT_FRAME, B("{\"type\":\"list\",\"id\":-1}"),
      .code = "bad_field", .survives = true },
    { "id_fraction", ACT_FRAME, B("{\"type\":\"list\",\"id\":1.5}"),
      .code = "bad_field", .survives = true },
    { "id_2_pow_53", ACT_FRAME,
      B("{\"type\":\"list\",\"id\":9007199254740992}"), .code = "bad_field",
      .survives = true },
    { "id_1e300", ACT_FRAME, B("{\"type\":\"list\",\"id\":1e300}"),
      .code = "bad_field", .survives = true },
    { "id_true", ACT_FRAME, B("{\"type\":\"list\",\"id\":true}"),
      .code = "bad_field", .survives = true },
    { "id_null", ACT_FRAME, B("{\"type\":\"list\",\"id\":null}"),
      .code = "bad_field", .survives = true },
    { "id_object", ACT_FRAME, B("{\"type\":\"list\",\"id\":{}}"),
      .code = "bad_field", .survives = true },
    { "id_array", ACT_FRAME, B("{\"type\":\"list\",\"id\":[1]}"),
      .code = "bad_field", .survives = true },
    { "id_string_65_bytes", ACT_FRAME,
      B("{\"type\":\"list\",\"id\":\"@X65@\"}"), .code = "bad_field",
      .survives = true },
    /* a string id is echoed back: no control characters (tab is text) */
    { "id_string_control_u0001", ACT_FRAME,
      B("{\"type\":\"list\",\"id\":\"a\\u0001\"}"), .code = "bad_field",
      .survives = true, .no_id = true },
    { "id_string_del_escaped", ACT_FRAME,
      B("{\"type\":\"list\",\"id\":\"\\u007f\"}"), .code = "bad_field",
      .survives = true, .no_id = true },
    { "id_string_c1_u0085_raw", ACT_FRAME,
      B("{\"type\":\"list\",\"id\":\"a\xc2\x85\"}"), .code = "bad_field",
      .survives = true, .no_id = true },
    { "id_string_tab_ok", ACT_FRAME,
      B("{\"type\":\"list\",\"id\":\"a\\tb\"}"), .reply = "rooms",
      .survives = true },

    /* ---- ping token (§3, §4.1): echoed back, so the text rule applies */
    { "ping_token_control_u0001", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"a\\u0001\",\"id\":7}"),
      .code = "bad_field", .survives = true, .req = "ping", .id = 7 },
    { "ping_token_del_raw", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"a\x7f\"}"), .code = "bad_field",
      .survives = true },
    { "ping_token_c1_u0085_escaped", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\\u0085\",\"id\":7}"),
      .code = "bad_field", .survives = true, .id = 7 },
    { "ping_token_control_before_hello", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"\\u007f\"}"), .code = "bad_field",
      .survives = true, .flags = F_PRE },
    { "ping_token_tab_ok", ACT_FRAME,
      B("{\"type\":\"ping\",\"token\":\"a\\tb\"}"), .reply = "pong",
      .survives = true },

    /* ---- load (§4.1, SERVER-CLI) */
    { "flood_rate_limited", ACT_FLOOD, B("{\"type\":\"list\"}"),
      .code = "rate_limited", .survives = true },
    { "never_reads_slow_consumer", ACT_NEVER_READ, B(""),
      .code = "slow_consumer", .quit_reason = "slow consumer",
      .srv = "--max-queue 131072 --rate 0" },
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static struct it_server *shared;

static void
free_gstring(gpointer p)
{
    g_string_free(p, TRUE);
}

/* Expands the placeholders described at the top. */
static GString *
expand(const struct bad_case *c, const char *room, const char *onick)
{
    size_t len = c->len != 0 ? c->len : strlen(c->bytes);
    GString *out = g_string_sized_new(len + 64);
    size_t i = 0;

    while (i < len) {
        const char *at = c->bytes + i, *end;
        size_t tl;
        unsigned long n;
        char *tok;

        if (*at != '@' ||
            (end = memchr(at + 1, '@', len - i - 1)) == NULL) {
            g_string_append_c(out, *at);
            i++;
            continue;
        }
        tl = (size_t)(end - at - 1);
        tok = g_strndup(at + 1, tl);
        if (strcmp(tok, "ROOM") == 0) {
            g_string_append(out, room);
        } else if (strcmp(tok, "ONICK_UP") == 0) {
            char *up = g_ascii_strup(onick, -1);

            g_string_append(out, up);
            g_free(up);
        } else if (tok[0] == 'X' && (n = strtoul(tok + 1, NULL, 10)) > 0) {
            unsigned long k;

            for (k = 0; k < n; k++)
                g_string_append_c(out, 'x');
        } else if (g_str_has_prefix(tok, "NEST")) {
            unsigned long k;

            n = strtoul(tok + 4, NULL, 10);
            for (k = 0; k + 1 < n; k++)
                g_string_append(out, "{\"a\":");
            g_string_append(out, "{}");
            for (k = 0; k + 1 < n; k++)
                g_string_append_c(out, '}');
        } else {
            g_string_append_len(out, at, (gssize)tl + 2);
        }
        g_free(tok);
        i += tl + 2;
    }
    return out;
}

/*
 * Reads fd until S's marker arrives; the only other message allowed is one
 * quit for B (required when want_quit), with the row's reason.
 */
static void
expect_marker(int fd, const char *who, const char *snick, const char *marker,
    const char *bnick, bool want_quit, const char *reason)
{
    bool got_marker = false, got_quit = false;
    int k;

    for (k = 0; k < 4 && !(got_marker && (got_quit || !want_quit)); k++) {
        enum it_rx why;
        cJSON *x = it_recv_msg(fd, it_ms(5000), &why);
        const cJSON *m;

        if (x == NULL)
            fail_msg("%s: waiting for the marker%s, got %s", who,
                want_quit && !got_quit ? " and B's quit" : "",
                it_rx_name(why));
        m = it_keep(x);
        if (!got_marker && strcmp(it_str(m, "type"), "message") == 0 &&
            strcmp(it_str(m, "from"), snick) == 0 &&
            strcmp(it_str(m, "text"), marker) == 0) {
            got_marker = true;
        } else if (want_quit && !got_quit &&
            strcmp(it_str(m, "type"), "quit") == 0 &&
            strcmp(it_str(m, "nick"), bnick) == 0) {
            if (reason != NULL && !it_one_of(reason, it_str(m, "reason")))
                fail_msg("%s: B's quit reason is \"%s\", expected \"%s\": %s",
                    who, it_str(m, "reason"), reason, it_json(m));
            got_quit = true;
        } else {
            fail_msg("%s: affected by B's input: got %s", who, it_json(m));
        }
    }
    if (!got_marker || (want_quit && !got_quit))
        fail_msg("%s: marker %s, quit %s", who, got_marker ? "seen" : "lost",
            got_quit ? "seen" : "missing");
}

/* Checks an error from B against the row. */
static void
check_error(const struct bad_case *c, const cJSON *e)
{
    if (c->id != 0 && it_int(e, "id") != c->id)
        fail_msg("error does not carry id %d: %s", c->id, it_json(e));
    if (c->no_id && it_has(e, "id"))
        fail_msg("error echoes the refused id: %s", it_json(e));
    if (c->req != NULL && it_has(e, "request") &&
        strcmp(it_str(e, "request"), c->req) != 0)
        fail_msg("error names request \"%s\", expected \"%s\"",
            it_str(e, "request"), c->req);
}

static void
do_drip(const struct bad_case *c, int b)
{
    int64_t deadline = it_now_ms() + it_ms(12000);
    bool got_ping = false, got_timeout = false, closed = false;
    const cJSON *e = NULL;
    int k;

    (void)c;
    for (k = 0; k < 600 && !closed && it_now_ms() < deadline; k++) {
        enum it_rx why;
        cJSON *x;

        if (!got_timeout)
            (void)it_send_raw(b, "x", 1);
        x = it_recv_msg(b, 200, &why);
        if (x == NULL) {
            closed = why == IT_RX_CLOSED || why == IT_RX_RESET;
            if (why == IT_RX_BAD)
                fail_msg("B: malformed frame from the server");
            continue;
        }
        it_keep(x);
        if (strcmp(it_str(x, "type"), "ping") == 0 && !got_timeout) {
            got_ping = true;
        } else if (strcmp(it_str(x, "type"), "error") == 0 &&
            strcmp(it_str(x, "code"), "timeout") == 0) {
            got_timeout = true;
            e = x;
        } else {
            fail_msg("B (slowloris): unexpected %s", it_json(x));
        }
    }
    if (!got_ping)
        fail_msg("B (slowloris): no keepalive ping while holding a partial "
            "frame");
    if (!got_timeout)
        fail_msg("B (slowloris): no timeout error after %d drips", k);
    if (!closed)
        fail_msg("B (slowloris): not closed after timeout");
    assert_string_equal(it_str(e, "type"), "error");
}

static void
do_flood(const struct bad_case *c, int b, const char *payload, size_t len)
{
    int i, limited = 0, answered = 0;

    (void)c;
    for (i = 0; i < FLOOD_N; i++)
        assert_int_equal(it_send_frame(b, payload, len), 0);
    for (i = 0; i < FLOOD_N; i++) {
        enum it_rx why;
        cJSON *x = it_recv_msg(b, it_ms(5000), &why);
        const cJSON *m;

        if (x == NULL)
            fail_msg("flood: request %d of %d unanswered: %s", i + 1, FLOOD_N,
                it_rx_name(why));
        m = it_keep(x);
        if (strcmp(it_str(m, "type"), "rooms") == 0)
            answered++;
        else if (strcmp(it_str(m, "type"), "error") == 0 &&
            strcmp(it_str(m, "code"), "rate_limited") == 0)
            limited++;
        else
            fail_msg("flood: unexpected %s", it_json(m));
    }
    if (limited == 0)
        fail_msg("flood: %d requests in a burst, none rate_limited", FLOOD_N);
    assert_true(answered >= 1);
}

static void
do_never_read(const struct bad_case *c, int s, int o, int b,
    const char *room, const char *bnick)
{
    const cJSON *q;
    bool closed = false;
    int i;

    q = it_flood_until_quit(s, o, room, bnick);
    if (strcmp(it_str(q, "reason"), c->quit_reason) != 0)
        fail_msg("quit reason \"%s\", expected \"%s\"", it_str(q, "reason"),
            c->quit_reason);
    /* B: what fitted, slow_consumer at best, then a close */
    it_set_passive(b, false);
    for (i = 0; i < 100000 && !closed; i++) {
        enum it_rx why;
        cJSON *x = it_recv_msg(b, it_ms(5000), &why);

        if (x == NULL) {
            if (why == IT_RX_TIMEOUT)
                fail_msg("never-reading client not closed");
            closed = true;
            break;
        }
        if (strcmp(it_str(x, "type"), "error") == 0 &&
            strcmp(it_str(x, "code"), "slow_consumer") != 0)
            fail_msg("never-reading client got %s", it_json(it_keep(x)));
        cJSON_Delete(x);
    }
    assert_true(closed);
}

static void
run_case(void **state)
{
    const struct bad_case *c = *state;
    struct it_server *own = NULL, *srv = shared;
    const char *room = it_uniq("#bad");
    const char *marker = it_uniq("marker-");
    const char *onick, *snick, *bnick;
    bool pre = (c->flags & F_PRE) != 0, b_open = true, want_quit;
    GString *payload;
    int o, s, b;
    int64_t t0;

    if (c->srv != NULL) {
        own = it_server_start_str(c->srv);
        if (own == NULL)
            fail_msg("cannot start sockchatd %s", c->srv);
        srv = own;
    }
    assert_non_null(srv);

    /* O and S in the room; B too unless pre-hello */
    o = it_register(srv, it_uniq("o"));
    onick = it_own(g_strdup(it_nick(o)));
    it_join(o, room);
    s = it_register(srv, it_uniq("s"));
    snick = it_own(g_strdup(it_nick(s)));
    it_join(s, room);
    it_expect_joined(o, room, snick);
    b = it_connect_rcvbuf(srv, c->act == ACT_NEVER_READ ? 4096 : 0);
    assert_true(b >= 0);
    if (!pre) {
        it_hello(b, it_uniq("b"));
        it_join(b, room);
        it_expect_joined(o, room, it_nick(b));
        it_expect_joined(s, room, it_nick(b));
    }
    bnick = it_own(g_strdup(it_nick(b)));
    payload = it_defer(free_gstring, expand(c, room, onick));

    /* B's input */
    t0 = it_now_ms();
    switch (c->act) {
    case ACT_FRAME:
        assert_int_equal(it_send_frame(b, payload->str, payload->len), 0);
        break;
    case ACT_FRAME_SPLIT: {
        GString *f = it_defer(free_gstring, g_string_new(NULL));
        size_t i;

        g_string_append_c(f, (char)(payload->len >> 24));
        g_string_append_c(f, (char)(payload->len >> 16));
        g_string_append_c(f, (char)(payload->len >> 8));
        g_string_append_c(f, (char)payload->len);
        g_string_append_len(f, payload->str, (gssize)payload->len);
        for (i = 0; i < f->len; i++) {
            assert_int_equal(it_send_raw(b, f->str + i, 1), 0);
            it_pump(2);
        }
        break;
    }
    case ACT_RAW:
        assert_int_equal(it_send_raw(b, payload->str, payload->len), 0);
        break;
    case ACT_RAW_CLOSE:
        assert_int_equal(it_send_raw(b, payload->str, payload->len), 0);
        it_close(b);
        b_open = false;
        break;
    case ACT_RAW_RESET:
        if (payload->len > 0)
            assert_int_equal(it_send_raw(b, payload->str, payload->len), 0);
        it_pump(20);    /* let the server read the bytes first */
        it_reset(b);
        b_open = false;
        break;
    case ACT_DRIP:
        it_set_autopong(b, false);  /* a pong would land inside the frame */
        assert_int_equal(it_send_raw(b, payload->str, payload->len), 0);
        do_drip(c, b);
        b_open = false;
        break;
    case ACT_FLOOD:
        do_flood(c, b, payload->str, payload->len);
        break;
    case ACT_NEVER_READ:
        it_set_passive(b, true);
        do_never_read(c, s, o, b, room, bnick);
        b_open = false;
        break;
    }

    /* B's answer, then alive or closed */
    if (b_open && c->act != ACT_FLOOD) {
        if (c->code != NULL) {
            const cJSON *e = it_expect_error(b, c->code);

            check_error(c, e);
            if ((c->flags & F_FAST) != 0 && it_now_ms() - t0 > it_ms(1000))
                fail_msg("%s took %lld ms: the header alone decides it",
                    c->code, (long long)(it_now_ms() - t0));
        } else if (c->reply != NULL) {
            it_expect_type(b, c->reply);
        } else {
            it_expect_silence(b, 200);
        }
    }
    if (b_open) {
        if (c->survives)
            it_ping(b);
        else
            it_expect_closed(b);
    }

    /* the room is unaffected */
    want_quit = !pre && !c->survives && c->act != ACT_NEVER_READ;
    assert_int_equal(it_send_json(s, "{\"type\":\"say\",\"room\":\"%s\","
        "\"text\":\"%s\"}", room, marker), 0);
    expect_marker(s, "S", snick, marker, bnick, want_quit, c->quit_reason);
    expect_marker(o, "O", snick, marker, bnick, want_quit, c->quit_reason);
    if (!pre && c->survives)
        expect_marker(b, "B", snick, marker, bnick, false, NULL);
    it_ping(o);

    if (own != NULL)
        assert_int_equal(it_server_stop(own), 0);
}

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

static void
test_badinput_shared_server_exits_cleanly(void **state)
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
    struct CMUnitTest *tests = g_new0(struct CMUnitTest, N_CASES + 1);
    size_t i;
    int rc;

    for (i = 0; i < N_CASES; i++) {
        tests[i].name = cases[i].name;
        tests[i].test_func = run_case;
        tests[i].teardown_func = cleanup;
        tests[i].initial_state = (void *)(uintptr_t)&cases[i];
    }
    tests[N_CASES].name = "test_badinput_shared_server_exits_cleanly";
    tests[N_CASES].test_func = test_badinput_shared_server_exits_cleanly;
    tests[N_CASES].teardown_func = cleanup;

    it_init();
    rc = _cmocka_run_group_tests("it_badinput", tests, N_CASES + 1,
        group_setup, group_teardown);
    if (it_bad_stops() != 0) {
        fprintf(stderr, "it_badinput: %d server run(s) ended with a non-zero "
            "status\n", it_bad_stops());
        if (rc == 0)
            rc = 1;
    }
    g_free(tests);
    return rc != 0 ? 1 : 0;
}
