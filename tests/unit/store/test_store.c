/* test_store.c — record envelope, CRC32C, UUIDv7, the segmented log (recovery, torn tail,
 * corruption, repair, rolling) and the store thread's group commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/kz_err.h"
#include "store/store.h"

#include <sqlite3.h>

static char dir[256];

static int setup(void **st)
{
	snprintf(dir, sizeof dir, "/tmp/kz-store-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **st)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct kz_bytes B(const char *s) { return (struct kz_bytes){ (const uint8_t *)s, (uint32_t)strlen(s) }; }

static void test_crc32c(void **st)
{
	/* RFC 3720 appendix B.4 check value */
	assert_int_equal(kz_crc32c(0, "123456789", 9), 0xE3069283u);
	uint8_t zeros[32] = { 0 };
	assert_int_equal(kz_crc32c(0, zeros, 32), 0x8A9136AAu);
	/* incremental = one shot */
	assert_int_equal(kz_crc32c(kz_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
	/* long buffers (three streams joined, both block sizes, and the tail) at every alignment
	 * against a bit-at-a-time reference, whole and split at a random point */
	static uint8_t buf[20008];
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < sizeof buf; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (int t = 0; t < 300; t++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t off = x % 8, n = t < 40 ? (size_t)t * 97 : (size_t)(x >> 8) % 20000;
		uint32_t want = 0xFFFFFFFFu;
		for (size_t i = 0; i < n; i++) {
			want ^= buf[off + i];
			for (int k = 0; k < 8; k++)
				want = want & 1 ? (want >> 1) ^ 0x82F63B78u : want >> 1;
		}
		want = ~want;
		assert_int_equal(kz_crc32c(0, buf + off, n), want);
		size_t cut = n ? (size_t)(x >> 20) % n : 0;
		assert_int_equal(kz_crc32c(kz_crc32c(0, buf + off, cut), buf + off + cut, n - cut), want);
	}
}

static void test_uuidv7(void **st)
{
	uint8_t a[16], b[16];
	kz_uuidv7(a, 1700000000000ull);
	for (int i = 0; i < 100000; i++) {
		kz_uuidv7(b, 1700000000000ull); /* same millisecond: must still increase */
		assert_true(memcmp(a, b, 16) < 0);
		assert_int_equal(b[6] >> 4, 7);
		assert_int_equal(b[8] >> 6, 2);
		memcpy(a, b, 16);
	}
	char s[37];
	kz_uuid_format(a, s);
	assert_int_equal(strlen(s), 36);
	uint8_t c[16];
	assert_int_equal(kz_uuid_parse(s, c), KZ_OK);
	assert_memory_equal(a, c, 16);
	assert_int_equal(kz_uuid_parse("not-a-uuid", c), KZ_EINVAL);
}

/* Attributes: written as version 2, read back in order; a version 1 record (MQTT 5
 * properties in the same field) reads as the same attributes; malformed lists are refused. */
static void test_record_attributes(void **st)
{
	struct kz_buf attrs, b;
	kz_buf_init(&attrs, 0);
	kz_buf_init(&b, 0);
	size_t ends[4];
	assert_int_equal(kz_rec_attr_append(&attrs, KZ_RATTR_UTF8_PAYLOAD, NULL, 0, NULL, 0), KZ_OK);
	ends[0] = attrs.len;
	assert_int_equal(kz_rec_attr_append(&attrs, KZ_RATTR_RESPONSE_TOPIC, NULL, 0, "re/1", 4), KZ_OK);
	ends[1] = attrs.len;
	assert_int_equal(kz_rec_attr_append(&attrs, KZ_RATTR_USER, "k", 1, "v1", 2), KZ_OK);
	ends[2] = attrs.len;
	char big[300];
	memset(big, 'x', sizeof big);
	assert_int_equal(kz_rec_attr_append(&attrs, KZ_RATTR_USER, "k", 1, big, sizeof big), KZ_OK);
	ends[3] = attrs.len;
	struct kz_record r = { .qos = 1 };
	r.topic = B("a/b");
	r.attrs = (struct kz_bytes){ kz_buf_head(&attrs), (uint32_t)attrs.len };
	assert_int_equal(kz_record_encode(&r, &b), KZ_OK);
	struct kz_record d;
	const char *why;
	assert_int_equal(kz_record_decode(kz_buf_head(&b), b.len, &d, &why), KZ_OK);
	assert_int_equal(d.version, 2);
	struct kz_rec_attr a;
	size_t off = 0;
	assert_true(kz_rec_attr_next(&d, &off, &a));
	assert_int_equal(a.kind, KZ_RATTR_UTF8_PAYLOAD);
	assert_true(kz_rec_attr_next(&d, &off, &a));
	assert_int_equal(a.kind, KZ_RATTR_RESPONSE_TOPIC);
	assert_int_equal(a.value.len, 4);
	assert_memory_equal(a.value.p, "re/1", 4);
	assert_true(kz_rec_attr_next(&d, &off, &a));
	assert_int_equal(a.kind, KZ_RATTR_USER);
	assert_memory_equal(a.name.p, "k", 1);
	assert_memory_equal(a.value.p, "v1", 2);
	assert_true(kz_rec_attr_next(&d, &off, &a));
	assert_int_equal(a.value.len, sizeof big);
	assert_false(kz_rec_attr_next(&d, &off, &a));
	/* a list cut anywhere but between attributes is malformed */
	for (uint32_t cut = 1; cut < attrs.len; cut++) {
		struct kz_buf c;
		kz_buf_init(&c, 0);
		r.attrs.len = cut;
		bool boundary = cut == ends[0] || cut == ends[1] || cut == ends[2] || cut == ends[3];
		assert_int_equal(kz_record_encode(&r, &c), KZ_OK);
		assert_int_equal(kz_record_decode(kz_buf_head(&c), c.len, &d, &why), boundary ? KZ_OK : KZ_EMALFORMED);
		kz_buf_cleanup(&c);
	}
	/* version 1: Payload Format 1, Content Type, Response Topic, Correlation Data, a User
	 * Property, as the node wrote them before attributes (MQTT 5.0 §3.3.2.3) */
	static const uint8_t v1props[] = { 0x01, 1, 0x03, 0, 4, 't', 'e', 'x', 't', 0x08, 0, 2, 'r', 't',
					   0x09, 0, 1, 0xAA, 0x26, 0, 1, 'k', 0, 2, 'v', '1' };
	struct kz_record o = { .qos = 1, .version = 1 };
	o.topic = B("a/b");
	o.attrs = (struct kz_bytes){ v1props, sizeof v1props };
	kz_buf_reset(&b);
	assert_int_equal(kz_record_encode(&o, &b), KZ_OK);
	assert_int_equal(kz_record_decode(kz_buf_head(&b), b.len, &d, &why), KZ_OK);
	assert_int_equal(d.version, 1);
	struct kz_bytes ct = kz_record_content_type(&d); /* a will's record: only in the properties */
	assert_int_equal(ct.len, 4);
	assert_memory_equal(ct.p, "text", 4);
	static const uint8_t kinds[] = { KZ_RATTR_UTF8_PAYLOAD, KZ_RATTR_RESPONSE_TOPIC, KZ_RATTR_CORRELATION,
					 KZ_RATTR_USER };
	off = 0;
	for (size_t i = 0; i < sizeof kinds; i++) {
		assert_true(kz_rec_attr_next(&d, &off, &a));
		assert_int_equal(a.kind, kinds[i]);
	}
	assert_int_equal(a.name.len, 1);
	assert_memory_equal(a.value.p, "v1", 2);
	assert_false(kz_rec_attr_next(&d, &off, &a));
	/* a version 1 record with a property the node never forwarded is malformed */
	static const uint8_t v1bad[] = { 0x23, 0, 5 }; /* Topic Alias */
	o.attrs = (struct kz_bytes){ v1bad, sizeof v1bad };
	kz_buf_reset(&b);
	assert_int_equal(kz_record_encode(&o, &b), KZ_OK);
	assert_int_equal(kz_record_decode(kz_buf_head(&b), b.len, &d, &why), KZ_EMALFORMED);
	/* versions the reader does not know */
	kz_buf_head(&b)[0] = 3;
	assert_int_equal(kz_record_decode(kz_buf_head(&b), b.len, &d, &why), KZ_EMALFORMED);
	kz_buf_cleanup(&attrs);
	kz_buf_cleanup(&b);
}

static void test_record_roundtrip_and_malformed(void **st)
{
	struct kz_record r = { .time_ns = 123, .source_time_ns = 45, .expiry_ns = 999,
			       .precedence = KZ_PREC_FLASH, .qos = 2, .retain = true };
	kz_uuidv7(r.id, 1);
	r.topic = B("tracks/air/1");
	r.origin_node = B("node-a");
	r.origin_id = B("spiffe://kizuna.local/dev/sensor/radar1");
	r.label = B("policy=jp-mod;class=secret");
	r.content_type = B("application/json");
	r.payload = B("{\"x\":1}");
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert_int_equal(kz_record_encode(&r, &b), KZ_OK);
	struct kz_record d;
	const char *why;
	assert_int_equal(kz_record_decode(kz_buf_head(&b), b.len, &d, &why), KZ_OK);
	assert_memory_equal(d.id, r.id, 16);
	assert_int_equal(d.time_ns, 123);
	assert_int_equal(d.source_time_ns, 45);
	assert_int_equal(d.expiry_ns, 999);
	assert_int_equal(d.precedence, KZ_PREC_FLASH);
	assert_int_equal(d.qos, 2);
	assert_true(d.retain);
	assert_int_equal(d.topic.len, 12);
	assert_memory_equal(d.topic.p, "tracks/air/1", 12);
	assert_memory_equal(d.payload.p, "{\"x\":1}", 7);
	assert_int_equal(d.attrs.len, 0);
	assert_int_equal(d.version, KZ_RECORD_VERSION);
	assert_false(d.service);
	/* reserved topics: only a service's record may be there (issue 16) */
	struct kz_buf rb;
	kz_buf_init(&rb, 0);
	struct kz_record rr = r;
	rr.topic = B("$taxii/c/indicator/x/1");
	assert_int_equal(kz_record_encode(&rr, &rb), KZ_EDENIED);
	assert_int_equal(rb.len, 0);
	rr.service = true;
	assert_int_equal(kz_record_encode(&rr, &rb), KZ_OK);
	assert_int_equal(kz_record_decode(kz_buf_head(&rb), rb.len, &d, &why), KZ_OK);
	assert_true(d.service);
	kz_buf_cleanup(&rb);
	assert_int_equal(kz_record_decode(kz_buf_head(&b), b.len, &d, &why), KZ_OK);
	/* every truncation is rejected, as are trailing bytes and bad fixed fields */
	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(kz_record_decode(kz_buf_head(&b), n, &d, &why), KZ_EMALFORMED);
	uint8_t *p = kz_buf_head(&b);
	uint8_t longer[512];
	memcpy(longer, p, b.len);
	longer[b.len] = 0;
	assert_int_equal(kz_record_decode(longer, b.len + 1, &d, &why), KZ_EMALFORMED);
	longer[0] = 9;
	assert_int_equal(kz_record_decode(longer, b.len, &d, &why), KZ_EMALFORMED);
	assert_string_equal(why, "unknown record version");
	kz_buf_cleanup(&b);
}

static struct kz_reclog_config cfg(uint64_t seg)
{
	return (struct kz_reclog_config){ .dir = dir, .segment_bytes = seg, .max_record_bytes = 1 << 20,
				       .fsync = KZ_FSYNC_ALWAYS };
}

static void append_n(struct kz_reclog *log, int from, int n)
{
	char why[256];
	for (int i = from; i < from + n; i++) {
		char body[32];
		snprintf(body, sizeof body, "record-%06d", i);
		struct kz_bytes b = B(body);
		uint64_t seq;
		assert_int_equal(kz_reclog_append(log, &b, 1, &seq, why, sizeof why), KZ_OK);
		assert_int_equal(seq, (uint64_t)i);
	}
}

struct collect {
	uint64_t n, first, last;
	int stop_at;
};

static int collect_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n,
		      const struct kz_reclog_pos *pos)
{
	struct collect *c = ctx;
	(void)pos;
	char want[32];
	snprintf(want, sizeof want, "record-%06d", (int)seq);
	if (n == strlen(want))
		assert_memory_equal(body, want, n);
	if (c->n++ == 0)
		c->first = seq;
	c->last = seq;
	return c->stop_at && (int)c->n == c->stop_at ? 7 : 0;
}

