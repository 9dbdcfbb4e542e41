/* ui.c - the interactive client on a terminal, with libedit.
 *
 * libedit's readline-compatible callback interface reads the line being
 * typed one key at a time, driven from the loop (rl_callback_read_char()
 * when stdin is readable). Output that arrives meanwhile is printed above
 * the prompt: erase the prompt and the half-typed line, print, then redraw
 * both with rl_forced_update_display(), which libedit implements as a full
 * refresh from the cursor's line. The GNU readline idiom (rl_save_prompt,
 * rl_replace_line("", 0), rl_redisplay) does not work with libedit:
 * rl_replace_line ignores an empty string and rl_redisplay pushes the
 * reprint key (^R, bound to incremental search) into the input, so this
 * file erases the rows itself, counting them from the terminal width.
 */
#include "ui.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "err.h"
#include "log.h"
#include "loop.h"
#include "message.h"

#define UI_PROMPT_MAX (MSG_ROOM_MAX + 24)
#define UI_LOCK " \xf0\x9f\x94\x92" /* U+1F512 LOCK */
#define UI_LOCK_ASCII " (secure)"

struct ui {
    struct client *c;
    FILE *tty; /* where libedit draws: stdout, or stderr when stdout is
                * not a terminal */
    struct loop *loop;
    struct ui_opts o;
    bool rl_used;   /* libedit is initialised: its terminal to restore */
    bool installed; /* the line handler is installed (or wanted) */
    bool editing;   /* a prompt is on screen with the line being typed */
    bool stdin_on;  /* stdin is watched */
    char prompt[UI_PROMPT_MAX];
    int sig_rd, sig_wr;
    int signals; /* SIGINT/SIGTERM/SIGHUP seen */
};

/* The readline callback interface passes no user pointer, and a signal
 * handler none either: these two are the only state outside struct ui. */
static struct ui *ui_self;
static volatile sig_atomic_t ui_sig_fd = -1;

/* Formatting (shared with batch mode) */

void
ui_put_clean(GString *out, const char *s)
{
    const char *p = s;
    gunichar ch;

    if (s == NULL)
        return;
    while (*p != '\0') {
        ch = g_utf8_get_char_validated(p, -1);
        if (ch == (gunichar)-1 || ch == (gunichar)-2) {
            g_string_append_c(out, '?');
            p++;
            continue;
        }
        if (ch == '\t')
            g_string_append_c(out, ' ');
        else if (ch < 0x20 || (ch >= 0x7f && ch <= 0x9f))
            g_string_append_c(out, '?');
        else
            g_string_append_unichar(out, ch);
        p += g_utf8_skip[*(const guchar *)p];
    }
}

static void
put_time(GString *out, const struct client_event *ev, unsigned flags)
{
    time_t t = ev->has_ts ? (time_t)(ev->ts / 1000) : time(NULL);
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    if (flags & UI_FMT_SECONDS)
        g_string_append_printf(out, "[%02d:%02d:%02d] ", tm.tm_hour, tm.tm_min,
                               tm.tm_sec);
    else
        g_string_append_printf(out, "[%02d:%02d] ", tm.tm_hour, tm.tm_min);
}

/* A nick in a colour chosen by a hash of its folded form, so that one
 * person keeps one colour whatever the case they type it in. */
static void
put_nick(GString *out, const char *nick, unsigned flags)
{
    static const int colors[] = {31, 32, 33, 34, 35, 36,
                                 91, 92, 93, 94, 95, 96};
    guint h = 5381;
    const char *p;

    if (!(flags & UI_FMT_COLOR) || nick == NULL) {
        ui_put_clean(out, nick);
        return;
    }
    for (p = nick; *p != '\0'; p++)
        h = h * 33 + (guchar)g_ascii_tolower(*p);
    g_string_append_printf(out, "\033[%dm", colors[h % G_N_ELEMENTS(colors)]);
    ui_put_clean(out, nick);
    g_string_append(out, "\033[0m");
}

