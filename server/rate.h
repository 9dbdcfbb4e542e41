/* rate.h - a token bucket per client.
 *
 * The bucket holds up to burst tokens and gains per_sec tokens a second;
 * each request takes one. per_sec == 0 means no limit.
 */
#ifndef SOCKCHAT_RATE_H
#define SOCKCHAT_RATE_H

#include <stdbool.h>
#include <stdint.h>

struct rate {
    double tokens;
    int64_t last_ms; /* monotonic time of the last refill */
};

/* A full bucket at time now_ms. */
void rate_init(struct rate *r, double burst, int64_t now_ms);

/* Take one token at now_ms. true when allowed; false when the bucket is
 * empty (nothing taken). */
bool rate_take(struct rate *r, double per_sec, double burst, int64_t now_ms);

#endif /* SOCKCHAT_RATE_H */