static void test_log_reopen_and_scan(void **st)
{
	struct kz_reclog_config c = cfg(1 << 20);
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_int_equal(kz_reclog_next_seq(log), 1);
	append_n(log, 1, 100);
	kz_reclog_close(log);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_int_equal(rec.records, 100);
	assert_int_equal(rec.torn_bytes, 0);
	assert_int_equal(kz_reclog_next_seq(log), 101);
	append_n(log, 101, 5);
	struct collect col = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 50, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.n, 56);
	assert_int_equal(col.first, 50);
	assert_int_equal(col.last, 105);
	struct collect stop = { .stop_at = 3 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &stop, why, sizeof why), 7);
	kz_reclog_close(log);
}

static int count_others(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	(void)seq, (void)pos;
	*(uint64_t *)ctx += n == 12 && memcmp(body, "other-", 6) == 0;
	return 0;
}

/* A thread keeps its last segment mapped between scans (store_log.c "a reader thread's
 * mapping"): what is appended after one scan is seen by the next, beyond the room first
 * mapped too, and a segment file replaced under the same name is read afresh. */
static void test_log_scan_mapping_kept(void **st)
{
	(void)st;
	struct kz_reclog_config c = cfg(256u << 20);
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	append_n(log, 1, 10);
	struct collect col = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.last, 10);
	append_n(log, 11, 20);
	col = (struct collect){ 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.n, 30);
	/* far past the room mapped at first (1 MiB beyond the file): 70 records of 1 MiB less a
	 * little, the pages let go every 4 MiB */
	static uint8_t big[(1 << 20) - 64];
	for (int i = 0; i < 70; i++) {
		struct kz_bytes b = { big, sizeof big };
		uint64_t seq;
		assert_int_equal(kz_reclog_append(log, &b, 1, &seq, why, sizeof why), KZ_OK);
	}
	col = (struct collect){ 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.n, 100);
	assert_int_equal(col.last, 100);
	kz_reclog_close(log);
	/* the same segment name, another file: 3 records only */
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf %s/*", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	for (int i = 0; i < 3; i++) {
		struct kz_bytes b = B("other-000000");
		uint64_t seq;
		assert_int_equal(kz_reclog_append(log, &b, 1, &seq, why, sizeof why), KZ_OK);
	}
	uint64_t others = 0;
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, count_others, &others, why, sizeof why), KZ_OK);
	assert_int_equal(others, 3);
	kz_reclog_close(log);
}

static void test_log_rolls_segments(void **st)
{
	struct kz_reclog_config c = cfg(1024); /* ~36 records per segment */
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	append_n(log, 1, 500);
	kz_reclog_close(log);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_true(rec.segments > 10);
	assert_int_equal(rec.records, 500);
	struct collect col = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 333, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.first, 333);
	assert_int_equal(col.n, 168);
	kz_reclog_close(log);
}

