/* commands.h - the requests of PROTOCOL.md section 3, one handler each.
 * The entry point, commands_dispatch(), is declared in server.h. */
#ifndef SOCKCHAT_COMMANDS_H
#define SOCKCHAT_COMMANDS_H

#include "server.h"

/* Build the list replies so that they fit max_frame (section 4.1). Exposed
 * for unit tests. Each returns a new object. */
cJSON *commands_build_room(const struct room *r, size_t max_frame,
                           const cJSON *id);
cJSON *commands_build_members(const struct room *r, size_t max_frame,
                              const cJSON *id);

#endif /* SOCKCHAT_COMMANDS_H */
