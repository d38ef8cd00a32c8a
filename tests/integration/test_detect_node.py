"""The node's detection service (docs/DETECTION.md "In the node") against a live node under a
policy: indicators POSTed over TAXII (python3-requests), real Zeek logs (brimdata's
zed-sample-data) published over MQTT (paho) and appended to a followed file; sightings read
over MQTT and TAXII by a reader cleared for them and invisible to one who is not, TLP
audiences, deletions, an unsupported pattern listed, a restart, `kizuna detect status` and
/metrics."""
import gzip, json, os, subprocess, sys, time, uuid
sys.path.insert(0, os.path.dirname(__file__))
from kzharness import Node, run_tests, until, free_port, KIZUNA, SHARED, tmpdir
import requests

ZEEK = os.path.join(SHARED, "data", "zeek", "zed-sample-data")
TAXII = "application/taxii+json;version=2.1"
AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
TD = "spiffe://kizuna.local"

IND = str(uuid.uuid4())   # indicators are posted here
SEEN = str(uuid.uuid4())  # sightings are stored here
d0 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
import tempfile
CONF = tmpdir("kz-detect-")
with open(os.path.join(CONF, "collections.json"), "w") as f:
    json.dump([{"id": IND, "title": "indicators"}, {"id": SEEN, "title": "sightings"}], f)
with open(os.path.join(CONF, "kizuna.policy"), "w") as f:
    f.write("policy test\nversion 1\nlevels unclassified confidential secret\n"
            "category rel permissive attr=nation jpn usa\n"
            "default-label class=unclassified;rel=jpn\n"
            "allow connect where kind=user,sensor,service\n"
            "allow subscribe $taxii/%s/# where org=mod,meti\n"
            "allow publish $taxii/%s/objects where org=mod label class=confidential;rel=jpn\n"
            "allow subscribe $taxii/%s/# where org=mod,meti\n"
            "allow publish kz/logs/# where kind=sensor label class=secret;rel=jpn\n"
            "allow publish kz/detect/# where kind=service\n"
            "allow subscribe kz/detect/# where org=mod,meti\n"
            "allow subscribe $SYS/metrics where role=monitor\n" % (IND, IND, SEEN))
with open(os.path.join(CONF, "identities"), "w") as f:
    f.write(TD + "/mod/user/alice org=mod nation=jpn clearance=secret\n"
            + TD + "/meti/user/bob org=meti nation=jpn clearance=confidential\n"
            + TD + "/meti/user/carol org=meti nation=jpn clearance=secret\n"
            + TD + "/mod/user/mon org=mod nation=jpn clearance=unclassified roles=monitor\n"
            + TD + "/mod/user/mon2 org=mod nation=jpn clearance=secret roles=monitor\n"
            + TD + "/mod/sensor/zeek org=mod nation=jpn clearance=secret\n"
            + TD + "/mod/service/detect org=mod nation=jpn clearance=secret\n")
FOLLOWED = os.path.join(CONF, "dns.json")
INTEL = os.path.join(CONF, "feed.intel")  # detect.intel: absent until test_intel_file
open(FOLLOWED, "w").close()
HP = free_port()
node = Node("https.listen = 127.0.0.1:%d\ntaxii.collections = %s\npolicy.file = %s\npolicy.registry = %s\n"
            "detect.enabled = 1\ndetect.collection = %s\ndetect.identity = %s/mod/service/detect\n"
            "detect.flush_ms = 200\ndetect.files = %s\ndetect.file_label = class=confidential;rel=jpn\n"
            "detect.warninglists = %s\ndetect.intel = %s\ndetect.intel_label = class=confidential;rel=jpn\n"
            % (HP, os.path.join(CONF, "collections.json"), os.path.join(CONF, "kizuna.policy"),
               os.path.join(CONF, "identities"), SEEN, TD, FOLLOWED,
               os.path.join(SHARED, "data", "zeek", "misp-warninglists", "public-dns-v4", "list.json"), INTEL))
