"""An event store in memory, for fast unit tests of domain logic.

It follows the JetStream store's rules exactly (the same contract tests run on
both), including positions per (namespace, context) stream and the duplicate
window keyed by command id; only durability differs.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from radix.domain import EventData
from radix.errors import VersionConflictError
from radix.names import Address
from radix.store._commit import Cause, Commit, Writer, prepare_commit

__all__ = ["InMemoryEventStore"]

DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default max_payload


class InMemoryEventStore:
    """An `EventStore` that keeps everything in this process."""

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._commits: dict[Address, list[Commit]] = defaultdict(list)
        self._by_command: dict[tuple[Address, str], Commit] = {}
        self._positions: dict[tuple[str, str], int] = defaultdict(int)

    async def append(
        self,
        address: Address,
        events: Sequence[EventData],
        *,
        expected_version: int,
        command_id: str,
        correlation_id: str | None = None,
        issuer: str | None = None,
        causes: Sequence[Cause] | None = None,
        writer: Writer | None = None,
    ) -> Commit:
        await asyncio.sleep(0)  # yield as a round trip would, so concurrent callers interleave
        prepared = prepare_commit(
            address,
            events,
            expected_version=expected_version,
            command_id=command_id,
            correlation_id=correlation_id,
            issuer=issuer,
            max_payload=self.max_payload,
            causes=causes,
            writer=writer,
        )
        commits = self._commits[address]
        last = commits[-1] if commits else None
        actual = last.version if last else 0
        if actual != expected_version:
            # As on JetStream, the version check comes before deduplication: a retry
            # is recognised here only if it made the last commit.
            if last is not None and last.command_id == command_id:
                return last
            raise VersionConflictError(str(address), expected=expected_version, actual=actual)
        original = self._by_command.get((address, command_id))
        if original is not None:
            return original
        stream = (address.namespace, address.context)
        self._positions[stream] += 1
        commit = Commit(address, self._positions[stream], prepared.events, writer)
        commits.append(commit)
        self._by_command[(address, command_id)] = commit
        return commit

    async def read(self, address: Address, *, after: int = 0, start: int = 0, leader: bool = False) -> list[Commit]:
        return [c.after(after) for c in self._commits.get(address, ()) if c.version > after and c.position >= start]

    async def version(self, address: Address) -> int:
        await asyncio.sleep(0)
        commits = self._commits.get(address)
        return commits[-1].version if commits else 0

    async def commit_at(self, address: Address, position: int) -> Commit | None:
        await asyncio.sleep(0)
        return next((c for c in self._commits.get(address, ()) if c.position == position), None)

    async def head(self, address: Address) -> int:
        await asyncio.sleep(0)
        commits = self._commits.get(address)
        return commits[-1].position if commits else 0
