/* kz_jscan.h — finding the boundaries of JSON values in text without parsing it (the
 * parser, jansson, runs on each value found): envelopes split into their objects, and
 * `kizuna stix import` streaming a bundle of any size. */
#ifndef KZ_JSCAN_H
#define KZ_JSCAN_H
#include <stddef.h>
/* The first index at or after i that is not JSON white space (n when none). */
size_t kz_json_skip_ws(const char *p, size_t n, size_t i);
/* The end (one past) of the JSON value that starts at p[i]: a string, object or array by
 * its closing character (strings and escapes respected), a scalar at the next delimiter.
 * 0 when the value does not end within n bytes (incomplete, or not JSON). */
size_t kz_json_value_end(const char *p, size_t n, size_t i);
#endif
