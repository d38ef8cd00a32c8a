#!/usr/bin/python3
"""bench/console.py KIZUNA [RATE] [SECONDS] — the console's targets (docs/CONSOLE.md "Measured"):
the first page interactive (cold and cached, on loopback) and the live view under RATE
records/s for SECONDS (default 5000 and 10), published by `kizuna bench mqtt` to a node
started here with its development PKI. Prints one block of results; nothing is asserted."""
import json, os, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import kzharness
kzharness.KIZUNA = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else kzharness.KIZUNA
from kzharness import Node, KIZUNA

RATE = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
SECS = int(sys.argv[3]) if len(sys.argv) > 3 else 10
node = Node()
cert, key = os.path.join(node.pki, "admin.pem"), os.path.join(node.pki, "admin.key")
arg = dict(url="https://localhost:%d/" % node.https_port(), cert=cert, key=key, runs=5, live={"filter": "bench/#"})
p = subprocess.Popen(["node", os.path.join(HERE, "..", "console", "test", "measure.mjs"), json.dumps(arg)],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    if "LIVE-READY" in line:
        break
load = subprocess.run([KIZUNA, "bench", "mqtt", "--data", node.data, "--port", str(node.port), "--pubs", "2", "--subs", "0",
                       "--rate", str(RATE), "--duration", str(SECS), "--size", "100"], capture_output=True, text=True)
p.stdin.write("GO\n")
p.stdin.flush()
out, err = p.communicate(timeout=120)
r = json.loads(out.strip().splitlines()[-1])
med = lambda v: sorted(v)[len(v) // 2]
print("# console (bench/console.py %s %d %d), Chromium %s, %d cores" % (os.path.basename(KIZUNA), RATE, SECS,
      subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.split()[1], os.cpu_count()))
print("first page interactive, cold (fresh context): median %d ms, max %d ms  %s" % (med(r["cold_ms"]), max(r["cold_ms"]), r["cold_ms"]))
print("first page interactive, reload (bundles cached): median %d ms, max %d ms  %s" % (med(r["warm_ms"]), max(r["warm_ms"]), r["warm_ms"]))
lv = r["live"]
print("live view, %d records/s for %d s (kizuna bench mqtt: %s)" % (RATE, SECS, " ".join(load.stdout.split("\n")[-3:]).strip()[:200]))
print("  frames %d, gap p50 %.1f ms, p99 %.1f ms, max %.1f ms; rows kept %d; status: %s" %
      (lv["frames"], lv["gap_p50_ms"], lv["gap_p99_ms"], lv["gap_max_ms"], lv["rows"], lv["status"]))
node.stop()