WHO = {n: node.issue(n, "%s/%s/%s/%s" % (TD, o, k, n)) for n, o, k in
       (("alice", "mod", "user"), ("bob", "meti", "user"), ("carol", "meti", "user"), ("mon", "mod", "user"),
        ("mon2", "mod", "user"),
        ("zeek", "mod", "sensor"))}
CA = os.path.join(node.pki, "ca.pem")
BASE = "https://localhost:%d/taxii2/api/collections/" % HP


def sess(who):
    x = requests.Session()
    x.verify = CA
    x.cert = WHO[who]
    x.headers["Accept"] = TAXII
    return x


def post(objs, who="alice", headers=None):
    h = {"Content-Type": TAXII}
    h.update(headers or {})
    r = sess(who).post(BASE + IND + "/objects/", data=json.dumps({"objects": objs}), headers=h)
    assert r.status_code == 202 and r.json()["success_count"] == len(objs), r.text
    return r.json()


def indicator(pattern, marking=None, pattern_type="stix"):
    o = {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + str(uuid.uuid4()),
         "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "name": "t",
         "pattern": pattern, "pattern_type": pattern_type, "valid_from": "2018-01-01T00:00:00Z"}
    if marking:
        o["object_marking_refs"] = [marking]
    return o


def sightings(who, of=None):
    """The sightings in the sightings collection `who` may read (of: of that indicator)."""
    r = sess(who).get(BASE + SEEN + "/objects/", params={"match[type]": "sighting"})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    objs = r.json().get("objects", [])
    return [o for o in objs if of is None or o["sighting_of_ref"] == of]


def status(who="mon"):
    r = requests.get("https://localhost:%d/api/v1/detect/status" % HP, verify=CA, cert=WHO[who])
    assert r.status_code == 200, r.text
    return r.json()


def dns_tsv(pred, n=5):
    """The dns log's header and up to n of its lines with a query pred accepts (one message)."""
    head, lines = [], []
    with gzip.open(os.path.join(ZEEK, "zeek-default", "dns.log.gz"), "rt") as f:
        for line in f:
            if line.startswith("#"):
                if not lines:
                    head.append(line)
                continue
            if pred(line.split("\t")[9]):
                lines.append(line)
                if len(lines) == n:
                    break
    return "".join(head), "".join(lines)


def sensor():
    c = node.client(cert=WHO["zeek"])
    return c


HEAD, LINES = dns_tsv(lambda q: q == "ise.wrccdc.org", 3)


def test_posted_indicator_matches_published_log_and_the_label_decides():
    """An indicator POSTed over TAXII (confidential, the collection's label) matched in a Zeek
    dns log a sensor publishes (secret, its rule's label): the sighting is secret, so carol
    (secret) reads it over MQTT and TAXII and bob (confidential) sees nothing of it."""
    carol, bob = node.client(cert=WHO["carol"]), node.client(cert=WHO["bob"])
    carol.sub("kz/detect/#", 1)
    bob.sub("kz/detect/#", 1)
    ind = indicator("[domain-name:value = 'ise.wrccdc.org']")
    t0 = time.time()
    post([ind])
    z = sensor()
    z.pub("kz/logs/zeek/dns", HEAD + LINES, 1)
    m = carol.get(10)
    latency = time.time() - t0
    b = json.loads(m.payload)
    assert m.topic.startswith("kz/detect/sighting/"), m.topic
    sg = b["objects"][0]
    assert sg["type"] == "sighting" and sg["sighting_of_ref"] == ind["id"] and sg["count"] == 3, sg
    assert b["objects"][2] == {"type": "domain-name", "spec_version": "2.1", "id": b["objects"][1]["object_refs"][0],
                               "value": "ise.wrccdc.org"}, b["objects"]
    bob.none(1.0)
    assert until(lambda: sightings("carol", ind["id"]), 10)
    assert sightings("bob", ind["id"]) == []
    # the observed-data and the SCO are there for carol, not for bob
    od = sess("carol").get(BASE + SEEN + "/objects/" + sg["observed_data_refs"][0] + "/")
    assert od.status_code == 200 and od.json()["objects"][0]["number_observed"] == 3, od.text
    assert sess("bob").get(BASE + SEEN + "/objects/" + sg["observed_data_refs"][0] + "/").status_code == 404
    print("POST to first sighting (MQTT): %.3f s" % latency)
    # more of the same on the same topic (the header is the topic's): a newer version, count 6
    z.pub("kz/logs/zeek/dns", LINES, 1)
    m2 = json.loads(carol.get(10).payload)["objects"][0]
    assert m2["id"] == sg["id"] and m2["count"] == 6 and m2["modified"] > sg["modified"], m2
    assert until(lambda: any(s["count"] == 6 for s in sightings("carol", ind["id"])), 10)
    for c in (carol, bob, z):
        c.close()