static char *last_segment(void)
{
	static char path[512];
	char cmd[400];
	snprintf(cmd, sizeof cmd, "ls %s/*.seg | tail -1", dir);
	FILE *f = popen(cmd, "r");
	assert_non_null(fgets(path, sizeof path, f));
	pclose(f);
	path[strcspn(path, "\n")] = 0;
	return path;
}

/* Reads by position with and without a read-ahead window agree, frame by frame, in and
 * across windows, over frames larger than the window, across segments; a frame not there
 * (another sequence number, a segment cut shorter) is KZ_ENOTFOUND, a flipped byte KZ_EIO,
 * and forget drops what the window held. */
static void test_log_read_ahead(void **st)
{
	struct kz_reclog_config c = cfg(64 << 10);
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	enum { N = 300 };
	static char body[N][5000];
	struct kz_bytes b[N];
	struct kz_reclog_pos pos[N];
	for (int i = 0; i < N; i++) {
		size_t n = 20 + (size_t)(i * 7919 % 4900); /* 20 to 4919 bytes: many per window, and some larger */
		if (i % 50 == 7)
			n = 4999;
		memset(body[i], 'a' + i % 26, n);
		snprintf(body[i], 16, "%d:", i);
		body[i][strlen(body[i])] = '-';
		b[i] = (struct kz_bytes){ (const uint8_t *)body[i], (uint32_t)n };
	}
	uint64_t first;
	for (int i = 0; i < N; i += 30)
		assert_int_equal(kz_reclog_append_pos(log, b + i, 30, &first, pos + i, why, sizeof why), KZ_OK);
	assert_int_equal(first, N - 30 + 1);
	struct kz_reclog_reader plain, ahead;
	kz_reclog_reader_init(&plain, dir, 1 << 20);
	kz_reclog_reader_init(&ahead, dir, 1 << 20);
	kz_reclog_reader_readahead(&ahead, 4096); /* smaller than some frames */
	struct kz_buf x, y;
	kz_buf_init(&x, 0);
	kz_buf_init(&y, 0);
	for (int pass = 0; pass < 3; pass++) {
		for (int k = 0; k < N; k++) {
			int i = pass == 0 ? k : pass == 1 ? N - 1 - k : (k * 37) % N; /* forward, backward, jumping */
			assert_int_equal(kz_reclog_read(&plain, &pos[i], (uint64_t)i + 1, &x), KZ_OK);
			assert_int_equal(kz_reclog_read(&ahead, &pos[i], (uint64_t)i + 1, &y), KZ_OK);
			assert_int_equal(y.len, b[i].len);
			assert_memory_equal(kz_buf_head(&y), body[i], b[i].len);
			assert_memory_equal(kz_buf_head(&x), kz_buf_head(&y), x.len);
		}
	}
	assert_true(pos[N - 1].seg != pos[0].seg); /* the frames went over several segments */
	assert_int_equal(kz_reclog_read(&ahead, &pos[5], 7, &y), KZ_ENOTFOUND); /* not record 7 */
	kz_reclog_close(log);
	/* the last segment cut in the middle of its last frame: served from the window until
	 * forget, then not found */
	assert_int_equal(kz_reclog_read(&ahead, &pos[N - 1], N, &y), KZ_OK);
	assert_int_equal(truncate(last_segment(), (off_t)pos[N - 1].off + 100), 0);
	assert_int_equal(kz_reclog_read(&ahead, &pos[N - 1], N, &y), KZ_OK);
	kz_reclog_reader_forget(&ahead);
	assert_int_equal(kz_reclog_read(&ahead, &pos[N - 1], N, &y), KZ_ENOTFOUND);
	assert_int_equal(kz_reclog_read(&plain, &pos[N - 1], N, &x), KZ_ENOTFOUND);
	/* a flipped byte in a frame's body */
	int fd = open(last_segment(), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "#", 1, (off_t)pos[N - 2].off + 40), 1);
	close(fd);
	kz_reclog_reader_forget(&ahead);
	assert_int_equal(kz_reclog_read(&ahead, &pos[N - 2], N - 1, &y), KZ_EIO);
	kz_reclog_reader_close(&plain);
	kz_reclog_reader_close(&ahead);
	kz_buf_cleanup(&x);
	kz_buf_cleanup(&y);
}

