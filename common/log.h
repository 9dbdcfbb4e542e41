/* log.h - logging through GLib, one line per event.
 *
 * The macros prepend the calling function's name, as OpenSSH's _f variants do.
 * log_err_rc() appends chat_strerror(rc). Never log keys or message bodies.
 */
#ifndef SOCKCHAT_LOG_H
#define SOCKCHAT_LOG_H

#include <stdbool.h>

#include <glib.h>

#include "err.h"

#ifndef G_LOG_DOMAIN
#define G_LOG_DOMAIN "sockchat"
#endif

#define log_debug(fmt, ...) g_debug("%s: " fmt, __func__, ##__VA_ARGS__)
#define log_info(fmt, ...) g_info("%s: " fmt, __func__, ##__VA_ARGS__)
#define log_warn(fmt, ...) g_warning("%s: " fmt, __func__, ##__VA_ARGS__)
#define log_err(fmt, ...) g_critical("%s: " fmt, __func__, ##__VA_ARGS__)
#define log_err_rc(rc, fmt, ...)                                               \
    g_critical("%s: " fmt ": %s", __func__, ##__VA_ARGS__, chat_strerror(rc))

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

/* Install a GLib log handler that writes "time prog level: text" lines to
 * stderr for messages at or above level. prog is borrowed for the process. */
void log_setup(const char *prog, enum log_level level);

/* Socket tracing (--trace sockets): when on, trace_sock() prints one line per
 * Berkeley socket operation to stderr. */
void log_set_trace_sockets(bool on);
bool log_trace_sockets(void);
void trace_sock(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

#endif /* SOCKCHAT_LOG_H */
