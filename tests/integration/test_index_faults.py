#!/usr/bin/python3
"""The index checked against its log (issue 17): after each fault that leaves index.db
describing records the log does not hold — a cut tail (a torn write with fsync never, a disk
fault), `store repair`, a damaged index file — `kizuna query` returns exactly the log's
records or refuses with what to run; the node rebuilds the index by itself; no sequence
number is ever used twice; the retained message comes from the log as it is."""
import json, os, struct, subprocess, time
from kzharness import *

SEG_HDR, FRAME_HDR = 32, 16


def kz(*args):
    return subprocess.run([KIZUNA] + list(args), capture_output=True, text=True)


def dump(n):
    r = kz("store", "dump", "--data", n.data)
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def log_records(n):
    """(seq, id) of every record the log holds that the index covers ($taxii is TAXII's)."""
    return [(d["seq"], d["id"]) for d in dump(n) if not d["topic"].startswith("$")]


def query(n):
    return kz("query", "--data", n.data, "-t", "#", "--limit", "0", "--format", "ndjson")


def query_records(n):
    r = query(n)
    assert r.returncode == 0, r.stderr
    return [(d["seq"], d["id"]) for d in map(json.loads, r.stdout.splitlines())]


def segments(n):
    d = os.path.join(n.data, "log")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".seg"))


def frames(path):
    """[(offset, seq, length)] of the frames of one segment."""
    b = open(path, "rb").read()
    out, off = [], SEG_HDR
    while off + FRAME_HDR <= len(b):
        ln = struct.unpack("<I", b[off:off + 4])[0]
        seq = struct.unpack("<Q", b[off + 8:off + 16])[0]
        out.append((off, seq, ln))
        off += FRAME_HDR + ln
    return out


def fill(n, count, tag):
    """A retained message, count records, then two newer retained versions."""
    c = n.client("filler-" + tag)
    c.pub("ret/t", b"%s retained 1" % tag.encode(), 1, retain=True)
    for i in range(count):
        c.pub("data/%s" % tag, b"%s %d" % (tag.encode(), i), 1)
    for i in range(2, 4):
        c.pub("ret/t", b"%s retained %d" % (tag.encode(), i), 1, retain=True)
    c.close()


def max_seq(n):
    return max(s for s, _ in log_records(n))


def stopped_node(config, count, tag):
    """A node that stored count records (and retained versions), indexed them and stopped;
    with the highest sequence number it handed out."""
    n = Node(config)
    fill(n, count, tag)
    time.sleep(1)  # the index catches up with everything
    old_hw = max_seq(n)
    assert n.stop() == 0
    return n, old_hw


def cut_tail(n, frames_lost):
    """The last frames of the log never reached the disk; their sequence numbers."""
    seg = segments(n)[-1]
    fr = frames(seg)
    with open(seg, "r+b") as f:
        f.truncate(fr[-frames_lost][0])
    return {seq for _, seq, _ in fr[-frames_lost:]}


def restart_and_check(n, old_hw, expect_log):
    n.log = open(n.log.name, "a")
    n.start()
    time.sleep(0.5)
    assert query_records(n) == log_records(n), "query and the log disagree after the restart"
    c = n.client("after")
    c.pub("data/after", b"new", 1)
    c.close()
    time.sleep(0.5)
    new = [d for d in dump(n) if d["topic"] == "data/after"]
    assert new and new[0]["seq"] > old_hw, "sequence number %d reused (numbers up to %d were used)" % (new[0]["seq"], old_hw)
    assert query_records(n) == log_records(n)
    if expect_log:
        assert expect_log in n.logtext(), "the node did not say: " + expect_log
    return c


def retained_now(n):
    s = n.client("ret-reader")
    s.sub("ret/t", 1)
    m = s.get()
    s.close()
    return m.payload


