#!/usr/bin/python3
"""Latency from an indicator's TAXII POST to its first sighting (issue 22, BENCHMARKS.md
"Detection"), on a node with N indicators already loaded (POSTed over TAXII, IPv4
addresses) while a sensor publishes a Zeek dns log over MQTT at a steady rate.

Each round POSTs one new indicator for a name the sensor's stream holds and waits for its
sighting on kz/detect/#: the time from just before the POST to the sighting's arrival.
The baseline is the same node without a new indicator: the time a published log line takes
to come back as a sighting of an indicator loaded from the start (the path without the
TAXII write and the indicator's catch-up).

Usage: bench/detect-latency.py [KIZUNA] [N indicators] [rounds] [events/s]"""
import json, os, statistics, sys, threading, time, uuid
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
KZ = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/src/cli/kizuna")
sys.argv = [sys.argv[0], KZ] + sys.argv[2:]
from kzharness import Node, free_port
import requests

N = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 10
RATE = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
NAMES = 100  # each name recurs every NAMES/RATE s: the wait for the name is not what is measured
for _v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_v, None)

HP = free_port()
node = Node("https.listen = 127.0.0.1:%d\ndetect.enabled = 1\ndetect.flush_ms = 50\ntaxii.max_post_objects = 10000\n"
            "https.max_body_bytes = 67108864\n" % HP)
CA = os.path.join(node.pki, "ca.pem")
ADMIN = (os.path.join(node.pki, "admin.pem"), os.path.join(node.pki, "admin.key"))
COLL = json.load(open(os.path.join(node.data, "taxii-collections.json")))[0]["id"]
OBJS = "https://localhost:%d/taxii2/api/collections/%s/objects/" % (HP, COLL)
S = requests.Session()
S.verify, S.cert = CA, ADMIN
H = {"Content-Type": "application/taxii+json;version=2.1", "Accept": "application/taxii+json;version=2.1"}


def indicator(pattern):
    return {"type": "indicator", "spec_version": "2.1", "id": "indicator--" + str(uuid.uuid4()),
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2018-01-01T00:00:00Z"}


def post(objs):
    r = S.post(OBJS, data=json.dumps({"objects": objs}), headers=H)
    assert r.status_code == 202, r.text


def status():
    return S.get("https://localhost:%d/api/v1/detect/status" % HP).json()


print("# bench/detect-latency.py: %d indicators loaded, %d rounds, sensor at %d events/s, %d cores, %s"
      % (N, ROUNDS, RATE, os.cpu_count(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
t = time.time()
BASELINE = indicator("[domain-name:value = 'name-0.bench.test']")
post([BASELINE])
for i in range(0, N, 10000):
    post([indicator("[ipv4-addr:value = '10.%d.%d.%d']" % ((j >> 16) & 255, (j >> 8) & 255, j & 255))
          for j in range(i, min(N, i + 10000))])
while status()["indicators"] < N + 1:
    time.sleep(0.2)
print("loaded %d indicators over TAXII in %.1f s; index %.1f MiB" % (N, time.time() - t, status()["index_bytes"] / 1048576))

HEAD = ("#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery"
        "\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected\n")
seen = {}
lock = threading.Lock()
sub = node.client(cert=ADMIN)
sub.c.on_message = lambda c, u, m: on_sighting(m)


def on_sighting(m):
    now = time.time()
    ref = json.loads(m.payload)["objects"][0]["sighting_of_ref"]
    with lock:
        seen.setdefault(ref, now)


sub.sub("kz/detect/#", 1)
stop = False
sent_at = {}  # name-0's lines: when each batch holding it went out


def sensor():
    z = node.client(cert=ADMIN)
    z.pub("kz/logs/bench", HEAD, 1)
    k, batch = 0, 200
    t0 = time.time()
    sent = 0
    while not stop:
        lines = []
        for _ in range(batch):
            lines.append("%.6f\tC\t192.0.2.1\t5353\t192.0.2.53\t53\tudp\t1\t0.001\tname-%d.bench.test\t1\tC_INTERNET\t1\tA"
                         "\t0\tNOERROR\tF\tF\tT\tT\t0\t-\t-\tF\n" % (time.time(), k % NAMES))
            k += 1
        z.pub("kz/logs/bench", "".join(lines), 0)
        sent += batch
        ahead = sent / RATE - (time.time() - t0)
        if ahead > 0:
            time.sleep(ahead)
    z.close()


th = threading.Thread(target=sensor)
th.start()
time.sleep(2)
ev0, t0 = status()["events"], time.time()
lat = []
for r in range(ROUNDS):
    ind = indicator("[domain-name:value = 'name-%d.bench.test']" % (1 + r % (NAMES - 1)))
    t = time.time()
    post([ind])
    deadline = t + 10
    while time.time() < deadline:
        with lock:
            if ind["id"] in seen:
                lat.append(seen[ind["id"]] - t)
                break
        time.sleep(0.001)
    else:
        print("round %d: no sighting within 10 s" % r)
    time.sleep(0.3)
eps = (status()["events"] - ev0) / (time.time() - t0)
stop = True
th.join()
with lock:
    base = seen.get(BASELINE["id"])
print("node read %.0f events/s during the rounds" % eps)
if lat:
    print("POST to first sighting: min %.3f s, median %.3f s, max %.3f s over %d rounds"
          % (min(lat), statistics.median(lat), max(lat), len(lat)))
print("baseline (a loaded indicator, a fresh line): first sighting %s after the stream started"
      % ("%.3f s" % (base - (t0 - 2)) if base else "none"))
sub.close()
node.shutdown()