static void test_log_torn_tail_is_cut(void **st)
{
	struct kz_reclog_config c = cfg(1 << 20);
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	append_n(log, 1, 10);
	kz_reclog_close(log);
	/* half a frame at the end, as an interrupted write leaves it */
	int fd = open(last_segment(), O_WRONLY | O_APPEND);
	uint8_t part[20] = { 40, 0, 0, 0, 1, 2, 3, 4, 11 };
	assert_int_equal(write(fd, part, sizeof part), (ssize_t)sizeof part);
	close(fd);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_int_equal(rec.torn_bytes, 20);
	assert_int_equal(rec.records, 10);
	append_n(log, 11, 1); /* appends continue where the valid log ended */
	kz_reclog_close(log);
	struct collect col = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.n, 11);
}

static void report_cb(void *ctx, const char *line)
{
	strncat((char *)ctx, line, 2000);
	strncat((char *)ctx, "\n", 2);
}

static void test_log_corruption_stops_and_repair(void **st)
{
	struct kz_reclog_config c = cfg(1 << 20);
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	append_n(log, 1, 20);
	kz_reclog_close(log);
	/* flip one payload byte of record 5: frames are 16 + 13 bytes after a 32-byte header */
	const char *seg = last_segment();
	int fd = open(seg, O_RDWR);
	off_t off = 32 + 4 * 29 + 16 + 3;
	uint8_t x;
	assert_int_equal(pread(fd, &x, 1, off), 1);
	x ^= 0x40;
	assert_int_equal(pwrite(fd, &x, 1, off), 1);
	close(fd);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_EIO);
	assert_non_null(strstr(why, "offset 148: CRC32C mismatch"));
	assert_non_null(strstr(why, "kizuna store repair"));
	struct collect col = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_EIO);
	char out[4096] = "";
	assert_int_equal(kz_reclog_repair(dir, 1 << 20, report_cb, out, why, sizeof why), KZ_OK);
	assert_non_null(strstr(out, "1 records lost (seq 5-5)"));
	assert_non_null(strstr(out, "1 damaged range(s) quarantined"));
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_int_equal(rec.records, 19);
	assert_int_equal(kz_reclog_next_seq(log), 21);
	kz_reclog_close(log);
	char q[300];
	snprintf(q, sizeof q, "%s/quarantine", dir);
	struct stat sb;
	assert_int_equal(stat(q, &sb), 0);
}

