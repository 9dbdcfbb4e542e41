/* identity.c - long-term keys, known servers, reserved nicks (identity.h). */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <glib.h>

#include "err.h"
#include "message.h"

#define KEY_MAGIC "sockchat-ed25519-v1"
#define KEY_FILE_MAX 4096
#define B64_VARIANT sodium_base64_VARIANT_ORIGINAL
#define SEED_B64_LEN                                                           \
    (sodium_base64_ENCODED_LEN(crypto_sign_SEEDBYTES, B64_VARIANT) - 1)

struct identity {
    uint8_t pk[IDENTITY_PK_BYTES];
    char fp[IDENTITY_FP_SIZE];
    uint8_t *sk; /* sodium_malloc(IDENTITY_SK_BYTES) */
};

struct identity_nicks {
    char *path;       /* NULL: memory only */
    size_t max;       /* most reservations */
    GHashTable *nick; /* folded nick -> fingerprint, both g_malloc'd */
};

static void set_err(struct identity_error *err, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static void
set_err(struct identity_error *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, ap);
    va_end(ap);
}

/* set_err() for a failed system call: keeps errno for the caller. */
static int
sys_err(struct identity_error *err, const char *what, const char *path)
{
    int e = errno;

    set_err(err, "%s %s: %s", what, path, g_strerror(e));
    errno = e;
    return CHAT_ESYS;
}

/* ---- files ---------------------------------------------------------- */

