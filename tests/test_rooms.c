/* test_rooms.c - tests for server/rooms.c through rooms.h (PROTOCOL.md
 * sections 3 and 4.1: case-insensitive names, empty rooms that keep their
 * topic, history and seq, and the server-wide cap that forgets the least
 * recently used empty room). Members are opaque: addresses of local ints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "err.h"
#include "rooms.h"

/* The room called name, which must be created (or found) without error. */
static struct room *
must_get(struct rooms *rs, const char *name)
{
    struct room *r = NULL;

    assert_int_equal(rooms_get_or_create(rs, name, &r), CHAT_OK);
    assert_non_null(r);
    return r;
}

/* Mark r as used just now, leaving it empty: a join then a leave. */
static void
touch(struct rooms *rs, struct room *r)
{
    int someone = 0;

    assert_true(room_add_member(rs, r, &someone));
    assert_true(room_remove_member(rs, r, &someone));
}

static void
push(struct rooms *rs, struct room *r, const char *s)
{
    room_push_history_take(rs, r, g_strdup(s));
}

/* Check that r's history is exactly want[0..n), oldest first. */
static void
assert_history(const struct room *r, const char *const *want, size_t n)
{
    GList *l = r->history.head;
    size_t i;

    assert_int_equal(r->history.length, n);
    for (i = 0; i < n; i++, l = l->next) {
        assert_non_null(l);
        assert_string_equal(l->data, want[i]);
    }
    assert_null(l);
}

static void
test_rooms_free_null_is_noop(void **state)
{
    (void)state;
    rooms_free(NULL);
}

static void
test_rooms_new_is_empty(void **state)
{
    struct rooms *rs = rooms_new(4, 10);
    GPtrArray *active;

    (void)state;
    assert_int_equal(rooms_count(rs), 0);
    assert_null(rooms_find(rs, "#general"));
    active = rooms_list_active(rs);
    assert_int_equal(active->len, 0);
    g_ptr_array_unref(active);
    rooms_free(rs);
}

static void
test_rooms_create_find_case_insensitive(void **state)
{
    struct rooms *rs = rooms_new(8, 10);
    struct room *r, *again = NULL;

    (void)state;
    r = must_get(rs, "#General");
    assert_string_equal(r->name, "#General");
    assert_string_equal(r->topic, "");
    assert_int_equal(r->seq, 0);
    assert_int_equal(r->members->len, 0);
    assert_int_equal(g_queue_get_length(&r->history), 0);
    assert_int_equal(rooms_count(rs), 1);

    assert_ptr_equal(rooms_find(rs, "#General"), r);
    assert_ptr_equal(rooms_find(rs, "#general"), r);
    assert_ptr_equal(rooms_find(rs, "#GENERAL"), r);
    assert_ptr_equal(rooms_find(rs, "#gEnErAl"), r);
    assert_null(rooms_find(rs, "#generals"));
    assert_null(rooms_find(rs, "#other"));

    /* Another spelling finds the same room and keeps the first one. */
    assert_int_equal(rooms_get_or_create(rs, "#GENERAL", &again), CHAT_OK);
    assert_ptr_equal(again, r);
    assert_string_equal(r->name, "#General");
    assert_int_equal(rooms_count(rs), 1);

    /* A different name is a different room. */
    assert_ptr_not_equal(must_get(rs, "#general-2"), r);
    assert_int_equal(rooms_count(rs), 2);
    rooms_free(rs);
}