static char *first_segment(void)
{
	static char path[512];
	char cmd[400];
	snprintf(cmd, sizeof cmd, "ls %s/*.seg | head -1", dir);
	FILE *f = popen(cmd, "r");
	assert_non_null(fgets(path, sizeof path, f));
	pclose(f);
	path[strcspn(path, "\n")] = 0;
	return path;
}

static uint64_t count_records(void)
{
	struct collect col = { 0 };
	char why[512];
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	return col.n;
}

/* The damage fixtures of issue 3: a truncated segment header, a zeroed tail, garbage
 * appended — each where recovery may cut it (the end of the log) and where it must stop
 * (a closed segment), and what repair makes of the latter. (A flipped bit is
 * test_log_corruption_stops_and_repair.) */
static void test_log_damage_fixtures(void **st)
{
	struct kz_reclog_config c = cfg(200); /* frames of 29 bytes: 5 or 6 per segment */
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512], out[4096];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	append_n(log, 1, 40);
	kz_reclog_close(log);

	/* zeroed tail: the last two frames of the last segment are zeros (a file extended
	 * but never written, after a power loss): cut as a torn end */
	int fd = open(last_segment(), O_RDWR);
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t zeros[58] = { 0 };
	assert_int_equal(pwrite(fd, zeros, sizeof zeros, end - 58), 58);
	close(fd);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_int_equal(rec.torn_bytes, 58);
	kz_reclog_close(log);
	assert_int_equal(count_records(), 38);

	/* garbage appended at the end of the log: cut too */
	fd = open(last_segment(), O_WRONLY | O_APPEND);
	uint8_t junk[100];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
	close(fd);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_int_equal(rec.torn_bytes, 100);
	kz_reclog_close(log);
	assert_int_equal(count_records(), 38);

	/* garbage appended to a closed segment: damage before the end — the start stops */
	char first[512];
	snprintf(first, sizeof first, "%s", first_segment());
	fd = open(first, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, junk, 10), 10);
	close(fd);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_EIO);
	assert_non_null(strstr(why, first));
	assert_non_null(strstr(why, "the log is damaged before its end"));
	out[0] = 0;
	assert_int_equal(kz_reclog_repair(dir, 1 << 20, report_cb, out, why, sizeof why), KZ_OK);
	assert_non_null(strstr(out, "(10 bytes)"));
	assert_int_equal(count_records(), 38); /* the garbage cost no record */

	/* a closed segment's header cut short: the start stops; repair quarantines the
	 * segment and names it */
	assert_int_equal(truncate(first, 20), 0);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_EIO);
	assert_non_null(strstr(why, "offset 0: bad segment header"));
	out[0] = 0;
	assert_int_equal(kz_reclog_repair(dir, 1 << 20, report_cb, out, why, sizeof why), KZ_OK);
	assert_non_null(strstr(out, "bad header: whole segment (20 bytes) quarantined"));
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	uint64_t left = rec.records;
	assert_true(left > 30 && left < 38);
	assert_int_equal(kz_reclog_next_seq(log), 39); /* numbering goes on; nothing reused */
	kz_reclog_close(log);

	/* a new last segment whose header was being written when the node stopped (a roll):
	 * it goes, and appends continue in the segment before it */
	char torn[512];
	snprintf(torn, sizeof torn, "%s/%020d.seg", dir, 39);
	fd = open(torn, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, "KZLOGSEG\1\0", 10), 10);
	close(fd);
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	assert_int_equal(kz_reclog_next_seq(log), 39);
	append_n(log, 39, 1);
	kz_reclog_close(log);
	assert_int_equal(count_records(), left + 1);
}

