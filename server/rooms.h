/* rooms.h - the rooms of a server: members, topic, history and seq.
 *
 * Pure bookkeeping, no I/O: members are opaque pointers owned by the
 * caller. Names are compared without ASCII case; a room keeps the spelling
 * of its first join. An empty room keeps its topic, history and seq until
 * the cap on rooms forgets it, least recently used first.
 */
#ifndef SOCKCHAT_ROOMS_H
#define SOCKCHAT_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

struct rooms; /* opaque */

struct room {
    char *name;        /* as first joined, "#General" */
    char *key;         /* folded name, the table key */
    char *topic;       /* "" when none */
    uint64_t seq;      /* last seq handed out, 0 before the first message */
    GQueue history;    /* char *: encoded message events, oldest first */
    GPtrArray *members;/* void *, in join order */
    uint64_t used;     /* rooms tick of the last join/leave, for LRU */
};

/* A table holding at most cap rooms with hist_max history entries each. */
struct rooms *rooms_new(size_t cap, size_t hist_max);
void rooms_free(struct rooms *rs); /* NULL is a no-op */
/* New limits (SIGHUP). History longer than hist_max is trimmed; rooms
 * beyond a lowered cap go when they are empty. */
void rooms_set_limits(struct rooms *rs, size_t cap, size_t hist_max);

/* The room called name (any case), or NULL. */
struct room *rooms_find(struct rooms *rs, const char *name);

/*
 * The room called name, created when missing. Creating may forget the least
 * recently used empty room to stay under the cap. CHAT_OK and *out, or
 * CHAT_EFULL when the table is full of rooms with members.
 */
int rooms_get_or_create(struct rooms *rs, const char *name, struct room **out);

/* Membership. room_add_member on a member, or room_remove_member on a
 * non-member, changes nothing and returns false. */
bool room_has_member(const struct room *r, const void *member);
bool room_add_member(struct rooms *rs, struct room *r, void *member);
bool room_remove_member(struct rooms *rs, struct room *r, void *member);

/* The next seq of r (1 for the first message). */
uint64_t room_next_seq(struct room *r);
/* Append an encoded message event to r's history (takes json, g_malloc'd),
 * dropping the oldest beyond the limit. */
void room_push_history_take(struct rooms *rs, struct room *r, char *json);
void room_set_topic(struct room *r, const char *topic);

/* Number of rooms kept, and of rooms with members. */
size_t rooms_count(const struct rooms *rs);
/* Rooms with at least one member, sorted by name (g_ptr_array_unref it). */
GPtrArray *rooms_list_active(struct rooms *rs);

#endif /* SOCKCHAT_ROOMS_H */