static int
write_all(int fd, const char *p, size_t n)
{
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read all of fd into buf (cap bytes). 0 and *len, or -1 with errno
 * (EFBIG when the file holds more than cap bytes). */
static int
read_all(int fd, char *buf, size_t cap, size_t *len)
{
    size_t got = 0;
    ssize_t r;
    char extra;

    *len = 0;
    for (;;) {
        r = got < cap ? read(fd, buf + got, cap - got) : read(fd, &extra, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        if (got == cap) {
            errno = EFBIG;
            return -1;
        }
        got += (size_t)r;
    }
    *len = got;
    return 0;
}

/* Whole text file at path, g_malloc'd and NUL-terminated, at most cap bytes.
 * A missing file is CHAT_OK with *data NULL. */
static int
read_text(const char *path, size_t cap, char **data, size_t *len,
          struct identity_error *err)
{
    char *buf = NULL;
    int fd = -1, rc;

    *data = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return CHAT_OK;
        return sys_err(err, "cannot open", path);
    }
    buf = g_malloc(cap + 1);
    if (read_all(fd, buf, cap, len) < 0) {
        if (errno == EFBIG) {
            set_err(err, "%s is larger than %zu bytes", path, cap);
            rc = CHAT_ETOOBIG;
        } else {
            rc = sys_err(err, "cannot read", path);
        }
        g_free(buf);
        close(fd);
        return rc;
    }
    close(fd);
    buf[*len] = '\0';
    if (memchr(buf, '\0', *len) != NULL) {
        set_err(err, "%s holds a NUL byte", path);
        g_free(buf);
        return CHAT_EPROTO;
    }
    *data = buf;
    return CHAT_OK;
}

/* Make the directory of path (0700) if it is missing. */
static int
make_parent(const char *path, struct identity_error *err)
{
    char *dir = g_path_get_dirname(path);
    int rc = CHAT_OK;

    if (g_mkdir_with_parents(dir, 0700) != 0)
        rc = sys_err(err, "cannot create directory", dir);
    g_free(dir);
    return rc;
}

/* Best effort: make a rename or link in path's directory durable. */
static void
sync_parent(const char *path)
{
    char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    g_free(dir);
}

/* A new file "<path>.tmp.XXXXXX", mode 0600, holding data, synced.
 * CHAT_OK and *tmp_out (g_free it; the file exists). */
static int
write_temp(const char *path, const char *data, size_t len, char **tmp_out,
           struct identity_error *err)
{
    char *tmp = g_strdup_printf("%s.tmp.XXXXXX", path);
    int fd, rc;

    *tmp_out = NULL;
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = sys_err(err, "cannot create a file beside", path);
        g_free(tmp);
        return rc;
    }
    /* mkostemp makes 0600 already; say so in case a libc does not. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 ||
        fsync(fd) != 0) {
        rc = sys_err(err, "cannot write", tmp);
        close(fd);
        unlink(tmp);
        g_free(tmp);
        return rc;
    }
    if (close(fd) != 0) {
        rc = sys_err(err, "cannot write", tmp);
        unlink(tmp);
        g_free(tmp);
        return rc;
    }
    *tmp_out = tmp;
    return CHAT_OK;
}

/* Replace path with data atomically: readers see the old file or the new
 * one, never a mix, even if we crash. */
static int
write_atomic(const char *path, const char *data, size_t len,
             struct identity_error *err)
{
    char *tmp = NULL;
    int rc;

    rc = make_parent(path, err);
    if (rc != CHAT_OK)
        return rc;
    rc = write_temp(path, data, len, &tmp, err);
    if (rc != CHAT_OK)
        return rc;
    if (rename(tmp, path) != 0) {
        rc = sys_err(err, "cannot replace", path);
        unlink(tmp);
        g_free(tmp);
        return rc;
    }
    g_free(tmp);
    sync_parent(path);
    return CHAT_OK;
}

/* One line of text: [p, p + len) without its '\n' (and without a '\r'
 * before it). next is where the following line starts. */
struct line {
    const char *p;
    size_t len;
    const char *next; /* start of the next line, or NULL at the end */
    unsigned no;      /* 1-based */
};

/* Step to the next line of text; false at the end. Start with l zeroed. */
static bool
next_line(const char *text, struct line *l)
{
    const char *p = l->no == 0 ? text : l->next;
    const char *nl;

    if (p == NULL || *p == '\0')
        return false;
    nl = strchr(p, '\n');
    l->p = p;
    l->len = nl != NULL ? (size_t)(nl - p) : strlen(p);
    l->next = nl != NULL ? nl + 1 : NULL;
    l->no++;
    if (l->len > 0 && p[l->len - 1] == '\r')
        l->len--;
    return true;
}

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A blank line or a '#' comment. */
static bool
line_is_comment(const struct line *l)
{
    size_t i = 0;

    while (i < l->len && is_blank(l->p[i]))
        i++;
    return i == l->len || l->p[i] == '#';
}

/* Cut the line into a first word, a second word (when words == 3) and the
 * rest, trimmed; copies into the caller's buffers with their sizes. */
static bool
split_line(const struct line *l, char *w1, size_t w1_size, char *w2,
           size_t w2_size, char *rest, size_t rest_size)
{
    const char *p = l->p, *end = l->p + l->len, *s;
    size_t n;

    while (p < end && is_blank(*p))
        p++;
    s = p;
    while (p < end && !is_blank(*p))
        p++;
    n = (size_t)(p - s);
    if (n == 0 || n >= w1_size)
        return false;
    memcpy(w1, s, n);
    w1[n] = '\0';
    if (w2 != NULL) {
        while (p < end && is_blank(*p))
            p++;
        s = p;
        while (p < end && !is_blank(*p))
            p++;
        n = (size_t)(p - s);
        if (n == 0 || n >= w2_size)
            return false;
        memcpy(w2, s, n);
        w2[n] = '\0';
    }
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    n = (size_t)(end - p);
    if (n == 0 || n >= rest_size)
        return false;
    memcpy(rest, p, n);
    rest[n] = '\0';
    return true;
}

/* ---- fingerprints --------------------------------------------------- */

void
identity_fingerprint(const uint8_t pk[IDENTITY_PK_BYTES],
                     char out[IDENTITY_FP_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t h[crypto_hash_sha256_BYTES];
    char *p = out;
    size_t i;

    crypto_hash_sha256(h, pk, IDENTITY_PK_BYTES);
    memcpy(p, "SHA256:", 7);
    p += 7;
    for (i = 0; i < sizeof(h); i++) {
        if (i > 0 && i % 2 == 0)
            *p++ = ' ';
        *p++ = hex[h[i] >> 4];
        *p++ = hex[h[i] & 0x0f];
    }
    *p = '\0';
}

bool
identity_fingerprint_valid(const char *s)
{
    size_t i;

    if (s == NULL || strncmp(s, "SHA256:", 7) != 0 ||
        strlen(s) != IDENTITY_FP_LEN)
        return false;
    /* After the prefix: groups of 4 hex digits, one space between. */
    for (i = 7; i < IDENTITY_FP_LEN; i++) {
        char c = s[i];

        if ((i - 7) % 5 == 4) {
            if (c != ' ')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* ---- own key -------------------------------------------------------- */

static struct identity *
identity_from_seed(const uint8_t seed[crypto_sign_SEEDBYTES])
{
    struct identity *id = g_new0(struct identity, 1);

    id->sk = sodium_malloc(IDENTITY_SK_BYTES);
    if (id->sk == NULL) {
        g_free(id);
        errno = ENOMEM;
        return NULL;
    }
    crypto_sign_seed_keypair(id->pk, id->sk, seed);
    identity_fingerprint(id->pk, id->fp);
    return id;
}

int
identity_generate(struct identity **out)
{
    uint8_t seed[crypto_sign_SEEDBYTES];

    randombytes_buf(seed, sizeof(seed));
    *out = identity_from_seed(seed);
    sodium_memzero(seed, sizeof(seed));
    return *out != NULL ? CHAT_OK : CHAT_ESYS;
}

void
identity_free(struct identity *id)
{
    if (id == NULL)
        return;
    if (id->sk != NULL) {
        sodium_memzero(id->sk, IDENTITY_SK_BYTES);
        sodium_free(id->sk);
    }
    sodium_memzero(id, sizeof(*id));
    g_free(id);
}

const uint8_t *
identity_public_key(const struct identity *id)
{
    return id->pk;
}

const uint8_t *
identity_secret_key(const struct identity *id)
{
    return id->sk;
}

const char *
identity_fingerprint_str(const struct identity *id)
{
    return id->fp;
}

/* The key file: comment lines, then exactly one "sockchat-ed25519-v1
 * <base64 of the 32-byte seed>" line. */
static int
key_parse(const char *path, const char *text, uint8_t seed[32],
          struct identity_error *err)
{
    struct line l = {0};
    const char *b64;
    size_t n = 0;
    bool found = false;

    while (next_line(text, &l)) {
        if (line_is_comment(&l))
            continue;
        if (found || l.len != sizeof(KEY_MAGIC) + SEED_B64_LEN ||
            memcmp(l.p, KEY_MAGIC " ", sizeof(KEY_MAGIC)) != 0)
            goto bad;
        b64 = l.p + sizeof(KEY_MAGIC);
        if (sodium_base642bin(seed, crypto_sign_SEEDBYTES, b64, SEED_B64_LEN,
                              NULL, &n, NULL, B64_VARIANT) != 0 ||
            n != crypto_sign_SEEDBYTES)
            goto bad;
        found = true;
    }
    if (found)
        return CHAT_OK;
bad:
    sodium_memzero(seed, crypto_sign_SEEDBYTES);
    set_err(err,
            "%s is not a sockchat key file (expected one line '" KEY_MAGIC
            " <base64 key>'); it was left untouched",
            path);
    return CHAT_EPROTO;
}

/* Open, check and read the key file. *missing when it does not exist. */
static int
key_load(const char *path, struct identity **out, bool *missing,
         struct identity_error *err)
{
    char text[KEY_FILE_MAX + 1];
    uint8_t seed[crypto_sign_SEEDBYTES];
    struct stat st;
    size_t len = 0;
    int fd = -1, rc;

    *out = NULL;
    *missing = false;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        *missing = errno == ENOENT;
        return sys_err(err, "cannot open key file", path);
    }
    if (fstat(fd, &st) != 0) {
        rc = sys_err(err, "cannot stat key file", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, "key file %s is not a regular file", path);
        rc = CHAT_ERANGE;
        goto out;
    }
    if (st.st_uid != geteuid()) {
        set_err(err,
                "key file %s belongs to user %lu, not to this user (%lu); "
                "refusing to use it",
                path, (unsigned long)st.st_uid, (unsigned long)geteuid());
        rc = CHAT_ERANGE;
        goto out;
    }
    if ((st.st_mode & 0077) != 0) {
        set_err(err,
                "key file %s has mode %04o: group or others can access it, "
                "so the key may be known to others; refusing to use it. "
                "If nobody else could read it, run: chmod 600 %s",
                path, (unsigned)(st.st_mode & 07777), path);
        rc = CHAT_ERANGE;
        goto out;
    }
    if (read_all(fd, text, KEY_FILE_MAX, &len) != 0) {
        if (errno == EFBIG) {
            set_err(err, "key file %s is larger than %d bytes", path,
                    KEY_FILE_MAX);
            rc = CHAT_ETOOBIG;
        } else {
            rc = sys_err(err, "cannot read key file", path);
        }
        goto out;
    }
    text[len] = '\0';
    if (memchr(text, '\0', len) != NULL) {
        set_err(err, "%s is not a sockchat key file (NUL byte)", path);
        rc = CHAT_EPROTO;
        goto out;
    }
    rc = key_parse(path, text, seed, err);
    if (rc != CHAT_OK)
        goto out;
    *out = identity_from_seed(seed);
    if (*out == NULL) {
        rc = sys_err(err, "cannot load key file", path);
        goto out;
    }
    rc = CHAT_OK;
out:
    sodium_memzero(text, sizeof(text));
    sodium_memzero(seed, sizeof(seed));
    if (fd >= 0) {
        int e = errno;

        close(fd);
        errno = e;
    }
    return rc;
}

int
identity_load(const char *path, struct identity **out,
              struct identity_error *err)
{
    bool missing;

    return key_load(path, out, &missing, err);
}

/* Write a new key file at path without ever replacing one: link() a
 * complete temporary file into place (fails with EEXIST if the name is
 * taken). *raced when another process created it first. */
static int
key_create(const char *path, const struct identity *id, bool *raced,
           struct identity_error *err)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    char b64[SEED_B64_LEN + 1];
    char text[512];
    char *tmp = NULL;
    int n, rc, fd = -1;

    *raced = false;
    crypto_sign_ed25519_sk_to_seed(seed, id->sk);
    sodium_bin2base64(b64, sizeof(b64), seed, sizeof(seed), B64_VARIANT);
    n = snprintf(text, sizeof(text),
                 "# sockchat identity key (Ed25519). Keep this file secret:\n"
                 "# whoever has it can prove to be you.\n"
                 "# fingerprint %s\n" KEY_MAGIC " %s\n",
                 id->fp, b64);
    rc = make_parent(path, err);
    if (rc != CHAT_OK)
        goto out;
    rc = write_temp(path, text, (size_t)n, &tmp, err);
    if (rc != CHAT_OK)
        goto out;
    if (link(tmp, path) == 0) {
        rc = CHAT_OK;
        goto out;
    }
    if (errno == EEXIST) {
        *raced = true;
        rc = CHAT_OK;
        goto out;
    }
    /* A file system without hard links: O_EXCL keeps the no-replace
     * promise, at the price of a window in which the file is partial (a
     * reader then refuses it as malformed; it never gets a wrong key). */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            *raced = true;
            rc = CHAT_OK;
        } else {
            rc = sys_err(err, "cannot create key file", path);
        }
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, (size_t)n) != 0 ||
        fsync(fd) != 0) {
        rc = sys_err(err, "cannot write key file", path);
        unlink(path);
        goto out;
    }
    rc = CHAT_OK;
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        g_free(tmp);
    }
    if (rc == CHAT_OK && !*raced)
        sync_parent(path);
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(b64, sizeof(b64));
    sodium_memzero(text, sizeof(text));
    return rc;
}

