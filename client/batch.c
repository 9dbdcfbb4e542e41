/* batch.c - lines from stdin, events to stdout, for scripts and tests. */
#include "batch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "ui.h"

#define BATCH_LINE_MAX 65536 /* a longer line is refused, not sent */
#define BATCH_QUEUE_MAX 32   /* requests waiting before stdin pauses */

struct batch {
    struct client *c;
    struct loop *loop;
    struct batch_opts o;
    struct buf line; /* bytes of stdin not yet cut into lines */
    bool stdin_on;   /* stdin is watched */
    bool stdin_done; /* end of input (or /quit) reached */
    bool skipping;   /* inside a line that was too long */
    unsigned local_errors;
};

/* Events */

static void
batch_json(const struct client_event *ev)
{
    char *s = NULL;
    size_t i;

    /* The payload as sent, unless it holds a raw control byte (a newline
     * between tokens, say): then one line needs cJSON's compact form of
     * the same object. */
    for (i = 0; i < ev->raw_len; i++)
        if ((unsigned char)ev->raw[i] < 0x20)
            break;
    if (i == ev->raw_len) {
        fwrite(ev->raw, 1, ev->raw_len, stdout);
    } else {
        s = cJSON_PrintUnformatted(ev->obj);
        if (s == NULL)
            return;
        fputs(s, stdout);
        cJSON_free(s);
    }
    fputc('\n', stdout);
}

static void
batch_on_event(const struct client_event *ev, void *arg)
{
    struct batch *b = arg;
    GString *s;

    if (b->o.json && ev->json_ok)
        batch_json(ev);
    if (ev->type == CEV_MALFORMED) {
        s = g_string_new(NULL);
        ui_put_clean(s, ev->why);
        fprintf(stderr,
                "sockchat: warning: ignoring a malformed message from the "
                "server: %s\n",
                s->str);
        g_string_free(s, TRUE);
    } else if (ev->type == CEV_ERROR) {
        /* A refused hello is said once, as the exit message. */
        if (client_state(b->c) != CLIENT_HELLO) {
            s = g_string_new("sockchat: error: ");
            ui_put_clean(s, ev->code);
            g_string_append(s, ": ");
            ui_put_clean(s, ev->message);
            fprintf(stderr, "%s\n", s->str);
            g_string_free(s, TRUE);
        }
    } else if (!b->o.json) {
        s = g_string_new(NULL);
        ui_format_event(ev, client_nick(b->c), UI_FMT_SECONDS, s);
        fputs(s->str, stdout);
        g_string_free(s, TRUE);
    }
    fflush(stdout);
}

/* Notices go to stderr, never into the output a script reads; the secure
 * session's key only with -v (it is logged). Nobody is asked anything: a
 * new server needs --accept-new. */
static void
batch_on_notice(enum client_notice kind, const char *text, void *arg)
{
    (void)arg;
    switch (kind) {
    case CLIENT_NOTICE_TRUSTED:
    case CLIENT_NOTICE_WARNING:
        fprintf(stderr, "sockchat: %s%s\n",
                kind == CLIENT_NOTICE_WARNING ? "warning: " : "", text);
        break;
    case CLIENT_NOTICE_REFUSAL:
        fprintf(stderr, "%s\n", text);
        break;
    default:
        break;
    }
}

/* Input */

static void
batch_line(struct batch *b, const char *line)
{
    char why[256];

    switch (client_input(b->c, line, why, sizeof(why))) {
    case CLIENT_INPUT_HELP:
        fputs(client_help_text(), stdout);
        fflush(stdout);
        break;
    case CLIENT_INPUT_INFO: {
        char *info = client_info(b->c);

        /* --json output stays one JSON object per line. */
        fputs(info, b->o.json ? stderr : stdout);
        fflush(stdout);
        g_free(info);
        break;
    }
    case CLIENT_INPUT_ERROR:
        fprintf(stderr, "sockchat: %s\n", why);
        b->local_errors++;
        break;
    case CLIENT_INPUT_QUIT:
        b->stdin_done = true;
        break;
    default:
        break;
    }
}

