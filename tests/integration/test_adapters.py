"""The AIS adapter (docs/ADAPTERS.md) on a real node with a policy: gpsd's sample sent as UDP
datagrams and pyais's sample served by a TCP feed (a test process) become entities mmsi:<n>
with the adapter's identity and label; a reader below that label sees none of them; an MQTT
subscriber gets the records; a feed that drops is connected to again; hostile input is
counted by reason and never stops the adapter."""
import json, os, socket, tempfile, threading, time
import requests
from kzharness import Node, run_tests, free_port

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "tracks")
TD = "spiffe://kizuna.local/"
POLICY = """policy jp-mod
version adapters-1
levels unclassified restricted confidential secret
default-label class=restricted
allow connect where kind=user,sensor,service
allow publish kz/entity/# where id=spiffe://kizuna.local/mod/service/ais
allow subscribe kz/entity/# where org=mod
allow subscribe $SYS/metrics where role=monitor
"""
IDENTITIES = """%smod/service/ais org=mod clearance=confidential
%smod/user/high org=mod clearance=secret roles=monitor
%smod/user/low org=mod clearance=unclassified
""" % (TD, TD, TD)

tmp = tempfile.mkdtemp(prefix="kz-adapt-")
open(os.path.join(tmp, "kizuna.policy"), "w").write(POLICY)
open(os.path.join(tmp, "identities"), "w").write(IDENTITIES)
HPORT, UPORT = free_port(), free_port()


class Feed:
    """A TCP feed of NMEA lines: serves each connection the next batch, then closes it."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(4)
        self.port = self.s.getsockname()[1]
        self.served = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while self.batches:
            c, _ = self.s.accept()
            c.sendall("".join(self.batches.pop(0)).encode())
            time.sleep(0.2)
            c.close()
            self.served += 1


pyais = [l for l in open(os.path.join(SHARED, "pyais", "nmea_data_sample.txt")) if l.startswith("!")]
feed = Feed([pyais[:200], pyais[200:]])
node = Node("https.listen = 127.0.0.1:%d\npolicy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
            "adapter.ais.udp = 127.0.0.1:%d\nadapter.ais.tcp = 127.0.0.1:%d\n"
            "adapter.ais.identity = %smod/service/ais\nadapter.ais.label = class=confidential\n"
            "adapter.reconnect_max_ms = 1000\n" % (HPORT, tmp, tmp, UPORT, feed.port, TD))
certs = {w.split("/")[-1]: node.issue(w.replace("/", "-"), spiffe=TD + w) for w in ["mod/user/high", "mod/user/low"]}
CA = os.path.join(node.pki, "ca.pem")


def get(who, path):
    return requests.get("https://localhost:%d%s" % (HPORT, path), timeout=10, verify=CA, cert=certs[who])


def metrics():
    return dict(l.rsplit(" ", 1) for l in get("high", "/metrics").text.splitlines() if l.startswith("kizuna_adapter"))


def until(fn, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("not within %d s" % timeout)


def test_udp_sample_becomes_entities():
    sub = node.client("watch", cert=certs["high"])
    sub.sub("kz/entity/#", 1)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for l in open(os.path.join(SHARED, "gpsd", "sample.aivdm")):
        if l.startswith("!"):
            u.sendto(l.encode(), ("127.0.0.1", UPORT))
    e = until(lambda: get("high", "/api/v1/entities/mmsi:351759000").status_code == 200 and
              get("high", "/api/v1/entities/mmsi:351759000").json())
    assert e["name"] == "EVER DIADEM" and "callsign:3FOF8" in e["aliases"], e
    assert e["attributes"]["destination"] == "NEW YORK" and e["attributes"]["length"] == 295, e
    assert e["provenance"]["origin"] == TD + "mod/service/ais" and e["provenance"]["adapter"] == "ais", e
    assert e["label"] == "policy=jp-mod;class=confidential", e
    t1 = get("high", "/api/v1/entities/mmsi:371798000").json()
    assert abs(t1["position"]["lat"] - 48.3816333) < 1e-6 and abs(t1["motion"]["speed"] - 12.3 * 1852 / 3600) < 1e-3, t1
    assert get("high", "/api/v1/entities/callsign:3FOF8").json()["id"] == "mmsi:351759000"
    m = sub.get(timeout=10)
    assert m.topic.startswith("kz/entity/mmsi:"), m.topic
    sub.close()
    # below the adapter's label: nothing
    assert get("low", "/api/v1/entities/mmsi:351759000").status_code == 404
    assert not [x for x in get("low", "/api/v1/entities?limit=1000").json()["entities"] if x["id"].startswith("mmsi:")]
    vals = metrics()
    assert vals['kizuna_adapter_decoded_total{adapter="ais"}'] != "0", vals


def test_tcp_feed_and_reconnect():
    """Two connections: the feed closes after each batch; the adapter connects again."""
    until(lambda: feed.served == 2, 30)
    until(lambda: int(metrics()['kizuna_adapter_feed_connects_total{adapter="ais"}']) >= 2)
    ids = {x["id"] for x in get("high", "/api/v1/entities?limit=1000").json()["entities"]}
    assert len([i for i in ids if i.startswith("mmsi:")]) > 100, len(ids)


def test_hostile_input_counted():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    before = metrics()
    bad = [b"!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4B\n",   # checksum
           b"!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0\n",      # no checksum
           b"!AIVDM,2,2,9,A,88888888880,2*2D\n",                    # a second part alone
           b"!AIVDM," + b"A" * 5000 + b"\n",                       # overlong
           os.urandom(1400)]
    for b in bad * 20:
        u.sendto(b, ("127.0.0.1", UPORT))
    after = until(lambda: int(metrics()['kizuna_adapter_rejected_total{adapter="ais",reason="checksum"}']) >=
                  int(before['kizuna_adapter_rejected_total{adapter="ais",reason="checksum"}']) + 20 and metrics())
    assert int(after['kizuna_adapter_rejected_total{adapter="ais",reason="overlong"}']) >= 20, after
    assert int(after['kizuna_adapter_rejected_total{adapter="ais",reason="malformed"}']) >= 40, after
    # still decoding
    u.sendto(b"!AIVDM,1,1,,B,15RTgt0PAso;90TKcjM8h6g208CQ,0*49\n", ("127.0.0.1", UPORT))
    until(lambda: int(metrics()['kizuna_adapter_decoded_total{adapter="ais"}']) >
          int(after['kizuna_adapter_decoded_total{adapter="ais"}']))
    log = node.logtext()
    assert log.count("checksum mismatch") == 1, "each reason is logged once"


run_tests([test_udp_sample_becomes_entities, test_tcp_feed_and_reconnect, test_hostile_input_counted])