int
identity_load_or_create(const char *path, struct identity **out, bool *created,
                        struct identity_error *err)
{
    struct identity *id = NULL;
    bool missing = false, raced = false;
    int rc;

    *out = NULL;
    if (created != NULL)
        *created = false;
    rc = key_load(path, out, &missing, err);
    if (rc == CHAT_OK || !missing)
        return rc;
    rc = identity_generate(&id);
    if (rc != CHAT_OK)
        return sys_err(err, "cannot make a key for", path);
    rc = key_create(path, id, &raced, err);
    if (rc != CHAT_OK || raced) {
        identity_free(id);
        if (rc != CHAT_OK)
            return rc;
        return key_load(path, out, &missing, err);
    }
    *out = id;
    if (created != NULL)
        *created = true;
    return CHAT_OK;
}

/* ---- known servers -------------------------------------------------- */

static bool
host_valid(const char *host)
{
    size_t i, n;

    if (host == NULL)
        return false;
    n = strlen(host);
    if (n == 0 || n > IDENTITY_HOST_MAX)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];

        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

static int
check_args(const char *host, unsigned port, const char *fp,
           struct identity_error *err)
{
    if (!host_valid(host)) {
        set_err(err, "'%s' is not a host name that can be remembered",
                host != NULL ? host : "(null)");
        return CHAT_ERANGE;
    }
    if (port == 0 || port > 65535) {
        set_err(err, "port %u is out of range", port);
        return CHAT_ERANGE;
    }
    if (fp != NULL && !identity_fingerprint_valid(fp)) {
        set_err(err, "'%s' is not a fingerprint", fp);
        return CHAT_ERANGE;
    }
    return CHAT_OK;
}

