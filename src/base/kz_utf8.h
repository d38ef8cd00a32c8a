/* kz_utf8.h — strict UTF-8 validation as MQTT requires (MQTT 5.0 §1.5.4, 3.1.1 §1.5.3). */
#ifndef KZ_UTF8_H
#define KZ_UTF8_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
/* True when p[0..n) is well-formed UTF-8 with no surrogates, no overlongs and, when
 * mqtt_string, no U+0000 (which MQTT strings must not contain). */
bool kz_utf8_valid(const uint8_t *p, size_t n, bool mqtt_string);
#endif
