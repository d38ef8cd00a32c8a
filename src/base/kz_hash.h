/* kz_hash.h — seeded string hash (SipHash-2-4 via a per-process random key). */
#ifndef KZ_HASH_H
#define KZ_HASH_H
#include <stddef.h>
#include <stdint.h>
/* Seeds the process key from getrandom(); call once at start (idempotent). */
void kz_hash_seed(void);
uint64_t kz_hash(const void *p, size_t n);
#endif
