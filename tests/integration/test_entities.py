"""The entity picture (docs/ENTITIES.md) on a real node: entity updates published with paho
(MQTT 5, labelled) on kz/entity/<id>, read back with requests over the HTTPS API. Proves the
rules end to end (partial updates merge, an older update changes nothing, an alias finds its
entity, stale after stale_time, removal), that a reader below an entity's label sees neither
it nor its count, that a bad query gets a 400 with a JSON reason, and that the picture comes
back from the log after a restart."""
import datetime, json, os, shutil, tempfile, time
import requests
import struct
from kzharness import Node, run_tests, free_port, s16, varint, tmpdir
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

TD = "spiffe://kizuna.local/"
POLICY = """policy jp-mod
version entities-1
levels unclassified restricted confidential secret
category caveat restrictive attr=caveats cyber
default-label class=restricted
allow connect where kind=user,sensor
allow publish kz/entity/# where kind=sensor
allow subscribe kz/entity/# where org=mod
allow subscribe $SYS/metrics where role=monitor
"""
IDENTITIES = """%smod/sensor/s1 org=mod nation=jpn clearance=secret
%smod/user/high org=mod nation=jpn clearance=secret roles=monitor
%smod/user/low org=mod nation=jpn clearance=restricted
%smeti/user/other org=meti nation=jpn clearance=secret
""" % (TD, TD, TD, TD)

tmp = tmpdir("kz-ent-")
open(os.path.join(tmp, "kizuna.policy"), "w").write(POLICY)
open(os.path.join(tmp, "identities"), "w").write(IDENTITIES)
HPORT = free_port()
node = Node("https.listen = 127.0.0.1:%d\npolicy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
            % (HPORT, tmp, tmp))
certs = {w.split("/")[-1]: node.issue(w.replace("/", "-"), spiffe=TD + w)
         for w in ["mod/sensor/s1", "mod/user/high", "mod/user/low", "meti/user/other"]}
sensor = node.client("s1", cert=certs["s1"])


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def publish(eid, body, label=None):
    import json
    p = Properties(PacketTypes.PUBLISH)
    if label:
        p.UserProperty = [("kz-label", label)]
    sensor.pub("kz/entity/" + eid, json.dumps(body).encode(), 1, props=p)
    sensor.acks.get(timeout=10)


def get(who, path, **kw):
    return requests.get("https://localhost:%d/api/v1/entities%s" % (HPORT, path), timeout=10,
                        verify=os.path.join(node.pki, "ca.pem"), cert=certs[who], **kw)


