/* main.c - sockchatd: options, configuration file, signals, the loop.
 *
 * Options come from GOption and, with --config, from a GKeyFile whose keys
 * are the long option names; the command line wins over the file. SIGHUP
 * re-reads the file; SIGINT and SIGTERM say bye to everyone and exit 0.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sodium.h>

#include "beacon.h"
#include "frame.h"
#include "log.h"
#include "loop.h"
#include "server.h"

#define CONFIG_GROUP "sockchatd"
#define SHUTDOWN_DEADLINE_MS 800 /* bye must be out within a second */

/* What the command line said; -1 or NULL where it said nothing. */
static struct {
    char **listen;
    char *name, *motd, *config, *port_file, *trace, *io;
    gint max_clients, max_rooms, room_cap, history, idle_timeout;
    gint64 max_queue, max_frame;
    gdouble rate, burst;
    gboolean verbose, quiet, version;
    /* secure sessions (secure.h, identity.h) */
    char *secure, *identity, *nicks_file;
    gboolean fingerprint, reserve_nicks;
    /* discovery (beacon.h) */
    gboolean lan;
    gdouble beacon_interval;
    gint discovery_port;
} opt = {
    .max_clients = -1, .max_rooms = -1, .room_cap = -1, .history = -1,
    .idle_timeout = -1, .max_queue = -1, .max_frame = -1, .rate = -1,
    .burst = -1, .beacon_interval = -1, .discovery_port = -1,
};

