/* test_loop.c - tests for common/loop.c and the select backend through
 * loop.h, on pipes and socket pairs only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "err.h"
#include "loop.h"

#define MAX_CALLS 8

struct call {
    struct loop *l;
    int fd;
    unsigned events;
    void *arg;
};

/* Per-test state: a select loop, two pipes and a record of callbacks. */
struct fixture {
    struct loop *l;
    int a[2], b[2]; /* b's descriptors are higher than a's */
    int sv[2];      /* socket pair */
    struct call calls[MAX_CALLS];
    int ncalls;
};

static struct fixture *cur; /* the fixture record_cb writes to */

static int
setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    bool fell_back = true;

    assert_int_equal(loop_new("select", &f->l, &fell_back), CHAT_OK);
    assert_false(fell_back);
    assert_int_equal(pipe(f->a), 0);
    assert_int_equal(pipe(f->b), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->sv), 0);
    assert_true(f->b[0] > f->a[0]);
    cur = f;
    *state = f;
    return 0;
}

static void
close_if_open(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    int i;

    loop_free(f->l);
    for (i = 0; i < 2; i++) {
        close_if_open(&f->a[i]);
        close_if_open(&f->b[i]);
        close_if_open(&f->sv[i]);
    }
    cur = NULL;
    g_free(f);
    return 0;
}

static void
record_cb(struct loop *l, int fd, unsigned events, void *arg)
{
    assert_non_null(cur);
    assert_true(cur->ncalls < MAX_CALLS);
    cur->calls[cur->ncalls].l = l;
    cur->calls[cur->ncalls].fd = fd;
    cur->calls[cur->ncalls].events = events;
    cur->calls[cur->ncalls].arg = arg;
    cur->ncalls++;
}

static void
write_byte(int fd)
{
    assert_int_equal(write(fd, "x", 1), 1);
}

static void
test_loop_reports_read_with_arg(void **state)
{
    struct fixture *f = *state;
    int tag;

    assert_int_equal(loop_add_fd(f->l, f->a[0], LOOP_READ, record_cb, &tag),
                     CHAT_OK);
    write_byte(f->a[1]);
    assert_int_equal(loop_run_once(f->l, 1000), 1);
    assert_int_equal(f->ncalls, 1);
    assert_ptr_equal(f->calls[0].l, f->l);
    assert_int_equal(f->calls[0].fd, f->a[0]);
    assert_int_equal(f->calls[0].events, LOOP_READ);
    assert_ptr_equal(f->calls[0].arg, &tag);
}

static void
test_loop_reports_write_on_empty_pipe(void **state)
{
    struct fixture *f = *state;
    int tag;

    assert_int_equal(loop_add_fd(f->l, f->a[1], LOOP_WRITE, record_cb, &tag),
                     CHAT_OK);
    assert_int_equal(loop_run_once(f->l, 1000), 1);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].fd, f->a[1]);
    assert_int_equal(f->calls[0].events, LOOP_WRITE);
    assert_ptr_equal(f->calls[0].arg, &tag);
}

static void
test_loop_mod_switches_events(void **state)
{
    struct fixture *f = *state;
    int fd = f->sv[0];

    /* With a byte pending, sv[0] is both readable and writable. */
    write_byte(f->sv[1]);
    assert_int_equal(loop_add_fd(f->l, fd, LOOP_READ, record_cb, NULL),
                     CHAT_OK);
    assert_int_equal(loop_run_once(f->l, 1000), 1);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].events, LOOP_READ);

    assert_int_equal(loop_mod_fd(f->l, fd, LOOP_WRITE), CHAT_OK);
    assert_int_equal(loop_run_once(f->l, 1000), 1);
    assert_int_equal(f->ncalls, 2);
    assert_int_equal(f->calls[1].events, LOOP_WRITE);

    assert_int_equal(loop_mod_fd(f->l, fd, LOOP_READ | LOOP_WRITE), CHAT_OK);
    assert_true(loop_run_once(f->l, 1000) > 0);
    assert_int_equal(f->ncalls, 3);
    assert_int_equal(f->calls[2].events, LOOP_READ | LOOP_WRITE);

    /* Watching nothing: no callback although the fd is ready. */
    assert_int_equal(loop_mod_fd(f->l, fd, 0), CHAT_OK);
    assert_int_equal(loop_run_once(f->l, 0), 0);
    assert_int_equal(f->ncalls, 3);

    assert_int_equal(loop_mod_fd(f->l, fd, LOOP_READ), CHAT_OK);
    assert_int_equal(loop_run_once(f->l, 1000), 1);
    assert_int_equal(f->ncalls, 4);
    assert_int_equal(f->calls[3].events, LOOP_READ);

    /* An fd that is not watched cannot be modified. */
    assert_int_equal(loop_mod_fd(f->l, f->b[0], LOOP_READ), CHAT_ERANGE);
}

