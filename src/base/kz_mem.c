/* kz_mem.c — see kz_mem.h. */
#include "base/kz_mem.h"

#include <malloc.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
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

/* On the reference VM a fault costs about 13 us per 4 KiB page: 4 MiB of fresh memory took
 * 13.5 ms to touch, 0.2-0.4 ms in huge pages (a throwaway program, six runs each; BENCHMARKS.md
 * "TAXII ingest"). */
#define HUGE_PAGE ((size_t)2 << 20)

void *kz_mem_huge_alloc(size_t n, size_t *mapped)
{
	size_t len = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	if (!len || len + HUGE_PAGE < len)
		return NULL;
	uint8_t *m = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	uint8_t *p = (uint8_t *)(((uintptr_t)m + HUGE_PAGE - 1) & ~((uintptr_t)HUGE_PAGE - 1));
	if (p > m)
		(void)munmap(m, (size_t)(p - m));
	if (p + len < m + len + HUGE_PAGE)
		(void)munmap(p + len, (size_t)(m + len + HUGE_PAGE - (p + len)));
	(void)madvise(p, len, MADV_HUGEPAGE);
	*mapped = len;
	return p;
}

void kz_mem_huge_free(void *p, size_t mapped)
{
	if (p)
		(void)munmap(p, mapped);
}

void *kz_mem_big_alloc(size_t n, size_t *mapped)
{
	*mapped = 0;
	void *p = n >= HUGE_PAGE ? kz_mem_huge_alloc(n, mapped) : NULL;
	return p ? p : malloc(n);
}

/* glibc gives each thread's arena a heap aligned to 64 MiB, grown in place: the bytes are
 * taken from its top and freed back to it (the node keeps freed memory: M_TRIM_THRESHOLD
 * 128 MiB), so the advice stays on the range the thread's later large allocations reuse.
 * The bytes before the first advised address stay allocated (shrunk in place by realloc,
 * untouched): the top then begins in advised memory, and the thread's next allocations
 * (libh2o's smaller request buffers too) do not fill the rest of the heap's first, partly
 * used, 2 MiB in 4 KiB faults (about 490 on a worker's first POST of ICS, BENCHMARKS.md). */
void *kz_mem_arena_huge(size_t bytes)
{
	uint8_t *p = malloc(bytes);
	if (!p)
		return NULL;
	uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~((uintptr_t)HUGE_PAGE - 1);
	uintptr_t e = ((uintptr_t)p + bytes) & ~((uintptr_t)HUGE_PAGE - 1);
	if (e <= a || madvise((void *)a, e - a, MADV_HUGEPAGE)) {
		free(p);
		return NULL;
	}
	size_t held = (size_t)(a - (uintptr_t)p);
	if (held <= sizeof(size_t)) {
		free(p);
		return NULL;
	}
	/* glibc's chunk of held - 8 bytes ends where the next chunk's header (16 bytes) puts that
	 * chunk's memory at a; elsewhere only the advice is lost, not the bytes */
	void *q = realloc(p, held - sizeof(size_t));
	return q ? q : p;
}

void kz_mem_big_free(void *p, size_t mapped)
{
	if (mapped)
		kz_mem_huge_free(p, mapped);
	else
		free(p);
}
