/* kz_mem.c — see kz_mem.h. */
#include "base/kz_mem.h"

#include <malloc.h>
#include <stdatomic.h>

static _Atomic size_t keep = (size_t)64 << 20;

void kz_mem_keep_set(size_t bytes) { atomic_store(&keep, bytes); }

int kz_mem_trim(void)
{
	struct mallinfo2 mi = mallinfo2(); /* fordblks: free bytes in the arenas' chunks */
	if (mi.fordblks <= atomic_load(&keep))
		return 0;
	malloc_trim(0);
	return 1;
}
