/* kz_mem.h — giving freed memory back to the system, but not all of it (glibc). */
#ifndef KZ_MEM_H
#define KZ_MEM_H

#include <stddef.h>

/* How much freed memory the process keeps for reuse (set once at start; default 64 MiB). */
void kz_mem_keep_set(size_t bytes);
/* Gives freed memory back (malloc_trim) when the arenas hold more of it than the keep:
 * after a flood the high-water mark goes back, while the memory a steady load frees and
 * takes again stays mapped (each fresh page costs a fault). 1 when it trimmed. */
int kz_mem_trim(void);

/* A large buffer (n bytes or more, *mapped returned) in transparent huge pages: mapped on its
 * own, 2 MiB aligned, with MADV_HUGEPAGE (a hint; 4 KiB pages where the kernel says no). For
 * buffers of megabytes written once into fresh memory, where a page fault per 4 KiB page is
 * the cost. NULL when it cannot be mapped. Freed with kz_mem_huge_free. */
void *kz_mem_huge_alloc(size_t n, size_t *mapped);
void kz_mem_huge_free(void *p, size_t mapped);
/* n bytes: in huge pages from 2 MiB on (*mapped: the bytes mapped), else (or when that fails)
 * malloc'd (*mapped 0). Freed with kz_mem_big_free(p, *mapped). */
void *kz_mem_big_alloc(size_t n, size_t *mapped);
void kz_mem_big_free(void *p, size_t mapped);
/* Asks for huge pages under the calling thread's malloc arena: bytes are malloc'd, the
 * 2 MiB-aligned part of them is advised MADV_HUGEPAGE (nothing is touched), and that part is
 * freed back to the arena, where later allocations of this thread (libh2o's request
 * buffers) fault it in 2 MiB at a time. Needs the mmap threshold above bytes. Returns the
 * part before the advised memory, held so that the thread's next allocations come from
 * advised memory: free it when the thread ends (NULL: nothing held). */
void *kz_mem_arena_huge(size_t bytes);

#endif
