/* test_identity.c - common/identity.c through identity.h: the key file,
 * fingerprints, known servers, reserved nicks. Each test works in its own
 * temporary directory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sodium.h>

#include "err.h"
#include "identity.h"

#define FP_ZERO                                                                \
    "SHA256:6668 7aad f862 bd77 6c8f c18b 8e9f 8e20 0897 1485 6ee2 33b3 "      \
    "902a 591d 0d5f 2925"

static int
setup_dir(void **state)
{
    char *dir = g_dir_make_tmp("test_identity.XXXXXX", NULL);

    assert_non_null(dir);
    *state = dir;
    return 0;
}

static void
rm_tree(const char *path)
{
    GDir *d = g_dir_open(path, 0, NULL);
    const char *name;

    if (d == NULL) {
        g_unlink(path);
        return;
    }
    while ((name = g_dir_read_name(d)) != NULL) {
        char *p = g_build_filename(path, name, NULL);

        rm_tree(p);
        g_free(p);
    }
    g_dir_close(d);
    g_rmdir(path);
}

static int
teardown_dir(void **state)
{
    rm_tree(*state);
    g_free(*state);
    return 0;
}

static char *
in_dir(void **state, const char *name)
{
    return g_build_filename((const char *)*state, name, NULL);
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
    assert_true(g_file_set_contents(path, text, -1, NULL));
    assert_int_equal(chmod(path, mode), 0);
}

static char *
read_file(const char *path)
{
    char *text = NULL;

    assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

/* Names in dir, sorted, joined by spaces; g_free() it. */
static char *
list_dir(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    GPtrArray *names = g_ptr_array_new();
    const char *name;
    char *out;

    assert_non_null(d);
    while ((name = g_dir_read_name(d)) != NULL)
        g_ptr_array_add(names, (gpointer)g_strdup(name));
    g_ptr_array_sort(names, (GCompareFunc)g_strcmp0);
    g_ptr_array_add(names, NULL);
    out = g_strjoinv(" ", (char **)names->pdata);
    g_strfreev((char **)g_ptr_array_free(names, FALSE));
    g_dir_close(d);
    return out;
}

static char *
fp_of_new_key(void)
{
    uint8_t pk[IDENTITY_PK_BYTES], sk[IDENTITY_SK_BYTES];
    char fp[IDENTITY_FP_SIZE];

    crypto_sign_keypair(pk, sk);
    identity_fingerprint(pk, fp);
    return g_strdup(fp);
}

/* ---- key file ------------------------------------------------------- */

static void
test_identity_created_0600_and_reloaded(void **state)
{
    char *path = in_dir(state, "conf/sockchat/identity");
    char *dir = in_dir(state, "conf/sockchat");
    struct identity *a = NULL, *b = NULL;
    struct identity_error err;
    struct stat st;
    bool created = false;
    uint8_t sig[crypto_sign_BYTES];
    char *text;

    assert_int_equal(identity_load_or_create(path, &a, &created, &err),
                     CHAT_OK);
    assert_true(created);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    text = read_file(path);
    assert_non_null(strstr(text, identity_fingerprint_str(a)));
    assert_non_null(strstr(text, "\nsockchat-ed25519-v1 "));
    g_free(text);

    assert_int_equal(identity_load_or_create(path, &b, &created, &err),
                     CHAT_OK);
    assert_false(created);
    assert_memory_equal(identity_public_key(a), identity_public_key(b),
                        IDENTITY_PK_BYTES);
    assert_memory_equal(identity_secret_key(a), identity_secret_key(b),
                        IDENTITY_SK_BYTES);
    assert_string_equal(identity_fingerprint_str(a),
                        identity_fingerprint_str(b));
    /* The loaded key signs, and its public half verifies. */
    crypto_sign_detached(sig, NULL, (const uint8_t *)"m", 1,
                         identity_secret_key(b));
    assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"m", 1,
                                                 identity_public_key(a)),
                     0);
    identity_free(b);
    b = NULL;
    assert_int_equal(identity_load(path, &b, &err), CHAT_OK);
    assert_memory_equal(identity_public_key(a), identity_public_key(b),
                        IDENTITY_PK_BYTES);
    /* Only the key file is left: no temporary files. */
    text = list_dir(dir);
    assert_string_equal(text, "identity");
    g_free(text);
    identity_free(a);
    identity_free(b);
    identity_free(NULL);
    g_free(path);
    g_free(dir);
}

