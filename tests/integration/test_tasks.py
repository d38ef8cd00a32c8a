"""Tasks (docs/TASKS.md) on a real node: a tasker creates them over HTTPS (requests) and with
`kizuna task`; agents register kinds, get their tasks in their inbox over MQTT 5 (paho, with
kz-snapshot) and move them over MQTT (hand-built PUBLISHes, to read the PUBACK's reason) and
HTTPS. Proves: only legal moves by the right party from the current version are accepted,
with specific reasons; the policy's task rule decides who may task whom with what; a reader
below a task's label sees neither it nor its count; another identity cannot subscribe to an
agent's inbox; the node sends and expires tasks; every move is audited; a task's state
survives a kill -9 of the node; and `kizuna agent` carries a task through to DONE_OK while
its position appears in the entity picture."""
import json, os, queue, subprocess, sys, tempfile, time
import requests
from kzharness import Node, until, Raw, run_tests, free_port, s16, varint, KIZUNA, tmpdir
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

TD = "spiffe://kizuna.local/"
POLICY = """policy jp-mod
version tasks-1
levels unclassified restricted confidential secret
category caveat restrictive attr=caveats cyber
default-label class=restricted
allow connect where kind=user,sensor
allow publish kz/# where kind=user,sensor
allow subscribe kz/task/# where role=operator
allow subscribe kz/agent/# where kind=sensor
allow subscribe kz/entity/# where org=mod
allow task observe,goto where role=operator agent org=mod kind=sensor
allow subscribe $SYS/metrics where id=spiffe://kizuna.local/mod/user/op
"""
IDS = ["mod/user/op", "mod/user/low", "meti/user/op2", "mod/sensor/drone", "mod/sensor/drone2", "meti/sensor/alien"]
IDENTITIES = """%smod/user/op org=mod nation=jpn clearance=secret roles=operator
%smod/user/low org=mod nation=jpn clearance=restricted roles=operator
%smeti/user/op2 org=meti nation=jpn clearance=secret
%smod/sensor/drone org=mod nation=jpn clearance=secret
%smod/sensor/drone2 org=mod nation=jpn clearance=secret
%smeti/sensor/alien org=meti nation=jpn clearance=secret
""" % tuple([TD] * 6)

tmp = tmpdir("kz-task-")
open(os.path.join(tmp, "kizuna.policy"), "w").write(POLICY)
open(os.path.join(tmp, "identities"), "w").write(IDENTITIES)
HPORT = free_port()
node = Node("https.listen = 127.0.0.1:%d\npolicy.file = %s/kizuna.policy\npolicy.registry = %s/identities\n"
            "task.max_tasks = 12\ntask.max_kinds = 4\n" % (HPORT, tmp, tmp))
certs = {w.split("/")[-1]: node.issue(w.replace("/", "-"), spiffe=TD + w) for w in IDS}
DRONE = TD + "mod/sensor/drone"
INBOX = "kz/agent/kizuna.local/mod/sensor/drone/tasks"
CA = os.path.join(node.pki, "ca.pem")


def api(who, method, path, body=None, headers=None):
    return requests.request(method, "https://localhost:%d/api/v1%s" % (HPORT, path), timeout=10, verify=CA,
                            cert=certs[who], headers=headers,
                            data=body if body is None or isinstance(body, bytes) else json.dumps(body))



def task(tid, who="op"):
    r = api(who, "GET", "/tasks/" + tid)
    return r.json() if r.status_code == 200 else None


def raw_publish(who, topic, payload, pid=1):
    """PUBLISH at QoS 1 over a fresh MQTT 5 connection: (reason code, reason string)."""
    r = Raw(node, cert=certs[who])
    t, _, body = r.connect(cid=("raw-" + who).encode())
    assert t == 2 and body[1] == 0, body
    vh = s16(topic.encode()) + bytes([0, pid]) + varint(0)
    pl = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    r.send(bytes([0x32]) + varint(len(vh) + len(pl)) + vh + pl)
    t, _, body = r.packet()
    assert t == 4, (t, body)
    rc = body[2] if len(body) > 2 else 0
    why, i = "", 3
    while i < len(body) and body[i] & 0x80:  # the properties' length, a variable byte integer
        i += 1
    i += 1
    if i < len(body) and body[i] == 0x1F:
        n = int.from_bytes(body[i + 1:i + 3], "big")
        why = body[i + 3:i + 3 + n].decode()
    r.s.close()
    return rc, why


