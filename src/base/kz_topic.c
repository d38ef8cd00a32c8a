/* kz_topic.c — topic-filter matching. */
#include "base/kz_topic.h"

#include <string.h>

bool kz_topic_match(const uint8_t *f, size_t fl, const uint8_t *t, size_t tl)
{
	if (tl > 0 && t[0] == '$' && fl > 0 && (f[0] == '+' || f[0] == '#'))
		return false;
	size_t i = 0, j = 0;
	while (i < fl) {
		if (f[i] == '#')
			return true; /* matches the parent level and everything below */
		if (f[i] == '+') {
			while (j < tl && t[j] != '/')
				j++;
			i++;
		} else {
			while (i < fl && j < tl && f[i] != '/' && f[i] == t[j]) {
				i++;
				j++;
			}
			if (i < fl && f[i] != '/')
				return false;
			if (j < tl && t[j] != '/')
				return false;
		}
		/* both at a '/' or at an end */
		if (i == fl)
			return j == tl;
		/* filter has '/' */
		if (j == tl) {
			/* "a/#" matches "a" */
			return fl - i == 2 && f[i + 1] == '#';
		}
		i++;
		j++;
	}
	return j == tl;
}

bool kz_filter_covers(const char *r, size_t rn, const char *f, size_t fn)
{
	/* §4.7.2: a filter starting with a wildcard does not match topics starting with '$'. */
	if (fn && f[0] == '$' && rn && (r[0] == '+' || r[0] == '#'))
		return false;
	size_t i = 0, j = 0;
	for (;;) {
		size_t re = i, fe = j;
		while (re < rn && r[re] != '/')
			re++;
		while (fe < fn && f[fe] != '/')
			fe++;
		bool r_hash = re - i == 1 && r[i] == '#';
		if (r_hash)
			return true;
		bool f_hash = fe - j == 1 && f[j] == '#';
		if (f_hash)
			return false;
		bool r_plus = re - i == 1 && r[i] == '+';
		if (!r_plus && (re - i != fe - j || memcmp(r + i, f + j, re - i)))
			return false;
		bool r_end = re >= rn, f_end = fe >= fn;
		if (r_end && f_end)
			return true;
		if (f_end) /* "a/#" covers "a" */
			return rn - re == 2 && r[re + 1] == '#';
		if (r_end)
			return false;
		i = re + 1;
		j = fe + 1;
	}
}

bool kz_name_valid(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '_' || ch == ':' || ch == '@' || ch == '~' || ch == '-'))
			return false;
	}
	return true;
}

bool kz_list_has(const char *list, const char *name)
{
	size_t kn = strlen(name);
	for (const char *q = list; *q;) {
		const char *c = strchr(q, ',');
		size_t n = c ? (size_t)(c - q) : strlen(q);
		if (n == kn && !memcmp(q, name, n))
			return true;
		q += n + (c != NULL);
	}
	return false;
}