static void
test_identity_refuses_group_or_other_access(void **state)
{
    const mode_t bad[] = {0644, 0640, 0604, 0660, 0602, 0610, 0601, 0666};
    char *path = in_dir(state, "identity");
    struct identity *id = NULL, *again = NULL;
    struct identity_error err;
    char *before, *after;
    size_t i;

    assert_int_equal(identity_load_or_create(path, &id, NULL, &err), CHAT_OK);
    before = read_file(path);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(chmod(path, bad[i]), 0);
        err.text[0] = '\0';
        assert_int_equal(identity_load_or_create(path, &again, NULL, &err),
                         CHAT_ERANGE);
        assert_null(again);
        assert_non_null(strstr(err.text, path));
        assert_non_null(strstr(err.text, "chmod 600"));
        assert_int_equal(identity_load(path, &again, &err), CHAT_ERANGE);
    }
    /* Left alone: the same key is still there. */
    after = read_file(path);
    assert_string_equal(before, after);
    /* Read-only for the owner is fine. */
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(identity_load(path, &again, &err), CHAT_OK);
    assert_memory_equal(identity_public_key(id), identity_public_key(again),
                        IDENTITY_PK_BYTES);
    identity_free(again);
    identity_free(id);
    g_free(before);
    g_free(after);
    g_free(path);
}

static void
test_identity_refuses_key_of_another_user(void **state)
{
    char *path = in_dir(state, "identity");
    struct identity *id = NULL;
    struct identity_error err;

    if (geteuid() != 0) {
        g_free(path);
        skip(); /* only root can give a file away */
    }
    assert_int_equal(identity_load_or_create(path, &id, NULL, &err), CHAT_OK);
    identity_free(id);
    id = NULL;
    assert_int_equal(chown(path, 65534, 65534), 0);
    assert_int_equal(identity_load(path, &id, &err), CHAT_ERANGE);
    assert_null(id);
    assert_non_null(strstr(err.text, "belongs to user 65534"));
    g_free(path);
}

static void
test_identity_refuses_malformed_key_file(void **state)
{
    static const char *const bad[] = {
        "",
        "# only a comment\n",
        "hello\n",
        "sockchat-ed25519-v1\n",
        "sockchat-ed25519-v1 \n",
        "sockchat-ed25519-v1 AAAA\n",
        /* 31 and 34 bytes of seed */
        "sockchat-ed25519-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n",
        "sockchat-ed25519-v1 "
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n",
        /* unpadded, non-canonical, two keys, junk after the key */
        "sockchat-ed25519-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        "sockchat-ed25519-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n",
        ("sockchat-ed25519-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
         "sockchat-ed25519-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"),
        "sockchat-ed25519-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= x\n",
        "sockchat-ed25519-v2 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    };
    char *path = in_dir(state, "identity");
    struct identity *id = NULL;
    struct identity_error err;
    char *after, *big;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i], 0600);
        err.text[0] = '\0';
        assert_int_equal(identity_load_or_create(path, &id, NULL, &err),
                         CHAT_EPROTO);
        assert_null(id);
        assert_non_null(strstr(err.text, path));
        /* Never overwritten: the user decides what to do with it. */
        after = read_file(path);
        assert_string_equal(after, bad[i]);
        g_free(after);
    }
    /* A good file with comments and CRLF line ends loads. */
    write_file(path,
               "# mine\r\n\r\nsockchat-ed25519-v1 "
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n# end\n",
               0600);
    assert_int_equal(identity_load(path, &id, &err), CHAT_OK);
    identity_free(id);
    id = NULL;
    /* Too large. */
    big = g_malloc0(5001);
    memset(big, '#', 5000);
    write_file(path, big, 0600);
    assert_int_equal(identity_load(path, &id, &err), CHAT_ETOOBIG);
    g_free(big);
    /* A directory where the file should be. */
    g_unlink(path);
    assert_int_equal(g_mkdir(path, 0700), 0);
    assert_int_equal(identity_load_or_create(path, &id, NULL, &err),
                     CHAT_ERANGE);
    assert_null(id);
    g_free(path);
}