/* A store on dir with segments of 1 MiB. */
static struct kz_store *open_store(void)
{
	struct kz_store_config c = { .log = cfg(1 << 20) };
	struct kz_store *s;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_store_open(&c, &s, &rec, why, sizeof why), KZ_OK);
	return s;
}

static atomic_int done_n;
static atomic_uint_fast64_t done_seq_sum;

static void done_cb(void *ctx, int status, uint64_t seq)
{
	assert_int_equal(status, KZ_OK);
	assert_int_equal(seq, (uint64_t)(uintptr_t)ctx);
	atomic_fetch_add(&done_seq_sum, seq);
	atomic_fetch_add(&done_n, 1);
}

static void test_store_thread_group_commit(void **st)
{
	struct kz_store *s = open_store();
	char why[512];
	atomic_store(&done_n, 0);
	int seq = 1;
	for (int batch = 0; batch < 50; batch++) {
		struct kz_store_item items[20];
		for (int i = 0; i < 20; i++, seq++) {
			char body[32];
			int n = snprintf(body, sizeof body, "record-%06d", seq);
			items[i].data = (uint8_t *)strdup(body);
			items[i].len = (uint32_t)n;
			items[i].done = done_cb;
			items[i].ctx = (void *)(uintptr_t)seq; /* submission order = sequence order */
			items[i].pos = NULL;
			items[i].borrowed = false;
		}
		kz_store_submit(s, items, 20);
		if (batch == 24) { /* a ticket: done once the first 500 have had their callbacks */
			uint64_t t = kz_store_ticket(s);
			assert_int_equal(t, 500);
			while (!kz_store_ticket_done(s, t))
				nanosleep(&(struct timespec){ 0, 100000 }, NULL);
			assert_true(atomic_load(&done_n) >= 500);
		}
	}
	assert_int_equal(kz_store_ticket(s), 1000);
	kz_store_close(s); /* writes everything submitted first */
	assert_int_equal(atomic_load(&done_n), 1000);
	assert_int_equal(atomic_load(&done_seq_sum), 1000 * 1001 / 2);
	struct collect col = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.n, 1000);
}

/* The scan reads through a window of 256 KiB (store_scan.c): frames that straddle it, frames
 * larger than it, a resume hint in the middle, a torn end (quiet) and a flipped byte before
 * the end (an error with its offset). */
struct sized {
	uint64_t n, bytes, first;
	bool bad;
};

static int sized_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	(void)pos;
	struct sized *z = ctx;
	if (!z->n)
		z->first = seq;
	/* record i holds (i * 7919) % 700001 + 1 bytes of the byte (i & 0xff) */
	size_t want = (size_t)((seq * 7919) % 700001) + 1;
	if (n != want || body[0] != (uint8_t)(seq & 0xff) || body[n - 1] != (uint8_t)(seq & 0xff))
		z->bad = true;
	z->n++;
	z->bytes += n;
	return 0;
}

static void test_scan_window_edges(void **st)
{
	(void)st;
	struct kz_reclog_config c = cfg(64 << 20);
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	char why[512];
	assert_int_equal(kz_reclog_open(&c, &log, &rec, why, sizeof why), KZ_OK);
	uint8_t *body = malloc(700001);
	assert_non_null(body);
	struct kz_reclog_pos mid = { 0, 0 };
	for (uint64_t i = 1; i <= 60; i++) {
		size_t n = (size_t)((i * 7919) % 700001) + 1;
		memset(body, (int)(i & 0xff), n);
		struct kz_bytes b = { body, (uint32_t)n };
		uint64_t seq;
		struct kz_reclog_pos pos;
		assert_int_equal(kz_reclog_append_pos(log, &b, 1, &seq, &pos, why, sizeof why), KZ_OK);
		if (i == 37)
			mid = pos;
	}
	kz_reclog_close(log);
	free(body);
	struct sized z = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, sized_cb, &z, why, sizeof why), KZ_OK);
	assert_int_equal(z.n, 60);
	assert_false(z.bad);
	struct sized h = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 37, &mid, 1 << 20, sized_cb, &h, why, sizeof why), KZ_OK);
	assert_int_equal(h.first, 37);
	assert_int_equal(h.n, 24);
	assert_false(h.bad);
	/* a frame being written at the end: its header and part of its body */
	char seg[512];
	snprintf(seg, sizeof seg, "%s/%020d.seg", dir, 1);
	int fd = open(seg, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	uint8_t part[300000] = { 0 };
	part[0] = 0x40, part[1] = 0x0d, part[2] = 0x03; /* 200,000 bytes announced */
	assert_int_equal(write(fd, part, sizeof part / 2), (ssize_t)sizeof part / 2);
	close(fd);
	struct sized t = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, sized_cb, &t, why, sizeof why), KZ_OK);
	assert_int_equal(t.n, 60);
	/* a flipped byte inside record 37: the scan stops there, with the offset */
	fd = open(seg, O_RDWR);
	assert_true(fd >= 0);
	uint8_t x;
	assert_int_equal(pread(fd, &x, 1, (off_t)mid.off + 16 + 1000), 1);
	x ^= 0x10;
	assert_int_equal(pwrite(fd, &x, 1, (off_t)mid.off + 16 + 1000), 1);
	close(fd);
	struct sized d = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, sized_cb, &d, why, sizeof why), KZ_EIO);
	assert_int_equal(d.n, 36);
	char off[64];
	snprintf(off, sizeof off, "offset %" PRIu64 ": CRC32C mismatch", mid.off);
	assert_non_null(strstr(why, off));
}

