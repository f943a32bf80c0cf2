"""What an actor remembers of the commands it handled, to answer one sent again with its first outcome.

- `DedupWindow`: every command id applied within the dedup window, as the position of its commit and
  the aggregate's version after it (a duplicate is answered by reading that commit back);
- `RefusalMemory`: the whole replies of the latest refused commands (rejected or conflicting), which
  the event stream cannot give again;
- `RefusedIds`: every command id refused within the dedup window, beyond those, as its status and
  version only (a copy of a refused command delivered late is refused again, not decided anew).

A command id sent again with another payload is not a retry: `command_digest` tells them apart (stored
on a command's first event, kept with a refused id) and `reused` is the answer it gets.

Both are dicts (a subclass adds no bytes: an actor keeps one of each, and a node a hundred thousand
actors), ordered oldest first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import msgspec

from radix import wire
from radix.store.commit import Commit

__all__ = [
    "SNAPSHOT_IDS",
    "Applied",
    "DedupWindow",
    "RefusalMemory",
    "Refused",
    "RefusedIds",
    "command_digest",
    "reused",
]

#: Command ids a snapshot carries at most; beyond them, activation reads the window's commits.
SNAPSHOT_IDS = 256


def command_digest(payload: bytes) -> str:
    """A digest of a command's payload (its tag and fields as sent): a retry sends the same bytes again."""
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def reused(first: wire.Reply, recorded: str | None, digest: str) -> wire.Reply:
    """`first` (the outcome of the command first sent with this id), unless the command it answered had
    another digest than `digest`: then an error saying the id was reused. Unknown (`None`): `first`."""
    if recorded is None or recorded == digest:
        return first
    version = "" if first.version is None else f" at version {first.version}"
    return wire.Reply(
        status=wire.ERROR,
        command_id=first.command_id,
        version=first.version,
        reason=(
            f"command id {first.command_id!r} was used before for another command (first outcome: "
            f"{first.status}{version}); this one is not applied: send it with a new command id"
        ),
    )


class Applied(msgspec.Struct, frozen=True, gc=False):
    """A command applied within the dedup window: the position of its commit, the aggregate's version
    after it, and when it was applied (or learnt).

    Not tracked by the garbage collector (it holds numbers only): an actor keeps one per command,
    thousands on a hot aggregate, and as tuples they were nearly all the objects each young-generation
    collection had to walk (10 ms pauses at 50,000)."""

    position: int
    version: int
    at: float


class DedupWindow(dict[str, Applied]):
    """The command ids applied within the window, oldest first."""

    __slots__ = ()

    @classmethod
    def carried(cls, ids: Iterable[tuple[str, int, int]], at: float) -> DedupWindow:
        """The window a snapshot carries: `(command_id, position, version)` learnt at `at`."""
        return cls((command_id, Applied(position, version, at)) for command_id, position, version in ids)

    def note(self, commit: Commit, *, now: float, keep_for: float, keep_at_most: int) -> None:
        """Remember the commit's command ids; forget those older than `keep_for` seconds, and the oldest
        beyond `keep_at_most`."""
        for recorded in commit.events:
            self[recorded.command_id] = Applied(commit.position, recorded.version, now)
        _forget_old(self, horizon=now - keep_for, keep_at_most=keep_at_most)

    def position_before(self, version: int) -> int:
        """A stream position no later than the commit holding event `version + 1`: that of a commit
        remembered to hold an event at or before `version`; 0 if none is. Without it, a read after a
        version scans the aggregate's history from its start."""
        for entry in reversed(self.values()):
            if entry.version <= version:
                return entry.position
        return 0

    def latest(self, *, now: float, keep_for: float) -> tuple[list[tuple[str, int, int]], int]:
        """The ids a snapshot carries (the latest `SNAPSHOT_IDS` within `keep_for` seconds, oldest first,
        as `(command_id, position, version)`) and, if the window holds more, the position of its oldest
        id's commit (the next activation reads them from there on); else 0. Reads the latest ids only:
        a hot aggregate remembers thousands."""
        horizon = now - keep_for
        latest: list[tuple[str, int, int]] = []
        for command_id, entry in reversed(self.items()):
            if entry.at < horizon:
                break
            if len(latest) == SNAPSHOT_IDS:
                oldest = next(e.position for e in self.values() if e.at >= horizon)
                return latest[::-1], oldest
            latest.append((command_id, entry.position, entry.version))
        return latest[::-1], 0


def _forget_old(entries: dict[str, Applied] | dict[str, Refused], *, horizon: float, keep_at_most: int) -> None:
    """Drop the entries (oldest first) from before `horizon`, and the oldest beyond `keep_at_most`. In one
    pass: `next(iter(entries))` per id dropped would step over every slot dropped before it, again and
    again."""
    excess = len(entries) - keep_at_most
    dropped: list[str] = []
    for command_id, entry in entries.items():
        if entry.at >= horizon and len(dropped) >= excess:
            break
        dropped.append(command_id)
    for command_id in dropped:
        del entries[command_id]


class RefusalMemory(dict[str, wire.Reply]):
    """The replies of the latest refused commands, by command id, oldest first."""

    __slots__ = ()

    def adding(self, replies: Iterable[wire.Reply], *, keep: int) -> RefusalMemory:
        """A new memory: this one with `replies` added as the newest, cut to the latest `keep`."""
        latest = RefusalMemory(self)
        for reply in replies:
            latest.pop(reply.command_id, None)
            latest[reply.command_id] = reply
        while len(latest) > keep:
            del latest[next(iter(latest))]
        return latest


class Refused(msgspec.Struct, frozen=True, gc=False):
    """A command refused within the dedup window: how (rejected, conflict), at which version, when, and
    its payload's digest (if known)."""

    status: str
    version: int | None
    at: float
    digest: str | None = None


class RefusedIds(dict[str, Refused]):
    """The command ids refused within the window, oldest first (in memory only: the refusal record keeps
    the latest whole replies for other nodes)."""

    __slots__ = ()

    def note(
        self,
        replies: Iterable[wire.Reply],
        *,
        now: float,
        keep_for: float,
        keep_at_most: int,
        digests: Mapping[str, str] | None = None,
    ) -> None:
        for reply in replies:
            command_id = reply.command_id
            self.pop(command_id, None)
            self[command_id] = Refused(reply.status, reply.version, now, digests.get(command_id) if digests else None)
        _forget_old(self, horizon=now - keep_for, keep_at_most=keep_at_most)

    def reply(self, command_id: str) -> wire.Reply:
        """The answer to a refused command sent again once its whole reply is no longer kept."""
        refused = self[command_id]
        return wire.Reply(
            status=refused.status,  # type: ignore[arg-type]  # a refusal's own status
            command_id=command_id,
            version=refused.version,
            reason="this command was refused before (its reason is no longer kept); send a new command to try again",
        )
