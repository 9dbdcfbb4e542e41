/*
 * it_secure.c - black-box tests of secure sessions (doc/SECURE.md) against a
 * real sockchatd: what only makes sense with encryption. The plain protocol
 * inside a secure session is it_proto's and it_badinput's job (it_secure.sh
 * runs both with IT_SECURE=1).
 *
 * The client side is the harness (itlib) with common/secure.c and
 * common/identity.c, as a real client would use them. A relay thread plays
 * the man in the middle: it either answers the client's `secure` with its
 * own key while it keeps its own session with the server (and so reads
 * everything a client that does not check the key sends), or it passes the
 * server's answer on with one field altered.
 *
 * Every connection here is plain until a test asks for the handshake
 * (it_connect_secure, it_secure_handshake), whatever $IT_SECURE says.
 */
#include "itlib.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "identity.h"
#include "secure.h"

static struct it_server *shared;

#define SERVER_ARGS "--identity @DIR@/id.key"

/* ------------------------------------------------------------ helpers */

static struct it_server *
start_or_fail(const char *args)
{
    struct it_server *s = it_server_start_str(args);

    if (s == NULL)
        fail_msg("cannot start sockchatd %s", args != NULL ? args : "");
    return s;
}

static void
stop_ok(struct it_server *s)
{
    assert_int_equal(it_server_stop(s), 0);
}

/* "tcp://host:port" of a server: host (no brackets) and port. */
static void
server_host_port(const struct it_server *s, const char **host,
    unsigned *port)
{
    const char *url = it_server_url(s), *p, *colon;

    if (strncmp(url, "tcp://", 6) != 0) {
        print_message("these tests need a tcp:// server, not %s\n", url);
        skip();
    }
    p = url + 6;
    colon = strrchr(p, ':');
    assert_non_null(colon);
    if (*p == '[')
        *host = it_own(g_strndup(p + 1, (gsize)(colon - p - 2)));
    else
        *host = it_own(g_strndup(p, (gsize)(colon - p)));
    *port = (unsigned)strtoul(colon + 1, NULL, 10);
    assert_true(*port > 0 && *port < 65536);
}

static const char *
fingerprint_of(const uint8_t pk[SECURE_PK_BYTES])
{
    char fp[IDENTITY_FP_SIZE];

    identity_fingerprint(pk, fp);
    return it_own(g_strdup(fp));
}

static const char *
b64(const uint8_t *bin, size_t n)
{
    size_t len = sodium_base64_ENCODED_LEN(n,
        sodium_base64_VARIANT_ORIGINAL);
    char *out = g_malloc(len);

    sodium_bin2base64(out, len, bin, n, sodium_base64_VARIANT_ORIGINAL);
    return it_own(out);
}

