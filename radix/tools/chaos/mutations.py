"""Deliberate bugs for a test build of `radix node`, to prove that the chaos checker catches each.

    python -m radix.cli.mutant skip-fence node --nats URL ...   (then the arguments of `radix node`)

Each mutation (named and described in `radix.tools.catalog.MUTATIONS`) breaks one guarantee on
purpose, and the chaos tests show that the matching invariant fails under the matching fault.
Never run one in production.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from radix import wire
from radix.errors import VersionConflictError
from radix.runtime.history import ActorHistory
from radix.runtime.leases import NodeLeases
from radix.runtime.membership import Membership
from radix.runtime.ports import LeaseHolder
from radix.store.commit import Commit, PreparedCommit, prepare_commit
from radix.store.jetstream import JetStreamEventStore
from radix.store.placement import KVPlacement
from radix.transport.publish import encode_headers
from radix.wire.names import Address

__all__ = ["PATCHES", "mutate"]


def _publish_without(*dropped: str) -> None:
    """Every commit written without the headers `dropped` (the fence among them, or not)."""

    def fenced(self: PreparedCommit, fence: int) -> bytes:
        headers = {**self.headers, wire.H_EXPECTED_LAST_SUBJECT_SEQ: str(fence)}
        return encode_headers({k: v for k, v in headers.items() if k not in dropped})

    PreparedCommit.fenced = fenced  # type: ignore[method-assign]  # the mutation replaces it on purpose


def _skip_fence() -> None:
    # Without its message id too: JetStream's deduplication would otherwise drop a zombie's late write
    # whenever its first command had been sent again (and written) to the new owner, hiding the bug.
    _publish_without(wire.H_EXPECTED_LAST_SUBJECT_SEQ, wire.H_MSG_ID)


def _ack_before_publish() -> None:
    original = JetStreamEventStore.append
    writing: dict[Address, asyncio.Task[Commit]] = {}

    async def append(self: JetStreamEventStore, address: Address, events: Sequence[Any], **kw: Any) -> Commit:
        previous = writing.get(address)
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        prepared = prepare_commit(
            address,
            events,
            expected_version=kw["expected_version"],
            command_id=kw["command_id"],
            correlation_id=kw.get("correlation_id"),
            issuer=kw.get("issuer"),
            max_payload=self._nc.max_payload,
            causes=kw.get("causes"),
        )

        async def later() -> Commit:
            await asyncio.sleep(0.5)
            return await original(self, address, events, **kw)

        writing[address] = asyncio.ensure_future(later())
        return Commit(address, 0, prepared.events, kw.get("writer"))

    JetStreamEventStore.append = append  # type: ignore[method-assign]  # the mutation replaces it on purpose


def _ignore_lease_loss() -> None:
    async def confirm_live(self: NodeLeases, holder: LeaseHolder) -> bool:
        return True

    async def holder(self: NodeLeases, holder: LeaseHolder) -> str | None:
        return None

    async def lost(self: Membership, namespace: str, placement: KVPlacement, error: Exception) -> None:
        with contextlib.suppress(Exception):
            await placement.reregister()  # come back, but keep serving every aggregate it had

    NodeLeases.confirm_live = confirm_live  # type: ignore[method-assign]  # the mutation replaces it on purpose
    NodeLeases.holder = holder  # type: ignore[method-assign]  # the mutation replaces it on purpose
    Membership._lost = lost  # type: ignore[method-assign]  # the mutation replaces it on purpose


def _apply_twice() -> None:
    async def refused(self: JetStreamEventStore, address: Address, expected_version: int, command_id: str) -> Commit:
        last = await self._last(address)
        raise VersionConflictError(str(address), expected=expected_version, actual=last.version if last else 0)

    def remember(self: ActorHistory, replies: Iterable[wire.Reply]) -> None:
        return None

    def note_applied(self: ActorHistory, commit: Commit) -> None:
        return None

    _publish_without(wire.H_MSG_ID)
    JetStreamEventStore._refused = refused  # type: ignore[method-assign]  # the mutation replaces it on purpose
    ActorHistory.remember = remember  # type: ignore[method-assign]  # the mutation replaces it on purpose
    ActorHistory.note_applied = note_applied  # type: ignore[method-assign]  # the mutation replaces it on purpose


#: How each mutation of `radix.tools.catalog.MUTATIONS` is applied.
PATCHES: dict[str, Callable[[], None]] = {
    "skip-fence": _skip_fence,
    "ack-before-publish": _ack_before_publish,
    "ignore-lease-loss": _ignore_lease_loss,
    "apply-twice": _apply_twice,
}


def mutate(name: str) -> None:
    """Apply one mutation to this process's runtime."""
    if name not in PATCHES:
        raise SystemExit(f"unknown mutation {name!r}; choose among {', '.join(PATCHES)}")
    PATCHES[name]()