static void
test_rooms_membership_idempotent_and_ordered(void **state)
{
    struct rooms *rs = rooms_new(4, 10);
    struct room *r;
    int a = 0, b = 0, c = 0, stranger = 0;

    (void)state;
    r = must_get(rs, "#r");
    assert_false(room_has_member(r, &a));
    assert_false(room_remove_member(rs, r, &a)); /* not a member yet */

    assert_true(room_add_member(rs, r, &a));
    assert_true(room_add_member(rs, r, &b));
    assert_true(room_add_member(rs, r, &c));
    assert_false(room_add_member(rs, r, &a)); /* already in: no change */
    assert_false(room_add_member(rs, r, &c));
    assert_int_equal(r->members->len, 3);
    assert_ptr_equal(g_ptr_array_index(r->members, 0), &a);
    assert_ptr_equal(g_ptr_array_index(r->members, 1), &b);
    assert_ptr_equal(g_ptr_array_index(r->members, 2), &c);
    assert_true(room_has_member(r, &b));
    assert_false(room_has_member(r, &stranger));

    /* Removing from the middle keeps the others in join order. */
    assert_true(room_remove_member(rs, r, &b));
    assert_false(room_remove_member(rs, r, &b));
    assert_false(room_remove_member(rs, r, &stranger));
    assert_false(room_has_member(r, &b));
    assert_int_equal(r->members->len, 2);
    assert_ptr_equal(g_ptr_array_index(r->members, 0), &a);
    assert_ptr_equal(g_ptr_array_index(r->members, 1), &c);

    /* Joining again goes to the end. */
    assert_true(room_add_member(rs, r, &b));
    assert_int_equal(r->members->len, 3);
    assert_ptr_equal(g_ptr_array_index(r->members, 0), &a);
    assert_ptr_equal(g_ptr_array_index(r->members, 1), &c);
    assert_ptr_equal(g_ptr_array_index(r->members, 2), &b);
    rooms_free(rs);
}

static void
test_rooms_seq_starts_at_one_and_survives_empty(void **state)
{
    struct rooms *rs = rooms_new(4, 10);
    struct room *r;
    int a = 0;

    (void)state;
    r = must_get(rs, "#seq");
    assert_int_equal(r->seq, 0);
    assert_true(room_add_member(rs, r, &a));
    assert_int_equal(room_next_seq(r), 1);
    assert_int_equal(room_next_seq(r), 2);
    assert_int_equal(room_next_seq(r), 3);
    assert_true(room_remove_member(rs, r, &a));

    /* Empty now; a later join continues the seq. */
    assert_ptr_equal(rooms_find(rs, "#SEQ"), r);
    assert_ptr_equal(must_get(rs, "#Seq"), r);
    assert_true(room_add_member(rs, r, &a));
    assert_int_equal(room_next_seq(r), 4);
    assert_int_equal(r->seq, 4);
    rooms_free(rs);
}

static void
test_rooms_history_trimmed_oldest_first(void **state)
{
    static const char *const want3[] = {"m3", "m4", "m5"};
    static const char *const want2[] = {"m1", "m2"};
    struct rooms *rs = rooms_new(4, 3);
    struct room *r;

    (void)state;
    r = must_get(rs, "#h");
    push(rs, r, "m1");
    push(rs, r, "m2");
    assert_history(r, want2, 2);
    push(rs, r, "m3");
    push(rs, r, "m4");
    push(rs, r, "m5");
    assert_history(r, want3, 3);
    rooms_free(rs);
}

static void
test_rooms_history_zero_keeps_none(void **state)
{
    struct rooms *rs = rooms_new(4, 0);
    struct room *r;

    (void)state;
    r = must_get(rs, "#h");
    push(rs, r, "m1"); /* taken and freed: valgrind/ASan see no leak */
    push(rs, r, "m2");
    assert_history(r, NULL, 0);
    rooms_free(rs);
}

static void
test_rooms_empty_room_keeps_topic_history_seq(void **state)
{
    static const char *const want[] = {"m1", "m2"};
    struct rooms *rs = rooms_new(4, 10);
    struct room *r;
    GPtrArray *active;
    int a = 0;

    (void)state;
    r = must_get(rs, "#Keep");
    assert_true(room_add_member(rs, r, &a));
    room_set_topic(r, "the topic");
    room_next_seq(r);
    push(rs, r, "m1");
    room_next_seq(r);
    push(rs, r, "m2");
    assert_true(room_remove_member(rs, r, &a));

    assert_int_equal(rooms_count(rs), 1);
    assert_ptr_equal(rooms_find(rs, "#keep"), r);
    assert_string_equal(r->name, "#Keep");
    assert_string_equal(r->topic, "the topic");
    assert_int_equal(r->seq, 2);
    assert_history(r, want, 2);
    /* Not listed while empty. */
    active = rooms_list_active(rs);
    assert_int_equal(active->len, 0);
    g_ptr_array_unref(active);

    room_set_topic(r, "");
    assert_string_equal(r->topic, "");
    rooms_free(rs);
}