def until(fn, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("not within %d s" % timeout)


def test_publish_and_read():
    now = time.time()
    publish("trk-1", {"id": "trk-1", "aliases": ["mmsi:431000000"], "type": "a-f-S-X", "name": "Kizuna Maru",
                      "position": {"lat": 35.6, "lon": 139.7, "ce": 25}, "source_time": iso(now),
                      "provenance": {"adapter": "ais", "sensor": "rx-7"}})
    e = until(lambda: get("high", "/trk-1").status_code == 200 and get("high", "/trk-1").json())
    assert e["name"] == "Kizuna Maru" and e["position"]["lat"] == 35.6 and e["status"] == "live", e
    assert e["provenance"]["origin"] == TD + "mod/sensor/s1" and e["provenance"]["adapter"] == "ais", e
    assert e["label"].endswith("class=restricted"), e
    # by alias
    assert get("high", "/mmsi:431000000").json()["id"] == "trk-1"
    # partial: only the position changes
    publish("trk-1", {"id": "trk-1", "position": {"lat": 35.7, "lon": 139.8}, "source_time": iso(now + 1)})
    until(lambda: get("high", "/trk-1").json()["position"]["lat"] == 35.7)
    e = get("high", "/trk-1").json()
    assert e["name"] == "Kizuna Maru" and e["type"] == "a-f-S-X", e
    # older: nothing changes
    publish("trk-1", {"id": "trk-1", "name": "old news", "source_time": iso(now - 60)})
    publish("trk-1", {"id": "trk-1", "motion": {"speed": 4}, "source_time": iso(now + 2)})  # a marker after it
    until(lambda: "motion" in get("high", "/trk-1").json())
    assert get("high", "/trk-1").json()["name"] == "Kizuna Maru"
    m = requests.get("https://localhost:%d/metrics" % HPORT, timeout=10, verify=os.path.join(node.pki, "ca.pem"),
                     cert=certs["high"]).text
    vals = dict(l.rsplit(" ", 1) for l in m.splitlines() if l.startswith("kizuna_entit"))
    assert vals["kizuna_entities_live"] == "1" and vals["kizuna_entity_updates_older_total"] == "1", vals
    assert int(vals["kizuna_entity_updates_applied_total"]) == 3, vals


def test_history():
    """The updates as published, in log order, the older one included; by alias too; paged;
    label-checked per record."""
    h = until(lambda: len(get("high", "/trk-1/history").json().get("history", [])) >= 4 and get("high", "/trk-1/history"))
    rows = h.json()["history"]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    names = [r["update"].get("name") for r in rows]
    assert "old news" in names, rows  # not applied, still in the history
    assert rows[0]["update"]["position"]["lat"] == 35.6 and rows[0]["origin"] == TD + "mod/sensor/s1", rows[0]
    assert rows[0]["topic"] == "kz/entity/trk-1" and rows[0]["label"].endswith("class=restricted"), rows[0]
    assert get("high", "/mmsi:431000000/history").json()["history"] == rows
    two = get("high", "/trk-1/history?limit=2").json()
    assert len(two["history"]) == 2 and two["more"] is True
    later = get("high", "/trk-1/history?since=" + rows[2]["received_time"]).json()["history"]
    assert [r["seq"] for r in later] == [r["seq"] for r in rows[2:]], later
    assert get("high", "/trk-1/history?since=yesterday").status_code == 400
    assert get("high", "/nobody/history").status_code == 404
    assert get("high", "/trk-1/elsewhere").status_code == 404


def test_labels_hide_entities():
    publish("trk-secret", {"id": "trk-secret", "name": "hidden", "position": {"lat": 1, "lon": 2}},
            label="class=secret")
    until(lambda: get("high", "/trk-secret").status_code == 200)
    low = get("low", "")
    assert low.status_code == 200
    ids = [e["id"] for e in low.json()["entities"]]
    assert "trk-1" in ids and "trk-secret" not in ids and "trk-secret" not in low.text, low.text
    r = get("low", "/trk-secret")
    assert r.status_code == 404 and r.json()["http_status"] in ("404", 404), r.text
    assert get("high", "/trk-secret").json()["name"] == "hidden"
    # no subscribe rule for meti on kz/entity/#: nothing at all
    assert get("other", "").json()["entities"] == []
    assert get("other", "/trk-1").status_code == 404
    # nor its history
    assert get("low", "/trk-secret/history").status_code == 404
    assert get("high", "/trk-secret/history").json()["history"][0]["update"]["name"] == "hidden"


def test_field_labels():
    """A precise position published at secret on an entity created at restricted: the
    restricted reader sees the entity without the position, the alias or the provenance of
    that update (API, alias lookup, history, MQTT records); the secret reader sees all, with
    field_labels saying which fields carry which label."""
    now = time.time()
    publish("trk-fl", {"id": "trk-fl", "name": "Patrol 7", "position": {"lat": 20.0, "lon": 120.0},
                       "source_time": iso(now)})
    until(lambda: get("low", "/trk-fl").status_code == 200)
    publish("trk-fl", {"id": "trk-fl", "aliases": ["callsign:P7"], "position": {"lat": 20.123456, "lon": 120.654321,
                                                                                  "ce": 2}, "source_time": iso(now + 1)},
            label="class=secret")
    high = until(lambda: "field_labels" in get("high", "/trk-fl").json() and get("high", "/trk-fl").json())
    assert high["position"]["lat"] == 20.123456 and high["label"] == "policy=jp-mod;class=restricted", high
    assert high["field_labels"]["position"] == "policy=jp-mod;class=secret", high
    assert "callsign:P7" in high["aliases"], high
    low = get("low", "/trk-fl")
    assert low.status_code == 200 and low.json()["name"] == "Patrol 7", low.text
    assert "position" not in low.json() and "20.12" not in low.text and "P7" not in low.text, low.text
    assert "secret" not in low.text and "provenance" not in low.json(), low.text
    assert "20.12" not in get("low", "?limit=1000").text
    assert get("low", "/callsign:P7").status_code == 404
    assert get("high", "/callsign:P7").json()["id"] == "trk-fl"
    assert get("low", "/callsign:P7/history").status_code == 404
    hist = get("low", "/trk-fl/history").json()["history"]
    assert len(hist) == 1 and "20.12" not in json.dumps(hist), hist
    # the stream's snapshot, rendered per reader
    def snapshot(who):
        r = requests.get("https://localhost:%d/api/v1/stream/entities" % HPORT, stream=True, timeout=10,
                         verify=os.path.join(node.pki, "ca.pem"), cert=certs[who])
        text = ""
        for line in r.iter_lines(decode_unicode=True):
            text += line + "\n"
            if line.startswith("event: synced"):
                break
        r.close()
        return text
    low_s, high_s = snapshot("low"), snapshot("high")
    assert "trk-fl" in low_s and "20.12" not in low_s and "P7" not in low_s, low_s
    assert "20.123456" in high_s and "callsign:P7" in high_s, high_s
    # the restricted position again: it has the entity's label again, so the low reader sees it
    publish("trk-fl", {"id": "trk-fl", "position": {"lat": 20.2, "lon": 120.2}, "source_time": iso(now + 2)})
    until(lambda: get("low", "/trk-fl").json().get("position", {}).get("lat") == 20.2)
    assert "position" not in get("high", "/trk-fl").json().get("field_labels", {})


def test_mqtt_snapshot():
    """A subscription with the user property kz-snapshot gets the current picture first
    (retained, kz-snapshot = 1, the entity's whole state), label-checked; then live records."""
    import json as js
    def snap(who):
        c = node.client("snap-" + who, cert=certs[who])
        p = Properties(PacketTypes.SUBSCRIBE)
        p.UserProperty = [("kz-snapshot", "1")]
        assert c.sub("kz/entity/#", 1, props=p)[0].value == 1
        got = {}
        while True:
            try:
                m = c.get(timeout=1.5)
            except Exception:
                return c, got
            props = dict(getattr(m.properties, "UserProperty", []) or [])
            assert m.retain and props.get("kz-snapshot") == "1", (m.topic, props)
            got[m.topic] = js.loads(m.payload)
    hc, high = snap("high")
    assert high["kz/entity/trk-1"]["name"] == "Kizuna Maru" and high["kz/entity/trk-1"]["position"]["lat"] == 35.7, high
    assert "kz/entity/trk-secret" in high
    lc, low = snap("low")
    assert "kz/entity/trk-1" in low and "kz/entity/trk-secret" not in low, sorted(low)
    publish("trk-1", {"id": "trk-1", "name": "live again", "source_time": iso(time.time() + 5)})
    m = lc.get(timeout=10)
    assert m.topic == "kz/entity/trk-1" and not m.retain and js.loads(m.payload)["name"] == "live again"
    hc.close()
    lc.close()


def test_filters_and_errors():
    publish("trk-far", {"id": "trk-far", "type": "a-h-A", "position": {"lat": -33.9, "lon": 151.2}})
    until(lambda: get("high", "/trk-far").status_code == 200)
    box = get("high", "?bbox=139,35,140,36").json()["entities"]
    assert [e["id"] for e in box] == ["trk-1"], box
    assert [e["id"] for e in get("high", "?type=a-h").json()["entities"]] == ["trk-far"]
    page = get("high", "?limit=1").json()
    assert len(page["entities"]) == 1 and page["more"] is True
    rest = get("high", "?limit=1000&next=" + page["next"]).json()
    assert page["entities"][0]["id"] not in [e["id"] for e in rest["entities"]] and len(rest["entities"]) >= 2
    for q, why in [("?limit=abc", "limit"), ("?bbox=1,2,3", "bbox"), ("?colour=red", "unknown parameter"),
                   ("?since=yesterday", "since"), ("?status=dead", "status")]:
        r = get("high", q)
        assert r.status_code == 400 and why in r.json()["description"], (q, r.text)
    r = requests.post("https://localhost:%d/api/v1/entities" % HPORT, data=b"{}", timeout=10,
                      verify=os.path.join(node.pki, "ca.pem"), cert=certs["high"])
    assert r.status_code == 405 and "kz/entity/" in r.json()["description"], r.text


def test_bad_updates_refused_at_publish():
    """A PUBLISH on kz/entity/<id> that is not a valid update is refused with 0x99 (Payload
    format invalid) and the decoder's reason string, and never stored."""
    raw = node.raw(cert=certs["s1"])
    assert raw.connect(b"bad-s1")[0] == 2
    cases = [("kz/entity/trk-x", b'{"id":"trk-x","position":{"lat":95,"lon":0}}', "lat in [-90, 90]"),
             ("kz/entity/trk-x", b'{"id":"trk-y"}', "not the topic's last level"),
             ("kz/entity/trk-x", b'not json', "not JSON"),
             ("kz/entity/a/b", b'{"id":"a"}', "one topic level"),
             ("kz/entity/trk-x", b'{"id":"trk-x","colour":"red"}', "unknown member")]
    for pid, (topic, payload, why) in enumerate(cases, 1):
        body = s16(topic.encode()) + struct.pack("!H", pid) + varint(0) + payload
        raw.send(bytes([0x32]) + varint(len(body)) + body)
        t, _f, b = raw.packet()
        assert t == 4 and struct.unpack("!H", b[:2])[0] == pid and b[2] == 0x99, (topic, payload, b)
        assert why.encode() in b, (why, b)
    raw.send(b"\xe0\x00")
    assert get("high", "/trk-x").status_code == 404 and get("high", "/trk-y").status_code == 404


def test_stale_and_removed():
    now = time.time()
    publish("trk-brief", {"id": "trk-brief", "source_time": iso(now), "stale_time": iso(now + 1)})
    until(lambda: get("high", "/trk-brief").status_code == 200)
    until(lambda: get("high", "/trk-brief").json()["status"] == "stale", 5)
    publish("trk-brief", {"id": "trk-brief", "status": "removed", "source_time": iso(now + 2)})
    until(lambda: get("high", "/trk-brief").json()["status"] == "removed")
    assert "trk-brief" not in [e["id"] for e in get("high", "").json()["entities"]]
    assert "trk-brief" in [e["id"] for e in get("high", "?status=removed").json()["entities"]]


def test_restart_keeps_the_picture():
    global sensor
    sensor.close()
    node.proc.terminate()  # SIGTERM: a clean stop
    node.proc.wait(20)
    node.start()
    until(lambda: get("high", "/trk-1").status_code == 200)
    e = get("high", "/trk-1").json()
    assert e["position"]["lat"] == 35.7 and e["name"] == "live again", e
    sensor = node.client("s1", cert=certs["s1"])


run_tests([test_publish_and_read, test_history, test_labels_hide_entities, test_field_labels, test_mqtt_snapshot, test_filters_and_errors, test_bad_updates_refused_at_publish,
           test_stale_and_removed,
           test_restart_keeps_the_picture])
