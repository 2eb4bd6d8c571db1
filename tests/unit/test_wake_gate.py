"""app.jobs.wake_gate.WakeGate in memory: who wakes for a dispatch notice, and when."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from app.jobs.wake_gate import WakeGate, backup_delay_sec, rank_of

FLEET = [f"w{n}" for n in range(30)]


def _gate(me: str, peers: list[str] = FLEET, queue: str = "q") -> WakeGate:
    gate = WakeGate(me, {queue: 2})
    gate.set_peers({queue: peers})
    gate.connect(lambda: None)
    return gate


def _dispatch(gate: WakeGate, notice: int, n: int = 1, queue: str = "q") -> None:
    gate.on_notice(
        json.dumps({"kind": "dispatch", "id": notice, "queues": {queue: n}, "due": {queue: n}})
    )


def test_rank_of_orders_every_worker_once_and_spreads_notices() -> None:
    ranks = sorted(rank_of("7/q", me, FLEET) for me in FLEET)
    assert ranks == list(range(len(FLEET)))
    first = Counter(
        next(me for me in FLEET if rank_of(f"{notice}/q", me, FLEET) == 0) for notice in range(3000)
    )
    assert len(first) == len(FLEET)  # every worker is first for some notices
    assert max(first.values()) < 3 * 3000 / len(FLEET)


async def test_wake_gate_one_dispatch_wakes_as_many_workers_as_jobs() -> None:
    for jobs in (1, 3):
        gates = [_gate(me) for me in FLEET]
        for gate in gates:
            _dispatch(gate, notice=41, n=jobs)
        assert sum(gate.wakes for gate in gates) == jobs


async def test_wake_gate_backup_wakes_only_while_the_job_waits() -> None:
    order = sorted(FLEET, key=lambda me: rank_of("5/q", me, FLEET))
    second, third = _gate(order[1]), _gate(order[2])
    for gate in (second, third):
        _dispatch(gate, notice=5)
    assert (second.wakes, third.wakes) == (0, 0)
    # The third hears the job start before its look is due; the second never does.
    third.on_notice(json.dumps({"kind": "started", "queues": {"q": 1}}))
    await asyncio.sleep(backup_delay_sec(2, 1) * 2)
    assert (second.wakes, third.wakes) == (1, 0)


async def test_wake_gate_without_a_free_slot_stays_asleep() -> None:
    first = next(me for me in FLEET if rank_of("9/q", me, FLEET) == 0)
    gate = _gate(first)
    gate.has_free_slot = lambda _queue: False
    _dispatch(gate, notice=9)
    await asyncio.sleep(backup_delay_sec(1, 1) * 2)
    assert gate.wakes == 0


async def test_wake_gate_ignores_queues_it_does_not_serve() -> None:
    gate = _gate("w0", peers=["w0"])
    _dispatch(gate, notice=1, queue="other")
    assert gate.wakes == 0
    _dispatch(gate, notice=2)
    assert gate.wakes == 1  # alone on its queue, it is always first


async def test_wake_gate_empty_dequeue_clears_pending() -> None:
    order = sorted(FLEET, key=lambda me: rank_of("3/q", me, FLEET))
    gate = _gate(order[1])
    _dispatch(gate, notice=3)
    gate.found_nothing(["q"])
    await asyncio.sleep(backup_delay_sec(1, 1) * 2)
    assert gate.wakes == 0


def test_wake_gate_a_peer_completion_wakes_one_worker_of_a_limited_queue() -> None:
    gates = [_gate(me) for me in FLEET]  # queue "q" has a fleet-wide limit of 2
    for completion in range(20):
        for gate in gates:
            gate.on_peer_completion(f"4242/completion {completion}")
        assert sum(gate.wakes for gate in gates) == completion + 1


def test_wake_gate_a_peer_completion_wakes_nobody_without_a_limit_or_a_free_slot() -> None:
    unlimited = [WakeGate(me, {"q": 0}) for me in FLEET]
    full = [_gate(me) for me in FLEET]
    for gate in unlimited:
        gate.set_peers({"q": FLEET})
        gate.connect(lambda: None)
    for gate in full:
        gate.has_free_slot = lambda _queue: False
    for gate in [*unlimited, *full]:
        gate.on_peer_completion("4242/completion")
    assert sum(gate.wakes for gate in [*unlimited, *full]) == 0
