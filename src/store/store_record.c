/* store_record.c — CRC32C, UUIDv7 and the record envelope codec (docs/STORE.md). */
#include "store/store.h"
#include "base/kz_err.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* ---------- CRC32C ---------- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

/* The raw CRC register (no inversions) is linear: crc(x, A‖B) = zeros_|B|(crc(x, A)) ⊕
 * crc(0, B), where zeros_n(x) is x run over n zero bytes, itself linear in x, so a table per
 * byte of x applies it. That lets three independent streams of crc32 instructions run side
 * by side (the instruction's latency is three cycles, its throughput one per cycle) and be
 * joined after: about three times the single-stream rate on a long buffer. */
#define CRC_SHIFTS 2
static const size_t shift_len[CRC_SHIFTS] = { 1024, 128 };
static uint32_t shift_tab[CRC_SHIFTS][4][256];

static uint32_t zeros_soft(uint32_t c, size_t n)
{
	while (n--)
		c = (c >> 8) ^ crc_table[0][c & 0xFF];
	return c;
}

static inline uint32_t crc_shift(int s, uint32_t c)
{
	return shift_tab[s][0][c & 0xFF] ^ shift_tab[s][1][(c >> 8) & 0xFF] ^ shift_tab[s][2][(c >> 16) & 0xFF] ^
	       shift_tab[s][3][c >> 24];
}

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* reflected Castagnoli */
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
	for (int sh = 0; sh < CRC_SHIFTS; sh++) {
		uint32_t basis[32]; /* zeros_n of each single bit; a byte's entry is the XOR of its bits' */
		for (int b = 0; b < 32; b++)
			basis[b] = zeros_soft(1u << b, shift_len[sh]);
		for (int k = 0; k < 4; k++)
			for (uint32_t v = 1; v < 256; v++)
				shift_tab[sh][k][v] = shift_tab[sh][k][v & (v - 1)] ^ basis[8 * k + __builtin_ctz(v)];
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p, size_t n)
{
	for (int sh = 0; sh < CRC_SHIFTS; sh++) {
		size_t b = shift_len[sh];
		while (n >= 3 * b) {
			uint64_t c0 = c, c1 = 0, c2 = 0;
			for (size_t i = 0; i < b; i += 8) {
				uint64_t v0, v1, v2;
				memcpy(&v0, p + i, 8);
				memcpy(&v1, p + b + i, 8);
				memcpy(&v2, p + 2 * b + i, 8);
				c0 = __builtin_ia32_crc32di(c0, v0);
				c1 = __builtin_ia32_crc32di(c1, v1);
				c2 = __builtin_ia32_crc32di(c2, v2);
			}
			c = crc_shift(sh, crc_shift(sh, (uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
			p += 3 * b;
			n -= 3 * b;
		}
	}
	uint64_t c64 = c;
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n)
{
	while (n >= 8) { /* slicing by 8, little-endian */
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= c;
		c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
		    crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
		    crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
		    crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
	return c;
}

uint32_t kz_crc32c(uint32_t crc, const void *p, size_t n)
{
	pthread_once(&crc_once, crc_init);
	uint32_t c = ~crc;
#if defined(__x86_64__)
	if (crc_hw)
		return ~crc_sse42(c, p, n);
#endif
	return ~crc_soft(c, p, n);
}

/* ---------- UUIDv7 ---------- */

/* Per thread, so that no lock sits on the publish path; ids from different threads differ in
 * their random bits, and the log's sequence numbers give the total order. */
static _Thread_local uint64_t uuid_last_ms;
static _Thread_local uint8_t uuid_last[16];

/* Adds one to the 74 random bits (low nibble of byte 6, byte 7, low 6 bits of byte 8, bytes
 * 9-15); false when they wrap. */
static bool uuid_count_up(uint8_t id[16])
{
	for (int i = 15; i >= 9; i--)
		if (++id[i])
			return true;
	unsigned v = (id[8] & 0x3Fu) + 1;
	id[8] = (uint8_t)(0x80 | (v & 0x3F));
	if (v <= 0x3F)
		return true;
	if (++id[7])
		return true;
	unsigned w = (id[6] & 0x0Fu) + 1;
	id[6] = (uint8_t)(0x70 | (w & 0x0F));
	return w <= 0x0F;
}

void kz_uuidv7(uint8_t id[16], uint64_t unix_ms)
{
	/* Within one millisecond (or when the clock steps back) count up from the last id
	 * (RFC 9562 §6.2, method 2), so that ids from this thread strictly increase. */
	if (unix_ms <= uuid_last_ms && uuid_last_ms) {
		memcpy(id, uuid_last, 16);
		if (uuid_count_up(id))
			goto done;
		unix_ms = uuid_last_ms + 1;
	}
	uint8_t r[10];
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		memset(r, 0, sizeof r);
	for (int i = 0; i < 6; i++)
		id[i] = (uint8_t)(unix_ms >> (40 - 8 * i));
	id[6] = (uint8_t)(0x70 | (r[0] & 0x0F)); /* version 7 */
	id[7] = r[1];
	id[8] = (uint8_t)(0x80 | (r[2] & 0x3F)); /* variant 10 */
	memcpy(id + 9, r + 3, 7);
	uuid_last_ms = unix_ms;
done:
	memcpy(uuid_last, id, 16);
}

void kz_uuid_format(const uint8_t id[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[id[i] >> 4];
		out[o++] = hex[id[i] & 15];
	}
	out[o] = 0;
}

int kz_uuid_parse(const char *s, uint8_t id[16])
{
	size_t n = 0;
	for (size_t i = 0; s[i]; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return KZ_EINVAL;
			continue;
		}
		int v = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' :
			s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10 :
			s[i] >= 'A' && s[i] <= 'F' ? s[i] - 'A' + 10 : -1;
		if (v < 0 || n >= 32)
			return KZ_EINVAL;
		if (n % 2 == 0)
			id[n / 2] = (uint8_t)(v << 4);
		else
			id[n / 2] |= (uint8_t)v;
		n++;
	}
	return n == 32 && strlen(s) == 36 ? KZ_OK : KZ_EINVAL;
}

/* ---------- envelope ----------
 * u8 version | u8 flags | u8 precedence | u8 qos | id[16] | u64 time_ns | u64 source_time_ns
 * | u64 expiry_ns | then seven length-prefixed fields (u32 length, bytes): topic, origin_node,
 * origin_id, label, content_type, attrs, payload. Integers little-endian. attrs: version 2,
 * the attribute list; version 1, an MQTT 5 property block (read only). */

#define REC_FIXED 44
#define REC_FLAG_RETAIN 0x01
#define REC_FLAG_SERVICE 0x02
#define REC_FLAGS_KNOWN (REC_FLAG_RETAIN | REC_FLAG_SERVICE)

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int kz_record_encode(const struct kz_record *r, struct kz_buf *out)
{
	const struct kz_bytes *f[] = { &r->topic, &r->origin_node, &r->origin_id, &r->label,
				       &r->content_type, &r->attrs, &r->payload };
	if (!r->service && kz_topic_reserved(r->topic.p, r->topic.len))
		return KZ_EDENIED;
	if (r->version > KZ_RECORD_VERSION)
		return KZ_EINVAL;
	size_t total = REC_FIXED;
	for (size_t i = 0; i < KZ_ARRAY_LEN(f); i++)
		total += 4 + (size_t)f[i]->len;
	int rc = kz_buf_reserve_exact(out, total); /* held until the disk has it: no slack */
	if (rc)
		return rc;
	uint8_t *p = kz_buf_tail(out);
	p[0] = r->version ? r->version : KZ_RECORD_VERSION;
	p[1] = (uint8_t)((r->retain ? REC_FLAG_RETAIN : 0) | (r->service ? REC_FLAG_SERVICE : 0));
	p[2] = r->precedence;
	p[3] = r->qos;
	memcpy(p + 4, r->id, 16);
	put64(p + 20, r->time_ns);
	put64(p + 28, r->source_time_ns);
	put64(p + 36, r->expiry_ns);
	p += REC_FIXED;
	for (size_t i = 0; i < KZ_ARRAY_LEN(f); i++) {
		uint32_t n = f[i]->len;
		p[0] = (uint8_t)n, p[1] = (uint8_t)(n >> 8), p[2] = (uint8_t)(n >> 16), p[3] = (uint8_t)(n >> 24);
		if (n)
			memcpy(p + 4, f[i]->p, n);
		p += 4 + n;
	}
	out->len += total;
	return KZ_OK;
}

static bool attrs_valid(const struct kz_record *r);

uint64_t kz_record_time_of(const uint8_t *p, size_t n)
{
	return n >= REC_FIXED && p[0] >= 1 && p[0] <= KZ_RECORD_VERSION ? get64(p + 20) : 0;
}

int kz_record_decode(const uint8_t *p, size_t n, struct kz_record *r, const char **why)
{
	*why = NULL;
	if (n < REC_FIXED)
		return *why = "record shorter than its fixed header", KZ_EMALFORMED;
	if (p[0] < 1 || p[0] > KZ_RECORD_VERSION)
		return *why = "unknown record version", KZ_EMALFORMED;
	if (p[1] & ~REC_FLAGS_KNOWN)
		return *why = "unknown record flags", KZ_EMALFORMED;
	if (p[2] > KZ_PREC_FLASH)
		return *why = "precedence out of range", KZ_EMALFORMED;
	if (p[3] > 2)
		return *why = "QoS out of range", KZ_EMALFORMED;
	memset(r, 0, sizeof *r);
	r->version = p[0];
	r->retain = p[1] & REC_FLAG_RETAIN;
	r->service = p[1] & REC_FLAG_SERVICE;
	r->precedence = p[2];
	r->qos = p[3];
	memcpy(r->id, p + 4, 16);
	r->time_ns = get64(p + 20);
	r->source_time_ns = get64(p + 28);
	r->expiry_ns = get64(p + 36);
	struct kz_bytes *f[] = { &r->topic, &r->origin_node, &r->origin_id, &r->label,
				 &r->content_type, &r->attrs, &r->payload };
	size_t off = REC_FIXED;
	for (size_t i = 0; i < KZ_ARRAY_LEN(f); i++) {
		if (n - off < 4)
			return *why = "record field length cut off", KZ_EMALFORMED;
		uint32_t len = get32(p + off);
		off += 4;
		if (len > n - off)
			return *why = "record field runs past the end", KZ_EMALFORMED;
		f[i]->p = p + off;
		f[i]->len = len;
		off += len;
	}
	if (off != n)
		return *why = "bytes after the last record field", KZ_EMALFORMED;
	if (r->topic.len == 0)
		return *why = "record without a topic", KZ_EMALFORMED;
	if (!attrs_valid(r))
		return *why = r->version == 1 ? "record properties malformed" : "record attributes malformed",
		       KZ_EMALFORMED;
	return KZ_OK;
}

/* ---------- attributes ---------- */

static size_t varint_put(uint8_t *p, uint32_t v)
{
	size_t n = 0;
	do {
		p[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

/* A LEB128 varint of at most 5 bytes (32 bits); false when cut off or too long. */
static bool varint_get(const uint8_t *p, size_t n, size_t *off, uint32_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < 5; i++) {
		if (*off >= n)
			return false;
		uint8_t b = p[(*off)++];
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80))
			return x <= UINT32_MAX && (*v = (uint32_t)x, true);
	}
	return false;
}

int kz_rec_attr_append(struct kz_buf *out, uint8_t kind, const void *name, size_t name_len, const void *value,
		   size_t value_len)
{
	if (name_len > UINT32_MAX || value_len > UINT32_MAX || kind == 0)
		return KZ_EINVAL;
	uint8_t h[11];
	size_t hn = 0;
	h[hn++] = kind;
	hn += varint_put(h + hn, (uint32_t)name_len);
	int rc = kz_buf_append(out, h, hn);
	if (!rc && name_len)
		rc = kz_buf_append(out, name, name_len);
	hn = varint_put(h, (uint32_t)value_len);
	if (!rc)
		rc = kz_buf_append(out, h, hn);
	if (!rc && value_len)
		rc = kz_buf_append(out, value, value_len);
	return rc;
}

static bool next_v2(const uint8_t *p, size_t n, size_t *off, struct kz_rec_attr *a)
{
	size_t i = *off;
	uint32_t nl, vl;
	if (i >= n)
		return false;
	a->kind = p[i++];
	if (a->kind == 0 || !varint_get(p, n, &i, &nl) || nl > n - i)
		return false;
	a->name = (struct kz_bytes){ p + i, nl };
	i += nl;
	if (!varint_get(p, n, &i, &vl) || vl > n - i)
		return false;
	a->value = (struct kz_bytes){ p + i, vl };
	*off = i + vl;
	return true;
}

/* Version 1 records hold the MQTT 5 properties the node forwarded (MQTT 5.0 §3.3.2.3):
 * Payload Format Indicator (0x01, a byte), Content Type (0x03, a string, also in the
 * envelope's field), Response Topic (0x08, a string), Correlation Data (0x09, binary) and
 * User Property (0x26, a string pair); strings are u16-length prefixed, big-endian. Content
 * Type is not an attribute (kz_record_content_type) and a Payload Format Indicator of 0
 * says nothing: both are skipped. */
static bool v1_str(const uint8_t *p, size_t n, size_t *i, struct kz_bytes *s)
{
	if (n - *i < 2)
		return false;
	uint32_t l = (uint32_t)p[*i] << 8 | p[*i + 1];
	if (l > n - *i - 2)
		return false;
	*s = (struct kz_bytes){ p + *i + 2, l };
	*i += 2 + l;
	return true;
}

static int next_v1(const uint8_t *p, size_t n, size_t *off, struct kz_rec_attr *a, struct kz_bytes *ctype)
{
	while (*off < n) {
		size_t i = *off;
		uint8_t id = p[i++];
		struct kz_bytes x = { 0 }, y = { 0 };
		bool ok;
		switch (id) {
		case 0x01: ok = i < n && p[i] <= 1; if (ok) x.len = p[i++]; break;
		case 0x03: case 0x08: case 0x09: ok = v1_str(p, n, &i, &x); break;
		case 0x26: ok = v1_str(p, n, &i, &x) && v1_str(p, n, &i, &y); break;
		default: ok = false;
		}
		if (!ok)
			return -1;
		*off = i;
		*a = (struct kz_rec_attr){ 0 };
		switch (id) {
		case 0x01:
			if (!x.len)
				continue;
			a->kind = KZ_RATTR_UTF8_PAYLOAD;
			return 1;
		case 0x03:
			if (ctype)
				*ctype = x;
			continue;
		case 0x08: a->kind = KZ_RATTR_RESPONSE_TOPIC, a->value = x; return 1;
		case 0x09: a->kind = KZ_RATTR_CORRELATION, a->value = x; return 1;
		default: a->kind = KZ_RATTR_USER, a->name = x, a->value = y; return 1;
		}
	}
	return 0;
}

bool kz_rec_attr_next(const struct kz_record *r, size_t *off, struct kz_rec_attr *a)
{
	if (r->version == 1)
		return next_v1(r->attrs.p, r->attrs.len, off, a, NULL) > 0;
	return next_v2(r->attrs.p, r->attrs.len, off, a);
}

struct kz_bytes kz_record_content_type(const struct kz_record *r)
{
	struct kz_bytes ct = r->content_type;
	if (!ct.len && r->version == 1) { /* a will's record kept it only among the properties */
		size_t off = 0;
		struct kz_rec_attr a;
		while (next_v1(r->attrs.p, r->attrs.len, &off, &a, &ct) > 0)
			;
	}
	return ct;
}

static bool attrs_valid(const struct kz_record *r)
{
	size_t off = 0;
	struct kz_rec_attr a;
	if (r->version == 1) {
		int k;
		while ((k = next_v1(r->attrs.p, r->attrs.len, &off, &a, NULL)) > 0)
			;
		return k == 0;
	}
	while (off < r->attrs.len)
		if (!next_v2(r->attrs.p, r->attrs.len, &off, &a))
			return false;
	return true;
}
