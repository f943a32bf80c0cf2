"""A model of a big cluster: many logical nodes, each with the real placement (`KVPlacement`: liveness,
watches, presuming a node dead), the real lease code (`NodeLeases`) and the real allocator
(`allocation.rebalance_plan`, moves by `NodeLeases.move`), on one nats-server, in this process.

What the nodes do not have is actors: an activation is the lease work a real one does (route by
the shard table, forward to the owner's inbox, claim or join the shard's lease, passivate), and
nothing else, so the figures are placement's own. Aggregates are drawn at random from a population,
at a rate, and each lands on a random node as a queue group delivers it. The model measures:

- KV operations per second cluster-wide at that rate (reads, writes, entries delivered to watches),
  from `radix.store.kv.OPERATIONS`;
- each node's placement memory (its caches of the shard table and of membership);
- how long a node joining takes to start (its watches ready, registered), and to hold its share of
  shards (rebalancing at the default interval and batch);
- how long the cluster takes, after a node's connection is cut (as kill -9 does), to have taken over
  every one of its shards.

`radix bench --only placement` runs it (docs/placement.md, "A model of a big cluster").
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from radix.domain import Aggregate, BoundedContext, Command, Event
from radix.errors import LeaseHeldError, RadixError
from radix.observability.logs import logged
from radix.runtime.actor import Ending
from radix.runtime.allocation import rebalance_plan
from radix.runtime.config import DEFAULT_SHARDS, PlacementConfig
from radix.runtime.hosting import Hosting
from radix.runtime.leases import NodeLeases
from radix.runtime.migration import take_over
from radix.store.kv import OPERATIONS
from radix.store.placement import KVPlacement
from radix.wire.names import FORWARD, PING, Address, node_inbox_filter, node_subject, node_verb, shard_of_lease_key

__all__ = ["Model", "simulate"]

CONTEXT = "sim"


class SimCommand(Command): ...


class Touch(SimCommand): ...


class SimEvent(Event): ...


class Thing(Aggregate[int, SimCommand, SimEvent]):
    def initial_state(self) -> int:
        return 0

    def evolve(self, state: int, event: SimEvent) -> int:
        return state

    def decide(self, state: int, command: SimCommand) -> list[SimEvent]:
        return []


_CONTEXT = BoundedContext(CONTEXT, [Thing()])


@dataclass(eq=False)
class _Holder:
    """An activation, as its shard's lease sees it."""

    address: Address
    epoch: int = 0
    revoked: bool = False


@dataclass
class Model:
    """What the model measured."""

    nodes: int
    aggregates: int
    rate: float
    shards: int
    activations: int = 0
    kv_per_s: dict[str, float] = field(default_factory=dict)
    claims_per_s: float = 0.0
    forwards_per_s: float = 0.0
    placement_bytes_per_node: int = 0
    start_s: float = 0.0
    placed_s: float | None = None
    share: int = 0
    failover_s: float | None = None
    failed_shards: int = 0
    spread: int = 0


