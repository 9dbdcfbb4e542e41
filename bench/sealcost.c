/* sealcost.c - what encryption costs per delivery, without the network.
 *
 * Issue 4 asks encrypted fan-out to reach 0.8x of plain deliveries per
 * second. On a machine where the receivers' process is the bottleneck (as
 * loadgen is in bench/transports.sh), the ratio cannot exceed
 *
 *     plain / (plain + open)
 *
 * where plain is what a receiver spends per delivery without encryption
 * (read, frame, parse, check) and open is what opening the sealed bytes of
 * one delivery adds: every receiver decrypts every message it receives,
 * whatever the server does (one stream per receiver, as now, or one room key
 * sealed once per message). This program measures open, and seal for
 * comparison, with the code the server and clients run (common/secure.c):
 * batches of k message events as the server seals them (secure_seal_batch)
 * and opens them as every receiver does (secure_open, then
 * secure_plain_next over the batch). Its "copy" column is the same bytes
 * walked without encryption (memcpy and the batch walk), the part of open
 * that plain delivery pays too.
 *
 *   make bench/sealcost && bench/sealcost [--ms 300] [--plain-ns P]
 *
 * --plain-ns P: a receiver's plain cost per delivery in ns (loadgen CPU
 * seconds / deliveries in the plain row of bench/transports.sh); prints the
 * ratio bound for each batch size. Every measurement is bounded by --ms of
 * CPU time (default 300), so a run takes a few seconds. Single-threaded,
 * no sockets.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <glib.h>
#include <sodium.h>

#include "err.h"
#include "message.h"
#include "secure.h"

#define BATCH_MAX 256
#define TEXT_LEN 100 /* the benchmark's texts (BENCHMARK-METHOD) */

struct pair {
    struct secure_session *c, *s;
};

/* Results are summed into this, so that no walk is optimised away. */
static volatile size_t sink;

static double
cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A client and a server session, handshake done in memory (the JSON goes
 * through text, as on the wire). */
static int
pair_new(const uint8_t *sk, struct pair *p)
{
    cJSON *req = NULL, *rep = NULL, *wreq = NULL, *wrep = NULL;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why = NULL;
    char *txt;
    int rc = CHAT_EPROTO;

    memset(p, 0, sizeof(*p));
    if (secure_client_start(&p->c, &req) != CHAT_OK)
        goto out;
    txt = cJSON_PrintUnformatted(req);
    wreq = cJSON_Parse(txt);
    cJSON_free(txt);
    if (secure_server_accept(sk, wreq, &p->s, &rep, &why) != CHAT_OK)
        goto out;
    txt = cJSON_PrintUnformatted(rep);
    wrep = cJSON_Parse(txt);
    cJSON_free(txt);
    if (secure_client_finish(p->c, wrep, pk, &why) != CHAT_OK)
        goto out;
    rc = CHAT_OK;
out:
    if (why)
        fprintf(stderr, "sealcost: handshake: %s\n", why);
    cJSON_Delete(req);
    cJSON_Delete(rep);
    cJSON_Delete(wreq);
    cJSON_Delete(wrep);
    return rc;
}

static void
pair_free(struct pair *p)
{
    secure_free(p->c);
    secure_free(p->s);
}

struct result {
    double seal_ns, open_ns, copy_ns; /* per message */
    size_t sealed_len;                /* one sealed batch */
};

/* Walk a batch plaintext as a receiver does; the sum keeps the walk from
 * being optimised away. */
static size_t
walk(const uint8_t *pt, size_t n)
{
    const uint8_t *m;
    size_t off = 0, len, sum = 0;

    while (secure_plain_next(pt, n, &off, &m, &len) == CHAT_OK)
        sum += len + m[0];
    return sum;
}

/* k messages per batch, each msg (len bytes): the server seals, the client
 * opens, until budget_ns of CPU time has gone into each. The plain
 * baseline is the same plaintext batch copied out of a receive buffer and
 * walked, as a plain receiver's bytes are. */
