"""kizuna detect scan (docs/DETECTION.md) on real Zeek logs (brimdata's zed-sample-data: dns,
ssl and x509, TSV and JSON) with indicators written here as STIX 2.1 (a subdomain-matching
domain, addresses, a CIDR in MISP's network-traffic form, an IN list, a certificate hash)
and as a Zeek intel file, a MISP warning list, and the real intel feeds of
CriticalPathSecurity. Every object printed is checked against OASIS's STIX 2.1 JSON schemas
(python3-jsonschema); each sighting's count is checked against a count made here in Python
from the same log; the JSON log gives the same sightings as the TSV log; a warning list
suppresses and says so; bad lines are counted, not fatal; exit codes."""
import glob, gzip, json, os, subprocess, sys, tempfile
from kzharness import KIZUNA, run_tests, tmpdir

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "data")
ZEEK = os.path.join(SHARED, "zeek", "zed-sample-data")
SCHEMAS = os.path.join(SHARED, "stix", "cti-stix2-json-schemas", "schemas")
tmp = tmpdir("kz-detect-")


def indicator(n, pattern, extra=None):
    o = {"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-%012d" % n,
         "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "pattern": pattern,
         "pattern_type": "stix", "valid_from": "2018-01-01T00:00:00Z"}
    o.update(extra or {})
    return o


CERT = "b2dafbcdbc75210672f137f27ce882ccb799887631655d4f11191d5a678e44fe"
BUNDLE = os.path.join(tmp, "indicators.json")
json.dump({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": [
    indicator(1, "[domain-name:value = 'WRCCDC.org']"),
    indicator(2, "[ipv4-addr:value = '134.71.3.16'] OR [ipv4-addr:value = '192.0.2.1']"),
    indicator(3, "[network-traffic:src_ref.value = '10.47.1.0/24' AND network-traffic:src_ref.type = 'ipv4-addr']"),
    indicator(4, "[x509-certificate:hashes.'SHA-256' = '%s']" % CERT.upper()),
    indicator(5, "[ipv4-addr:value = '8.8.8.8']"),  # on the public resolvers' warning list
    indicator(6, "[url:value MATCHES '(a)\\\\1']"),  # a back-reference Hyperscan does not compile: listed
    indicator(10, "[domain-name:value MATCHES '^(salt|owncloud)\\\\.wrccdc\\\\.org$']"),
    indicator(11, "[domain-name:value = 'w\u00e9b.example'] OR [domain-name:value = 'WWW.Wrccdc.Org.']"),
    indicator(7, "[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example']"),
    indicator(8, "[ipv4-addr:value = '10.0.0.100']", {"valid_until": "2018-01-02T00:00:00Z"}),  # expired then
    dict(indicator(9, "title: x"), pattern_type="sigma"),
]}, open(BUNDLE, "w"))
INTEL = os.path.join(tmp, "local.intel")
open(INTEL, "w").write("#fields\tindicator\tindicator_type\tmeta.source\n"
                       "salt.wrccdc.org\tIntel::DOMAIN\tlocal\n"
                       "www.salt.wrccdc.org\tIntel::DOMAIN\tlocal\n"
                       "Mozilla/5.0\tIntel::SOFTWARE\tlocal\n")


def scan(*args):
    return subprocess.run([KIZUNA, "detect", "scan"] + list(args), capture_output=True, text=True, timeout=600)


def validator():
    """OASIS's schemas, resolved from their own files (no network)."""
    import jsonschema
    store = {}
    for f in glob.glob(os.path.join(SCHEMAS, "*", "*.json")):
        s = json.load(open(f))
        store[s["$id"]] = s
    by_type = {}
    for sid, s in store.items():
        name = sid.rsplit("/", 1)[1][:-5]
        by_type[name] = s
    def check(obj):
        s = by_type[obj["type"]]
        resolver = jsonschema.RefResolver(s["$id"], s, store=store)
        jsonschema.Draft202012Validator(s, resolver=resolver).validate(obj)
    return check


def dns_events(path, pred):
    """Events of a Zeek dns log (TSV) with at least one query or answer name pred accepts."""
    n = 0
    names = None
    with gzip.open(path, "rt") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#fields"):
                names = line.split("\t")[1:]
                continue
            if line.startswith("#"):
                continue
            r = dict(zip(names, line.split("\t")))
            vals = [r["query"]] + ([] if r["answers"] in ("-", "(empty)") else r["answers"].split(","))
            if any(pred(v.lower()) for v in vals):
                n += 1
    return n


