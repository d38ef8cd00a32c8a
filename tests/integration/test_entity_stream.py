"""The entity stream (docs/ENTITIES.md "The stream") on a real node: Server-Sent Events read
with requests, updates published with paho. Proves: a snapshot then the events in order; no
gap and no duplicate at the seam while updates flow; a reader below an entity's label gets
neither the entity nor its removal; Last-Event-ID resumes without a snapshot; a client that
does not read does not grow the node's memory and, once it reads, gets a reset, a new snapshot
and the newest state; bad parameters get a 400 with a JSON reason; heartbeats."""
import json, os, struct, tempfile, threading, time
import requests
from kzharness import Node, run_tests, free_port, tmpdir
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

TD = "spiffe://kizuna.local/"
POLICY = """policy jp-mod
version stream-1
levels unclassified restricted confidential secret
category caveat restrictive attr=caveats cyber
default-label class=restricted
allow connect where kind=user,sensor
allow publish kz/entity/# where kind=sensor
allow subscribe kz/entity/# where org=mod
"""
IDENTITIES = """%smod/sensor/s1 org=mod nation=jpn clearance=secret
%smod/user/high org=mod nation=jpn clearance=secret
%smod/user/low org=mod nation=jpn clearance=restricted
""" % (TD, TD, TD)

if os.environ.get("ASAN_OPTIONS"):  # the sanitizer's quarantine keeps freed memory on purpose (256 MB):
    os.environ["ASAN_OPTIONS"] += ":quarantine_size_mb=8"  # the memory bound below is about the node's own
tmp = tmpdir("kz-stream-")
open(os.path.join(tmp, "kizuna.policy"), "w").write(POLICY)
open(os.path.join(tmp, "identities"), "w").write(IDENTITIES)
HPORT = free_port()
node = Node("https.listen = 127.0.0.1:%d\npolicy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
            "entity.stream_ring = 1024\nentity.stream_heartbeat_ms = 1000\n" % (HPORT, tmp, tmp))
certs = {w.split("/")[-1]: node.issue(w.replace("/", "-"), spiffe=TD + w)
         for w in ["mod/sensor/s1", "mod/user/high", "mod/user/low"]}


class Pub:
    """paho, MQTT 5, QoS 1, several messages in flight."""

    def __init__(self):
        self.c = mqtt.Client(client_id="s1", protocol=mqtt.MQTTv5)
        crt, key = certs["s1"]
        self.c.tls_set(ca_certs=os.path.join(node.pki, "ca.pem"), certfile=crt, keyfile=key)
        self.c.max_inflight_messages_set(100)
        self.c.connect("localhost", node.port, 30)
        self.c.loop_start()

    def send(self, eid, body, label=None, wait=True):
        p = Properties(PacketTypes.PUBLISH)
        if label:
            p.UserProperty = [("kz-label", label)]
        info = self.c.publish("kz/entity/" + eid, json.dumps(dict(body, id=eid)).encode(), 1, properties=p)
        if wait:
            info.wait_for_publish(10)
        return info


pub = Pub()