def test_register_and_create():
    assert api("drone", "PUT", "/agents/me/kinds", {"kinds": ["observe", "goto"]}).status_code == 200
    assert api("drone", "PUT", "/agents/me/kinds", {"kinds": ["bad kind"]}).status_code == 400
    agents = api("op", "GET", "/agents").json()["agents"]
    assert {"id": DRONE, "kinds": ["observe", "goto"]} in agents, agents
    r = api("op", "POST", "/tasks", {"id": "t-1", "assignee": DRONE, "kind": "observe", "entities": ["trk-1"],
                                     "precedence": "IMMEDIATE", "parameters": {"for_s": 10}})
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["state"] == "CREATED" and t["version"] == 1 and t["tasker"] == TD + "mod/user/op", t
    assert t["label"] == "policy=jp-mod;class=restricted" and t["entities"] == ["trk-1"], t
    assert r.headers["Location"] == "/api/v1/tasks/t-1"
    t = until(lambda: (task("t-1") or {}).get("state") == "SENT" and task("t-1"))
    assert t["version"] == 2 and t["by"] == "node", t
    # the same id again, an unknown member, the node's own members
    assert api("op", "POST", "/tasks", {"id": "t-1", "assignee": DRONE, "kind": "observe"}).status_code == 409
    r = api("op", "POST", "/tasks", {"assignee": DRONE, "kind": "observe", "state": "DONE_OK"})
    assert r.status_code == 400 and "node's" in r.json()["description"], r.text
    r = api("op", "POST", "/tasks", b"not json")
    assert r.status_code == 400 and r.json()["http_status"] == "400"  # TAXII 2.1's error shape: a string


def test_policy_decides_who_tasks_whom():
    # a kind the agent did not register
    api("drone2", "PUT", "/agents/me/kinds", {"kinds": ["observe"]})
    r = api("op", "POST", "/tasks", {"assignee": TD + "mod/sensor/drone2", "kind": "goto"})
    assert r.status_code == 409 and "has not registered" in r.json()["description"], r.text
    # no task rule for this tasker (not an operator)
    r = api("op2", "POST", "/tasks", {"assignee": DRONE, "kind": "observe"})
    assert r.status_code == 403 and "task rule" in r.json()["description"], r.text
    # an agent the rule does not cover (org meti)
    api("alien", "PUT", "/agents/me/kinds", {"kinds": ["observe"]})
    r = api("op", "POST", "/tasks", {"assignee": TD + "meti/sensor/alien", "kind": "observe"})
    assert r.status_code == 403 and "agent" in r.json()["description"], r.text
    # a kind no rule allows
    api("drone2", "PUT", "/agents/me/kinds", {"kinds": ["observe", "strike"]})
    r = api("op", "POST", "/tasks", {"assignee": TD + "mod/sensor/drone2", "kind": "strike"})
    assert r.status_code == 403, r.text
    # a label above the tasker's own
    r = api("low", "POST", "/tasks", {"assignee": DRONE, "kind": "observe"}, headers={"kz-label": "class=secret"})
    assert r.status_code == 403 and "kz-label" in r.json()["description"], r.text


def test_inbox_over_mqtt():
    """The agent's open tasks come first with kz-snapshot, then each new state; another
    identity may not subscribe to the drone's inbox."""
    c = node.client("drone-inbox", cert=certs["drone"])
    p = Properties(PacketTypes.SUBSCRIBE)
    p.UserProperty = [("kz-snapshot", "1")]
    rcs = c.sub(INBOX, 1, props=p)
    assert rcs[0].value == 1, rcs
    m = c.get(timeout=10)
    t = json.loads(m.payload)
    assert m.topic == INBOX and t["id"] == "t-1" and t["state"] == "SENT", t
    other = node.client("op-inbox", cert=certs["op"])
    rcs = other.sub(INBOX, 1)
    assert rcs[0].value == 0x87, rcs
    other.close()
    # a move over MQTT: accepted, and the new state reaches the inbox and kz/task/<id>
    watcher = node.client("op-watch", cert=certs["op"])
    watcher.sub("kz/task/#", 1)
    rc, why = raw_publish("drone", "kz/task/t-1/state", {"state": "RECEIVED", "version": 2})
    assert rc == 0, (rc, why)
    m = c.get(timeout=10)
    assert json.loads(m.payload)["state"] == "RECEIVED" and json.loads(m.payload)["version"] == 3
    m = watcher.get(timeout=10)
    if m.topic == "kz/task/t-1/state":  # the agent's request is a record too; the two race
        assert json.loads(m.payload) == {"state": "RECEIVED", "version": 2}
        m = watcher.get(timeout=10)
    assert m.topic == "kz/task/t-1" and json.loads(m.payload)["state"] == "RECEIVED", (m.topic, m.payload)
    watcher.close()
    c.close()


