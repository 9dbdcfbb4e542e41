/* test_transport.c - the transport layer's connect, where a backend meets
 * a kernel answer that is easy to misread.
 *
 * A UNIX stream listener whose backlog is full makes a non-blocking
 * connect() fail with EAGAIN: unlike TCP's EINPROGRESS, nothing is under
 * way, and the socket never becomes connected. transport_connect_url must
 * not hand back such a socket as a connected stream; it tries again until
 * its timeout, then fails, and it connects as soon as the backlog has room.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "err.h"
#include "transport.h"

struct fixture {
    char dir[64];
    char path[128];
    int lfd;
    int fill[64]; /* non-blocking clients that filled the backlog */
    int nfill;
};

static int
setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    struct sockaddr_un sun;

    g_strlcpy(f->dir, "/tmp/test_transport.XXXXXX", sizeof(f->dir));
    assert_non_null(g_mkdtemp(f->dir));
    g_snprintf(f->path, sizeof(f->path), "%s/s", f->dir);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    g_strlcpy(sun.sun_path, f->path, sizeof(sun.sun_path));
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    /* Backlog 0: the kernel takes one connection, then refuses. Fill it
     * with non-blocking connects until one meets EAGAIN. */
    assert_int_equal(listen(f->lfd, 0), 0);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
            assert_int_equal(errno, EAGAIN);
            close(fd);
            break;
        }
        assert_true(f->nfill < (int)G_N_ELEMENTS(f->fill));
        f->fill[f->nfill++] = fd;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    int i;

    for (i = 0; i < f->nfill; i++)
        close(f->fill[i]);
    close(f->lfd);
    unlink(f->path);
    rmdir(f->dir);
    g_free(f);
    return 0;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A full backlog is not a connection: the call fails after its timeout
 * and says why. */
static void
test_unix_full_backlog_fails(void **state)
{
    struct fixture *f = *state;
    struct transport *t = NULL;
    char url[160], why[256] = "";
    int64_t t0 = now_ms(), took;
    int rc;

    g_snprintf(url, sizeof(url), "unix://%s", f->path);
    rc = transport_connect_url(url, 0, 300, &t, why, sizeof(why));
    took = now_ms() - t0;
    assert_int_not_equal(rc, CHAT_OK);
    assert_null(t);
    assert_non_null(strstr(why, f->path));
    assert_true(took >= 250); /* it kept trying until the timeout */
    assert_true(took < 2000);
}

/* Once the server accepts (the backlog has room), a waiting connect gets
 * through, and the stream carries bytes. */
static void
test_unix_backlog_frees_up(void **state)
{
    struct fixture *f = *state;
    struct transport *t = NULL;
    char url[160], why[256] = "", got[4];
    int i, afd;
    ssize_t n;

    for (i = 0; i < f->nfill; i++) {
        int a = accept(f->lfd, NULL, NULL);

        assert_true(a >= 0);
        close(a);
    }
    g_snprintf(url, sizeof(url), "unix://%s", f->path);
    assert_int_equal(transport_connect_url(url, 0, 1000, &t, why, sizeof(why)),
                     CHAT_OK);
    afd = accept(f->lfd, NULL, NULL);
    assert_true(afd >= 0);
    assert_int_equal(transport_send(t, "ping", 4), 4);
    n = read(afd, got, sizeof(got));
    assert_int_equal(n, 4);
    assert_memory_equal(got, "ping", 4);
    close(afd);
    transport_close(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unix_full_backlog_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unix_backlog_frees_up, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