def test_tlp_audience_narrows_the_sighting():
    """An AMBER indicator alice shares with her organisation only: its sighting keeps that
    audience, so carol (meti, secret) does not see it and alice does."""
    ind = indicator("[ipv4-addr:value = '134.71.3.16']", AMBER)
    post([ind], headers={"Kizuna-Audience": "org:mod"})
    z = sensor()
    z.pub("kz/logs/zeek/dns2", HEAD + LINES, 1)
    assert until(lambda: sightings("alice", ind["id"]), 10)
    assert sightings("carol", ind["id"]) == []
    z.close()


def test_unsupported_indicator_is_listed_and_warninglist_suppresses():
    sig = indicator("title: x", pattern_type="sigma")
    dns = indicator("[ipv4-addr:value = '8.8.8.8']")  # on the public-dns-v4 warning list
    post([sig, dns])

    def listed():
        nm = {e["id"]: e["why"] for e in status("mon2")["not_matched"]}
        return sig["id"] in nm and dns["id"] in nm and nm
    nm = until(listed, 10)
    assert nm and "pattern_type" in nm[sig["id"]] and "warning list" in nm[dns["id"]], nm
    # the list is the reader's: a monitor not cleared for the indicators (confidential, the
    # collection's label) is not told their ids
    low = status("mon")
    assert low["not_matched"] == [], low["not_matched"]


def test_deleted_indicator_stops_matching():
    ind = indicator("[domain-name:value = 'ise.wrccdc.org'] OR [ipv4-addr:value = '10.0.0.100']")
    post([ind])
    z = sensor()
    z.pub("kz/logs/zeek/dns3", HEAD + LINES, 1)
    assert until(lambda: sightings("carol", ind["id"]), 10)
    before = status()["removed"]
    r = sess("alice").delete(BASE + IND + "/objects/" + ind["id"] + "/")
    assert r.status_code == 200, r.text
    assert until(lambda: status()["removed"] == before + 1, 10)
    n = sum(s["count"] for s in sightings("carol", ind["id"]))
    z.pub("kz/logs/zeek/dns3", LINES, 1)
    time.sleep(1.0)
    assert sum(s["count"] for s in sightings("carol", ind["id"])) == n
    z.close()


def test_followed_file_and_parse_errors():
    """Zeek JSON lines appended to a followed file (detect.files, labelled confidential): bob
    (confidential) reads that sighting; a line that is not a log is counted, not fatal."""
    ind = indicator("[domain-name:value = 'wrccdc.org']")  # its subdomains match too
    post([ind])
    with gzip.open(os.path.join(ZEEK, "zeek-json", "dns.json.gz"), "rt") as f:
        lines = [l for l in (next(f) for _ in range(200)) if '"wrccdc.org"' in l or '.wrccdc.org"' in l][:2]
    assert lines
    errors = status()["parse_errors"]
    with open(FOLLOWED, "a") as f:
        f.write("{not json\n")
        f.write("".join(lines))
    assert until(lambda: sightings("bob", ind["id"]), 10)
    assert status()["parse_errors"] >= errors + 1