/* The base64 string field key of m, decoded into out (exactly n bytes). */
static bool
unb64(const cJSON *m, const char *key, uint8_t *out, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
    size_t got = 0;

    return cJSON_IsString(v) &&
        sodium_base642bin(out, n, v->valuestring, strlen(v->valuestring),
            NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
        got == n;
}

static void
free_identity(gpointer p)
{
    identity_free(p);
}

static struct identity *
new_identity(void)
{
    struct identity *id = NULL;

    assert_int_equal(identity_generate(&id), CHAT_OK);
    return it_defer(free_identity, id);
}

/* A plain connection that does the handshake by itself. */
static int
connect_secure(const struct it_server *s)
{
    int fd = it_connect_secure(s);

    if (fd < 0)
        fail_msg("no secure session with %s", it_server_url(s));
    return fd;
}

/* Connects (secure or plain), says hello and returns the fd. */
static int
register_as(const struct it_server *s, bool secure, const char *nick)
{
    int fd = secure ? connect_secure(s) : it_connect_plain(s);

    assert_true(fd >= 0);
    it_hello(fd, nick);
    return fd;
}

/*
 * hello {nick} proving id (secure_client_sign_hello) on fd; without
 * want_error expects the welcome, else that error. Returns what came.
 */
static const cJSON *
hello_signed(int fd, const char *nick, const struct identity *id,
    const char *want_error)
{
    cJSON *h = cJSON_CreateObject();
    const cJSON *m;
    char *txt;

    cJSON_AddStringToObject(h, "type", "hello");
    cJSON_AddNumberToObject(h, "version", 1);
    cJSON_AddStringToObject(h, "nick", nick);
    assert_non_null(it_secure_session(fd));
    assert_int_equal(secure_client_sign_hello(it_secure_session(fd),
        identity_secret_key(id), h), CHAT_OK);
    txt = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    assert_non_null(txt);
    assert_int_equal(it_send_frame(fd, txt, strlen(txt)), 0);
    cJSON_free(txt);
    if (want_error != NULL)
        return it_expect_error(fd, want_error);
    m = it_expect_type(fd, "welcome");
    assert_string_equal(it_str(m, "nick"), nick);
    it_set_nick(fd, nick);
    return m;
}

/* Expects quit {nick, reason} as the next message on fd (reason NULL: no
 * reason given). */
static void
expect_quit(int fd, const char *nick, const char *reason)
{
    const cJSON *m = it_expect_type(fd, "quit");

    if (strcmp(it_str(m, "nick"), nick) != 0 ||
        (reason != NULL ? strcmp(it_str(m, "reason"), reason) != 0 :
        it_has(m, "reason")))
        fail_msg("expected quit {%s, %s}, got %s", nick,
            reason != NULL ? reason : "no reason", it_json(m));
}

/* Expects message {room, from, text} as the next message on fd. */
static void
expect_message(int fd, const char *room, const char *from, const char *text)
{
    const cJSON *m = it_expect_type(fd, "message");

    if (g_ascii_strcasecmp(it_str(m, "room"), room) != 0 ||
        strcmp(it_str(m, "from"), from) != 0 ||
        strcmp(it_str(m, "text"), text) != 0)
        fail_msg("expected message {%s, %s, %s}, got %s", room, from, text,
            it_json(m));
}

/* The end of a session that sent something that did not open: a sealed
 * secure_failed, the server's TAG_FINAL, the close. */
static void
expect_secure_failed(int fd)
{
    it_expect_error(fd, "secure_failed");
    it_expect_closed(fd);
    assert_true(it_got_final(fd));
}

/* An observer (plain) and a speaker (secure) in room, and fd (secure) in it
 * too; the observer and speaker prove afterwards that only fd went. */
struct room3 {
    const char *room;
    int o, sp, fd;
    const char *onick, *spnick, *fdnick;
};

static void
room3_setup(struct room3 *r, const struct it_server *s)
{
    r->room = it_uniq("#sec");
    r->onick = it_uniq("obs");
    r->spnick = it_uniq("spk");
    r->fdnick = it_uniq("vic");
    r->o = register_as(s, false, r->onick);
    it_join(r->o, r->room);
    r->sp = register_as(s, true, r->spnick);
    it_join(r->sp, r->room);
    it_expect_joined(r->o, r->room, r->spnick);
    r->fd = register_as(s, true, r->fdnick);
    it_join(r->fd, r->room);
    it_expect_joined(r->o, r->room, r->fdnick);
    it_expect_joined(r->sp, r->room, r->fdnick);
}

/* fd went with reason; the others saw that and nothing else, and chat on. */
static void
room3_check_rest(const struct room3 *r, const char *reason)
{
    expect_quit(r->o, r->fdnick, reason);
    expect_quit(r->sp, r->fdnick, reason);
    it_say(r->sp, r->room, "secure speaker still here");
    expect_message(r->o, r->room, r->spnick, "secure speaker still here");
    it_say(r->o, r->room, "plain observer still here");
    expect_message(r->sp, r->room, r->onick, "plain observer still here");
    it_expect_silence(r->o, 100);
    it_expect_silence(r->sp, 10);
    it_ping(r->o);
    it_ping(r->sp);
}

/* ------------------------------------------------- man in the middle */

enum mitm_mode {
    MITM_PASS,              /* bytes both ways, untouched */
    MITM_SUBSTITUTE,        /* own key to the client, own session upstream */
    MITM_TAMPER_SIG,        /* the server's reply with one sig bit flipped */
    MITM_TAMPER_IDENTITY,   /* the server's reply naming the relay's key */
    MITM_TAMPER_KX,         /* the server's reply with one kx bit flipped */
};

struct mitm {
    enum mitm_mode mode;
    struct sockaddr_storage up;
    socklen_t uplen;
    int lfd;
    int stop[2];
    const char *url;                /* where the client connects */
    struct identity *id;            /* the relay's own long-term key */
    GThread *thread;
    bool joined;
    /* results: read only after mitm_finish() */
    bool upstream_ok;               /* its own session with the server */
    int client_frames;              /* sealed frames it opened from the client */
    char *first_plain;              /* the first of them, in clear */
    const char *error;              /* why it stopped, if not an EOF */
};

/* Exactly n bytes from fd; false on EOF, error, stop or 10 s (scaled). */
static bool
relay_read(struct mitm *m, int fd, uint8_t *p, size_t n)
{
    int64_t deadline = it_now_ms() + it_ms(10000);

    while (n > 0) {
        struct pollfd pf[2] = {
            { .fd = fd, .events = POLLIN },
            { .fd = m->stop[0], .events = POLLIN },
        };
        int64_t left = deadline - it_now_ms();
        ssize_t k;
        int r;

        if (left <= 0)
            return false;
        r = poll(pf, 2, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || pf[1].revents != 0)
            return false;
        k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool
relay_write(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* One frame's payload (caller frees), or NULL. */
static GByteArray *
relay_read_frame(struct mitm *m, int fd)
{
    uint8_t h[4];
    uint32_t n;
    GByteArray *b;

    if (!relay_read(m, fd, h, 4))
        return NULL;
    n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 |
        (uint32_t)h[3];
    if (n == 0 || n > (1u << 20))
        return NULL;
    b = g_byte_array_sized_new(n);
    g_byte_array_set_size(b, n);
    if (!relay_read(m, fd, b->data, n)) {
        g_byte_array_unref(b);
        return NULL;
    }
    return b;
}

static bool
relay_write_frame(int fd, const void *p, size_t n)
{
    uint8_t h[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16),
        (uint8_t)(n >> 8), (uint8_t)n };

    return relay_write(fd, h, 4) && relay_write(fd, p, n);
}

static bool
relay_write_json(int fd, const cJSON *j)
{
    char *txt = cJSON_PrintUnformatted(j);
    bool ok = txt != NULL && relay_write_frame(fd, txt, strlen(txt));

    cJSON_free(txt);
    return ok;
}

static cJSON *
relay_read_json(struct mitm *m, int fd)
{
    GByteArray *b = relay_read_frame(m, fd);
    cJSON *j;

    if (b == NULL)
        return NULL;
    j = cJSON_ParseWithLength((const char *)b->data, b->len);
    g_byte_array_unref(b);
    return j;
}

/* Flips one bit of the base64 field key of j (decoded, flipped, encoded). */
static bool
flip_b64_field(cJSON *j, const char *key, size_t n)
{
    uint8_t buf[64];
    size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *enc;

    if (n > sizeof(buf) || !unb64(j, key, buf, n))
        return false;
    buf[n / 2] ^= 0x01;
    enc = g_malloc(len);
    sodium_bin2base64(enc, len, buf, n, sodium_base64_VARIANT_ORIGINAL);
    cJSON_ReplaceItemInObjectCaseSensitive(j, key, cJSON_CreateString(enc));
    g_free(enc);
    return true;
}

/* Bytes both ways until either side ends. */
static void
relay_bytes(struct mitm *m, int cfd, int sfd)
{
    uint8_t buf[16384];

    for (;;) {
        struct pollfd pf[3] = {
            { .fd = cfd, .events = POLLIN },
            { .fd = sfd, .events = POLLIN },
            { .fd = m->stop[0], .events = POLLIN },
        };
        int r = poll(pf, 3, it_ms(30000)), i;

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || pf[2].revents != 0)
            return;
        for (i = 0; i < 2; i++) {
            ssize_t k;

            if (pf[i].revents == 0)
                continue;
            k = recv(pf[i].fd, buf, sizeof(buf), 0);
            if (k <= 0 || !relay_write(pf[1 - i].fd, buf, (size_t)k))
                return;
        }
    }
}

/* Records the first message the client sent: the plaintext itself, or
 * the first message of a batch (doc/SECURE.md section 5). */
static void
relay_record(struct mitm *m, const uint8_t *pt, size_t ptlen)
{
    const uint8_t *msg;
    size_t off = 0, mlen;

    if (m->first_plain != NULL)
        return;
    if (secure_plain_next(pt, ptlen, &off, &msg, &mlen) == CHAT_OK)
        m->first_plain = g_strndup((const char *)msg, mlen);
    else if (ptlen == 0)
        m->first_plain = g_strdup("");
    else
        m->first_plain = g_strdup("(a malformed batch)");
}

/* Sealed frames both ways: opened with one session, sealed with the
 * other. Records what the client said. */
static void
relay_sessions(struct mitm *m, int cfd, int sfd, struct secure_session *down,
    struct secure_session *up)
{
    for (;;) {
        struct pollfd pf[3] = {
            { .fd = cfd, .events = POLLIN },
            { .fd = sfd, .events = POLLIN },
            { .fd = m->stop[0], .events = POLLIN },
        };
        int r = poll(pf, 3, it_ms(30000)), i;

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || pf[2].revents != 0)
            return;
        for (i = 0; i < 2; i++) {
            struct secure_session *from = i == 0 ? down : up;
            struct secure_session *to = i == 0 ? up : down;
            GByteArray *b;
            uint8_t *pt = NULL, *ct = NULL;
            size_t ptlen = 0, ctlen = 0;
            bool final = false, ok;

            if (pf[i].revents == 0)
                continue;
            b = relay_read_frame(m, pf[i].fd);
            if (b == NULL)
                return;
            ok = secure_open(from, b->data, b->len, &pt, &ptlen, &final) ==
                CHAT_OK;
            g_byte_array_unref(b);
            if (!ok) {
                m->error = i == 0 ? "a client frame did not open" :
                    "a server frame did not open";
                return;
            }
            if (i == 0) {
                m->client_frames++;
                relay_record(m, pt, ptlen);
            }
            /* The whole plaintext is sealed again as it is: a batch goes
             * on as one batch, its messages intact and in order. */
            ok = secure_seal(to, pt, ptlen, final, &ct, &ctlen) == CHAT_OK &&
                relay_write_frame(pf[1 - i].fd, ct, ctlen);
            g_free(pt);
            g_free(ct);
            if (!ok)
                return;
        }
    }
}

static gpointer
mitm_main(gpointer p)
{
    struct mitm *m = p;
    struct pollfd pf[2] = {
        { .fd = m->lfd, .events = POLLIN },
        { .fd = m->stop[0], .events = POLLIN },
    };
    struct secure_session *down = NULL, *up = NULL;
    cJSON *req = NULL, *reply = NULL, *upreq = NULL;
    uint8_t pk[SECURE_PK_BYTES];
    const char *why = NULL;
    int cfd = -1, sfd = -1;

    if (poll(pf, 2, it_ms(20000)) <= 0 || pf[1].revents != 0) {
        m->error = "no client";
        return NULL;
    }
    cfd = accept(m->lfd, NULL, NULL);
    sfd = socket(m->up.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cfd < 0 || sfd < 0 ||
        connect(sfd, (struct sockaddr *)&m->up, m->uplen) != 0) {
        m->error = "accept or connect failed";
        goto out;
    }
    if (m->mode == MITM_PASS) {
        m->upstream_ok = true;
        relay_bytes(m, cfd, sfd);
        goto out;
    }
    req = relay_read_json(m, cfd);
    if (req == NULL) {
        m->error = "no secure request from the client";
        goto out;
    }
    if (m->mode == MITM_SUBSTITUTE) {
        /* The server's end first: the relay is an ordinary client. */
        if (secure_client_start(&up, &upreq) != CHAT_OK ||
            !relay_write_json(sfd, upreq) ||
            (reply = relay_read_json(m, sfd)) == NULL ||
            secure_client_finish(up, reply, pk, &why) != CHAT_OK) {
            m->error = "no session with the server";
            goto out;
        }
        m->upstream_ok = true;
        cJSON_Delete(reply);
        reply = NULL;
        /* The client's end: the relay is "the server", with its own key. */
        if (secure_server_accept(identity_secret_key(m->id), req, &down,
            &reply, &why) != CHAT_OK || !relay_write_json(cfd, reply)) {
            m->error = "cannot answer the client";
            goto out;
        }
        relay_sessions(m, cfd, sfd, down, up);
        goto out;
    }
    /* The tampering modes: the real handshake, one field altered. */
    if (!relay_write_json(sfd, req) ||
        (reply = relay_read_json(m, sfd)) == NULL) {
        m->error = "no answer from the server";
        goto out;
    }
    m->upstream_ok = true;
    switch (m->mode) {
    case MITM_TAMPER_SIG:
        if (!flip_b64_field(reply, "sig", SECURE_SIG_BYTES))
            m->error = "no sig to alter";
        break;
    case MITM_TAMPER_KX:
        if (!flip_b64_field(reply, "kx", SECURE_KX_BYTES))
            m->error = "no kx to alter";
        break;
    case MITM_TAMPER_IDENTITY: {
        size_t len = sodium_base64_ENCODED_LEN(SECURE_PK_BYTES,
            sodium_base64_VARIANT_ORIGINAL);
        char *enc = g_malloc(len);

        sodium_bin2base64(enc, len, identity_public_key(m->id),
            SECURE_PK_BYTES, sodium_base64_VARIANT_ORIGINAL);
        cJSON_ReplaceItemInObjectCaseSensitive(reply, "identity",
            cJSON_CreateString(enc));
        g_free(enc);
        break;
    }
    default:
        break;
    }
    if (!relay_write_json(cfd, reply))
        goto out;
    relay_bytes(m, cfd, sfd);
out:
    secure_free(down);
    secure_free(up);
    cJSON_Delete(req);
    cJSON_Delete(reply);
    cJSON_Delete(upreq);
    if (cfd >= 0)
        close(cfd);
    if (sfd >= 0)
        close(sfd);
    return NULL;
}

/* Stops the relay (if still running) and waits for it; then its results
 * can be read. */
static void
mitm_finish(struct mitm *m)
{
    if (m->joined)
        return;
    if (write(m->stop[1], "x", 1) < 0) {
        /* the pipe is ours and empty: cannot fail */
    }
    g_thread_join(m->thread);
    m->joined = true;
    if (m->error != NULL)
        print_message("relay: %s\n", m->error);
}

static void
mitm_free(gpointer p)
{
    struct mitm *m = p;

    mitm_finish(m);
    close(m->lfd);
    close(m->stop[0]);
    close(m->stop[1]);
    identity_free(m->id);
    g_free(m->first_plain);
    g_free(m);
}

/* A relay on 127.0.0.1 in front of server s, for one client. */
static struct mitm *
mitm_start(const struct it_server *s, enum mitm_mode mode)
{
    struct mitm *m = g_new0(struct mitm, 1);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t len = sizeof(sin);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *res = NULL;
    const char *host;
    unsigned port;
    char portstr[8];

    server_host_port(s, &host, &port);
    g_snprintf(portstr, sizeof(portstr), "%u", port);
    assert_int_equal(getaddrinfo(host, portstr, &hints, &res), 0);
    memcpy(&m->up, res->ai_addr, res->ai_addrlen);
    m->uplen = res->ai_addrlen;
    freeaddrinfo(res);
    m->mode = mode;
    assert_int_equal(identity_generate(&m->id), CHAT_OK);
    assert_int_equal(pipe(m->stop), 0);
    m->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(m->lfd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(m->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(m->lfd, 4), 0);
    assert_int_equal(getsockname(m->lfd, (struct sockaddr *)&sin, &len), 0);
    m->url = it_own(g_strdup_printf("tcp://127.0.0.1:%u",
        (unsigned)ntohs(sin.sin_port)));
    m->thread = g_thread_new("mitm", mitm_main, m);
    return it_defer(mitm_free, m);
}

static int
connect_via(const struct mitm *m)
{
    int fd = it_connect_url(m->url, 0, 65536);

    assert_true(fd >= 0);
    return fd;
}

/* ------------------------------------------------------------- tests */

/*
 * (a) Trust on first use, then a man in the middle with its own keys: its
 * handshake is valid on its own terms (its signature verifies), but the
 * known-servers file pinned from the honest connection says MISMATCH, and
 * the client closes before it says anything. Without the pin the same relay
 * reads the client's hello in clear: the check is what protects.
 */
static void
test_secure_mitm_substituted_key_is_a_mismatch(void **state)
{
    struct it_server *s = start_or_fail(SERVER_ARGS);
    const char *known = it_own(g_build_filename(it_temp_dir(),
        "known_servers", NULL));
    uint8_t pk[SECURE_PK_BYTES], pk2[SECURE_PK_BYTES];
    struct identity_known_entry old;
    struct identity_error err;
    enum identity_known res;
    const char *host, *fp, *fp2, *nick;
    struct mitm *m;
    char *text;
    unsigned port;
    int fd;

    (void)state;
    server_host_port(s, &host, &port);

    /* first use, honest: remember the server */
    fd = it_connect_plain(s);
    assert_true(fd >= 0);
    assert_int_equal(it_secure_handshake(fd, pk), 0);
    fp = fingerprint_of(pk);
    assert_int_equal(identity_known_lookup(known, host, port, fp, &res, NULL,
        &err), CHAT_OK);
    assert_int_equal(res, IDENTITY_KNOWN_NEW);
    assert_int_equal(identity_known_add(known, host, port, fp, &err),
        CHAT_OK);
    assert_int_equal(identity_known_lookup(known, host, port, fp, &res, NULL,
        &err), CHAT_OK);
    assert_int_equal(res, IDENTITY_KNOWN_MATCH);
    it_hello(fd, it_uniq("honest"));
    it_ping(fd);
    it_close(fd);

    /* the relay answers with its own key: the handshake itself is fine */
    m = mitm_start(s, MITM_SUBSTITUTE);
    fd = connect_via(m);
    assert_int_equal(it_secure_handshake(fd, pk2), 0);
    assert_memory_not_equal(pk, pk2, SECURE_PK_BYTES);
    fp2 = fingerprint_of(pk2);
    assert_string_equal(fp2, identity_fingerprint_str(m->id));
    /* ... the pin is not */
    memset(&old, 0, sizeof(old));
    assert_int_equal(identity_known_lookup(known, host, port, fp2, &res,
        &old, &err), CHAT_OK);
    assert_int_equal(res, IDENTITY_KNOWN_MISMATCH);
    assert_string_equal(old.fingerprint, fp);
    assert_int_equal(old.line, 1);
    text = identity_known_mismatch_text(known, host, port, &old, fp2);
    assert_non_null(text);
    it_own(text);
    assert_non_null(strstr(text, fp));
    assert_non_null(strstr(text, fp2));
    assert_non_null(strstr(text, known));
    /* the client refuses: it closes before its first sealed frame */
    it_close(fd);
    mitm_finish(m);
    assert_true(m->upstream_ok);        /* the relay had the real server */
    assert_int_equal(m->client_frames, 0);
    assert_null(m->first_plain);
    /* and the pin is as it was */
    assert_int_equal(identity_known_lookup(known, host, port, fp, &res, NULL,
        &err), CHAT_OK);
    assert_int_equal(res, IDENTITY_KNOWN_MATCH);

    /* control: a client that skips the check is fooled, and the relay
     * reads its hello (the chat works through it) */
    m = mitm_start(s, MITM_SUBSTITUTE);
    fd = connect_via(m);
    assert_int_equal(it_secure_handshake(fd, pk2), 0);
    nick = it_uniq("fooled");
    it_hello(fd, nick);
    it_ping(fd);
    it_close(fd);
    mitm_finish(m);
    assert_true(m->upstream_ok);
    assert_true(m->client_frames >= 2);
    assert_non_null(m->first_plain);
    assert_non_null(strstr(m->first_plain, "\"hello\""));
    assert_non_null(strstr(m->first_plain, nick));
    stop_ok(s);
}

/*
 * (a) A relay that passes the server's real answer on with one field
 * altered: secure_client_finish() refuses it (CHAT_ECRYPTO) whichever field
 * it was; the same relay passing it untouched is fine.
 */
static void
test_secure_mitm_tampered_reply_fails_finish(void **state)
{
    static const struct {
        enum mitm_mode mode;
        const char *name;
        int rc;
    } rows[] = {
        { MITM_PASS, "untouched", CHAT_OK },
        { MITM_TAMPER_SIG, "sig", CHAT_ECRYPTO },
        { MITM_TAMPER_IDENTITY, "identity", CHAT_ECRYPTO },
        { MITM_TAMPER_KX, "kx", CHAT_ECRYPTO },
    };
    struct it_server *s = start_or_fail(SERVER_ARGS);
    size_t i;

    (void)state;
    for (i = 0; i < G_N_ELEMENTS(rows); i++) {
        struct mitm *m = mitm_start(s, rows[i].mode);
        struct secure_session *sess = NULL;
        uint8_t pk[SECURE_PK_BYTES];
        const char *why = NULL;
        cJSON *req = NULL, *reply;
        enum it_rx rx;
        char *txt;
        int fd = connect_via(m), rc;

        assert_int_equal(secure_client_start(&sess, &req), CHAT_OK);
        txt = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        assert_int_equal(it_send_frame(fd, txt, strlen(txt)), 0);
        cJSON_free(txt);
        reply = it_recv_msg(fd, it_ms(5000), &rx);
        if (reply == NULL) {
            secure_free(sess);
            fail_msg("%s: no reply through the relay: %s", rows[i].name,
                it_rx_name(rx));
        }
        it_keep(reply);
        rc = secure_client_finish(sess, reply, pk, &why);
        secure_free(sess);
        if (rc != rows[i].rc)
            fail_msg("reply with %s altered: secure_client_finish gives %s "
                "(%s), expected %s", rows[i].name, chat_strerror(rc),
                why != NULL ? why : "no reason", chat_strerror(rows[i].rc));
        if (rc != CHAT_OK)
            assert_non_null(why);
        it_close(fd);
        mitm_finish(m);
        assert_true(m->upstream_ok);
    }
    stop_ok(s);
}

/*
 * (b) One flipped bit in a sealed frame ends that session only: a sealed
 * secure_failed, TAG_FINAL, close; the frame's content reaches nobody, and a
 * secure and a plain client in the same room chat on.
 */
static void
test_secure_tampered_frame_closes_only_that_session(void **state)
{
    struct room3 r;
    GByteArray *f;
    char *say;

    (void)state;
    room3_setup(&r, shared);
    it_say(r.fd, r.room, "before");
    expect_message(r.o, r.room, r.fdnick, "before");
    expect_message(r.sp, r.room, r.fdnick, "before");

    say = g_strdup_printf("{\"type\":\"say\",\"room\":\"%s\",\"text\":"
        "\"tampered\"}", r.room);
    f = it_seal_frame(r.fd, say, strlen(say), false);
    g_free(say);
    assert_non_null(f);
    /* header 4, encrypted tag 1, then ciphertext: flip a bit in it */
    f->data[4 + 1 + 3] ^= 0x20;
    assert_int_equal(it_send_wire(r.fd, f->data, f->len), 0);
    expect_secure_failed(r.fd);
    room3_check_rest(&r, "secure session failed");
}

/* Seals the next ping {token} of fd's stream, without sending it. */
static GByteArray *
sealed_ping(int fd, const char *token)
{
    char *txt = g_strdup_printf("{\"type\":\"ping\",\"token\":\"%s\"}", token);
    GByteArray *f = it_seal_frame(fd, txt, strlen(txt), false);

    g_free(txt);
    assert_non_null(f);
    return f;
}

/* (c) A frame sent twice: the copy does not open. */
static void
test_secure_replayed_frame_fails(void **state)
{
    struct room3 r;
    GByteArray *f;

    (void)state;
    room3_setup(&r, shared);
    f = sealed_ping(r.fd, "once");
    assert_int_equal(it_send_wire(r.fd, f->data, f->len), 0);
    assert_string_equal(it_str(it_expect_type(r.fd, "pong"), "token"),
        "once");
    assert_int_equal(it_send_wire(r.fd, f->data, f->len), 0);
    expect_secure_failed(r.fd);
    room3_check_rest(&r, "secure session failed");
}

/* (c) Two frames swapped: the first to arrive does not open, so neither is
 * answered. */
static void
test_secure_reordered_frames_fail(void **state)
{
    struct room3 r;
    GByteArray *f1, *f2;

    (void)state;
    room3_setup(&r, shared);
    f1 = sealed_ping(r.fd, "first");
    f2 = sealed_ping(r.fd, "second");
    assert_int_equal(it_send_wire(r.fd, f2->data, f2->len), 0);
    assert_int_equal(it_send_wire(r.fd, f1->data, f1->len), 0);
    expect_secure_failed(r.fd);     /* no pong before it */
    room3_check_rest(&r, "secure session failed");
}

/* (c) A frame left out: the next one does not open. */
static void
test_secure_dropped_frame_fails(void **state)
{
    struct room3 r;
    GByteArray *f2;

    (void)state;
    room3_setup(&r, shared);
    (void)sealed_ping(r.fd, "dropped");
    f2 = sealed_ping(r.fd, "after the gap");
    assert_int_equal(it_send_wire(r.fd, f2->data, f2->len), 0);
    expect_secure_failed(r.fd);
    room3_check_rest(&r, "secure session failed");
}

/* (c) A frame sealed for another session, spliced in, does not open; for
 * that other session it is a frame that never arrived, so its next one does
 * not open either. */
static void
test_secure_foreign_frame_fails(void **state)
{
    struct room3 r;
    GByteArray *f;
    int other;

    (void)state;
    room3_setup(&r, shared);
    other = register_as(shared, true, it_uniq("other"));
    f = sealed_ping(other, "not yours");
    assert_int_equal(it_send_wire(r.fd, f->data, f->len), 0);
    expect_secure_failed(r.fd);
    room3_check_rest(&r, "secure session failed");
    assert_int_equal(it_send_json(other, "{\"type\":\"ping\"}"), 0);
    expect_secure_failed(other);
}

/* (c) Plain JSON inside a secure session. */
static void
test_secure_plain_frame_inside_session_fails(void **state)
{
    static const char ping[] = "{\"type\":\"ping\",\"token\":\"plain\"}";
    struct room3 r;
    uint8_t h[4] = { 0, 0, 0, (uint8_t)(sizeof(ping) - 1) };

    (void)state;
    room3_setup(&r, shared);
    assert_int_equal(it_send_wire(r.fd, h, 4), 0);
    assert_int_equal(it_send_wire(r.fd, ping, sizeof(ping) - 1), 0);
    expect_secure_failed(r.fd);
    room3_check_rest(&r, "secure session failed");
}

/*
 * (d) --secure=required: a plaintext hello gets encryption_required and a
 * close; a secure client is welcome and told the feature.
 */
static void
test_secure_required_refuses_plaintext(void **state)
{
    struct it_server *s = start_or_fail("--secure=required " SERVER_ARGS);
    const cJSON *w;
    int p, a;

    (void)state;
    a = connect_secure(s);
    w = it_hello(a, it_uniq("enc"));
    assert_true(it_array_has(it_get(w, "features"), "secure", false));
    p = it_connect_plain(s);
    assert_true(p >= 0);
    assert_int_equal(it_send_json(p, "{\"type\":\"hello\",\"version\":1,"
        "\"nick\":\"%s\",\"id\":4}", it_uniq("plain")), 0);
    assert_int_equal(it_int(it_expect_error(p, "encryption_required"), "id"),
        4);
    it_expect_closed(p);
    it_ping(a);
    stop_ok(s);
}

/*
 * (d) --secure=off: `secure` is an unknown type (plain, the session goes
 * on), welcome does not list the feature, and no key is made.
 */
static void
test_secure_off_is_unknown_type(void **state)
{
    struct it_server *s = start_or_fail("--secure=off");
    const cJSON *w;
    char *key;
    int fd;

    (void)state;
    fd = it_connect_plain(s);
    assert_true(fd >= 0);
    assert_int_equal(it_secure_handshake(fd, NULL), 1);
    it_expect_error(fd, "unknown_type");
    assert_false(it_is_secure(fd));
    w = it_hello(fd, it_uniq("off"));
    assert_false(it_array_has(it_get(w, "features"), "secure", false));
    it_ping(fd);
    key = g_build_filename(it_server_dir(s), "sockchat", "sockchatd.key",
        NULL);
    it_own(key);
    assert_false(g_file_test(key, G_FILE_TEST_EXISTS));
    stop_ok(s);
}

/* A plain `secure` request as JSON text (a fresh key; harness-owned). */
static const char *
secure_request_text(void)
{
    struct secure_session *sess = NULL;
    cJSON *req = NULL;
    char *txt, *copy;

    assert_int_equal(secure_client_start(&sess, &req), CHAT_OK);
    secure_free(sess);
    txt = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    copy = g_strdup(txt);
    cJSON_free(txt);
    return it_own(copy);
}

/*
 * (e) `secure` anywhere but as the first frame: secure_failed and a close,
 * plain before a session (after a ping, after a bad frame, after hello) and
 * sealed inside one.
 */
static void
test_secure_not_first_frame_fails(void **state)
{
    const char *room = it_uniq("#late");
    const char *req = secure_request_text();
    const char *ln = it_uniq("late");
    int fd, o;

    (void)state;
    /* after a ping */
    fd = it_connect_plain(shared);
    assert_true(fd >= 0);
    it_ping(fd);
    assert_int_equal(it_send_frame(fd, req, strlen(req)), 0);
    it_expect_error(fd, "secure_failed");
    it_expect_closed(fd);
    /* after a frame that was not even JSON */
    fd = it_connect_plain(shared);
    assert_true(fd >= 0);
    assert_int_equal(it_send_json(fd, "not json"), 0);
    it_expect_error(fd, "bad_json");
    assert_int_equal(it_send_frame(fd, req, strlen(req)), 0);
    it_expect_error(fd, "secure_failed");
    it_expect_closed(fd);
    /* registered, in a room: the others see it go */
    o = register_as(shared, false, it_uniq("lo"));
    it_join(o, room);
    fd = register_as(shared, false, ln);
    it_join(fd, room);
    it_expect_joined(o, room, ln);
    assert_int_equal(it_send_frame(fd, req, strlen(req)), 0);
    it_expect_error(fd, "secure_failed");
    it_expect_closed(fd);
    expect_quit(o, ln, "secure session failed");
    /* sealed, inside a secure session */
    fd = connect_secure(shared);
    assert_int_equal(it_send_frame(fd, req, strlen(req)), 0);
    expect_secure_failed(fd);
    it_ping(o);
}

/* A JSON object of exactly n bytes: head, then a "pad" string to fill. */
static const char *
padded(const char *head, size_t n)
{
    size_t base = strlen(head) + strlen(",\"pad\":\"\"}");
    char *pad;

    assert_true(n > base);
    pad = g_strnfill(n - base, 'p');
    return it_own(g_strdup_printf("%s,\"pad\":\"%s\"}", head, it_own(pad)));
}

/*
 * max_frame counts the sealed bytes (doc/SECURE.md 5): with --max-frame
 * 1024 the first frame takes 1024 - 41 bytes of plaintext and no more,
 * every later one 1024 - 17; one byte over is frame_too_large (sealed), the
 * server's TAG_FINAL, a close.
 */
static void
test_secure_max_frame_counts_sealed_bytes(void **state)
{
    struct it_server *s = start_or_fail("--max-frame 1024 " SERVER_ARGS);
    const char *hello = it_own(g_strdup_printf("{\"type\":\"hello\","
        "\"version\":1,\"nick\":\"%s\"", it_uniq("mf")));
    const char *m;
    int fd;

    (void)state;
    /* first frame: 983 fits */
    fd = it_connect_plain(s);
    assert_int_equal(it_secure_handshake(fd, NULL), 0);
    m = padded(hello, 1024 - 41);
    assert_int_equal(it_send_frame(fd, m, strlen(m)), 0);
    it_expect_type(fd, "welcome");
    /* later frames: 1007 fits, 1008 does not */
    m = padded("{\"type\":\"ping\",\"token\":\"big\"", 1024 - 17);
    assert_int_equal(it_send_frame(fd, m, strlen(m)), 0);
    assert_string_equal(it_str(it_expect_type(fd, "pong"), "token"), "big");
    m = padded("{\"type\":\"ping\",\"token\":\"over\"", 1024 - 16);
    assert_int_equal(it_send_frame(fd, m, strlen(m)), 0);
    it_expect_error(fd, "frame_too_large");
    it_expect_closed(fd);
    /* first frame: 984 does not fit */
    fd = it_connect_plain(s);
    assert_int_equal(it_secure_handshake(fd, NULL), 0);
    m = padded(hello, 1024 - 40);
    assert_int_equal(it_send_frame(fd, m, strlen(m)), 0);
    it_expect_error(fd, "frame_too_large");
    it_expect_closed(fd);
    stop_ok(s);
}

/*
 * Handshake requests the server must refuse (doc/SECURE.md 3.3): a plain
 * secure_failed and a close; a good one gets its id back.
 */
static void
test_secure_bad_requests(void **state)
{
    uint8_t kx[SECURE_KX_BYTES], zero[SECURE_KX_BYTES] = { 0 };
    const char *good, *bad;
    const char *rows[6];
    const cJSON *r;
    size_t i;
    int fd;

    (void)state;
    randombytes_buf(kx, sizeof(kx));
    good = b64(kx, sizeof(kx));
    bad = it_own(g_strndup(good, strlen(good) - 1));
    rows[0] = it_own(g_strdup_printf("{\"type\":\"secure\",\"v\":2,"
        "\"kx\":\"%s\"}", good));
    rows[1] = "{\"type\":\"secure\",\"v\":1}";
    rows[2] = it_own(g_strdup_printf("{\"type\":\"secure\",\"v\":1,"
        "\"kx\":\"%s\"}", bad));
    rows[3] = it_own(g_strdup_printf("{\"type\":\"secure\",\"v\":1,"
        "\"kx\":\"%s\"}", b64(kx, 31)));
    rows[4] = it_own(g_strdup_printf("{\"type\":\"secure\",\"v\":1,"
        "\"kx\":\"%s\"}", b64(zero, sizeof(zero))));
    rows[5] = it_own(g_strdup_printf("{\"type\":\"secure\",\"v\":\"1\","
        "\"kx\":\"%s\"}", good));
    for (i = 0; i < G_N_ELEMENTS(rows); i++) {
        enum it_rx why;
        cJSON *x;

        fd = it_connect_plain(shared);
        assert_true(fd >= 0);
        assert_int_equal(it_send_json(fd, "%s", rows[i]), 0);
        x = it_recv_msg(fd, it_ms(5000), &why);
        if (x == NULL)
            fail_msg("%s: got %s", rows[i], it_rx_name(why));
        it_keep(x);
        if (strcmp(it_str(x, "type"), "error") != 0 ||
            strcmp(it_str(x, "code"), "secure_failed") != 0)
            fail_msg("%s: got %s, expected secure_failed", rows[i],
                it_json(x));
        it_expect_closed(fd);
    }
    /* the answer carries the request's id */
    fd = it_connect_plain(shared);
    assert_true(fd >= 0);
    assert_int_equal(it_send_json(fd, "{\"type\":\"secure\",\"v\":1,"
        "\"kx\":\"%s\",\"id\":9}", good), 0);
    r = it_expect_type(fd, "secure");
    assert_int_equal(it_int(r, "id"), 9);
    assert_int_equal(it_int(r, "v"), 1);
}

/*
 * (f) --reserve-nicks: the first key to use a nick owns it; another key, a
 * secure session without a key and a plain one get nick_reserved (and may
 * go on with another nick); a rename is checked too; the owner comes back;
 * all of it survives a restart; who lists the verified members.
 */
static void
test_secure_reserved_nicks(void **state)
{
    const char *dir = it_temp_dir();
    const char *nicks = it_own(g_build_filename(dir, "reserved-nicks", NULL));
    const char *key = it_own(g_build_filename(dir, "sockchatd.key", NULL));
    const char *args = it_own(g_strdup_printf("--reserve-nicks --nicks-file "
        "%s --identity %s", nicks, key));
    const char *owner = it_uniq("Owner"), *room = it_uniq("#res");
    struct identity *k1 = new_identity(), *k2 = new_identity();
    struct identity_nicks *st = NULL;
    struct identity_error err;
    const char *fp1 = identity_fingerprint_str(k1);
    struct it_server *s = start_or_fail(args);
    const cJSON *m;
    const char *pn = it_uniq("plainone"), *bn = it_uniq("keytwo");
    int a, b, p, u, round;

    (void)state;
    /* the owner's first use reserves the nick */
    a = connect_secure(s);
    hello_signed(a, owner, k1, NULL);
    p = register_as(s, false, pn);
    it_join(a, room);
    it_join(p, room);
    it_expect_joined(a, room, pn);
    assert_int_equal(it_send_json(p, "{\"type\":\"who\",\"room\":\"%s\"}",
        room), 0);
    m = it_expect_type(p, "members");
    assert_true(it_array_has(it_get(m, "members"), owner, false));
    assert_true(it_array_has(it_get(m, "members"), pn, false));
    assert_true(it_array_has(it_get(m, "verified"), owner, false));
    assert_false(it_array_has(it_get(m, "verified"), pn, false));
    assert_int_equal(cJSON_GetArraySize(it_get(m, "verified")), 1);
    /* written down */
    assert_int_equal(identity_nicks_load(nicks, 1000, &st, &err), CHAT_OK);
    assert_non_null(identity_nicks_lookup(st, owner));
    assert_string_equal(identity_nicks_lookup(st, owner), fp1);
    identity_nicks_free(st);
    assert_int_equal(it_send_json(a, "{\"type\":\"quit\"}"), 0);
    it_expect_type(a, "bye");
    it_expect_closed(a);
    expect_quit(p, owner, NULL);

    for (round = 0; round < 2; round++) {
        if (round == 1) {
            /* the same store after a restart */
            stop_ok(s);
            s = start_or_fail(args);
        }
        /* another key: refused, in any case; the session goes on */
        b = connect_secure(s);
        hello_signed(b, owner, k2, "nick_reserved");
        hello_signed(b, it_own(g_ascii_strup(owner, -1)), k2,
            "nick_reserved");
        hello_signed(b, bn, k2, NULL);
        assert_int_equal(it_send_json(b, "{\"type\":\"nick\",\"nick\":\"%s\","
            "\"id\":2}", owner), 0);
        assert_int_equal(it_int(it_expect_error(b, "nick_reserved"), "id"),
            2);
        it_ping(b);
        /* a secure session without a key */
        u = connect_secure(s);
        assert_int_equal(it_send_json(u, "{\"type\":\"hello\",\"version\":1,"
            "\"nick\":\"%s\"}", owner), 0);
        it_expect_error(u, "nick_reserved");
        it_hello(u, it_uniq("nokey"));
        /* plain */
        p = it_connect_plain(s);
        assert_true(p >= 0);
        assert_int_equal(it_send_json(p, "{\"type\":\"hello\",\"version\":1,"
            "\"nick\":\"%s\"}", owner), 0);
        it_expect_error(p, "nick_reserved");
        it_hello(p, it_uniq("plaintwo"));
        assert_int_equal(it_send_json(p, "{\"type\":\"nick\",\"nick\":\"%s\"}",
            owner), 0);
        it_expect_error(p, "nick_reserved");
        it_ping(p);
        /* the owner is welcome back, and owns the nick on a rename too */
        a = connect_secure(s);
        hello_signed(a, it_uniq("elsewhere"), k1, NULL);
        assert_int_equal(it_send_json(a, "{\"type\":\"nick\",\"nick\":\"%s\"}",
            owner), 0);
        m = it_expect_type(a, "renamed");
        assert_string_equal(it_str(m, "new"), owner);
        it_set_nick(a, owner);
        it_ping(a);
        it_ping(b);
        it_ping(u);
        it_close(a);
        it_close(b);
        it_close(u);
        it_close(p);
    }
    stop_ok(s);
}

/*
 * (f) The proof is checked: a hello whose identity is another key than the
 * one that signed is secure_failed and a close; identity fields in a plain
 * session are bad_field (doc/SECURE.md 8).
 */
static void
test_secure_hello_identity_is_checked(void **state)
{
    struct identity *k1 = new_identity(), *k2 = new_identity();
    cJSON *h;
    char *txt;
    int fd;

    (void)state;
    /* signed by k2, claiming k1 */
    fd = connect_secure(shared);
    h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "type", "hello");
    cJSON_AddNumberToObject(h, "version", 1);
    cJSON_AddStringToObject(h, "nick", it_uniq("impostor"));
    assert_int_equal(secure_client_sign_hello(it_secure_session(fd),
        identity_secret_key(k2), h), CHAT_OK);
    cJSON_ReplaceItemInObjectCaseSensitive(h, "identity",
        cJSON_CreateString(b64(identity_public_key(k1), SECURE_PK_BYTES)));
    txt = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    assert_int_equal(it_send_frame(fd, txt, strlen(txt)), 0);
    cJSON_free(txt);
    expect_secure_failed(fd);
}

/*
 * (f) doc/SECURE.md 8: identity fields in a plain session are bad_field
 * ("an identity can only be proven in a secure session"), not ignored.
 */
static void
test_secure_plain_hello_with_identity_is_bad_field(void **state)
{
    struct identity *k1 = new_identity();
    int fd;

    (void)state;
    fd = it_connect_plain(shared);
    assert_true(fd >= 0);
    assert_int_equal(it_send_json(fd, "{\"type\":\"hello\",\"version\":1,"
        "\"nick\":\"%s\",\"identity\":\"%s\",\"sig\":\"%s\"}",
        it_uniq("plainproof"), b64(identity_public_key(k1), SECURE_PK_BYTES),
        b64(identity_secret_key(k1), SECURE_SIG_BYTES)), 0);
    it_expect_error(fd, "bad_field");
    it_ping(fd);
}

/* Whether s is "SHA256:" and 16 groups of 4 lower-case hex digits. */
static bool
fingerprint_form(const char *s)
{
    return g_regex_match_simple("^SHA256:[0-9a-f]{4}( [0-9a-f]{4}){15}$", s,
        0, 0);
}

/*
 * (g) The key file: made 0600 (directory 0700) by --fingerprint, which
 * prints "SHA256:" and 16 groups, the same every time and the same as the
 * key the server proves; a key file others may read stops the server with
 * exit 1 and a message naming the file, and is left as it was.
 */
static void
test_secure_key_file_mode_and_fingerprint(void **state)
{
    const char *dir = it_own(g_build_filename(it_temp_dir(), "keys", NULL));
    const char *key = it_own(g_build_filename(dir, "sockchatd.key", NULL));
    const char *fp_args[] = { "--identity", key, "--fingerprint", NULL };
    const char *run_args[] = { "--listen", "tcp://127.0.0.1:0", "--identity",
        key, NULL };
    static const unsigned modes[] = { 0644, 0640, 0604, 0660 };
    const char *out, *err, *fp, *sarg;
    char *before = NULL, *after = NULL;
    uint8_t pk[SECURE_PK_BYTES];
    struct it_server *s;
    struct stat st;
    size_t i;
    int fd;

    (void)state;
    assert_int_equal(it_server_run(fp_args, 10000, &out, &err), 0);
    fp = it_own(g_strchomp(g_strdup(out)));
    if (!fingerprint_form(fp))
        fail_msg("--fingerprint printed \"%s\"", out);
    assert_true(identity_fingerprint_valid(fp));
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(it_server_run(fp_args, 10000, &out, &err), 0);
    assert_string_equal(it_own(g_strchomp(g_strdup(out))), fp);

    /* the key the server proves is that one */
    sarg = it_own(g_strdup_printf("--identity %s", key));
    s = start_or_fail(sarg);
    fd = it_connect_plain(s);
    assert_true(fd >= 0);
    assert_int_equal(it_secure_handshake(fd, pk), 0);
    assert_string_equal(fingerprint_of(pk), fp);
    stop_ok(s);

    assert_true(g_file_get_contents(key, &before, NULL, NULL));
    it_own(before);
    for (i = 0; i < G_N_ELEMENTS(modes); i++) {
        assert_int_equal(chmod(key, modes[i]), 0);
        if (it_server_run(run_args, 10000, &out, &err) != 1)
            fail_msg("mode %04o: sockchatd did not exit 1; stderr: %s",
                modes[i], err);
        if (strstr(err, key) == NULL)
            fail_msg("mode %04o: the message does not name %s: %s",
                modes[i], key, err);
        assert_int_equal(it_server_run(fp_args, 10000, &out, &err), 1);
        assert_null(strstr(out, "SHA256:"));
        assert_int_equal(stat(key, &st), 0);
        assert_int_equal(st.st_mode & 0777, modes[i]);
    }
    assert_true(g_file_get_contents(key, &after, NULL, NULL));
    it_own(after);
    assert_string_equal(before, after);
}

/*
 * (h) The client's TAG_FINAL: a sealed final quit gets bye and a close (the
 * others see the quit with its reason); any other final message is answered
 * and then the session ends ("connection closed"), as does an empty one.
 */
static void
test_secure_client_final(void **state)
{
    static const struct {
        const char *json;       /* NULL: an empty final frame */
        const char *reply;      /* expected reply type, NULL: none */
        const char *reason;
    } rows[] = {
        { "{\"type\":\"quit\",\"reason\":\"final words\"}", "bye",
          "final words" },
        { "{\"type\":\"ping\",\"token\":\"last\"}", "pong",
          "connection closed" },
        { NULL, NULL, "connection closed" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < G_N_ELEMENTS(rows); i++) {
        struct room3 r;

        room3_setup(&r, shared);
        if (rows[i].json != NULL) {
            assert_int_equal(it_send_json_final(r.fd, "%s", rows[i].json), 0);
        } else {
            GByteArray *f = it_seal_frame(r.fd, "", 0, true);

            assert_non_null(f);
            assert_int_equal(it_send_wire(r.fd, f->data, f->len), 0);
        }
        if (rows[i].reply != NULL)
            it_expect_type(r.fd, rows[i].reply);
        it_expect_closed(r.fd);
        assert_true(it_got_final(r.fd));
        room3_check_rest(&r, rows[i].reason);
        it_test_cleanup(shared);
    }
}

/* ------------------------------------------------------------- main */

static int
group_setup(void **state)
{
    (void)state;
    shared = it_server_start_str(SERVER_ARGS);
    return shared != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
    (void)state;
    it_test_cleanup(NULL);
    shared = NULL;
    return 0;
}

static int
cleanup(void **state)
{
    (void)state;
    it_test_cleanup(shared);
    return 0;
}

static void
test_secure_shared_server_exits_cleanly(void **state)
{
    int st;

    (void)state;
    it_test_cleanup(shared);
    st = it_server_stop(shared);
    shared = NULL;
    assert_int_equal(st, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_secure_mitm_substituted_key_is_a_mismatch, cleanup),
        cmocka_unit_test_teardown(
            test_secure_mitm_tampered_reply_fails_finish, cleanup),
        cmocka_unit_test_teardown(
            test_secure_tampered_frame_closes_only_that_session, cleanup),
        cmocka_unit_test_teardown(test_secure_replayed_frame_fails, cleanup),
        cmocka_unit_test_teardown(test_secure_reordered_frames_fail, cleanup),
        cmocka_unit_test_teardown(test_secure_dropped_frame_fails, cleanup),
        cmocka_unit_test_teardown(test_secure_foreign_frame_fails, cleanup),
        cmocka_unit_test_teardown(test_secure_plain_frame_inside_session_fails,
            cleanup),
        cmocka_unit_test_teardown(test_secure_required_refuses_plaintext,
            cleanup),
        cmocka_unit_test_teardown(test_secure_off_is_unknown_type, cleanup),
        cmocka_unit_test_teardown(test_secure_not_first_frame_fails, cleanup),
        cmocka_unit_test_teardown(test_secure_max_frame_counts_sealed_bytes,
            cleanup),
        cmocka_unit_test_teardown(test_secure_bad_requests, cleanup),
        cmocka_unit_test_teardown(test_secure_reserved_nicks, cleanup),
        cmocka_unit_test_teardown(test_secure_hello_identity_is_checked,
            cleanup),
        cmocka_unit_test_teardown(
            test_secure_plain_hello_with_identity_is_bad_field, cleanup),
        cmocka_unit_test_teardown(test_secure_key_file_mode_and_fingerprint,
            cleanup),
        cmocka_unit_test_teardown(test_secure_client_final, cleanup),
        cmocka_unit_test_teardown(test_secure_shared_server_exits_cleanly,
            cleanup),
    };
    int rc;

    it_init();
    /* every connection is plain until a test asks for the handshake */
    it_set_secure_default(false);
    rc = cmocka_run_group_tests_name("it_secure", tests, group_setup,
        group_teardown);
    if (it_bad_stops() != 0) {
        fprintf(stderr, "it_secure: %d server run(s) ended with a non-zero "
            "status\n", it_bad_stops());
        if (rc == 0)
            rc = 1;
    }
    return rc != 0 ? 1 : 0;
}