struct known_line {
    char host[IDENTITY_HOST_MAX + 1];
    unsigned port;
    char fp[IDENTITY_FP_SIZE];
};

/* Parse one non-comment line of the known-servers file. */
static bool
known_parse(const struct line *l, struct known_line *k)
{
    char port[8];
    char *end = NULL;
    unsigned long v;

    if (!split_line(l, k->host, sizeof(k->host), port, sizeof(port), k->fp,
                    sizeof(k->fp)))
        return false;
    if (port[0] < '1' || port[0] > '9')
        return false;
    v = strtoul(port, &end, 10);
    if (*end != '\0' || v > 65535)
        return false;
    k->port = (unsigned)v;
    return host_valid(k->host) && identity_fingerprint_valid(k->fp);
}

static int
known_bad_line(const char *path, unsigned no, struct identity_error *err)
{
    set_err(err,
            "%s line %u is not 'host port fingerprint'; fix or remove it "
            "(a damaged entry is not treated as unknown)",
            path, no);
    return CHAT_EPROTO;
}

static bool
known_same(const struct known_line *k, const char *host, unsigned port)
{
    return k->port == port && g_ascii_strcasecmp(k->host, host) == 0;
}

/* Called for each entry of the file in order, with its line number; false
 * stops the scan. */
typedef bool (*known_visit_fn)(const struct known_line *k, unsigned no,
                               void *arg);