static void
put_message(GString *out, const struct client_event *ev, const char *self,
            unsigned flags, bool mark)
{
    bool reverse = mark && (flags & UI_FMT_COLOR);

    /* A mention is one highlight for the whole line: reverse video on a
     * colour terminal, a ">> " mark without colour. */
    if (reverse) {
        g_string_append(out, "\033[1;7m");
        flags &= ~UI_FMT_COLOR;
    } else if (mark) {
        g_string_append(out, ">> ");
    }
    put_time(out, ev, flags);
    if (ev->room == NULL) {
        /* private, either way: "alice -> bob: text" */
        put_nick(out, ev->from, flags);
        g_string_append(out, " -> ");
        put_nick(out, ev->to != NULL ? ev->to : self, flags);
        g_string_append(out, ": ");
    } else if (ev->action) {
        ui_put_clean(out, ev->room);
        g_string_append(out, " * ");
        put_nick(out, ev->from, flags);
        g_string_append_c(out, ' ');
    } else {
        ui_put_clean(out, ev->room);
        g_string_append(out, " <");
        put_nick(out, ev->from, flags);
        g_string_append(out, "> ");
    }
    ui_put_clean(out, ev->text);
    if (reverse)
        g_string_append(out, "\033[0m");
    g_string_append_c(out, '\n');
}

static void
put_members(GString *out, const cJSON *members)
{
    const cJSON *m;
    bool first = true;

    cJSON_ArrayForEach(m, members)
    {
        if (!cJSON_IsString(m))
            continue;
        if (!first)
            g_string_append_c(out, ' ');
        ui_put_clean(out, m->valuestring);
        first = false;
    }
    if (first)
        g_string_append(out, "(none)");
}

static void
put_rooms(GString *out, const cJSON *rooms)
{
    const cJSON *r, *it;
    bool first = true;

    cJSON_ArrayForEach(r, rooms)
    {
        it = cJSON_GetObjectItemCaseSensitive(r, "room");
        if (!cJSON_IsObject(r) || !cJSON_IsString(it))
            continue;
        if (!first)
            g_string_append(out, ", ");
        ui_put_clean(out, it->valuestring);
        it = cJSON_GetObjectItemCaseSensitive(r, "members");
        if (cJSON_IsNumber(it) && it->valuedouble >= 0 &&
            it->valuedouble < 1e12)
            g_string_append_printf(out, " (%.0f)", it->valuedouble);
        it = cJSON_GetObjectItemCaseSensitive(r, "topic");
        if (cJSON_IsString(it) && it->valuestring[0] != '\0') {
            g_string_append(out, " ");
            ui_put_clean(out, it->valuestring);
        }
        first = false;
    }
    if (first)
        g_string_append(out, "none");
}

bool
ui_format_event(const struct client_event *ev, const char *self, unsigned flags,
                GString *out)
{
    struct client_event h;
    const cJSON *item;
    bool mine, mention = false;

    switch (ev->type) {
    case CEV_WELCOME:
        put_time(out, ev, flags);
        g_string_append(out, "connected to ");
        ui_put_clean(out, ev->server != NULL ? ev->server : "the server");
        g_string_append(out, " as ");
        put_nick(out, ev->nick, flags);
        if (ev->motd != NULL && ev->motd[0] != '\0') {
            g_string_append(out, " | ");
            ui_put_clean(out, ev->motd);
        }
        g_string_append_c(out, '\n');
        break;
    case CEV_ROOM:
        /* History first: each entry is a message event of its own. */
        cJSON_ArrayForEach(item, ev->history)
        {
            if (client_event_parse(item, &h) && h.type == CEV_MESSAGE)
                put_message(out, &h, self, flags, false);
        }
        put_time(out, ev, flags);
        ui_put_clean(out, ev->room);
        g_string_append(out, " members: ");
        put_members(out, ev->members);
        if (ev->topic != NULL && ev->topic[0] != '\0') {
            g_string_append(out, " | topic: ");
            ui_put_clean(out, ev->topic);
        }
        if (ev->truncated)
            g_string_append(out, " (truncated)");
        g_string_append_c(out, '\n');
        break;
    case CEV_MESSAGE:
        mine = self != NULL && g_ascii_strcasecmp(ev->from, self) == 0;
        if (!mine && self != NULL)
            mention = ev->room == NULL || client_mentions(self, ev->text);
        put_message(out, ev, self, flags,
                    mention && (flags & UI_FMT_HIGHLIGHT));
        break;
    case CEV_JOINED:
    case CEV_LEFT:
        put_time(out, ev, flags);
        ui_put_clean(out, ev->room);
        g_string_append_c(out, ' ');
        put_nick(out, ev->nick, flags);
        g_string_append(out, ev->type == CEV_JOINED ? " joined" : " left");
        if (ev->type == CEV_LEFT && ev->reason != NULL) {
            g_string_append(out, " (");
            ui_put_clean(out, ev->reason);
            g_string_append_c(out, ')');
        }
        g_string_append_c(out, '\n');
        break;
    case CEV_QUIT:
        put_time(out, ev, flags);
        put_nick(out, ev->nick, flags);
        g_string_append(out, " quit");
        if (ev->reason != NULL) {
            g_string_append(out, " (");
            ui_put_clean(out, ev->reason);
            g_string_append_c(out, ')');
        }
        g_string_append_c(out, '\n');
        break;
    case CEV_RENAMED:
        put_time(out, ev, flags);
        put_nick(out, ev->old_nick, flags);
        g_string_append(out, " is now known as ");
        put_nick(out, ev->new_nick, flags);
        g_string_append_c(out, '\n');
        break;
    case CEV_TOPIC:
        put_time(out, ev, flags);
        ui_put_clean(out, ev->room);
        g_string_append_c(out, ' ');
        put_nick(out, ev->by != NULL ? ev->by : "someone", flags);
        if (ev->topic[0] == '\0') {
            g_string_append(out, " cleared the topic");
        } else {
            g_string_append(out, " set the topic: ");
            ui_put_clean(out, ev->topic);
        }
        g_string_append_c(out, '\n');
        break;
    case CEV_ROOMS:
        put_time(out, ev, flags);
        g_string_append(out, "rooms: ");
        put_rooms(out, ev->rooms);
        if (ev->truncated)
            g_string_append(out, " (truncated)");
        g_string_append_c(out, '\n');
        break;
    case CEV_MEMBERS:
        put_time(out, ev, flags);
        ui_put_clean(out, ev->room != NULL ? ev->room : "?");
        g_string_append(out, " members: ");
        put_members(out, ev->members);
        if (ev->truncated)
            g_string_append(out, " (truncated)");
        g_string_append_c(out, '\n');
        break;
    default:
        break;
    }
    return mention;
}

