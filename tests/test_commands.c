/* test_commands.c - tests for server/commands.c through commands.h: the
 * room and members replies fit max_frame (PROTOCOL.md section 4.1), keep
 * the newest history oldest first, and say "truncated": true when they cut.
 *
 * commands.c calls into server.c; this file stubs those functions (see
 * "Stubs" below) so that commands.c links without sockets. Members are
 * struct client values with only nick set: commands.c reads nothing else
 * of a member (nick_of()). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "commands.h"
#include "err.h"
#include "frame.h"
#include "message.h"
#include "rooms.h"
#include "server.h"

/* ---- Stubs for server.c -------------------------------------------------
 * Only what commands.c references. There is no struct server: c->srv is
 * NULL, and the stubs use the test's config and rooms below. Everything
 * queued for a client is recorded, encoded, in sent[]. */

static struct server_config stub_cfg;
static struct rooms *stub_rooms;
static GPtrArray *sent; /* char *: encoded frames given to client_send* */

const struct server_config *
server_cfg(const struct server *s)
{
    (void)s;
    return &stub_cfg;
}

struct rooms *
server_rooms(struct server *s)
{
    (void)s;
    return stub_rooms;
}

struct client *
server_find_nick(struct server *s, const char *nick)
{
    (void)s;
    (void)nick;
    return NULL;
}

void
server_set_nick(struct server *s, struct client *c, const char *nick)
{
    (void)s;
    g_free(c->nick);
    c->nick = g_strdup(nick);
}

bool
client_send_raw(struct client *c, const char *json, size_t len)
{
    (void)c;
    g_ptr_array_add(sent, g_strndup(json, len));
    return true;
}

void
client_start_sealing(struct client *c, struct secure_session *sec)
{
    c->sec = sec; /* no queue here: every reply was "sent" already */
}

bool
client_send_blob(struct client *c, struct frame_blob *b)
{
    return client_send_raw(c, (const char *)frame_blob_data(b) + FRAME_HDR,
                           frame_blob_size(b) - FRAME_HDR);
}

bool
client_send(struct client *c, const cJSON *obj)
{
    size_t len;
    char *json = msg_encode(obj, &len);
    bool ok;

    assert_non_null(json);
    ok = client_send_raw(c, json, len);
    g_free(json);
    return ok;
}

void
client_send_error(struct client *c, enum proto_err code, const char *text,
                  const char *request, const cJSON *id)
{
    cJSON *e = msg_build_error(code, text, request, id);

    client_send(c, e);
    cJSON_Delete(e);
}

void
server_send_room(struct server *s, struct room *r, const cJSON *obj,
                 const struct client *except)
{
    (void)s;
    (void)r;
    (void)obj;
    (void)except;
}

void
server_send_peers(struct server *s, struct client *c, const cJSON *obj,
                  bool include_self)
{
    (void)s;
    (void)c;
    (void)obj;
    (void)include_self;
}

void
client_close(struct client *c, const char *reason)
{
    (void)reason;
    c->closing = true;
}

int64_t
server_now(void)
{
    return 0;
}

/* Plaintext sessions only: no identity, no reserved nicks, no seal. */
const struct identity *
server_identity(const struct server *s)
{
    (void)s;
    return NULL;
}

struct identity_nicks *
server_nicks(struct server *s)
{
    (void)s;
    return NULL;
}

size_t
client_payload_max(const struct client *c)
{
    (void)c;
    return stub_cfg.max_frame;
}

size_t
server_event_max(const struct server *s)
{
    (void)s;
    return stub_cfg.max_frame;
}

/* ---- Helpers ------------------------------------------------------------ */

#define ROOM_NAME "#big"

static int
setup(void **state)
{
    (void)state;
    memset(&stub_cfg, 0, sizeof(stub_cfg));
    stub_cfg.max_frame = 1024;
    stub_cfg.max_rooms = 10;
    stub_cfg.rate = 0; /* no limit */
    stub_rooms = rooms_new(16, 1000);
    sent = g_ptr_array_new_with_free_func(g_free);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    rooms_free(stub_rooms);
    stub_rooms = NULL;
    g_ptr_array_unref(sent);
    sent = NULL;
    return 0;
}

/* n members with nicks of 24 characters, "u0000...0007" (g_free them with
 * free_clients). */
