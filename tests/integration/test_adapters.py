"""The adapters (docs/ADAPTERS.md) on a real node with a policy. AIS: gpsd's sample sent as UDP
datagrams and pyais's sample served by a TCP feed (a test process) become entities mmsi:<n>
with the adapter's identity and label; a reader below that label sees none of them; an MQTT
subscriber gets the records; a feed that drops is connected to again; hostile input is
counted by reason and never stops the adapter. ADS-B: aircraft appear from an AVR feed, a
Beast feed and an SBS feed served by test processes (the worked examples of The 1090 MHz
Riddle: an identification, an even/odd position pair, a velocity)."""
import json, os, socket, tempfile, threading, time
import requests
from kzharness import Node, until, run_tests, free_port, tmpdir

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "tracks")
TD = "spiffe://kizuna.local/"
POLICY = """policy jp-mod
version adapters-1
levels unclassified restricted confidential secret
default-label class=restricted
allow connect where kind=user,sensor,service
allow publish kz/entity/# where id=spiffe://kizuna.local/mod/service/ais,spiffe://kizuna.local/mod/service/adsb
allow subscribe kz/entity/# where org=mod
allow subscribe $SYS/metrics where role=monitor
"""
IDENTITIES = """%smod/service/ais org=mod clearance=confidential
%smod/service/adsb org=mod clearance=restricted
%smod/user/high org=mod clearance=secret roles=monitor
%smod/user/low org=mod clearance=unclassified
""" % (TD, TD, TD, TD)

tmp = tmpdir("kz-adapt-")
open(os.path.join(tmp, "kizuna.policy"), "w").write(POLICY)
open(os.path.join(tmp, "identities"), "w").write(IDENTITIES)
HPORT, UPORT = free_port(), free_port()


class Feed:
    """A TCP feed: serves each connection the next batch of lines (or bytes), then closes it."""

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
            batch = self.batches.pop(0)
            c.sendall(batch if isinstance(batch, bytes) else "".join(batch).encode())
            time.sleep(0.2)
            c.close()
            self.served += 1


pyais = [l for l in open(os.path.join(SHARED, "pyais", "nmea_data_sample.txt")) if l.startswith("!")]
feed = Feed([pyais[:200], pyais[200:]])
IDENT, ODD, EVEN, VEL = ("8D4840D6202CC371C32CE0576098", "8D40621D58C386435CC412692AD6",
                         "8D40621D58C382D690C8AC2863A7", "8D485020994409940838175B284F")
avr = Feed([["*%s;\r\n" % m for m in ("0123", ODD, EVEN, IDENT, VEL)]])  # a bad line first


def beast_frame(hexmsg, ts=0x1A0102030405):
    body = ts.to_bytes(6, "big") + b"\x80" + bytes.fromhex(hexmsg)
    return b"\x1a3" + body.replace(b"\x1a", b"\x1a\x1a")


beast = Feed([b"junk" + beast_frame(ODD.replace("40621D", "40621D")) + beast_frame(EVEN) + beast_frame(IDENT)])
sbs = Feed([["MSG,1,1,1,A1B2C3,1,2024/01/01,12:00:00.000,2024/01/01,12:00:00.000,JAL123  ,,,,,,,,,,,0\r\n",
             "MSG,3,1,1,A1B2C3,1,2024/01/01,12:00:01.000,2024/01/01,12:00:01.000,,35000,,,35.5533,139.7811,,,0,0,0,0\r\n",
             "MSG,4,1,1,A1B2C3,1,2024/01/01,12:00:02.000,2024/01/01,12:00:02.000,,,450,90.0,,,-640,,0,0,0,0\r\n",
             "MSG,3,1,1,NOTHEX,1,,,,,,,,,1,1,,,0,0,0,0\r\n"]])
node = Node("https.listen = 127.0.0.1:%d\npolicy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
            "adapter.ais.udp = 127.0.0.1:%d\nadapter.ais.tcp = 127.0.0.1:%d\n"
            "adapter.ais.identity = %smod/service/ais\nadapter.ais.label = class=confidential\n"
            "adapter.reconnect_max_ms = 1000\n"
            "adapter.adsb.avr = 127.0.0.1:%d\nadapter.adsb.beast = 127.0.0.1:%d\nadapter.adsb.sbs = 127.0.0.1:%d\n"
            "adapter.adsb.identity = %smod/service/adsb\n"
            % (HPORT, tmp, tmp, UPORT, feed.port, TD, avr.port, beast.port, sbs.port, TD))
certs = {w.split("/")[-1]: node.issue(w.replace("/", "-"), spiffe=TD + w) for w in ["mod/user/high", "mod/user/low"]}
CA = os.path.join(node.pki, "ca.pem")


def get(who, path):
    return requests.get("https://localhost:%d%s" % (HPORT, path), timeout=10, verify=CA, cert=certs[who])


def metrics():
    return dict(l.rsplit(" ", 1) for l in get("high", "/metrics").text.splitlines() if l.startswith("kizuna_adapter"))



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
        time.sleep(0.002)  # UDP: a burst beyond the socket's buffer would be lost, not refused
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


