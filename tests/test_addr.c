/* test_addr.c - tests for common/addr.c through addr.h. Numeric hosts only:
 * nothing here needs DNS or a network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "addr.h"
#include "err.h"

#define DEF_PORT 7710

static void
parse_ok(const char *url, struct endpoint *ep)
{
    char why[128];
    int rc;

    memset(why, 'x', sizeof(why));
    rc = addr_parse_url(url, "tcp", DEF_PORT, ep, why, sizeof(why));
    if (rc != CHAT_OK)
        fail_msg("%s: %d (%s)", url, rc, why);
    assert_string_equal(why, "");
}

static void
parse_fails(const char *url)
{
    struct endpoint ep;
    char why[128];
    int rc;

    memset(why, 0, sizeof(why));
    rc = addr_parse_url(url, "tcp", DEF_PORT, &ep, why, sizeof(why));
    if (rc != CHAT_EADDR)
        fail_msg("%s: expected CHAT_EADDR, got %d", url, rc);
    if (why[0] == '\0')
        fail_msg("%s: empty reason", url);
}

static void
test_addr_parse_tcp_ipv4(void **state)
{
    struct endpoint ep;

    (void)state;
    parse_ok("tcp://127.0.0.1:7710", &ep);
    assert_string_equal(ep.scheme, "tcp");
    assert_string_equal(ep.host, "127.0.0.1");
    assert_int_equal(ep.port, 7710);
    assert_string_equal(ep.path, "");
}

static void
test_addr_parse_tcp_ipv6_brackets(void **state)
{
    struct endpoint ep;

    (void)state;
    parse_ok("tcp://[::1]:7711", &ep);
    assert_string_equal(ep.scheme, "tcp");
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, 7711);
}

static void
test_addr_parse_ipv6_without_port(void **state)
{
    struct endpoint ep;

    (void)state;
    parse_ok("[::1]", &ep);
    assert_string_equal(ep.scheme, "tcp");
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, DEF_PORT);
}

static void
test_addr_parse_bare_host(void **state)
{
    struct endpoint ep;

    (void)state;
    parse_ok("chat.example", &ep);
    assert_string_equal(ep.scheme, "tcp");
    assert_string_equal(ep.host, "chat.example");
    assert_int_equal(ep.port, DEF_PORT);

    /* The default scheme comes from the caller. */
    assert_int_equal(addr_parse_url("10.0.0.1", "udp", 9, &ep, NULL, 0),
                     CHAT_OK);
    assert_string_equal(ep.scheme, "udp");
    assert_string_equal(ep.host, "10.0.0.1");
    assert_int_equal(ep.port, 9);
}

static void
test_addr_parse_host_port(void **state)
{
    struct endpoint ep;

    (void)state;
    parse_ok("localhost:8000", &ep);
    assert_string_equal(ep.scheme, "tcp");
    assert_string_equal(ep.host, "localhost");
    assert_int_equal(ep.port, 8000);

    parse_ok("127.0.0.1:0", &ep);
    assert_int_equal(ep.port, 0);
    parse_ok("127.0.0.1:65535", &ep);
    assert_int_equal(ep.port, 65535);
}

static void
test_addr_parse_udp(void **state)
{
    struct endpoint ep;

    (void)state;
    parse_ok("udp://192.0.2.7:7712", &ep);
    assert_string_equal(ep.scheme, "udp");
    assert_string_equal(ep.host, "192.0.2.7");
    assert_int_equal(ep.port, 7712);

    parse_ok("udp://[fe80::1]", &ep);
    assert_string_equal(ep.scheme, "udp");
    assert_string_equal(ep.host, "fe80::1");
    assert_int_equal(ep.port, DEF_PORT);
}

static void
test_addr_parse_unix(void **state)
{
    struct endpoint ep;

    (void)state;
    parse_ok("unix:///run/x.sock", &ep);
    assert_string_equal(ep.scheme, "unix");
    assert_string_equal(ep.path, "/run/x.sock");
    assert_string_equal(ep.host, "");
    assert_int_equal(ep.port, 0);
}

static void
test_addr_parse_errors(void **state)
{
    (void)state;
    parse_fails("sctp://127.0.0.1:7710"); /* unknown scheme */
    parse_fails("verylongscheme://h:1");  /* unknown, and too long */
    parse_fails("://127.0.0.1:7710");     /* empty scheme */
    parse_fails("tcp://[::1:7710");       /* missing ']' */
    parse_fails("[::1");                  /* missing ']' */
    parse_fails("tcp://::1");             /* IPv6 without brackets */
    parse_fails("::1:7710");              /* IPv6 without brackets */
    parse_fails("tcp://127.0.0.1:70000"); /* port out of range */
    parse_fails("tcp://[::1]:70000");     /* port out of range */
    parse_fails("tcp://127.0.0.1:-1");    /* port out of range */
    parse_fails("tcp://127.0.0.1:http");  /* non-numeric port */
    parse_fails("tcp://127.0.0.1:77x");   /* non-numeric port */
    parse_fails("tcp://127.0.0.1:");      /* empty port */
    parse_fails("tcp://:7710");           /* empty host */
    parse_fails("tcp://");                /* empty host */
    parse_fails("");                      /* empty host */
    parse_fails("tcp://[]:7710");         /* empty IPv6 host */
    parse_fails("tcp://[::1]x");          /* junk after ']' */
    parse_fails("unix://run/x.sock");     /* relative path */
    parse_fails("unix://");               /* no path */
}

