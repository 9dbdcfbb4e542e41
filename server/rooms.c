#include "rooms.h"

#include <string.h>

#include "err.h"
#include "message.h"

struct rooms {
    GHashTable *by_key; /* folded name -> struct room *, owns both */
    size_t cap;
    size_t hist_max;
    uint64_t tick; /* grows on every join and leave, orders LRU */
};

static void
room_free(gpointer p)
{
    struct room *r = p;
    char *h;

    while ((h = g_queue_pop_head(&r->history)) != NULL)
        g_free(h);
    g_ptr_array_unref(r->members);
    g_free(r->name);
    g_free(r->key);
    g_free(r->topic);
    g_free(r);
}

struct rooms *
rooms_new(size_t cap, size_t hist_max)
{
    struct rooms *rs = g_new0(struct rooms, 1);

    rs->by_key = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, room_free);
    rs->cap = cap ? cap : 1;
    rs->hist_max = hist_max;
    return rs;
}

void
rooms_free(struct rooms *rs)
{
    if (!rs)
        return;
    g_hash_table_destroy(rs->by_key);
    g_free(rs);
}

static void
room_trim_history(struct room *r, size_t max)
{
    while (g_queue_get_length(&r->history) > max)
        g_free(g_queue_pop_head(&r->history));
}

/* Forget the least recently used empty room. false if none is empty. */
static bool
rooms_evict_one(struct rooms *rs)
{
    GHashTableIter it;
    gpointer k, v;
    struct room *lru = NULL;

    g_hash_table_iter_init(&it, rs->by_key);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct room *r = v;

        if (r->members->len == 0 && (!lru || r->used < lru->used))
            lru = r;
    }
    if (!lru)
        return false;
    g_hash_table_remove(rs->by_key, lru->key);
    return true;
}

void
rooms_set_limits(struct rooms *rs, size_t cap, size_t hist_max)
{
    GHashTableIter it;
    gpointer k, v;

    rs->cap = cap ? cap : 1;
    rs->hist_max = hist_max;
    g_hash_table_iter_init(&it, rs->by_key);
    while (g_hash_table_iter_next(&it, &k, &v))
        room_trim_history(v, hist_max);
    while (g_hash_table_size(rs->by_key) > rs->cap && rooms_evict_one(rs))
        ;
}

struct room *
rooms_find(struct rooms *rs, const char *name)
{
    char *key = msg_fold(name);
    struct room *r = g_hash_table_lookup(rs->by_key, key);

    g_free(key);
    return r;
}

int
rooms_get_or_create(struct rooms *rs, const char *name, struct room **out)
{
    struct room *r;

    *out = rooms_find(rs, name);
    if (*out)
        return CHAT_OK;
    /* Over a lowered cap, empty rooms go first; then make room for one. */
    while (g_hash_table_size(rs->by_key) >= rs->cap)
        if (!rooms_evict_one(rs))
            return CHAT_EFULL;
    r = g_new0(struct room, 1);
    r->name = g_strdup(name);
    r->key = msg_fold(name);
    r->topic = g_strdup("");
    r->members = g_ptr_array_new();
    g_queue_init(&r->history);
    r->used = ++rs->tick;
    g_hash_table_insert(rs->by_key, r->key, r);
    *out = r;
    return CHAT_OK;
}

bool
room_has_member(const struct room *r, const void *member)
{
    guint i;

    for (i = 0; i < r->members->len; i++)
        if (g_ptr_array_index(r->members, i) == member)
            return true;
    return false;
}

bool
room_add_member(struct rooms *rs, struct room *r, void *member)
{
    if (room_has_member(r, member))
        return false;
    g_ptr_array_add(r->members, member);
    r->used = ++rs->tick;
    return true;
}

bool
room_remove_member(struct rooms *rs, struct room *r, void *member)
{
    /* Keep join order: members lists are shown to people. */
    if (!g_ptr_array_remove(r->members, member))
        return false;
    r->used = ++rs->tick;
    return true;
}

uint64_t
room_next_seq(struct room *r)
{
    return ++r->seq;
}

void
room_push_history_take(struct rooms *rs, struct room *r, char *json)
{
    if (rs->hist_max == 0) {
        g_free(json);
        return;
    }
    g_queue_push_tail(&r->history, json);
    room_trim_history(r, rs->hist_max);
}

void
room_set_topic(struct room *r, const char *topic)
{
    g_free(r->topic);
    r->topic = g_strdup(topic);
}

size_t
rooms_count(const struct rooms *rs)
{
    return g_hash_table_size(rs->by_key);
}

static gint
room_cmp_name(gconstpointer a, gconstpointer b)
{
    const struct room *ra = *(const struct room *const *)a;
    const struct room *rb = *(const struct room *const *)b;

    return strcmp(ra->key, rb->key);
}

GPtrArray *
rooms_list_active(struct rooms *rs)
{
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, rs->by_key);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (((struct room *)v)->members->len > 0)
            g_ptr_array_add(out, v);
    g_ptr_array_sort(out, room_cmp_name);
    return out;
}