def test_illegal_moves_refused():
    # stale version
    rc, why = raw_publish("drone", "kz/task/t-1/state", {"state": "ACKNOWLEDGED", "version": 2})
    assert rc == 0x83 and "not the task's current version 3" in why, (rc, why)
    # a skipped state
    rc, why = raw_publish("drone", "kz/task/t-1/state", {"state": "EXECUTING", "version": 3})
    assert rc == 0x87 and "RECEIVED -> EXECUTING" in why, (rc, why)
    # the tasker may not move the work along
    rc, why = raw_publish("op", "kz/task/t-1/state", {"state": "ACKNOWLEDGED", "version": 3})
    assert rc == 0x87 and "only the task's agent" in why, (rc, why)
    # not a party at all
    r = api("drone2", "POST", "/tasks/t-1/state", {"state": "ACKNOWLEDGED", "version": 3})
    assert r.status_code in (403, 404), r.text
    # malformed
    rc, why = raw_publish("drone", "kz/task/t-1/state", {"state": "DONE", "version": 3})
    assert rc == 0x99 and "state:" in why, (rc, why)
    rc, why = raw_publish("drone", "kz/task/t-1", {"state": "ACKNOWLEDGED", "version": 3})
    assert rc == 0x87 and "node's record" in why, (rc, why)
    rc, why = raw_publish("drone", INBOX, {"x": 1})
    assert rc == 0x87, (rc, why)
    assert task("t-1")["version"] == 3
    # the agent's path, over HTTPS, then a cancel request the agent confirms
    for st, v in (("ACKNOWLEDGED", 3), ("WILCO", 4), ("EXECUTING", 5)):
        r = api("drone", "POST", "/tasks/t-1/state", {"state": st, "version": v, "reason": "ok"})
        assert r.status_code == 200 and r.json()["state"] == st and r.json()["version"] == v + 1, r.text
    r = api("op", "POST", "/tasks/t-1/state", {"state": "CANCELLED", "version": 6})
    assert r.status_code == 403 and "CANCEL_REQUESTED" in r.json()["description"], r.text
    r = api("op", "POST", "/tasks/t-1/state", {"state": "CANCEL_REQUESTED", "version": 6, "reason": "stand down"})
    assert r.status_code == 200, r.text
    # racing: the agent finished first with an old version, and loses
    r = api("drone", "POST", "/tasks/t-1/state", {"state": "DONE_OK", "version": 6, "result": {"seen": True}})
    assert r.status_code == 409, r.text
    r = api("drone", "POST", "/tasks/t-1/state", {"state": "CANCELLED", "version": 7})
    assert r.status_code == 200 and r.json()["state"] == "CANCELLED", r.text
    r = api("drone", "POST", "/tasks/t-1/state", {"state": "DONE_OK", "version": 8})
    assert r.status_code == 409 and "ended" in r.json()["description"], r.text
    hist = [h["state"] for h in task("t-1")["history"]]
    assert hist == ["CREATED", "SENT", "RECEIVED", "ACKNOWLEDGED", "WILCO", "EXECUTING", "CANCEL_REQUESTED",
                    "CANCELLED"], hist


def test_create_over_mqtt():
    """A tasker creates a task by a PUBLISH on kz/task/<id>/create: the id is the topic's, the
    label the PUBLISH's; refusals come back in the PUBACK."""
    rc, why = raw_publish("op", "kz/task/t-mqtt/create", {"assignee": DRONE, "kind": "goto",
                                                          "parameters": {"lat": 1, "lon": 2}})
    assert rc == 0, (rc, why)
    t = until(lambda: task("t-mqtt"))
    assert t["tasker"] == TD + "mod/user/op" and t["label"] == "policy=jp-mod;class=restricted", t
    rc, why = raw_publish("op", "kz/task/t-mqtt2/create", {"id": "other", "assignee": DRONE, "kind": "goto"})
    assert rc == 0x99 and "topic" in why, (rc, why)
    rc, why = raw_publish("op2", "kz/task/t-mqtt3/create", {"assignee": DRONE, "kind": "goto"})
    assert rc == 0x87 and "task rule" in why, (rc, why)
    rc, why = raw_publish("op", "kz/task/t-mqtt/create", {"assignee": DRONE, "kind": "goto"})
    assert rc == 0x83 and "exists" in why, (rc, why)


