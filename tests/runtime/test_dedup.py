"""What an actor remembers of the commands it handled: the dedup window and the memory of refusals."""

from __future__ import annotations

import msgspec

from radix import wire
from radix.runtime.dedup import SNAPSHOT_IDS, Applied, DedupWindow, RefusalMemory, RefusedIds
from radix.store.commit import Commit
from radix.wire.names import Address

ADDRESS = Address("unit", "inventory", "InventoryItem", "w-1")
NOW = 1_000_000.0


def commit(n: int) -> Commit:
    """The commit of command `c-{n}`: version `n`, at position `10 + n`."""
    event = wire.RecordedEvent("ItemsCheckedIn", "1.0", n, msgspec.Raw(b"{}"), f"c-{n}")
    return Commit(ADDRESS, 10 + n, (event,))


def window_of(commands: range, *, at: float = NOW, keep_at_most: int = 300) -> DedupWindow:
    window = DedupWindow()
    for n in commands:
        window.note(commit(n), now=at, keep_for=60, keep_at_most=keep_at_most)
    return window


def test_the_window_keeps_the_newest_ids_within_its_bounds() -> None:
    """Applied ids are kept oldest first: at most `keep_at_most`, none older than `keep_for` seconds."""
    window = window_of(range(1, 401))
    assert list(window) == [f"c-{n}" for n in range(101, 401)]  # the newest 300
    assert window["c-400"] == Applied(position=410, version=400, at=NOW)
    aged = DedupWindow(
        (c, Applied(e.position, e.version, NOW - 61 if e.version <= 350 else e.at)) for c, e in window.items()
    )
    aged.note(commit(401), now=NOW, keep_for=60, keep_at_most=300)
    assert list(aged) == [f"c-{n}" for n in range(351, 402)]  # past keep_for: forgotten


def test_a_snapshot_carries_the_latest_ids_and_points_back_to_the_rest() -> None:
    """A snapshot carries the newest `SNAPSHOT_IDS` ids of the window and the position of its oldest id's
    commit; when the window fits, it points nowhere."""
    carried, window_from = window_of(range(1, 401)).latest(now=NOW, keep_for=60)
    assert [c for c, _, _ in carried] == [f"c-{n}" for n in range(401 - SNAPSHOT_IDS, 401)]
    assert carried[-1] == ("c-400", 410, 400)
    assert window_from == 10 + 101  # the oldest remembered id's commit
    carried, window_from = window_of(range(1, 51)).latest(now=NOW, keep_for=60)
    assert (len(carried), window_from) == (50, 0)
    assert window_of(range(1, 51)).latest(now=NOW + 61, keep_for=60) == ([], 0)  # all too old to carry
    restored = DedupWindow.carried(carried, NOW)
    assert restored == window_of(range(1, 51))


def test_a_read_after_a_version_starts_at_a_remembered_commit() -> None:
    """The position of the latest commit at or before a version; 0 (the start) if none is remembered."""
    window = window_of(range(5, 10))
    assert window.position_before(7) == 17
    assert window.position_before(100) == 19
    assert window.position_before(4) == 0


def refused(command_id: str, reason: str = "no") -> wire.Reply:
    return wire.Reply(status=wire.REJECTED, command_id=command_id, reason=reason)


def test_the_memory_of_refusals_keeps_the_latest_and_leaves_the_old_one_as_it_was() -> None:
    """Adding makes a new memory with the newest last, at most `keep`; the same id again moves to the end."""
    old = RefusalMemory().adding([refused("a"), refused("b"), refused("c")], keep=3)
    new = old.adding([refused("a", "again"), refused("d")], keep=3)
    assert list(new) == ["c", "a", "d"]
    assert new["a"].reason == "again"
    assert list(old) == ["a", "b", "c"]  # recording may fail: the old memory stays as it was
    assert isinstance(new, RefusalMemory)


def test_refused_ids_are_kept_within_the_window_and_answered_without_their_reason() -> None:
    refused = RefusedIds()
    for n in range(5):
        refusal = wire.Reply(status=wire.REJECTED, command_id=f"r-{n}", version=n, reason="no")
        refused.note([refusal], now=NOW + n, keep_for=60, keep_at_most=3)
    assert list(refused) == ["r-2", "r-3", "r-4"]
    refused.note([], now=NOW + 63, keep_for=60, keep_at_most=3)
    assert list(refused) == ["r-3", "r-4"]
    answer = refused.reply("r-4")
    assert (answer.status, answer.version, answer.command_id) == (wire.REJECTED, 4, "r-4")
    assert answer.reason is not None
    assert "refused before" in answer.reason