/*
 * A paused fd (events 0) resumed after a lower fd was deleted must still be
 * watched. select_del() lowers maxfd past fds with no events set, and
 * select_mod() never raises it again, so the resumed fd is never polled.
 */
static void
test_loop_mod_resumes_after_lower_fd_deleted(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(loop_add_fd(f->l, f->b[0], LOOP_READ, record_cb, NULL),
                     CHAT_OK);
    assert_int_equal(loop_add_fd(f->l, f->a[0], LOOP_READ, record_cb, NULL),
                     CHAT_OK);
    assert_int_equal(loop_mod_fd(f->l, f->b[0], 0), CHAT_OK); /* pause */
    loop_del_fd(f->l, f->a[0]);
    assert_int_equal(loop_mod_fd(f->l, f->b[0], LOOP_READ), CHAT_OK);
    write_byte(f->b[1]);
    assert_int_equal(loop_run_once(f->l, 200), 1);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].fd, f->b[0]);
    assert_int_equal(f->calls[0].events, LOOP_READ);
}

struct del_ctx {
    int *other; /* the descriptor this callback removes and closes */
    int calls;
};

static void
del_other_cb(struct loop *l, int fd, unsigned events, void *arg)
{
    struct del_ctx *c = arg;

    (void)fd;
    assert_int_equal(events, LOOP_READ);
    c->calls++;
    loop_del_fd(l, *c->other);
    close(*c->other);
    *c->other = -1;
}

