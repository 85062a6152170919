"""The simulated clock: one round's messages and work, replayed on devices and links.

A pure function of (messages, FLOPs, devices, the method's wait pattern); it never reads
the wall clock. Clients run in parallel on their own devices (or take turns, `sequential`).
A message takes latency + bytes / bandwidth: it holds its client's link in its direction
(one message at a time, in order) and a share of the server's link in that direction (split
equally among the transfers in flight), then arrives one latency later. The server runs
`parallel` jobs at once; uploads queue at it in simulated arrival order (ties: step, then
client). What a client waits for is the method's pattern:
- "full" (FedAvg): local steps of the whole model; nothing per batch.
- "exchange" (SplitFed): forward, smashed up, server step, dL/dz down, backward: every batch.
- "local" (CSE-FSL, FSL-AN, FSL-SAGE): the step goes on through the AM; uploads are not
  waited for. FSL-SAGE's alignment: after every client's first `align_after` uploads are
  applied, each AM is fitted on the server and sent down; the client's step `align_after`
  waits for it.
Every client downloads its model parts before its first step and uploads them after its
last; the round ends when the last upload has arrived and the server is idle. Averaging is
not timed (it is small next to the steps).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fslsage_ray.system.devices import Device, ServerDevice
from fslsage_ray.system.events import ROUND, Message

PATTERNS = ("full", "exchange", "local")
_AM = -1  # a step's dependency on its aligned AM, before the alignment job exists


@dataclass(frozen=True)
class StepWork:
    """FLOPs of one sample on the client: before its upload, after it (or, "full" and
    "local", all of a step: fwd + rest), and on the server per uploaded sample."""

    client_fwd: float
    client_rest: float
    server: float


@dataclass(frozen=True)
class RoundWork:
    pattern: str  # one of PATTERNS
    batches: Mapping[int, Sequence[int]]  # cid -> its batch sizes this round
    messages: Sequence[Message]
    step: StepWork
    sequential: bool = False  # clients take turns in id order (SplitFed-SS, client-major)
    align_after: int | None = None  # server jobs after this many steps (FSL-SAGE)
    align_flops: Mapping[int, float] = field(default_factory=dict)  # per client's job
    align_own_only: bool = False  # a client's job waits for its own uploads only


@dataclass(frozen=True)
class RoundTime:
    seconds: float
    client_s: dict[int, float]  # when each client's last message arrived
    server_busy_s: float

    @property
    def slowest(self) -> tuple[int, float]:
        """(client, its finish time as a share of the round)."""
        if not self.client_s:
            return -1, 0.0
        cid = max(self.client_s, key=lambda c: (self.client_s[c], -c))
        return cid, self.client_s[cid] / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Task:
    key: tuple  # order among tasks waiting for the same resource
    resource: tuple  # ("cpu", cid) | ("server",) | ("link", cid, "up"|"down")
    amount: float  # FLOPs or bytes
    deps: list[int]
    owner: int  # the client it counts for
    ready: float = -1.0
    done: float | None = None


class _Graph:
    def __init__(self) -> None:
        self.tasks: list[_Task] = []

    def add(self, key, resource, amount, deps, owner) -> int:
        self.tasks.append(
            _Task(key, resource, float(amount), [d for d in deps if d is not None], owner)
        )
        return len(self.tasks) - 1


def _build(work: RoundWork) -> _Graph:
    """The round as tasks with dependencies, from the messages and the pattern."""
    if work.pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {work.pattern!r}; known: {PATTERNS}")
    g = _Graph()
    by_client: dict[int, dict[int, list[Message]]] = {}
    for m in sorted(work.messages):
        by_client.setdefault(m.cid, {}).setdefault(m.step, []).append(m)
    s = work.step
    prev_client_end: int | None = None
    server_steps: dict[int, list[int]] = {}  # cid -> server tasks before align_after
    pending_align: list[tuple[int, int | None, list[Message]]] = []
    for cid in sorted(work.batches):
        msgs = by_client.get(cid, {})
        start = msgs.get(ROUND, [])
        downs = [_send(g, m, (ROUND, cid), []) for m in start if not m.up]
        prev = None
        first = prev_client_end if work.sequential else None
        for it, b in enumerate(work.batches[cid]):
            deps = [prev] if it else [*downs, first]
            if work.align_after is not None and it == work.align_after:
                pending_align.append((cid, len(g.tasks), msgs.get(it, [])))
                deps.append(_AM)  # the AM's arrival, filled in once the jobs exist
            here = (
                msgs.get(it, [])
                if it != work.align_after
                else [m for m in msgs.get(it, []) if m.kind != "aux_model.down"]
            )
            fwd = g.add((it, cid, 0), ("cpu", cid), s.client_fwd * b, deps, cid)
            ups = [_send(g, m, (it, cid), [fwd]) for m in here if m.up]
            server = None
            if ups:
                server = g.add((it, cid), ("server",), s.server * b, ups, cid)
                if work.align_after is not None and it < work.align_after:
                    server_steps.setdefault(cid, []).append(server)
            downs = [_send(g, m, (it, cid), [server]) for m in here if not m.up]
            wait = downs[-1] if work.pattern == "exchange" and downs else None
            prev = g.add((it, cid, 1), ("cpu", cid), s.client_rest * b, [fwd, wait], cid)
        if work.align_after is not None and work.align_after >= len(work.batches[cid]):
            pending_align.append((cid, None, msgs.get(work.align_after, [])))  # AM, no step
        last = prev if prev is not None else (downs[-1] if downs else first)
        prev_client_end = last
        for m in start:
            if m.up:  # the round's model parts, after the last step
                _send(g, m, (1 << 30, cid), [last, *([] if prev is not None else downs)])
    everyone = [t for ids in server_steps.values() for t in ids]
    for cid, step_task, msgs in pending_align:
        barrier = server_steps.get(cid, []) if work.align_own_only else everyone
        job = g.add(
            (work.align_after, cid, "align"),
            ("server",),
            work.align_flops.get(cid, 0.0),
            barrier,
            cid,
        )
        am = [
            _send(g, m, (work.align_after, cid), [job]) for m in msgs if m.kind == "aux_model.down"
        ]
        if step_task is not None:
            arrival = am[-1] if am else job
            task = g.tasks[step_task]
            task.deps = [arrival if d == _AM else d for d in task.deps]
    return g


def _send(g: _Graph, m: Message, key: tuple, deps: list[int | None]) -> int:
    direction = "up" if m.up else "down"
    return g.add((*key, m.kind), ("link", m.cid, direction), m.nbytes, deps, m.cid)


def round_time(work: RoundWork, devices: Sequence[Device], server: ServerDevice) -> RoundTime:
    """Simulate the round; every figure follows from the inputs alone."""
    g = _build(work)
    tasks = g.tasks
    dependents: dict[int, list[int]] = {}
    missing = []
    for i, t in enumerate(tasks):
        missing.append(len(t.deps))
        for d in t.deps:
            dependents.setdefault(d, []).append(i)
    waiting: dict[tuple, list] = {}  # resource -> heap of (ready, key, task)
    now = 0.0
    busy_cpu: dict[tuple, int] = {}  # resource -> tasks running on it
    running: list[tuple[float, int]] = []  # heap of (end, task) for computes and latencies
    flows: dict[int, float] = {}  # transfer task -> bytes left
    server_busy = 0.0

    def release(i: int, at: float) -> None:
        for j in dependents.get(i, []):
            missing[j] -= 1
            if missing[j] == 0:
                tasks[j].ready = at
                heapq.heappush(waiting.setdefault(tasks[j].resource, []), (at, tasks[j].key, j))

    def finish(i: int, at: float) -> None:
        tasks[i].done = at
        release(i, at)

    for i, t in enumerate(tasks):
        if not t.deps:
            t.ready = 0.0
            heapq.heappush(waiting.setdefault(t.resource, []), (0.0, t.key, i))
    while True:
        # Start whatever can start now.
        for res, heap in waiting.items():
            cap = server.parallel if res == ("server",) else 1
            while heap and heap[0][0] <= now + 1e-15 and busy_cpu.get(res, 0) < cap:
                _, _, i = heapq.heappop(heap)
                busy_cpu[res] = busy_cpu.get(res, 0) + 1
                t = tasks[i]
                if res[0] == "link":
                    flows[i] = t.amount
                else:
                    rate = server.flops if res == ("server",) else devices[res[1]].flops
                    seconds = t.amount / rate
                    if res == ("server",):
                        server_busy += seconds
                    heapq.heappush(running, (now + seconds, i))
        rates = _rates(flows, tasks, devices, server)
        candidates = [running[0][0]] if running else []
        candidates += [now + flows[i] / rates[i] for i in flows]
        future = [h[0][0] for h in waiting.values() if h and h[0][0] > now]
        candidates += future
        if not candidates:
            break
        nxt = max(min(candidates), now)
        for i in list(flows):
            flows[i] -= rates[i] * (nxt - now)
        now = nxt
        for i in sorted(flows):  # serialised: the link is free, the message still travels
            if flows[i] <= 1e-9 * max(1.0, tasks[i].amount):
                del flows[i]
                res = tasks[i].resource
                busy_cpu[res] -= 1
                latency = devices[tasks[i].owner].latency_s + server.latency_s
                heapq.heappush(running, (now + latency, ~i))  # ~i: an arrival
        while running and running[0][0] <= now + 1e-15:
            _, i = heapq.heappop(running)
            if i < 0:
                finish(~i, now)
            else:
                busy_cpu[tasks[i].resource] -= 1
                finish(i, now)
    if any(t.done is None for t in tasks):
        raise RuntimeError("simulated round did not finish: a dependency cycle")
    client_s: dict[int, float] = {cid: 0.0 for cid in work.batches}
    for t in tasks:
        client_s[t.owner] = max(client_s.get(t.owner, 0.0), t.done)
    total = max((t.done for t in tasks), default=0.0)
    return RoundTime(total, client_s, server_busy)


def _rates(flows, tasks, devices, server: ServerDevice) -> dict[int, float]:
    """Bytes per second of each transfer in flight: its client's link, or its equal share
    of the server's link in that direction, whichever is smaller."""
    count = {"up": 0, "down": 0}
    for i in flows:
        count[tasks[i].resource[2]] += 1
    out = {}
    for i in flows:
        _, cid, direction = tasks[i].resource
        own = devices[cid].up_bps if direction == "up" else devices[cid].down_bps
        out[i] = min(own, server.link_bps / count[direction])
    return out
