/* soak.c - a long, mixed, checked load against one sockchatd (bench/).
 *
 * One process, one thread, poll(). Clients connect with the project's own
 * transport_connect_url(), so tcp://, udp:// (the reliability layer of
 * doc/UDP.md) and unix:// endpoints are all spoken; the endpoints come from
 * the server's --port-file (or --url). Loopback only: any other address is
 * refused. Everything is bounded: the run by --seconds, the end phases by
 * fixed timeouts, the whole process by --max-wait.
 *
 * Kinds of clients:
 * - normal: joins and leaves rooms (#soak00...), says things, changes its
 *   nick, asks who/list/ping, and (unless --calm) quits or drops its
 *   connection abruptly (FIN or RST) and comes back with a new nick;
 * - mute (--mute N): says hello and joins blind, says a little, never reads;
 *   the server must drop it (slow_consumer, timeout) or it leaves by itself;
 * - garbage (--garbage N): a normal client that also sends bad frames:
 *   random bytes, bad UTF-8, unknown types, deep nesting (the session goes
 *   on), and now and then a zero or oversized length or half a frame (the
 *   session ends);
 * - holders (--hold N): connect over tcp one every --hold-interval ms once
 *   the others are in, say hello and wait: counted as welcomed, refused
 *   (server_full) or still waiting (the EMFILE test of tests/it_faults.sh);
 * - probes: at the very end, one fresh client per endpoint says hello, ping
 *   and quit: the server is alive.
 *
 * What is checked (a failure prints "FAIL:" and the exit status is 1):
 * - every room `seq` a member receives, while it is in the room without a
 *   break, is the one after the previous (from the last seq of the history
 *   in the join's `room` reply), so nothing is lost, doubled or reordered;
 * - content: the first client to see a room's seq records a hash of
 *   from+text; every other copy (receivers, history replays, the sender's
 *   echo) must agree, and the echo must carry the text the sender sent
 *   under its nick: what the server accepted is what everyone got;
 * - the end of a membership: a member that leaves with a unique reason
 *   must have seen exactly the seqs that the members who saw its `left`
 *   had seen before it (nothing cut at the end); members still in a room at
 *   the end (after a ping barrier) have every seq of the room;
 * - a normal client is never dropped by the server, and nobody is told it
 *   quit while it is connected; every request is answered without an
 *   error (rate_limited is counted, not failed);
 * - with --server-pid: the server's VmRSS after everyone left and --settle
 *   seconds passed is within the margin of its idle VmRSS before the first
 *   connection (--rss-margin-kb, --rss-margin-pct);
 * - every endpoint answers the probes.
 *
 * Test modes: --calm (no reconnects, mute or garbage clients), --flood W
 * (every client keeps W says in flight, no pacing: run the server with
 * --rate 0), --until-bye (run until the server closes everyone: each must
 * get `bye` first), --tolerate-resets (a server-side reset is a "hit": the
 * client is not failed, the others must see it quit, the rest stay intact;
 * tests/faultshim.c), --fault-stop-file (created when the run stops, which
 * switches the shim off), --ready-file (created once every client is in its
 * rooms), --expect-motd (the probes' welcome must carry it).
 *
 * Exit status: 0 all checks passed, 1 a check failed, 2 bad command line
 * or system error, 3 the run did not finish in --max-wait.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <glib.h>

#include "err.h"
#include "frame.h"
#include "log.h"
#include "transport.h"

#define SOAK_ROOMS_MAX 64
#define SOAK_EPS_MAX 8
#define SOAK_FRAME_PRE 65536 /* frame limit until welcome says */
#define SOAK_READ_CHUNK 65536
#define SOAK_READS_PER_WAKE 8 /* be fair to the other clients */
#define SOAK_DRAIN_READS 256  /* what is left after the peer closed */
#define SOAK_CONNECTS_PER_PASS 25
#define SOAK_DRAIN_MS 30000 /* end phases: answers, barrier, quits */
#define SOAK_QUIT_MS 15000
#define SOAK_HOLD_WAIT_MS 5000
#define SOAK_GARBAGE_CLOSE_MS 5000
#define SOAK_PROBE_MS 10000
#define SOAK_FAILS_SHOWN 40
#define SOAK_TEXT_MAX 4096

enum kind {
    K_NORMAL = 0,
    K_MUTE,
    K_GARBAGE,
    K_HOLDER,
    K_PROBE,
};

enum cstate {
    ST_IDLE = 0, /* not connected; (re)connects at reconnect_at */
    ST_HELLO,    /* hello sent, no welcome yet */
    ST_READY,
    ST_QUIT, /* quit sent (or bye received): waiting for the end */
    ST_DONE, /* never again */
};

enum rstate {
    RS_NONE = 0,
    RS_JOINING,
    RS_IN,
    RS_LEAVING,
};

enum req_kind {
    RQ_HELLO = 0,
    RQ_JOIN,
    RQ_LEAVE,
    RQ_SAY,
    RQ_NICK,
    RQ_PING,
    RQ_WHO,
    RQ_LIST,
    RQ_QUIT,
};

enum end_why {
    END_QUIT = 0, /* our quit was answered */
    END_ABRUPT,   /* we dropped the connection */
    END_SERVER,   /* the server (or the network) ended it */
    END_DRAIN,    /* closed by us at the end of the run */
};

enum phase {
    PH_RUN = 0,
    PH_DRAIN,   /* no new actions; waiting for every answer */
    PH_BARRIER, /* ping "final" to everyone */
    PH_QUIT,    /* everyone quits */
    PH_HOLD,    /* holders that waited may get in now */
    PH_SETTLE,  /* nobody connected: let the server give memory back */
    PH_PROBE,   /* a fresh client per endpoint */
    PH_END,
};

enum hold_result {
    HOLD_NONE = 0,
    HOLD_WELCOME,
    HOLD_FULL,
};

struct membership {
    enum rstate st;
    uint64_t last;   /* the last seq this member has */
    char reason[32]; /* of our leave in flight */
};

struct req {
    enum req_kind kind;
    int room;
    uint64_t hash; /* say: of the text */
    char nick[32]; /* nick: the new one */
};

struct client {
    unsigned idx;
    enum kind kind;
    int ep; /* endpoint of this session */
    struct transport *t;
    bool udp;
    enum cstate st;
    unsigned sess;
    char nick[32];
    unsigned nick_gen;
    GByteArray *in;
    GByteArray *out;
    size_t out_off;
    size_t max_frame;
    struct membership m[SOAK_ROOMS_MAX];
    GHashTable *pend; /* id -> struct req */
    unsigned next_id;
    unsigned said;     /* says of this client, for unique texts */
    unsigned says_out; /* flood window */
    unsigned leaves;   /* for unique leave reasons */
    int64_t next_act;
    int64_t reconnect_at;
    int64_t die_at;        /* mute: leave by itself then */
    int64_t closing_since; /* garbage: sent a closing frame then */
    bool garbage_closing;
    bool bye;
    bool final_pong;
    bool quit_seen_live; /* someone saw quit for this live session */
    bool joined_once;    /* for --ready-file */
    char last_error[40];
    enum hold_result hold;
    bool hold_late;
    int64_t hold_start;
    bool probe_pong, probe_ok;
    char *motd;
};

/* Per room: what each seq carried (hash of from and text, 0 = not seen
 * yet) and whether the sender's echo confirmed it. */
struct room_entry {
    uint64_t hash;
    bool echoed;
};

struct room_log {
    char name[16];
    GArray *ent; /* struct room_entry, index seq - 1 */
    uint64_t max_seq;
};

/* A leave with a unique reason: what the leaver had when it saw its own
 * `left`, and what the members that saw it had. */
struct leave_rec {
    bool leaver_known;
    uint64_t leaver_last;
    unsigned witnesses;
    uint64_t wmin, wmax;
};

struct owner {
    unsigned idx, sess;
};

struct hit {
    char nick[32];
    char pending_nick[32];
    bool had_room;
};

struct soak_ep {
    char url[300];
    char scheme[8];
};

struct stats {
    uint64_t connects[3], connect_fail, sessions;
    uint64_t says_sent, says_accepted, rate_limited, deliveries, history;
    uint64_t joins, leaves, leaves_checked, nicks, pings, whos, lists;
    uint64_t graceful, abrupt_fin, abrupt_rst, mute_sessions, mute_dropped;
    uint64_t garbage_frames, garbage_closing, garbage_errors;
    uint64_t memberships_verified, server_pings;
    uint64_t byes_ok, hits;
    uint64_t hold_welcome, hold_full, hold_pending, hold_late, hold_fail;
    uint64_t failures;
};

static struct {
    char **urls;
    char *port_file, *fault_stop_file, *ready_file, *expect_motd;
    gint clients, seconds, rooms, mute, garbage, flood, act_ms, settle;
    gint server_pid, hold, hold_interval, connect_ms, max_wait;
    gint rss_margin_kb;
    gdouble rss_margin_pct;
    gint64 seed;
    gboolean calm, tolerate_resets, until_bye, quiet;
} opt = {
    .clients = 500,
    .seconds = 300,
    .rooms = 25,
    .mute = 5,
    .garbage = 5,
    .act_ms = 2000,
    .settle = 5,
    .hold_interval = 20,
    .connect_ms = 5000,
    .max_wait = 0,
    .rss_margin_kb = 4096,
    .rss_margin_pct = 10,
    .seed = 1,
};