/* Visit every entry of the file at path. A missing file has none; a line
 * that is neither a comment nor an entry is CHAT_EPROTO naming it. */
static int
known_scan(const char *path, known_visit_fn visit, void *arg,
           struct identity_error *err)
{
    struct known_line k;
    struct line l = {0};
    char *text = NULL;
    size_t len;
    int rc;

    rc = read_text(path, IDENTITY_FILE_MAX, &text, &len, err);
    if (rc != CHAT_OK || text == NULL)
        return rc;
    while (next_line(text, &l)) {
        if (line_is_comment(&l))
            continue;
        if (!known_parse(&l, &k)) {
            rc = known_bad_line(path, l.no, err);
            goto out;
        }
        if (!visit(&k, l.no, arg))
            break;
    }
    rc = CHAT_OK;
out:
    g_free(text);
    return rc;
}

static void
known_entry_set(struct identity_known_entry *e, const struct known_line *k,
                unsigned no)
{
    g_strlcpy(e->host, k->host, sizeof(e->host));
    e->port = k->port;
    g_strlcpy(e->fingerprint, k->fp, sizeof(e->fingerprint));
    e->line = no;
}

struct known_lookup {
    const char *host, *fp;
    unsigned port;
    enum identity_known res;
    struct identity_known_entry old; /* the first other key */
};

