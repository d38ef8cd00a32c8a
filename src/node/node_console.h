/* node_console.h — the web console's files at / (node_console.c, docs/CONSOLE.md). */
#ifndef KZ_NODE_CONSOLE_H
#define KZ_NODE_CONSOLE_H

#include <stddef.h>

struct kz_http;
struct node_console;

/* https.console_dir: "none" (*out NULL), "auto" or a directory, read and routed at /. -1: no
 * route left (*out is set and must be freed). */
int node_console_start(const char *setting, struct kz_http *h, struct node_console **out);
/* Reads the console's build from dir (none there: / answers 404, with a warning). */
struct node_console *node_console_load(const char *dir);
int node_console_route(struct node_console *c, struct kz_http *h);
void node_console_free(struct node_console *c);
/* https.console_dir = auto: <prefix>/share/kizuna/console next to an installed binary, else
 * the build tree's console/. */
const char *node_console_default_dir(char *buf, size_t n);

#endif