static GOptionEntry opt_entries[] = {
    {"listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &opt.listen,
     "Listen on URL: tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH, IPv6 in "
     "brackets (repeatable; default tcp and udp on 127.0.0.1 and ::1, port "
     "7710)",
     "URL"},
    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &opt.config,
     "Read settings from FILE: group [sockchatd], keys listen, name, motd, "
     "max-clients, max-rooms, room-cap, history, rate, burst, max-queue, "
     "max-frame, idle-timeout; the command line wins; SIGHUP re-reads motd "
     "and limits",
     "FILE"},
    {"name", 0, 0, G_OPTION_ARG_STRING, &opt.name,
     "Server name sent in welcome (default: sockchat)", "NAME"},
    {"motd", 0, 0, G_OPTION_ARG_STRING, &opt.motd,
     "Message of the day sent in welcome", "TEXT"},
    {"max-clients", 0, 0, G_OPTION_ARG_INT, &opt.max_clients,
     "Most clients at once; one more gets server_full (default: 1000)", "N"},
    {"max-rooms", 0, 0, G_OPTION_ARG_INT, &opt.max_rooms,
     "Rooms one client may be in at once (default: 32)", "N"},
    {"room-cap", 0, 0, G_OPTION_ARG_INT, &opt.room_cap,
     "Rooms the server keeps, empty ones included; the least recently used "
     "empty room is forgotten first (default: 1024)",
     "N"},
    {"history", 0, 0, G_OPTION_ARG_INT, &opt.history,
     "Messages kept per room and replayed on join (default: 100)", "N"},
    {"rate", 0, 0, G_OPTION_ARG_DOUBLE, &opt.rate,
     "Requests per second per client, 0 for no limit (default: 10)", "R"},
    {"burst", 0, 0, G_OPTION_ARG_DOUBLE, &opt.burst,
     "Requests a client may send at once above the rate (default: 20)", "B"},
    {"max-queue", 0, 0, G_OPTION_ARG_INT64, &opt.max_queue,
     "Bytes queued for one client before it is dropped with slow_consumer "
     "(default: 1048576)",
     "BYTES"},
    {"max-frame", 0, 0, G_OPTION_ARG_INT64, &opt.max_frame,
     "Largest frame payload in either direction, 1024-16777216 (default: "
     "65536)",
     "BYTES"},
    {"idle-timeout", 0, 0, G_OPTION_ARG_INT, &opt.idle_timeout,
     "Ping a client silent for SECONDS, drop it with timeout after as long "
     "again; 0 never (default: 60)",
     "SECONDS"},
    {"io", 0, 0, G_OPTION_ARG_STRING, &opt.io,
     "Readiness loop backend: select (default), poll or epoll", "BACKEND"},
    {"port-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.port_file,
     "Once listening, write each bound endpoint URL to FILE (for port 0)",
     "FILE"},
    {"trace", 0, 0, G_OPTION_ARG_STRING, &opt.trace,
     "Trace WHAT as it happens; WHAT is 'sockets': each socket, bind, "
     "listen, accept, send, recv, shutdown and close",
     "WHAT"},
    /* discovery (beacon.h) */
    {"lan", 0, 0, G_OPTION_ARG_NONE, &opt.lan,
     "Listen on every interface (0.0.0.0 and [::], TCP and UDP, port 7710, "
     "unless listeners are given) and announce this server on the LAN by "
     "UDP broadcast and IPv6 multicast; without it, discovery probes are "
     "answered from this host only",
     NULL},
    {"beacon-interval", 0, 0, G_OPTION_ARG_DOUBLE, &opt.beacon_interval,
     "With --lan, announce every SECONDS, jittered by 20% (0.2-3600; "
     "default: 5)",
     "SECONDS"},
    {"discovery-port", 0, 0, G_OPTION_ARG_INT, &opt.discovery_port,
     "UDP port of discovery probes and beacons, 0 for any (default: 7711)",
     "PORT"},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt.verbose,
     "Log debug messages", NULL},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt.quiet, "Log errors only", NULL},
    {"secure", 0, 0, G_OPTION_ARG_STRING, &opt.secure,
     "Encrypted sessions: off, optional (clients choose; default) or "
     "required (a plaintext hello gets encryption_required)",
     "POLICY"},
    {"identity", 0, 0, G_OPTION_ARG_FILENAME, &opt.identity,
     "The server's long-term Ed25519 key, created (mode 0600) on first "
     "start (default: $XDG_CONFIG_HOME/sockchat/sockchatd.key)",
     "FILE"},
    {"fingerprint", 0, 0, G_OPTION_ARG_NONE, &opt.fingerprint,
     "Print the identity key's fingerprint (creating the key if needed) "
     "and exit",
     NULL},
    {"reserve-nicks", 0, 0, G_OPTION_ARG_NONE, &opt.reserve_nicks,
     "A nick belongs to the client key that first used it in a secure "
     "session; others get nick_reserved",
     NULL},
    {"nicks-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.nicks_file,
     "Where --reserve-nicks keeps its reservations (default: "
     "$XDG_CONFIG_HOME/sockchat/reserved-nicks)",
     "FILE"},
    {"version", 'V', 0, G_OPTION_ARG_NONE, &opt.version,
     "Print the version and exit", NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

static int sig_pipe[2] = {-1, -1};

static void
on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;

    /* Only async-signal-safe work here: the loop reads the byte. */
    if (write(sig_pipe[1], &b, 1) < 0) {
        /* the pipe is full: a signal is already pending */
    }
    errno = saved;
}

static void
config_defaults(struct server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = g_strdup("sockchat");
    cfg->motd = g_strdup("");
    cfg->max_clients = 1000;
    cfg->max_rooms = 32;
    cfg->room_cap = 1024;
    cfg->history = 100;
    cfg->rate = 10;
    cfg->burst = 20;
    cfg->max_queue = 1048576;
    cfg->max_frame = FRAME_MAX_DEFAULT;
    cfg->idle_timeout = 60;
    cfg->secure = SECURE_POLICY_OPTIONAL;
}

static void
config_free(struct server_config *cfg)
{
    g_strfreev(cfg->listen);
    g_free(cfg->name);
    g_free(cfg->motd);
    memset(cfg, 0, sizeof(*cfg));
}

static void
set_str(char **dst, const char *v)
{
    g_free(*dst);
    *dst = g_strdup(v);
}

