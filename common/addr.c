#include "addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "err.h"

static int
addr_fail(char *why, size_t why_len, const char *reason)
{
    if (why && why_len)
        snprintf(why, why_len, "%s", reason);
    return CHAT_EADDR;
}

static int
addr_parse_port(const char *s, uint16_t *port)
{
    char *end = NULL;
    long v;

    /* Digits only: strtol() alone takes " 80", "+80" and "-0". */
    if (*s < '0' || *s > '9')
        return CHAT_EADDR;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 65535)
        return CHAT_EADDR;
    *port = (uint16_t)v;
    return CHAT_OK;
}

int
addr_parse_url(const char *url, const char *def_scheme, uint16_t def_port,
               struct endpoint *ep, char *why, size_t why_len)
{
    const char *rest = url, *sep, *colon;
    size_t hlen;

    memset(ep, 0, sizeof(*ep));
    if (why && why_len)
        why[0] = '\0';
    sep = strstr(url, "://");
    if (sep) {
        if ((size_t)(sep - url) >= sizeof(ep->scheme) || sep == url)
            return addr_fail(why, why_len, "unknown scheme");
        memcpy(ep->scheme, url, (size_t)(sep - url));
        rest = sep + 3;
    } else {
        snprintf(ep->scheme, sizeof(ep->scheme), "%s", def_scheme);
    }
    if (strcmp(ep->scheme, "unix") == 0) {
        if (rest[0] != '/' && rest[0] != '@')
            return addr_fail(why, why_len, "a unix endpoint needs a path");
        if (strlen(rest) >= sizeof(ep->path))
            return addr_fail(why, why_len, "unix socket path too long");
        snprintf(ep->path, sizeof(ep->path), "%s", rest);
        return CHAT_OK;
    }
    if (strcmp(ep->scheme, "tcp") != 0 && strcmp(ep->scheme, "udp") != 0)
        return addr_fail(why, why_len, "unknown scheme (tcp, udp or unix)");
    ep->port = def_port;
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');

        if (!close)
            return addr_fail(why, why_len, "missing ']' after IPv6 address");
        hlen = (size_t)(close - rest - 1);
        if (hlen == 0 || hlen >= sizeof(ep->host))
            return addr_fail(why, why_len, "bad IPv6 address");
        memcpy(ep->host, rest + 1, hlen);
        colon = close + 1;
        if (*colon == '\0')
            return CHAT_OK;
        if (*colon != ':')
            return addr_fail(why, why_len, "unexpected text after ']'");
    } else {
        colon = strrchr(rest, ':');
        if (colon && strchr(rest, ':') != colon)
            return addr_fail(why, why_len,
                             "write an IPv6 address in brackets: [::1]:7710");
        hlen = colon ? (size_t)(colon - rest) : strlen(rest);
        if (hlen >= sizeof(ep->host))
            return addr_fail(why, why_len, "host name too long");
        memcpy(ep->host, rest, hlen);
        if (strchr(ep->host, '/'))
            return addr_fail(why, why_len, "unexpected '/' in the host");
        if (hlen == 0)
            return addr_fail(why, why_len, "missing host");
        if (!colon)
            return CHAT_OK;
    }
    if (strchr(colon + 1, '/'))
        return addr_fail(why, why_len, "unexpected path after the port");
    if (addr_parse_port(colon + 1, &ep->port) != CHAT_OK)
        return addr_fail(why, why_len, "port must be a number 0-65535");
    return CHAT_OK;
}

void
addr_format_url(const struct endpoint *ep, char *out, size_t n)
{
    if (strcmp(ep->scheme, "unix") == 0)
        snprintf(out, n, "unix://%s", ep->path);
    else if (strchr(ep->host, ':'))
        snprintf(out, n, "%s://[%s]:%u", ep->scheme, ep->host, ep->port);
    else
        snprintf(out, n, "%s://%s:%u", ep->scheme, ep->host, ep->port);
}

int
addr_resolve(const struct endpoint *ep, bool passive, int socktype,
             struct addr *out, size_t max, size_t *count, char *why,
             size_t why_len)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[8];
    int gai;

    *count = 0;
    if (strcmp(ep->scheme, "unix") == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&out[0].ss;

        if (max == 0)
            return addr_fail(why, why_len, "no room for addresses");
        memset(&out[0], 0, sizeof(out[0]));
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, ep->path, strlen(ep->path));
        if (ep->path[0] == '@') /* Linux abstract namespace */
            sun->sun_path[0] = '\0';
        out[0].len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                 strlen(ep->path) + (ep->path[0] != '@'));
        *count = 1;
        return CHAT_OK;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    snprintf(port, sizeof(port), "%u", ep->port);
    gai = getaddrinfo(ep->host[0] ? ep->host : NULL, port, &hints, &res);
    if (gai != 0)
        return addr_fail(why, why_len, gai_strerror(gai));
    for (ai = res; ai && *count < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(out[*count].ss))
            continue;
        memset(&out[*count], 0, sizeof(out[*count]));
        memcpy(&out[*count].ss, ai->ai_addr, ai->ai_addrlen);
        out[*count].len = ai->ai_addrlen;
        (*count)++;
    }
    freeaddrinfo(res);
    if (*count == 0)
        return addr_fail(why, why_len, "no usable address");
    return CHAT_OK;
}

void
addr_format(const struct addr *a, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN];

    switch (a->ss.ss_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(out, n, "%s:%u", host, ntohs(sin->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(out, n, "[%s]:%u", host, ntohs(sin6->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;
        size_t plen = a->len > offsetof(struct sockaddr_un, sun_path)
                          ? a->len - offsetof(struct sockaddr_un, sun_path)
                          : 0;

        if (plen == 0)
            snprintf(out, n, "unix:(unnamed)");
        else if (sun->sun_path[0] == '\0')
            snprintf(out, n, "@%.*s", (int)(plen - 1), sun->sun_path + 1);
        else
            snprintf(out, n, "%.*s", (int)plen, sun->sun_path);
        break;
    }
    default:
        snprintf(out, n, "(unknown family %d)", a->ss.ss_family);
    }
}

uint16_t
addr_port(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}
