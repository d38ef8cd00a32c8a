/* kz_array.h — growable arrays: one place for the grow-by-doubling arithmetic every list,
 * queue and table of the node uses, with its overflow checks. */
#ifndef KZ_ARRAY_H
#define KZ_ARRAY_H

#include <stddef.h>
#include <stdint.h>

/* Room for need elements of esz bytes in v (cap of them allocated; v may be NULL when cap
 * is 0): the capacity doubles, starting at first, until it holds need, and never goes past
 * max (the caller's type: UINT32_MAX for a uint32_t count). The reallocated array, with its
 * capacity in *new_cap; NULL (v untouched, still owned by the caller) when out of memory or
 * need is over max. New elements are not initialised. */
void *kz_array_grow(void *v, size_t esz, size_t cap, size_t need, size_t first, size_t max, size_t *new_cap);

#endif