static GOptionEntry opt_entries[] = {
    {"url", 'u', 0, G_OPTION_ARG_STRING_ARRAY, &opt.urls,
     "Server endpoint (repeatable): tcp://127.0.0.1:P, udp://..., unix:///path",
     "URL"},
    {"port-file", 'p', 0, G_OPTION_ARG_FILENAME, &opt.port_file,
     "Read the endpoints from the server's --port-file", "FILE"},
    {"clients", 'n', 0, G_OPTION_ARG_INT, &opt.clients,
     "Clients at once (default 500)", "N"},
    {"seconds", 's', 0, G_OPTION_ARG_INT, &opt.seconds,
     "Length of the run (default 300)", "S"},
    {"rooms", 'r', 0, G_OPTION_ARG_INT, &opt.rooms,
     "Rooms #soak00... (default 25, at most 64)", "K"},
    {"mute", 0, 0, G_OPTION_ARG_INT, &opt.mute,
     "Clients that never read (default 5; 0 with --calm)", "N"},
    {"garbage", 0, 0, G_OPTION_ARG_INT, &opt.garbage,
     "Clients that send bad frames (default 5; 0 with --calm)", "N"},
    {"act-ms", 0, 0, G_OPTION_ARG_INT, &opt.act_ms,
     "Mean time between a client's actions (default 2000)", "MS"},
    {"flood", 0, 0, G_OPTION_ARG_INT, &opt.flood,
     "Keep W says in flight per client, unpaced (server --rate 0)", "W"},
    {"calm", 0, 0, G_OPTION_ARG_NONE, &opt.calm,
     "No quits, drops, reconnects, mute or garbage clients", NULL},
    {"until-bye", 0, 0, G_OPTION_ARG_NONE, &opt.until_bye,
     "Run until the server closes every client; each must get bye first", NULL},
    {"tolerate-resets", 0, 0, G_OPTION_ARG_NONE, &opt.tolerate_resets,
     "A connection the server ends is a hit, not a failure (fault tests)",
     NULL},
    {"fault-stop-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.fault_stop_file,
     "Create FILE when the run stops (switches tests/faultshim.c off)", "FILE"},
    {"ready-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.ready_file,
     "Create FILE once every client is in its rooms", "FILE"},
    {"expect-motd", 0, 0, G_OPTION_ARG_STRING, &opt.expect_motd,
     "The probes' welcome must carry this motd", "TEXT"},
    {"hold", 0, 0, G_OPTION_ARG_INT, &opt.hold,
     "Extra tcp clients that connect, say hello and wait", "N"},
    {"hold-interval", 0, 0, G_OPTION_ARG_INT, &opt.hold_interval,
     "Between two holders (default 20)", "MS"},
    {"connect-ms", 0, 0, G_OPTION_ARG_INT, &opt.connect_ms,
     "Connect timeout (default 5000)", "MS"},
    {"server-pid", 0, 0, G_OPTION_ARG_INT, &opt.server_pid,
     "Read the server's VmRSS and CPU time from /proc", "PID"},
    {"settle", 0, 0, G_OPTION_ARG_INT, &opt.settle,
     "Seconds after everyone left before reading VmRSS (default 5)", "S"},
    {"rss-margin-kb", 0, 0, G_OPTION_ARG_INT, &opt.rss_margin_kb,
     "VmRSS may end this much above idle (default 4096)...", "KB"},
    {"rss-margin-pct", 0, 0, G_OPTION_ARG_DOUBLE, &opt.rss_margin_pct,
     "...or this percentage of the idle VmRSS, whichever is larger "
     "(default 10); -1 only reports",
     "PCT"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &opt.seed, "Random seed (default 1)",
     "N"},
    {"max-wait", 0, 0, G_OPTION_ARG_INT, &opt.max_wait,
     "Give up after this many seconds (default --seconds + 180)", "S"},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt.quiet, "Only the summary", NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

static struct soak_ep eps[SOAK_EPS_MAX];
static int neps;
static struct client *cl;
static unsigned ncl;      /* normal, mute, garbage */
static unsigned nholders; /* after them */
static unsigned nprobes;  /* after the holders */
static struct room_log rooms[SOAK_ROOMS_MAX];
static GHashTable *room_index;   /* folded name -> index + 1 */
static GHashTable *nick_owner;   /* nick -> struct owner */
static GHashTable *leaves;       /* reason -> struct leave_rec */
static GHashTable *quits;        /* nick -> first quit reason */
static GHashTable *quit_reasons; /* reason -> count */
static GHashTable *error_codes;  /* code -> count */
static GArray *hits;             /* struct hit */
static GRand *rng;
static struct stats st;
static enum phase phase;
static int64_t t0, t_end, phase_since, hard_deadline;
static unsigned holders_started;
static bool ready_written;
static int64_t ready_at;
static bool stop_file_written;

/* ---- small helpers ------------------------------------------------------ */

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
rnd(int n)
{
    return n <= 1 ? 0 : g_rand_int_range(rng, 0, n);
}

static void fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
fail(const char *fmt, ...)
{
    va_list ap;

    st.failures++;
    if (st.failures > SOAK_FAILS_SHOWN)
        return;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void note(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
note(const char *fmt, ...)
{
    va_list ap;

    if (opt.quiet)
        return;
    va_start(ap, fmt);
    fprintf(stderr, "soak: %.1f s: ", (double)(now_ms() - t0) / 1000.0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void
count_str(GHashTable *h, const char *key)
{
    gpointer v = g_hash_table_lookup(h, key);

    g_hash_table_replace(h, g_strdup(key),
                         GUINT_TO_POINTER(GPOINTER_TO_UINT(v) + 1));
}

/* FNV-1a over from, a NUL, and text. */
static uint64_t
msg_hash(const char *from, const char *text)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p;

    for (p = (const unsigned char *)from; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    for (p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h ? h : 1; /* 0 means "not seen" */
}

static void
json_escape(GString *s, const char *p)
{
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;

        if (ch == '"' || ch == '\\')
            g_string_append_printf(s, "\\%c", ch);
        else if (ch == '\t')
            g_string_append(s, "\\t");
        else if (ch < 0x20)
            g_string_append_printf(s, "\\u%04x", ch);
        else
            g_string_append_c(s, (char)ch);
    }
}

static const char *
jstr(const cJSON *m, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool
jnum(const cJSON *m, const char *key, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);

    *out = 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740991.0)
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

static long
proc_status_kb(const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long v = -1;
    FILE *f;

    if (opt.server_pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", opt.server_pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* The server's utime + stime in seconds, or -1. */
static double
proc_cpu_s(void)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, stime = 0;
    FILE *f;
    int i;

    if (opt.server_pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/stat", opt.server_pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    if (!fgets(buf, sizeof(buf), f)) {
        fclose(f);
        return -1;
    }
    fclose(f);
    p = strrchr(buf, ')'); /* the name may hold spaces */
    for (i = 3; p && i < 14; i++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p, " %llu %llu", &ut, &stime) != 2)
        return -1;
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void
touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd >= 0)
        close(fd);
    else
        fprintf(stderr, "soak: cannot create %s: %s\n", path,
                g_strerror(errno));
}

/* ---- endpoints ---------------------------------------------------------- */

static bool
loopback_url(const char *u)
{
    static const char *const ok[] = {
        "tcp://127.",       "udp://127.",       "tcp://[::1]", "udp://[::1]",
        "tcp://localhost:", "udp://localhost:", "unix://",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(ok); i++)
        if (strncmp(u, ok[i], strlen(ok[i])) == 0)
            return true;
    return false;
}

static bool
add_endpoint(const char *url)
{
    const char *colon = strstr(url, "://");

    if (!colon || !loopback_url(url)) {
        fprintf(stderr, "soak: %s: only loopback tcp/udp and unix endpoints\n",
                url);
        return false;
    }
    if (neps >= SOAK_EPS_MAX) {
        fprintf(stderr, "soak: too many endpoints\n");
        return false;
    }
    g_strlcpy(eps[neps].url, url, sizeof(eps[neps].url));
    g_strlcpy(eps[neps].scheme, url,
              MIN(sizeof(eps[neps].scheme), (size_t)(colon - url) + 1));
    neps++;
    return true;
}

static bool
load_endpoints(void)
{
    char *text = NULL, **lines = NULL;
    GError *err = NULL;
    bool ok = true;
    int i;

    for (i = 0; opt.urls && opt.urls[i]; i++)
        if (!add_endpoint(opt.urls[i]))
            return false;
    if (!opt.port_file)
        return neps > 0;
    if (!g_file_get_contents(opt.port_file, &text, NULL, &err)) {
        fprintf(stderr, "soak: %s\n", err->message);
        g_error_free(err);
        return false;
    }
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; ok && lines[i]; i++)
        if (lines[i][0])
            ok = add_endpoint(lines[i]);
    g_strfreev(lines);
    g_free(text);
    return ok && neps > 0;
}

static int
scheme_slot(const char *scheme)
{
    if (strcmp(scheme, "tcp") == 0)
        return 0;
    if (strcmp(scheme, "udp") == 0)
        return 1;
    return 2;
}

/* tcp twice as often as udp or unix. */
static int
pick_endpoint(bool tcp_only)
{
    int w[SOAK_EPS_MAX], total = 0, i, r;

    for (i = 0; i < neps; i++) {
        bool tcp = strcmp(eps[i].scheme, "tcp") == 0;

        w[i] = tcp_only && !tcp ? 0 : tcp ? 2 : 1;
        total += w[i];
    }
    if (total == 0)
        return -1;
    r = rnd(total);
    for (i = 0; i < neps; i++) {
        if (r < w[i])
            return i;
        r -= w[i];
    }
    return neps - 1;
}

/* ---- rooms -------------------------------------------------------------- */

static int
room_find(const char *name)
{
    char *key = g_ascii_strdown(name, -1);
    gpointer v = g_hash_table_lookup(room_index, key);

    g_free(key);
    return v ? GPOINTER_TO_INT(v) - 1 : -1;
}

/* One more copy of room r's seq: record it or compare it. */
static void
room_observe(int r, uint64_t seq, uint64_t h, bool echo, const char *who)
{
    struct room_log *rl = &rooms[r];
    struct room_entry *e;

    if (seq == 0 || seq > 100000000) {
        fail("%s: %s: seq %" PRIu64 " out of range", who, rl->name, seq);
        return;
    }
    if (rl->ent->len < seq)
        g_array_set_size(rl->ent, (guint)seq);
    e = &g_array_index(rl->ent, struct room_entry, seq - 1);
    if (e->hash == 0)
        e->hash = h;
    else if (e->hash != h)
        fail("%s: %s seq %" PRIu64 ": content differs from another copy", who,
             rl->name, seq);
    if (echo) {
        if (e->echoed)
            fail("%s: %s seq %" PRIu64 " echoed twice", who, rl->name, seq);
        e->echoed = true;
    }
    if (seq > rl->max_seq)
        rl->max_seq = seq;
}

static struct leave_rec *
leave_rec(const char *reason)
{
    struct leave_rec *lr = g_hash_table_lookup(leaves, reason);

    if (!lr) {
        lr = g_new0(struct leave_rec, 1);
        g_hash_table_insert(leaves, g_strdup(reason), lr);
    }
    return lr;
}

/* ---- output ------------------------------------------------------------- */

static void
send_frame(struct client *c, const char *json, size_t len)
{
    uint8_t hdr[FRAME_HDR];

    frame_put_header(hdr, (uint32_t)len);
    g_byte_array_append(c->out, hdr, FRAME_HDR);
    g_byte_array_append(c->out, (const guint8 *)json, (guint)len);
}

static void send_fmt(struct client *c, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static void
send_fmt(struct client *c, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    send_frame(c, s, strlen(s));
    g_free(s);
}

/* A request: its id goes into the pending table with what it was. */
static struct req *
new_req(struct client *c, enum req_kind kind, int room, unsigned *id)
{
    struct req *rq = g_new0(struct req, 1);

    rq->kind = kind;
    rq->room = room;
    *id = ++c->next_id;
    g_hash_table_insert(c->pend, GUINT_TO_POINTER(*id), rq);
    return rq;
}

static void
send_hello(struct client *c)
{
    unsigned id;

    new_req(c, RQ_HELLO, -1, &id);
    send_fmt(c,
             "{\"type\":\"hello\",\"version\":1,\"nick\":\"%s\","
             "\"client\":\"soak\",\"id\":%u}",
             c->nick, id);
}

static void
send_join(struct client *c, int r)
{
    unsigned id;

    new_req(c, RQ_JOIN, r, &id);
    c->m[r].st = RS_JOINING;
    st.joins++;
    send_fmt(c, "{\"type\":\"join\",\"room\":\"%s\",\"id\":%u}", rooms[r].name,
             id);
}

static void
send_leave(struct client *c, int r)
{
    unsigned id;

    new_req(c, RQ_LEAVE, r, &id);
    c->m[r].st = RS_LEAVING;
    g_snprintf(c->m[r].reason, sizeof(c->m[r].reason), "L%u.%u.%u", c->idx,
               c->sess, ++c->leaves);
    st.leaves++;
    send_fmt(c,
             "{\"type\":\"leave\",\"room\":\"%s\",\"reason\":\"%s\",\"id\":%u}",
             rooms[r].name, c->m[r].reason, id);
}

/* Texts are unique (client, session, count), 8-4096 bytes of UTF-8 with
 * quotes, backslashes, tabs and multi-byte characters to escape. */
static void
make_text(struct client *c, GString *t)
{
    static const char alnum[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    size_t len;

    g_string_printf(t, "c%u.%u.%u|", c->idx, c->sess, ++c->said);
    len = rnd(50) == 0 ? 1000 + (size_t)rnd(3000) : 8 + (size_t)rnd(200);
    while (t->len < len && t->len + 4 <= SOAK_TEXT_MAX) {
        int k = rnd(100);

        if (k < 88)
            g_string_append_c(t, alnum[rnd(sizeof(alnum) - 1)]);
        else if (k < 91)
            g_string_append_c(t, '"');
        else if (k < 94)
            g_string_append_c(t, '\\');
        else if (k < 96)
            g_string_append_c(t, '\t');
        else if (k < 98)
            g_string_append(t, "\xc3\xa9"); /* e acute */
        else if (k < 99)
            g_string_append(t, "\xe2\x82\xac"); /* euro */
        else
            g_string_append(t, "\xf0\x9f\x98\x80"); /* emoji */
    }
}

static void
send_say(struct client *c, int r)
{
    GString *t = g_string_new(NULL), *j = g_string_new(NULL);
    struct req *rq;
    unsigned id;

    make_text(c, t);
    rq = new_req(c, RQ_SAY, r, &id);
    rq->hash = msg_hash("", t->str);
    g_string_printf(j, "{\"type\":\"say\",\"room\":\"%s\",\"text\":\"",
                    rooms[r].name);
    json_escape(j, t->str);
    g_string_append_printf(j, "\",\"id\":%u}", id);
    send_frame(c, j->str, j->len);
    c->says_out++;
    st.says_sent++;
    g_string_free(t, TRUE);
    g_string_free(j, TRUE);
}

static void
send_nick(struct client *c)
{
    struct req *rq;
    unsigned id;

    rq = new_req(c, RQ_NICK, -1, &id);
    g_snprintf(rq->nick, sizeof(rq->nick), "c%u_%u_%u", c->idx, c->sess,
               ++c->nick_gen);
    st.nicks++;
    send_fmt(c, "{\"type\":\"nick\",\"nick\":\"%s\",\"id\":%u}", rq->nick, id);
}

static void
send_ping(struct client *c, const char *token)
{
    unsigned id;

    new_req(c, RQ_PING, -1, &id);
    st.pings++;
    send_fmt(c, "{\"type\":\"ping\",\"token\":\"%s\",\"id\":%u}", token, id);
}

static void
send_quit(struct client *c, const char *reason)
{
    unsigned id;

    new_req(c, RQ_QUIT, -1, &id);
    send_fmt(c, "{\"type\":\"quit\",\"reason\":\"%s\",\"id\":%u}", reason, id);
}

/* ---- sessions ----------------------------------------------------------- */

static bool
has_room(const struct client *c, enum rstate s)
{
    int r;

    for (r = 0; r < opt.rooms; r++)
        if (c->m[r].st == s)
            return true;
    return false;
}

static unsigned
rooms_taken(const struct client *c)
{
    unsigned n = 0;
    int r;

    for (r = 0; r < opt.rooms; r++)
        n += c->m[r].st != RS_NONE;
    return n;
}

static void
reset_session_state(struct client *c)
{
    g_byte_array_set_size(c->in, 0);
    g_byte_array_set_size(c->out, 0);
    c->out_off = 0;
    g_hash_table_remove_all(c->pend);
    memset(c->m, 0, sizeof(c->m));
    c->says_out = 0;
    c->bye = false;
    c->final_pong = false;
    c->quit_seen_live = false;
    c->garbage_closing = false;
    c->closing_since = 0;
    c->max_frame = SOAK_FRAME_PRE;
    c->last_error[0] = '\0';
}

/* The session of c is over, for why. */
static void
end_session(struct client *c, enum end_why why, const char *detail)
{
    bool expected = why != END_SERVER;
    int64_t now = now_ms();

    if (!c->t)
        return;
    if (why == END_ABRUPT && c->kind == K_NORMAL &&
        strcmp(eps[c->ep].scheme, "tcp") == 0 && rnd(2) == 0) {
        /* Half of the drops are a TCP reset rather than a FIN. */
        struct linger lg = {1, 0};

        setsockopt(transport_fd(c->t), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        st.abrupt_rst++;
    } else if (why == END_ABRUPT) {
        st.abrupt_fin++;
    }
    transport_close(c->t);
    c->t = NULL;
    if (why == END_SERVER) {
        switch (c->kind) {
        case K_MUTE:
            st.mute_dropped++;
            expected = true;
            break;
        case K_GARBAGE:
            expected = c->garbage_closing || (c->st == ST_QUIT && c->bye);
            break;
        case K_HOLDER:
            expected = c->hold == HOLD_FULL;
            break;
        case K_PROBE:
            expected = c->bye;
            c->probe_ok = c->bye && c->probe_pong;
            break;
        case K_NORMAL:
            if (opt.until_bye) {
                expected = c->bye;
                if (c->bye)
                    st.byes_ok++;
            } else if (c->st == ST_QUIT && c->bye) {
                expected = true;
                st.graceful++;
            } else if (opt.tolerate_resets) {
                struct hit h;
                int r;

                memset(&h, 0, sizeof(h));
                g_strlcpy(h.nick, c->nick, sizeof(h.nick));
                for (r = 0; r < opt.rooms; r++)
                    h.had_room = h.had_room || c->m[r].st == RS_IN;
                {
                    GHashTableIter it;
                    gpointer k, v;

                    g_hash_table_iter_init(&it, c->pend);
                    while (g_hash_table_iter_next(&it, &k, &v))
                        if (((struct req *)v)->kind == RQ_NICK)
                            g_strlcpy(h.pending_nick, ((struct req *)v)->nick,
                                      sizeof(h.pending_nick));
                }
                g_array_append_val(hits, h);
                st.hits++;
                expected = true;
                note("client %u (%s) hit: %s", c->idx, c->nick, detail);
            }
            break;
        }
        if (!expected)
            fail("client %u (%s, %s, state %d%s): the server ended the "
                 "session: %s%s%s",
                 c->idx, c->nick, eps[c->ep].scheme, (int)c->st,
                 c->bye ? ", bye" : "", detail,
                 c->last_error[0] ? "; last error " : "", c->last_error);
    }
    reset_session_state(c);
    if (c->kind == K_HOLDER || c->kind == K_PROBE || phase != PH_RUN ||
        opt.calm || opt.until_bye) {
        c->st = ST_DONE;
        return;
    }
    c->st = ST_IDLE;
    c->reconnect_at = now + 300 + rnd(2500);
}

static void
connect_client(struct client *c, int64_t now)
{
    char why[256] = "";
    int rc;

    if (c->kind != K_PROBE)
        c->ep = pick_endpoint(c->kind == K_HOLDER);
    if (c->ep < 0) {
        fail("client %u: no tcp endpoint to hold", c->idx);
        c->st = ST_DONE;
        return;
    }
    rc = transport_connect_url(eps[c->ep].url, 0, opt.connect_ms, &c->t, why,
                               sizeof(why));
    if (rc != CHAT_OK) {
        c->t = NULL;
        st.connect_fail++;
        if (c->kind == K_HOLDER) {
            st.hold_fail++;
            c->st = ST_DONE;
            return;
        }
        fail("client %u: cannot connect to %s: %s", c->idx, eps[c->ep].url,
             why);
        c->reconnect_at = now + 1000;
        if (opt.calm || opt.until_bye || c->kind == K_PROBE)
            c->st = ST_DONE;
        return;
    }
    c->udp = strcmp(eps[c->ep].scheme, "udp") == 0;
    c->sess++;
    st.sessions++;
    st.connects[scheme_slot(eps[c->ep].scheme)]++;
    reset_session_state(c);
    c->next_id = 0;
    switch (c->kind) {
    case K_MUTE:
        g_snprintf(c->nick, sizeof(c->nick), "m%u_%u", c->idx, c->sess);
        break;
    case K_HOLDER:
        g_snprintf(c->nick, sizeof(c->nick), "h%u", c->idx);
        c->hold_start = now;
        break;
    case K_PROBE:
        g_snprintf(c->nick, sizeof(c->nick), "probe%u", c->idx);
        break;
    default:
        g_snprintf(c->nick, sizeof(c->nick), "c%u_%u", c->idx, c->sess);
        break;
    }
    {
        struct owner *o = g_new(struct owner, 1);

        o->idx = c->idx;
        o->sess = c->sess;
        g_hash_table_replace(nick_owner, g_strdup(c->nick), o);
    }
    c->nick_gen = 0;
    c->st = ST_HELLO;
    send_hello(c);
    if (c->kind == K_MUTE) {
        /* Blind: never reads, so never learns whether these worked. A
         * small receive buffer makes the server's queue fill sooner. */
        int a = rnd(opt.rooms), b = rnd(opt.rooms), small = 4096;

        setsockopt(transport_fd(c->t), SOL_SOCKET, SO_RCVBUF, &small,
                   sizeof(small));

        send_fmt(c, "{\"type\":\"join\",\"room\":\"%s\"}", rooms[a].name);
        send_fmt(c, "{\"type\":\"join\",\"room\":\"%s\"}", rooms[b].name);
        c->m[a].st = RS_IN;
        c->m[b].st = RS_IN;
        c->st = ST_READY;
        c->die_at = now + 60000 + rnd(120000);
        c->next_act = now + 3000 + rnd(5000);
        st.mute_sessions++;
    }
    if (c->kind == K_PROBE) {
        send_ping(c, "probe");
        send_quit(c, "probe done");
    }
}

/* ---- input -------------------------------------------------------------- */

static void
on_welcome(struct client *c, const cJSON *m, struct req *rq, int64_t now)
{
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(m, "limits");
    const char *motd = jstr(m, "motd");
    uint64_t mf = 0;

    if (!rq || rq->kind != RQ_HELLO) {
        fail("client %u: welcome that answers no hello", c->idx);
        return;
    }
    if (limits && jnum(limits, "max_frame", &mf) && mf >= 1024)
        c->max_frame = (size_t)mf;
    g_free(c->motd);
    c->motd = g_strdup(motd ? motd : "");
    c->st = ST_READY;
    if (c->kind == K_HOLDER) {
        c->hold = HOLD_WELCOME;
        c->hold_late = phase >= PH_QUIT;
        return;
    }
    if (c->kind == K_PROBE)
        return;
    if (phase != PH_RUN)
        return;
    if (opt.flood > 0) {
        send_join(c, (int)(c->idx % (unsigned)opt.rooms));
    } else {
        int n = 1 + rnd(2), i;

        for (i = 0; i < n; i++) {
            int r = rnd(opt.rooms);

            if (c->m[r].st == RS_NONE)
                send_join(c, r);
        }
    }
    c->next_act = now + rnd(opt.act_ms);
}

static void
on_error(struct client *c, const cJSON *m, struct req *rq)
{
    const char *code = jstr(m, "code");

    if (!code)
        code = "?";
    count_str(error_codes, code);
    g_strlcpy(c->last_error, code, sizeof(c->last_error));
    if (c->kind == K_HOLDER && strcmp(code, "server_full") == 0) {
        c->hold = HOLD_FULL;
        return;
    }
    if (rq && rq->kind == RQ_SAY && strcmp(code, "rate_limited") == 0) {
        st.rate_limited++;
        c->says_out--;
        return;
    }
    if (!rq && c->kind == K_GARBAGE) {
        st.garbage_errors++;
        return;
    }
    if (rq && rq->kind == RQ_SAY)
        c->says_out--;
    if (rq && (rq->kind == RQ_JOIN || rq->kind == RQ_LEAVE) && rq->room >= 0)
        c->m[rq->room].st = rq->kind == RQ_JOIN ? RS_NONE : RS_IN;
    /* Closing errors to a client that asked for them are expected above;
     * anything else is the server refusing a valid request. */
    fail("client %u (%s): error %s (%s)%s", c->idx, c->nick, code,
         jstr(m, "message") ? jstr(m, "message") : "", rq ? "" : " without id");
}

static void
on_room(struct client *c, const cJSON *m, struct req *rq)
{
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(m, "history"), *h;
    const char *name = jstr(m, "room");
    uint64_t start = 0, seq;
    char who[64];
    int r;

    if (!rq || rq->kind != RQ_JOIN) {
        fail("client %u: room reply that answers no join", c->idx);
        return;
    }
    r = rq->room;
    g_snprintf(who, sizeof(who), "client %u (%s) history", c->idx, c->nick);
    if (!name || g_ascii_strcasecmp(name, rooms[r].name) != 0)
        fail("client %u: joined %s, room reply names %s", c->idx, rooms[r].name,
             name ? name : "nothing");
    cJSON_ArrayForEach(h, hist)
    {
        const char *from = jstr(h, "from"), *text = jstr(h, "text");

        if (!from || !text || !jnum(h, "seq", &seq)) {
            fail("%s: an entry without from, text or seq", who);
            continue;
        }
        if (start != 0 && seq != start + 1)
            fail("%s: %s seq %" PRIu64 " after %" PRIu64, who, rooms[r].name,
                 seq, start);
        room_observe(r, seq, msg_hash(from, text), false, who);
        start = seq;
        st.history++;
    }
    c->m[r].st = RS_IN;
    c->m[r].last = start;
    c->joined_once = true;
}

static void
on_left(struct client *c, const cJSON *m)
{
    const char *room = jstr(m, "room"), *nick = jstr(m, "nick");
    const char *reason = jstr(m, "reason");
    int r = room ? room_find(room) : -1;
    struct membership *mb;

    if (r < 0 || !nick)
        return;
    mb = &c->m[r];
    /* Our own leave is known by its reason, which is unique: the nick may
     * be changing at the same time. */
    if (reason && mb->st == RS_LEAVING && strcmp(reason, mb->reason) == 0) {
        struct leave_rec *lr = leave_rec(reason);

        lr->leaver_known = true;
        lr->leaver_last = mb->last;
        mb->st = RS_NONE;
        return;
    }
    if (strcmp(nick, c->nick) == 0) {
        fail("client %u (%s): told it left %s, which it did not ask", c->idx,
             nick, room);
        return;
    }
    if (reason && reason[0] == 'L' &&
        (mb->st == RS_IN || mb->st == RS_LEAVING)) {
        struct leave_rec *lr = leave_rec(reason);

        if (lr->witnesses == 0 || mb->last < lr->wmin)
            lr->wmin = mb->last;
        if (lr->witnesses == 0 || mb->last > lr->wmax)
            lr->wmax = mb->last;
        lr->witnesses++;
    }
}

static void
on_message(struct client *c, const cJSON *m, struct req *rq)
{
    const char *room = jstr(m, "room"), *from = jstr(m, "from");
    const char *text = jstr(m, "text");
    uint64_t seq = 0, h;
    struct membership *mb;
    char who[64];
    int r;

    if (!room)
        return; /* private: not used */
    r = room_find(room);
    g_snprintf(who, sizeof(who), "client %u (%s)", c->idx, c->nick);
    if (r < 0 || !from || !text || !jnum(m, "seq", &seq)) {
        fail("%s: a message without a known room, from, text or seq", who);
        return;
    }
    h = msg_hash(from, text);
    if (rq) {
        if (rq->kind != RQ_SAY || rq->room != r)
            fail("%s: a message echo that answers no say in %s", who, room);
        else if (msg_hash("", text) != rq->hash)
            fail("%s: the echo of a say in %s has other text", who, room);
        else if (strcmp(from, c->nick) != 0)
            fail("%s: the echo of a say in %s is from %s", who, room, from);
        else
            st.says_accepted++;
        if (rq->kind == RQ_SAY)
            c->says_out--;
    }
    mb = &c->m[r];
    if (mb->st != RS_IN && mb->st != RS_LEAVING) {
        fail("%s: message seq %" PRIu64 " in %s, which it is not in", who, seq,
             room);
    } else {
        if (seq != mb->last + 1)
            fail("%s: %s seq %" PRIu64 " after %" PRIu64 " (%s)", who, room,
                 seq, mb->last,
                 seq > mb->last ? "lost" : "repeated or reordered");
        mb->last = seq;
    }
    st.deliveries++;
    room_observe(r, seq, h, rq != NULL, who);
}

static void
on_quit_event(const cJSON *m)
{
    const char *nick = jstr(m, "nick"), *reason = jstr(m, "reason");
    struct owner *o;

    if (!nick)
        return;
    if (!reason)
        reason = "(none)";
    if (!g_hash_table_contains(quits, nick)) {
        g_hash_table_insert(quits, g_strdup(nick), g_strdup(reason));
        count_str(quit_reasons, reason);
    }
    o = g_hash_table_lookup(nick_owner, nick);
    if (o && o->idx < ncl) {
        struct client *v = &cl[o->idx];

        if (v->sess == o->sess && v->t && v->kind == K_NORMAL &&
            v->st != ST_QUIT)
            v->quit_seen_live = true;
    }
}

static void
on_frame(struct client *c, const uint8_t *p, size_t n, int64_t now)
{
    cJSON *m = cJSON_ParseWithLength((const char *)p, n);
    const char *type;
    struct req *rq = NULL;
    uint64_t id = 0;

    if (!m || !cJSON_IsObject(m)) {
        fail("client %u: a frame that is not a JSON object", c->idx);
        cJSON_Delete(m);
        end_session(c, END_ABRUPT, "bad frame");
        return;
    }
    type = jstr(m, "type");
    if (!type) {
        fail("client %u: a message without type", c->idx);
        cJSON_Delete(m);
        return;
    }
    if (jnum(m, "id", &id) && id > 0 && id <= UINT32_MAX) {
        rq = g_hash_table_lookup(c->pend, GUINT_TO_POINTER((unsigned)id));
        if (rq)
            g_hash_table_steal(c->pend, GUINT_TO_POINTER((unsigned)id));
        else
            fail("client %u: a reply with an id it never sent (%" PRIu64 ")",
                 c->idx, id);
    }
    if (strcmp(type, "message") == 0) {
        on_message(c, m, rq);
    } else if (strcmp(type, "welcome") == 0) {
        on_welcome(c, m, rq, now);
    } else if (strcmp(type, "error") == 0) {
        on_error(c, m, rq);
    } else if (strcmp(type, "room") == 0) {
        on_room(c, m, rq);
    } else if (strcmp(type, "left") == 0) {
        on_left(c, m);
    } else if (strcmp(type, "ok") == 0) {
        if (!rq || rq->kind != RQ_LEAVE)
            fail("client %u: ok that answers no leave", c->idx);
        else if (c->m[rq->room].st != RS_NONE)
            fail("client %u: ok for leaving %s before its left", c->idx,
                 rooms[rq->room].name);
    } else if (strcmp(type, "renamed") == 0) {
        if (rq && rq->kind == RQ_NICK) {
            const char *nw = jstr(m, "new");
            struct owner *o = g_new(struct owner, 1);

            if (!nw || strcmp(nw, rq->nick) != 0)
                fail("client %u: renamed to %s, asked %s", c->idx,
                     nw ? nw : "nothing", rq->nick);
            g_strlcpy(c->nick, rq->nick, sizeof(c->nick));
            o->idx = c->idx;
            o->sess = c->sess;
            g_hash_table_replace(nick_owner, g_strdup(c->nick), o);
        }
    } else if (strcmp(type, "quit") == 0) {
        if (phase == PH_RUN || phase == PH_DRAIN || phase == PH_BARRIER)
            on_quit_event(m);
    } else if (strcmp(type, "pong") == 0) {
        const char *tok = jstr(m, "token");

        if (rq && tok && strcmp(tok, "final") == 0)
            c->final_pong = true;
        if (rq && tok && strcmp(tok, "probe") == 0)
            c->probe_pong = true;
    } else if (strcmp(type, "bye") == 0) {
        const char *reason = jstr(m, "reason");

        c->bye = true;
        if (opt.until_bye && c->kind == K_NORMAL &&
            (!reason || strcmp(reason, "server shutting down") != 0))
            fail("client %u: bye for %s", c->idx, reason ? reason : "nothing");
        if (c->st != ST_DONE)
            c->st = ST_QUIT;
    } else if (strcmp(type, "ping") == 0) {
        const char *tok = jstr(m, "token");
        GString *j = g_string_new("{\"type\":\"pong\",\"token\":\"");

        json_escape(j, tok ? tok : "");
        g_string_append(j, "\"}");
        send_frame(c, j->str, j->len);
        g_string_free(j, TRUE);
        st.server_pings++;
    }
    /* joined, members, rooms, topic: nothing to check here */
    g_free(rq);
    cJSON_Delete(m);
}

/* Cut whole frames off c->in. */
static void
parse_frames(struct client *c, int64_t now)
{
    size_t off = 0;
    unsigned sess = c->sess;

    while (c->in->len - off >= FRAME_HDR) {
        const uint8_t *h = c->in->data + off;
        uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
                     (uint32_t)h[2] << 8 | h[3];

        if (n == 0 || n > c->max_frame) {
            fail("client %u: frame length %u from the server (max %zu)", c->idx,
                 n, c->max_frame);
            end_session(c, END_ABRUPT, "bad frame length");
            return;
        }
        if (c->in->len - off - FRAME_HDR < n)
            break;
        on_frame(c, h + FRAME_HDR, n, now);
        if (c->sess != sess || !c->t)
            return; /* the session ended in there */
        off += FRAME_HDR + n;
    }
    if (off > 0)
        g_byte_array_remove_range(c->in, 0, (guint)off);
}

/* Read at most reads times. */
static void
client_read_n(struct client *c, int64_t now, int reads)
{
    int i;

    for (i = 0; i < reads && c->t; i++) {
        guint len = c->in->len;
        ssize_t n;

        g_byte_array_set_size(c->in, len + SOAK_READ_CHUNK);
        n = transport_recv(c->t, c->in->data + len, SOAK_READ_CHUNK);
        g_byte_array_set_size(c->in, len + (n > 0 ? (guint)n : 0));
        if (n == CHAT_EAGAIN)
            return;
        if (n == CHAT_ECLOSED) {
            parse_frames(c, now);
            end_session(c, END_SERVER, "end of stream");
            return;
        }
        if (n < 0) {
            char why[96];

            g_snprintf(why, sizeof(why), "receive: %s", chat_strerror((int)n));
            parse_frames(c, now);
            end_session(c, END_SERVER, why);
            return;
        }
        parse_frames(c, now);
    }
}

static void
client_read(struct client *c, int64_t now)
{
    client_read_n(c, now, SOAK_READS_PER_WAKE);
}

static void
client_flush(struct client *c)
{
    while (c->t && c->out_off < c->out->len) {
        ssize_t n = transport_send(c->t, c->out->data + c->out_off,
                                   c->out->len - c->out_off);

        if (n == CHAT_EAGAIN)
            break;
        if (n < 0) {
            char why[96];
            unsigned sess = c->sess;

            g_snprintf(why, sizeof(why), "send: %s", chat_strerror((int)n));
            /* The peer may have closed after its last words (bye, an
             * error): they wait in our receive buffer, read them first. */
            g_byte_array_set_size(c->out, 0);
            c->out_off = 0;
            if (c->kind != K_MUTE)
                client_read_n(c, now_ms(), SOAK_DRAIN_READS);
            if (c->sess == sess && c->t)
                end_session(c, END_SERVER, why);
            return;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out->len) {
        g_byte_array_set_size(c->out, 0);
        c->out_off = 0;
    } else if (c->out_off > SOAK_READ_CHUNK) {
        g_byte_array_remove_range(c->out, 0, (guint)c->out_off);
        c->out_off = 0;
    }
}

/* ---- actions ------------------------------------------------------------ */

static int
random_room_in(const struct client *c)
{
    int in[SOAK_ROOMS_MAX], n = 0, r;

    for (r = 0; r < opt.rooms; r++)
        if (c->m[r].st == RS_IN)
            in[n++] = r;
    return n ? in[rnd(n)] : -1;
}

static void
send_garbage(struct client *c, int64_t now)
{
    uint8_t raw[256];
    int k = rnd(20), i, n;

    st.garbage_frames++;
    if (k < 5) { /* random bytes: bad_json, the session goes on */
        n = 1 + rnd(200);
        for (i = 0; i < n; i++)
            raw[i] = (uint8_t)rnd(256);
        raw[0] = 'x'; /* never a valid JSON start */
        send_frame(c, (const char *)raw, (size_t)n);
    } else if (k < 8) {
        send_fmt(c, "{\"type\":\"say\",\"room\":\"%s\",\"text\":\"\xff\xfe\"}",
                 rooms[0].name);
    } else if (k < 11) {
        send_fmt(c, "{\"type\":\"dance\",\"with\":\"%s\"}", c->nick);
    } else if (k < 13) {
        send_fmt(c, "{\"type\":\"say\"}");
    } else if (k < 15) {
        send_fmt(c, "%s", "[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]");
    } else if (k < 16) {
        send_fmt(c, "{\"type\":\"join\",\"room\":\"no spaces allowed\"}");
    } else if (k < 18) { /* a length the server must refuse: it closes */
        static const uint8_t zero[FRAME_HDR] = {0, 0, 0, 0};
        static const uint8_t huge[FRAME_HDR] = {0x7f, 0xff, 0xff, 0xff};

        g_byte_array_append(c->out, k == 16 ? zero : huge, FRAME_HDR);
        c->garbage_closing = true;
        c->closing_since = now;
        st.garbage_closing++;
    } else { /* half a frame, then gone */
        static const uint8_t half[] = {0, 0, 1, 0, '{', '"', 't'};

        g_byte_array_append(c->out, half, sizeof(half));
        client_flush(c);
        st.garbage_closing++;
        end_session(c, END_ABRUPT, "half a frame");
    }
}

static void
act_normal(struct client *c, int64_t now)
{
    int k = rnd(100), r;
    char tok[32];

    c->next_act = now + opt.act_ms / 2 + rnd(opt.act_ms);
    if (c->kind == K_GARBAGE && rnd(100) < 35) {
        send_garbage(c, now);
        return;
    }
    if (!has_room(c, RS_IN) && !has_room(c, RS_JOINING) &&
        !has_room(c, RS_LEAVING)) {
        send_join(c, rnd(opt.rooms));
        return;
    }
    if (k < 62) {
        r = random_room_in(c);
        if (r >= 0)
            send_say(c, r);
    } else if (k < 70) {
        r = rnd(opt.rooms);
        if (c->m[r].st == RS_NONE && rooms_taken(c) < 3)
            send_join(c, r);
    } else if (k < 76) {
        r = random_room_in(c);
        if (r >= 0)
            send_leave(c, r);
    } else if (k < 80) {
        send_nick(c);
    } else if (k < 82) {
        unsigned id;

        /* A room it is in: one nobody has joined yet does not exist, and
         * the server rightly answers no_such_room (seen early in a slow,
         * valgrind run). */
        r = random_room_in(c);
        if (r < 0)
            return;
        new_req(c, RQ_WHO, -1, &id);
        st.whos++;
        send_fmt(c, "{\"type\":\"who\",\"room\":\"%s\",\"id\":%u}",
                 rooms[r].name, id);
    } else if (k < 83) {
        unsigned id;

        new_req(c, RQ_LIST, -1, &id);
        st.lists++;
        send_fmt(c, "{\"type\":\"list\",\"id\":%u}", id);
    } else if (k < 85) {
        g_snprintf(tok, sizeof(tok), "t%u", c->next_id);
        send_ping(c, tok);
    } else if (!opt.calm && k < 88) {
        send_quit(c, "soak says goodbye");
        c->st = ST_QUIT;
    } else if (!opt.calm && k < 91) {
        client_flush(c);
        end_session(c, END_ABRUPT, "drop");
    } else {
        r = random_room_in(c);
        if (r >= 0)
            send_say(c, r);
    }
}

static void
act_mute(struct client *c, int64_t now)
{
    int in[SOAK_ROOMS_MAX], n = 0, r;
    GString *t, *j;

    if (now >= c->die_at) {
        client_flush(c);
        end_session(c, END_ABRUPT, "mute leaves");
        return;
    }
    c->next_act = now + 3000 + rnd(5000);
    for (r = 0; r < opt.rooms; r++)
        if (c->m[r].st == RS_IN)
            in[n++] = r;
    if (n == 0)
        return;
    t = g_string_new(NULL);
    j = g_string_new(NULL);
    make_text(c, t);
    g_string_printf(j, "{\"type\":\"say\",\"room\":\"%s\",\"text\":\"",
                    rooms[in[rnd(n)]].name);
    json_escape(j, t->str);
    g_string_append(j, "\"}");
    send_frame(c, j->str, j->len);
    st.says_sent++;
    g_string_free(t, TRUE);
    g_string_free(j, TRUE);
}

static void
act_flood(struct client *c)
{
    int r = random_room_in(c);

    if (r < 0 || c->st != ST_READY)
        return;
    while (c->says_out < (unsigned)opt.flood && c->out->len < 65536)
        send_say(c, r);
}

/* ---- phases ------------------------------------------------------------- */

static bool
client_live(const struct client *c)
{
    return c->t != NULL;
}

static bool
normals_settled(void)
{
    unsigned i;

    for (i = 0; i < ncl; i++) {
        const struct client *c = &cl[i];

        if (c->kind != K_NORMAL || !client_live(c))
            continue;
        if (c->st == ST_HELLO || g_hash_table_size(c->pend) > 0)
            return false;
    }
    return true;
}

static bool
all_ready_joined(void)
{
    unsigned i;

    for (i = 0; i < ncl; i++) {
        const struct client *c = &cl[i];

        if (c->kind != K_NORMAL)
            continue;
        if (c->st != ST_READY || !has_room(c, RS_IN))
            return false;
    }
    return true;
}

static void
set_phase(enum phase p, int64_t now)
{
    static const char *const names[] = {
        "run", "drain", "barrier", "quit", "hold", "settle", "probe", "end",
    };

    phase = p;
    phase_since = now;
    note("phase %s", names[p]);
}

static void
enter_drain(int64_t now)
{
    unsigned i;

    if (opt.fault_stop_file && !stop_file_written) {
        touch(opt.fault_stop_file);
        stop_file_written = true;
    }
    set_phase(PH_DRAIN, now);
    for (i = 0; i < ncl; i++) {
        struct client *c = &cl[i];

        if (c->st == ST_IDLE)
            c->st = ST_DONE;
        if (client_live(c) && c->kind != K_NORMAL) {
            client_flush(c);
            end_session(c, END_DRAIN, "end of run");
            c->st = ST_DONE;
        }
    }
}

static void
verify_memberships(void)
{
    unsigned i;
    int r;

    for (i = 0; i < ncl; i++) {
        struct client *c = &cl[i];

        if (c->kind != K_NORMAL || !client_live(c) || c->st != ST_READY)
            continue;
        if (!c->final_pong) {
            fail("client %u (%s): no answer to the final ping", c->idx,
                 c->nick);
            continue;
        }
        if (c->quit_seen_live)
            fail("client %u (%s): others were told it quit, but it is "
                 "connected",
                 c->idx, c->nick);
        for (r = 0; r < opt.rooms; r++) {
            if (c->m[r].st != RS_IN)
                continue;
            if (c->m[r].last != rooms[r].max_seq)
                fail("client %u (%s): %s ends at seq %" PRIu64
                     ", the room at %" PRIu64,
                     c->idx, c->nick, rooms[r].name, c->m[r].last,
                     rooms[r].max_seq);
            st.memberships_verified++;
        }
    }
}

static void
verify_leaves_and_hits(void)
{
    GHashTableIter it;
    gpointer k, v;
    guint i;

    g_hash_table_iter_init(&it, leaves);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct leave_rec *lr = v;

        if (!lr->leaver_known || lr->witnesses == 0)
            continue;
        st.leaves_checked++;
        if (lr->wmin != lr->wmax || lr->wmin != lr->leaver_last)
            fail("leave %s: the leaver had seq %" PRIu64
                 ", its witnesses %" PRIu64 "..%" PRIu64,
                 (const char *)k, lr->leaver_last, lr->wmin, lr->wmax);
    }
    for (i = 0; i < hits->len; i++) {
        const struct hit *h = &g_array_index(hits, struct hit, i);

        if (!h->had_room)
            continue;
        if (!g_hash_table_contains(quits, h->nick) &&
            !(h->pending_nick[0] &&
              g_hash_table_contains(quits, h->pending_nick)))
            fail("%s lost its connection, but nobody was told it quit",
                 h->nick);
    }
}

/* What the loop does besides I/O: connects, actions, phase changes. */
static void
step(int64_t now)
{
    unsigned i, connects = 0;

    if (phase == PH_RUN) {
        for (i = 0; i < ncl; i++) {
            struct client *c = &cl[i];

            if (c->st == ST_IDLE && now >= c->reconnect_at &&
                connects < SOAK_CONNECTS_PER_PASS) {
                connect_client(c, now);
                connects++;
                continue;
            }
            if (!client_live(c) || c->st != ST_READY)
                continue;
            if (c->kind == K_MUTE) {
                if (now >= c->next_act || now >= c->die_at)
                    act_mute(c, now);
            } else if (c->garbage_closing) {
                if (now - c->closing_since > SOAK_GARBAGE_CLOSE_MS) {
                    fail("client %u: the server did not close after a bad "
                         "length",
                         c->idx);
                    end_session(c, END_ABRUPT, "not closed");
                }
            } else if (opt.until_bye && c->bye) {
                continue;
            } else if (opt.flood > 0) {
                act_flood(c);
            } else if (now >= c->next_act) {
                act_normal(c, now);
            }
        }
        if (!ready_written && all_ready_joined()) {
            ready_written = true;
            ready_at = now;
            note("all %u clients are in their rooms", ncl);
            if (opt.ready_file)
                touch(opt.ready_file);
        }
        /* Holders come once the others are in, one per interval. */
        while (ready_written && holders_started < nholders &&
               now >= ready_at + (int64_t)opt.hold_interval * holders_started) {
            connect_client(&cl[ncl + holders_started], now);
            holders_started++;
            if (opt.hold_interval > 0)
                break;
        }
        if (opt.until_bye) {
            bool any = false;

            for (i = 0; i < ncl; i++)
                any = any || cl[i].st != ST_DONE;
            if (!any)
                set_phase(PH_END, now);
            return;
        }
        if (now >= t_end)
            enter_drain(now);
        return;
    }
    if (phase == PH_DRAIN) {
        bool min_passed = now - phase_since >= (opt.fault_stop_file ? 200 : 0);

        if ((normals_settled() && min_passed) ||
            now - phase_since > SOAK_DRAIN_MS) {
            if (!normals_settled())
                fail("requests still unanswered %d s after the run",
                     SOAK_DRAIN_MS / 1000);
            set_phase(PH_BARRIER, now);
            for (i = 0; i < ncl; i++)
                if (cl[i].kind == K_NORMAL && client_live(&cl[i]) &&
                    cl[i].st == ST_READY)
                    send_ping(&cl[i], "final");
        }
        return;
    }
    if (phase == PH_BARRIER) {
        bool all = true;

        for (i = 0; i < ncl; i++)
            if (cl[i].kind == K_NORMAL && client_live(&cl[i]) &&
                cl[i].st == ST_READY && !cl[i].final_pong)
                all = false;
        if (all || now - phase_since > SOAK_DRAIN_MS) {
            verify_memberships();
            verify_leaves_and_hits();
            set_phase(PH_QUIT, now);
            for (i = 0; i < ncl; i++)
                if (client_live(&cl[i])) {
                    send_quit(&cl[i], "soak is over");
                    cl[i].st = ST_QUIT;
                }
        }
        return;
    }
    if (phase == PH_QUIT) {
        bool any = false;

        for (i = 0; i < ncl; i++)
            any = any || client_live(&cl[i]);
        if (any && now - phase_since <= SOAK_QUIT_MS)
            return;
        for (i = 0; i < ncl; i++)
            if (client_live(&cl[i])) {
                fail("client %u (%s): no bye and close %d s after quit",
                     cl[i].idx, cl[i].nick, SOAK_QUIT_MS / 1000);
                end_session(&cl[i], END_DRAIN, "quit unanswered");
            }
        set_phase(PH_HOLD, now);
        return;
    }
    if (phase == PH_HOLD) {
        bool waiting = false;

        for (i = ncl; i < ncl + nholders; i++)
            if (client_live(&cl[i]) && cl[i].hold == HOLD_NONE)
                waiting = true;
        if (waiting && now - phase_since <= SOAK_HOLD_WAIT_MS)
            return;
        for (i = ncl; i < ncl + nholders; i++) {
            struct client *c = &cl[i];

            if (c->hold == HOLD_WELCOME)
                st.hold_welcome++;
            else if (c->hold == HOLD_FULL)
                st.hold_full++;
            else if (client_live(c))
                st.hold_pending++;
            st.hold_late += c->hold_late;
            if (client_live(c))
                end_session(c, END_DRAIN, "end of run");
        }
        set_phase(PH_SETTLE, now);
        return;
    }
    if (phase == PH_SETTLE) {
        if (now - phase_since < (int64_t)opt.settle * 1000)
            return;
        set_phase(PH_PROBE, now);
        return;
    }
    if (phase == PH_PROBE) {
        bool any = false;

        for (i = ncl + nholders; i < ncl + nholders + nprobes; i++)
            any = any || cl[i].st != ST_DONE;
        if (any && now - phase_since <= SOAK_PROBE_MS)
            return;
        for (i = ncl + nholders; i < ncl + nholders + nprobes; i++)
            if (client_live(&cl[i]))
                end_session(&cl[i], END_DRAIN, "probe timed out");
        set_phase(PH_END, now);
    }
}

/* ---- the loop ----------------------------------------------------------- */

static unsigned
want_events(const struct client *c)
{
    unsigned want = 0;

    if (c->kind != K_MUTE)
        want |= TRANSPORT_READ;
    if (c->out_off < c->out->len)
        want |= TRANSPORT_WRITE;
    if (c->kind == K_MUTE && c->udp)
        return 0; /* a mute udp client does not even ack */
    return transport_poll_events(c->t, want);
}

static void
run_udp_timers(struct client *c, int64_t now, int *wait)
{
    int due;

    if (!c->t || !c->udp || (c->kind == K_MUTE))
        return;
    due = transport_next_timeout(c->t, now);
    if (due == 0) {
        int rc = transport_tick(c->t, now);

        if (rc != CHAT_OK) {
            char why[96];
            unsigned sess = c->sess;

            g_snprintf(why, sizeof(why), "udp: %s", chat_strerror(rc));
            client_read_n(c, now, SOAK_DRAIN_READS); /* what is left */
            if (c->sess == sess && c->t)
                end_session(c, END_SERVER, why);
            return;
        }
        if (c->out_off < c->out->len)
            client_flush(c);
        if (!c->t)
            return;
        due = transport_next_timeout(c->t, now);
    }
    if (due >= 0 && due < *wait)
        *wait = due;
}

static int
run(void)
{
    unsigned total = ncl + nholders + nprobes, i;
    struct pollfd *pfd = g_new0(struct pollfd, total);
    unsigned *who = g_new0(unsigned, total);
    bool probes_started = false;

    while (phase != PH_END) {
        int64_t now = now_ms();
        int wait = 20, n, k;
        unsigned np = 0;

        if (now > hard_deadline) {
            fprintf(stderr, "soak: the run did not finish in %d s\n",
                    opt.max_wait);
            g_free(pfd);
            g_free(who);
            return 3;
        }
        step(now);
        if (phase == PH_PROBE && !probes_started) {
            probes_started = true;
            for (i = ncl + nholders; i < total; i++)
                connect_client(&cl[i], now);
        }
        for (i = 0; i < total; i++) {
            struct client *c = &cl[i];

            if (!c->t)
                continue;
            if (c->out_off < c->out->len)
                client_flush(c);
            run_udp_timers(c, now, &wait);
            if (!c->t)
                continue;
            pfd[np].fd = transport_fd(c->t);
            pfd[np].events = 0;
            pfd[np].revents = 0;
            {
                unsigned ev = want_events(c);

                if (ev & TRANSPORT_READ)
                    pfd[np].events |= POLLIN;
                if (ev & TRANSPORT_WRITE)
                    pfd[np].events |= POLLOUT;
            }
            who[np++] = i;
        }
        n = poll(pfd, np, wait);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "soak: poll: %s\n", g_strerror(errno));
            g_free(pfd);
            g_free(who);
            return 2;
        }
        now = now_ms();
        for (k = 0; n > 0 && k < (int)np; k++) {
            struct client *c = &cl[who[k]];

            if (!pfd[k].revents || !c->t || transport_fd(c->t) != pfd[k].fd)
                continue;
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (c->kind == K_MUTE) {
                    if (pfd[k].revents & (POLLHUP | POLLERR))
                        end_session(c, END_SERVER, "hang-up");
                    continue;
                }
                client_read(c, now);
            }
            if (c->t && (pfd[k].revents & POLLOUT))
                client_flush(c);
        }
    }
    g_free(pfd);
    g_free(who);
    return 0;
}

/* ---- main --------------------------------------------------------------- */

static void
print_table(const char *title, GHashTable *h)
{
    GList *keys =
              g_list_sort(g_hash_table_get_keys(h), (GCompareFunc)g_strcmp0),
          *l;

    printf("%s:", title);
    if (!keys)
        printf(" none");
    for (l = keys; l; l = l->next)
        printf(" %s=%u", (const char *)l->data,
               GPOINTER_TO_UINT(g_hash_table_lookup(h, l->data)));
    printf("\n");
    g_list_free(keys);
}

static void
setup_clients(void)
{
    unsigned i, k;

    ncl = (unsigned)opt.clients;
    nholders = (unsigned)opt.hold;
    nprobes = opt.until_bye ? 0 : (unsigned)neps;
    cl = g_new0(struct client, ncl + nholders + nprobes);
    for (i = 0; i < ncl + nholders + nprobes; i++) {
        struct client *c = &cl[i];

        c->idx = i;
        c->in = g_byte_array_new();
        c->out = g_byte_array_new();
        c->pend =
            g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
        c->max_frame = SOAK_FRAME_PRE;
        c->kind = i >= ncl + nholders ? K_PROBE
                  : i >= ncl          ? K_HOLDER
                                      : K_NORMAL;
        /* Spread the first connections over the first seconds. */
        c->reconnect_at = t0 + (int64_t)i * 10;
        c->st = i < ncl ? ST_IDLE : ST_DONE;
        if (i >= ncl + nholders) {
            c->ep = (int)(i - ncl - nholders);
            c->st = ST_IDLE;
        }
    }
    /* Mute and garbage clients are spread among the normal ones. */
    for (k = 0; k < (unsigned)opt.mute && k < ncl; k++)
        cl[(k * 97 + 13) % ncl].kind = K_MUTE;
    for (k = 0; k < (unsigned)opt.garbage && k < ncl; k++) {
        unsigned j = (k * 89 + 41) % ncl;

        while (cl[j].kind != K_NORMAL)
            j = (j + 1) % ncl;
        cl[j].kind = K_GARBAGE;
    }
}

static void
free_all(void)
{
    unsigned i;
    int r;

    for (i = 0; cl && i < ncl + nholders + nprobes; i++) {
        if (cl[i].t)
            transport_close(cl[i].t);
        g_byte_array_unref(cl[i].in);
        g_byte_array_unref(cl[i].out);
        g_hash_table_destroy(cl[i].pend);
        g_free(cl[i].motd);
    }
    g_free(cl);
    for (r = 0; r < opt.rooms; r++)
        if (rooms[r].ent)
            g_array_unref(rooms[r].ent);
    g_hash_table_destroy(room_index);
    g_hash_table_destroy(nick_owner);
    g_hash_table_destroy(leaves);
    g_hash_table_destroy(quits);
    g_hash_table_destroy(quit_reasons);
    g_hash_table_destroy(error_codes);
    g_array_unref(hits);
    g_rand_free(rng);
}

int
main(int argc, char **argv)
{
    GOptionContext *ctx = g_option_context_new("- soak sockchatd");
    GError *err = NULL;
    long rss_idle, rss_peak, rss_after;
    double cpu0, cpu1;
    uint64_t says_known = 0, unconfirmed = 0;
    unsigned i;
    int r, status;

    g_option_context_set_summary(
        ctx,
        "A long mixed load against one sockchatd on this machine, checking "
        "that every\nmessage the server accepted reached every member that "
        "stayed in the room.");
    g_option_context_add_main_entries(ctx, opt_entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "soak: %s\n", err->message);
        g_error_free(err);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    if (opt.calm || opt.until_bye || opt.tolerate_resets) {
        opt.mute = 0;
        opt.garbage = 0;
        opt.calm = TRUE;
    }
    if (opt.clients < 1 || opt.clients > 5000 || opt.rooms < 1 ||
        opt.rooms > SOAK_ROOMS_MAX || opt.seconds < 1 || opt.act_ms < 10 ||
        opt.hold < 0 || opt.hold > 1000 || opt.mute < 0 || opt.garbage < 0 ||
        opt.mute + opt.garbage > opt.clients / 2 || opt.flood < 0) {
        fprintf(stderr, "soak: an option is out of range (try --help)\n");
        return 2;
    }
    if (!load_endpoints()) {
        fprintf(stderr, "soak: no usable endpoint (--url or --port-file)\n");
        return 2;
    }
    if (opt.max_wait <= 0)
        opt.max_wait = opt.seconds + 180;
    signal(SIGPIPE, SIG_IGN);
    log_setup("soak", LOG_LEVEL_ERROR);
    rng = g_rand_new_with_seed((guint32)opt.seed);
    room_index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    nick_owner = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    leaves = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    quits = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    quit_reasons = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    error_codes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    hits = g_array_new(FALSE, TRUE, sizeof(struct hit));
    for (r = 0; r < opt.rooms; r++) {
        g_snprintf(rooms[r].name, sizeof(rooms[r].name), "#soak%02d", r);
        rooms[r].ent = g_array_new(FALSE, TRUE, sizeof(struct room_entry));
        g_hash_table_insert(room_index, g_ascii_strdown(rooms[r].name, -1),
                            GINT_TO_POINTER(r + 1));
    }
    rss_idle = proc_status_kb("VmRSS");
    cpu0 = proc_cpu_s();
    t0 = now_ms();
    t_end = t0 + (int64_t)opt.seconds * 1000;
    hard_deadline = t0 + (int64_t)opt.max_wait * 1000;
    setup_clients();
    note("%u clients (%d mute, %d garbage), %u holders, %d rooms, %d s, "
         "%d endpoints",
         ncl, opt.mute, opt.garbage, nholders, opt.rooms, opt.seconds, neps);
    status = run();
    rss_peak = proc_status_kb("VmHWM");
    rss_after = proc_status_kb("VmRSS");
    cpu1 = proc_cpu_s();

    for (r = 0; r < opt.rooms; r++) {
        guint j;

        for (j = 0; j < rooms[r].ent->len; j++) {
            const struct room_entry *e =
                &g_array_index(rooms[r].ent, struct room_entry, j);

            says_known += e->hash != 0;
            unconfirmed += e->hash != 0 && !e->echoed;
        }
    }
    printf("soak: seconds=%d clients=%u mute=%d garbage=%d holders=%u "
           "rooms=%d seed=%" G_GINT64_FORMAT "\n",
           opt.seconds, ncl, opt.mute, opt.garbage, nholders, opt.rooms,
           opt.seed);
    printf("sessions: total=%" PRIu64 " tcp=%" PRIu64 " udp=%" PRIu64
           " unix=%" PRIu64 " connect_failed=%" PRIu64 "\n",
           st.sessions, st.connects[0], st.connects[1], st.connects[2],
           st.connect_fail);
    printf("messages: sent=%" PRIu64 " accepted=%" PRIu64
           " rate_limited=%" PRIu64 " room_seqs=%" PRIu64
           " seen_but_not_echoed=%" PRIu64 " deliveries=%" PRIu64
           " history_entries=%" PRIu64 "\n",
           st.says_sent, st.says_accepted, st.rate_limited, says_known,
           unconfirmed, st.deliveries, st.history);
    printf("actions: joins=%" PRIu64 " leaves=%" PRIu64 " nicks=%" PRIu64
           " pings=%" PRIu64 " who=%" PRIu64 " list=%" PRIu64
           " server_pings=%" PRIu64 "\n",
           st.joins, st.leaves, st.nicks, st.pings, st.whos, st.lists,
           st.server_pings);
    printf("endings: graceful=%" PRIu64 " drop_fin=%" PRIu64
           " drop_rst=%" PRIu64 " mute_sessions=%" PRIu64
           " mute_dropped_by_server=%" PRIu64 " garbage_frames=%" PRIu64
           " garbage_closing=%" PRIu64 " garbage_errors=%" PRIu64 "\n",
           st.graceful, st.abrupt_fin, st.abrupt_rst, st.mute_sessions,
           st.mute_dropped, st.garbage_frames, st.garbage_closing,
           st.garbage_errors);
    printf("checks: memberships_at_end=%" PRIu64 " leaves_checked=%" PRIu64
           " byes=%" PRIu64 " hits=%" PRIu64 "\n",
           st.memberships_verified, st.leaves_checked, st.byes_ok, st.hits);
    print_table("quit_reasons_seen", quit_reasons);
    print_table("errors_received", error_codes);
    if (nholders > 0)
        printf("hold: welcome=%" PRIu64 " late_welcome=%" PRIu64
               " server_full=%" PRIu64 " waiting=%" PRIu64
               " connect_failed=%" PRIu64 "\n",
               st.hold_welcome, st.hold_late, st.hold_full, st.hold_pending,
               st.hold_fail);
    for (i = ncl + nholders; i < ncl + nholders + nprobes; i++) {
        const struct client *c = &cl[i];

        printf("probe: %s %s motd=\"%s\"\n", eps[c->ep].url,
               c->probe_ok ? "alive" : "FAILED", c->motd ? c->motd : "");
        if (!c->probe_ok)
            fail("probe of %s: no welcome, pong and bye", eps[c->ep].url);
        else if (opt.expect_motd &&
                 (!c->motd || strcmp(c->motd, opt.expect_motd) != 0))
            fail("probe of %s: motd \"%s\", expected \"%s\"", eps[c->ep].url,
                 c->motd ? c->motd : "", opt.expect_motd);
    }
    if (opt.server_pid > 0) {
        printf("server: rss_idle_kb=%ld rss_peak_kb=%ld rss_after_kb=%ld "
               "cpu_s=%.2f\n",
               rss_idle, rss_peak, rss_after, cpu1 - cpu0);
        if (rss_idle < 0 || rss_after < 0) {
            fail("cannot read the server's VmRSS (pid %d)", opt.server_pid);
        } else if (opt.rss_margin_pct >= 0 && !opt.until_bye) {
            long margin =
                MAX((long)opt.rss_margin_kb,
                    (long)((double)rss_idle * opt.rss_margin_pct / 100.0));

            if (rss_after > rss_idle + margin)
                fail("server VmRSS %ld kB after the run, idle %ld kB: more "
                     "than %ld kB above",
                     rss_after, rss_idle, margin);
        }
    }
    if (status == 0 && st.failures > 0)
        status = 1;
    printf("failures=%" PRIu64 "\nRESULT: %s\n", st.failures,
           status == 0 ? "PASS" : "FAIL");
    free_all();
    return status;
}