static struct client *
make_clients(size_t n)
{
    struct client *cs = g_new0(struct client, n);
    size_t i;

    for (i = 0; i < n; i++)
        cs[i].nick = g_strdup_printf("u%023zu", i);
    return cs;
}

static void
free_clients(struct client *cs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        g_free(cs[i].nick);
    g_free(cs);
}

static struct room *
make_room(size_t n_members, struct client *cs, size_t n_history,
          size_t text_len)
{
    struct room *r = NULL;
    char *text = g_strnfill(text_len, 'x');
    size_t i;

    assert_int_equal(rooms_get_or_create(stub_rooms, ROOM_NAME, &r), CHAT_OK);
    room_set_topic(r, "what we talk about");
    for (i = 0; i < n_members; i++)
        assert_true(room_add_member(stub_rooms, r, &cs[i]));
    for (i = 0; i < n_history; i++) {
        cJSON *ev =
            msg_build_message(r->name, NULL, "someone", text, false,
                              1700000000000 + (int64_t)i, room_next_seq(r));
        size_t len;
        char *json = msg_encode(ev, &len);

        assert_non_null(json);
        room_push_history_take(stub_rooms, r, json);
        cJSON_Delete(ev);
    }
    g_free(text);
    return r;
}

/* Encode o, check it is at most max_frame bytes, and parse it back. */
static cJSON *
encode_fits(const cJSON *o, size_t max_frame)
{
    size_t len;
    char *json = msg_encode(o, &len);
    cJSON *back;

    assert_non_null(json);
    if (len > max_frame)
        fail_msg("encoded %zu bytes, max_frame %zu", len, max_frame);
    back = cJSON_Parse(json);
    assert_non_null(back);
    g_free(json);
    return back;
}

static bool
is_truncated(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "truncated");

    if (t == NULL)
        return false;
    assert_true(cJSON_IsTrue(t));
    return true;
}

/* The members array of o is a prefix of r's members in join order; returns
 * its length. */
static size_t
check_members_prefix(const cJSON *o, const struct room *r)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "members");
    size_t n = 0;
    const cJSON *e;

    assert_true(cJSON_IsArray(arr));
    cJSON_ArrayForEach(e, arr)
    {
        const struct client *c;

        assert_true(n < r->members->len);
        c = g_ptr_array_index(r->members, n);
        assert_true(cJSON_IsString(e));
        assert_string_equal(e->valuestring, c->nick);
        n++;
    }
    return n;
}

/* The history array of o holds the newest entries of r, oldest first:
 * seqs that rise by one and end at r->seq. Returns its length. */
static size_t
check_history_suffix(const cJSON *o, const struct room *r)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "history");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    uint64_t want;
    const cJSON *e;

    assert_true(cJSON_IsArray(arr));
    assert_true(n <= r->history.length);
    want = r->seq - n + 1;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "seq");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");

        assert_true(cJSON_IsString(type));
        assert_string_equal(type->valuestring, "message");
        assert_true(cJSON_IsNumber(seq));
        assert_int_equal((uint64_t)seq->valuedouble, want);
        want++;
    }
    return n;
}

static void
check_str(const cJSON *o, const char *key, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    assert_true(cJSON_IsString(v));
    assert_string_equal(v->valuestring, want);
}

/* ---- commands_build_room ------------------------------------------------ */

static void
test_commands_build_room_empty_room(void **state)
{
    struct room *r = make_room(0, NULL, 0, 0);
    cJSON *o = commands_build_room(r, 1024, NULL);
    cJSON *back = encode_fits(o, 1024);

    (void)state;
    check_str(back, "type", "room");
    check_str(back, "room", ROOM_NAME);
    check_str(back, "topic", "what we talk about");
    assert_int_equal(check_members_prefix(back, r), 0);
    assert_int_equal(check_history_suffix(back, r), 0);
    assert_false(is_truncated(back));
    cJSON_Delete(back);
    cJSON_Delete(o);
}

static void
test_commands_build_room_all_fits_no_truncated(void **state)
{
    struct client *cs = make_clients(3);
    struct room *r = make_room(3, cs, 5, 20);
    cJSON *o = commands_build_room(r, 65536, NULL);
    cJSON *back = encode_fits(o, 65536);

    (void)state;
    check_str(back, "type", "room");
    assert_int_equal(check_members_prefix(back, r), 3);
    assert_int_equal(check_history_suffix(back, r), 5);
    assert_false(is_truncated(back));
    cJSON_Delete(back);
    cJSON_Delete(o);
    free_clients(cs, 3);
}

