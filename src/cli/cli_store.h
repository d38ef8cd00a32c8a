/* cli_store.h — `kizuna store` and `kizuna query`. */
#ifndef CLI_STORE_H
#define CLI_STORE_H
#include "store/store.h"
#include <stdio.h>
int cli_store_main(int argc, char **argv);
int cli_query_main(int argc, char **argv);
/* One record as a JSON object (no newline): seq, id, time, topic, qos, origin, payload. */
void cli_record_json(FILE *f, uint64_t seq, const struct kz_record *r);
#endif