static void
test_identity_load_missing_is_enoent(void **state)
{
    char *path = in_dir(state, "nope");
    struct identity *id = NULL;
    struct identity_error err;

    errno = 0;
    assert_int_equal(identity_load(path, &id, &err), CHAT_ESYS);
    assert_int_equal(errno, ENOENT);
    assert_null(id);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_free(path);
}

/* ---- fingerprints --------------------------------------------------- */

static void
test_identity_fingerprint_known_vector(void **state)
{
    static const char *const bad[] = {
        "",
        "SHA256:",
        "sha256:6668 7aad f862 bd77 6c8f c18b 8e9f 8e20 0897 1485 6ee2 33b3 "
        "902a 591d 0d5f 2925",
        "SHA256:6668 7AAD f862 bd77 6c8f c18b 8e9f 8e20 0897 1485 6ee2 33b3 "
        "902a 591d 0d5f 2925",
        "SHA256:66687aad f862 bd77 6c8f c18b 8e9f 8e20 0897 1485 6ee2 33b3 "
        "902a 591d 0d5f 2925 ",
        "SHA256:6668 7aad f862 bd77 6c8f c18b 8e9f 8e20 0897 1485 6ee2 33b3 "
        "902a 591d 0d5f 292",
        "SHA256:6668 7aad f862 bd77 6c8f c18b 8e9f 8e20 0897 1485 6ee2 33b3 "
        "902a 591d 0d5f 2925 ",
        "SHA256:6668 7aad f862 bd77 6c8f c18b 8e9f 8e20 0897 1485 6ee2 33b3 "
        "902a 591d 0d5f 292g",
    };
    uint8_t zero[IDENTITY_PK_BYTES] = {0};
    char fp[IDENTITY_FP_SIZE];
    size_t i;

    (void)state;
    /* SHA-256 of 32 zero bytes is 66687aad...2925. */
    identity_fingerprint(zero, fp);
    assert_string_equal(fp, FP_ZERO);
    assert_int_equal(strlen(fp), IDENTITY_FP_LEN);
    assert_true(identity_fingerprint_valid(fp));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(identity_fingerprint_valid(bad[i]));
    /* The identity of the doc/SECURE.md test vector (seed 32 x 0x03). */
    {
        uint8_t seed[crypto_sign_SEEDBYTES], pk[IDENTITY_PK_BYTES];
        uint8_t sk[IDENTITY_SK_BYTES];

        memset(seed, 3, sizeof(seed));
        crypto_sign_seed_keypair(pk, sk, seed);
        identity_fingerprint(pk, fp);
        assert_string_equal(fp, "SHA256:b62e 867f a2f3 3afe 62d5 d6b1 642e "
                                "1621 d543 3078 46b2 a57b 897e 7109 19b7 "
                                "6709");
    }
    assert_false(identity_fingerprint_valid(NULL));
}

static void
test_identity_fingerprint_stable(void **state)
{
    struct identity *id = NULL;
    char a[IDENTITY_FP_SIZE], b[IDENTITY_FP_SIZE];

    (void)state;
    assert_int_equal(identity_generate(&id), CHAT_OK);
    identity_fingerprint(identity_public_key(id), a);
    identity_fingerprint(identity_public_key(id), b);
    assert_string_equal(a, b);
    assert_string_equal(a, identity_fingerprint_str(id));
    assert_true(identity_fingerprint_valid(a));
    identity_free(id);
}

/* ---- known servers -------------------------------------------------- */

static void
expect_known(const char *path, const char *host, unsigned port, const char *fp,
             enum identity_known want)
{
    struct identity_known_entry old;
    struct identity_error err;
    enum identity_known res;

    assert_int_equal(
        identity_known_lookup(path, host, port, fp, &res, &old, &err), CHAT_OK);
    assert_int_equal(res, want);
}