/* Read one integer key; false (with *err) when present and not a number. */
static bool
key_int(GKeyFile *kf, const char *key, gint64 *out, bool *present,
        GError **err)
{
    gint64 v;

    *present = false;
    if (!g_key_file_has_key(kf, CONFIG_GROUP, key, NULL))
        return true;
    v = g_key_file_get_int64(kf, CONFIG_GROUP, key, err);
    if (*err)
        return false;
    *out = v;
    *present = true;
    return true;
}

/* A typo in a key must not pass silently as "the default". */
static bool
config_keys_known(GKeyFile *kf, const char *path)
{
    static const char *const known[] = {
        "listen",    "name",      "motd",      "max-clients", "max-rooms",
        "room-cap",  "history",   "rate",      "burst",       "max-queue",
        "max-frame", "idle-timeout",
    };
    char **keys;
    bool ok = true;
    size_t i, j;

    if (!g_key_file_has_group(kf, CONFIG_GROUP)) {
        fprintf(stderr, "sockchatd: %s: no [%s] group\n", path, CONFIG_GROUP);
        return false;
    }
    keys = g_key_file_get_keys(kf, CONFIG_GROUP, NULL, NULL);
    for (i = 0; keys && keys[i]; i++) {
        for (j = 0; j < G_N_ELEMENTS(known); j++)
            if (strcmp(keys[i], known[j]) == 0)
                break;
        if (j == G_N_ELEMENTS(known)) {
            fprintf(stderr, "sockchatd: %s: unknown key '%s'\n", path,
                    keys[i]);
            ok = false;
        }
    }
    g_strfreev(keys);
    return ok;
}

/* Apply the file's settings to cfg. false with a message on stderr. */
static bool
config_load_file(const char *path, struct server_config *cfg)
{
    static const char *const int_keys[] = {
        "max-clients", "max-rooms",  "room-cap",  "history",
        "max-queue",   "max-frame",  "idle-timeout",
    };
    GKeyFile *kf = g_key_file_new();
    GError *err = NULL;
    bool ok = false;
    size_t i;

    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &err)) {
        fprintf(stderr, "sockchatd: %s: %s\n", path, err->message);
        goto out;
    }
    if (!config_keys_known(kf, path))
        goto out;
    if (g_key_file_has_key(kf, CONFIG_GROUP, "listen", NULL)) {
        g_strfreev(cfg->listen);
        cfg->listen =
            g_key_file_get_string_list(kf, CONFIG_GROUP, "listen", NULL, NULL);
    }
    if (g_key_file_has_key(kf, CONFIG_GROUP, "name", NULL)) {
        char *v = g_key_file_get_string(kf, CONFIG_GROUP, "name", NULL);

        set_str(&cfg->name, v);
        g_free(v);
    }
    if (g_key_file_has_key(kf, CONFIG_GROUP, "motd", NULL)) {
        char *v = g_key_file_get_string(kf, CONFIG_GROUP, "motd", NULL);

        set_str(&cfg->motd, v);
        g_free(v);
    }
    for (i = 0; i < G_N_ELEMENTS(int_keys); i++) {
        gint64 v = 0;
        bool present;

        if (!key_int(kf, int_keys[i], &v, &present, &err)) {
            fprintf(stderr, "sockchatd: %s: %s: %s\n", path, int_keys[i],
                    err->message);
            goto out;
        }
        if (!present)
            continue;
        if (v < 0 || v > G_MAXINT32) {
            fprintf(stderr, "sockchatd: %s: %s: out of range\n", path,
                    int_keys[i]);
            goto out;
        }
        switch (i) {
        case 0: cfg->max_clients = (unsigned)v; break;
        case 1: cfg->max_rooms = (unsigned)v; break;
        case 2: cfg->room_cap = (unsigned)v; break;
        case 3: cfg->history = (unsigned)v; break;
        case 4: cfg->max_queue = (size_t)v; break;
        case 5: cfg->max_frame = (size_t)v; break;
        case 6: cfg->idle_timeout = (unsigned)v; break;
        }
    }
    if (g_key_file_has_key(kf, CONFIG_GROUP, "rate", NULL)) {
        cfg->rate = g_key_file_get_double(kf, CONFIG_GROUP, "rate", &err);
        if (err) {
            fprintf(stderr, "sockchatd: %s: rate: %s\n", path, err->message);
            goto out;
        }
    }
    if (g_key_file_has_key(kf, CONFIG_GROUP, "burst", NULL)) {
        cfg->burst = g_key_file_get_double(kf, CONFIG_GROUP, "burst", &err);
        if (err) {
            fprintf(stderr, "sockchatd: %s: burst: %s\n", path, err->message);
            goto out;
        }
    }
    ok = true;