def test_labels_hide_tasks():
    r = api("op", "POST", "/tasks", {"id": "t-secret", "assignee": DRONE, "kind": "observe"},
            headers={"kz-label": "class=secret"})
    assert r.status_code == 201, r.text
    assert task("t-secret", "op")["label"] == "policy=jp-mod;class=secret"
    assert api("low", "GET", "/tasks/t-secret").status_code == 404
    ids = [t["id"] for t in api("low", "GET", "/tasks").json()["tasks"]]
    assert "t-secret" not in ids and "t-1" in ids, ids
    assert "t-secret" in [t["id"] for t in api("op", "GET", "/tasks?open=1").json()["tasks"]]
    assert api("op", "GET", "/tasks?state=BOGUS").status_code == 400
    # a moving party that may not see it reads like an unknown task
    assert api("low", "POST", "/tasks/t-secret/state", {"state": "CANCELLED", "version": 2}).status_code == 404


def test_deadline_expires():
    deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    r = api("op", "POST", "/tasks", {"id": "t-exp", "assignee": DRONE, "kind": "goto", "deadline": deadline,
                                     "parameters": {"lat": 1, "lon": 2}})
    assert r.status_code == 201, r.text
    t = until(lambda: (task("t-exp") or {}).get("state") == "EXPIRED" and task("t-exp"), 15)
    assert t["by"] == "node" and t["reason"] == "the deadline passed", t
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    assert api("op", "POST", "/tasks", {"assignee": DRONE, "kind": "goto", "deadline": past}).status_code == 400


def test_restart_keeps_state():
    r = api("op", "POST", "/tasks", {"id": "t-restart", "assignee": DRONE, "kind": "observe"})
    assert r.status_code == 201
    until(lambda: task("t-restart")["state"] == "SENT")
    assert api("drone", "POST", "/tasks/t-restart/state", {"state": "RECEIVED", "version": 2}).status_code == 200
    node.proc.kill()  # SIGKILL: only the log holds the state
    node.proc.wait()
    node.start()
    t = until(lambda: task("t-restart"), 15)
    assert t["state"] == "RECEIVED" and t["version"] == 3 and len(t["history"]) == 3, t
    assert task("t-1")["state"] == "CANCELLED" and task("t-exp")["state"] == "EXPIRED"
    # the registered kinds came back too, and the task goes on
    assert {"id": DRONE, "kinds": ["observe", "goto"]} in api("op", "GET", "/agents").json()["agents"]
    assert api("drone", "POST", "/tasks/t-restart/state", {"state": "REJECTED", "version": 3,
                                                           "reason": "busy"}).status_code == 200


def test_audit_has_every_move():
    out = subprocess.run([KIZUNA, "audit", "show", "--data", node.data], capture_output=True, text=True, timeout=60)
    moves = [json.loads(l) for l in out.stdout.splitlines() if '"action":"task"' in l]
    res = [m["resource"] for m in moves if m["decision"] == "allow"]
    assert "t-1 CREATED v1" in res and "t-1 SENT v2" in res and "t-1 CANCELLED v8" in res, res
    denied = [m for m in moves if m["decision"] == "deny"]
    assert any("current version" in m["reason"] for m in denied), denied
    # the metrics (counters since the restart): t-1, t-secret, t-exp, t-restart, t-mqtt; t-secret and t-mqtt open
    m = requests.get("https://localhost:%d/metrics" % HPORT, timeout=10, verify=CA, cert=certs["op"]).text
    vals = dict(l.rsplit(" ", 1) for l in m.splitlines() if l.startswith("kizuna_task"))
    assert vals["kizuna_tasks"] == "5" and vals["kizuna_tasks_open"] == "2", vals
    assert vals["kizuna_task_moves_total"] == "1" and vals["kizuna_task_agents"] == "3", vals


