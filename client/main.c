/* main.c - sockchat: command line, then the interactive or batch client. */
#include <errno.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <sodium.h>

#include "addr.h"
#include "batch.h"
#include "client.h"
#include "config.h"
#include "discover.h"
#include "err.h"
#include "identity.h"
#include "log.h"
#include "message.h"
#include "transport.h"
#include "ui.h"

struct opts {
    char *nick;
    char **rooms;
    gboolean batch;
    gboolean json;
    gboolean no_color;
    gboolean bell;
    gboolean no_bell;
    int timeout;
    int verbose;
    char *trace;
    char *transport; /* --transport: scheme for an address without one */
    /* secure sessions (doc/SECURE.md) */
    gboolean secure;
    gboolean accept_new;
    char *identity;
    gboolean no_identity;
    char *known_servers;
    gboolean version;
    /* discovery (discover.h) */
    gboolean discover;
    gboolean passive;
    gboolean watch;
    int discovery_port;
};

static gboolean
opt_verbose(const gchar *name, const gchar *value, gpointer data,
            GError **error)
{
    struct opts *o = data;

    (void)name;
    (void)value;
    (void)error;
    o->verbose++;
    return TRUE;
}

static const char summary_intro[] =
    "Chat on a sockchat server. Without --batch, an interactive client:\n"
    "type a line to say it in the current room (shown in the prompt), or a\n"
    "command. Ctrl-D and Ctrl-C quit too.\n"
    "\n";

static const char summary_outro[] =
    "\n"
    "The server is URL (tcp://127.0.0.1:7710, tcp://[::1]:7710,\n"
    "unix:///path/to/socket) or HOST[:PORT], port 7710 and tcp by default.\n"
    "Without one, sockchat looks for servers on this host and the LAN\n"
    "(as --discover does, for one second): it connects to the only one\n"
    "that answers, lets you pick when several do, and tries localhost\n"
    "when none does.";

static const char description[] =
    "Batch mode (--batch) reads the same lines from standard input, one\n"
    "request each, and prints every message from the server on one line\n"
    "of standard output (\"[12:01:02] #ops <alice> hi\"), or with --json\n"
    "the JSON object exactly as received. Errors from the server go to\n"
    "standard error as \"sockchat: error: CODE: MESSAGE\". At the end of\n"
    "input it sends quit and exits once the server has said bye, which\n"
    "it does only after handling everything sent before:\n"
    "\n"
    "  echo 'deploy done' | sockchat --batch -n ci -r ops chat.example\n"
    "\n"
    "In an interactive session, colours are off when NO_COLOR is set (to\n"
    "any value), with --no-color, or when standard output is not a\n"
    "terminal.\n"
    "\n"
    "Secure sessions: with --secure, or secure=true in the configuration\n"
    "file, the session is encrypted (X25519, XChaCha20-Poly1305) and the\n"
    "server proves its key, which is checked against the known-servers\n"
    "file as ssh does: a new server is asked about (\"Trust server\n"
    "HOST:PORT with fingerprint SHA256:...? [y/N]\"), or in batch mode\n"
    "needs --accept-new; a changed key is refused, and the message says\n"
    "which line to remove if the change is genuine. A server that is in\n"
    "that file is always reached securely, --secure or not. The prompt\n"
    "shows a lock (\"#general (secure)> \" without a UTF-8 locale or with\n"
    "NO_COLOR), and /info the server's key. Your own key (made on first\n"
    "use of --secure) proves who you are to servers that reserve nicks.\n"
    "The server itself still reads everything.\n"
    "\n"
    "Files (DIR is $XDG_CONFIG_HOME/sockchat, by default ~/.config/sockchat):\n"
    "  DIR/client.conf    settings: group [sockchat], secure=true|false,\n"
    "                     nick=NICK (the command line wins)\n"
    "  DIR/known_servers  \"host port SHA256:...\" lines (--known-servers)\n"
    "  DIR/identity.key   your key, mode 0600 (--identity)\n"
    "\n"
    "Exit status:\n"
    "  0  the session ended normally (quit and bye)\n"
    "  1  bad command line, configuration file or key file\n"
    "  2  the server is unreachable: the connection failed, or no welcome\n"
    "     came within the timeout\n"
    "  3  the server refused the hello (nick_in_use, nick_reserved,\n"
    "     server_full, encryption_required, ...), or no trusted secure\n"
    "     session: the server offers none, is new (batch without\n"
    "     --accept-new, or not trusted), or its key has changed\n"
    "  4  the server closed the connection unexpectedly, or a sealed frame\n"
    "     did not open (secure session failed)\n"
    "  5  batch mode: a request was answered with an error, or refused\n"
    "     before sending (every other line was still sent)\n"
    "\n"
    "Each status but 0 comes with one line on standard error saying why.";