out:
    g_clear_error(&err);
    g_key_file_free(kf);
    return ok;
}

static bool
parse_secure_policy(const char *v, enum secure_policy *out)
{
    if (strcmp(v, "off") == 0)
        *out = SECURE_POLICY_OFF;
    else if (strcmp(v, "optional") == 0)
        *out = SECURE_POLICY_OPTIONAL;
    else if (strcmp(v, "required") == 0)
        *out = SECURE_POLICY_REQUIRED;
    else
        return false;
    return true;
}

static void
config_apply_cli(struct server_config *cfg)
{
    if (opt.listen) {
        g_strfreev(cfg->listen);
        cfg->listen = g_strdupv(opt.listen);
    }
    if (opt.name)
        set_str(&cfg->name, opt.name);
    if (opt.motd)
        set_str(&cfg->motd, opt.motd);
    if (opt.max_clients >= 0)
        cfg->max_clients = (unsigned)opt.max_clients;
    if (opt.max_rooms >= 0)
        cfg->max_rooms = (unsigned)opt.max_rooms;
    if (opt.room_cap >= 0)
        cfg->room_cap = (unsigned)opt.room_cap;
    if (opt.history >= 0)
        cfg->history = (unsigned)opt.history;
    if (opt.idle_timeout >= 0)
        cfg->idle_timeout = (unsigned)opt.idle_timeout;
    if (opt.max_queue >= 0)
        cfg->max_queue = (size_t)opt.max_queue;
    if (opt.max_frame >= 0)
        cfg->max_frame = (size_t)opt.max_frame;
    if (opt.rate >= 0)
        cfg->rate = opt.rate;
    if (opt.burst >= 0)
        cfg->burst = opt.burst;
    if (opt.secure)
        parse_secure_policy(opt.secure, &cfg->secure); /* checked in main */
}

static bool
config_check(const struct server_config *cfg)
{
    const char *bad = NULL;

    if (cfg->max_frame < 1024 || cfg->max_frame > FRAME_MAX_LIMIT)
        bad = "--max-frame must be between 1024 and 16777216";
    else if (cfg->max_queue < cfg->max_frame + FRAME_HDR)
        bad = "--max-queue must hold at least one frame (max-frame + 4)";
    else if (cfg->max_clients < 1)
        bad = "--max-clients must be at least 1";
    else if (cfg->max_rooms < 1)
        bad = "--max-rooms must be at least 1";
    else if (cfg->room_cap < 1)
        bad = "--room-cap must be at least 1";
    else if (cfg->rate < 0 || cfg->burst < 0 || (cfg->rate > 0 && cfg->burst < 1))
        bad = "--rate must be 0 or more, and --burst at least 1 with a rate";
    else if (!cfg->name[0] || strlen(cfg->name) > 64)
        bad = "--name must be 1-64 bytes";
    if (bad)
        fprintf(stderr, "sockchatd: %s\n", bad);
    return bad == NULL;
}

/* The whole configuration: defaults, then the file, then the command line. */
static bool
config_build(struct server_config *cfg)
{
    config_defaults(cfg);
    if (opt.config && !config_load_file(opt.config, cfg))
        return false;
    config_apply_cli(cfg);
    if (!cfg->listen || !cfg->listen[0]) {
        /* TCP and UDP, IPv4 and IPv6: the same chat on every transport.
         * Loopback only, unless --lan (every interface). */
        const char *v4 = opt.lan ? "0.0.0.0" : "127.0.0.1";
        const char *v6 = opt.lan ? "[::]" : "[::1]";

        g_strfreev(cfg->listen);
        cfg->listen = g_new0(char *, 5);
        cfg->listen[0] = g_strdup_printf("tcp://%s:7710", v4);
        cfg->listen[1] = g_strdup_printf("tcp://%s:7710", v6);
        cfg->listen[2] = g_strdup_printf("udp://%s:7710", v4);
        cfg->listen[3] = g_strdup_printf("udp://%s:7710", v6);
    }
    return config_check(cfg);
}