class Stream:
    """One SSE client: events as (name, id, data) in a list, read by a thread."""

    def __init__(self, who, query="", last_id=None, read=True):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        self.r = requests.get("https://localhost:%d/api/v1/stream/entities%s" % (HPORT, query), stream=True,
                              timeout=30, verify=os.path.join(node.pki, "ca.pem"), cert=certs[who], headers=headers)
        self.events, self.comments = [], 0
        self.go = threading.Event()
        if read:
            self.go.set()
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        self.go.wait()
        ev = {}
        try:
            for line in self.r.iter_lines(decode_unicode=True):
                if line is None:
                    continue
                if line == "":
                    if ev:
                        self.events.append((ev.get("event", "message"), ev.get("id"),
                                            json.loads(ev["data"]) if "data" in ev else None))
                    ev = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    k, _, v = line.partition(": ")
                    ev[k] = v
        except Exception:
            pass

    def until(self, fn, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = fn(self.events)
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError("not within %d s; events: %r" % (timeout, [(e[0], e[1], (e[2] or {}).get("id")) for e in self.events][-20:]))

    def close(self):
        self.r.close()


def synced(evs):
    return any(e[0] == "synced" for e in evs)


def node_rss_kb():
    return int([l for l in open("/proc/%d/status" % node.proc.pid) if l.startswith("VmRSS")][0].split()[1])


def test_snapshot_then_events():
    pub.send("s-1", {"name": "one", "position": {"lat": 1, "lon": 2}})
    pub.send("s-2", {"name": "two"})
    st = Stream("high")
    evs = st.until(lambda e: synced(e) and e)
    snap = {e[2]["id"]: e[2] for e in evs if e[0] == "snapshot"}
    assert snap["s-1"]["name"] == "one" and "s-2" in snap, snap
    assert all(e[1] is None for e in evs if e[0] == "snapshot")
    pub.send("s-1", {"name": "one again"})
    pub.send("s-3", {"name": "three"})
    pub.send("s-2", {"status": "removed"})
    st.until(lambda e: any(x[0] == "remove" and x[2]["id"] == "s-2" for x in e))
    tail = [(e[0], e[2]["id"]) for e in st.events if e[0] in ("create", "update", "remove")]
    assert tail == [("update", "s-1"), ("create", "s-3"), ("remove", "s-2")], tail
    ids = [e[1] for e in st.events if e[1]]
    nums = [int(i.split("-")[1]) for i in ids]
    assert nums == sorted(nums) and len(set(nums)) == len(nums), ids
    st.until(lambda e: st.comments >= 1, 5)  # a heartbeat while idle
    st.close()


def test_seam_no_gap_no_duplicate():
    """Updates flow on 20 entities while a stream opens: each entity's counter as the client
    sees it (snapshot, then events) only goes up, never repeats, and ends at the last one."""
    stop = threading.Event()
    last = {}

    def flow():
        k = 0
        while not stop.is_set():
            k += 1
            for i in range(20):
                pub.send("seam-%d" % i, {"attributes": {"k": k}}, wait=(i == 19))
                last["seam-%d" % i] = k

    t = threading.Thread(target=flow, daemon=True)
    t.start()
    time.sleep(0.5)
    st = Stream("high")
    st.until(synced)
    time.sleep(1.0)
    stop.set()
    t.join(10)
    final = dict(last)
    st.until(lambda e: all(any(x[2] and x[2].get("id") == k and x[2].get("attributes", {}).get("k") == v for x in e)
                           for k, v in final.items()))
    seen = {}
    for name, _id, d in st.events:
        if d and d.get("id", "").startswith("seam-"):
            seen.setdefault(d["id"], []).append(d["attributes"]["k"])
    for k, ks in seen.items():
        assert ks == sorted(set(ks)), (k, ks)  # increasing, no duplicate
        assert ks[-1] == final[k], (k, ks, final[k])
    assert len(seen) == 20
    st.close()


def test_labels_on_the_stream():
    low, high = Stream("low"), Stream("high")
    low.until(synced)
    high.until(synced)
    pub.send("hid-1", {"name": "hidden"}, label="class=secret")
    pub.send("hid-1", {"status": "removed"}, label="class=secret")
    pub.send("vis-1", {"name": "visible"})
    high.until(lambda e: any(x[0] == "create" and x[2]["id"] == "vis-1" for x in e))
    low.until(lambda e: any(x[0] == "create" and x[2]["id"] == "vis-1" for x in e))
    assert any(x[2] and x[2]["id"] == "hid-1" for x in high.events)
    assert not any(x[2] and x[2].get("id") == "hid-1" for x in low.events), low.events
    low.close()
    high.close()


def test_resume_with_last_event_id():
    st = Stream("high")
    st.until(synced)
    pub.send("r-1", {"name": "a"})
    st.until(lambda e: any(x[2] and x[2].get("id") == "r-1" for x in e))
    last_id = [e[1] for e in st.events if e[1]][-1]
    st.close()
    pub.send("r-1", {"name": "b"})
    pub.send("r-2", {"name": "c"})
    again = Stream("high", last_id=last_id)
    evs = again.until(lambda e: any(x[2] and x[2].get("id") == "r-2" for x in e) and e)
    kinds = [e[0] for e in evs]
    assert "snapshot" not in kinds and "synced" not in kinds and "reset" not in kinds, kinds
    assert [(e[0], e[2]["id"], e[2].get("name")) for e in evs] == [("update", "r-1", "b"), ("create", "r-2", "c")], evs
    again.close()
    # an id of another process, or one the ring no longer holds: reset, then a snapshot
    other = Stream("high", last_id="1-5")
    evs = other.until(lambda e: synced(e) and e)
    assert evs[0][0] == "reset" and any(e[0] == "snapshot" for e in evs), evs[:3]
    other.close()


def test_slow_client_memory_and_catch_up():
    """A client that does not read while 5000 updates of 50 entities pass (the ring holds
    1024): the node's memory stays flat; once it reads it has the newest state of each (what
    it missed is coalesced). An id from before the ring's window resumes with a reset."""
    slow = Stream("high", read=False)
    time.sleep(0.5)
    before = node_rss_kb()
    infos = [pub.send("slow-%d" % (i % 50), {"attributes": {"n": i}}, wait=False) for i in range(5000)]
    for info in infos:
        info.wait_for_publish(30)
    grew = node_rss_kb() - before
    assert grew < 32 * 1024, "node grew by %d KiB with a stream that does not read" % grew
    slow.go.set()
    evs = slow.until(lambda e: all(any(x[2] and x[2].get("id") == "slow-%d" % k and
                                       x[2].get("attributes", {}).get("n") == 4950 + k for x in e) for k in range(50)) and e, 30)
    print("  node RSS grew by %d KiB while the stream did not read; it got %d events for 5000 updates"
          % (grew, len(evs)))
    old_id = [e[1] for e in evs if e[1]][0]  # its "synced", 5000 events ago: outside the ring
    slow.close()
    late = Stream("high", last_id=old_id)
    evs = late.until(lambda e: synced(e) and e)
    assert evs[0][0] == "reset", [e[0] for e in evs][:3]
    late.close()


def test_bad_requests():
    for q, why in [("?limit=5", "for lists"), ("?bbox=1", "bbox"), ("?colour=red", "unknown parameter")]:
        r = requests.get("https://localhost:%d/api/v1/stream/entities%s" % (HPORT, q), timeout=10,
                         verify=os.path.join(node.pki, "ca.pem"), cert=certs["high"])
        assert r.status_code == 400 and why in r.json()["description"], (q, r.text)
    r = requests.post("https://localhost:%d/api/v1/stream/entities" % HPORT, timeout=10,
                      verify=os.path.join(node.pki, "ca.pem"), cert=certs["high"])
    assert r.status_code == 405


def test_max_streams():
    """entity.max_streams: one more stream than the cap gets a 503 naming the directive."""
    hp = free_port()
    small = Node("https.listen = 127.0.0.1:%d\nentity.max_streams = 1\n" % hp)
    url = "https://localhost:%d/api/v1/stream/entities" % hp
    tls = dict(verify=os.path.join(small.pki, "ca.pem"), cert=(os.path.join(small.pki, "admin.pem"),
                                                               os.path.join(small.pki, "admin.key")))
    first = requests.get(url, stream=True, timeout=10, **tls)
    assert first.status_code == 200
    second = requests.get(url, timeout=10, **tls)
    assert second.status_code == 503 and "entity.max_streams" in second.json()["description"], second.text
    first.close()
    small.shutdown()


run_tests([test_max_streams, test_snapshot_then_events, test_seam_no_gap_no_duplicate, test_labels_on_the_stream,
           test_resume_with_last_event_id, test_slow_client_memory_and_catch_up, test_bad_requests])