static int usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static int
usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("sockchat: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'sockchat --help' for more information.\n", stderr);
    return CLIENT_EXIT_USAGE;
}

/* $USER when it is a valid nick, else "guest". */
static const char *
default_nick(void)
{
    const char *user = g_getenv("USER");

    return msg_valid_nick(user) ? user : "guest";
}

/* A file in the configuration directory (g_free it). */
static char *
config_path(const char *name)
{
    return g_build_filename(g_get_user_config_dir(), "sockchat", name, NULL);
}

/*
 * Read client.conf: group [sockchat], keys secure (boolean) and nick. A
 * missing file is no settings; a damaged one or a bad value is an error
 * (CLIENT_EXIT_USAGE, said on stderr), never silently ignored.
 */
static int
load_config(char **nick, bool *secure)
{
    GKeyFile *kf = g_key_file_new();
    GError *e = NULL;
    char *path = config_path("client.conf");
    char *v = NULL;
    int status = CLIENT_EXIT_USAGE;
    gboolean b;

    *nick = NULL;
    *secure = false;
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &e)) {
        if (g_error_matches(e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            status = CLIENT_EXIT_OK;
        else
            fprintf(stderr, "sockchat: %s: %s\n", path, e->message);
        goto out;
    }
    if (g_key_file_has_key(kf, "sockchat", "secure", NULL)) {
        b = g_key_file_get_boolean(kf, "sockchat", "secure", &e);
        if (e != NULL) {
            fprintf(stderr, "sockchat: %s: secure: %s (true or false)\n", path,
                    e->message);
            goto out;
        }
        *secure = b != FALSE;
    }
    if (g_key_file_has_key(kf, "sockchat", "nick", NULL)) {
        v = g_key_file_get_string(kf, "sockchat", "nick", &e);
        if (v == NULL || !msg_valid_nick(v)) {
            fprintf(stderr,
                    "sockchat: %s: bad nick '%s': 1-24 of A-Z a-z 0-9 _ -\n",
                    path, v != NULL ? v : "");
            goto out;
        }
        *nick = v;
        v = NULL;
    }
    status = CLIENT_EXIT_OK;
out:
    g_free(v);
    g_clear_error(&e);
    g_key_file_free(kf);
    g_free(path);
    return status;
}

/* How the known-servers file names the server at ep: the host as given
 * (no brackets) and the port; a UNIX socket is "unix:PATH" and port 7710.
 * False when it cannot be named (a path with a space, too long). */
static bool
known_key(const struct endpoint *ep, char *host, size_t n, unsigned *port)
{
    size_t i;

    if (strcmp(ep->scheme, "unix") == 0) {
        g_snprintf(host, n, "unix:%s", ep->path);
        *port = CLIENT_DEFAULT_PORT;
    } else {
        g_snprintf(host, n, "%s", ep->host);
        *port = ep->port;
    }
    if (host[0] == '\0' || strlen(host) > IDENTITY_HOST_MAX || *port == 0)
        return false;
    for (i = 0; host[i] != '\0'; i++)
        if ((unsigned char)host[i] <= 0x20 || host[i] == 0x7f)
            return false;
    return true;
}

/*
 * The secure mode for this server: required when asked; otherwise TRY
 * when the known-servers file has an entry for it (a pinned server is
 * never reached in plain text), else OFF. CLIENT_EXIT_OK or an exit
 * status, said on stderr.
 */
static int
secure_plan(bool required, const char *known, const char *host, unsigned port,
            bool named, enum client_secure *mode)
{
    static const char no_fp[] =
        "SHA256:0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 "
        "0000 0000 0000 0000";
    struct identity_error err;
    enum identity_known res;

    *mode = required ? CLIENT_SECURE_REQUIRED : CLIENT_SECURE_OFF;
    if (!named) {
        if (!required)
            return CLIENT_EXIT_OK;
        fprintf(stderr,
                "sockchat: --secure: cannot remember the key of '%s' in the "
                "known-servers file (a name with spaces?)\n",
                host);
        return CLIENT_EXIT_USAGE;
    }
    if (identity_known_lookup(known, host, port, no_fp, &res, NULL, &err) !=
        CHAT_OK) {
        fprintf(stderr, "sockchat: %s\n", err.text);
        return CLIENT_EXIT_USAGE;
    }
    /* A pinned address, or a discovered server that claims a pinned key
     * (it moved): try a secure session, so that the key is checked. */
    if (!required && (res != IDENTITY_KNOWN_NEW ||
                      (discover_chose(host, port) && discover_chose_moved())))
        *mode = CLIENT_SECURE_TRY;
    return CLIENT_EXIT_OK;
}

/*
 * Your key, for a secure session: --identity FILE or the default file,
 * made when missing if --identity or --secure asked for it, else only
 * loaded when it exists. *id stays NULL without one.
 */
static int
load_identity(const char *given, bool create, struct identity **id)
{
    struct identity_error err;
    char *path = given != NULL ? g_strdup(given) : config_path("identity.key");
    bool created = false;
    int rc;

    *id = NULL;
    if (create) {
        rc = identity_load_or_create(path, id, &created, &err);
    } else {
        rc = identity_load(path, id, &err);
        if (rc == CHAT_ESYS && errno == ENOENT)
            rc = CHAT_OK;
    }
    if (rc != CHAT_OK)
        fprintf(stderr, "sockchat: your identity: %s\n", err.text);
    else if (created)
        fprintf(stderr, "sockchat: made your identity key %s (%s)\n", path,
                identity_fingerprint_str(*id));
    g_free(path);
    return rc == CHAT_OK ? CLIENT_EXIT_OK : CLIENT_EXIT_USAGE;
}

static bool
use_color(const struct opts *o)
{
    const char *term = g_getenv("TERM");

    if (o->no_color || g_getenv("NO_COLOR") != NULL)
        return false;
    if (term != NULL && strcmp(term, "dumb") == 0)
        return false;
    return isatty(STDOUT_FILENO) != 0;
}

int
main(int argc, char **argv)
{
    struct opts o;
    GOptionEntry entries[] = {
        {"nick", 'n', 0, G_OPTION_ARG_STRING, &o.nick,
         "Use NICK (default: $USER, else \"guest\")", "NICK"},
        {"room", 'r', 0, G_OPTION_ARG_STRING_ARRAY, &o.rooms,
         "Join ROOM; repeat for more, the first is the current room "
         "(default: #general when interactive)",
         "ROOM"},
        {"batch", 0, 0, G_OPTION_ARG_NONE, &o.batch,
         "Read lines from standard input, print messages one per line", NULL},
        {"json", 0, 0, G_OPTION_ARG_NONE, &o.json,
         "With --batch: print each message from the server as one line, the "
         "JSON object exactly as received",
         NULL},
        {"no-color", 0, 0, G_OPTION_ARG_NONE, &o.no_color,
         "Do not colour nicks or highlight mentions", NULL},
        {"bell", 0, 0, G_OPTION_ARG_NONE, &o.bell,
         "Ring the bell when a message mentions your nick (default)", NULL},
        {"no-bell", 0, 0, G_OPTION_ARG_NONE, &o.no_bell,
         "Do not ring the bell on a mention", NULL},
        {"timeout", 0, 0, G_OPTION_ARG_INT, &o.timeout,
         "Wait at most SECONDS to connect and for the server's welcome and "
         "bye (default: 10)",
         "SECONDS"},
        {"verbose", 'v', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
         (gpointer)opt_verbose, "Log more to standard error (twice: debug)",
         NULL},
        {"transport", 't', 0, G_OPTION_ARG_STRING, &o.transport,
         "Transport for an address given without a scheme: tcp (default), "
         "udp or unix",
         "NAME"},
        {"trace", 0, 0, G_OPTION_ARG_STRING, &o.trace,
         "Trace WHAT to standard error; WHAT is \"sockets\": one line per "
         "socket call",
         "WHAT"},
        {"secure", 0, 0, G_OPTION_ARG_NONE, &o.secure,
         "Require a secure (encrypted) session, checking the server's key "
         "(default: secure= in client.conf, else plain unless the server is "
         "in the known-servers file)",
         NULL},
        {"accept-new", 0, 0, G_OPTION_ARG_NONE, &o.accept_new,
         "Remember a server seen for the first time without asking (batch "
         "mode refuses new servers without it); a changed key is still "
         "refused",
         NULL},
        {"identity", 0, 0, G_OPTION_ARG_FILENAME, &o.identity,
         "Prove your identity with the key in FILE, made if missing (default: "
         "identity.key in the configuration directory)",
         "FILE"},
        {"no-identity", 0, 0, G_OPTION_ARG_NONE, &o.no_identity,
         "Send no identity in a secure session", NULL},
        {"known-servers", 0, 0, G_OPTION_ARG_FILENAME, &o.known_servers,
         "Remember server keys in FILE (default: known_servers in the "
         "configuration directory)",
         "FILE"},
        {"version", 0, 0, G_OPTION_ARG_NONE, &o.version,
         "Print the version and exit", NULL},
        /* discovery (discover.h) */
        {"discover", 0, 0, G_OPTION_ARG_NONE, &o.discover,
         "List the servers on this host and the LAN, one line each (probe "
         "and listen for --timeout seconds, default 2), and exit; with "
         "--json one JSON object each",
         NULL},
        {"passive", 0, 0, G_OPTION_ARG_NONE, &o.passive,
         "With --discover: send no probe, only listen for beacons", NULL},
        {"watch", 0, 0, G_OPTION_ARG_NONE, &o.watch,
         "With --discover: print servers as they appear (+), change (*), "
         "restart (~) and expire (-)",
         NULL},
        {"discovery-port", 0, 0, G_OPTION_ARG_INT, &o.discovery_port,
         "UDP port of discovery (default: 7711)", "PORT"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    struct client_config cfg;
    struct endpoint ep;
    GOptionContext *ctx = NULL;
    GOptionGroup *group;
    GError *error = NULL;
    GPtrArray *rooms = NULL;
    char *summary = NULL;
    const char *url;
    char *with_scheme = NULL;
    char shown[ADDR_URL_MAX], why[128], room[MSG_ROOM_MAX + 3];
    char found[ADDR_URL_MAX]; /* discovery: the server chosen */
    int status = CLIENT_EXIT_USAGE;
    size_t i;
    /* secure sessions */
    struct identity *me = NULL;
    char *conf_nick = NULL, *known_path = NULL;
    char known_host[IDENTITY_HOST_MAX + 8];
    unsigned known_port = 0;
    bool conf_secure = false, named;
    enum client_secure mode = CLIENT_SECURE_OFF;

    memset(&o, 0, sizeof(o));
    o.timeout = G_MININT; /* discovery: the default depends on the mode */
    o.discovery_port = DISCOVERY_PORT;
    setlocale(LC_ALL, "");
    log_setup("sockchat", LOG_LEVEL_WARN);

    ctx = g_option_context_new("[URL | HOST[:PORT]]");
    summary =
        g_strconcat(summary_intro, client_help_text(), summary_outro, NULL);
    g_option_context_set_summary(ctx, summary);
    g_option_context_set_description(ctx, description);
    group = g_option_group_new(NULL, NULL, NULL, &o, NULL);
    g_option_group_add_entries(group, entries);
    g_option_context_set_main_group(ctx, group);
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        status = usage_error("%s", error->message);
        goto out;
    }
    if (o.version) {
        printf("sockchat %s\n", PACKAGE_VERSION);
        status = CLIENT_EXIT_OK;
        goto out;
    }
    if (argc > 2) {
        status = usage_error("too many arguments: '%s'", argv[2]);
        goto out;
    }
    if (o.json && !o.batch && !o.discover) {
        status = usage_error("%s", "--json needs --batch or --discover");
        goto out;
    }
    /* discovery: option checks */
    if ((o.passive || o.watch) && !o.discover) {
        status = usage_error("%s", "--passive and --watch need --discover");
        goto out;
    }
    if (o.discover && (o.batch || argc > 1)) {
        status = usage_error("%s", "--discover takes no server and no --batch");
        goto out;
    }
    if (o.discovery_port < 1 || o.discovery_port > 65535) {
        status = usage_error("%s", "--discovery-port must be 1-65535");
        goto out;
    }
    if (o.timeout == G_MININT)
        o.timeout = o.discover ? DISCOVER_DEFAULT_S : CLIENT_DEFAULT_TIMEOUT;
    if (o.bell && o.no_bell) {
        status = usage_error("%s", "--bell and --no-bell contradict");
        goto out;
    }
    if (o.timeout < 1 || o.timeout > 86400) {
        status = usage_error("%s", "--timeout must be 1-86400 seconds");
        goto out;
    }
    if (o.trace != NULL && strcmp(o.trace, "sockets") != 0) {
        status =
            usage_error("unknown --trace '%s' (only \"sockets\")", o.trace);
        goto out;
    }
    if (o.nick != NULL && !msg_valid_nick(o.nick)) {
        status = usage_error("bad nick '%s': 1-24 of A-Z a-z 0-9 _ -", o.nick);
        goto out;
    }
    /* secure sessions: options, client.conf, the known-servers file */
    if (o.no_identity && o.identity != NULL) {
        status = usage_error("%s", "--identity and --no-identity contradict");
        goto out;
    }
    status = load_config(&conf_nick, &conf_secure);
    if (status != CLIENT_EXIT_OK)
        goto out;
    status = CLIENT_EXIT_USAGE;
    known_path = o.known_servers != NULL ? g_strdup(o.known_servers)
                                         : config_path("known_servers");
    rooms = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; o.rooms != NULL && o.rooms[i] != NULL; i++) {
        g_snprintf(room, sizeof(room), "%s%s", o.rooms[i][0] == '#' ? "" : "#",
                   o.rooms[i]);
        if (strlen(o.rooms[i]) > MSG_ROOM_MAX + 1 || !msg_valid_room(room)) {
            status = usage_error(
                "bad room '%s': # then 1-32 of A-Z a-z 0-9 _ -", o.rooms[i]);
            goto out;
        }
        g_ptr_array_add(rooms, g_strdup(room));
    }
    if (rooms->len == 0 && !o.batch)
        g_ptr_array_add(rooms, g_strdup(CLIENT_DEFAULT_ROOM));
    /* discovery: --discover, /servers, and no server given */
    log_setup("sockchat", o.verbose >= 2   ? LOG_LEVEL_DEBUG
                          : o.verbose == 1 ? LOG_LEVEL_INFO
                                           : LOG_LEVEL_WARN);
    log_set_trace_sockets(o.trace != NULL);
    if (sodium_init() < 0) {
        fprintf(stderr, "sockchat: cannot initialise libsodium\n");
        status = CLIENT_EXIT_UNREACHABLE;
        goto out;
    }
    {
        struct discover_opts dop = {
            .port = (uint16_t)o.discovery_port,
            .probe = !o.passive,
            .json = o.json != FALSE,
            .watch = o.watch != FALSE,
            .known_servers = known_path,
        };

        if (o.discover) {
            status = discover_main(&dop, o.timeout * 1000);
            goto out;
        }
        discover_session_setup(&dop);
        if (argc <= 1) {
            if (!discover_choose(&dop, !o.batch && isatty(STDIN_FILENO),
                                 found, sizeof(found), &status))
                goto out;
        }
    }
    url = argc > 1 ? argv[1] : found;
    if (o.transport && !transport_find(o.transport)) {
        fprintf(stderr, "sockchat: --transport takes tcp, udp or unix\n");
        status = CLIENT_EXIT_USAGE;
        goto out;
    }
    if (o.transport && !strstr(url, "://")) {
        /* "--transport udp host:7710" is "udp://host:7710". */
        with_scheme = g_strdup_printf("%s://%s", o.transport, url);
        url = with_scheme;
    }
    if (addr_parse_url(url, o.transport ? o.transport : "tcp",
                       CLIENT_DEFAULT_PORT, &ep, why,
                       sizeof(why)) != CHAT_OK) {
        fprintf(stderr, "sockchat: bad server '%s': %s\n", url, why);
        status = CLIENT_EXIT_USAGE;
        goto out;
    }
    addr_format_url(&ep, shown, sizeof(shown));
    named = known_key(&ep, known_host, sizeof(known_host), &known_port);
    status = secure_plan(o.secure || conf_secure, known_path, known_host,
                         known_port, named, &mode);
    if (status != CLIENT_EXIT_OK)
        goto out;
    if (mode != CLIENT_SECURE_OFF && !o.no_identity) {
        status = load_identity(
            o.identity, o.identity != NULL || mode == CLIENT_SECURE_REQUIRED,
            &me);
        if (status != CLIENT_EXIT_OK)
            goto out;
    }
    status = CLIENT_EXIT_USAGE;

    log_setup("sockchat", o.verbose >= 2   ? LOG_LEVEL_DEBUG
                          : o.verbose == 1 ? LOG_LEVEL_INFO
                                           : LOG_LEVEL_WARN);
    log_set_trace_sockets(o.trace != NULL);

    memset(&cfg, 0, sizeof(cfg));
    cfg.nick = o.nick != NULL      ? o.nick
               : conf_nick != NULL ? conf_nick
                                   : default_nick();
    cfg.rooms = (const char *const *)rooms->pdata;
    cfg.n_rooms = rooms->len;
    cfg.timeout_ms = o.timeout * 1000;
    cfg.secure = mode;
    cfg.known_servers = known_path;
    cfg.known_host = known_host;
    cfg.known_port = known_port;
    cfg.accept_new = o.accept_new != FALSE;
    cfg.identity = me;
    if (o.batch) {
        struct batch_opts bo = {.json = o.json != FALSE};

        status = batch_main(&cfg, url, shown, &bo);
    } else {
        struct ui_opts uo = {
            .color = use_color(&o),
            .bell = !o.no_bell,
            .unicode = g_getenv("NO_COLOR") == NULL && g_get_charset(NULL),
        };

        status = ui_main(&cfg, url, shown, &uo);
    }
out:
    if (rooms != NULL)
        g_ptr_array_free(rooms, TRUE);
    g_clear_error(&error);
    g_option_context_free(ctx);
    g_free(summary);
    g_free(o.nick);
    g_strfreev(o.rooms);
    g_free(o.trace);
    g_free(o.transport);
    g_free(with_scheme);
    g_free(o.identity);
    g_free(o.known_servers);
    g_free(conf_nick);
    g_free(known_path);
    identity_free(me);
    return status;
}