static void
test_identity_known_servers_tofu(void **state)
{
    char *path = in_dir(state, "known/known_servers");
    char *dir = in_dir(state, "known");
    char *fp1 = fp_of_new_key(), *fp2 = fp_of_new_key();
    char *fp3 = fp_of_new_key();
    struct identity_known_entry old;
    struct identity_error err;
    enum identity_known res;
    unsigned removed = 99;
    char *text, *want;

    /* First use: nothing known, not even a file. */
    expect_known(path, "chat.example", 7710, fp1, IDENTITY_KNOWN_NEW);
    assert_int_equal(identity_known_add(path, "Chat.Example", 7710, fp1, &err),
                     CHAT_OK);
    text = read_file(path);
    want = g_strdup_printf("chat.example 7710 %s\n", fp1);
    assert_string_equal(text, want);
    g_free(text);
    g_free(want);
    /* Adding the same entry again changes nothing. */
    assert_int_equal(identity_known_add(path, "chat.example", 7710, fp1, &err),
                     CHAT_OK);
    expect_known(path, "chat.example", 7710, fp1, IDENTITY_KNOWN_MATCH);
    expect_known(path, "CHAT.example", 7710, fp1, IDENTITY_KNOWN_MATCH);
    expect_known(path, "chat.example", 7711, fp1, IDENTITY_KNOWN_NEW);
    expect_known(path, "chat.example.org", 7710, fp1, IDENTITY_KNOWN_NEW);
    assert_int_equal(identity_known_add(path, "::1", 7710, fp3, &err), CHAT_OK);

    /* The key changed: both fingerprints and the line to remove. */
    assert_int_equal(identity_known_lookup(path, "chat.example", 7710, fp2,
                                           &res, &old, &err),
                     CHAT_OK);
    assert_int_equal(res, IDENTITY_KNOWN_MISMATCH);
    assert_string_equal(old.fingerprint, fp1);
    assert_string_equal(old.host, "chat.example");
    assert_int_equal(old.port, 7710);
    assert_int_equal(old.line, 1);
    text = identity_known_mismatch_text(path, "chat.example", 7710, &old, fp2);
    assert_non_null(strstr(text, fp1));
    assert_non_null(strstr(text, fp2));
    assert_non_null(strstr(text, path));
    assert_non_null(strstr(text, "line 1 "));
    g_free(text);

    /* Removing it makes the next connection a first use again. */
    assert_int_equal(
        identity_known_remove(path, "chat.example", 7710, &removed, &err),
        CHAT_OK);
    assert_int_equal(removed, 1);
    expect_known(path, "chat.example", 7710, fp2, IDENTITY_KNOWN_NEW);
    expect_known(path, "::1", 7710, fp3, IDENTITY_KNOWN_MATCH);
    assert_int_equal(identity_known_remove(path, "gone", 1, &removed, &err),
                     CHAT_OK);
    assert_int_equal(removed, 0);
    text = list_dir(dir);
    assert_string_equal(text, "known_servers");
    g_free(text);
    g_free(fp1);
    g_free(fp2);
    g_free(fp3);
    g_free(path);
    g_free(dir);
}

static void
test_identity_known_servers_keeps_comments(void **state)
{
    char *path = in_dir(state, "known_servers");
    char *fp1 = fp_of_new_key(), *fp2 = fp_of_new_key();
    struct identity_error err;
    char *text, *start, *want;

    /* No newline at the end, comments, blank lines, a CRLF line. */
    start = g_strdup_printf("# my servers\n\nhome  7710\t%s\r\n# end", fp1);
    write_file(path, start, 0644);
    expect_known(path, "home", 7710, fp1, IDENTITY_KNOWN_MATCH);
    assert_int_equal(identity_known_add(path, "work", 7710, fp2, &err),
                     CHAT_OK);
    text = read_file(path);
    want = g_strdup_printf("%s\nwork 7710 %s\n", start, fp2);
    assert_string_equal(text, want);
    g_free(text);
    g_free(want);
    assert_int_equal(identity_known_remove(path, "home", 7710, NULL, &err),
                     CHAT_OK);
    text = read_file(path);
    want = g_strdup_printf("# my servers\n\n# end\nwork 7710 %s\n", fp2);
    assert_string_equal(text, want);
    g_free(text);
    g_free(want);
    g_free(start);
    g_free(fp1);
    g_free(fp2);
    g_free(path);
}