/* Records borrowed from one block (a TAXII POST's): the store writes them, never frees them,
 * and the last one's done frees the block (AddressSanitizer sees a free of an inner pointer or
 * a leak). */
struct borrow {
	uint8_t *block;
	atomic_int left;
	int done;
};

static void borrow_done(void *ctx, int status, uint64_t seq)
{
	struct borrow *b = ctx;
	assert_int_equal(status, KZ_OK);
	assert_true(seq >= 1);
	b->done++;
	if (atomic_fetch_sub(&b->left, 1) == 1) {
		free(b->block);
		b->block = NULL;
	}
}

static void test_store_borrowed_block(void **st)
{
	(void)st;
	struct kz_store *s = open_store();
	char why[512];
	struct borrow b = { malloc(300 * 16), 300, 0 };
	assert_non_null(b.block);
	struct kz_store_item items[300];
	for (int i = 0; i < 300; i++) {
		snprintf((char *)b.block + 16 * i, 16, "borrowed-%05d", i);
		items[i] = (struct kz_store_item){ b.block + 16 * i, 15, borrow_done, &b, NULL, true };
	}
	kz_store_submit(s, items, 150);
	kz_store_submit(s, items + 150, 150); /* a POST may span two batches */
	kz_store_close(s);
	assert_int_equal(b.done, 300);
	assert_null(b.block);
	struct collect col = { 0 };
	assert_int_equal(kz_reclog_scan(dir, 1, NULL, 1 << 20, collect_cb, &col, why, sizeof why), KZ_OK);
	assert_int_equal(col.n, 300);
}

static void test_session_entry_roundtrip(void **st)
{
	(void)st;
	struct kz_state_sub subs[2] = { { "jobs/#", NULL, 1, 0, false, true, 7 }, { "s/+", "g1", 2, 2, true, false, 0 } };
	struct kz_state_will w = { { (const uint8_t *)"will/t", 6 }, { (const uint8_t *)"bye", 3 }, { NULL, 0 }, 1, true, 5, 60, true };
	struct kz_session_entry e = { .owner = "n1", .epoch = 3, .cut_ns = 123456789, .updated_ns = 42,
				      .s = { .client_id = "c1", .peer_id = "spiffe://kizuna.local/dev/user/a", .expiry_s = 300,
					     .offline_since_ns = 9, .will = &w, .subs = subs, .n_subs = 2 } };
	struct kz_buf b;
	kz_buf_init(&b, 0);
	assert_int_equal(kz_session_entry_encode(&e, &b), KZ_OK);
	struct kz_session_entry d;
	void *blk;
	const char *why = NULL;
	assert_int_equal(kz_session_entry_decode(kz_buf_head(&b), b.len, &d, &blk, &why), KZ_OK);
	assert_string_equal(d.owner, "n1");
	assert_int_equal(d.epoch, 3);
	assert_int_equal(d.cut_ns, 123456789);
	assert_false(d.ended);
	assert_string_equal(d.s.client_id, "c1");
	assert_string_equal(d.s.peer_id, "spiffe://kizuna.local/dev/user/a");
	assert_int_equal(d.s.expiry_s, 300);
	assert_int_equal(d.s.n_subs, 2);
	assert_string_equal(d.s.subs[0].filter, "jobs/#");
	assert_null(d.s.subs[0].group);
	assert_true(d.s.subs[0].retain_as_published);
	assert_int_equal(d.s.subs[0].sub_id, 7);
	assert_string_equal(d.s.subs[1].group, "g1");
	assert_true(d.s.subs[1].no_local);
	assert_int_equal(d.s.subs[1].qos, 2);
	assert_non_null(d.s.will);
	assert_int_equal(d.s.will->payload.len, 3);
	assert_memory_equal(d.s.will->payload.p, "bye", 3);
	assert_int_equal(d.s.will->delay_s, 5);
	free(blk);
	/* every cut is refused, never read past the end */
	for (size_t n = 0; n < b.len; n++) {
		assert_int_not_equal(kz_session_entry_decode(kz_buf_head(&b), n, &d, &blk, &why), KZ_OK);
		assert_non_null(why);
	}
	/* a byte too many, an unknown flag */
	assert_int_equal(kz_buf_append(&b, "x", 1), KZ_OK);
	assert_int_equal(kz_session_entry_decode(kz_buf_head(&b), b.len, &d, &blk, &why), KZ_EMALFORMED);
	kz_buf_head(&b)[4] |= 0x80;
	assert_int_equal(kz_session_entry_decode(kz_buf_head(&b), b.len - 1, &d, &blk, &why), KZ_EMALFORMED);
	assert_string_equal(why, "session entry flags unknown");
	kz_buf_cleanup(&b);
}

