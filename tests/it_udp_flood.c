/*
 * it_udp_flood.c - a spoofed-source flood of handshake datagrams against
 * sockchatd's udp listener (doc/UDP.md 4.1: "before a valid ECHO, the
 * server never sends more bytes to an address than it received from it",
 * and keeps no state).
 *
 * 100,000 INIT datagrams (1200 bytes each, valid: right magic, version,
 * length, a fresh connection id and nonce) go to the listener on
 * 127.0.0.1, each from a random source address in 127.0.0.0/8 and a random
 * port, written with a raw socket (IP_HDRINCL). Nothing can answer from
 * those addresses, so the server can never complete a handshake. A packet
 * socket on lo counts every datagram the server sends from its port, per
 * destination. Checked:
 *   - the server answers (it does hand out cookies: at least 10% of the
 *     INITs, typically 75-85% on an idle host; the rest are dropped by
 *     its full socket buffer);
 *   - no address gets more bytes than were sent from it, nor in total;
 *   - the server's VmRSS after the flood is within FLOOD_RSS_MARGIN_KB of
 *     what it was before (sampled during the flood too);
 *   - the server still serves a real udp client afterwards.
 * Loopback only; bounded (well under 60 s). Needs root (CAP_NET_RAW):
 * exits 77 otherwise, and under SOCKCHATD_WRAPPER (valgrind), whose memory
 * and pace are not the server's.
 */
#include "itlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>

#include "udp_rel.h"

#define FLOOD_N 100000
#define FLOOD_WARMUP 2000
#define FLOOD_RATE 25000          /* datagrams a second, paced */
#define FLOOD_RSS_MARGIN_KB 512   /* allowed VmRSS growth */
#define FLOOD_MAX_MS 40000

static int raw_fd = -1, pkt_fd = -1;

/* ---- per-address byte accounting ---------------------------------- */

struct tally {
    uint64_t sent;     /* UDP payload bytes sent from the address */
    uint64_t replied;  /* UDP payload bytes the server sent to it */
};

static GHashTable *tallies;        /* uint64 key (addr << 16 | port) */
static GMutex tally_lock;

static struct tally *
tally_of(uint32_t addr, uint16_t port)
{
    uint64_t key = (uint64_t)addr << 16 | port;
    struct tally *t = g_hash_table_lookup(tallies, &key);

    if (t == NULL) {
        uint64_t *k = g_new(uint64_t, 1);

        *k = key;
        t = g_new0(struct tally, 1);
        g_hash_table_insert(tallies, k, t);
    }
    return t;
}

/* ---- the sniffer --------------------------------------------------- */

struct sniff {
    uint16_t port;               /* the server's, network order */
    gint stop;                   /* g_atomic */
    uint64_t replies, reply_bytes, other_pkts;
};

static gpointer
sniff_run(gpointer p)
{
    struct sniff *sn = p;
    uint8_t buf[2048];

    while (!g_atomic_int_get(&sn->stop)) {
        struct pollfd pf = { .fd = pkt_fd, .events = POLLIN };
        struct sockaddr_ll ll;
        socklen_t ll_len = sizeof(ll);
        const struct iphdr *ip;
        const struct udphdr *udp;
        ssize_t n;
        size_t ihl;

        if (poll(&pf, 1, 50) <= 0)
            continue;
        n = recvfrom(pkt_fd, buf, sizeof(buf), MSG_DONTWAIT,
            (struct sockaddr *)&ll, &ll_len);
        if (n < (ssize_t)(sizeof(struct iphdr) + sizeof(struct udphdr)))
            continue;
        /* lo shows each packet twice: as sent, and as received */
        if (ll.sll_pkttype == PACKET_OUTGOING)
            continue;
        ip = (const struct iphdr *)(const void *)buf;
        ihl = (size_t)ip->ihl * 4;
        if (ip->protocol != IPPROTO_UDP || (size_t)n < ihl + 8) {
            sn->other_pkts++;
            continue;
        }
        udp = (const struct udphdr *)(const void *)(buf + ihl);
        if (udp->source != sn->port ||
            ip->saddr != htonl(INADDR_LOOPBACK)) {
            sn->other_pkts++;
            continue;
        }
        sn->replies++;
        sn->reply_bytes += ntohs(udp->len) - 8u;
        g_mutex_lock(&tally_lock);
        tally_of(ntohl(ip->daddr), ntohs(udp->dest))->replied +=
            ntohs(udp->len) - 8u;
        g_mutex_unlock(&tally_lock);
    }
    return NULL;
}

