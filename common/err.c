#include "err.h"

#include <errno.h>
#include <string.h>

const char *
chat_strerror(int rc)
{
    switch (rc) {
    case CHAT_OK:
        return "success";
    case CHAT_ESYS:
        return strerror(errno);
    case CHAT_EAGAIN:
        return "try again";
    case CHAT_EPROTO:
        return "protocol error";
    case CHAT_ETOOBIG:
        return "too large";
    case CHAT_ECRYPTO:
        return "cryptographic check failed";
    case CHAT_ERANGE:
        return "value out of range";
    case CHAT_EADDR:
        return "bad address";
    case CHAT_ECLOSED:
        return "connection closed";
    case CHAT_EFULL:
        return "full";
    case CHAT_ENOMEM:
        return "out of memory";
    }
    return "unknown error";
}
