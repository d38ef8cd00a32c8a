/* kz_time.c — clock helpers. */
#include "base/kz_time.h"
#include <stdio.h>
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

void kz_deadline_ms(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	uint64_t ns = (uint64_t)ts->tv_nsec + ms % 1000u * 1000000u;
	ts->tv_sec += (time_t)(ms / 1000u + ns / 1000000000u);
	ts->tv_nsec = (long)(ns % 1000000000u);
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int kz_time_parse(const char *s, uint64_t *ns)
{
	int y, mo, d, h, mi, se;
	const char *p = s;
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
		return -1;
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
		return -1;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -1;
	int64_t frac = 0;
	if (*p == '.') {
		p++;
		int n = 0;
		while (*p >= '0' && *p <= '9') {
			if (n < 9) {
				frac = frac * 10 + (*p - '0');
				n++;
			}
			p++;
		}
		if (n == 0)
			return -1;
		while (n++ < 9)
			frac *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
			return -1;
		off = sign * (oh * 3600 + om * 60);
	} else {
		return -1;
	}
	if (*p)
		return -1;
	if (se == 60) /* a leap second: POSIX time has none */
		se = 59;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			 .tm_min = mi, .tm_sec = se };
	int64_t secs = (int64_t)timegm(&tm) - off;
	if (secs < 0 || secs > INT64_MAX / 1000000000 - 1)
		return -1;
	*ns = (uint64_t)secs * 1000000000u + (uint64_t)frac;
	return 0;
}

/* Writes v as n decimal digits (zero-padded) at p. */
static void put_digits(char *p, uint32_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian; Howard Hinnant's
 * civil_from_days): no gmtime_r, strftime or snprintf on a path that formats a time per
 * entity of a snapshot. */
void kz_time_format(uint64_t ns, char out[32])
{
	uint64_t secs = ns / 1000000000u;
	uint32_t frac = (uint32_t)(ns % 1000000000u), sod = (uint32_t)(secs % 86400u);
	int64_t z = (int64_t)(secs / 86400u) + 719468;
	int64_t era = z / 146097;
	uint32_t doe = (uint32_t)(z - era * 146097);
	uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	uint32_t mp = (5 * doy + 2) / 153;
	uint32_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
	uint32_t y = (uint32_t)(yoe + era * 400) + (m <= 2);
	if (y > 9999) { /* beyond what four digits say: as before, through the C library */
		time_t t = (time_t)secs;
		struct tm tm;
		gmtime_r(&t, &tm);
		size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(out + n, 32 - n, ".%09uZ", (unsigned)frac);
		return;
	}
	put_digits(out, y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, sod / 3600, 2);
	out[13] = ':';
	put_digits(out + 14, sod / 60 % 60, 2);
	out[16] = ':';
	put_digits(out + 17, sod % 60, 2);
	out[19] = '.';
	put_digits(out + 20, frac, 9);
	out[29] = 'Z';
	out[30] = 0;
}