/* Only udp from port (network order) reaches the packet socket. */
static int
sniff_filter(uint16_t port)
{
    struct sock_filter code[] = {
        { BPF_LD | BPF_B | BPF_ABS, 0, 0, 9 },          /* protocol */
        { BPF_JMP | BPF_JEQ | BPF_K, 0, 6, IPPROTO_UDP },
        { BPF_LD | BPF_H | BPF_ABS, 0, 0, 6 },          /* fragment */
        { BPF_JMP | BPF_JSET | BPF_K, 4, 0, 0x1fff },
        { BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0 },         /* x = ihl * 4 */
        { BPF_LD | BPF_H | BPF_IND, 0, 0, 0 },          /* source port */
        { BPF_JMP | BPF_JEQ | BPF_K, 0, 1, ntohs(port) },
        { BPF_RET | BPF_K, 0, 0, 0x40000 },
        { BPF_RET | BPF_K, 0, 0, 0 },
    };
    struct sock_fprog prog = { .len = G_N_ELEMENTS(code), .filter = code };

    return setsockopt(pkt_fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog,
        sizeof(prog));
}

/* ---- measurements --------------------------------------------------- */

/* VmRSS of pid in kB, -1 if unreadable. */
static long
vm_rss_kb(int pid)
{
    char *path = g_strdup_printf("/proc/%d/status", pid), *txt = NULL;
    const char *p;
    long kb = -1;

    if (g_file_get_contents(path, &txt, NULL, NULL) &&
        (p = strstr(txt, "\nVmRSS:")) != NULL)
        kb = strtol(p + 7, NULL, 10);
    g_free(txt);
    g_free(path);
    return kb;
}

/* A field of the Udp: lines of /proc/net/snmp (system-wide), -1 if none. */
static long long
snmp_udp(const char *field)
{
    char *txt = NULL, **lines;
    long long v = -1;
    int i, k;

    if (!g_file_get_contents("/proc/net/snmp", &txt, NULL, NULL))
        return -1;
    lines = g_strsplit(txt, "\n", -1);
    for (i = 0; lines[i] != NULL && lines[i + 1] != NULL; i++) {
        char **names, **vals;

        if (!g_str_has_prefix(lines[i], "Udp: ") ||
            !g_str_has_prefix(lines[i + 1], "Udp: "))
            continue;
        names = g_strsplit(lines[i], " ", -1);
        vals = g_strsplit(lines[i + 1], " ", -1);
        for (k = 0; names[k] != NULL && vals[k] != NULL; k++)
            if (strcmp(names[k], field) == 0)
                v = g_ascii_strtoll(vals[k], NULL, 10);
        g_strfreev(names);
        g_strfreev(vals);
        break;
    }
    g_strfreev(lines);
    g_free(txt);
    return v;
}

/* ---- the flood ------------------------------------------------------ */

/* Sends one spoofed INIT to 127.0.0.1:port (host order); the source is
 * random in 127.0.0.0/8. The payload's bytes are added to its tally. */