def test_adsb_feeds():
    """AVR (with a bad line first), Beast (with junk before the frames) and SBS."""
    a = until(lambda: get("high", "/api/v1/entities/icao:40621d").json().get("position") and
              get("high", "/api/v1/entities/icao:40621d").json())
    assert abs(a["position"]["lat"] - 52.2572) < 1e-4 and abs(a["position"]["lon"] - 3.91937) < 1e-4, a
    assert a["attributes"]["altitude_ft"] == 38000 and a["provenance"]["adapter"] == "adsb", a
    assert a["label"] == "policy=jp-mod;class=restricted" and a["provenance"]["origin"] == TD + "mod/service/adsb", a
    k = until(lambda: get("high", "/api/v1/entities/callsign:KLM1023").status_code == 200 and
              get("high", "/api/v1/entities/callsign:KLM1023").json())
    assert k["id"] == "icao:4840d6" and k["name"] == "KLM1023", k
    v = until(lambda: get("high", "/api/v1/entities/icao:485020").status_code == 200 and
              get("high", "/api/v1/entities/icao:485020").json())
    assert abs(v["motion"]["speed"] - 159.2 * 1852 / 3600) < 0.01 and abs(v["motion"]["course"] - 182.88) < 0.01, v
    j = until(lambda: get("high", "/api/v1/entities/icao:a1b2c3").json().get("motion") and
              get("high", "/api/v1/entities/icao:a1b2c3").json())
    assert j["name"] == "JAL123" and abs(j["position"]["lat"] - 35.5533) < 1e-6, j
    assert j["attributes"]["altitude_ft"] == 35000 and abs(j["motion"]["climb"] + 640 * 0.3048 / 60) < 0.01, j
    vals = until(lambda: int(metrics()['kizuna_adapter_feed_connects_total{adapter="adsb"}']) >= 3 and metrics())
    assert int(vals['kizuna_adapter_rejected_total{adapter="adsb",reason="malformed"}']) >= 2, vals


def test_replay_beast_and_sbs_at_recorded_pace():
    """kizuna adapter replay beast|sbs --speed recorded: a Beast file whose frames the
    receiver stamped 1 s apart (its 12 MHz clock) and an SBS file with lines 1 s apart are
    sent with those gaps; their aircraft appear. --speed max sends the same at once."""
    import subprocess
    from kzharness import KIZUNA
    adsb = node.issue("replay-adsb", spiffe=TD + "mod/service/adsb")
    tls = ["-p", str(node.port), "--cafile", CA, "--cert", adsb[0], "--key", adsb[1]]
    t0 = 0x010000000000
    f = os.path.join(tmp, "recorded.beast")
    with open(f, "wb") as out:  # ODD (its altitude), EVEN 1 s later (the position), IDENT 2 s later
        out.write(beast_frame(ODD, t0) + beast_frame(EVEN, t0 + 12000000) + beast_frame(IDENT, t0 + 24000000))
    start = time.time()
    r = subprocess.run([KIZUNA, "adapter", "replay", "beast", f, "--speed", "recorded"] + tls,
                       capture_output=True, text=True, timeout=60)
    took = time.time() - start
    assert r.returncode == 0 and "3 entity updates published, 3 acknowledged, 0 refused" in r.stderr, r.stderr
    assert took >= 1.5, took  # the last update waited for its recorded time, 2 s after the first frame
    start = time.time()
    r = subprocess.run([KIZUNA, "adapter", "replay", "beast", f] + tls, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "3 entity updates published" in r.stderr, r.stderr
    s = os.path.join(tmp, "recorded.sbs")
    with open(s, "w") as out:
        out.write("MSG,1,1,1,C0FFEE,1,2024/01/01,12:00:00.000,2024/01/01,12:00:00.000,ANA456  ,,,,,,,,,,,0\r\n"
                  "MSG,3,1,1,C0FFEE,1,2024/01/01,12:00:01.500,2024/01/01,12:00:01.500,,12000,,,35.7,139.9,,,0,0,0,0\r\n")
    start = time.time()
    r = subprocess.run([KIZUNA, "adapter", "replay", "sbs", s, "--speed", "recorded"] + tls,
                       capture_output=True, text=True, timeout=60)
    took = time.time() - start
    assert r.returncode == 0 and "2 entity updates published, 2 acknowledged" in r.stderr, r.stderr
    assert took >= 1.2, took
    a = until(lambda: get("high", "/api/v1/entities/icao:c0ffee").json().get("position") and
              get("high", "/api/v1/entities/icao:c0ffee").json())
    assert a["name"] == "ANA456" and abs(a["position"]["lat"] - 35.7) < 1e-6, a


run_tests([test_udp_sample_becomes_entities, test_tcp_feed_and_reconnect, test_hostile_input_counted,
           test_adsb_feeds, test_replay_beast_and_sbs_at_recorded_pace])
