#!/usr/bin/env python3
"""kazoo's Election and Lock recipes against keeper's ZooKeeper ports, with a node killed
under them. Run by server/tests/zk_kazoo.rs.

Usage: kazoo_recipes.py HOST:PORT=PID,HOST:PORT=PID,HOST:PORT=PID

Client 1 connects to the first node, client 2 to the last. Client 1 leads the election and
holds the lock; then the first node is SIGKILLed. Client 1's session must move to another node
and keep its ephemeral nodes, so it still leads and still holds the lock, and client 2 still
waits. When client 1 releases the lock and steps down, client 2 gets both.

Exits 0 when every check held; otherwise fails with the check that did not.
"""
import os
import signal
import sys
import threading
import time

from kazoo.retry import KazooRetry
from kazoo.client import KazooClient, KazooState
from kazoo.recipe.election import Election
from kazoo.recipe.lock import Lock

# Bound on every wait, in seconds.
WAIT_S = 60
# Session timeout asked for; keeper clamps it to its own maximum.
SESSION_TIMEOUT_S = 10


def until(what, check):
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_S} s waiting for: {what}")
        time.sleep(0.02)


def client(hosts):
    c = KazooClient(
        hosts=hosts,
        timeout=SESSION_TIMEOUT_S,
        randomize_hosts=False,
        connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1},
    )
    c.start(timeout=WAIT_S)
    return c


def owned_by(c, parent, session):
    """Children of `parent` that are ephemeral nodes of `session`. Retried on connection loss,
    as any ZooKeeper client must: a server that loses its leader drops its clients until the
    ensemble has elected again (ZooKeeper does the same)."""
    retry = KazooRetry(max_tries=-1, delay=0.1, max_delay=1, deadline=WAIT_S)
    out = []
    for child in retry(c.get_children, parent):
        stat = retry(c.exists, f"{parent}/{child}")
        if stat is not None and stat.ephemeralOwner == session:
            out.append(child)
    return sorted(out)


def main():
    nodes = [e.split("=") for e in sys.argv[1].split(",")]
    hosts = [h for h, _ in nodes]
    first_pid = int(nodes[0][1])

    c1 = client(",".join(hosts))
    c2 = client(",".join(reversed(hosts)))
    states = []
    c1.add_listener(states.append)
    session = c1.client_id[0]

    # Election: client 1 leads until told to stop; client 2 waits its turn.
    leaders = []
    step_down = threading.Event()

    def lead_1():
        leaders.append("c1")
        step_down.wait(WAIT_S)

    e1 = Election(c1, "/election", "c1")
    e2 = Election(c2, "/election", "c2")
    t1 = threading.Thread(target=e1.run, args=(lead_1,), daemon=True)
    t1.start()
    until("client 1 leads", lambda: leaders == ["c1"])
    t2 = threading.Thread(target=e2.run, args=(lambda: leaders.append("c2"),), daemon=True)
    t2.start()
    until("both contend", lambda: sorted(e1.contenders()) == ["c1", "c2"])

    # Lock: client 1 holds it, client 2 cannot take it.
    l1 = Lock(c1, "/lock", "c1")
    l2 = Lock(c2, "/lock", "c2")
    assert l1.acquire(timeout=WAIT_S), "client 1 takes the free lock"
    assert not l2.acquire(blocking=False), "client 2 cannot take a held lock"

    before = (owned_by(c2, "/election", session), owned_by(c2, "/lock", session))
    assert before[0] and before[1], f"client 1 owns ephemeral nodes: {before}"
    print(f"client 1 session {session:#x} owns {before}; killing node {nodes[0][0]}", flush=True)

    # The node under client 1 dies.
    os.kill(first_pid, signal.SIGKILL)
    until("client 1 notices", lambda: KazooState.SUSPENDED in states)
    until("client 1 reconnects", lambda: states[-1] == KazooState.CONNECTED)
    assert KazooState.LOST not in states, f"client 1's session was lost: {states}"
    assert c1.client_id[0] == session, "the session id is kept across the reconnect"
    peer = c1._connection._socket.getpeername()
    print(f"client 1 reconnected to {peer[0]}:{peer[1]}", flush=True)

    # Same session, same ephemeral nodes, seen from both clients.
    after = (owned_by(c1, "/election", session), owned_by(c1, "/lock", session))
    assert after == before, f"client 1's ephemeral nodes changed: {before} -> {after}"
    assert owned_by(c2, "/lock", session) == before[1]
    assert leaders == ["c1"], f"leadership moved while client 1's session lived: {leaders}"
    assert e2.contenders()[0] == "c1", "client 1 is still first in line"
    assert l1.is_acquired, "client 1 still holds the lock"
    assert not l2.acquire(blocking=False), "client 2 still cannot take the lock"

    # Hand over: the lock, then the leadership.
    l1.release()
    assert l2.acquire(timeout=WAIT_S), "client 2 takes the released lock"
    step_down.set()
    until("client 2 leads", lambda: leaders == ["c1", "c2"])
    l2.release()

    c1.stop()
    c2.stop()
    c1.close()
    c2.close()
    print("ok", flush=True)


if __name__ == "__main__":
    main()