static void
send_init(uint16_t port)
{
    uint8_t pkt[sizeof(struct iphdr) + sizeof(struct udphdr) + UDP_INIT_LEN];
    struct iphdr *ip = (struct iphdr *)(void *)pkt;
    struct udphdr *udp = (struct udphdr *)(void *)(pkt + sizeof(*ip));
    uint8_t *d = pkt + sizeof(*ip) + sizeof(*udp);
    struct sockaddr_in to;
    struct udp_hdr h;
    uint32_t src;
    uint16_t sport;

    memset(pkt, 0, sizeof(pkt));
    /* 127.x.y.z, never .0 or .255 in the last byte */
    src = 0x7f000000u | (randombytes_uniform(1u << 16) << 8) |
        (1 + randombytes_uniform(254));
    sport = (uint16_t)(1024 + randombytes_uniform(65536 - 1024));
    memset(&h, 0, sizeof(h));
    h.type = UDP_T_INIT;
    h.len = UDP_INIT_LEN - UDP_HDR_LEN;
    while (h.cid == 0)
        h.cid = randombytes_random();
    h.seq = randombytes_random();
    h.wnd = 262144;
    udp_hdr_write(d, &h);
    randombytes_buf(d + UDP_HDR_LEN, UDP_NONCE_LEN);  /* the nonce */

    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((uint16_t)sizeof(pkt));  /* the kernel sets it */
    ip->saddr = htonl(src);
    ip->daddr = htonl(INADDR_LOOPBACK);            /* 127.0.0.1 only */
    udp->source = htons(sport);
    udp->dest = htons(port);
    udp->len = htons((uint16_t)(sizeof(*udp) + UDP_INIT_LEN));
    udp->check = 0;                                /* none (IPv4) */

    memset(&to, 0, sizeof(to));
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (sendto(raw_fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to,
        sizeof(to)) != (ssize_t)sizeof(pkt)) {
        if (errno == ENOBUFS || errno == EAGAIN)
            return;                                /* lost: not counted */
        fail_msg("raw sendto: %s", strerror(errno));
    }
    g_mutex_lock(&tally_lock);
    tally_of(src, sport)->sent += UDP_INIT_LEN;
    g_mutex_unlock(&tally_lock);
}

static void
test_udp_flood_spoofed_inits(void **state)
{
    const char *const listen[] = { "udp://127.0.0.1:0", NULL };
    struct it_server *s;
    struct sniff sn;
    GThread *th;
    const char *url, *colon;
    uint16_t port;
    long rss0, rss1, rss_max, r;
    long long out0, out1, err0, err1;
    uint64_t sent_bytes = 0, over = 0, addrs = 0;
    int64_t t0, ms;
    GHashTableIter it;
    gpointer k, v;
    int i, pid, fd;

    (void)state;
    (void)it_set_lossy(NULL);          /* straight to the listener */
    s = it_server_start_endpoints(listen, NULL);
    if (s == NULL)
        fail_msg("cannot start sockchatd on udp://127.0.0.1:0");
    url = it_server_url(s);
    colon = strrchr(url, ':');
    assert_non_null(colon);
    port = (uint16_t)atoi(colon + 1);
    pid = it_server_pid(s);
    print_message("server pid %d on %s\n", pid, url);

    memset(&sn, 0, sizeof(sn));
    sn.port = htons(port);
    if (sniff_filter(sn.port) != 0)
        fail_msg("SO_ATTACH_FILTER: %s", strerror(errno));
    th = g_thread_new("sniff", sniff_run, &sn);

    /* warm up (first allocations of the listener's paths), then measure */
    for (i = 0; i < FLOOD_WARMUP; i++) {
        send_init(port);
        if (i % 100 == 99)
            g_usleep(4000);
    }
    g_usleep(300000);
    rss0 = rss_max = vm_rss_kb(pid);
    out0 = snmp_udp("OutDatagrams");
    err0 = snmp_udp("RcvbufErrors");
    assert_true(rss0 > 0);

    t0 = it_now_ms();
    for (i = 0; i < FLOOD_N; i++) {
        send_init(port);
        if (i % 100 == 99) {
            /* paced: about FLOOD_RATE a second */
            int64_t due = t0 + (int64_t)(i + 1) * 1000 / FLOOD_RATE;
            int64_t now = it_now_ms();

            if (due > now)
                g_usleep((gulong)(due - now) * 1000);
            if (now - t0 > FLOOD_MAX_MS)
                fail_msg("the flood took over %d ms", FLOOD_MAX_MS);
        }
        if (i % 10000 == 9999 && (r = vm_rss_kb(pid)) > rss_max)
            rss_max = r;
    }
    ms = it_now_ms() - t0;
    g_usleep(1000000);                 /* the last replies, then quiet */
    rss1 = vm_rss_kb(pid);
    if (rss1 > rss_max)
        rss_max = rss1;
    out1 = snmp_udp("OutDatagrams");
    err1 = snmp_udp("RcvbufErrors");
    g_atomic_int_set(&sn.stop, 1);
    g_thread_join(th);

    g_hash_table_iter_init(&it, tallies);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const struct tally *t = v;

        addrs++;
        sent_bytes += t->sent;
        if (t->replied > t->sent)
            over++;
    }
    print_message("sent %d + %d warm-up spoofed INITs (%llu bytes of UDP "
        "payload) from %llu source addresses in %lld ms\n", FLOOD_N,
        FLOOD_WARMUP, (unsigned long long)sent_bytes,
        (unsigned long long)addrs, (long long)ms);
    print_message("server replies seen on lo: %llu datagrams, %llu bytes "
        "(%.2f%% of the bytes sent); addresses that got more than they "
        "sent: %llu\n", (unsigned long long)sn.replies,
        (unsigned long long)sn.reply_bytes,
        sent_bytes > 0 ? 100.0 * (double)sn.reply_bytes / (double)sent_bytes :
        0.0, (unsigned long long)over);
    print_message("/proc/net/snmp (system-wide, other traffic included): "
        "Udp OutDatagrams +%lld, RcvbufErrors +%lld\n", out1 - out0,
        err1 - err0);
    print_message("server VmRSS: %ld kB before, %ld kB after, %ld kB at "
        "most (margin %d kB)\n", rss0, rss1, rss_max, FLOOD_RSS_MARGIN_KB);

    if (over != 0)
        fail_msg("%llu addresses got more bytes than they sent",
            (unsigned long long)over);
    if (sn.reply_bytes > sent_bytes)
        fail_msg("the server sent %llu bytes for %llu received",
            (unsigned long long)sn.reply_bytes,
            (unsigned long long)sent_bytes);
    /* it did answer (a cookie per INIT it read, 76 bytes each), so the
     * bound above means something */
    if (sn.replies < (FLOOD_N + FLOOD_WARMUP) / 10)
        fail_msg("only %llu of %d INITs answered: the listener did not "
            "keep up", (unsigned long long)sn.replies,
            FLOOD_N + FLOOD_WARMUP);
    if (rss_max - rss0 > FLOOD_RSS_MARGIN_KB)
        fail_msg("VmRSS grew from %ld kB to %ld kB (margin %d kB)", rss0,
            rss_max, FLOOD_RSS_MARGIN_KB);

    /* and it still serves */
    fd = it_connect(s);
    if (fd < 0)
        fail_msg("no udp connection after the flood");
    it_hello(fd, it_uniq("after"));
    it_ping(fd);
    it_close(fd);
    assert_int_equal(it_server_stop(s), 0);
}