class _Node:
    """One logical node: a connection, a placement, its leases, a heartbeat and a rebalancing loop."""

    def __init__(self, sim: _Sim, node_id: str) -> None:
        self.sim = sim
        self.node_id = node_id
        self.nc: NATS | None = None
        self.placement: KVPlacement | None = None
        self.leases: NodeLeases | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.alive = False

    async def start(self) -> None:
        sim = self.sim
        self.nc = nc = await nats.connect(sim.url, name=f"placesim {self.node_id}")
        placement = self.placement = KVPlacement(
            nc, sim.namespace, self.node_id, [CONTEXT], ttl=sim.config.liveness_ttl, replicas=1, timeout=10.0
        )
        await placement.open()
        sim.hosting.agreed(sim.namespace, CONTEXT, await placement.agree_shards(CONTEXT, None, DEFAULT_SHARDS))
        self.tasks += [asyncio.create_task(w) for w in (placement.watch_nodes(), placement.watch_leases())]
        await placement.wait_ready()
        self.leases = NodeLeases({sim.namespace: placement}, sim.hosting, renew=self._renew, pace=asyncio.Semaphore(16))
        gate, leases = asyncio.Semaphore(sim.config.handoff_concurrency), self.leases

        async def taking_over() -> None:
            await take_over(placement, leases, sim.namespace, CONTEXT, gate)

        placement.on_gone = lambda _: self.tasks.append(asyncio.create_task(logged(taking_over())))
        await nc.subscribe(node_inbox_filter(sim.namespace, self.node_id), cb=self._inbox)
        await nc.flush()
        await placement.register()
        self.alive = True
        self.tasks += [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._rebalance())]

    async def kill(self) -> None:
        """Cut the node off as kill -9 does: its connection closes, and its liveness key stays to expire."""
        await self._end(leave=False)

    async def stop(self) -> None:
        """Leave as a node that stops does: its loops end, its liveness key is deleted, its connection closes."""
        await self._end(leave=self.alive)

    async def _end(self, *, leave: bool) -> None:
        self.alive = False
        if self.placement is not None:
            self.placement.on_gone = lambda _: None
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if leave and self.placement is not None:
            await self.placement.deregister()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    async def _renew(self, namespace: str) -> bool:
        assert self.placement is not None
        try:
            await self.placement.renew()
            return True
        except RadixError:
            return False

    async def _heartbeat(self) -> None:
        assert self.placement is not None
        while True:
            await asyncio.sleep(self.placement.ttl / 4)
            await self._renew(self.sim.namespace)

    async def _rebalance(self) -> None:
        """The rebalancing a node runs: its part of the plan, as `Migrations` moves it (no actors here)."""
        config, placement, leases = self.sim.config, self.placement, self.leases
        assert placement is not None
        assert leases is not None
        while True:
            await asyncio.sleep(config.rebalance_interval)
            counts = placement.counts(CONTEXT)
            plan = rebalance_plan(counts, threshold=config.rebalance_threshold, batch=config.rebalance_batch)
            takers = [t for g, t in plan if g == self.node_id]
            records = {r.node: r for r in placement.live_nodes(CONTEXT)}
            held = [k for k in leases.held(self.sim.namespace) if shard_of_lease_key(k) is not None]
            for key, taker in zip(held, takers, strict=False):
                if taker in records:
                    await leases.move(self.sim.namespace, key, records[taker], lambda: None)

    async def _inbox(self, msg: Msg) -> None:
        _, verb = node_verb(msg.subject)
        if verb == FORWARD:
            await self.activate(int(msg.data), hops=1)
        if msg.reply and verb in (FORWARD, PING):
            await msg.respond(b"ok")

    async def activate(self, n: int, *, hops: int = 0) -> None:
        """Route one activation as a node does: forward it to the shard's live owner, else claim or join
        the shard's lease here (taking it over from an owner found gone), then passivate."""
        sim, placement, leases = self.sim, self.placement, self.leases
        assert placement is not None
        assert leases is not None
        assert self.nc is not None
        address = Address(sim.namespace, CONTEXT, "Thing", f"a{n}")
        owner = placement.owner(sim.hosting.lease_key(address))
        elsewhere = owner is not None and not placement.is_me(owner) and placement.is_live(owner)
        if owner is not None and elsewhere and hops < 3 and await self._forward(owner.node, n):
            return
        holder = _Holder(address)
        fresh = not leases.holds(sim.namespace, sim.hosting.lease_key(address))
        try:
            holder.epoch = (await leases.acquire(holder)).epoch
        except LeaseHeldError as e:
            if hops < 3:
                await self._forward(e.node, n)
            return
        except RadixError:
            sim.failed += 1
            return
        sim.activations += 1
        sim.claims += fresh
        await leases.settle(holder, Ending.IDLE)

    async def _forward(self, node: str, n: int) -> bool:
        """Hand the activation to its owner's inbox; False if nobody listens there (then presumed dead)."""
        assert self.nc is not None
        assert self.placement is not None
        try:
            await self.nc.request(node_subject(self.sim.namespace, node, FORWARD), str(n).encode(), timeout=5)
            self.sim.forwards += 1
            return True
        except nats.errors.NoRespondersError:
            await self.placement.presume_dead(node, delay=self.sim.config.suspect_delay)
            return False
        except nats.errors.TimeoutError:
            self.sim.failed += 1
            return True


class _Sim:
    def __init__(self, url: str, namespace: str, config: PlacementConfig) -> None:
        self.url = url
        self.namespace = namespace
        self.config = config
        self.hosting = Hosting({namespace: [_CONTEXT]})
        self.nodes: list[_Node] = []
        self.activations = 0
        self.forwards = 0
        self.claims = 0  # activations that found their shard not held by their node: a claim or a takeover
        self.failed = 0

    def live(self) -> list[_Node]:
        return [n for n in self.nodes if n.alive]

    async def drive(
        self, rate: float, seconds: float, population: int, until: Callable[[], bool] | None = None
    ) -> None:
        """Activations at `rate` a second for `seconds` (or until `until()`), each on a random live node."""
        rng = random.Random(7)
        pending: set[asyncio.Task[None]] = set()
        began = time.monotonic()
        sent = 0
        while time.monotonic() - began < seconds and not (until is not None and until()):
            due = int((time.monotonic() - began) * rate)
            for _ in range(due - sent):
                live = self.live()
                task = asyncio.create_task(rng.choice(live).activate(rng.randrange(population)))
                pending.add(task)
                task.add_done_callback(pending.discard)
            sent = max(sent, due)
            await asyncio.sleep(0.01)
        if pending:
            await asyncio.wait(pending, timeout=30)