static void
test_identity_known_servers_damaged_line_is_an_error(void **state)
{
    static const char *const bad_lines[] = {
        "host",
        "host 7710",
        "host 7710 SHA256:nothex",
        "host 0 " FP_ZERO,
        "host 65536 " FP_ZERO,
        "host 07710 " FP_ZERO,
        "host -1 " FP_ZERO,
        "host 7710 " FP_ZERO " extra",
    };
    char *path = in_dir(state, "known_servers");
    struct identity_known_entry old;
    struct identity_error err;
    enum identity_known res = IDENTITY_KNOWN_MATCH;
    char *text, *after;
    size_t i;

    for (i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
        text = g_strdup_printf("# c\n%s\n", bad_lines[i]);
        write_file(path, text, 0600);
        assert_int_equal(identity_known_lookup(path, "host", 7710, FP_ZERO,
                                               &res, &old, &err),
                         CHAT_EPROTO);
        assert_int_equal(res, IDENTITY_KNOWN_NEW);
        assert_non_null(strstr(err.text, "line 2"));
        /* Nothing is rewritten over a file we cannot read. */
        assert_int_equal(identity_known_add(path, "x", 1, FP_ZERO, &err),
                         CHAT_EPROTO);
        after = read_file(path);
        assert_string_equal(after, text);
        g_free(after);
        g_free(text);
    }
    g_free(path);
}

static void
test_identity_known_servers_arguments_checked(void **state)
{
    char *path = in_dir(state, "known_servers");
    char *long_host = g_malloc0(IDENTITY_HOST_MAX + 2);
    struct identity_error err;
    enum identity_known res;

    memset(long_host, 'h', IDENTITY_HOST_MAX + 1);
    assert_int_equal(
        identity_known_lookup(path, "a b", 1, FP_ZERO, &res, NULL, &err),
        CHAT_ERANGE);
    assert_int_equal(
        identity_known_lookup(path, "", 1, FP_ZERO, &res, NULL, &err),
        CHAT_ERANGE);
    assert_int_equal(
        identity_known_lookup(path, "a\n", 1, FP_ZERO, &res, NULL, &err),
        CHAT_ERANGE);
    assert_int_equal(
        identity_known_lookup(path, long_host, 1, FP_ZERO, &res, NULL, &err),
        CHAT_ERANGE);
    long_host[IDENTITY_HOST_MAX] = '\0';
    assert_int_equal(
        identity_known_lookup(path, long_host, 1, FP_ZERO, &res, NULL, &err),
        CHAT_OK);
    assert_int_equal(
        identity_known_lookup(path, "a", 0, FP_ZERO, &res, NULL, &err),
        CHAT_ERANGE);
    assert_int_equal(
        identity_known_lookup(path, "a", 65536, FP_ZERO, &res, NULL, &err),
        CHAT_ERANGE);
    assert_int_equal(identity_known_add(path, "a", 1, "SHA256:xyz", &err),
                     CHAT_ERANGE);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_free(long_host);
    g_free(path);
}

/* ---- reserved nicks ------------------------------------------------- */

