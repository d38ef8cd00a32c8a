/* kz_log.c — one formatted line per call; a single write() keeps lines whole across threads. */
#include "base/kz_log.h"
#include "base/kz_err.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = KZ_LOG_INFO;
static const char *const level_names[] = { "error", "warn", "info", "debug" };

void kz_log_set_level(enum kz_log_level level) { atomic_store(&log_level, (int)level); }
enum kz_log_level kz_log_get_level(void) { return (enum kz_log_level)atomic_load(&log_level); }

int kz_log_level_parse(const char *name, enum kz_log_level *out)
{
	for (unsigned i = 0; i < KZ_ARRAY_LEN(level_names); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum kz_log_level)i;
			return KZ_OK;
		}
	}
	return KZ_EINVAL;
}

void kz_log(enum kz_log_level level, const char *fmt, ...)
{
	if (!KZ_LOG_ENABLED(level))
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}
