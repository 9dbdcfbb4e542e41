#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Process-wide logging settings. They are the one exception to "no globals
 * in common/": like GLib's own log handler table, they describe the process,
 * not any object, and are set once by main(). */
static const char *log_prog = "sockchat";
static enum log_level log_max = LOG_LEVEL_INFO;
static bool log_trace;

static void
log_stamp(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    snprintf(out, n, "%02d:%02d:%02d.%03ld", tm.tm_hour, tm.tm_min,
             tm.tm_sec, ts.tv_nsec / 1000000L);
}

static void
log_handler(const gchar *domain, GLogLevelFlags flags, const gchar *message,
            gpointer data)
{
    enum log_level lvl;
    const char *name;
    char stamp[32];

    (void)domain;
    (void)data;
    if (flags & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) {
        lvl = LOG_LEVEL_ERROR;
        name = "error";
    } else if (flags & G_LOG_LEVEL_WARNING) {
        lvl = LOG_LEVEL_WARN;
        name = "warning";
    } else if (flags & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO)) {
        lvl = LOG_LEVEL_INFO;
        name = "info";
    } else {
        lvl = LOG_LEVEL_DEBUG;
        name = "debug";
    }
    if (lvl > log_max)
        return;
    log_stamp(stamp, sizeof(stamp));
    fprintf(stderr, "%s %s %s: %s\n", stamp, log_prog, name, message);
}

void
log_setup(const char *prog, enum log_level level)
{
    log_prog = prog;
    log_max = level;
    g_log_set_default_handler(log_handler, NULL);
    /* Criticals must not abort: they report an error the caller handles. */
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
}

void
log_set_trace_sockets(bool on)
{
    log_trace = on;
}

bool
log_trace_sockets(void)
{
    return log_trace;
}

void
trace_sock(const char *fmt, ...)
{
    char stamp[32];
    va_list ap;

    if (!log_trace)
        return;
    log_stamp(stamp, sizeof(stamp));
    fprintf(stderr, "%s %s trace: ", stamp, log_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
