/* addr.h - socket addresses and endpoint URLs.
 *
 * An endpoint is written as a URL: tcp://127.0.0.1:7710, tcp://[::1]:7710,
 * udp://host:7710, unix:///run/sockchat.sock. A bare host or host:port takes
 * the default scheme and port.
 */
#ifndef SOCKCHAT_ADDR_H
#define SOCKCHAT_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_HOST_MAX 256
#define ADDR_PATH_MAX 108 /* sizeof(sun_path) on Linux */
#define ADDR_STR_MAX (ADDR_HOST_MAX + 16)
#define ADDR_URL_MAX (ADDR_STR_MAX + 16)

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

struct endpoint {
    char scheme[8];            /* "tcp", "udp", "unix" */
    char host[ADDR_HOST_MAX];  /* host name or literal, no brackets */
    uint16_t port;             /* 0 = any (listen) */
    char path[ADDR_PATH_MAX];  /* unix only */
};

/*
 * Parse url into *ep (cleared first). def_scheme and def_port fill what the
 * text leaves out. CHAT_OK or CHAT_EADDR, with a reason in why[why_len].
 */
int addr_parse_url(const char *url, const char *def_scheme, uint16_t def_port,
                   struct endpoint *ep, char *why, size_t why_len);

/* Write ep back as a URL ("tcp://[::1]:7710"). */
void addr_format_url(const struct endpoint *ep, char *out, size_t n);

/*
 * Resolve ep with getaddrinfo. passive: for bind (AI_PASSIVE). socktype is
 * SOCK_STREAM or SOCK_DGRAM. Fills up to max addresses into out and their
 * count into *count. CHAT_OK or CHAT_EADDR (why says what getaddrinfo said).
 */
int addr_resolve(const struct endpoint *ep, bool passive, int socktype,
                 struct addr *out, size_t max, size_t *count, char *why,
                 size_t why_len);

/* "127.0.0.1:7710", "[::1]:7710" or the UNIX path. */
void addr_format(const struct addr *a, char *out, size_t n);
/* Port of an inet address, 0 otherwise. */
uint16_t addr_port(const struct addr *a);

#endif /* SOCKCHAT_ADDR_H */