static bool
known_lookup_visit(const struct known_line *k, unsigned no, void *arg)
{
    struct known_lookup *q = arg;

    if (!known_same(k, q->host, q->port))
        return true;
    if (strcmp(k->fp, q->fp) == 0) {
        q->res = IDENTITY_KNOWN_MATCH;
        return false;
    }
    if (q->res == IDENTITY_KNOWN_NEW)
        known_entry_set(&q->old, k, no);
    q->res = IDENTITY_KNOWN_MISMATCH;
    return true;
}

int
identity_known_lookup(const char *path, const char *host, unsigned port,
                      const char *fp, enum identity_known *res,
                      struct identity_known_entry *old,
                      struct identity_error *err)
{
    struct known_lookup q = {.host = host, .fp = fp, .port = port};
    int rc;

    *res = IDENTITY_KNOWN_NEW;
    if (old != NULL)
        memset(old, 0, sizeof(*old));
    rc = check_args(host, port, fp, err);
    if (rc == CHAT_OK)
        rc = known_scan(path, known_lookup_visit, &q, err);
    if (rc != CHAT_OK)
        return rc;
    *res = q.res;
    if (old != NULL && q.res == IDENTITY_KNOWN_MISMATCH)
        *old = q.old;
    return CHAT_OK;
}

struct known_find {
    const char *fp;
    unsigned count;
    struct identity_known_entry first;
};

static bool
known_find_visit(const struct known_line *k, unsigned no, void *arg)
{
    struct known_find *q = arg;

    if (strcmp(k->fp, q->fp) != 0)
        return true;
    if (q->count == 0)
        known_entry_set(&q->first, k, no);
    q->count++;
    return true;
}

int
identity_known_find_fp(const char *path, const char *fp, unsigned *count,
                       struct identity_known_entry *first,
                       struct identity_error *err)
{
    struct known_find q = {.fp = fp};
    int rc;

    *count = 0;
    if (first != NULL)
        memset(first, 0, sizeof(*first));
    if (fp == NULL || !identity_fingerprint_valid(fp)) {
        set_err(err, "'%s' is not a fingerprint", fp != NULL ? fp : "(null)");
        return CHAT_ERANGE;
    }
    rc = known_scan(path, known_find_visit, &q, err);
    if (rc != CHAT_OK)
        return rc;
    *count = q.count;
    if (first != NULL && q.count > 0)
        *first = q.first;
    return CHAT_OK;
}

/* Rewrite the file keeping every line, minus the entries for host and port
 * when drop is set, plus add_line when not NULL. */
static int
known_rewrite(const char *path, const char *host, unsigned port, bool drop,
              const char *add_line, unsigned *removed,
              struct identity_error *err)
{
    struct known_line k;
    struct line l = {0};
    GString *out = NULL;
    char *text = NULL;
    size_t len;
    unsigned gone = 0;
    int rc;

    rc = read_text(path, IDENTITY_FILE_MAX, &text, &len, err);
    if (rc != CHAT_OK)
        return rc;
    out = g_string_sized_new(len + 128);
    while (text != NULL && next_line(text, &l)) {
        if (!line_is_comment(&l)) {
            if (!known_parse(&l, &k)) {
                rc = known_bad_line(path, l.no, err);
                goto out;
            }
            if (drop && known_same(&k, host, port)) {
                gone++;
                continue;
            }
        }
        g_string_append_len(
            out, l.p,
            (gssize)(l.next != NULL ? (size_t)(l.next - l.p) : strlen(l.p)));
        if (l.next == NULL)
            g_string_append_c(out, '\n');
    }
    if (add_line != NULL)
        g_string_append(out, add_line);
    if (out->len > IDENTITY_FILE_MAX) {
        set_err(err, "%s would grow over %d bytes", path, IDENTITY_FILE_MAX);
        rc = CHAT_ETOOBIG;
        goto out;
    }
    rc = write_atomic(path, out->str, out->len, err);
    if (rc == CHAT_OK && removed != NULL)
        *removed = gone;
out:
    g_string_free(out, TRUE);
    g_free(text);
    return rc;
}

