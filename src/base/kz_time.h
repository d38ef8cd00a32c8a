/* kz_time.h — monotonic and wall clocks in integer units; RFC 3339 time stamps. */
#ifndef KZ_TIME_H
#define KZ_TIME_H
#include <stddef.h>
#include <stdint.h>
uint64_t kz_now_mono_ms(void);
uint64_t kz_now_mono_ns(void);
uint64_t kz_now_wall_ns(void);
struct timespec;
/* *ts = the wall clock ms from now: the deadline pthread_cond_timedwait takes (a condition
 * made with the default, CLOCK_REALTIME). */
void kz_deadline_ms(struct timespec *ts, uint64_t ms);
/* Parses an RFC 3339 date-time ("2026-11-22T15:48:22Z", "…T15:48:22.123456789+01:00";
 * 't', 'z' and a space for 'T' accepted) into Unix ns. Returns 0, or -1 when malformed or
 * before 1970. */
int kz_time_parse(const char *s, uint64_t *ns);
/* Formats Unix ns as RFC 3339 UTC with nanoseconds: 30 characters plus NUL. */
void kz_time_format(uint64_t ns, char out[32]);
#endif
