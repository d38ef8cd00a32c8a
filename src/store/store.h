/* store.h — the durable record log: the record envelope, CRC32C-framed segment files with
 * recovery, and the store thread that appends batches and makes them durable with one
 * fdatasync per batch (group commit). The on-disk format is in docs/STORE.md.
 *
 * Threads: any number of producers hand batches to kz_store_submit() (one lock per batch);
 * one store thread writes, syncs and calls each item's done callback (on the store thread),
 * in submission order. Readers scan closed and open segments with kz_log_scan() at any time:
 * they see every record that was written (synced or not) before they reached it. */
#ifndef STORE_H
#define STORE_H

#include "base/kz_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------- CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2 ---------- */

uint32_t kz_crc32c(uint32_t crc, const void *p, size_t n);

/* ---------- the record envelope (ARCHITECTURE.md "The record") ---------- */

struct kz_bytes {
	const uint8_t *p;
	uint32_t len;
};

enum kz_precedence { KZ_PREC_ROUTINE = 0, KZ_PREC_PRIORITY = 1, KZ_PREC_IMMEDIATE = 2, KZ_PREC_FLASH = 3 };

/* Decoded fields point into the encoded bytes (zero copy). */
struct kz_record {
	uint8_t id[16];          /* UUIDv7 */
	uint64_t time_ns;        /* accept time, Unix ns */
	uint64_t source_time_ns; /* 0 = not supplied */
	uint64_t expiry_ns;      /* absolute Unix ns, 0 = never */
	uint8_t precedence;      /* enum kz_precedence */
	uint8_t qos;             /* MQTT QoS it was published with */
	bool retain;             /* MQTT retain flag */
	struct kz_bytes topic, origin_node, origin_id, label, content_type;
	struct kz_bytes mqtt_props; /* MQTT 5 properties to forward (encoded property block) */
	struct kz_bytes payload;
};

#define KZ_RECORD_VERSION 1

/* Appends the encoded record to out. */
int kz_record_encode(const struct kz_record *r, struct kz_buf *out);
/* Decodes exactly n bytes; KZ_EMALFORMED with *why on any inconsistency. */
int kz_record_decode(const uint8_t *p, size_t n, struct kz_record *r, const char **why);
/* A UUIDv7 (RFC 9562 §5.7) for the given Unix time in ms: 48-bit time, version, 74 random
 * bits; ids made by one thread are strictly increasing (the random part counts up within a
 * millisecond). */
void kz_uuidv7(uint8_t id[16], uint64_t unix_ms);
/* 36-character canonical text form plus NUL. */
void kz_uuid_format(const uint8_t id[16], char out[37]);
int kz_uuid_parse(const char *s, uint8_t id[16]);

/* ---------- the segmented log ---------- */

enum kz_fsync_mode { KZ_FSYNC_ALWAYS, KZ_FSYNC_INTERVAL, KZ_FSYNC_NEVER };

struct kz_log_config {
	const char *dir;           /* the log directory (created when missing) */
	uint64_t segment_bytes;    /* roll to a new segment beyond this */
	uint32_t max_record_bytes; /* larger frames are corruption */
	enum kz_fsync_mode fsync;
	uint32_t fsync_interval_ms;
};

struct kz_log;

/* What recovery found, for the start-up log line. */
struct kz_log_recovery {
	uint32_t segments;
	uint64_t records;
	uint64_t torn_bytes; /* cut from the end of the last segment (a torn final write) */
};

/* Opens (creating) the log and recovers it: every segment is checked frame by frame; a torn
 * final write is truncated; any other damage fails with *why naming the segment file and
 * byte offset (run `kizuna store repair`). */
int kz_log_open(const struct kz_log_config *cfg, struct kz_log **out, struct kz_log_recovery *rec,
		char *why, size_t why_len);
/* Appends frames for n bodies in one write (rolling segments as needed), then syncs per the
 * fsync mode. first_seq receives the sequence number of the first. */
int kz_log_append(struct kz_log *log, const struct kz_bytes *bodies, size_t n, uint64_t *first_seq,
		  char *why, size_t why_len);
/* In interval mode: fdatasync when written data is older than the interval. */
int kz_log_sync_due(struct kz_log *log, char *why, size_t why_len);
uint64_t kz_log_next_seq(const struct kz_log *log);
void kz_log_close(struct kz_log *log);

/* Calls cb for every valid record with seq >= from_seq, in order, until cb returns non-zero
 * (which is returned). Damage stops the scan with KZ_EIO and *why (file and offset); a
 * partial frame at the very end (being written) ends the scan quietly. */
typedef int (*kz_log_scan_fn)(void *ctx, uint64_t seq, const uint8_t *body, size_t n);
int kz_log_scan(const char *dir, uint64_t from_seq, uint32_t max_record_bytes, kz_log_scan_fn cb,
		void *ctx, char *why, size_t why_len);

/* Repairs the log in place: each damaged range is moved to DIR/quarantine/ and reported on
 * report (one line per range: segment, offsets, bytes, and the records lost if countable). */
int kz_log_repair(const char *dir, uint32_t max_record_bytes, void (*report)(void *ctx, const char *line),
		  void *ctx, char *why, size_t why_len);

/* ---------- the store thread ---------- */

/* status: KZ_OK when the record is durable per the fsync mode, else an error (nothing was
 * acknowledged). Called on the store thread. */
typedef void (*kz_store_done_fn)(void *ctx, int status, uint64_t seq);

struct kz_store_item {
	uint8_t *data; /* malloc'd encoded record; the store frees it */
	uint32_t len;
	kz_store_done_fn done;
	void *ctx;
};

struct kz_store;

int kz_store_open(const struct kz_log_config *cfg, struct kz_store **out, struct kz_log_recovery *rec,
		  char *why, size_t why_len);
/* Takes n items (their data) in one step; their done callbacks follow on the store thread. */
void kz_store_submit(struct kz_store *st, struct kz_store_item *items, size_t n);
/* Writes what was submitted, calls its callbacks, stops the thread, closes the log. */
void kz_store_close(struct kz_store *st);

#endif
