#include "rate.h"

void
rate_init(struct rate *r, double burst, int64_t now_ms)
{
    r->tokens = burst;
    r->last_ms = now_ms;
}

bool
rate_take(struct rate *r, double per_sec, double burst, int64_t now_ms)
{
    if (per_sec <= 0)
        return true;
    if (now_ms > r->last_ms) {
        r->tokens += (double)(now_ms - r->last_ms) * per_sec / 1000.0;
        r->last_ms = now_ms;
    }
    /* A lowered burst (SIGHUP) takes effect at once. */
    if (r->tokens > burst)
        r->tokens = burst;
    if (r->tokens < 1.0)
        return false;
    r->tokens -= 1.0;
    return true;
}
