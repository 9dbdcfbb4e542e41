/* err.h - one error space for common/ and the programs.
 *
 * Functions return int: CHAT_OK (0) or one of the negative codes below.
 * CHAT_ESYS means "look at errno".
 */
#ifndef SOCKCHAT_ERR_H
#define SOCKCHAT_ERR_H

enum chat_err {
    CHAT_OK = 0,
    CHAT_ESYS = -1,    /* a system call failed; errno says why */
    CHAT_EAGAIN = -2,  /* not enough data yet / would block */
    CHAT_EPROTO = -3,  /* the peer broke the protocol */
    CHAT_ETOOBIG = -4, /* a length or size over its limit */
    CHAT_ECRYPTO = -5, /* a cryptographic check failed */
    CHAT_ERANGE = -6,  /* a value out of its allowed range */
    CHAT_EADDR = -7,   /* an address or URL that cannot be used */
    CHAT_ECLOSED = -8, /* the peer closed the stream in order */
    CHAT_EFULL = -9,   /* a bounded queue or table is full */
    CHAT_ENOMEM = -10, /* an allocation failed (g_try_malloc returned NULL) */
};

/* Static human text for rc; for CHAT_ESYS, strerror(errno) at call time. */
const char *chat_strerror(int rc);

#endif /* SOCKCHAT_ERR_H */