static void floor_done(void *ctx, int status, uint64_t seq)
{
	(void)ctx;
	(void)status;
	(void)seq;
}

static void test_store_time_floor(void **st)
{
	(void)st;
	struct kz_store *s = open_store();
	assert_int_equal(kz_store_time_floor(s, 0), UINT64_MAX); /* nothing after 0 */
	/* three batches: times 500, 100 (a record followed late), 900 */
	uint64_t times[3] = { 500, 100, 900 };
	for (int i = 0; i < 3; i++) {
		struct kz_record r = { .time_ns = times[i], .topic = { (const uint8_t *)"t", 1 } };
		struct kz_buf b;
		kz_buf_init(&b, 0);
		assert_int_equal(kz_record_encode(&r, &b), KZ_OK);
		uint8_t *d = malloc(b.len);
		memcpy(d, kz_buf_head(&b), b.len);
		struct kz_store_item it = { d, (uint32_t)b.len, floor_done, NULL, NULL, false };
		kz_store_submit(s, &it, 1);
		kz_buf_cleanup(&b);
		while (kz_store_durable_next(s) < (uint64_t)i + 2)
			usleep(1000);
	}
	assert_int_equal(kz_store_time_floor(s, 0), 100);
	assert_int_equal(kz_store_time_floor(s, 1), 100);
	assert_int_equal(kz_store_time_floor(s, 2), 900);
	assert_int_equal(kz_store_time_floor(s, 3), UINT64_MAX);
	kz_store_close(s);
}

static int load_one(void *ctx, const struct kz_state_session *ss)
{
	struct kz_state_session *out = ctx;
	out->epoch = ss->epoch;
	out->expiry_s = ss->expiry_s;
	out->acked_through = ss->acked_through;
	out->n_subs = ss->will != NULL; /* stands for "it has a will" */
	return 0;
}

/* sessions.db keeps a session's cluster epoch; a database made before the column existed
 * gets it at open, its sessions at epoch 0 */
static void test_state_epoch_and_old_schema(void **st)
{
	char path[300], why[256];
	snprintf(path, sizeof path, "%s/sessions.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TABLE session(client_id TEXT PRIMARY KEY, peer_id TEXT, expiry_s INTEGER NOT NULL,"
				      " offline_since_ns INTEGER NOT NULL DEFAULT 0, acked_through INTEGER NOT NULL DEFAULT 0,"
				      " will_topic BLOB, will_payload BLOB, will_props BLOB, will_qos INTEGER, will_retain INTEGER,"
				      " will_delay_s INTEGER, will_expiry_s INTEGER) WITHOUT ROWID;"
				      "INSERT INTO session(client_id, peer_id, expiry_s, acked_through) VALUES('old', '', 60, 9);",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	struct kz_state *s;
	assert_int_equal(kz_state_open(path, &s, why, sizeof why), KZ_OK);
	struct kz_state_session got = { 0 };
	assert_int_equal(kz_state_load(s, load_one, &got, why, sizeof why), KZ_OK);
	assert_int_equal(got.epoch, 0);
	assert_int_equal(got.expiry_s, 60);
	assert_int_equal(got.acked_through, 9);
	assert_int_equal(kz_state_ended(s, "old"), KZ_OK);
	struct kz_state_will w = { .topic = B("gone/c1"), .payload = B("bye"), .qos = 1 };
	assert_int_equal(kz_state_connected(s, "c1", "spiffe://t/o/svc/c1", 600, &w, true, 42, 7), KZ_OK);
	kz_state_close(s);
	assert_int_equal(kz_state_open(path, &s, why, sizeof why), KZ_OK); /* the column exists now */
	memset(&got, 0, sizeof got);
	assert_int_equal(kz_state_load(s, load_one, &got, why, sizeof why), KZ_OK);
	assert_int_equal(got.epoch, 7);
	assert_int_equal(got.acked_through, 42);
	assert_int_equal(got.n_subs, 1);
	assert_int_equal(kz_state_connected(s, "c1", "spiffe://t/o/svc/c1", 600, NULL, false, 43, 8), KZ_OK);
	memset(&got, 0, sizeof got);
	assert_int_equal(kz_state_load(s, load_one, &got, why, sizeof why), KZ_OK);
	assert_int_equal(got.epoch, 8);
	assert_int_equal(got.n_subs, 0);
	kz_state_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_uuidv7),
		cmocka_unit_test(test_record_roundtrip_and_malformed),
		cmocka_unit_test(test_record_attributes),
		cmocka_unit_test_setup_teardown(test_log_reopen_and_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_scan_mapping_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_rolls_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_read_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_torn_tail_is_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_corruption_stops_and_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_thread_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_borrowed_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_window_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_damage_fixtures, setup, teardown),
		cmocka_unit_test(test_session_entry_roundtrip),
		cmocka_unit_test_setup_teardown(test_store_time_floor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_epoch_and_old_schema, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