def test_cli_and_agent_end_to_end():
    """kizuna agent (drone2's certificate) and kizuna task: goto, watched to DONE_OK; the
    agent's position in the entity picture; a cancel request confirmed by the agent."""
    agent = subprocess.Popen([KIZUNA, "agent", "-p", str(node.port), "--cafile", CA, "--cert", certs["drone2"][0],
                              "--key", certs["drone2"][1], "--step-ms", "500", "--steps", "6", "--entity", "drone-2",
                              "--kinds", "observe,goto"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        until(lambda: any(a["id"] == TD + "mod/sensor/drone2" and "goto" in a["kinds"]
                          for a in api("op", "GET", "/agents").json()["agents"]))
        tls = ["--url", "https://localhost:%d" % HPORT, "--cafile", CA, "--cert", certs["op"][0], "--key",
               certs["op"][1]]
        out = subprocess.run([KIZUNA, "task", "create", "--assignee", TD + "mod/sensor/drone2", "--kind", "goto",
                              "--params", '{"lat": 35.5, "lon": 139.5}', "--precedence", "FLASH",
                              "--deadline", "+60"] + tls, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        tid = json.loads(out.stdout)["id"]
        w = subprocess.run([KIZUNA, "task", "watch", tid, "--timeout", "30", "--interval-ms", "100"] + tls,
                           capture_output=True, text=True, timeout=60)
        assert w.returncode == 0 and "DONE_OK" in w.stdout, (w.stdout, w.stderr)
        t = task(tid)
        assert t["result"]["position"] == {"lat": 35.5, "lon": 139.5} and t["precedence"] == "FLASH", t
        assert [h["state"] for h in t["history"]][-5:] == ["RECEIVED", "ACKNOWLEDGED", "WILCO", "EXECUTING",
                                                           "DONE_OK"], t
        e = requests.get("https://localhost:%d/api/v1/entities/drone-2" % HPORT, timeout=10, verify=CA,
                         cert=certs["op"]).json()
        assert e["position"]["lat"] == 35.5 and e["provenance"]["origin"] == TD + "mod/sensor/drone2", e
        # list, show
        out = subprocess.run([KIZUNA, "task", "list", "--assignee", TD + "mod/sensor/drone2"] + tls,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and tid in out.stdout and "DONE_OK" in out.stdout, out
        # a long goto, cancelled while executing: the agent confirms
        out = subprocess.run([KIZUNA, "task", "create", "--assignee", TD + "mod/sensor/drone2", "--kind", "goto",
                              "--params", '{"lat": 10, "lon": 10}'] + tls, capture_output=True, text=True, timeout=30)
        tid2 = json.loads(out.stdout)["id"]
        until(lambda: task(tid2)["state"] == "EXECUTING")
        out = subprocess.run([KIZUNA, "task", "cancel", tid2, "--reason", "changed plan"] + tls,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        t = until(lambda: task(tid2)["state"] == "CANCELLED" and task(tid2))
        assert t["by"] == "agent", t
        # a task that has ended: said, exit 1
        out = subprocess.run([KIZUNA, "task", "cancel", tid2] + tls, capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "has already ended (CANCELLED)" in out.stderr, out
        out = subprocess.run([KIZUNA, "task", "show", "no-such-task"] + tls, capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "404" in out.stderr, out
    finally:
        agent.terminate()
        agent.wait(10)
    assert "task %s: DONE_OK" % tid in agent.stdout.read()


def test_caps():
    """task.max_kinds and task.max_tasks: over them, a 400 and a 503 naming the directive
    (MQTT: 0x97)."""
    r = api("drone", "PUT", "/agents/me/kinds", {"kinds": ["a", "b", "c", "d", "e"]})
    assert r.status_code == 400 and "task.max_kinds" in r.json()["description"], r.text
    codes = []
    for i in range(20):
        r = api("op", "POST", "/tasks", {"id": "cap-%d" % i, "assignee": DRONE, "kind": "observe"})
        codes.append(r.status_code)
        if r.status_code != 201:
            break
    assert codes[-1] == 503 and "task.max_tasks" in r.json()["description"], (codes, r.text)
    rc, why = raw_publish("op", "kz/task/cap-mqtt/create", {"assignee": DRONE, "kind": "observe"})
    assert rc == 0x97 and "task.max_tasks" in why, (rc, why)


if __name__ == "__main__":
    run_tests([test_register_and_create, test_policy_decides_who_tasks_whom, test_inbox_over_mqtt,
               test_illegal_moves_refused, test_create_over_mqtt, test_labels_hide_tasks, test_deadline_expires, test_restart_keeps_state,
               test_audit_has_every_move, test_cli_and_agent_end_to_end, test_caps])
