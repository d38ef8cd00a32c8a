#!/usr/bin/python3
"""Replay (docs/MQTT.md "Replay"): a SUBSCRIBE with the user property kz-replay-since gets
the stored records from that point, then live messages, with no gap and no duplicate at the
seam — also while publishers keep publishing — paced to the subscriber's window."""
import datetime, json, subprocess, threading, time
from kzharness import *
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

node = Node("limits.max_queued_msgs = 100")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def replay_props(since):
    p = Properties(PacketTypes.SUBSCRIBE)
    p.UserProperty = ("kz-replay-since", since)
    return p


def test_history_then_live():
    t0 = now_rfc3339()
    p = node.client("rp-pub")
    for i in range(300):
        p.pub("r/a", "h-%d" % i, qos=1)
    p.pub("other/x", "not-matching", qos=1)
    s = node.client("rp-sub")
    assert [r.value for r in s.sub("r/#", qos=1, props=replay_props(t0))] == [1]
    got = collect(s, 300)
    assert got == ["h-%d" % i for i in range(300)], "replay: %d records, first %r" % (len(got), got[:3])
    for i in range(300, 350):
        p.pub("r/a", "h-%d" % i, qos=1)
    got = collect(s, 50)
    assert got == ["h-%d" % i for i in range(300, 350)], got[:5]
    s.none(0.3)
    s.close()
    p.close()


def test_seam_under_load():
    """A publisher runs before, during and after the SUBSCRIBE: the subscriber gets every
    message exactly once, in order."""
    t0 = now_rfc3339()
    stop = threading.Event()
    sent = []

    def publish():
        c = node.client("seam-pub")
        i = 0
        while not stop.is_set():
            c.pub("seam/x", "%d" % i, qos=1)
            sent.append(i)
            i += 1
        c.close()

    th = threading.Thread(target=publish)
    th.start()
    time.sleep(0.5)
    s = node.client("seam-sub")
    s.sub("seam/#", qos=1, props=replay_props(t0))
    time.sleep(0.7)
    stop.set()
    th.join()
    got = collect(s, len(sent), timeout=30)
    got = [int(x) for x in got]
    dups = len(got) - len(set(got))
    assert dups == 0, "%d duplicates" % dups
    assert got == sorted(got), "out of order"
    assert got == list(range(len(sent))), "gap: got %d of %d, missing e.g. %r" % (
        len(got), len(sent), sorted(set(range(len(sent))) - set(got))[:5])
    s.none(0.3)
    s.close()
    print("  seam: %d messages, every one exactly once" % len(sent))


def test_paced_beyond_queue_cap():
    """2,000 stored records to a subscriber whose session queue holds 100: the replay waits
    for the subscriber instead of overflowing its queue."""
    t0 = now_rfc3339()
    p = node.client("pace-pub")
    for i in range(2000):
        p.c.publish("pace/a", "p-%d" % i, 1)
    p.pub("pace/a", "p-2000", qos=1)
    time.sleep(0.2)
    s = node.client("pace-sub")
    s.sub("pace/a", qos=1, props=replay_props(t0))
    got = collect(s, 2001, timeout=30)
    assert got == ["p-%d" % i for i in range(2001)], "got %d of 2001" % len(got)
    s.close()
    p.close()


def test_since_record_id():
    p = node.client("id-pub")
    for i in range(20):
        p.pub("byid/a", "i-%d" % i, qos=1)
    time.sleep(0.3)  # the index follows the log
    r = subprocess.run([KIZUNA, "query", "--data", node.data, "-t", "byid/a", "--format", "ndjson"],
                       stdout=subprocess.PIPE, check=True)
    recs = [json.loads(l) for l in r.stdout.decode().splitlines()]
    assert [x["payload"] for x in recs] == ["i-%d" % i for i in range(20)]
    s = node.client("id-sub")
    s.sub("byid/a", qos=1, props=replay_props(recs[9]["id"]))
    got = collect(s, 10)
    assert got == ["i-%d" % i for i in range(10, 20)], got  # the records after that id
    s.none(0.3)
    s.close()
    p.close()


def test_bad_spec_refused():
    s = node.client("bad-sub")
    rcs = s.sub("r/#", qos=1, props=replay_props("yesterday"))
    assert rcs[0].value == 0x83, rcs
    assert "not an RFC 3339 time or a record id" in s.suback_props.ReasonString, s.suback_props
    rcs = s.sub("r/#", qos=1, props=replay_props("01a20000-0000-7000-8000-000000000000"))
    assert rcs[0].value == 0x83
    assert "no record with id" in s.suback_props.ReasonString
    # and no subscription was made
    p = node.client("bad-pub")
    p.pub("r/a", "after", qos=1)
    s.none(0.5)
    s.close()
    p.close()


def test_properties_survive_storage():
    """The properties a message forwards (MQTT 5.0 §3.3.2.3) are kept in the record's
    attributes (docs/STORE.md): a replay, and a retained message after a restart, carry the
    same Payload Format, Content Type, Response Topic, Correlation Data and User Properties
    (repeated names, in order) as the live delivery."""
    t0 = now_rfc3339()
    pr = Properties(PacketTypes.PUBLISH)
    pr.PayloadFormatIndicator = 1
    pr.ContentType = "text/plain"
    pr.ResponseTopic = "reply/here"
    pr.CorrelationData = b"\x00\x01corr"
    pr.UserProperty = [("k", "1"), ("other", "x"), ("k", "2")]

    def same(m):
        q = m.properties
        assert q.PayloadFormatIndicator == 1 and q.ContentType == "text/plain", q
        assert q.ResponseTopic == "reply/here" and q.CorrelationData == b"\x00\x01corr", q
        assert q.UserProperty == [("k", "1"), ("other", "x"), ("k", "2")], q.UserProperty

    live = node.client("props-live")
    live.sub("props/#", qos=1)
    p = node.client("props-pub")
    p.pub("props/a", "with-props", qos=1, props=pr)
    p.pub("props/r", "retained", qos=1, retain=True, props=pr)
    p.close()
    for _ in range(2):
        same(live.get())
    live.close()
    s = node.client("props-replay")
    s.sub("props/a", qos=1, props=replay_props(t0))
    m = s.get()
    assert m.payload == b"with-props"
    same(m)
    s.close()
    assert node.stop() == 0
    node.log = open(node.log.name, "a")
    node.start()
    r = node.client("props-retained")
    r.sub("props/r", qos=1)
    m = r.get()
    assert m.payload == b"retained" and m.retain
    same(m)
    r.close()


run_tests([test_history_then_live, test_seam_under_load, test_paced_beyond_queue_cap, test_since_record_id,
           test_bad_spec_refused, test_properties_survive_storage])
