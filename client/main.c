/* main.c - sockchat: command line, then the interactive or batch client. */
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "addr.h"
#include "batch.h"
#include "client.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "message.h"
#include "ui.h"

#define DEFAULT_HOST "localhost"

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
    gboolean version;
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
    "unix:///path/to/socket) or HOST[:PORT]; the default is localhost,\n"
    "port 7710, over tcp.";

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
    "Exit status:\n"
    "  0  the session ended normally (quit and bye)\n"
    "  1  bad command line\n"
    "  2  the server is unreachable: the connection failed, or no welcome\n"
    "     came within the timeout\n"
    "  3  the server refused the hello (nick_in_use, server_full,\n"
    "     version_unsupported, ...)\n"
    "  4  the server closed the connection unexpectedly\n"
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
        {"trace", 0, 0, G_OPTION_ARG_STRING, &o.trace,
         "Trace WHAT to standard error; WHAT is \"sockets\": one line per "
         "socket call",
         "WHAT"},
        {"version", 0, 0, G_OPTION_ARG_NONE, &o.version,
         "Print the version and exit", NULL},
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
    char shown[ADDR_URL_MAX], why[128], room[MSG_ROOM_MAX + 3];
    int status = CLIENT_EXIT_USAGE;
    size_t i;

    memset(&o, 0, sizeof(o));
    o.timeout = CLIENT_DEFAULT_TIMEOUT;
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
    if (o.json && !o.batch) {
        status = usage_error("%s", "--json needs --batch");
        goto out;
    }
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
    url = argc > 1 ? argv[1] : DEFAULT_HOST;
    if (addr_parse_url(url, "tcp", CLIENT_DEFAULT_PORT, &ep, why,
                       sizeof(why)) != CHAT_OK) {
        fprintf(stderr, "sockchat: bad server '%s': %s\n", url, why);
        status = CLIENT_EXIT_USAGE;
        goto out;
    }
    addr_format_url(&ep, shown, sizeof(shown));

    log_setup("sockchat", o.verbose >= 2   ? LOG_LEVEL_DEBUG
                          : o.verbose == 1 ? LOG_LEVEL_INFO
                                           : LOG_LEVEL_WARN);
    log_set_trace_sockets(o.trace != NULL);

    memset(&cfg, 0, sizeof(cfg));
    cfg.nick = o.nick != NULL ? o.nick : default_nick();
    cfg.rooms = (const char *const *)rooms->pdata;
    cfg.n_rooms = rooms->len;
    cfg.timeout_ms = o.timeout * 1000;
    if (o.batch) {
        struct batch_opts bo = {.json = o.json != FALSE};

        status = batch_main(&cfg, url, shown, &bo);
    } else {
        struct ui_opts uo = {.color = use_color(&o), .bell = !o.no_bell};

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
    return status;
}
