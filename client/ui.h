/* ui.h - the interactive terminal client, and the text form of events.
 *
 * ui_main() runs a session on a terminal: libedit's readline-compatible
 * callback interface reads the line being typed, while messages from the
 * server print above the prompt without disturbing it. ui_format_event()
 * is the plain-text rendering that batch mode prints too.
 */
#ifndef SOCKCHAT_UI_H
#define SOCKCHAT_UI_H

#include <stdbool.h>

#include <glib.h>

#include "client.h"

enum ui_fmt_flags {
    UI_FMT_SECONDS = 1u << 0,   /* [HH:MM:SS] rather than [HH:MM] */
    UI_FMT_COLOR = 1u << 1,     /* SGR colours: nicks by hash, mentions */
    UI_FMT_HIGHLIGHT = 1u << 2, /* mark lines that mention self */
};

/*
 * Append the lines showing ev to out, each ending in '\n' (none for
 * replies that show nothing: ok, pong, ping, error, bye, unknown types).
 * Every string from the server is sanitised: control characters and
 * invalid UTF-8 become '?'. self is our nick (for mentions and "->").
 * Returns true when ev is a live message from someone else that mentions
 * self or is addressed to self alone.
 */
bool ui_format_event(const struct client_event *ev, const char *self,
                     unsigned flags, GString *out);

/* Append s to out with control characters and bad UTF-8 as '?'. */
void ui_put_clean(GString *out, const char *s);

struct ui_opts {
    bool color;   /* may use colour (--no-color and NO_COLOR not given) */
    bool bell;    /* ring the bell on a mention */
    bool unicode; /* may draw a lock in the prompt of a secure session
                   * (UTF-8 locale, NO_COLOR not set); else "(secure)" */
};

/*
 * Run an interactive session with the server at url (url_shown names it in
 * messages) until it ends. Returns the exit status (enum client_exit).
 */
int ui_main(const struct client_config *cfg, const char *url,
            const char *url_shown, const struct ui_opts *o);

#endif /* SOCKCHAT_UI_H */