static void
test_identity_nicks_persist_across_reload(void **state)
{
    char *path = in_dir(state, "srv/reserved_nicks");
    char *fp1 = fp_of_new_key(), *fp2 = fp_of_new_key();
    struct identity_nicks *st = NULL;
    struct identity_error err;
    bool removed = false;
    char *text;

    assert_int_equal(identity_nicks_load(path, 100, &st, &err), CHAT_OK);
    assert_int_equal(identity_nicks_count(st), 0);
    assert_int_equal(identity_nicks_check(st, "ann", fp1), IDENTITY_NICK_FREE);
    assert_int_equal(identity_nicks_reserve(st, "Ann", fp1, &err), CHAT_OK);
    assert_int_equal(identity_nicks_reserve(st, "zed", fp2, &err), CHAT_OK);
    identity_nicks_free(st);
    st = NULL;

    /* A restart: everything is still there. */
    assert_int_equal(identity_nicks_load(path, 100, &st, &err), CHAT_OK);
    assert_int_equal(identity_nicks_count(st), 2);
    assert_string_equal(identity_nicks_lookup(st, "ANN"), fp1);
    assert_int_equal(identity_nicks_check(st, "aNN", fp1), IDENTITY_NICK_OWNED);
    assert_int_equal(identity_nicks_check(st, "ann", fp2),
                     IDENTITY_NICK_RESERVED);
    assert_int_equal(identity_nicks_check(st, "ann", NULL),
                     IDENTITY_NICK_RESERVED);
    assert_int_equal(identity_nicks_check(st, "bob", NULL), IDENTITY_NICK_FREE);
    assert_int_equal(identity_nicks_check(st, "not a nick", NULL),
                     IDENTITY_NICK_FREE);
    /* Another key cannot take it; the owner may reserve it again. */
    assert_int_equal(identity_nicks_reserve(st, "ann", fp2, &err), CHAT_ERANGE);
    assert_int_equal(identity_nicks_reserve(st, "ANN", fp1, &err), CHAT_OK);
    assert_int_equal(identity_nicks_reserve(st, "bad nick", fp1, &err),
                     CHAT_ERANGE);
    assert_int_equal(identity_nicks_reserve(st, "bob", "SHA256:x", &err),
                     CHAT_ERANGE);
    text = read_file(path);
    assert_true(g_str_has_prefix(text, "#"));
    g_free(text);

    assert_int_equal(identity_nicks_release(st, "ANN", &removed, &err),
                     CHAT_OK);
    assert_true(removed);
    assert_int_equal(identity_nicks_release(st, "ann", &removed, &err),
                     CHAT_OK);
    assert_false(removed);
    identity_nicks_free(st);
    st = NULL;
    assert_int_equal(identity_nicks_load(path, 100, &st, &err), CHAT_OK);
    assert_int_equal(identity_nicks_count(st), 1);
    assert_null(identity_nicks_lookup(st, "ann"));
    assert_string_equal(identity_nicks_lookup(st, "zed"), fp2);
    identity_nicks_free(st);
    identity_nicks_free(NULL);
    g_free(fp1);
    g_free(fp2);
    g_free(path);
}

static void
test_identity_nicks_cap(void **state)
{
    char *path = in_dir(state, "reserved_nicks");
    struct identity_nicks *st = NULL;
    struct identity_error err;

    assert_int_equal(identity_nicks_load(path, 2, &st, &err), CHAT_OK);
    assert_int_equal(identity_nicks_reserve(st, "a", FP_ZERO, &err), CHAT_OK);
    assert_int_equal(identity_nicks_reserve(st, "b", FP_ZERO, &err), CHAT_OK);
    assert_int_equal(identity_nicks_reserve(st, "c", FP_ZERO, &err),
                     CHAT_EFULL);
    assert_int_equal(identity_nicks_count(st), 2);
    identity_nicks_free(st);
    st = NULL;
    /* A file with more than the cap is refused, not cut. */
    assert_int_equal(identity_nicks_load(path, 1, &st, &err), CHAT_EPROTO);
    assert_null(st);
    g_free(path);
}

static void
test_identity_nicks_damaged_file_is_an_error(void **state)
{
    static const char *const bad[] = {
        "ann\n",
        "ann SHA256:12\n",
        "bad.nick " FP_ZERO "\n",
        "ann " FP_ZERO "\nANN " FP_ZERO "\n",      /* the same nick twice */
        "aaaaaaaaaaaaaaaaaaaaaaaaa " FP_ZERO "\n", /* 25 characters */
    };
    char *path = in_dir(state, "reserved_nicks");
    struct identity_nicks *st = NULL;
    struct identity_error err;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i], 0600);
        assert_int_equal(identity_nicks_load(path, 10, &st, &err), CHAT_EPROTO);
        assert_null(st);
        assert_non_null(strstr(err.text, "line"));
    }
    write_file(path, "# c\n\n  ann   " FP_ZERO "  \r\n", 0600);
    assert_int_equal(identity_nicks_load(path, 10, &st, &err), CHAT_OK);
    assert_string_equal(identity_nicks_lookup(st, "Ann"), FP_ZERO);
    identity_nicks_free(st);
    g_free(path);
}