int
identity_known_add(const char *path, const char *host, unsigned port,
                   const char *fp, struct identity_error *err)
{
    enum identity_known res;
    char *lower = NULL, *line = NULL;
    int rc;

    rc = identity_known_lookup(path, host, port, fp, &res, NULL, err);
    if (rc != CHAT_OK || res == IDENTITY_KNOWN_MATCH)
        return rc;
    lower = g_ascii_strdown(host, -1);
    line = g_strdup_printf("%s %u %s\n", lower, port, fp);
    rc = known_rewrite(path, host, port, false, line, NULL, err);
    g_free(line);
    g_free(lower);
    return rc;
}

int
identity_known_remove(const char *path, const char *host, unsigned port,
                      unsigned *removed, struct identity_error *err)
{
    enum identity_known res;
    struct identity_known_entry old;
    int rc;

    if (removed != NULL)
        *removed = 0;
    /* The fingerprint here only satisfies lookup's argument check. */
    rc = identity_known_lookup(
        path, host, port,
        "SHA256:0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 "
        "0000 0000 0000 0000",
        &res, &old, err);
    if (rc != CHAT_OK || res == IDENTITY_KNOWN_NEW)
        return rc;
    return known_rewrite(path, host, port, true, NULL, removed, err);
}

char *
identity_known_mismatch_text(const char *path, const char *host, unsigned port,
                             const struct identity_known_entry *old,
                             const char *new_fp)
{
    return g_strdup_printf(
        "WARNING: the identity of server %s port %u has CHANGED.\n"
        "  remembered: %s\n"
        "  presented:  %s\n"
        "Someone may be intercepting this connection, or the server's key "
        "was replaced.\n"
        "Ask the server's operator for its fingerprint and compare it by "
        "voice or in person.\n"
        "If the new key is genuine, remove line %u of %s and connect again.",
        host, port, old != NULL ? old->fingerprint : "(unknown)", new_fp,
        old != NULL ? old->line : 0, path);
}

/* ---- reserved nicks ------------------------------------------------- */

static void
nicks_free_table(struct identity_nicks *st)
{
    if (st->nick != NULL)
        g_hash_table_destroy(st->nick);
    st->nick = NULL;
}

void
identity_nicks_free(struct identity_nicks *st)
{
    if (st == NULL)
        return;
    nicks_free_table(st);
    g_free(st->path);
    g_free(st);
}

size_t
identity_nicks_count(const struct identity_nicks *st)
{
    return g_hash_table_size(st->nick);
}

static gint
cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The whole store as file text, sorted by nick, so equal stores give equal
 * files. g_free() it. */
static char *
nicks_text(const struct identity_nicks *st, size_t *len)
{
    GString *out = g_string_new("# sockchat reserved nicks: nick "
                                "fingerprint (written by sockchatd)\n");
    GPtrArray *keys = g_ptr_array_new();
    GHashTableIter it;
    gpointer k, v;
    guint i;

    g_hash_table_iter_init(&it, st->nick);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(keys, k);
    g_ptr_array_sort(keys, cmp_str);
    for (i = 0; i < keys->len; i++) {
        const char *nick = g_ptr_array_index(keys, i);

        g_string_append_printf(
            out, "%s %s\n", nick,
            (const char *)g_hash_table_lookup(st->nick, nick));
    }
    g_ptr_array_free(keys, TRUE);
    *len = out->len;
    return g_string_free(out, FALSE);
}

static int
nicks_save(const struct identity_nicks *st, struct identity_error *err)
{
    char *text = NULL;
    size_t len;
    int rc;

    if (st->path == NULL)
        return CHAT_OK;
    text = nicks_text(st, &len);
    rc = write_atomic(st->path, text, len, err);
    g_free(text);
    return rc;
}

int
identity_nicks_load(const char *path, size_t max, struct identity_nicks **out,
                    struct identity_error *err)
{
    struct identity_nicks *st = NULL;
    char nick[MSG_NICK_MAX + 2];
    char fp[IDENTITY_FP_SIZE];
    struct line l = {0};
    char *text = NULL, *folded;
    size_t len;
    int rc;

