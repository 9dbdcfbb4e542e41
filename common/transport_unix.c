/* transport_unix.c - the byte stream over a UNIX-domain stream socket.
 *
 * Same calls as TCP, with a path instead of an address and port: no
 * network, so only processes on this machine (with permission on the path)
 * can connect. A socket file left by a server that died is removed before
 * bind, but only if nothing answers on it.
 */
#include "transport_int.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "err.h"
#include "log.h"

/* Is a server listening on the socket file at a? */
static bool
unix_path_alive(const struct addr *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool alive;

    if (fd < 0)
        return true; /* cannot tell: do not remove anything */
    alive = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ||
            errno != ECONNREFUSED;
    close(fd);
    return alive;
}

static int
unix_listen(const struct addr *a, struct transport **out)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;
    struct stat st;
    int fd;

    *out = NULL;
    if (sun->sun_path[0] != '\0' && lstat(sun->sun_path, &st) == 0 &&
        S_ISSOCK(st.st_mode) && !unix_path_alive(a)) {
        unlink(sun->sun_path);
        trace_sock("unlink(%s): stale socket file", sun->sun_path);
    }
    fd = stream_socket(AF_UNIX);
    if (fd < 0)
        return CHAT_ESYS;
    return stream_bind_listen(&transport_unix_ops, fd, a, out);
}

static int
unix_connect(const struct addr *a, struct transport **out)
{
    return stream_connect(&transport_unix_ops, a, out);
}

static void
unix_close(struct transport *t)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&t->local.ss;

    /* A listener removes its socket file; accepted streams have none. */
    if (t->is_listener && t->local.ss.ss_family == AF_UNIX &&
        sun->sun_path[0] != '\0')
        unlink(sun->sun_path);
    stream_close(t);
}

const struct transport_ops transport_unix_ops = {
    .name = "unix",
    .socktype = SOCK_STREAM,
    .listen = unix_listen,
    .accept = stream_accept,
    .connect = unix_connect,
    .connect_done = stream_connect_done,
    .send = stream_send,
    .sendv = stream_sendv,
    .recv = stream_recv,
    .shutdown = stream_shutdown,
    .close = unix_close,
};
