"""A node's liveness in each namespace: the heartbeat that renews it, and what happens when it is lost.

A node whose renewal is refused (its liveness key expired, so its revision changed), or that
could not renew for a whole TTL, may have been presumed dead, and its aggregates taken over:
it steps down from every aggregate of the namespace (`on_lost`), registers again under a new
incarnation and routes afresh (docs/placement.md, "A node that comes back").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from radix.errors import KeyChangedError, LivenessLostError, StoreError
from radix.observability.logs import logged, logger
from radix.store.placement import KVPlacement

__all__ = ["Membership"]


class Membership:
    """Renews a node's liveness in each of its namespaces."""

    def __init__(
        self,
        placements: Mapping[str, KVPlacement],
        *,
        ttl: int,
        on_lost: Callable[[str], None],
        serving: Callable[[], bool],
        group: asyncio.TaskGroup,
    ) -> None:
        self._placements = placements
        self._group = group
        self._ttl = ttl
        self._on_lost = on_lost
        self._serving = serving
        self._renewing: dict[str, asyncio.Task[bool]] = {}

    async def heartbeat(self) -> None:
        """Renew every namespace's liveness four times a TTL (runs for good)."""
        interval = self._ttl / 4
        while True:
            await asyncio.sleep(interval)
            for namespace in self._placements:
                await self.renew(namespace)

    async def renew(self, namespace: str) -> bool:
        """Renew this node's liveness in a namespace; one renewal at a time, shared by all who ask."""
        pending = self._renewing.get(namespace)
        if pending is None or pending.done():
            pending = self._group.create_task(self._renew_now(namespace))
            self._renewing[namespace] = pending
        return await asyncio.shield(pending)

    async def _renew_now(self, namespace: str) -> bool:
        placement = self._placements[namespace]
        if placement.lost:
            return False  # lost while stopping: nothing more to renew
        try:
            await placement.renew()
            return True
        except LivenessLostError as e:
            await logged(self._lost(namespace, placement, e), "stepping down failed")
        except Exception as e:  # whatever the store says, the heartbeat goes on
            logger.warning("liveness not renewed; retrying", namespace=namespace, error=repr(e))
        return False

    async def _lost(self, namespace: str, placement: KVPlacement, error: LivenessLostError) -> None:
        # Others may own our aggregates now: step down from every one of this namespace,
        # register under a new incarnation, and route what they held afresh.
        logger.error("liveness lost: stepping down from every aggregate", namespace=namespace, error=str(error))
        self._on_lost(namespace)
        if not self._serving():
            placement.lost = True  # stopping anyway: do not come back
            return
        while self._serving():
            try:
                await placement.reregister()
                return
            except (StoreError, KeyChangedError) as e:
                logger.warning("could not register again; retrying", error=repr(e))
                await asyncio.sleep(placement.ttl / 4)
