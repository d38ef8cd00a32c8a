/* kz_utf8.c — UTF-8 validation (RFC 3629), with MQTT's ban on U+0000 in strings. */
#include "base/kz_utf8.h"

bool kz_utf8_valid(const uint8_t *p, size_t n, bool mqtt_string)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		if (c < 0x80) {
			if (c == 0 && mqtt_string)
				return false;
			i++;
			continue;
		}
		uint32_t cp;
		size_t need;
		if (c >= 0xC2 && c <= 0xDF) {
			cp = c & 0x1Fu;
			need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			cp = c & 0x0Fu;
			need = 2;
		} else if (c >= 0xF0 && c <= 0xF4) {
			cp = c & 0x07u;
			need = 3;
		} else {
			return false;
		}
		if (n - i - 1 < need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			uint8_t cc = p[i + k];
			if ((cc & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (cc & 0x3Fu);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF)
			return false;
		if (cp >= 0xD800 && cp <= 0xDFFF)
			return false;
		i += need + 1;
	}
	return true;
}