    *out = NULL;
    st = g_new0(struct identity_nicks, 1);
    st->path = g_strdup(path);
    st->max = max;
    st->nick = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    if (path != NULL) {
        rc = read_text(path, IDENTITY_FILE_MAX, &text, &len, err);
        if (rc != CHAT_OK)
            goto out;
    }
    while (text != NULL && next_line(text, &l)) {
        if (line_is_comment(&l))
            continue;
        if (!split_line(&l, nick, sizeof(nick), NULL, 0, fp, sizeof(fp)) ||
            !msg_valid_nick(nick) || !identity_fingerprint_valid(fp)) {
            set_err(err, "%s line %u is not 'nick fingerprint'", path, l.no);
            rc = CHAT_EPROTO;
            goto out;
        }
        folded = msg_fold(nick);
        if (g_hash_table_contains(st->nick, folded)) {
            set_err(err, "%s line %u: nick %s is listed twice", path, l.no,
                    folded);
            g_free(folded);
            rc = CHAT_EPROTO;
            goto out;
        }
        if (g_hash_table_size(st->nick) >= max) {
            set_err(err, "%s line %u: more than %zu reserved nicks", path, l.no,
                    max);
            g_free(folded);
            rc = CHAT_EPROTO;
            goto out;
        }
        g_hash_table_insert(st->nick, folded, g_strdup(fp));
    }
    *out = st;
    st = NULL;
    rc = CHAT_OK;
out:
    g_free(text);
    identity_nicks_free(st);
    return rc;
}

const char *
identity_nicks_lookup(const struct identity_nicks *st, const char *nick)
{
    char *folded;
    const char *fp;

    if (!msg_valid_nick(nick))
        return NULL;
    folded = msg_fold(nick);
    fp = g_hash_table_lookup(st->nick, folded);
    g_free(folded);
    return fp;
}

enum identity_nick
identity_nicks_check(const struct identity_nicks *st, const char *nick,
                     const char *fp)
{
    const char *owner = identity_nicks_lookup(st, nick);

    if (owner == NULL)
        return IDENTITY_NICK_FREE;
    if (fp != NULL && strcmp(owner, fp) == 0)
        return IDENTITY_NICK_OWNED;
    return IDENTITY_NICK_RESERVED;
}

int
identity_nicks_reserve(struct identity_nicks *st, const char *nick,
                       const char *fp, struct identity_error *err)
{
    const char *owner;
    char *folded;
    int rc;

    if (!msg_valid_nick(nick)) {
        set_err(err, "'%s' is not a valid nick", nick != NULL ? nick : "");
        return CHAT_ERANGE;
    }
    if (!identity_fingerprint_valid(fp)) {
        set_err(err, "not a fingerprint");
        return CHAT_ERANGE;
    }
    owner = identity_nicks_lookup(st, nick);
    if (owner != NULL && strcmp(owner, fp) == 0)
        return CHAT_OK;
    if (owner != NULL) {
        set_err(err, "nick %s is reserved for another key", nick);
        return CHAT_ERANGE;
    }
    if (g_hash_table_size(st->nick) >= st->max) {
        set_err(err, "the server keeps at most %zu reserved nicks", st->max);
        return CHAT_EFULL;
    }
    folded = msg_fold(nick);
    g_hash_table_insert(st->nick, folded, g_strdup(fp));
    rc = nicks_save(st, err);
    if (rc != CHAT_OK)
        g_hash_table_remove(st->nick, folded);
    return rc;
}

int
identity_nicks_release(struct identity_nicks *st, const char *nick,
                       bool *removed, struct identity_error *err)
{
    char *folded = NULL;
    gpointer key = NULL, fp = NULL;
    int rc;

    if (removed != NULL)
        *removed = false;
    if (!msg_valid_nick(nick))
        return CHAT_OK;
    folded = msg_fold(nick);
    /* lookup + steal rather than steal_extended: GLib 2.56 lacks it. */
    if (!g_hash_table_lookup_extended(st->nick, folded, &key, &fp)) {
        g_free(folded);
        return CHAT_OK;
    }
    g_hash_table_steal(st->nick, folded);
    g_free(folded);
    rc = nicks_save(st, err);
    if (rc != CHAT_OK) {
        g_hash_table_insert(st->nick, key, fp);
        return rc;
    }
    g_free(key);
    g_free(fp);
    if (removed != NULL)
        *removed = true;
    return CHAT_OK;
}