def test_status_cli_metrics_and_restart():
    st = status()
    # live: ise.wrccdc.org, 134.71.3.16 and wrccdc.org (one deleted, one suppressed, one sigma)
    assert st["indicators"] == 3 and st["indicators_by_type"]["domain"] == 2 and st["indicators_by_type"]["ip"] == 1, st
    assert st["removed"] == 1 and st["events"] > 0 and st["sightings"]["stored"] > 0, st
    data = ["--url", "https://localhost:%d" % HP, "--cafile", CA]
    r = subprocess.run([KIZUNA, "detect", "status"] + data + ["--cert", WHO["mon"][0], "--key", WHO["mon"][1]],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "indicators" in r.stdout and "sightings" in r.stdout, (r.stdout, r.stderr)
    r = subprocess.run([KIZUNA, "detect", "status"] + data + ["--cert", WHO["bob"][0], "--key", WHO["bob"][1]],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "$SYS/metrics" in r.stderr, (r.returncode, r.stderr)
    m = requests.get("https://localhost:%d/metrics" % HP, verify=CA, cert=WHO["mon"]).text
    assert 'kizuna_detect_indicators{type="domain"}' in m and "kizuna_detect_events_total" in m, m[-2000:]
    # a restart rebuilds the indicators from the log; logs before it are not read again
    assert node.stop() == 0
    node.log = open(node.log.name, "a")
    node.start()
    st2 = until(lambda: status() if status()["indicators"] == st["indicators"] else None, 15)
    assert st2 and st2["events"] == 0, (st, st2)
    carol = node.client(cert=WHO["carol"])
    carol.sub("kz/detect/#", 1)
    z = sensor()
    z.pub("kz/logs/zeek/dns9", HEAD + LINES, 1)
    assert json.loads(carol.get(10).payload)["objects"][0]["type"] == "sighting"
    z.close(), carol.close()


def test_intel_file_read_and_read_again():
    """detect.intel: a Zeek intel file that appears is read; rewritten, its old indicators go
    and the new ones match."""
    carol = node.client(cert=WHO["carol"])
    carol.sub("kz/detect/#", 1)
    z = sensor()

    def patterns(timeout):
        """The Zeek intel patterns of the sightings that arrive within timeout."""
        out, end = set(), time.time() + timeout
        while time.time() < end:
            try:
                objs = json.loads(carol.get(max(0.1, end - time.time())).payload)["objects"]
            except Exception:
                break
            out |= {o["pattern"] for o in objs if o["type"] == "indicator"}
        return out
    removed = status()["removed"]
    with open(INTEL + ".tmp", "w") as f:
        f.write("#fields\tindicator\tindicator_type\tmeta.source\nise.wrccdc.cpp.edu\tIntel::DOMAIN\tfeed\n")
    os.rename(INTEL + ".tmp", INTEL)
    until(lambda: "intel" in node.logtext() and "feed.intel read: 1 indicators" in node.logtext(), 10)
    z.pub("kz/logs/zeek/dns10", HEAD + LINES, 1)
    assert patterns(2.0) == {"[domain-name:value = 'ise.wrccdc.cpp.edu']"}
    with open(INTEL + ".tmp", "w") as f:
        f.write("#fields\tindicator\tindicator_type\tmeta.source\n10.0.0.100\tIntel::ADDR\tfeed\n")
    os.rename(INTEL + ".tmp", INTEL)
    until(lambda: status()["removed"] == removed + 1, 10)
    z.pub("kz/logs/zeek/dns10", LINES, 1)
    got = patterns(2.0)
    assert got == {"[ipv4-addr:value = '10.0.0.100']"}, (got, status())
    z.close(), carol.close()


def test_caps_max_indicators_and_max_topics():
    """detect.max_indicators and detect.max_topics at their limits, on a node of their own:
    the indicator beyond the cap is counted as refused, the topic beyond it as skipped, and
    the node goes on."""
    hp = free_port()
    n2 = Node("https.listen = 127.0.0.1:%d\ndetect.enabled = 1\ndetect.flush_ms = 100\n"
              "detect.max_indicators = 1\ndetect.max_topics = 1\n" % hp)
    admin = (os.path.join(n2.pki, "admin.pem"), os.path.join(n2.pki, "admin.key"))
    x = requests.Session()
    x.verify, x.cert = os.path.join(n2.pki, "ca.pem"), admin
    coll = json.load(open(os.path.join(n2.data, "taxii-collections.json")))[0]["id"]
    objs = [indicator("[domain-name:value = 'ise.wrccdc.org']"), indicator("[ipv4-addr:value = '10.0.0.100']")]
    r = x.post("https://localhost:%d/taxii2/api/collections/%s/objects/" % (hp, coll), data=json.dumps({"objects": objs}),
               headers={"Content-Type": TAXII, "Accept": TAXII})
    assert r.status_code == 202 and r.json()["success_count"] == 2, r.text
    st = lambda: x.get("https://localhost:%d/api/v1/detect/status" % hp).json()
    assert until(lambda: st()["refused"] == 1 and st()["indicators"] == 1, 10)
    z = n2.client(cert=admin)
    z.pub("kz/logs/a", HEAD + LINES, 1)
    z.pub("kz/logs/b", HEAD + LINES, 1)
    assert until(lambda: st()["topics_skipped"] == 1 and st()["events"] == 3, 10)
    z.close()
    n2.shutdown()


def test_resume_matches_what_was_written_while_detection_was_off():
    """detect.resume (docs/DETECTION.md "Where matching resumes"): a node runs with detection,
    stops; runs without it while a sensor publishes logs that match; started with detection
    again, it matches those logs (the position saved in DATA_DIR/detect.pos) and, restarted
    once more, does not match them a second time. With detect.resume = 0 it starts at the
    log's end and matches none of them; with detect.resume_max = 1, only the newest record."""
    hp = free_port()
    on = "https.listen = 127.0.0.1:%d\ndetect.enabled = 1\ndetect.flush_ms = 100\n" % hp
    n3 = Node(on)
    admin = (os.path.join(n3.pki, "admin.pem"), os.path.join(n3.pki, "admin.key"))
    x = requests.Session()
    x.verify, x.cert = os.path.join(n3.pki, "ca.pem"), admin
    coll = json.load(open(os.path.join(n3.data, "taxii-collections.json")))[0]["id"]
    r = x.post("https://localhost:%d/taxii2/api/collections/%s/objects/" % (hp, coll),
               data=json.dumps({"objects": [indicator("[domain-name:value = 'ise.wrccdc.org']")]}),
               headers={"Content-Type": TAXII, "Accept": TAXII})
    assert r.status_code == 202 and r.json()["success_count"] == 1, r.text
    st = lambda: x.get("https://localhost:%d/api/v1/detect/status" % hp).json()
    assert until(lambda: st()["indicators"] == 1, 10)
    pos = os.path.join(n3.data, "detect.pos")

    def restart(config, stopped=lambda: None):
        assert n3.stop() == 0
        stopped()  # a clean stop saves the position: files are changed after it
        with open(n3.cfg, "w") as f:
            f.write("mqtt.listen = 127.0.0.1:%d\nthreads = 2\ntick_ms = 50\npolicy.open = 1\n%s" % (n3.port, config))
        n3.log = open(n3.log.name, "a")
        n3.start()

    def logs_while_off(messages, payload=HEAD + LINES):
        """Restarted with detection off, a sensor publishes messages of 3 matching lines."""
        restart("https.listen = 127.0.0.1:%d\ndetect.enabled = 0\n" % hp)
        z = n3.client(cert=admin)
        for _ in range(messages):
            z.pub("kz/logs/zeek/dns", payload, 1)
        z.close()

    def fields():
        """The log fields the sightings so far name ("... matched in the field F of a log ...")."""
        r = subprocess.run([KIZUNA, "query", "--data", n3.data, "--topic", "kz/detect/#", "--limit", "0",
                            "--format", "ndjson"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return [o["description"].split(" matched in the field ")[1].split(" ")[0]
                for line in r.stdout.splitlines() for o in json.loads(json.loads(line)["payload"])["objects"]
                if o["type"] == "sighting"]

    def quiet():
        """Started again: its indicator back, and after a while no log line read."""
        assert until(lambda: st()["indicators"] == 1, 10)
        time.sleep(0.5)
        assert st()["events"] == 0, st()
    assert until(lambda: os.path.exists(pos), 10), "no detect.pos written"
    logs_while_off(1)
    restart(on)
    assert until(lambda: st()["events"] == 3 and st()["matches"] == 3, 10), st()
    assert "detect: resuming at log record" in n3.logtext()
    restart(on)  # a clean stop saved where it ended: nothing is matched again
    quiet()
    # detect.resume = 0: the position is not used
    logs_while_off(1)
    restart(on + "detect.resume = 0\n")
    quiet()
    # detect.resume_max: of the 2 log records written meanwhile, only the newest is matched
    logs_while_off(2)
    restart(on + "detect.resume_max = 1\n")
    assert until(lambda: st()["events"] == 3, 10), st()
    assert "the oldest 1 are not matched (detect.resume_max 1)" in n3.logtext()
    time.sleep(0.5)
    assert st()["events"] == 3, st()
    # the topic's Zeek header came before the position and holds after it (DATA_DIR/detect.headers):
    # lines published without it while detection was off are read by their fields
    assert until(lambda: fields() and fields()[-1] == "query", 10), fields()
    headers = os.path.join(n3.data, "detect.headers")
    assert until(lambda: os.path.exists(headers), 10), "no detect.headers written"
    n = len(fields())
    logs_while_off(1, LINES)
    restart(on)
    assert until(lambda: st()["events"] == 3 and st()["parse_errors"] == 0, 10), st()
    assert "the Zeek headers of 1 log topics" in n3.logtext()
    assert until(lambda: len(fields()) > n, 10) and fields()[-1] == "query", fields()
    # without the headers file, the same lines are read as lines without a header
    n = len(fields())
    logs_while_off(1, LINES)
    restart(on, lambda: os.unlink(headers))
    assert until(lambda: len(fields()) > n, 10) and fields()[-1] == "message", fields()
    # a headers file that does not parse: said so, and the node serves
    restart(on, lambda: open(headers, "w").write("{not json"))
    assert until(lambda: st()["indicators"] == 1, 10)
    assert "detect.headers does not hold the topics' headers at log record" in n3.logtext()
    # headers over detect.max_headers_bytes: an empty set saved in their place, said once; after a
    # restart the topic's lines are read without a header, as with no file
    restart(on + "detect.max_headers_bytes = 256\n")
    assert until(lambda: st()["indicators"] == 1, 10)
    z = n3.client(cert=admin)
    z.pub("kz/logs/zeek/dns", HEAD + LINES, 1)
    z.close()
    assert until(lambda: "over detect.max_headers_bytes (256)" in n3.logtext(), 10)
    assert until(lambda: json.load(open(headers))["topics"] == [], 10), open(headers).read()
    n = len(fields())
    logs_while_off(1, LINES)
    restart(on)
    assert until(lambda: len(fields()) > n, 10) and fields()[-1] == "message", fields()
    # a file over the cap is not read: said so
    restart(on + "detect.max_headers_bytes = 256\n", lambda: open(headers, "w").write(" " * 300))
    assert until(lambda: st()["indicators"] == 1, 10)
    assert "detect.headers is larger than detect.max_headers_bytes (256)" in n3.logtext()
    # an unreadable position: said so, and matching starts at the log's end
    restart(on, lambda: open(pos, "w").write("garbage"))
    assert until(lambda: st()["indicators"] == 1, 10)
    assert "does not hold a log position" in n3.logtext()
    n3.shutdown()


if __name__ == "__main__":
    run_tests([test_posted_indicator_matches_published_log_and_the_label_decides, test_tlp_audience_narrows_the_sighting,
               test_unsupported_indicator_is_listed_and_warninglist_suppresses, test_deleted_indicator_stops_matching,
               test_followed_file_and_parse_errors, test_status_cli_metrics_and_restart,
               test_intel_file_read_and_read_again, test_caps_max_indicators_and_max_topics,
               test_resume_matches_what_was_written_while_detection_was_off])