static void
test_rooms_cap_forgets_lru_empty_room(void **state)
{
    struct rooms *rs = rooms_new(3, 10);
    struct room *a, *b, *c, *d, *b2;
    int m = 0;

    (void)state;
    a = must_get(rs, "#a");
    b = must_get(rs, "#b");
    c = must_get(rs, "#c");
    assert_true(room_add_member(rs, c, &m));
    room_set_topic(b, "old topic");
    push(rs, b, "old message");
    room_next_seq(b);
    room_next_seq(b);
    assert_int_equal(rooms_count(rs), 3);

    /* Use a again: of the empty rooms, b is now the least recently used
     * (a was created first, c has a member). */
    touch(rs, a);
    d = must_get(rs, "#d");
    assert_int_equal(rooms_count(rs), 3);
    assert_null(rooms_find(rs, "#b"));
    assert_ptr_equal(rooms_find(rs, "#a"), a);
    assert_ptr_equal(rooms_find(rs, "#c"), c);
    assert_ptr_equal(rooms_find(rs, "#d"), d);

    /* A room with members is never forgotten, however old: c was last
     * used before a, but it is occupied, so a goes. */
    touch(rs, d);
    b2 = must_get(rs, "#B");
    assert_int_equal(rooms_count(rs), 3);
    assert_null(rooms_find(rs, "#a"));
    assert_ptr_equal(rooms_find(rs, "#c"), c);
    assert_ptr_equal(rooms_find(rs, "#d"), d);

    /* b was forgotten: created again, it starts afresh. */
    assert_ptr_equal(rooms_find(rs, "#b"), b2);
    assert_string_equal(b2->name, "#B");
    assert_string_equal(b2->topic, "");
    assert_int_equal(b2->seq, 0);
    assert_int_equal(g_queue_get_length(&b2->history), 0);
    assert_int_equal(room_next_seq(b2), 1);
    rooms_free(rs);
}

static void
test_rooms_cap_full_of_members_is_efull(void **state)
{
    struct rooms *rs = rooms_new(2, 10);
    struct room *a, *b, *r = NULL, *out;
    int m1 = 0, m2 = 0;

    (void)state;
    a = must_get(rs, "#a");
    b = must_get(rs, "#b");
    assert_true(room_add_member(rs, a, &m1));
    assert_true(room_add_member(rs, b, &m2));

    out = a; /* must be cleared */
    assert_int_equal(rooms_get_or_create(rs, "#c", &out), CHAT_EFULL);
    assert_null(out);
    assert_int_equal(rooms_count(rs), 2);
    assert_null(rooms_find(rs, "#c"));
    /* Existing rooms are still found while full. */
    assert_int_equal(rooms_get_or_create(rs, "#A", &r), CHAT_OK);
    assert_ptr_equal(r, a);

    /* Once a room empties, it makes way. */
    assert_true(room_remove_member(rs, a, &m1));
    r = must_get(rs, "#c");
    assert_int_equal(rooms_count(rs), 2);
    assert_null(rooms_find(rs, "#a"));
    assert_ptr_equal(rooms_find(rs, "#b"), b);
    assert_ptr_equal(rooms_find(rs, "#c"), r);
    rooms_free(rs);
}

static void
test_rooms_set_limits_trims_history(void **state)
{
    static const char *const two[] = {"m4", "m5"};
    static const char *const after[] = {"m5", "m6"};
    static const char *const keep[] = {"x1"};
    struct rooms *rs = rooms_new(4, 5);
    struct room *r, *s;
    char msg[8];
    int i;

    (void)state;
    r = must_get(rs, "#r");
    s = must_get(rs, "#s");
    for (i = 1; i <= 5; i++) {
        g_snprintf(msg, sizeof(msg), "m%d", i);
        push(rs, r, msg);
    }
    push(rs, s, "x1");
    assert_int_equal(g_queue_get_length(&r->history), 5);

    rooms_set_limits(rs, 4, 2);
    assert_history(r, two, 2);
    assert_history(s, keep, 1);
    push(rs, r, "m6");
    assert_history(r, after, 2);

    /* Raising the limit keeps what is there and lets it grow again. */
    rooms_set_limits(rs, 4, 3);
    push(rs, r, "m7");
    assert_int_equal(g_queue_get_length(&r->history), 3);

    rooms_set_limits(rs, 4, 0);
    assert_history(r, NULL, 0);
    assert_history(s, NULL, 0);
    push(rs, r, "m8");
    assert_history(r, NULL, 0);
    rooms_free(rs);
}