static int
cleanup(void **state)
{
    (void)state;
    it_test_cleanup(NULL);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_udp_flood_spoofed_inits, cleanup),
    };
    struct sockaddr_ll ll;
    const char *w;
    int rc, big = 64 << 20;

    w = getenv("SOCKCHATD_WRAPPER");
    if (w != NULL && *w != '\0') {
        /* it measures the server's own memory and pace, not valgrind's */
        printf("it_udp_flood: SKIP: not behind SOCKCHATD_WRAPPER (%s)\n", w);
        return 77;
    }
    if (geteuid() != 0) {
        printf("it_udp_flood: SKIP: needs root for a raw socket "
            "(IP_HDRINCL) and a packet socket\n");
        return 77;
    }
    raw_fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    pkt_fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));
    if (raw_fd < 0 || pkt_fd < 0) {
        printf("it_udp_flood: SKIP: %s socket: %s (CAP_NET_RAW needed)\n",
            raw_fd < 0 ? "raw" : "packet", strerror(errno));
        return 77;
    }
    memset(&ll, 0, sizeof(ll));
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_IP);
    ll.sll_ifindex = (int)if_nametoindex("lo");
    if (ll.sll_ifindex == 0 ||
        bind(pkt_fd, (struct sockaddr *)&ll, sizeof(ll)) != 0) {
        printf("it_udp_flood: SKIP: no packet socket on lo: %s\n",
            strerror(errno));
        return 77;
    }
    if (setsockopt(pkt_fd, SOL_SOCKET, SO_RCVBUFFORCE, &big,
        sizeof(big)) != 0)
        (void)setsockopt(pkt_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    tallies = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
        g_free);
    it_init();
    if (sodium_init() < 0)
        return 99;
    rc = cmocka_run_group_tests_name("it_udp_flood", tests, NULL, NULL);
    g_hash_table_unref(tallies);
    close(raw_fd);
    close(pkt_fd);
    if (it_bad_stops() != 0 && rc == 0)
        rc = 1;
    return rc != 0 ? 1 : 0;
}
