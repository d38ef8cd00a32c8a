/* test_kz_mem.c — the huge-page hints of kz_mem: a huge buffer is 2 MiB aligned and advised
 * (VM_HUGEPAGE, "hg" in /proc/self/smaps), a small one is malloc'd, and kz_mem_arena_huge
 * leaves a thread's later large malloc in advised memory (as libh2o's request buffers are on
 * a network worker). */
#include "base/kz_mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <pthread.h>

#include <cmocka.h>

#define MIB ((size_t)1 << 20)

#if defined(__SANITIZE_ADDRESS__)
#define KZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KZ_ASAN 1
#endif
#endif

/* 1: the mapping holding addr is advised MADV_HUGEPAGE; 0: it is not; -1: not found */
static int advised(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	int in = 0, r = -1;
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') == line + strspn(line, "0123456789abcdef"))
			in = a >= lo && a < hi;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			r = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return r;
}

static int thp_possible(void)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return 0;
	char s[128] = "";
	int ok = fgets(s, sizeof s, f) && !strstr(s, "[never]");
	fclose(f);
	return ok;
}

static void huge_alloc(void **state)
{
	(void)state;
	size_t mapped = 0;
	uint8_t *p = kz_mem_huge_alloc(3 * MIB, &mapped);
	assert_non_null(p);
	assert_int_equal(mapped, 4 * MIB);
	assert_int_equal((uintptr_t)p % (2 * MIB), 0);
	memset(p, 0xa5, 3 * MIB);
	if (thp_possible())
		assert_int_equal(advised(p), 1);
	kz_mem_huge_free(p, mapped);

	void *q = kz_mem_big_alloc(100, &mapped);
	assert_non_null(q);
	assert_int_equal(mapped, 0);
	kz_mem_big_free(q, mapped);
	q = kz_mem_big_alloc(5 * MIB, &mapped);
	assert_non_null(q);
	assert_int_equal(mapped, 6 * MIB);
	kz_mem_big_free(q, mapped);
}

#ifndef KZ_ASAN
static void *arena_thread(void *arg)
{
	int *res = arg;
	free(malloc(100)); /* the thread's arena, its first 2 MiB partly used (as a worker's is) */
	void *pad = kz_mem_arena_huge(24 * MIB);
	/* as libh2o grows a request buffer: 16 KiB, 1, 2, 4 MiB, each copied into the next */
	uint8_t *s = malloc(16 << 10), *a = malloc(1 * MIB), *b = malloc(2 * MIB);
	res[2] = s && a ? advised(s) + 2 * advised(a + MIB - 1) : -2; /* the smaller ones too */
	free(s);
	free(a);
	uint8_t *c = malloc(4 * MIB);
	free(b);
	res[0] = res[1] = -2;
	if (c) {
		uintptr_t in = ((uintptr_t)c + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1);
		res[0] = in + 2 * MIB <= (uintptr_t)c + 4 * MIB;
		res[1] = advised((void *)in);
	}
	free(c);
	free(pad);
	return NULL;
}
#endif

static void arena_huge(void **state)
{
	(void)state;
#ifdef KZ_ASAN
	skip(); /* the sanitizer's allocator has no glibc arenas */
#else
	if (!thp_possible())
		skip();
	mallopt(M_MMAP_THRESHOLD, 32 << 20); /* as kizuna serve sets it */
	int res[3];
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, arena_thread, res), 0);
	pthread_join(t, NULL);
	assert_int_equal(res[0], 1); /* a whole huge page inside the 4 MiB block */
	assert_int_equal(res[1], 1); /* and it is advised */
	assert_int_equal(res[2], 3); /* a 16 KiB and a 1 MiB block malloc'd first are advised too */
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(huge_alloc),
		cmocka_unit_test(arena_huge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
