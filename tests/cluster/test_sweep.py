#!/usr/bin/python3
"""A consumer of ours that JetStream still holds and the node does not use is deleted
(docs/CLUSTER.md "Our consumer"): JetStream can hold one the node left, or one whose making
went unanswered and reached JetStream later (a server stopped and resumed). With none left
to delete, the follower reads JetStream's names of its consumers every
cluster.consumer_scan_ms (set here to 2000, against its default 30000) and deletes every one
but its own. Here one is made behind the node's back, under its next name (kz-node-n1~50,
with a plain NATS client and the JetStream API), and the node must delete it while it goes
on following the stream."""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *


def consumers():
    """The names of KZ_RECORDS' consumers (nats-server's /jsz)."""
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/jsz?consumers=true" % nats_mon, timeout=5) as r:
        j = json.load(r)
    return sorted(c["name"] for a in j.get("account_details", []) for st in a.get("stream_detail", [])
                  if st["name"] == "KZ_RECORDS" for c in st.get("consumer_detail") or [])


def test_a_stray_consumer_of_ours_is_deleted():
    a, b, nats = two_nodes("cluster.consumer_scan_ms = 2000\n")
    deadline = time.time() + 20
    while time.time() < deadline and not any(c.startswith("kz-node-n1") for c in consumers()):
        time.sleep(0.2)
    before = consumers()
    assert "kz-node-n1" in before, before
    # past the follower's first look at JetStream's names (its first idle check, after 50
    # fetches of 100 ms that found nothing): what it finds now, it finds by its periodic scan
    time.sleep(8)
    ans = js_request(a, "$JS.API.CONSUMER.DURABLE.CREATE.KZ_RECORDS.kz-node-n1~50",
                     {"stream_name": "KZ_RECORDS", "config": {"durable_name": "kz-node-n1~50", "ack_policy": "explicit",
                                                             "filter_subject": "kz.rec.>", "mem_storage": True}})
    assert "error" not in ans, ans
    assert "kz-node-n1~50" in consumers(), consumers()
    wait_log(a, "our earlier consumer kz-node-n1~50 is deleted", 30)
    after = consumers()
    assert "kz-node-n1~50" not in after and "kz-node-n1" in after, after
    # the node still follows the stream: a record published on n2 reaches n1's log
    r = Raw(b)
    assert r.connect(b"sweep-pub")[0] == 2
    publish_acked(r, b"sweep/t", b"x-", 1)
    deadline, q = time.time() + 20, ""
    while time.time() < deadline and "sweep/t" not in q:
        q = subprocess.run([KIZUNA, "query", "--data", a.data, "--topic", "sweep/t", "--format", "ndjson"],
                           capture_output=True, text=True).stdout
        time.sleep(0.3)
    assert "sweep/t" in q, q
    print("  consumers before %s, made behind the node's back: kz-node-n1~50, after: %s" % (before, after))


run_tests([test_a_stray_consumer_of_ours_is_deleted])