static void
test_loop_del_in_callback_suppresses_ready_fd(void **state)
{
    struct fixture *f = *state;
    struct del_ctx ca = {.other = &f->b[0], .calls = 0};
    struct del_ctx cb = {.other = &f->a[0], .calls = 0};

    /* Both ready in one pass; whichever runs first removes the other. */
    assert_int_equal(loop_add_fd(f->l, f->a[0], LOOP_READ, del_other_cb, &ca),
                     CHAT_OK);
    assert_int_equal(loop_add_fd(f->l, f->b[0], LOOP_READ, del_other_cb, &cb),
                     CHAT_OK);
    write_byte(f->a[1]);
    write_byte(f->b[1]);
    assert_true(loop_run_once(f->l, 1000) >= 1);
    assert_int_equal(ca.calls + cb.calls, 1);
    /* The survivor is still watched and still reported. */
    assert_true(loop_run_once(f->l, 1000) >= 1);
    assert_int_equal(ca.calls + cb.calls, 2);
    assert_true(ca.calls == 2 || cb.calls == 2);
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void
test_loop_timeout_returns_zero(void **state)
{
    struct fixture *f = *state;
    double t0;

    assert_int_equal(loop_add_fd(f->l, f->a[0], LOOP_READ, record_cb, NULL),
                     CHAT_OK);
    t0 = now_ms();
    assert_int_equal(loop_run_once(f->l, 30), 0);
    assert_true(now_ms() - t0 >= 20.0);
    assert_int_equal(f->ncalls, 0);
    /* Nothing watched at all: still a plain timeout. */
    loop_del_fd(f->l, f->a[0]);
    assert_int_equal(loop_run_once(f->l, 0), 0);
    assert_int_equal(f->ncalls, 0);
}

/* Refusals that must leave the backend's fd_sets alone. */
static void
check_refused(struct fixture *f, int fd)
{
    assert_int_equal(
        loop_add_fd(f->l, fd, LOOP_READ | LOOP_WRITE, record_cb, NULL),
        CHAT_ERANGE);
    assert_int_equal(loop_mod_fd(f->l, fd, LOOP_READ), CHAT_ERANGE);
    loop_del_fd(f->l, fd); /* not watched: a no-op */
}

static void
test_loop_select_refuses_fd_over_setsize(void **state)
{
    struct fixture *f = *state;
    struct rlimit saved, rl;
    int big = -1, tag;

    assert_int_equal(loop_fd_limit(f->l), FD_SETSIZE);

    /* A real descriptor at FD_SETSIZE, if the hard limit allows one. */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    rl = saved;
    if (rl.rlim_cur <= FD_SETSIZE && rl.rlim_max > FD_SETSIZE) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            rl.rlim_cur = FD_SETSIZE + 1; /* e.g. hard limit is infinite */
            (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    big = dup2(f->a[0], FD_SETSIZE);
    if (big >= 0) {
        assert_int_equal(big, FD_SETSIZE);
        write_byte(f->a[1]); /* big is readable: it must still be refused */
        check_refused(f, big);
    } else {
        print_message("no fd %d (errno %d): checking the number only\n",
                      FD_SETSIZE, errno);
    }

    /* The number alone, whatever the limits: nothing is looked up. */
    check_refused(f, FD_SETSIZE);
    check_refused(f, FD_SETSIZE + 1);
    check_refused(f, 1 << 30);
    check_refused(f, -1);

    /* No stray bit was set: an empty loop times out at once, and a watched
     * fd is the only one reported. */
    assert_int_equal(loop_run_once(f->l, 0), 0);
    assert_int_equal(f->ncalls, 0);
    assert_int_equal(loop_add_fd(f->l, f->b[0], LOOP_READ, record_cb, &tag),
                     CHAT_OK);
    write_byte(f->b[1]);
    assert_int_equal(loop_run_once(f->l, 1000), 1);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].fd, f->b[0]);
    assert_int_equal(f->calls[0].events, LOOP_READ);

    /* The highest descriptor select can hold is accepted. */
    loop_del_fd(f->l, f->b[0]);
    if (big >= 0) {
        assert_int_equal(dup2(f->a[0], FD_SETSIZE - 1), FD_SETSIZE - 1);
        assert_int_equal(
            loop_add_fd(f->l, FD_SETSIZE - 1, LOOP_READ, record_cb, &tag),
            CHAT_OK);
        assert_int_equal(loop_run_once(f->l, 1000), 1);
        assert_int_equal(f->ncalls, 2);
        assert_int_equal(f->calls[1].fd, FD_SETSIZE - 1);
        loop_del_fd(f->l, FD_SETSIZE - 1);
        close(FD_SETSIZE - 1);
        close(big);
    }
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

static void
test_loop_unknown_backend_falls_back_to_select(void **state)
{
    struct loop *l = NULL;
    bool fell_back = false;
    int p[2], tag;

    (void)state;
    assert_int_equal(loop_new("no-such-backend", &l, &fell_back), CHAT_OK);
    assert_non_null(l);
    assert_true(fell_back);
    assert_string_equal(loop_name(l), "select");
    assert_int_equal(loop_fd_limit(l), FD_SETSIZE);

    /* The fallback loop works. */
    assert_int_equal(pipe(p), 0);
    cur->ncalls = 0;
    assert_int_equal(loop_add_fd(l, p[0], LOOP_READ, record_cb, &tag), CHAT_OK);
    write_byte(p[1]);
    assert_int_equal(loop_run_once(l, 1000), 1);
    assert_int_equal(cur->ncalls, 1);
    assert_ptr_equal(cur->calls[0].arg, &tag);
    loop_del_fd(l, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(l);

    fell_back = true;
    assert_int_equal(loop_new(NULL, &l, &fell_back), CHAT_OK);
    assert_false(fell_back);
    assert_string_equal(loop_name(l), "select");
    loop_free(l);
    loop_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loop_reports_read_with_arg, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_loop_reports_write_on_empty_pipe,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_mod_switches_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_loop_mod_resumes_after_lower_fd_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_loop_del_in_callback_suppresses_ready_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_timeout_returns_zero, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_loop_select_refuses_fd_over_setsize, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_loop_unknown_backend_falls_back_to_select, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