static void
test_commands_build_room_keeps_newest_history(void **state)
{
    struct client *cs = make_clients(2);
    struct room *r = make_room(2, cs, 200, 40);
    cJSON *o = commands_build_room(r, 1024, NULL);
    cJSON *back = encode_fits(o, 1024);
    size_t n;

    (void)state;
    assert_int_equal(check_members_prefix(back, r), 2);
    n = check_history_suffix(back, r);
    assert_true(n > 0);
    assert_true(n < 200);
    assert_true(is_truncated(back));
    cJSON_Delete(back);
    cJSON_Delete(o);
    free_clients(cs, 2);
}

static void
test_commands_build_room_many_members_truncated(void **state)
{
    struct client *cs = make_clients(200);
    struct room *r = make_room(200, cs, 0, 0);
    cJSON *o = commands_build_room(r, 1024, NULL);
    cJSON *back = encode_fits(o, 1024);
    size_t n;

    (void)state;
    n = check_members_prefix(back, r);
    assert_true(n > 0);
    assert_true(n < 200);
    assert_true(is_truncated(back));
    cJSON_Delete(back);
    cJSON_Delete(o);
    free_clients(cs, 200);
}

static void
test_commands_build_room_entry_over_frame(void **state)
{
    struct room *r = make_room(0, NULL, 1, 2000);
    cJSON *o = commands_build_room(r, 1024, NULL);
    cJSON *back = encode_fits(o, 1024);

    (void)state;
    /* The one entry cannot fit at all: none is sent, and that is said. */
    assert_int_equal(check_history_suffix(back, r), 0);
    assert_true(is_truncated(back));
    cJSON_Delete(back);
    cJSON_Delete(o);
}

/* Over many frame sizes and a mix of members and history, the reply always
 * fits, is a members prefix and a history suffix, and says truncated
 * exactly when something was left out. */
static void
test_commands_build_room_fits_every_max_frame(void **state)
{
    struct client *cs = make_clients(60);
    struct room *r = make_room(60, cs, 100, 57);
    size_t mf;

    (void)state;
    room_set_topic(r, "a \"quoted\" topic with \\ escapes \t and a tab");
    for (mf = 300; mf <= 12000; mf += 7) {
        cJSON *o = commands_build_room(r, mf, NULL);
        cJSON *back = encode_fits(o, mf);
        size_t nm = check_members_prefix(back, r);
        size_t nh = check_history_suffix(back, r);
        bool all = nm == r->members->len && nh == r->history.length;

        if (is_truncated(back) == all)
            fail_msg("max_frame %zu: %zu/%u members, %zu/%u history, "
                     "truncated %d",
                     mf, nm, r->members->len, nh, r->history.length,
                     is_truncated(back));
        cJSON_Delete(back);
        cJSON_Delete(o);
    }
    free_clients(cs, 60);
}

/* ---- commands_build_members --------------------------------------------- */

static void
test_commands_build_members_all_fits(void **state)
{
    struct client *cs = make_clients(5);
    struct room *r = make_room(5, cs, 0, 0);
    cJSON *id = cJSON_CreateString("q1");
    cJSON *o = commands_build_members(r, 1024, id);
    cJSON *back = encode_fits(o, 1024);

    (void)state;
    check_str(back, "type", "members");
    check_str(back, "room", ROOM_NAME);
    check_str(back, "id", "q1");
    assert_int_equal(check_members_prefix(back, r), 5);
    assert_false(is_truncated(back));
    cJSON_Delete(back);
    cJSON_Delete(o);
    cJSON_Delete(id);
    free_clients(cs, 5);
}

static void
test_commands_build_members_truncated(void **state)
{
    struct client *cs = make_clients(300);
    struct room *r = make_room(300, cs, 0, 0);
    cJSON *o = commands_build_members(r, 1024, NULL);
    cJSON *back = encode_fits(o, 1024);
    size_t n;

    (void)state;
    n = check_members_prefix(back, r);
    assert_true(n > 0);
    assert_true(n < 300);
    assert_true(is_truncated(back));
    assert_null(cJSON_GetObjectItemCaseSensitive(back, "id"));
    cJSON_Delete(back);
    cJSON_Delete(o);
    free_clients(cs, 300);
}

