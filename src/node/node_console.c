/* node_console.c — the web console's files (docs/CONSOLE.md), served at / on the HTTPS
 * listener with the client certificate every other path needs. The files are the console's
 * build (console/build.mjs: index.html, hashed bundles, their .gz), read into memory at
 * start: a file is answered from memory, gzip when the browser takes it, with an ETag;
 * hashed files are cached for a year, index.html revalidated each time. Every answer carries a
 * strict Content-Security-Policy: everything from this node, no inline script. */
#include "node/node_console.h"
#include "base/kz_file.h"
#include "base/kz_hash.h"
#include "base/kz_log.h"
#include "http/http.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 256
#define MAX_FILE_BYTES (16u << 20)

struct cfile {
	char path[256];   /* "/index.html", "/assets/app-1a2b3c.js" */
	char *data, *gz;  /* gz: NULL when there is no .gz */
	size_t len, gz_len;
	const char *ctype;
	char etag[24];
	bool immutable;   /* a hashed name: cached for a year */
};

struct node_console {
	struct cfile files[MAX_FILES];
	size_t n;
	char dir[512];
};

static const char CSP[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
			  "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
			  "frame-ancestors 'none'";

static const char *ctype_of(const char *name)
{
	static const struct { const char *ext, *type; } T[] = {
		{ ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },   { ".json", "application/json" },
		{ ".svg", "image/svg+xml" },              { ".png", "image/png" },
		{ ".ico", "image/x-icon" },               { ".woff2", "font/woff2" },
		{ ".txt", "text/plain; charset=utf-8" },  { ".map", "application/json" },
	};
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot && i < sizeof T / sizeof T[0]; i++)
		if (strcmp(dot, T[i].ext) == 0)
			return T[i].type;
	return NULL; /* not served */
}

static char *slurp(const char *path, size_t *len) { return kz_file_read_whole(path, MAX_FILE_BYTES, len); }

/* A hashed name: "-" then 8 or more of [A-Z0-9] just before the extension (esbuild's). */
static bool hashed(const char *name)
{
	const char *dot = strrchr(name, '.'), *dash = dot ? dot : NULL;
	while (dash && dash > name && dash[-1] != '-')
		dash--;
	if (!dot || !dash || dash == name || dot - dash < 8)
		return false;
	for (const char *p = dash; p < dot; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			return false;
	return true;
}

static void load_dir(struct node_console *c, const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && c->n < MAX_FILES) {
		if (e->d_name[0] == '.')
			continue;
		char full[1024], rel[256];
		snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
		if ((size_t)snprintf(rel, sizeof rel, "%s/%s", prefix, e->d_name) >= sizeof c->files[0].path)
			continue;
		struct stat st;
		if (stat(full, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			load_dir(c, full, rel);
			continue;
		}
		const char *ct = ctype_of(e->d_name);
		if (!ct)
			continue; /* .gz files are read with their file */
		struct cfile *f = &c->files[c->n];
		if (!(f->data = slurp(full, &f->len)))
			continue;
		char gzp[1100];
		snprintf(gzp, sizeof gzp, "%s.gz", full);
		f->gz = slurp(gzp, &f->gz_len);
		memcpy(f->path, rel, strlen(rel) + 1); /* fits: checked above */
		f->ctype = ct;
		f->immutable = hashed(e->d_name);
		snprintf(f->etag, sizeof f->etag, "\"%016llx\"", (unsigned long long)kz_hash(f->data, f->len));
		c->n++;
	}
	closedir(d);
}

struct node_console *node_console_load(const char *dir)
{
	struct node_console *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	snprintf(c->dir, sizeof c->dir, "%s", dir);
	load_dir(c, dir, "");
	if (c->n == 0)
		kz_warn("console: no files in %s (build it: npm in console/, see docs/CONSOLE.md); / answers 404", dir);
	else
		kz_info("console: %zu files from %s at https://…/", c->n, dir);
	return c;
}

void node_console_free(struct node_console *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->files[i].data);
		free(c->files[i].gz);
	}
	free(c);
}

static bool accepts_gzip(struct kz_http_req *r)
{
	const char *ae = kz_http_req_header(r, "accept-encoding");
	return ae && strstr(ae, "gzip");
}

static void serve(void *ctx, struct kz_http_req *r)
{
	struct node_console *c = ctx;
	const char *path = strcmp(r->path, "/") == 0 ? "/index.html" : r->path;
	const struct cfile *f = NULL;
	for (size_t i = 0; i < c->n && !f; i++)
		if (strcmp(c->files[i].path, path) == 0)
			f = &c->files[i];
	if (!f || (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0)) {
		if (f) {
			kz_http_header(r, "Allow", "GET, HEAD");
			kz_http_error(r, 405, NULL, "Method Not Allowed", "%s is a file of the console", r->path);
		} else {
			kz_http_error(r, 404, NULL, "Not Found",
				      c->n ? "no resource at %s" : "no resource at %s (the console is not built)", r->path);
		}
		return;
	}
	kz_http_header(r, "Content-Security-Policy", CSP);
	kz_http_header(r, "X-Content-Type-Options", "nosniff");
	kz_http_header(r, "Referrer-Policy", "no-referrer");
	kz_http_header(r, "Cache-Control", f->immutable ? "public, max-age=31536000, immutable" : "no-cache");
	kz_http_header(r, "ETag", f->etag);
	kz_http_header(r, "Vary", "Accept-Encoding");
	const char *inm = kz_http_req_header(r, "if-none-match");
	if (inm && strstr(inm, f->etag)) {
		kz_http_send(r, 304, NULL, "", 0);
		return;
	}
	bool gz = f->gz && accepts_gzip(r);
	if (gz)
		kz_http_header(r, "Content-Encoding", "gzip");
	kz_http_send(r, 200, f->ctype, gz ? f->gz : f->data, gz ? f->gz_len : f->len);
}

int node_console_route(struct node_console *c, struct kz_http *h)
{
	return kz_http_route(h, "/", true, serve, c);
}

const char *node_console_default_dir(char *buf, size_t n)
{
	/* installed: <prefix>/bin/kizuna and <prefix>/share/kizuna/console; else the build's */
	char exe[600];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (k > 0) {
		exe[k] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(buf, n, "%s/../share/kizuna/console", exe);
			struct stat st;
			if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
				return buf;
		}
	}
	snprintf(buf, n, "%s", KZ_CONSOLE_BUILD_DIR);
	return buf;
}

int node_console_start(const char *setting, struct kz_http *h, struct node_console **out)
{
	*out = NULL;
	if (strcmp(setting, "none") == 0)
		return 0;
	char buf[1024];
	const char *dir = strcmp(setting, "auto") == 0 ? node_console_default_dir(buf, sizeof buf) : setting;
	if (!(*out = node_console_load(dir)))
		return 0;
	return node_console_route(*out, h);
}