static void
test_identity_nicks_write_failure_changes_nothing(void **state)
{
    char *path = in_dir(state, "reserved_nicks");
    struct identity_nicks *st = NULL;
    struct identity_error err;
    bool removed = true;

    assert_int_equal(identity_nicks_load(path, 10, &st, &err), CHAT_OK);
    assert_int_equal(identity_nicks_reserve(st, "ann", FP_ZERO, &err), CHAT_OK);
    /* A directory in the file's place: rename() cannot replace it. */
    assert_int_equal(g_unlink(path), 0);
    assert_int_equal(g_mkdir(path, 0700), 0);
    assert_int_equal(identity_nicks_reserve(st, "bob", FP_ZERO, &err),
                     CHAT_ESYS);
    assert_null(identity_nicks_lookup(st, "bob"));
    assert_int_equal(identity_nicks_release(st, "ann", &removed, &err),
                     CHAT_ESYS);
    assert_false(removed);
    assert_string_equal(identity_nicks_lookup(st, "ann"), FP_ZERO);
    assert_int_equal(identity_nicks_count(st), 1);
    identity_nicks_free(st);
    g_free(path);
}

static void
test_identity_nicks_in_memory(void **state)
{
    struct identity_nicks *st = NULL;
    struct identity_error err;

    (void)state;
    assert_int_equal(identity_nicks_load(NULL, 10, &st, &err), CHAT_OK);
    assert_int_equal(identity_nicks_reserve(st, "ann", FP_ZERO, &err), CHAT_OK);
    assert_int_equal(identity_nicks_check(st, "ANN", FP_ZERO),
                     IDENTITY_NICK_OWNED);
    identity_nicks_free(st);
}

/* ---- known servers by fingerprint (a server that moved) -------------- */

static void
expect_found(const char *path, const char *fp, unsigned want_count,
             const char *want_host, unsigned want_port, unsigned want_line)
{
    struct identity_known_entry first;
    struct identity_error err;
    unsigned count = 99;

    memset(&first, 0xa5, sizeof(first));
    assert_int_equal(identity_known_find_fp(path, fp, &count, &first, &err),
                     CHAT_OK);
    assert_int_equal(count, want_count);
    if (want_count == 0) {
        assert_string_equal(first.host, "");
        assert_string_equal(first.fingerprint, "");
        assert_int_equal(first.port, 0);
        assert_int_equal(first.line, 0);
        return;
    }
    assert_string_equal(first.host, want_host);
    assert_int_equal(first.port, want_port);
    assert_string_equal(first.fingerprint, fp);
    assert_int_equal(first.line, want_line);
}

static void
test_identity_known_find_fp_found(void **state)
{
    char *path = in_dir(state, "known_servers");
    char *fp1 = fp_of_new_key(), *fp2 = fp_of_new_key();
    struct identity_error err;
    unsigned count = 99;

    assert_int_equal(identity_known_add(path, "10.0.0.5", 7710, fp1, &err),
                     CHAT_OK);
    assert_int_equal(identity_known_add(path, "Chat.Example", 7720, fp2, &err),
                     CHAT_OK);
    expect_found(path, fp1, 1, "10.0.0.5", 7710, 1);
    /* Hosts come back as the file has them (lower-cased when added). */
    expect_found(path, fp2, 1, "chat.example", 7720, 2);
    /* The result pointer may be NULL. */
    assert_int_equal(identity_known_find_fp(path, fp2, &count, NULL, &err),
                     CHAT_OK);
    assert_int_equal(count, 1);
    g_free(fp1);
    g_free(fp2);
    g_free(path);
}

