"""Placement on JetStream KV: which node is alive, and which node owns which shard, in one namespace.

Liveness: each node holds a key `{node_id}` in `radix_{ns}_nodes` with a per-key TTL,
renewed by a fenced write well within the TTL. Its value names the node's incarnation,
a fresh id each time the node (re-)registers. A node found gone sooner (nobody listens on its
inbox, twice) has its key deleted by whoever found it (`presume_dead`), as an expiry would.

Ownership: each (namespace, context) has a fixed number of shards, recorded under
`_shards.{context}`; an aggregate falls in the shard of its placement key. A shard's lease is
the key `{context}.{shard}` in `radix_{ns}_leases`, naming the owner's node and incarnation. A
node claims an absent lease by creating it, takes over one whose owner's liveness key is gone by
compare-and-set on its revision, hands it to another node by compare-and-set, and releases it by
a compare-and-set delete. The revision at which a node acquired a lease is its epoch. Leases
are never renewed, and the table has one key per shard: lease traffic grows with moves and
failovers, never with activations or live aggregates.

The lease is advisory. The event stream is the authority: every append is fenced on
the aggregate's last sequence, so a node that wrongly believes it owns an aggregate
can never fork its history (docs/placement.md). The in-memory twin of this
`Placement` port is `radix.store.memory.InMemoryPlacement`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import nats.errors
from nats.aio.client import Client as NATS

from radix.errors import (
    KeyChangedError,
    LeaseHeldError,
    LivenessLostError,
    RadixError,
    StoreError,
    StoreUnavailableError,
)
from radix.observability.logs import logger
from radix.store.kv import Entry, KVBucket
from radix.store.ports import Claim, Owner
from radix.transport.inbox import Inbox
from radix.wire.bodies import timestamp
from radix.wire.control import (
    LeaseValue,
    NodeRecord,
    ShardCount,
    control_encoder,
    lease_decoder,
    node_decoder,
    shard_count_decoder,
)
from radix.wire.names import (
    PING,
    is_lease_key,
    lease_key,
    leases_bucket,
    node_subject,
    nodes_bucket,
    shard_of,
    shard_of_lease_key,
    shards_key,
)

__all__ = ["KVPlacement", "new_incarnation", "owner_of", "shard_table"]

_encoder: Final = control_encoder

#: Failures in a row of a watch that has not delivered what existed when it started, after which the node's
#: start gives up (a watch that is refused, most often for want of a permission, never becomes ready).
WATCH_ATTEMPTS: Final = 3


def _owner(entry: Entry) -> Owner:
    assert entry.value is not None
    value = lease_decoder.decode(entry.value)
    return Owner(value.node, value.incarnation, entry.revision, value.fenced)


def new_incarnation() -> str:
    """A fresh incarnation id: a node draws one each time it registers."""
    return secrets.token_hex(6)


async def shard_table(nc: NATS, namespace: str, context: str) -> tuple[int, dict[int, str]]:
    """A context's shard count and the node holding each held shard, read from the leases bucket as a client
    sees it (one read of the bucket, which holds a key per shard). Count 0: no node has served it yet."""
    bucket = KVBucket(nc, leases_bucket(namespace))
    count, owners = 0, {}
    for entry in await bucket.entries():
        assert entry.value is not None  # entries() leaves deleted keys out
        shard = shard_of_lease_key(entry.key)
        if entry.key == shards_key(context):
            count = shard_count_decoder.decode(entry.value).shards
        elif shard is not None and shard[0] == context:
            owners[shard[1]] = lease_decoder.decode(entry.value).node
    return count, owners


async def owner_of(nc: NATS, namespace: str, context: str, placement_key: str) -> tuple[int, str | None]:
    """The shard a placement key falls in, and the node holding that shard's lease (None: nobody), read
    from the leases bucket as a client sees it (the context's recorded shard count; nothing recorded:
    no node has served the context yet)."""
    bucket = KVBucket(nc, leases_bucket(namespace))
    recorded = await bucket.get(shards_key(context))
    if recorded.value is None:
        return 0, None
    shard = shard_of(placement_key, shard_count_decoder.decode(recorded.value).shards)
    entry = await bucket.get(lease_key(context, shard))
    return shard, lease_decoder.decode(entry.value).node if entry.value is not None else None


class KVPlacement:
    """Membership and leases of one namespace on JetStream KV, as one node sees them: a `Placement`."""

    def __init__(
        self, nc: NATS, namespace: str, node_id: str, contexts: list[str], *, ttl: int, replicas: int, timeout: float
    ) -> None:
        self._nc = nc
        self.namespace = namespace
        self.node_id = node_id
        self.contexts = contexts
        self.ttl = ttl
        self.incarnation = new_incarnation()
        self.nodes_kv = KVBucket(nc, nodes_bucket(namespace), replicas=replicas, timeout=timeout)
        self.leases_kv = KVBucket(nc, leases_bucket(namespace), replicas=replicas, timeout=timeout)
        self.nodes: dict[str, NodeRecord] = {}
        self.leases: dict[str, Owner] = {}  # written through _hold and _forget only
        # Leases per (context, node, incarnation), kept with `leases`: `counts` is asked for each handoff
        # of a drain, and counting every lease each time made a drain quadratic.
        self._tally: Counter[tuple[str, str, str]] = Counter()
        self.nodes_ready = asyncio.Event()
        self.leases_ready = asyncio.Event()
        self._unwatchable: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.changed = asyncio.Event()
        self._revision = 0
        self._renewed_at = 0.0  # monotonic time at which the last successful renewal was sent
        self.lost = False  # liveness lost while the node was stopping: it leaves without coming back
        self.leaving = False  # deregistering: the deletion of our own key is no eviction
        self.on_evicted: Callable[[], object] = lambda: None  # our liveness key deleted by another node
        self.on_gone: Callable[[str], object] = lambda node: None  # another node's liveness key gone
        self._suspected: dict[str, asyncio.Task[bool]] = {}  # presumptions of death under way, by node
        self._renewed: dict[str, float] = {}  # when the watch last showed each node's liveness key written

    # -- membership ------------------------------------------------------------------------

    @property
    def record(self) -> NodeRecord:
        return NodeRecord(self.node_id, self.incarnation, self.contexts, timestamp())

    async def open(self) -> None:
        await self.nodes_kv.open()
        await self.leases_kv.open()

    async def register(self) -> None:
        """Create this node's liveness key under the current incarnation.

        If the key is held by an earlier incarnation (this node restarted after a crash),
        wait for it to expire; if it is still held after that, another live node uses the id.
        """
        deadline = time.monotonic() + self.ttl + 2
        while True:
            sent = time.monotonic()
            try:
                self._revision = await self.nodes_kv.create(self.node_id, _encoder.encode(self.record), ttl=self.ttl)
                break
            except KeyChangedError:
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    continue
                entry = await self.nodes_kv.get(self.node_id, leader=True)
                holder = node_decoder.decode(entry.value) if entry.value else None
                raise RadixError(
                    f"node id {self.node_id!r} is in use in namespace {self.namespace!r} by a live node "
                    f"(incarnation {holder.incarnation if holder else '?'}); give this node another id"
                ) from None
        self._renewed_at = sent
        self.nodes[self.node_id] = self.record
        logger.info("node registered", namespace=self.namespace, incarnation=self.incarnation)

    async def reregister(self) -> None:
        """Register again under a new incarnation after liveness was lost.

        The node takes the new incarnation only once it is registered: a lease naming an
        incarnation that is not (yet) live would be taken over by the next node to look.
        """
        incarnation = new_incarnation()
        entry = await self.nodes_kv.get(self.node_id, leader=True)
        sent = time.monotonic()
        # Whatever is there (an expiry marker, or our old value if a renewal we took
        # for failed did land), replace it on its revision.
        record = NodeRecord(self.node_id, incarnation, self.contexts, timestamp())
        self._revision = await self.nodes_kv.put_if(
            self.node_id, _encoder.encode(record), revision=entry.revision, ttl=self.ttl
        )
        self.incarnation = incarnation
        self._renewed_at = sent
        self.nodes[self.node_id] = self.record
        logger.warning("node registered again after losing liveness", incarnation=self.incarnation)

    async def renew(self) -> None:
        """Renew the liveness key; raises `LivenessLostError` if it expired or was replaced meanwhile."""
        sent = time.monotonic()
        try:
            self._revision = await self.nodes_kv.put_if(
                self.node_id, _encoder.encode(self.record), revision=self._revision, ttl=self.ttl
            )
        except KeyChangedError as e:
            raise LivenessLostError(
                f"liveness key of {self.node_id} in {self.namespace} changed (revision {e.revision})"
            ) from None
        except StoreError:
            if self.liveness_expired():
                raise LivenessLostError(f"could not renew liveness of {self.node_id} within {self.ttl}s") from None
            raise
        self._renewed_at = sent

    def liveness_fresh(self) -> bool:
        """Whether the liveness key was renewed recently enough that it cannot have expired yet."""
        return time.monotonic() - self._renewed_at < self.ttl * 0.75

    def liveness_expired(self) -> bool:
        return time.monotonic() - self._renewed_at >= self.ttl

    async def deregister(self) -> None:
        """Remove this node's liveness key (a graceful leave)."""
        if self.lost:
            return
        self.leaving = True
        try:
            await self.nodes_kv.delete_if(self.node_id, revision=self._revision)
        except (KeyChangedError, StoreError) as e:
            logger.warning("liveness key not removed", error=repr(e))
        self.nodes.pop(self.node_id, None)

    def is_me(self, owner: Owner) -> bool:
        return owner.node == self.node_id and owner.incarnation == self.incarnation

    def mine(self) -> dict[str, Owner]:
        return {key: owner for key, owner in self.leases.items() if self.is_me(owner)}

    def orphans(self, context: str) -> list[str]:
        """The context's shards whose lease names a node that is not live, as last seen."""
        return [
            key
            for key, owner in self.leases.items()
            if (shard := shard_of_lease_key(key)) is not None and shard[0] == context and not self.is_live(owner)
        ]

    def is_live(self, owner: Owner) -> bool:
        if owner.node == self.node_id:
            return owner.incarnation == self.incarnation
        record = self.nodes.get(owner.node)
        return record is not None and record.incarnation == owner.incarnation

    async def confirm_live(self, owner: Owner, *, leader: bool = False) -> bool:
        """Whether the owner's liveness key is present with its incarnation, read from the server
        (from the bucket's leader with `leader`: what a takeover must rest on, never a lagging replica)."""
        if owner.node == self.node_id:
            return owner.incarnation == self.incarnation
        entry = await self.nodes_kv.get(owner.node, leader=leader)
        if entry.value is None:
            return False
        return node_decoder.decode(entry.value).incarnation == owner.incarnation

    async def presume_dead(self, node: str, *, delay: float) -> bool:
        """Whether `node` (as last seen) is gone, found without waiting out its liveness TTL.

        The evidence: nobody listens on its inbox, at two probes at least `delay` apart, and its
        heartbeat was missed (no renewal of its liveness key seen for a renewal interval, TTL/4, and
        `delay` more). A node killed or cut off loses its connection, and the server its
        subscriptions, at once; a node that is paused or busy still has them, so its probe times out
        and its TTL decides; a node whose connection moves to another server renews on time. The
        node's liveness key is then deleted at the revision read from the bucket's leader: a node
        that renewed meanwhile keeps it. A node presumed dead wrongly (its connection came back) sees its key deleted in
        its watch and steps down, as after an expiry. Safety does not rest on this: the fences do.
        """
        if node == self.node_id:
            return False
        pending = self._suspected.get(node)
        if pending is None or pending.done():
            pending = self._suspected[node] = asyncio.ensure_future(self._presume_dead(node, delay))
            pending.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved, always
        return await asyncio.shield(pending)

    async def _presume_dead(self, node: str, delay: float) -> bool:
        record = self.nodes.get(node)
        if record is None:
            return True
        inbox = Inbox.of(self._nc)
        for probe in range(2):
            if probe:
                missed = self._renewed.get(node, 0.0) + self.ttl / 4 + delay  # when its heartbeat is missed
                await asyncio.sleep(max(delay, missed - time.monotonic()))
                if self.nodes.get(node) is not record or self._renewed.get(node, 0.0) + self.ttl / 4 > time.monotonic():
                    return False  # it renewed (or registered again) meanwhile
            try:
                await inbox.request(node_subject(self.namespace, node, PING), b"", timeout=max(delay, 0.5))
                return False
            except nats.errors.NoRespondersError:
                continue
            except nats.errors.TimeoutError:
                return False  # listening but not answering: paused or overloaded; its TTL decides
        try:
            entry = await self.nodes_kv.get(node, leader=True)
            if entry.value is not None and node_decoder.decode(entry.value).incarnation == record.incarnation:
                await self.nodes_kv.delete_if(node, revision=entry.revision)
        except KeyChangedError:
            return False  # it renewed meanwhile: alive after all
        except StoreError as e:
            logger.warning("could not presume a node dead", suspect=node, error=repr(e))
            return False
        if self.nodes.get(node) is record:
            del self.nodes[node]
            self.on_gone(node)
        logger.warning("node presumed dead: nobody listens on its inbox", suspect=node)
        return True

    def live_nodes(self, context: str) -> list[NodeRecord]:
        """The live nodes that host `context`, this one included."""
        return [r for r in self.nodes.values() if context in r.contexts]

    # -- watches ---------------------------------------------------------------------------

    async def watch_nodes(self) -> None:
        """Keep `nodes` current from a watch of the nodes bucket; restarts the watch if it fails."""
        await self._watch(self.nodes_kv, self.nodes_ready, lambda entry: self._note_node(entry, self.nodes))

    async def watch_leases(self) -> None:
        """Keep `leases` current from a watch of the leases bucket; restarts the watch if it fails."""
        await self._watch(self.leases_kv, self.leases_ready, self._note)

    async def _watch(self, bucket: KVBucket, ready: asyncio.Event, note: Callable[[Entry], object]) -> None:
        failures = 0
        while True:
            try:
                async for entry in bucket.watch(ready):
                    note(entry)
                    self.changed.set()
            except Exception as e:
                logger.warning("watch failed; watching again", bucket=bucket.name, error=repr(e))
                failures = 0 if ready.is_set() else failures + 1
                if failures >= WATCH_ATTEMPTS and not self._unwatchable.done():
                    self._unwatchable.set_result(f"{bucket.name} could not be watched ({e!r}, {failures} times)")
                await asyncio.sleep(0.5)

    async def wait_ready(self) -> None:
        """Until both watches have delivered what existed when they started (however long that takes);
        `RadixError` once one of them failed `WATCH_ATTEMPTS` times in a row before that, saying what to
        check."""
        ready = asyncio.ensure_future(asyncio.gather(self.nodes_ready.wait(), self.leases_ready.wait()))
        waiting: list[asyncio.Future[Any]] = [ready, self._unwatchable]
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)  # retrieved: no "never retrieved" at its collection
        if not (self.nodes_ready.is_set() and self.leases_ready.is_set()):
            raise RadixError(
                f"{self._unwatchable.result()}: check that the node's NATS user may create consumers on it "
                "($JS.API.CONSUMER.CREATE.KV_...; `radix permissions` lists what a node needs)"
            )

    def _note_node(self, entry: Entry, nodes: dict[str, NodeRecord]) -> None:
        if entry.value is None:
            if entry.key == self.node_id and entry.revision > self._revision and not self.leaving:
                self._renewed_at = -float(self.ttl)  # not fresh: actors renew (and fail) before they act
                self.on_evicted()
                return
            if nodes.pop(entry.key, None) is not None:
                logger.info("node left", left=entry.key)
                self.on_gone(entry.key)
            return
        record = node_decoder.decode(entry.value)
        if entry.key == self.node_id and record.incarnation != self.incarnation:
            return  # our own former incarnation
        self._renewed[entry.key] = time.monotonic()
        previous = nodes.get(entry.key)
        if previous is None:
            logger.info("node joined", joined=entry.key)
        nodes[entry.key] = record
        if previous is not None and previous.incarnation != record.incarnation:
            self.on_gone(entry.key)  # its former incarnation is gone: its shards are to take over

    def _note(self, entry: Entry) -> Owner | None:
        """Update the cache from an entry; the owner it names, if any. Only shard and processor leases are
        cached: the shard counts' records, and any older per-aggregate lease, are not leases of this version."""
        if not is_lease_key(entry.key):
            return None
        if entry.value is None:
            current = self.leases.get(entry.key)
            if current is not None and current.revision <= entry.revision:
                self._forget(entry.key)
            return None
        owner = _owner(entry)
        current = self.leases.get(entry.key)
        if current is None or current.revision <= entry.revision:
            self._hold(entry.key, owner)
        return owner

    def _hold(self, key: str, owner: Owner) -> None:
        self._forget(key)
        self.leases[key] = owner
        self._tally[(key.partition(".")[0], owner.node, owner.incarnation)] += 1

    def _forget(self, key: str) -> None:
        owner = self.leases.pop(key, None)
        if owner is not None:
            tally = (key.partition(".")[0], owner.node, owner.incarnation)
            self._tally[tally] -= 1
            if not self._tally[tally]:
                del self._tally[tally]

    # -- shards and leases -----------------------------------------------------------------

    async def agree_shards(self, context: str, configured: int | None, default: int) -> int:
        """The context's shard count: recorded by the first node to start (its `configured` count, else
        `default`), read by every later one. `RadixError` if `configured` differs from the record."""
        key, first = shards_key(context), configured or default
        try:
            await self.leases_kv.create(key, _encoder.encode(ShardCount(first)))
            return first
        except KeyChangedError:
            pass
        entry = await self.leases_kv.get(key, leader=True)
        assert entry.value is not None  # created by another node, and never deleted but by hand
        recorded = shard_count_decoder.decode(entry.value).shards
        if configured is not None and configured != recorded:
            raise RadixError(
                f"{self.namespace}/{context} has {recorded} shards recorded, and this node is configured for "
                f"{configured}: leave the count unset (or {recorded}); to change it, stop every node of the "
                'context first (docs/placement.md, "Changing the shard count")'
            )
        return recorded

    def owner(self, key: str) -> Owner | None:
        """The cached owner of a lease (from the watch; may lag by a moment)."""
        return self.leases.get(key)

    async def read(self, key: str, *, leader: bool = False) -> Owner | None:
        """The owner of a lease, read from the server (from the bucket's leader with `leader`: never stale)."""
        entry = await self.leases_kv.get(key, leader=leader)
        if entry.value is None:
            self._forget(key)
            return None
        return self._note(entry)

    def _mine(self, *, fenced: bool = False) -> bytes:
        return _encoder.encode(LeaseValue(self.node_id, self.incarnation, fenced))

    async def acquire(self, key: str) -> Claim:
        """Claim the lease or take it over from a dead owner. Raises `LeaseHeldError`."""
        entry: Entry | None = None
        if key not in self.leases:
            try:
                revision = await self.leases_kv.put_if(key, self._mine(), revision=0)
                self._note(Entry(key, self._mine(), revision))
                return Claim(revision, taken_over=False)
            except KeyChangedError:
                pass
        for _ in range(5):
            entry = entry or await self.leases_kv.get(key)
            if entry.value is not None and self.is_me(_owner(entry)):
                # Taken without a write: a replica that lags may show a lease since taken from us.
                entry = await self.leases_kv.get(key, leader=True)
            owner = self._note(entry)
            try:
                if owner is None:
                    revision = await self.leases_kv.put_if(key, self._mine(), revision=entry.revision)
                elif self.is_me(owner):
                    return Claim(owner.revision, taken_over=owner.fenced)
                elif not await self.confirm_live(owner, leader=True):
                    revision = await self.leases_kv.put_if(key, self._mine(fenced=True), revision=entry.revision)
                    logger.info("lease taken over", lease=key, previous=owner.node)
                else:
                    raise LeaseHeldError(key, node=owner.node, incarnation=owner.incarnation, revision=owner.revision)
            except KeyChangedError:
                entry = None
                continue
            self._note(Entry(key, self._mine(fenced=owner is not None), revision))
            return Claim(revision, taken_over=owner is not None)
        raise StoreUnavailableError(f"the lease {key} kept changing while claiming it; retry")

    async def transfer(self, key: str, epoch: int, to: NodeRecord, *, fenced: bool = False) -> int:
        """Hand the lease held at `epoch` to another node (still `fenced`, if it was); return the new revision."""
        value = _encoder.encode(LeaseValue(to.node, to.incarnation, fenced))
        revision = await self.leases_kv.put_if(key, value, revision=epoch)
        self._note(Entry(key, value, revision))
        return revision

    async def release(self, key: str, epoch: int) -> None:
        """Give the lease up, unless it changed since `epoch`."""
        try:
            await self.leases_kv.delete_if(key, revision=epoch)
            current = self.leases.get(key)
            if current is not None and current.revision == epoch:
                self._forget(key)
        except KeyChangedError:
            pass

    def counts(self, context: str) -> dict[str, int]:
        """Leases per live node hosting `context` (zero for nodes with none)."""
        return {r.node: self._tally[(context, r.node, r.incarnation)] for r in self.live_nodes(context)}