static bool
write_port_file(const char *path, const char *text)
{
    char *tmp = g_strdup_printf("%s.tmp", path);
    GError *err = NULL;
    bool ok = g_file_set_contents(tmp, text, -1, &err) &&
              g_rename(tmp, path) == 0;

    if (!ok)
        fprintf(stderr, "sockchatd: cannot write %s: %s\n", path,
                err ? err->message : g_strerror(errno));
    g_clear_error(&err);
    g_free(tmp);
    return ok;
}

/* The long-term key (and, with --reserve-nicks, the reservations). false
 * with a message on stderr: a key file others may read is refused. */
static bool
load_identity(struct identity **id, struct identity_nicks **nicks)
{
    char *path = opt.identity ? g_strdup(opt.identity)
                              : g_build_filename(g_get_user_config_dir(),
                                                 "sockchat", "sockchatd.key",
                                                 NULL);
    struct identity_error err;
    bool created = false, ok = false;

    if (identity_load_or_create(path, id, &created, &err) != CHAT_OK) {
        fprintf(stderr, "sockchatd: %s\n", err.text);
        goto out;
    }
    if (created)
        log_info("created the identity key %s", path);
    log_info("identity %s", identity_fingerprint_str(*id));
    if (opt.reserve_nicks) {
        char *np = opt.nicks_file
                       ? g_strdup(opt.nicks_file)
                       : g_build_filename(g_get_user_config_dir(), "sockchat",
                                          "reserved-nicks", NULL);
        int rc = identity_nicks_load(np, 100000, nicks, &err);

        g_free(np);
        if (rc != CHAT_OK) {
            fprintf(stderr, "sockchatd: %s\n", err.text);
            goto out;
        }
    }
    ok = true;
out:
    g_free(path);
    return ok;
}

/* Descriptors the server needs besides its clients: listeners, discovery,
 * the signal pipe, logs. */
#define FD_RESERVE 32

/*
 * Make --max-clients possible: select cannot watch a descriptor at or above
 * FD_SETSIZE, so the limit is lowered to what fits, with one line saying
 * so; and the soft descriptor limit is raised towards the hard one to what
 * the clients need, with a clear line when the hard limit is too low.
 */
static void
fit_max_clients(struct server_config *cfg, const struct loop *loop)
{
    int fd_limit = loop_fd_limit(loop);
    rlim_t need;
    struct rlimit rl;

    if (fd_limit > 0 && cfg->max_clients + FD_RESERVE > (unsigned)fd_limit) {
        unsigned fit = fd_limit > FD_RESERVE ? (unsigned)fd_limit - FD_RESERVE
                                             : 1;

        log_warn("--max-clients %u lowered to %u: the %s loop watches "
                 "descriptors below %d (use --io epoll for more)",
                 cfg->max_clients, fit, loop_name(loop), fd_limit);
        cfg->max_clients = fit;
        opt.max_clients = (gint)fit; /* SIGHUP must not raise it again */
    }
    need = (rlim_t)cfg->max_clients + FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        /* Past the hard limit accept() would fail with EMFILE and clients
         * would wait in the backlog; with the places fitted, the ones
         * beyond are accepted and told server_full. */
        unsigned fit = rl.rlim_max > FD_RESERVE
                           ? (unsigned)(rl.rlim_max - FD_RESERVE)
                           : 1;

        log_warn("--max-clients %u lowered to %u: the hard descriptor limit "
                 "is %llu (raise it with ulimit -Hn); clients past it get "
                 "server_full",
                 cfg->max_clients, fit, (unsigned long long)rl.rlim_max);
        cfg->max_clients = fit;
        opt.max_clients = (gint)fit; /* SIGHUP must not raise it again */
        need = rl.rlim_max;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        log_info("descriptor limit raised to %llu for %u clients",
                 (unsigned long long)need, cfg->max_clients);
}