static void
test_identity_known_find_fp_not_found(void **state)
{
    char *path = in_dir(state, "known_servers");
    char *fp1 = fp_of_new_key(), *fp2 = fp_of_new_key();
    struct identity_error err;
    unsigned count = 99;

    /* No file at all: nothing pinned, not an error. */
    expect_found(path, fp1, 0, NULL, 0, 0);
    /* Only comments. */
    write_file(path, "# nothing yet\n\n", 0600);
    expect_found(path, fp1, 0, NULL, 0, 0);
    assert_int_equal(identity_known_add(path, "10.0.0.5", 7710, fp1, &err),
                     CHAT_OK);
    expect_found(path, fp2, 0, NULL, 0, 0);
    /* A fingerprint differing in its last digit is another key. */
    fp1[IDENTITY_FP_LEN - 1] = fp1[IDENTITY_FP_LEN - 1] == '0' ? '1' : '0';
    expect_found(path, fp1, 0, NULL, 0, 0);
    /* Something that is not a fingerprint is refused, not "not found". */
    assert_int_equal(
        identity_known_find_fp(path, "SHA256:12", &count, NULL, &err),
        CHAT_ERANGE);
    assert_int_equal(count, 0);
    assert_int_equal(identity_known_find_fp(path, NULL, &count, NULL, &err),
                     CHAT_ERANGE);
    g_free(fp1);
    g_free(fp2);
    g_free(path);
}

static void
test_identity_known_find_fp_several_entries(void **state)
{
    char *path = in_dir(state, "known_servers");
    char *fp1 = fp_of_new_key(), *fp2 = fp_of_new_key();
    char *text;

    /* One key under three addresses (names, old leases), among others;
     * the first in file order is the one reported. */
    text = g_strdup_printf("# servers\n"
                           "work 7710 %s\n"
                           "\n"
                           "10.0.0.5 7710 %s\n"
                           "::1 7710 %s\r\n"
                           "# a comment between\n"
                           "10.0.0.9 7710 %s\n"
                           "chat.example 7710 %s",
                           fp2, fp1, fp2, fp1, fp1);
    write_file(path, text, 0600);
    expect_found(path, fp1, 3, "10.0.0.5", 7710, 4);
    expect_found(path, fp2, 2, "work", 7710, 2);
    g_free(text);
    g_free(fp1);
    g_free(fp2);
    g_free(path);
}

static void
test_identity_known_find_fp_damaged_line_is_an_error(void **state)
{
    static const char *const bad_lines[] = {
        "host",
        "host 7710",
        "host 7710 SHA256:nothex",
        "host 0 " FP_ZERO,
        "host 7710 " FP_ZERO " extra",
    };
    char *path = in_dir(state, "known_servers");
    struct identity_known_entry first;
    struct identity_error err;
    unsigned count;
    char *text;
    size_t i;

    for (i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
        /* The entry sought comes first: a damaged line after it still
         * makes the whole file unusable, as for identity_known_lookup(). */
        text = g_strdup_printf("10.0.0.5 7710 %s\n# c\n%s\n", FP_ZERO,
                               bad_lines[i]);
        write_file(path, text, 0600);
        count = 99;
        assert_int_equal(
            identity_known_find_fp(path, FP_ZERO, &count, &first, &err),
            CHAT_EPROTO);
        assert_int_equal(count, 0);
        assert_int_equal(first.line, 0);
        assert_string_equal(first.host, "");
        assert_non_null(strstr(err.text, "line 3"));
        assert_non_null(strstr(err.text, path));
        g_free(text);
    }
    g_free(path);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_identity_created_0600_and_reloaded),
        T(test_identity_refuses_group_or_other_access),
        T(test_identity_refuses_key_of_another_user),
        T(test_identity_refuses_malformed_key_file),
        T(test_identity_load_missing_is_enoent),
        cmocka_unit_test(test_identity_fingerprint_known_vector),
        cmocka_unit_test(test_identity_fingerprint_stable),
        T(test_identity_known_servers_tofu),
        T(test_identity_known_servers_keeps_comments),
        T(test_identity_known_servers_damaged_line_is_an_error),
        T(test_identity_known_servers_arguments_checked),
        T(test_identity_known_find_fp_found),
        T(test_identity_known_find_fp_not_found),
        T(test_identity_known_find_fp_several_entries),
        T(test_identity_known_find_fp_damaged_line_is_an_error),
        T(test_identity_nicks_persist_across_reload),
        T(test_identity_nicks_cap),
        T(test_identity_nicks_damaged_file_is_an_error),
        T(test_identity_nicks_write_failure_changes_nothing),
        cmocka_unit_test(test_identity_nicks_in_memory),
    };

    if (sodium_init() < 0) {
        fprintf(stderr, "sodium_init failed\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
