"""cluster-ipam under etcd faults: issue 19's fault matrix, each case under concurrent ADDs.

Each test runs ADDs from three simulated nodes (two loadgen processes each, the
plugin in-process as a warm worker runs it, ``timeoutSeconds`` 3, one /16) on
the real 3-member cluster (tests/helpers/cluster_ipam.py: this module's own,
in a private network namespace) for as long as one fault lasts and a while
after it is undone, then checks what issue 19 asks of every fault case
(:func:`helpers.cluster_ipam.assert_no_duplicate_or_lost`): no address
acknowledged twice, every acknowledged allocation in etcd as acknowledged, no
orphan address key, the allocation index equal to the address keys, every ADD
answered within ``timeoutSeconds`` + 1 s, every failure code 11 (try again
later). So that no case can pass by not happening, each also checks that the
fault took effect (a new leader elected, a member that answers nothing,
compactions and defrags done) and that ADDs were acknowledged while it lasted
and after it was undone.

The cases: the leader, then a follower, SIGSTOPped (and continued); the
leader, then a follower, partitioned (:meth:`LocalCluster.partition`: its
peer and client traffic dropped by nftables inside the cluster's namespace,
then healed); repeated leader kills; compaction and defrag every 0.7 s. A
member SIGKILLed once and quorum loss are tests/test_cluster_ipam_etcd.py's.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from helpers.cluster_ipam import (  # noqa: F401 - cluster and etcd_cluster are fixtures
    assert_no_duplicate_or_lost,
    cluster,
    collect,
    etcd_cluster,
    net_config,
    start_nodes,
)

pytestmark = pytest.mark.privileged

#: The ADDs' ``etcd.timeoutSeconds``: each must be answered within it + 1 s.
TIMEOUT = 3
#: Loadgen processes get this long to import before the first ADD (they start together).
WARMUP = 1.5
#: The fault begins this long after the first ADD, so it meets ADDs in flight.
FAULT_AT = 1.0
#: A stop or partition lasts at least this long (past an election: etcd's election timeout is 1 s).
HOLD = 3.0
#: ADDs go on this long after the fault is undone (a rejoining member may force an election).
AFTER = 4.0
#: Three nodes, two loadgen processes each, back to back.
NODES = "abc"
PROCESSES = 2


class Window:
    """When the load ran and when the fault was on, in wall-clock seconds (loadgen's ``t0``)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.fault_on = 0.0
        self.fault_off = 0.0

    def at(self, offset: float) -> None:
        """Sleep until ``offset`` seconds after the first ADD."""
        time.sleep(max(0.0, self.start + offset - time.time()))


def under_load(cluster, tmp_path, fault, seconds, first=None):
    """ADDs from every node for ``seconds``, while ``fault(window)`` runs in this thread (it
    sets ``window.fault_on``/``fault_off``); ``(config, lines, window)``. The loadgens are
    killed if anything raises before they are collected.

    Every node lists the endpoints in another order (rotated, fresh ``stateDir`` hints), so
    each member is some node's first choice: node-a's is ``first`` (the fault's victim), and
    the fault meets clients that talk to the victim as well as clients of the others (with one
    order for all, every client would use one member, and a fault on another would meet
    none of them)."""
    members = list(cluster.members)
    shift = members.index(first) if first is not None else 0
    members = members[shift:] + members[:shift]
    name = f"faults{uuid.uuid4().hex[:8]}"
    window = Window(time.time() + WARMUP)
    procs = []
    try:
        for n, node in enumerate(NODES):
            order = members[n:] + members[:n]
            config = net_config(cluster, name, timeout=TIMEOUT, endpoints=[m.endpoint for m in order],
                                stateDir=str(tmp_path / "state"))
            plan = [(f"node-{node}", 100_000, f"{node}{p}") for p in range(PROCESSES)]  # --until ends them
            procs += start_nodes(cluster, config, tmp_path, plan, start_at=window.start,
                                 until=window.start + seconds)
        fault(window)
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    lines = collect(procs, timeout=seconds + 60)
    assert window.fault_on and window.fault_off > window.fault_on, "the fault schedule did not run"
    return config, lines, window


def assert_served_through(lines, window):
    """ADDs were acknowledged that started while the fault was on and after it was undone."""
    acked = [line["t0"] for line in lines if line["ok"]]
    assert any(window.fault_on <= t0 < window.fault_off for t0 in acked), "no ADD acknowledged during the fault"
    assert any(t0 >= window.fault_off for t0 in acked), "no ADD acknowledged after the fault was undone"


def other_than(cluster, member):
    return next(m for m in cluster.members if m is not member)


def new_leader_elected(cluster, old, timeout=15.0):
    """Wait (bounded) until a member other than ``old`` leads; that member."""
    deadline = time.monotonic() + timeout
    while True:
        leader = cluster.leader(timeout=max(0.1, deadline - time.monotonic()))
        if leader is not old:
            return leader
        if time.monotonic() > deadline:
            raise AssertionError(f"{old.name} still leads")
        time.sleep(0.05)


# -- SIGSTOP ----------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["leader", "follower"])
def test_sigstopped_member(cluster, tmp_path, role):
    """A member frozen by SIGSTOP keeps its connections open and answers nothing (unlike a
    killed one, which refuses at once): every try on it costs the per-try cap. The leader
    frozen: the others elect a new leader meanwhile; continued, it steps down."""
    leader = cluster.leader()
    victim = leader if role == "leader" else other_than(cluster, leader)
    seen = {}

    def stop(window):
        window.at(FAULT_AT)
        window.fault_on = time.time()
        victim.kill(signal.SIGSTOP)
        try:
            if role == "leader":
                seen["new leader"] = new_leader_elected(cluster, victim)
            seen["victim answered"] = cluster.status(victim) is not None
            window.at(FAULT_AT + HOLD)
        finally:
            victim.kill(signal.SIGCONT)
            window.fault_off = time.time()

    config, lines, window = under_load(cluster, tmp_path, stop, FAULT_AT + HOLD + AFTER, first=victim)
    assert not seen["victim answered"], "the stopped member still answered"
    assert seen.get("new leader", leader) is not victim
    # A frozen follower costs a client one capped try, then another member answers: no ADD fails.
    assert_no_duplicate_or_lost(cluster, config, lines, TIMEOUT, min_acked=1.0 if role == "follower" else 0.9)
    assert_served_through(lines, window)


# -- partitions ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["leader", "follower"])
def test_partitioned_member(cluster, tmp_path, role):
    """A member cut off from its peers and its clients (packets dropped: connections hang
    rather than fail). The leader cut off: the others elect a new one, and it steps down
    when it loses its quorum. A follower cut off campaigns alone and comes back with a
    higher term, forcing an election after the heal (etcd 3.4 has no pre-vote by default)."""
    leader = cluster.leader()
    victim = leader if role == "leader" else other_than(cluster, leader)
    seen = {}

    def partition(window):
        window.at(FAULT_AT)
        seen["term"] = raft_term(cluster, leader)
        window.fault_on = time.time()
        cluster.partition(victim)
        try:
            if role == "leader":
                seen["new leader"] = new_leader_elected(cluster, victim)
            seen["victim answered"] = cluster.status(victim) is not None
            window.at(FAULT_AT + HOLD)
        finally:
            cluster.heal()
            window.fault_off = time.time()

    config, lines, window = under_load(cluster, tmp_path, partition, FAULT_AT + HOLD + AFTER, first=victim)
    assert not seen["victim answered"], "the partitioned member still answered its clients"
    assert seen.get("new leader", leader) is not victim
    cluster.wait_healthy()  # the healed member serves writes again
    # Cut off from its peers too, not only from its clients: it campaigned alone (higher terms),
    # and its return forced an election, whatever its role was.
    assert raft_term(cluster, victim) > seen["term"]
    assert_no_duplicate_or_lost(cluster, config, lines, TIMEOUT)
    assert_served_through(lines, window)


def raft_term(cluster, member):
    status = cluster.status(member, timeout=5.0)
    assert status is not None, f"{member.name} does not answer"
    return int(status["raftTerm"])


# -- repeated leader kills ------------------------------------------------------------------

#: Issue 19's "10 leader kills in 30 s", scaled for CI time: 5 kills, one every 2 s.
KILLS = 5
KILL_EVERY = 2.0


def test_repeated_leader_kills(cluster, tmp_path):
    """Issue 19 killed the leader 10 times in 30 s; here 5 times in about 8 s, for CI time:
    each further kill is the same event again, and a kill every 2 s instead of every 3 s
    keeps the pace at least as harsh (less time for the cluster to settle between two),
    in 13 s of load instead of 30. Each kill SIGKILLs whichever member leads at that
    moment and starts it again at once, as a supervisor would; before the next kill all
    three answer again, so every kill is a leader failover with a quorum left, never a
    loss of quorum (the etcd tests' own case)."""
    kills = []

    def kill_leaders(window):
        for n in range(KILLS):
            window.at(FAULT_AT + n * KILL_EVERY)
            wait_all_answer(cluster)
            leader = cluster.leader()
            term = raft_term(cluster, leader)
            leader.kill(signal.SIGKILL)
            kills.append((time.time(), leader))
            window.fault_on = window.fault_on or kills[0][0]
            leader.start()
        elected_after(cluster, term)  # (the member killed last may win it: it restarted at once)
        window.fault_off = time.time()

    config, lines, window = under_load(cluster, tmp_path, kill_leaders, FAULT_AT + (KILLS - 1) * KILL_EVERY + AFTER)
    assert len(kills) == KILLS
    for at, _ in kills:  # each kill met ADDs in flight
        assert any(line["t0"] <= at <= line["t0"] + line["ms"] / 1000 for line in lines), f"no ADD in flight at {at}"
    assert_no_duplicate_or_lost(cluster, config, lines, TIMEOUT)
    assert_served_through(lines, window)


def elected_after(cluster, term, timeout=15.0):
    """Wait (bounded) until a leader of a term after ``term`` leads."""
    deadline = time.monotonic() + timeout
    while raft_term(cluster, cluster.leader(timeout=max(0.1, deadline - time.monotonic()))) <= term:
        if time.monotonic() > deadline:
            raise AssertionError(f"no leader elected after term {term}")
        time.sleep(0.05)


def wait_all_answer(cluster, timeout=20.0):
    """Wait (bounded) until every member answers its status (a restarted one is back)."""
    deadline = time.monotonic() + timeout
    while not all(cluster.status(member) is not None for member in cluster.members):
        if time.monotonic() > deadline:
            raise AssertionError("a restarted member did not come back")
        time.sleep(0.05)


# -- compaction and defrag ----------------------------------------------------------------

#: Issue 19's cadence: compact the history and defragment every member every 0.7 s.
MAINTENANCE_EVERY = 0.7
MAINTENANCE_FOR = 7.0


def test_compaction_and_defrag_every_0_7_seconds(cluster, tmp_path):
    """For the whole run, every 0.7 s: the history compacted to the current revision
    (physically) and every member defragmented in turn (a member serves nothing while it
    defragments). The plugin reads at the current revision only, so compaction must cost
    it nothing; a defragmenting member is a short stall."""
    done = {"compactions": [], "defrags": 0, "rounds": 0}

    def maintain(window):
        window.at(0.0)
        window.fault_on = time.time()
        while time.time() < window.start + MAINTENANCE_FOR:
            done["rounds"] += 1
            revision = cluster.compact(cluster.leader())
            if revision is not None:
                done["compactions"].append(revision)
            done["defrags"] += sum(cluster.defragment(member) for member in cluster.members)
            window.at(done["rounds"] * MAINTENANCE_EVERY)
        window.fault_off = time.time()

    config, lines, window = under_load(cluster, tmp_path, maintain, MAINTENANCE_FOR + AFTER)
    rounds, compactions = done["rounds"], done["compactions"]
    assert rounds >= MAINTENANCE_FOR / MAINTENANCE_EVERY * 0.5, f"only {rounds} rounds of maintenance"
    assert len(compactions) >= rounds - 1 and compactions == sorted(set(compactions)), compactions
    assert done["defrags"] >= 3 * (rounds - 1), done
    # The leader stays and a member is stalled by its own defrag only: no ADD may fail.
    assert_no_duplicate_or_lost(cluster, config, lines, TIMEOUT, min_acked=1.0)
    assert_served_through(lines, window)