static int
measure(const uint8_t *sk, const char *msg, size_t len, size_t k,
        double budget_ns, struct result *res)
{
    struct iovec iov[BATCH_MAX];
    GByteArray *scratch = g_byte_array_new();
    size_t cap, i, nb = 64, pt_len, sum = 0, plen = 0;
    uint8_t *frames, *plainbuf, *pt, *kept = NULL;
    size_t *lens = g_new(size_t, nb);
    double t0, seal_t = 0, open_t = 0, copy_t = 0;
    uint64_t batches = 0;
    struct pair p;
    bool final;
    int rc = CHAT_OK;

    for (i = 0; i < k; i++) {
        iov[i].iov_base = (void *)(uintptr_t)msg;
        iov[i].iov_len = len;
    }
    cap = secure_batch_plain_len(iov, k) + SECURE_OVERHEAD_MAX;
    frames = g_malloc(nb * cap);
    plainbuf = g_malloc(cap);
    /* Seal in rounds of nb batches, then open them in order (a stream's
     * frames open only in the order they were sealed). */
    while ((seal_t < budget_ns || open_t < budget_ns) && rc == CHAT_OK) {
        if (pair_new(sk, &p) != CHAT_OK) {
            rc = CHAT_EPROTO;
            break;
        }
        t0 = cpu_ns();
        for (i = 0; i < nb && rc == CHAT_OK; i++)
            rc = secure_seal_batch(p.s, iov, k, false, scratch,
                                   frames + i * cap, cap, &lens[i]);
        seal_t += cpu_ns() - t0;
        t0 = cpu_ns();
        for (i = 0; i < nb && rc == CHAT_OK; i++) {
            rc = secure_open(p.c, frames + i * cap, lens[i], &pt, &pt_len,
                             &final);
            if (rc == CHAT_OK)
                sum += walk(pt, pt_len);
            if (kept == NULL) {
                kept = pt; /* an opened batch, for the plain baseline */
                plen = pt_len;
            } else {
                g_free(pt);
            }
        }
        open_t += cpu_ns() - t0;
        if (rc == CHAT_OK) {
            t0 = cpu_ns();
            for (i = 0; i < nb; i++) {
                memcpy(plainbuf, kept, plen);
                sum += walk(plainbuf, plen);
            }
            copy_t += cpu_ns() - t0;
            batches += nb;
            res->sealed_len = lens[nb - 1];
        }
        pair_free(&p);
    }
    res->seal_ns = seal_t / (double)(batches * k);
    res->open_ns = open_t / (double)(batches * k);
    res->copy_ns = copy_t / (double)(batches * k);
    sink += sum;
    g_byte_array_unref(scratch);
    g_free(kept);
    g_free(frames);
    g_free(lens);
    g_free(plainbuf);
    return rc;
}

int
main(int argc, char **argv)
{
    static const size_t ks[] = {1, 4, 16, 64, 256};
    uint8_t pk[SECURE_PK_BYTES], sk[SECURE_SK_BYTES];
    char text[TEXT_LEN + 1], *msg;
    double ms = 300, plain_ns = 0;
    size_t len, i;
    int a;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--ms") == 0 && a + 1 < argc)
            ms = strtod(argv[++a], NULL);
        else if (strcmp(argv[a], "--plain-ns") == 0 && a + 1 < argc)
            plain_ns = strtod(argv[++a], NULL);
        else {
            fprintf(stderr,
                    "usage: sealcost [--ms CPU-ms per figure, 1..10000] "
                    "[--plain-ns receiver's plain ns per delivery]\n");
            return 2;
        }
    }
    if (!(ms >= 1 && ms <= 10000) || plain_ns < 0) {
        fprintf(stderr, "sealcost: --ms is 1..10000, --plain-ns >= 0\n");
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "sealcost: sodium_init failed\n");
        return 1;
    }
    crypto_sign_keypair(pk, sk);
    memset(text, 'x', TEXT_LEN);
    text[TEXT_LEN] = '\0';
    /* A delivery as the fan-out benchmark's receivers get it. */
    msg = msg_encode_message("bench", NULL, "lg-s3", text, false, 1795000000000,
                             123456, NULL, &len);
    if (msg == NULL) {
        fprintf(stderr, "sealcost: out of memory\n");
        return 1;
    }
    printf("one message event: %zu bytes; CPU time per message, %g ms of "
           "CPU per figure\n\n",
           len, ms);
    printf("| messages per batch | sealed batch bytes | seal ns/msg | open "
           "ns/msg | plain copy+walk ns/msg | open - plain ns/msg |%s\n",
           plain_ns > 0 ? " ratio bound |" : "");
    printf("| ---: | ---: | ---: | ---: | ---: | ---: |%s\n",
           plain_ns > 0 ? " ---: |" : "");
    for (i = 0; i < G_N_ELEMENTS(ks); i++) {
        struct result r;
        double extra;

        memset(&r, 0, sizeof(r));
        if (measure(sk, msg, len, ks[i], ms * 1e6, &r) != CHAT_OK) {
            fprintf(stderr, "sealcost: sealing or opening failed\n");
            g_free(msg);
            return 1;
        }
        extra = r.open_ns - r.copy_ns;
        printf("| %zu | %zu | %.0f | %.0f | %.0f | %.0f |", ks[i], r.sealed_len,
               r.seal_ns, r.open_ns, r.copy_ns, extra);
        if (plain_ns > 0)
            printf(" %.2f |", plain_ns / (plain_ns + extra));
        printf("\n");
    }
    sodium_memzero(sk, sizeof(sk));
    g_free(msg);
    return 0;
}