def sightings(out):
    res = {}
    for line in out.splitlines():
        b = json.loads(line)
        sg = b["objects"][0]
        sco = b["objects"][2]
        value = sco.get("value") or list(sco["hashes"].values())[0]
        res[(sg["sighting_of_ref"], value)] = sg["count"]
    return res


DNS = os.path.join(ZEEK, "zeek-default", "dns.log.gz")


def test_scan_tsv_schemas_and_counts():
    r = scan(DNS, os.path.join(ZEEK, "zeek-default", "ssl.log.gz"), os.path.join(ZEEK, "zeek-default", "x509.log.gz"),
             "--indicators", BUNDLE, "--indicators", INTEL, "--warninglist",
             os.path.join(SHARED, "zeek", "misp-warninglists", "public-dns-v4", "list.json"), "--list-skipped")
    assert r.returncode == 0, r.stderr
    check = validator()
    for line in r.stdout.splitlines():
        b = json.loads(line)
        assert b["type"] == "bundle"
        for o in b["objects"]:
            check(o)
    s = sightings(r.stdout)
    assert any(i.endswith("000000000003") and v.startswith("10.47.1.") for (i, v) in s), s
    cert = [c for (i, v), c in s.items() if i.endswith("000000000004")]
    assert cert and cert[0] >= 1 and any(v == CERT for (i, v) in s), s
    assert any(i.endswith("000000000001") and v.endswith(".wrccdc.org") for (i, v) in s), s
    for what in ("000000000005: on the warning list", "000000000006: MATCHES: the expression is not one Hyperscan",
                 "000000000007: observations joined by AND or FOLLOWEDBY", "000000000009: pattern_type is not stix",
                 "local.intel:4: an indicator_type not matched here"):
        assert what in r.stderr, (what, r.stderr)
    assert "9 indicators (4 not supported, 1 on warning lists" in r.stderr, r.stderr


def test_counts_against_the_log():
    """On the dns log alone: each indicator's sightings add up to the events that hold a
    matching name or address (counted here from the log), once per event."""
    r = scan(DNS, "--indicators", BUNDLE, "--indicators", INTEL)
    assert r.returncode == 0, r.stderr
    s = sightings(r.stdout)
    wr = dns_events(DNS, lambda v: v == "wrccdc.org" or v.endswith(".wrccdc.org"))
    got = sum(c for (i, v), c in s.items() if i.endswith("000000000001"))
    assert got == wr and wr > 20000, (got, wr)
    rx = dns_events(DNS, lambda v: v in ("salt.wrccdc.org", "owncloud.wrccdc.org"))
    assert sum(c for (i, v), c in s.items() if i.endswith("000000000010")) == rx and rx > 0, (rx, s)
    ip = dns_events(DNS, lambda v: v == "134.71.3.16")
    assert s[("indicator--00000000-0000-4000-8000-000000000002", "134.71.3.16")] == ip, s
    assert not any(i.endswith("000000000008") for (i, v) in s)  # valid_until before the logs
    # the Zeek intel line: exact names only (salt.wrccdc.org), as a STIX indicator in the bundle
    zi = [line for line in r.stdout.splitlines() if '"name":"Zeek intel: local.intel"' in line]
    assert zi and "[domain-name:value = 'salt.wrccdc.org']" in zi[0], r.stdout[:500]
    salt = dns_events(DNS, lambda v: v == "salt.wrccdc.org")
    assert sum(json.loads(l)["objects"][0]["count"] for l in zi) == salt, salt


def test_json_log_gives_the_same():
    a = scan(DNS, "--indicators", BUNDLE)
    b = scan(os.path.join(ZEEK, "zeek-json", "dns.json.gz"), "--indicators", BUNDLE)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    sa, sb = sightings(a.stdout), sightings(b.stdout)
    # the JSON log holds 9 fewer lines (its header): the same sightings, counts within that
    assert sa.keys() == sb.keys(), (sa.keys() ^ sb.keys())
    for k in sa:
        assert 0 <= sa[k] - sb[k] <= 9, (k, sa[k], sb[k])