def test_cut_tail_with_fsync_never():
    n, old_hw = stopped_node("store.fsync = never\n", 60, "a")
    lost = cut_tail(n, 8)  # the two newer retained versions among them
    restart_and_check(n, old_hw, "does not match the record log")
    assert not lost & {s for s, _ in log_records(n)}
    # the retained message is the newest one the log still holds, not a cut one
    want = [d["payload"] for d in dump(n) if d["topic"] == "ret/t" and d["retain"]][-1]
    assert want == "a retained 1"
    got = retained_now(n)
    assert got == want.encode(), (got, want)
    n.stop()


def test_offline_query_refuses_then_reindex():
    n, old_hw = stopped_node("store.fsync = never\n", 40, "b")
    cut_tail(n, 5)
    r = query(n)
    assert r.returncode == 1 and "does not match the record log" in r.stderr and "store reindex" in r.stderr, (
        r.returncode, r.stderr)
    r = kz("store", "reindex", "--data", n.data)
    assert r.returncode == 0, r.stderr
    assert query_records(n) == log_records(n)
    restart_and_check(n, old_hw, None)
    n.stop()


def test_store_repair_invalidates_the_index():
    n, old_hw = stopped_node("", 60, "c")
    seg = segments(n)[-1]
    fr = frames(seg)
    off = fr[len(fr) // 2][0] + FRAME_HDR + 3  # a byte inside a record in the middle
    with open(seg, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))
    r = subprocess.run([KIZUNA, "serve", "--config", n.cfg, "--data", n.data], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "store repair" in r.stdout + r.stderr
    r = kz("store", "repair", "--data", n.data)
    assert r.returncode == 0, r.stderr
    assert "index" in r.stdout and "removed" in r.stdout, r.stdout
    r = query(n)
    assert r.returncode == 1 and "store reindex" in r.stderr
    restart_and_check(n, old_hw, None)
    n.stop()


def test_damaged_index_file():
    n, old_hw = stopped_node("", 20, "d")
    ix = os.path.join(n.data, "index.db")
    for sfx in ("-wal", "-shm"):
        if os.path.exists(ix + sfx):
            os.unlink(ix + sfx)
    with open(ix, "wb") as f:
        f.write(b"this is not an SQLite database, it was overwritten" * 100)
    r = query(n)
    assert r.returncode == 1 and "damaged" in r.stderr and "store reindex" in r.stderr, (r.returncode, r.stderr)
    restart_and_check(n, old_hw, "the index is damaged: rebuilding it from the log")
    n.stop()


def test_session_watermark_past_a_cut_tail():
    """A persistent session acknowledged records that a cut tail took: a record published
    while it is offline must still reach it (a reused number would sit under its watermark)."""
    n = Node("store.fsync = never\n")
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    sub = n.client("keeper", clean=False, props=props)
    sub.sub("p/#", 1)
    pub = n.client("p-pub")
    for i in range(20):
        pub.pub("p/x", b"old %d" % i, 1)
    for i in range(20):
        sub.get()
    pub.close()
    time.sleep(0.5)
    sub.close()
    time.sleep(0.5)
    assert n.stop() == 0
    cut_tail(n, 5)
    for sfx in ("", "-wal", "-shm"):  # and the index is lost too: only the session knows
        if os.path.exists(os.path.join(n.data, "index.db" + sfx)):
            os.unlink(os.path.join(n.data, "index.db" + sfx))
    n.log = open(n.log.name, "a")
    n.start()
    assert "sessions acknowledged records up to" in n.logtext()
    pub = n.client("p-pub2")
    pub.pub("p/x", b"after the cut", 1)
    pub.close()
    sub = n.client("keeper", clean=False, props=props)
    assert sub.get(10).payload == b"after the cut"
    sub.close()
    n.stop()


run_tests([test_session_watermark_past_a_cut_tail, test_cut_tail_with_fsync_never, test_offline_query_refuses_then_reindex,
           test_store_repair_invalidates_the_index, test_damaged_index_file])
