#!/usr/bin/python3
"""Persistent sessions survive a restart (docs/MQTT.md "Sessions across restarts"):
subscriptions, the QoS 1/2 messages a session had not received or acknowledged, session
expiry counted across the downtime, and wills — after a clean stop and after kill -9."""
import signal, time
from kzharness import *
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

node = Node()


def restart(kill=False):
    node.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    assert node.proc.wait(10) == (-9 if kill else 0)
    node.start()


def expiry(seconds):
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = seconds
    return p


def payloads(c, n, timeout=10):
    return collect(c, n, timeout)


def test_offline_queue_survives_clean_restart():
    s = node.client("ps-sub", clean=False, props=expiry(3600))
    s.sub("ps/#", qos=1)
    s.close()
    restart()
    p = node.client("ps-pub")
    for i in range(10):
        p.pub("ps/a", "m-%d" % i, qos=1)
    p.close()
    s = node.client("ps-sub", clean=False, props=expiry(3600))
    assert s.flags["session present"], "session not present after restart"
    assert payloads(s, 10) == ["m-%d" % i for i in range(10)]
    s.none(0.3)
    s.close()


def test_subscriptions_and_unacked_survive_kill9():
    s = node.client("k9-sub", clean=False, props=expiry(3600))
    s.sub("k9/#", qos=1)
    p = node.client("k9-pub")
    for i in range(50):
        p.pub("k9/a", "a-%d" % i, qos=1)
    got = payloads(s, 50)
    assert got == ["a-%d" % i for i in range(50)]
    time.sleep(1.5)  # the acknowledgement watermark is written about once a second
    s.kill()
    p.kill()
    restart(kill=True)
    p = node.client("k9-pub2")
    for i in range(50, 60):
        p.pub("k9/a", "a-%d" % i, qos=1)
    p.close()
    s = node.client("k9-sub", clean=False, props=expiry(3600))
    assert s.flags["session present"]
    got = payloads(s, 10)
    # the 10 sent while it was away come (older ones only if their acks were not yet saved)
    assert got[-10:] == ["a-%d" % i for i in range(50, 60)], got
    assert len(got) == 10, "redelivered %d already acknowledged messages" % (len(got) - 10)
    s.none(0.5)
    s.close()


def test_expiry_counts_the_downtime():
    s = node.client("ex-sub", clean=False, props=expiry(2))
    s.sub("ex/#", qos=1)
    s.close()
    node.proc.send_signal(signal.SIGTERM)
    node.proc.wait(10)
    time.sleep(2.5)
    node.start()
    time.sleep(0.2)
    s = node.client("ex-sub", clean=False, props=expiry(2))
    assert not s.flags["session present"], "session outlived its expiry across the restart"
    s.close()
    # and one within its expiry is still there
    s = node.client("ex2-sub", clean=False, props=expiry(30))
    s.sub("ex/#", qos=1)
    s.close()
    restart()
    s = node.client("ex2-sub", clean=False, props=expiry(30))
    assert s.flags["session present"]
    s.close()


def test_will_of_a_connection_lost_in_a_crash():
    """A client connected when the node is killed lost its connection: after the restart its
    will is published (here retained, so a later subscriber sees it)."""
    w = node.client("will-c", clean=False, props=expiry(60),
                    will=("wills/c", "will-c is gone", 1, True))
    time.sleep(0.3)
    w.c.loop_stop()  # still connected, but paho will not reconnect after the crash
    restart(kill=True)
    time.sleep(0.5)
    s = node.client("will-watch")
    s.sub("wills/#", qos=1)
    m = s.get(timeout=5)
    assert (m.topic, m.payload) == ("wills/c", b"will-c is gone")
    s.close()
    # the will is a record too: a retained will survives the next restart
    time.sleep(0.3)
    restart(kill=True)
    s = node.client("will-watch2")
    s.sub("wills/#", qos=1)
    m = s.get(timeout=5)
    assert (m.topic, m.payload) == ("wills/c", b"will-c is gone")
    s.close()


def test_mqtt311_persistent_session():
    s = node.client("v3-sub", v5=False, clean=False)
    s.sub("v3/#", qos=1)
    s.close()
    restart()
    p = node.client("v3-pub", v5=False)
    p.pub("v3/x", "three", qos=1)
    p.close()
    s = node.client("v3-sub", v5=False, clean=False)
    assert s.flags["session present"]
    assert payloads(s, 1) == ["three"]
    s.close()
    s = node.client("v3-sub", v5=False, clean=True)  # clean session: the stored one goes
    s.close()
    restart()
    s = node.client("v3-sub", v5=False, clean=False)
    assert not s.flags["session present"]
    s.close()


def test_qos2_awaiting_pubcomp_while_the_watermark_is_written():
    """A persistent QoS 2 subscriber that answered PUBREC and holds back PUBCOMP: its
    acknowledgement watermark is written (about once a second) while the delivery's message
    is already released. The node crashed on this (found by tests/cluster/test_faults.py)."""
    r = Raw(node)
    assert r.connect(b"q2-hold", clean=False, props=b"\x11" + struct.pack("!I", 600))[0] == 2
    body = struct.pack("!H", 1) + varint(0) + s16(b"q2h/#") + b"\x02"
    r.send(b"\x82" + varint(len(body)) + body)
    assert r.packet()[0] == 9
    p = node.client("q2-pub")
    for i in range(3):
        p.pub("q2h/x", "m-%d" % i, qos=2)
    pubs = rels = 0
    while pubs < 3 or rels < 3:
        pk = r.packet()
        assert pk and pk[0] in (3, 6), pk
        if pk[0] == 3:
            pubs += 1
            pid = pk[2][2 + struct.unpack("!H", pk[2][:2])[0]:][:2]
            r.send(b"\x50\x02" + pid)  # PUBREC
        else:
            rels += 1  # PUBREL, left unanswered
    time.sleep(2.5)  # several ticks write the watermark
    c = node.client("q2-check")  # the node is alive
    c.close()
    p.close()
    assert node.proc.poll() is None, "the node died: " + node.logtext()[-1500:]


run_tests([test_offline_queue_survives_clean_restart, test_subscriptions_and_unacked_survive_kill9,
           test_expiry_counts_the_downtime, test_will_of_a_connection_lost_in_a_crash,
           test_mqtt311_persistent_session, test_qos2_awaiting_pubcomp_while_the_watermark_is_written])