/* A 64-byte string id of control characters encodes to 384 bytes; the
 * members reply makes room for it. */
static void
test_commands_build_members_long_id_fits(void **state)
{
    struct client *cs = make_clients(300);
    struct room *r = make_room(300, cs, 0, 0);
    char *raw = g_strnfill(MSG_ID_STR_MAX, '\001');
    cJSON *id = cJSON_CreateString(raw);
    size_t mf;

    (void)state;
    for (mf = 700; mf <= 2000; mf += 3) {
        cJSON *o = commands_build_members(r, mf, id);
        cJSON *back = encode_fits(o, mf);

        check_str(back, "id", raw);
        assert_true(check_members_prefix(back, r) < 300);
        assert_true(is_truncated(back));
        cJSON_Delete(back);
        cJSON_Delete(o);
    }
    cJSON_Delete(id);
    g_free(raw);
    free_clients(cs, 300);
}

/* ---- The room reply as join sends it ------------------------------------ */

/* Dispatch a join with a long string id (valid: at most 64 bytes) for c;
 * returns the size of the largest frame queued for c. */
static size_t
join_with_long_id(struct client *c)
{
    GString *req =
        g_string_new("{\"type\":\"join\",\"room\":\"" ROOM_NAME "\",\"id\":\"");
    size_t worst = 0;
    guint i;
    int k;

    for (k = 0; k < MSG_ID_STR_MAX; k++)
        g_string_append(req, "\\\"");
    g_string_append(req, "\"}");
    g_ptr_array_set_size(sent, 0);
    commands_dispatch(c, (const uint8_t *)req->str, req->len);
    g_string_free(req, TRUE);
    for (i = 0; i < sent->len; i++)
        worst = MAX(worst, strlen(g_ptr_array_index(sent, i)));
    return sent->len > 0 ? worst : SIZE_MAX;
}

/* The room reply carries the request's id, so the id counts against
 * max_frame: in a room whose history fills the frame, a 64-byte id of
 * quotes (128 bytes encoded) must not push it over. */
static void
test_commands_join_reply_with_id_fits_max_frame(void **state)
{
    struct client me;
    size_t first, again;
    guint joined;

    (void)state;
    memset(&me, 0, sizeof(me));
    me.nick = g_strdup("me");
    me.registered = true;
    me.rooms = g_ptr_array_new();
    make_room(0, NULL, 200, 40);

    first = join_with_long_id(&me); /* joins: room + joined */
    again = join_with_long_id(&me); /* already in: room again */
    joined = me.rooms->len;
    g_ptr_array_unref(me.rooms);
    g_free(me.nick);

    assert_int_equal(joined, 1);
    if (first > stub_cfg.max_frame || again > stub_cfg.max_frame)
        fail_msg("room reply of %zu (join) and %zu (join again) bytes, "
                 "max_frame %zu",
                 first, again, stub_cfg.max_frame);
}

/* An unknown type is bounded only by the frame; echoing it whole in the
 * error's "request" made a reply over max_frame, which was dropped (found
 * by fuzz_request). */
static void
test_commands_unknown_long_type_error_fits_max_frame(void **state)
{
    struct client me;
    GString *req = g_string_new("{\"type\":\"");
    const char *reply;

    (void)state;
    memset(&me, 0, sizeof(me));
    me.rooms = g_ptr_array_new();
    while (req->len < stub_cfg.max_frame - 2)
        g_string_append_c(req, 'x');
    g_string_append(req, "\"}");
    g_ptr_array_set_size(sent, 0);
    commands_dispatch(&me, (const uint8_t *)req->str, req->len);
    g_string_free(req, TRUE);
    g_ptr_array_unref(me.rooms);
    assert_int_equal(sent->len, 1);
    reply = g_ptr_array_index(sent, 0);
    assert_true(strlen(reply) <= stub_cfg.max_frame);
    assert_non_null(strstr(reply, "\"unknown_type\""));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commands_build_room_empty_room,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_build_room_all_fits_no_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_build_room_keeps_newest_history, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_build_room_many_members_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_build_room_entry_over_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_build_room_fits_every_max_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_build_members_all_fits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_build_members_truncated,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_build_members_long_id_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_join_reply_with_id_fits_max_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_commands_unknown_long_type_error_fits_max_frame, setup,
            teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
