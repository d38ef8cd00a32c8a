/* kz_jscan.c — JSON value boundaries (see kz_jscan.h). */
#include "base/kz_jscan.h"

#include <stdbool.h>

size_t kz_json_skip_ws(const char *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

size_t kz_json_value_end(const char *p, size_t n, size_t i)
{
	int depth = 0;
	bool in_str = false;
	for (; i < n; i++) {
		char ch = p[i];
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"') {
				in_str = false;
				if (depth == 0)
					return i + 1;
			}
		} else if (ch == '"')
			in_str = true;
		else if (ch == '{' || ch == '[')
			depth++;
		else if (ch == '}' || ch == ']') {
			if (--depth == 0)
				return i + 1;
			if (depth < 0)
				return i; /* a scalar ended by its container */
		} else if (depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'))
			return i;
	}
	return 0;
}
