/* batch.h - the client without a terminal: lines from stdin, events to
 * stdout, one line each.
 *
 * `echo hi | sockchat --batch -r '#ops' host` posts a message and exits
 * once the server has handled it: wait for welcome, join, send each line
 * read (slash commands as in the interactive client), and at the end of
 * input send quit and wait for bye, which the server sends only after
 * everything before it. Every message received prints as one plain line
 * ("[12:01:02] #ops <alice> hi"), or with json as the JSON object exactly
 * as received. Errors go to stderr as "sockchat: error: CODE: MESSAGE".
 */
#ifndef SOCKCHAT_BATCH_H
#define SOCKCHAT_BATCH_H

#include <stdbool.h>

#include "client.h"

struct batch_opts {
    bool json; /* print each server message as received */
};

/*
 * Run a batch session with the server at url (url_shown names it in
 * messages). Returns the exit status (enum client_exit): 0, or 5 when a
 * request was answered with an error or refused locally, or 2/3/4.
 */
int batch_main(const struct client_config *cfg, const char *url,
               const char *url_shown, const struct batch_opts *o);

#endif /* SOCKCHAT_BATCH_H */
