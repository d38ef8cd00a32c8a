/* kz_log.h — leveled, thread-safe logging to stderr, one line per event. */
#ifndef KZ_LOG_H
#define KZ_LOG_H

enum kz_log_level { KZ_LOG_ERROR, KZ_LOG_WARN, KZ_LOG_INFO, KZ_LOG_DEBUG };

void kz_log_set_level(enum kz_log_level level);
enum kz_log_level kz_log_get_level(void);
/* Returns 0 and sets *out, or KZ_EINVAL for an unknown name. */
int kz_log_level_parse(const char *name, enum kz_log_level *out);
void kz_log(enum kz_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define KZ_LOG_ENABLED(lvl) ((lvl) <= kz_log_get_level())
#define kz_error(...) kz_log(KZ_LOG_ERROR, __VA_ARGS__)
#define kz_warn(...) kz_log(KZ_LOG_WARN, __VA_ARGS__)
#define kz_info(...) kz_log(KZ_LOG_INFO, __VA_ARGS__)
#define kz_debug(...) do { if (KZ_LOG_ENABLED(KZ_LOG_DEBUG)) kz_log(KZ_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