def test_real_feeds_and_bad_lines():
    """Every CriticalPathSecurity feed at once: loaded, counted, nothing fatal. A log with
    garbage lines: a broken JSON line is counted as not parsed (the others read as syslog,
    its format of last resort)."""
    feeds = sorted(glob.glob(os.path.join(SHARED, "zeek", "Zeek-Intelligence-Feeds", "*.intel")))
    args = []
    for f in feeds:
        args += ["--indicators", f]
    bad = os.path.join(tmp, "bad.log")
    with open(bad, "w") as f:
        f.write("1\t2\t3\n#fields\tts\tquery\n1.5\tsalt.wrccdc.org\n{not json\n\xff\xfe\n")
    r = scan(bad, DNS, *args, "--indicators", INTEL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "bad.log: lines that did not parse: 1 (first: a JSON line that is not an object)" in r.stderr, r.stderr[-2000:]
    n = int(r.stderr.split("kizuna detect scan: ")[-1].split(" indicators")[0])
    assert n > 100000, r.stderr[-500:]


def test_follow_across_rotation():
    """--follow, as tail -F: a line appended, the file renamed and a new one started (Zeek's
    rotation), then the file truncated in place (copytruncate): each matching line counted
    once, in new versions of the same sighting; SIGTERM ends it with exit 0."""
    import signal, threading, time
    from kzharness import until
    log = os.path.join(tmp, "live.log")
    head = "#separator \\x09\n#fields\tts\tquery\n"
    line = lambda t: "%d.5\tsalt.wrccdc.org\n" % t
    open(log, "w").write(head + line(1700000000))
    p = subprocess.Popen([KIZUNA, "detect", "scan", "--follow", "--flush-ms", "200", log, "--indicators", INTEL],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = []
    threading.Thread(target=lambda: [out.append(json.loads(l)) for l in p.stdout], daemon=True).start()
    counts = lambda: [b["objects"][0]["count"] for b in out]
    try:
        until(lambda: 1 in counts(), timeout=10)
        with open(log, "a") as f:
            f.write(line(1700000001))
        until(lambda: 2 in counts(), timeout=10)
        os.rename(log, log + ".1")
        open(log, "w").write(head + line(1700000002))
        until(lambda: 3 in counts(), timeout=10)
        open(log, "w").write(head)  # truncated, then written again
        time.sleep(0.5)
        with open(log, "a") as f:
            f.write(line(1700000003))
        until(lambda: 4 in counts(), timeout=10)
        assert len({b["objects"][0]["id"] for b in out}) == 1, out  # versions of one sighting
        assert out[-1]["objects"][0]["last_seen"] == "2023-11-14T22:13:23.500000Z", out[-1]
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
    assert rc == 0, (rc, p.stderr.read())
    # a file that is not there yet: said, then followed when it appears
    later = os.path.join(tmp, "later.log")
    err = open(os.path.join(tmp, "later.err"), "w+")
    p = subprocess.Popen([KIZUNA, "detect", "scan", "--follow", "--flush-ms", "200", later, "--indicators", INTEL],
                         stdout=subprocess.PIPE, stderr=err, text=True)
    out2 = []
    threading.Thread(target=lambda: [out2.append(json.loads(l)) for l in p.stdout], daemon=True).start()
    try:
        until(lambda: "later.log: No such file or directory; following it for when it appears" in open(err.name).read(),
              timeout=10)
        open(later, "w").write(head + line(1700000009))
        until(lambda: out2, timeout=10)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


def test_exit_codes():
    r = scan(DNS, "--indicators", os.path.join(tmp, "missing.json"))
    assert r.returncode == 1 and "cannot be read" in r.stderr, r.stderr
    only_bad = os.path.join(tmp, "bad.json")
    json.dump([indicator(1, "[file:name = 'x']")], open(only_bad, "w"))
    r = scan(DNS, "--indicators", only_bad)
    assert r.returncode == 1 and "no indicator to match" in r.stderr, r.stderr
    r = scan(DNS)
    assert r.returncode == 2 and "usage" in r.stderr, r.stderr
    r = scan(DNS, "--indicators", BUNDLE, "--format", "xml")
    assert r.returncode == 2, r.stderr


run_tests([test_scan_tsv_schemas_and_counts, test_counts_against_the_log, test_json_log_gives_the_same,
           test_real_feeds_and_bad_lines,
           test_follow_across_rotation,
           test_exit_codes])