/* Terminal */

static int
term_cols(const struct ui *ui)
{
    struct winsize ws;

    if (ioctl(fileno(ui->tty), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

/* Columns that the first n bytes of s take, as libedit draws them. */
static int
text_width(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    gunichar ch;
    int w = 0;

    while (p < end && *p != '\0') {
        ch = g_utf8_get_char_validated(p, end - p);
        if (ch == (gunichar)-1 || ch == (gunichar)-2) {
            w += 4; /* shown as \ooo */
            p++;
            continue;
        }
        if (ch < 0x20 || ch == 0x7f)
            w += 2; /* ^X */
        else if (g_unichar_iswide(ch))
            w += 2;
        else if (!g_unichar_iszerowidth(ch))
            w += 1;
        p += g_utf8_skip[*(const guchar *)p];
    }
    return w;
}

/* Move to the prompt's first row and clear from there to the end of the
 * screen. The cursor is rows = (prompt + text before the cursor) / cols
 * below it: libedit wraps onto a new row as soon as a row is full. */
static void
ui_erase_edit(struct ui *ui)
{
    int at = text_width(ui->prompt, strlen(ui->prompt)) +
             text_width(rl_line_buffer ? rl_line_buffer : "",
                        rl_point > 0 ? (size_t)rl_point : 0);
    int row = at / term_cols(ui);

    if (row > 0)
        fprintf(ui->tty, "\033[%dA", row);
    fputs("\r\033[J", ui->tty);
}

/* Write text (lines ending in '\n') to stdout. In raw mode the terminal
 * may not turn '\n' into CR LF, so send CR LF while editing on it. */
static void
ui_write(struct ui *ui, const char *text)
{
    bool crlf = ui->editing && ui->tty == stdout;
    const char *p;

    for (p = text; *p != '\0'; p++) {
        if (*p == '\n' && crlf)
            fputs("\r\n", stdout);
        else
            fputc(*p, stdout);
    }
    fflush(stdout);
}

/* "#ops> ", or in a secure session "#ops 🔒> " ("#ops (secure)> " when
 * the lock cannot be drawn). */
static void
ui_make_prompt(const struct ui *ui, char *out, size_t n)
{
    const char *room = client_current_room(ui->c);
    const char *lock = "";

    if (client_secure(ui->c))
        lock = ui->o.unicode ? UI_LOCK : UI_LOCK_ASCII;
    if (room == NULL && *lock == ' ')
        lock++;
    g_snprintf(out, n, "%s%s> ", room != NULL ? room : "", lock);
}

/* Print text above the prompt, then redraw the prompt (it names the
 * current room, which may have changed) and the line being typed. When
 * stdout is not the terminal being edited on, the text goes there plainly
 * and only a changed prompt needs redrawing. */
static void
ui_print(struct ui *ui, const char *text)
{
    char prompt[UI_PROMPT_MAX];
    bool changed;

    ui_make_prompt(ui, prompt, sizeof(prompt));
    changed = strcmp(prompt, ui->prompt) != 0;
    if (!ui->editing || (ui->tty != stdout && !changed)) {
        ui_write(ui, text);
        return;
    }
    if (*text == '\0' && !changed)
        return;
    ui_erase_edit(ui);
    fflush(ui->tty);
    ui_write(ui, text);
    if (changed) {
        g_strlcpy(ui->prompt, prompt, sizeof(ui->prompt));
        rl_set_prompt(ui->prompt);
    }
    rl_forced_update_display();
    fflush(ui->tty);
}

static void
ui_error_line(struct ui *ui, const char *a, const char *b)
{
    GString *s = g_string_new(NULL);

    if (ui->o.color)
        g_string_append(s, "\033[31m");
    g_string_append(s, "error: ");
    ui_put_clean(s, a);
    if (b != NULL) {
        g_string_append(s, ": ");
        ui_put_clean(s, b);
    }
    if (ui->o.color)
        g_string_append(s, "\033[0m");
    g_string_append_c(s, '\n');
    ui_print(ui, s->str);
    g_string_free(s, TRUE);
}

/* Notices from the client: the secure session, its warnings. */
static void
ui_on_notice(enum client_notice kind, const char *text, void *arg)
{
    struct ui *ui = arg;
    GString *s = g_string_new(NULL);
    const char *red = ui->o.color ? "\033[31m" : "";
    const char *end = ui->o.color ? "\033[0m" : "";

    switch (kind) {
    case CLIENT_NOTICE_SECURE:
        g_string_append_printf(s, "%s ",
                               ui->o.unicode ? UI_LOCK + 1 : "[secure]");
        g_string_append(s, text);
        break;
    case CLIENT_NOTICE_TRUSTED:
    case CLIENT_NOTICE_HINT:
        g_string_append(s, "note: ");
        g_string_append(s, text);
        break;
    case CLIENT_NOTICE_WARNING:
        g_string_append_printf(s, "%swarning: %s%s", red, text, end);
        break;
    case CLIENT_NOTICE_REFUSAL:
        /* Said on stderr, before the reason sockchat exits with. */
        fprintf(stderr, "%s\n", text);
        g_string_free(s, TRUE);
        return;
    }
    g_string_append_c(s, '\n');
    ui_print(ui, s->str);
    g_string_free(s, TRUE);
}

/* Read one answer line from the terminal (cooked mode: no prompt is
 * installed yet). A signal (the self-pipe) or end of input is no; *eol
 * says whether the line ended with the user's Enter. */
static bool
ui_read_yes(struct ui *ui, bool *eol)
{
    struct pollfd pf[2];
    char ans[16];
    size_t n = 0;
    ssize_t r;
    char ch;

    *eol = false;
    pf[0].fd = STDIN_FILENO;
    pf[0].events = POLLIN;
    pf[1].fd = ui->sig_rd;
    pf[1].events = POLLIN;
    for (;;) {
        pf[0].revents = pf[1].revents = 0;
        if (poll(pf, ui->sig_rd >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (pf[1].revents != 0)
            return false; /* Ctrl-C: the loop will see the signal too */
        r = read(STDIN_FILENO, &ch, 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r > 0 && ch == '\n')
            *eol = true;
        if (r <= 0 || ch == '\n')
            break;
        if (n < sizeof(ans) - 1)
            ans[n++] = ch;
    }
    ans[n] = '\0';
    g_strstrip(ans);
    return g_ascii_strcasecmp(ans, "y") == 0 ||
           g_ascii_strcasecmp(ans, "yes") == 0;
}

/* A server seen for the first time: show its key and ask. */
static bool
ui_ask_trust(const struct client_trust_ask *q, void *arg)
{
    struct ui *ui = arg;
    bool v6 = strchr(q->host, ':') != NULL;
    bool yes, eol;

    fprintf(ui->tty,
            "The server %s port %u is not in %s yet: compare its\n"
            "fingerprint with the one its operator gives you.\n"
            "Trust server %s%s%s:%u with fingerprint %s? [y/N] ",
            q->host, q->port, q->known_servers, v6 ? "[" : "", q->host,
            v6 ? "]" : "", q->port, q->fingerprint);
    fflush(ui->tty);
    yes = ui_read_yes(ui, &eol);
    if (!eol)
        fputc('\n', ui->tty);
    fflush(ui->tty);
    return yes;
}

static void
ui_on_event(const struct client_event *ev, void *arg)
{
    struct ui *ui = arg;
    GString *s;
    unsigned flags = UI_FMT_HIGHLIGHT | (ui->o.color ? UI_FMT_COLOR : 0u);
    bool mention;

    switch (ev->type) {
    case CEV_ERROR:
        /* A refused hello is said once, as the exit message. */
        if (client_state(ui->c) != CLIENT_HELLO)
            ui_error_line(ui, ev->code, ev->message);
        return;
    case CEV_MALFORMED:
        s = g_string_new("warning: ignoring a malformed message from the "
                         "server: ");
        ui_put_clean(s, ev->why);
        g_string_append_c(s, '\n');
        ui_print(ui, s->str);
        g_string_free(s, TRUE);
        return;
    default:
        break;
    }
    s = g_string_new(NULL);
    mention = ui_format_event(ev, client_nick(ui->c), flags, s);
    if (mention && ui->o.bell) {
        fputc('\a', ui->tty);
        fflush(ui->tty);
    }
    ui_print(ui, s->str);
    g_string_free(s, TRUE);
}

/* Line input */

static void ui_on_line(char *line);

static void
ui_install(struct ui *ui)
{
    ui_make_prompt(ui, ui->prompt, sizeof(ui->prompt));
    ui->rl_used = true;
    ui->installed = true;
    ui->editing = true;
    rl_callback_handler_install(ui->prompt, ui_on_line);
    fflush(ui->tty);
}

/* Stop editing: libedit puts the terminal back as it found it. */
static void
ui_uninstall(struct ui *ui)
{
    ui->editing = false;
    ui->installed = false;
    if (ui->rl_used)
        rl_callback_handler_remove();
}

static void
ui_stdin_off(struct ui *ui)
{
    if (ui->stdin_on)
        loop_del_fd(ui->loop, STDIN_FILENO);
    ui->stdin_on = false;
}

/* Called by libedit with a finished line (malloc'd), or NULL at EOF. */
static void
ui_on_line(char *line)
{
    struct ui *ui = ui_self;
    char why[256];
    int rows;

    /* libedit has left the cursor on the row after the line. */
    ui->editing = false;
    if (line == NULL) {
        fputs("\n", ui->tty);
        fflush(ui->tty);
        ui->installed = false;
        ui_stdin_off(ui);
        client_quit(ui->c, NULL);
        return;
    }
    if (line[0] != '\0')
        add_history(line);
    /* The server echoes what was said: take the typed line off the
     * screen so that it is shown once, as the room sees it. */
    rows = (text_width(ui->prompt, strlen(ui->prompt)) +
            text_width(line, strlen(line))) /
               term_cols(ui) +
           1;
    fprintf(ui->tty, "\033[%dA\r\033[J", rows);
    fflush(ui->tty);
    switch (client_input(ui->c, line, why, sizeof(why))) {
    case CLIENT_INPUT_HELP:
        ui_print(ui, client_help_text());
        break;
    case CLIENT_INPUT_INFO: {
        char *info = client_info(ui->c);

        ui_print(ui, info);
        g_free(info);
        break;
    }
    case CLIENT_INPUT_ERROR:
        ui_error_line(ui, why, NULL);
        break;
    case CLIENT_INPUT_QUIT:
        ui->installed = false;
        ui_stdin_off(ui);
        break;
    default:
        break;
    }
    free(line);
    if (ui->installed)
        ui_install(ui);
}

static void
ui_on_stdin(struct loop *l, int fd, unsigned events, void *arg)
{
    struct ui *ui = arg;
    int avail = 0;

    (void)l;
    (void)events;
    /* Readable with nothing to read: the terminal hung up. libedit would
     * return without calling the handler, and the loop would spin. */
    if (ioctl(fd, FIONREAD, &avail) == 0 && avail == 0) {
        ui_uninstall(ui);
        ui_stdin_off(ui);
        client_quit(ui->c, "terminal closed");
        return;
    }
    rl_callback_read_char();
}

/* Signals */

static void
ui_sig_handler(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;

    if (ui_sig_fd >= 0)
        (void)!write(ui_sig_fd, &b, 1);
    errno = saved;
}

static void
ui_on_signal(struct loop *l, int fd, unsigned events, void *arg)
{
    struct ui *ui = arg;
    unsigned char b[16];
    ssize_t n, i;

    (void)l;
    (void)events;
    n = read(fd, b, sizeof(b));
    for (i = 0; i < n; i++) {
        if (b[i] == SIGWINCH) {
            rl_resize_terminal();
            continue;
        }
        ui->signals++;
        if (ui->editing) {
            ui_erase_edit(ui);
            fflush(ui->tty);
        }
        ui_uninstall(ui);
        ui_stdin_off(ui);
        client_quit(ui->c, NULL);
    }
}

static int
ui_signals_setup(struct ui *ui)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
    struct sigaction sa;
    int p[2];
    size_t i;

    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return CHAT_ESYS;
    ui->sig_rd = p[0];
    ui->sig_wr = p[1];
    ui_sig_fd = p[1];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ui_sig_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (i = 0; i < G_N_ELEMENTS(sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    return loop_add_fd(ui->loop, ui->sig_rd, LOOP_READ, ui_on_signal, ui);
}

static void
ui_signals_cleanup(struct ui *ui)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(sigs); i++)
        signal(sigs[i], SIG_DFL);
    ui_sig_fd = -1;
    if (ui->sig_rd >= 0) {
        loop_del_fd(ui->loop, ui->sig_rd);
        close(ui->sig_rd);
        close(ui->sig_wr);
    }
}

int
ui_main(const struct client_config *cfg, const char *url, const char *url_shown,
        const struct ui_opts *o)
{
    struct client_config ccfg = *cfg;
    struct ui ui;
    struct loop *l = NULL;
    char why[256];
    bool fell_back;
    int status, rc;

    memset(&ui, 0, sizeof(ui));
    ui.o = *o;
    ui.tty = stdout;
    ui.sig_rd = ui.sig_wr = -1;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "sockchat: standard input is not a terminal; use "
                        "--batch to read lines from it\n");
        return CLIENT_EXIT_USAGE;
    }
    rc = loop_new(NULL, &l, &fell_back);
    if (rc != CHAT_OK) {
        fprintf(stderr, "sockchat: %s\n", chat_strerror(rc));
        return CLIENT_EXIT_UNREACHABLE;
    }
    ui.loop = l;
    ccfg.ask = ui_ask_trust;
    ccfg.notice = ui_on_notice;
    ui.c = client_new(&ccfg, ui_on_event, &ui);
    ui_self = &ui;
    rc = client_connect(ui.c, url, l, why, sizeof(why));
    if (rc != CHAT_OK) {
        fprintf(stderr, "sockchat: cannot connect to %s: %s\n", url_shown, why);
        status = CLIENT_EXIT_UNREACHABLE;
        goto out;
    }
    if (ui_signals_setup(&ui) != CHAT_OK)
        log_warn("cannot catch signals: %s", strerror(errno));
    /* libedit must not install its own handlers: it would only have them
     * during el_gets(), which returns after every key in callback mode. */
    rl_catch_signals = 0;
    rl_readline_name = "sockchat";
    /* Edit on the terminal: with stdout redirected, messages go there as
     * plain lines and the prompt lives on stderr. */
    ui.tty = stdout;
    if (!isatty(STDOUT_FILENO) && isatty(STDERR_FILENO))
        ui.tty = stderr;
    rl_instream = stdin;
    rl_outstream = ui.tty;
    while (client_state(ui.c) != CLIENT_CLOSED && ui.signals < 2) {
        if (client_state(ui.c) == CLIENT_READY && !ui.installed &&
            !ui.stdin_on) {
            ui_install(&ui);
            if (loop_add_fd(l, STDIN_FILENO, LOOP_READ, ui_on_stdin, &ui) ==
                CHAT_OK)
                ui.stdin_on = true;
        }
        client_run_once(ui.c, l, -1);
    }
    if (ui.editing)
        ui_erase_edit(&ui);
    ui_uninstall(&ui);
    fflush(ui.tty);
    fflush(stdout);
    ui_stdin_off(&ui);
    status = (int)client_end(ui.c);
    if (client_state(ui.c) == CLIENT_CLOSED && status != CLIENT_EXIT_OK)
        fprintf(stderr, "sockchat: %s\n", client_end_reason(ui.c));
out:
    ui_signals_cleanup(&ui);
    client_free(ui.c);
    ui_self = NULL;
    loop_free(l);
    return status;
}
