/* kz_time.c — clock helpers. */
#include "base/kz_time.h"
#include <time.h>

static uint64_t ts_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t kz_now_mono_ms(void) { return ts_ns(CLOCK_MONOTONIC) / 1000000u; }
uint64_t kz_now_mono_ns(void) { return ts_ns(CLOCK_MONOTONIC); }
uint64_t kz_now_wall_ns(void) { return ts_ns(CLOCK_REALTIME); }