def _placement_bytes(placement: KVPlacement) -> int:
    """The memory of a node's placement caches: the shard table and membership, deep."""
    seen: set[int] = set()

    def size(value: object) -> int:
        if id(value) in seen:
            return 0
        seen.add(id(value))
        total = sys.getsizeof(value)
        if isinstance(value, dict):
            total += sum(size(k) + size(v) for k, v in value.items())
        elif isinstance(value, (tuple, list)):
            total += sum(size(v) for v in value)
        elif hasattr(value, "__struct_fields__"):
            total += sum(size(getattr(value, f)) for f in value.__struct_fields__)
        return total

    return size(placement.leases) + size(placement.nodes)


async def simulate(
    url: str, *, nodes: int, aggregates: int, rate: float, seconds: float, say: Callable[[str], None]
) -> Model:
    """Run the model on the server at `url`: `nodes` logical nodes, activations of `aggregates` at `rate`."""
    sim = _Sim(url, f"placesim-{random.randrange(10**9)}", PlacementConfig())
    model = Model(nodes, aggregates, rate, DEFAULT_SHARDS)
    try:
        say(f"placement model: starting {nodes} logical nodes")
        for i in range(nodes):
            node = _Node(sim, f"s{i:03}")
            sim.nodes.append(node)
            await node.start()
        say(f"placement model: {rate:g} activations/s of {aggregates} aggregates, until the shards are placed")
        await sim.drive(rate, 120, aggregates, until=lambda: _settled(sim))
        say(f"placement model: measuring {seconds:g}s at {rate:g} activations/s")
        before, activations, forwards, claims = dict(OPERATIONS), sim.activations, sim.forwards, sim.claims
        began = time.monotonic()
        await sim.drive(rate, seconds, aggregates)
        took = time.monotonic() - began
        model.kv_per_s = {
            k: round((OPERATIONS[k] - before.get(k, 0)) / took, 1) for k in ("read", "write", "delivered")
        }
        model.activations = sim.activations - activations
        model.forwards_per_s = round((sim.forwards - forwards) / took, 1)
        model.claims_per_s = round((sim.claims - claims) / took, 1)
        first = sim.nodes[0].placement
        assert first is not None
        model.placement_bytes_per_node = _placement_bytes(first)
        model.spread = _spread(sim)

        say("placement model: a node joins")
        joiner = _Node(sim, f"s{nodes:03}")
        sim.nodes.append(joiner)
        began = time.monotonic()
        await joiner.start()
        model.start_s = round(time.monotonic() - began, 3)
        model.share = DEFAULT_SHARDS // len(sim.nodes) - max(1, int(0.2 * DEFAULT_SHARDS / len(sim.nodes)))
        await sim.drive(rate, 60, aggregates, until=lambda: _held(joiner) >= model.share)
        if _held(joiner) >= model.share:
            model.placed_s = round(time.monotonic() - began, 2)

        victim = sim.nodes[1]
        model.failed_shards = _held(victim)
        say(f"placement model: cutting {victim.node_id} off, holding {model.failed_shards} shards")
        began = time.monotonic()
        await victim.kill()
        await sim.drive(rate, 60, aggregates, until=lambda: _owned_by(sim, victim.node_id) == 0)
        if _owned_by(sim, victim.node_id) == 0:
            model.failover_s = round(time.monotonic() - began, 2)
    finally:
        for node in sim.nodes:
            await node.stop()
    return model


def _settled(sim: _Sim) -> bool:
    """Every shard is held, and their counts are within the allocator's spread."""
    placement = sim.nodes[0].placement
    assert placement is not None
    counts = placement.counts(CONTEXT)
    spread = max(1.0, 0.2 * DEFAULT_SHARDS / len(counts))
    return sum(counts.values()) == DEFAULT_SHARDS and max(counts.values()) - min(counts.values()) <= spread


def _spread(sim: _Sim) -> int:
    placement = sim.nodes[0].placement
    assert placement is not None
    counts = placement.counts(CONTEXT)
    return max(counts.values()) - min(counts.values())


def _held(node: _Node) -> int:
    """Shards the table gives the node, as the node sees it."""
    return node.placement.counts(CONTEXT).get(node.node_id, 0) if node.placement is not None else 0


def _owned_by(sim: _Sim, node_id: str) -> int:
    """Shards the first live node's table still gives to `node_id`."""
    placement = sim.live()[0].placement
    assert placement is not None
    return sum(1 for key, owner in placement.leases.items() if owner.node == node_id and shard_of_lease_key(key))