/* A port is digits only: strtol() alone also takes "+80", " 80", "-0". */
static void
test_addr_parse_rejects_signed_or_spaced_port(void **state)
{
    (void)state;
    parse_fails("tcp://127.0.0.1:+80");
    parse_fails("tcp://127.0.0.1: 80");
    parse_fails("tcp://127.0.0.1:-0");
}

static void
test_addr_parse_clears_endpoint(void **state)
{
    struct endpoint ep;
    char why[64];

    (void)state;
    memset(&ep, 0x5a, sizeof(ep));
    assert_int_equal(
        addr_parse_url("tcp://h:1", "tcp", 0, &ep, why, sizeof(why)), CHAT_OK);
    assert_string_equal(ep.path, "");
    memset(&ep, 0x5a, sizeof(ep));
    assert_int_equal(
        addr_parse_url("bogus://h:1", "tcp", 0, &ep, why, sizeof(why)),
        CHAT_EADDR);
    assert_string_equal(ep.host, "");
    assert_int_equal(ep.port, 0);
}

static void
test_addr_format_url_round_trip(void **state)
{
    const char *const urls[] = {
        "tcp://127.0.0.1:7710", "tcp://[::1]:7710",   "udp://chat.example:9",
        "udp://[fe80::1]:0",    "unix:///run/x.sock", "unix://@abstract",
    };
    struct endpoint ep, ep2;
    char out[ADDR_URL_MAX];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        parse_ok(urls[i], &ep);
        addr_format_url(&ep, out, sizeof(out));
        assert_string_equal(out, urls[i]);
        parse_ok(out, &ep2);
        assert_memory_equal(&ep, &ep2, sizeof(ep));
    }
    /* Defaults are written out in full. */
    parse_ok("[::1]", &ep);
    addr_format_url(&ep, out, sizeof(out));
    assert_string_equal(out, "tcp://[::1]:7710");
    parse_ok("localhost", &ep);
    addr_format_url(&ep, out, sizeof(out));
    assert_string_equal(out, "tcp://localhost:7710");
}

static void
resolve_one(const char *url, int family, const char *want)
{
    struct endpoint ep;
    struct addr a[4];
    size_t count = 99;
    char why[128] = "", out[ADDR_STR_MAX];

    parse_ok(url, &ep);
    if (addr_resolve(&ep, false, SOCK_STREAM, a, 4, &count, why, sizeof(why)) !=
        CHAT_OK)
        fail_msg("%s: %s", url, why);
    assert_int_equal(count, 1);
    assert_int_equal(a[0].ss.ss_family, family);
    assert_int_equal(a[0].len, family == AF_INET ? sizeof(struct sockaddr_in)
                                                 : sizeof(struct sockaddr_in6));
    assert_int_equal(addr_port(&a[0]), 7710);
    addr_format(&a[0], out, sizeof(out));
    assert_string_equal(out, want);
}

static void
test_addr_resolve_numeric_ipv4(void **state)
{
    (void)state;
    resolve_one("tcp://127.0.0.1:7710", AF_INET, "127.0.0.1:7710");
}

static void
test_addr_resolve_numeric_ipv6(void **state)
{
    (void)state;
    resolve_one("tcp://[::1]:7710", AF_INET6, "[::1]:7710");
}

static void
test_addr_resolve_unix(void **state)
{
    struct endpoint ep;
    struct addr a[1];
    size_t count = 0;
    char out[ADDR_STR_MAX];

    (void)state;
    parse_ok("unix:///run/x.sock", &ep);
    assert_int_equal(
        addr_resolve(&ep, true, SOCK_STREAM, a, 1, &count, NULL, 0), CHAT_OK);
    assert_int_equal(count, 1);
    assert_int_equal(a[0].ss.ss_family, AF_UNIX);
    assert_int_equal(addr_port(&a[0]), 0);
    addr_format(&a[0], out, sizeof(out));
    assert_string_equal(out, "/run/x.sock");

    parse_ok("unix://@sockchat-test", &ep);
    assert_int_equal(
        addr_resolve(&ep, true, SOCK_STREAM, a, 1, &count, NULL, 0), CHAT_OK);
    addr_format(&a[0], out, sizeof(out));
    assert_string_equal(out, "@sockchat-test");
}

static void
test_addr_port_of_non_inet_is_zero(void **state)
{
    struct addr a;

    (void)state;
    memset(&a, 0, sizeof(a));
    a.ss.ss_family = AF_UNSPEC;
    assert_int_equal(addr_port(&a), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_tcp_ipv4),
        cmocka_unit_test(test_addr_parse_tcp_ipv6_brackets),
        cmocka_unit_test(test_addr_parse_ipv6_without_port),
        cmocka_unit_test(test_addr_parse_bare_host),
        cmocka_unit_test(test_addr_parse_host_port),
        cmocka_unit_test(test_addr_parse_udp),
        cmocka_unit_test(test_addr_parse_unix),
        cmocka_unit_test(test_addr_parse_errors),
        cmocka_unit_test(test_addr_parse_rejects_signed_or_spaced_port),
        cmocka_unit_test(test_addr_parse_clears_endpoint),
        cmocka_unit_test(test_addr_format_url_round_trip),
        cmocka_unit_test(test_addr_resolve_numeric_ipv4),
        cmocka_unit_test(test_addr_resolve_numeric_ipv6),
        cmocka_unit_test(test_addr_resolve_unix),
        cmocka_unit_test(test_addr_port_of_non_inet_is_zero),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
