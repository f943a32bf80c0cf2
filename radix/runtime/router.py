"""Routing: deliver a command to its aggregate's live actor here, activate the aggregate here, or forward
the command to the node that owns it (docs/placement.md, "Routing").

A forward goes to the owner's inbox with the original subject, reply subject and headers, so the
owner answers the client directly. One that is not taken is retried after reading the lease and
the owner's liveness afresh; once the owner is gone, the aggregate's shard is taken over here. An
owner nobody listens for (killed, or cut off) is presumed dead at once rather than after its
liveness TTL (`KVPlacement.presume_dead`). A node that
receives a forward for an aggregate it does not own reads the lease before forwarding again, and
past `max_hops` it answers a retryable `error` rather than loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from radix import wire
from radix.domain import AggregateCodec
from radix.errors import StoreUnavailableError
from radix.observability.logs import bound, logger
from radix.runtime.actor import AggregateActor
from radix.runtime.actors import Actors
from radix.runtime.answers import Replies
from radix.runtime.config import PlacementConfig
from radix.runtime.hosting import Hosting
from radix.runtime.mailbox import Envelope, MailboxFullError
from radix.store.placement import KVPlacement
from radix.transport.inbox import Inbox
from radix.wire.control import NodeRecord
from radix.wire.names import FORWARD, Address, node_subject

__all__ = ["Router"]


class Router:
    """Where each command of one node goes."""

    def __init__(
        self,
        nc: NATS,
        *,
        hosting: Hosting,
        actors: Actors,
        placements: Mapping[str, KVPlacement],
        replies: Replies,
        config: PlacementConfig,
        target: Callable[[Address], NodeRecord | None],
        running: Callable[[], bool],
    ) -> None:
        self._nc = nc
        self._hosting = hosting
        self.actors = actors
        self._placements = placements
        self._replies = replies
        self._config = config
        self._target = target
        self._running = running

    async def route(self, address: Address, codec: AggregateCodec, envelope: Envelope) -> None:
        """Deliver locally, activate (claiming the lease), or forward to the owner."""
        actor = self.actors.get(address)
        if actor is not None:
            self._deliver(actor, envelope)
            return
        placement = self._placements[address.namespace]
        key = self._hosting.lease_key(address)
        owner = placement.owner(key)
        if owner is not None and not placement.is_me(owner) and placement.is_live(owner):
            if envelope.hops > 0:
                # Forwarded here, yet the cache says another node owns it: the cache may be
                # stale, so read the lease before forwarding again (no forwarding loops).
                try:
                    owner = await placement.read(key)
                except StoreUnavailableError as e:
                    await self._replies.fail(envelope, address, f"ownership of {address} could not be read: {e}; retry")
                    return
            if owner is not None and not placement.is_me(owner) and placement.is_live(owner):
                self.forward(address, envelope, owner.node)
                return
        if not self._running():
            target = self._target(address)
            if target is None:
                await self._replies.fail(
                    envelope, address, "this node is shutting down and no other node is live; retry"
                )
            else:
                self.forward(address, envelope, target.node)
            return
        self._deliver(self.actors.activate(address), envelope)

    def _deliver(self, actor: AggregateActor, envelope: Envelope) -> None:
        try:
            actor.post(envelope)
        except MailboxFullError:
            queued = self.actors.ports.settings.mailbox_size
            reason = f"{actor.address} has {queued} commands queued; retry later"
            self.actors.spawn(self._replies.fail(envelope, actor.address, reason))

    async def reroute(self, actor: AggregateActor, leftovers: list[Envelope]) -> None:
        """Hand on what an ended actor still held: to the node it handed its aggregate to, else afresh."""
        for envelope in leftovers:
            if actor.hand_to:
                self.forward(actor.address, envelope, actor.hand_to)
            else:
                await self.route(actor.address, actor.codec, envelope)

    def forward(self, address: Address, envelope: Envelope, node: str) -> None:
        """Hand a command to `node`, the owner of its aggregate, in a task of its own."""
        self.actors.spawn(self._forward(address, envelope, node))

    async def _forward(self, address: Address, envelope: Envelope, node: str) -> None:
        """Hand a command to the node that owns its aggregate; re-resolve and retry if that node is gone."""
        placement = self._placements[address.namespace]
        key = self._hosting.lease_key(address)
        hops = envelope.hops + 1
        if hops > self._config.max_hops:
            await self._replies.fail(envelope, address, f"ownership of {address} is moving; retry")
            return
        headers = {
            **envelope.headers,
            wire.H_SUBJECT: envelope.subject,
            wire.H_HOPS: str(hops),
            wire.H_REPLY_TO: envelope.reply_to or "",
        }
        config = self._config
        deadline = time.monotonic() + config.liveness_ttl + 2 * config.forward_timeout
        delay = 0.02
        with bound(command_id=envelope.command_id):
            while True:
                gone = False
                try:
                    await Inbox.of(self._nc).request(
                        node_subject(address.namespace, node, FORWARD),
                        envelope.payload,
                        headers=headers,
                        timeout=config.forward_timeout,
                    )
                    return
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                    if time.monotonic() > deadline:
                        reason = f"the owner of {address} ({node}) does not answer; retry"
                        await self._replies.fail(envelope, address, reason)
                        return
                    logger.info("forward not taken; resolving the owner again", to=node, error=type(e).__name__)
                    gone = isinstance(e, nats.errors.NoRespondersError) and await placement.presume_dead(
                        node, delay=config.suspect_delay
                    )
                if not gone:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                try:
                    owner = await placement.read(key)
                    live = owner is not None and await placement.confirm_live(owner)
                except StoreUnavailableError:
                    continue
                if owner is not None and live and not placement.is_me(owner):
                    node = owner.node
                    continue
                if self._running():  # unowned, ours, or its owner is gone: take it here
                    await self.route(
                        address, self._hosting.codec(address), msgspec.structs.replace(envelope, hops=hops)
                    )
                    return