static int
setup_signals(void)
{
    struct sigaction sa;

    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* Writes to a vanished peer are errors, not a signal (MSG_NOSIGNAL
     * covers send(); this covers everything else). */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

struct run_state {
    struct server *srv;
    bool stop;
};

static void
on_signal_pipe(struct loop *l, int fd, unsigned events, void *arg)
{
    struct run_state *rs = arg;
    unsigned char b;

    (void)l;
    (void)events;
    while (read(fd, &b, 1) == 1) {
        if (b == SIGHUP) {
            struct server_config cfg;

            if (!opt.config) {
                log_info("SIGHUP: no --config file to reload");
                continue;
            }
            if (config_build(&cfg))
                server_reconfigure(rs->srv, &cfg);
            else
                log_warn("SIGHUP: keeping the old configuration");
            config_free(&cfg);
        } else {
            log_info("signal %d: shutting down", b);
            rs->stop = true;
        }
    }
}

int
main(int argc, char **argv)
{
    GOptionContext *ctx;
    GError *err = NULL;
    struct server_config cfg;
    struct loop *loop = NULL;
    struct run_state rs = {0};
    struct identity *id = NULL;
    struct identity_nicks *nicks = NULL;
    struct beacon *beacon = NULL; /* discovery */
    bool fell_back = false;
    char *eps = NULL;
    int status = 1, i;

    ctx = g_option_context_new("- the sockchat server");
    g_option_context_set_summary(
        ctx, "Chat rooms over length-prefixed JSON frames. With no options "
             "it listens on\n127.0.0.1 and ::1, TCP and UDP port 7710, and "
             "is reachable from this machine only.");
    g_option_context_set_description(
        ctx, "Exit status: 0 after SIGINT or SIGTERM, 1 for a bad command "
             "line or configuration,\n2 when it cannot listen.\n\n"
             "See sockchatd(8) and doc/PROTOCOL.md.");
    g_option_context_add_main_entries(ctx, opt_entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "sockchatd: %s (try --help)\n", err->message);
        g_clear_error(&err);
        g_option_context_free(ctx);
        return 1;
    }
    g_option_context_free(ctx);
    memset(&cfg, 0, sizeof(cfg));
    if (opt.version) {
        printf("sockchatd %s (protocol %d)\n", PACKAGE_VERSION, PROTO_VERSION);
        status = 0;
        goto out;
    }
    if (argc > 1) {
        fprintf(stderr, "sockchatd: unexpected argument '%s' (try --help)\n",
                argv[1]);
        goto out;
    }
    if (opt.trace && strcmp(opt.trace, "sockets") != 0) {
        fprintf(stderr, "sockchatd: --trace takes 'sockets'\n");
        goto out;
    }
    /* discovery: option checks; libsodium draws the instance id */
    if (opt.beacon_interval != -1 &&
        (opt.beacon_interval < BEACON_INTERVAL_MIN ||
         opt.beacon_interval > BEACON_INTERVAL_MAX)) {
        fprintf(stderr, "sockchatd: --beacon-interval must be 0.2-3600\n");
        goto out;
    }
    if (opt.discovery_port != -1 &&
        (opt.discovery_port < 0 || opt.discovery_port > 65535)) {
        fprintf(stderr, "sockchatd: --discovery-port must be 0-65535\n");
        goto out;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "sockchatd: cannot initialise libsodium\n");
        goto out;
    }
    if (opt.secure && !parse_secure_policy(opt.secure, &(enum secure_policy){0})) {
        fprintf(stderr, "sockchatd: --secure takes off, optional or required\n");
        goto out;
    }
    log_setup("sockchatd", opt.quiet     ? LOG_LEVEL_ERROR
                           : opt.verbose ? LOG_LEVEL_DEBUG
                                         : LOG_LEVEL_INFO);
    log_set_trace_sockets(opt.trace != NULL);
    if (!config_build(&cfg))
        goto out;
    if ((cfg.secure != SECURE_POLICY_OFF || opt.fingerprint) &&
        !load_identity(&id, &nicks))
        goto out;
    if (opt.fingerprint) {
        printf("%s\n", identity_fingerprint_str(id));
        status = 0;
        goto out;
    }
    if (setup_signals() < 0) {
        fprintf(stderr, "sockchatd: cannot set up signals: %s\n",
                g_strerror(errno));
        goto out;
    }
    if (loop_new(opt.io, &loop, &fell_back) != CHAT_OK) {
        fprintf(stderr, "sockchatd: cannot create the loop: %s\n",
                g_strerror(errno));
        goto out;
    }
    if (fell_back)
        log_warn("--io %s is not available here; using %s", opt.io,
                 loop_name(loop));
    fit_max_clients(&cfg, loop);
    rs.srv = server_new(&cfg, loop);
    server_set_identity(rs.srv, id, nicks);
    id = NULL;
    nicks = NULL;
    loop_add_fd(loop, sig_pipe[0], LOOP_READ, on_signal_pipe, &rs);
    status = 2;
    for (i = 0; cfg.listen[i]; i++) {
        char why[256] = "";

        if (server_listen(rs.srv, cfg.listen[i], why, sizeof(why)) !=
            CHAT_OK) {
            fprintf(stderr, "sockchatd: cannot listen on %s: %s\n",
                    cfg.listen[i], why);
            goto out;
        }
    }
    eps = server_endpoints(rs.srv);
    {
        char **lines = g_strsplit(eps, "\n", -1);

        for (i = 0; lines[i] && lines[i][0]; i++)
            log_info("listening on %s", lines[i]);
        g_strfreev(lines);
    }
    if (opt.port_file && !write_port_file(opt.port_file, eps)) {
        status = 1;
        goto out;
    }
    /* discovery: after the listeners, which the beacon announces */
    {
        struct beacon_config bcfg;
        char why[256] = "";

        beacon_config_defaults(&bcfg);
        bcfg.lan = opt.lan != FALSE;
        if (opt.beacon_interval != -1)
            bcfg.interval = opt.beacon_interval;
        if (opt.discovery_port != -1)
            bcfg.port = (uint16_t)opt.discovery_port;
        if (beacon_new(rs.srv, loop, &bcfg, &beacon, why, sizeof(why)) !=
            CHAT_OK) {
            if (opt.lan) {
                fprintf(stderr, "sockchatd: cannot announce on the LAN: %s\n",
                        why);
                goto out;
            }
            log_warn("discovery: not answering probes: %s", why);
        }
    }
    while (!rs.stop) {
        int wait = server_tick(rs.srv);

        if (beacon != NULL) { /* discovery */
            int bw = beacon_tick(beacon);

            if (bw >= 0 && (wait < 0 || bw < wait))
                wait = bw;
        }

        if (loop_run_once(loop, wait) < 0) {
            log_err("loop: %s", g_strerror(errno));
            break;
        }
        server_after_pass(rs.srv);
    }
    server_shutdown(rs.srv, SHUTDOWN_DEADLINE_MS);
    status = rs.stop ? 0 : 1;
out:
    beacon_free(beacon); /* discovery */
    server_free(rs.srv);
    loop_free(loop);
    if (sig_pipe[0] >= 0) {
        close(sig_pipe[0]);
        close(sig_pipe[1]);
    }
    if (opt.port_file && status == 0)
        g_unlink(opt.port_file);
    g_free(eps);
    config_free(&cfg);
    g_strfreev(opt.listen);
    g_free(opt.name);
    g_free(opt.motd);
    g_free(opt.config);
    g_free(opt.port_file);
    g_free(opt.trace);
    g_free(opt.io);
    identity_free(id);
    identity_nicks_free(nicks);
    g_free(opt.secure);
    g_free(opt.identity);
    g_free(opt.nicks_file);
    return status;
}
