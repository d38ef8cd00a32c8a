#!/usr/bin/python3
"""Sessions are cluster-wide (issue 19 item 4, docs/CLUSTER.md "Sessions and retained
messages"): two nodes on one nats-server.
- A persistent session made on A, its client gone, reconnects on B: CONNACK session present,
  its subscription in force, and every QoS 1 message it had not received (published on A
  while it was away) delivered by B. Duplicates are allowed (at least once), counted, shown.
- The same with a client that received messages and never acknowledged them, and node A
  killed with SIGKILL: B delivers them.
- A second connection with the same client id on B takes over a session connected on A: A's
  connection gets DISCONNECT 0x8E; A's node no longer delivers to it.
- Another identity with that client id on B is refused (0x85) and A's connection stays.
- Clean start on B ends A's session."""
import os, signal, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import *
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

# cluster_sessions_margin0 runs this file again with cluster.session_margin_ms = 0: the cut is
# then the session's own acknowledgement time, with nothing added for slow records
MARGIN = os.environ.get("KZ_SESSION_MARGIN")
EXTRA = "cluster.session_margin_ms = %s\n" % MARGIN if MARGIN is not None else ""
a = cluster_node("n1", extra=EXTRA)
nats = Nats(a.pki, os.path.join(a.dir, "js"))
b = cluster_node("n2", pki_from=a, extra=EXTRA)
wait_log(a, "JetStream answers")
wait_log(b, "JetStream answers")
wait_log(a, "sharing sessions")
wait_log(b, "sharing sessions")




def test_offline_session_moves_with_its_backlog():
    s = a.client("mover", clean=False, props=expiry(600))
    assert s.sub("jobs/#", qos=1)[0].value == 1
    s.close()
    p = a.client("mover-pub")
    for i in range(20):
        p.pub("jobs/x", "j-%d" % i, qos=1)
    p.close()
    time.sleep(1.5)  # B follows A's records and its session entry
    s = b.client("mover", clean=False, props=expiry(600))
    assert s.flags["session present"], "session not present on B"
    got = drain(s)
    want = ["j-%d" % i for i in range(20)]
    missing = [m for m in want if m not in got]
    assert not missing, "B did not deliver %r (got %r)" % (missing, got)
    print("  backlog on B: %d messages, %d duplicates" % (len(got), len(got) - len(set(got))))
    # its subscription is in force on B, live
    p = a.client("mover-pub2")
    p.pub("jobs/y", "live-1", qos=1)
    p.close()
    assert s.get(timeout=10).payload == b"live-1"
    s.close()
    m = metrics(b)
    assert m["kizuna_cluster_session_writes_total"] > 0 and m["kizuna_cluster_session_updates_total"] > 0, m
    st = subprocess.run([KIZUNA, "cluster", "status", "--config", b.cfg, "--data", b.data], capture_output=True,
                        text=True)
    assert "sessions: bucket KZ_SESSIONS, " in st.stdout, st.stdout + st.stderr


def test_second_connection_on_b_takes_over_with_0x8e():
    s = a.client("twice", clean=False, props=expiry(600))
    s.sub("tw/#", qos=1)
    time.sleep(1.0)  # B learns of the session
    t = b.client("twice", clean=False, props=expiry(600))
    assert t.flags["session present"]
    rc = s.disc.get(timeout=10)
    assert rc == 0x8E, "A's connection got %r, not 0x8E" % rc
    s.c.loop_stop()
    p = a.client("tw-pub")
    p.pub("tw/a", "after", qos=1)
    p.close()
    assert t.get(timeout=10).payload == b"after"
    t.close()


def test_other_identity_is_refused_and_clean_start_ends():
    s = a.client("owned", clean=False, props=expiry(600))
    s.sub("own/#", qos=1)
    time.sleep(1.0)
    eve = a.issue("eve")
    r = Raw(b, cert=eve)
    p = r.connect(b"owned", clean=False)
    assert p and p[0] == 2 and p[2][1] == 0x85, "another identity got %r" % (p,)
    s.none(0.5)
    assert s.disc.empty(), "A's connection was disconnected"
    # clean start on B by the owner: A's session ends (its connection taken over)
    c = b.client("owned", clean=True)
    assert not c.flags["session present"]
    assert s.disc.get(timeout=10) == 0x8E
    s.c.loop_stop()
    c.close()
    time.sleep(1.0)
    d = a.client("owned", clean=False, props=expiry(600))
    assert not d.flags["session present"], "A still had the session after a clean start on B"
    d.close()


def test_unacknowledged_delivered_by_b_after_a_is_killed():
    r = Raw(a)
    props = b"\x11" + struct.pack("!I", 600)  # Session Expiry Interval
    assert r.connect(b"noack", clean=False, props=props)[0] == 2
    body = struct.pack("!H", 1) + varint(0) + s16(b"na/#") + b"\x01"
    r.send(b"\x82" + varint(len(body)) + body)
    assert r.packet()[0] == 9
    p = a.client("na-pub")
    for i in range(5):
        p.pub("na/x", "u-%d" % i, qos=1)
    p.close()
    got = 0
    while got < 5:  # received, never acknowledged
        pk = r.packet()
        assert pk and pk[0] == 3, pk
        got += 1
    time.sleep(2.0)  # the session entry and B's copy of the records
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    s = b.client("noack", clean=False, props=expiry(600))
    assert s.flags["session present"]
    got = drain(s)
    missing = [m for m in ("u-%d" % i for i in range(5)) if m not in got]
    assert not missing, "B did not deliver the unacknowledged %r (got %r)" % (missing, got)
    s.close()


run_tests([test_offline_session_moves_with_its_backlog, test_second_connection_on_b_takes_over_with_0x8e,
           test_other_identity_is_refused_and_clean_start_ends, test_unacknowledged_delivered_by_b_after_a_is_killed])
nats.kill()
