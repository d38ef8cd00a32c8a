/* fuzz_text.c — the text parsers an operator or client controls: RFC 3339 times and record
 * ids (query options, kz-replay-since), retention rules and whole configuration files.
 * Input: one selector byte, then the text. Round trips must agree. */
#include "base/kz_time.h"
#include "node/node_config.h"
#include "store/store.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 8192)
		return 0;
	char *s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	switch (data[0] % 4) {
	case 0: {
		uint64_t ns, again;
		char out[32];
		if (kz_time_parse(s, &ns) == 0) {
			kz_time_format(ns, out);
			assert(kz_time_parse(out, &again) == 0 && again == ns);
		}
		break;
	}
	case 1: {
		uint8_t id[16], again[16];
		char out[37];
		if (kz_uuid_parse(s, id) == 0) {
			kz_uuid_format(id, out);
			assert(kz_uuid_parse(out, again) == 0 && memcmp(id, again, 16) == 0);
		}
		break;
	}
	case 2: {
		struct kz_retention_rule r;
		const char *why;
		if (node_config_parse_rule(s, &r, &why) == 0)
			assert(r.filter[0] && (r.max_age_ns || r.max_bytes || r.keep_last || r.no_qos0));
		break;
	}
	case 3: {
		int fd = memfd_create("conf", 0);
		if (fd < 0)
			break;
		if (write(fd, data + 1, size - 1) == (ssize_t)(size - 1)) {
			char path[64];
			snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
			struct node_config cfg;
			node_config_default(&cfg);
			FILE *devnull = fopen("/dev/null", "w");
			(void)node_config_load(&cfg, path, devnull);
			fclose(devnull);
		}
		close(fd);
		break;
	}
	}
	free(s);
	return 0;
}
