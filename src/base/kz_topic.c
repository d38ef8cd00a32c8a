/* kz_topic.c — topic-filter matching. */
#include "base/kz_topic.h"

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
