/* stix_time.c — STIX timestamps (STIX 2.1 §2.14: RFC 3339, UTC with 'Z', optional
 * fraction) and the TLP marking definitions (NOTES.md). */
#include "services/stix/stix.h"

#include "base/kz_time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int dig(const char *s, int n, int *v)
{
	int x = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int stix_timestamp(const char *s, int64_t *us, int *frac)
{
	int y, mo, d, h, mi, se;
	size_t n = strlen(s);
	if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || dig(s, 4, &y) ||
	    dig(s + 5, 2, &mo) || dig(s + 8, 2, &d) || dig(s + 11, 2, &h) || dig(s + 14, 2, &mi) || dig(s + 17, 2, &se))
		return -1;
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 60)
		return -1;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] + (mo == 2 && leap))
		return -1;
	const char *p = s + 19;
	int64_t f = 0;
	int nf = 0;
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			if (nf < 6)
				f = f * 10 + (*p - '0');
			nf++;
			p++;
		}
		if (nf == 0 || nf > 9) /* at most nanoseconds: no timestamp carries more */
			return -1;
	}
	if (p[0] != 'Z' || p[1] != 0)
		return -1;
	for (int i = nf; i < 6; i++)
		f *= 10;
	if (se == 60)
		se = 59, f = 999999; /* a leap second sorts just before the next minute */
	*us = (days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se) * 1000000 + f;
	if (frac)
		*frac = nf;
	return 0;
}

void stix_format_us(int64_t us, char out[64])
{
	if (us >= 0 && us <= INT64_MAX / 1000) { /* 1970 to 2262: by hand (kz_time_format), no lock in gmtime_r */
		kz_time_format((uint64_t)us * 1000u, out);
		out[26] = 'Z'; /* microseconds: the last three of its nine digits are zero */
		out[27] = 0;
		return;
	}
	time_t t = (time_t)(us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
	int64_t f = us - (int64_t)t * 1000000;
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)f);
}

/* ---------- TLP ---------- */

/* KZ_TLP_* values (trust/policy.h): CLEAR 1, GREEN 2, AMBER 3, AMBER+STRICT 4, RED 5. */
static const struct {
	const char *id;
	int tlp;
} tlp_ids[] = {
	{ "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487", 1 }, /* TLP 2.0 CLEAR */
	{ "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb", 2 }, /* TLP 2.0 GREEN */
	{ "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", 3 }, /* TLP 2.0 AMBER */
	{ "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003", 4 }, /* TLP 2.0 AMBER+STRICT */
	{ "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", 5 }, /* TLP 2.0 RED */
	{ "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9", 1 }, /* TLP 1.0 WHITE */
	{ "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da", 2 }, /* TLP 1.0 GREEN */
	{ "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82", 3 }, /* TLP 1.0 AMBER */
	{ "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed", 5 }, /* TLP 1.0 RED */
	{ "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37", 4 }, /* OpenCTI AMBER+STRICT */
};

int stix_tlp_of(const char *id)
{
	if (strncmp(id, "marking-definition--", 20) != 0)
		return 0;
	for (size_t i = 0; i < sizeof tlp_ids / sizeof tlp_ids[0]; i++)
		if (strcmp(id, tlp_ids[i].id) == 0)
			return tlp_ids[i].tlp;
	return 0;
}

const char *stix_tlp2_id(int tlp) { return tlp >= 1 && tlp <= 5 ? tlp_ids[tlp - 1].id : NULL; }

#define TLP2_OBJ(ID, NAME, V)                                                                                    \
	"{\"type\":\"marking-definition\",\"spec_version\":\"2.1\",\"id\":\"" ID "\",\"created\":\"2022-10-01T00:00:00.000Z\"," \
	"\"name\":\"TLP:" NAME "\",\"extensions\":{\"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d\":"  \
	"{\"extension_type\":\"property-extension\",\"tlp_2_0\":\"" V "\"}}}"

const char *stix_tlp2_object(int tlp)
{
	static const char *const objs[] = {
		TLP2_OBJ("marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487", "CLEAR", "clear"),
		TLP2_OBJ("marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb", "GREEN", "green"),
		TLP2_OBJ("marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", "AMBER", "amber"),
		TLP2_OBJ("marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003", "AMBER+STRICT", "amber+strict"),
		TLP2_OBJ("marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", "RED", "red"),
	};
	return tlp >= 1 && tlp <= 5 ? objs[tlp - 1] : NULL;
}
