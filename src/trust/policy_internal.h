/* policy_internal.h — shared between the policy's parser (policy.c) and its decisions
 * (policy_decide.c); not for other modules. */
#ifndef KZ_POLICY_INTERNAL_H
#define KZ_POLICY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/* spiffe://TD/ORG/KIND/NAME with a known KIND (copied into kind when kind_cap > 0). */
bool kz_policy_spiffe_ok(const char *id, char *kind, size_t kind_cap);

#endif