/* Cut whole lines off b->line and act on them, until quit. */
static void
batch_lines(struct batch *b)
{
    const uint8_t *p, *nl;
    char *line;
    size_t n;

    while (!b->stdin_done && buf_len(&b->line) > 0) {
        p = buf_ptr(&b->line);
        nl = memchr(p, '\n', buf_len(&b->line));
        if (nl == NULL)
            return;
        n = (size_t)(nl - p);
        if (b->skipping) {
            b->skipping = false;
        } else {
            line = g_strndup((const char *)p, n);
            if (strlen(line) != n) {
                fprintf(stderr, "sockchat: line with a NUL byte not sent\n");
                b->local_errors++;
            } else {
                batch_line(b, line);
            }
            g_free(line);
        }
        buf_consume(&b->line, n + 1);
    }
}

static void
batch_on_stdin(struct loop *l, int fd, unsigned events, void *arg)
{
    struct batch *b = arg;
    uint8_t *p;
    size_t avail;
    ssize_t n;

    (void)l;
    (void)events;
    p = buf_reserve(&b->line, 4096, &avail);
    if (p == NULL || avail == 0) {
        /* A whole buffer without a newline: refuse that line. */
        fprintf(stderr, "sockchat: line over %d bytes not sent\n",
                BATCH_LINE_MAX);
        b->local_errors++;
        b->skipping = true;
        buf_consume(&b->line, buf_len(&b->line));
        return;
    }
    do
        n = read(fd, p, avail);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n > 0) {
        buf_commit(&b->line, (size_t)n);
        batch_lines(b);
        return;
    }
    if (n < 0)
        fprintf(stderr, "sockchat: reading standard input: %s\n",
                strerror(errno));
    /* End of input: a last line without a newline still counts. */
    if (!b->stdin_done && buf_len(&b->line) > 0 &&
        buf_append(&b->line, "\n", 1) == CHAT_OK)
        batch_lines(b);
    b->stdin_done = true;
}

static void
batch_watch_stdin(struct batch *b)
{
    bool want = !b->stdin_done && client_state(b->c) == CLIENT_READY &&
                client_queued(b->c) < BATCH_QUEUE_MAX;

    if (want && !b->stdin_on) {
        if (loop_add_fd(b->loop, STDIN_FILENO, LOOP_READ, batch_on_stdin, b) ==
            CHAT_OK)
            b->stdin_on = true;
        else
            b->stdin_done = true;
    } else if (!want && b->stdin_on) {
        loop_del_fd(b->loop, STDIN_FILENO);
        b->stdin_on = false;
    }
}

int
batch_main(const struct client_config *cfg, const char *url,
           const char *url_shown, const struct batch_opts *o)
{
    struct client_config ccfg = *cfg;
    struct batch b;
    struct loop *l = NULL;
    char why[256];
    unsigned failed;
    bool fell_back, quit_sent = false;
    int status, rc;

    memset(&b, 0, sizeof(b));
    b.o = *o;
    buf_init(&b.line, BATCH_LINE_MAX);
    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = loop_new(NULL, &l, &fell_back);
    if (rc != CHAT_OK) {
        fprintf(stderr, "sockchat: %s\n", chat_strerror(rc));
        return CLIENT_EXIT_UNREACHABLE;
    }
    b.loop = l;
    ccfg.ask = NULL;
    ccfg.notice = batch_on_notice;
    b.c = client_new(&ccfg, batch_on_event, &b);
    rc = client_connect(b.c, url, l, why, sizeof(why));
    if (rc != CHAT_OK) {
        fprintf(stderr, "sockchat: cannot connect to %s: %s\n", url_shown, why);
        status = CLIENT_EXIT_UNREACHABLE;
        goto out;
    }
    while (client_state(b.c) != CLIENT_CLOSED) {
        batch_watch_stdin(&b);
        if (b.stdin_done && !quit_sent && client_state(b.c) == CLIENT_READY) {
            client_quit(b.c, NULL);
            quit_sent = true;
        }
        client_run_once(b.c, l, -1);
    }
    if (b.stdin_on)
        loop_del_fd(l, STDIN_FILENO);
    status = (int)client_end(b.c);
    failed = client_errors(b.c) + b.local_errors;
    if (status != CLIENT_EXIT_OK) {
        fprintf(stderr, "sockchat: %s\n", client_end_reason(b.c));
    } else if (failed > 0) {
        fprintf(stderr, "sockchat: %u request%s failed\n", failed,
                failed == 1 ? "" : "s");
        status = CLIENT_EXIT_FAILED;
    }
out:
    client_free(b.c);
    loop_free(l);
    buf_cleanup(&b.line);
    return status;
}