static void
test_rooms_set_limits_evicts_empty_beyond_cap(void **state)
{
    struct rooms *rs = rooms_new(6, 10);
    struct room *a, *b, *e, *f, *g = NULL;
    int m1 = 0, m2 = 0;

    (void)state;
    a = must_get(rs, "#a");
    b = must_get(rs, "#b");
    must_get(rs, "#c");
    must_get(rs, "#d");
    e = must_get(rs, "#e");
    f = must_get(rs, "#f");
    assert_true(room_add_member(rs, b, &m1));
    assert_true(room_add_member(rs, e, &m2));
    touch(rs, a);
    /* Empty rooms, least recently used first: c, d, f, a. */
    rooms_set_limits(rs, 4, 10);
    assert_int_equal(rooms_count(rs), 4);
    assert_null(rooms_find(rs, "#c"));
    assert_null(rooms_find(rs, "#d"));
    assert_ptr_equal(rooms_find(rs, "#a"), a);
    assert_ptr_equal(rooms_find(rs, "#b"), b);
    assert_ptr_equal(rooms_find(rs, "#e"), e);
    assert_ptr_equal(rooms_find(rs, "#f"), f);

    /* Below the rooms with members: every empty room goes, the occupied
     * ones stay even over the cap. */
    rooms_set_limits(rs, 1, 10);
    assert_int_equal(rooms_count(rs), 2);
    assert_ptr_equal(rooms_find(rs, "#b"), b);
    assert_ptr_equal(rooms_find(rs, "#e"), e);
    assert_null(rooms_find(rs, "#a"));
    assert_null(rooms_find(rs, "#f"));
    assert_int_equal(rooms_get_or_create(rs, "#g", &g), CHAT_EFULL);
    assert_null(g);

    /* When they empty, a new room replaces both: the count gets back
     * under the lowered cap. */
    assert_true(room_remove_member(rs, b, &m1));
    assert_true(room_remove_member(rs, e, &m2));
    g = must_get(rs, "#g");
    assert_int_equal(rooms_count(rs), 1);
    assert_ptr_equal(rooms_find(rs, "#g"), g);
    assert_null(rooms_find(rs, "#b"));
    assert_null(rooms_find(rs, "#e"));
    rooms_free(rs);
}

static void
test_rooms_list_active_only_occupied_sorted(void **state)
{
    struct rooms *rs = rooms_new(8, 10);
    struct room *zeta, *alpha, *beta, *mid;
    GPtrArray *active;
    int m1 = 0, m2 = 0;

    (void)state;
    zeta = must_get(rs, "#zeta");
    must_get(rs, "#empty");
    alpha = must_get(rs, "#Alpha");
    beta = must_get(rs, "#beta");
    mid = must_get(rs, "#Mid");
    assert_true(room_add_member(rs, zeta, &m1));
    assert_true(room_add_member(rs, alpha, &m1));
    assert_true(room_add_member(rs, beta, &m2));
    assert_true(room_add_member(rs, beta, &m1));
    assert_true(room_add_member(rs, mid, &m2));
    assert_true(room_remove_member(rs, mid, &m2)); /* empty again */

    active = rooms_list_active(rs);
    assert_int_equal(active->len, 3);
    assert_ptr_equal(g_ptr_array_index(active, 0), alpha);
    assert_ptr_equal(g_ptr_array_index(active, 1), beta);
    assert_ptr_equal(g_ptr_array_index(active, 2), zeta);
    g_ptr_array_unref(active);
    assert_int_equal(rooms_count(rs), 5);
    rooms_free(rs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rooms_free_null_is_noop),
        cmocka_unit_test(test_rooms_new_is_empty),
        cmocka_unit_test(test_rooms_create_find_case_insensitive),
        cmocka_unit_test(test_rooms_membership_idempotent_and_ordered),
        cmocka_unit_test(test_rooms_seq_starts_at_one_and_survives_empty),
        cmocka_unit_test(test_rooms_history_trimmed_oldest_first),
        cmocka_unit_test(test_rooms_history_zero_keeps_none),
        cmocka_unit_test(test_rooms_empty_room_keeps_topic_history_seq),
        cmocka_unit_test(test_rooms_cap_forgets_lru_empty_room),
        cmocka_unit_test(test_rooms_cap_full_of_members_is_efull),
        cmocka_unit_test(test_rooms_set_limits_trims_history),
        cmocka_unit_test(test_rooms_set_limits_evicts_empty_beyond_cap),
        cmocka_unit_test(test_rooms_list_active_only_occupied_sorted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
