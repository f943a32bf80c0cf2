"""Radix's KV layer on a real nats-server: reading a bucket's entries ends, whatever its watch does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from radix.errors import StoreUnavailableError
from radix.store.kv import Entry, KVBucket


async def test_reading_the_entries_ends_even_if_its_watch_loses_a_cancellation(
    nc: NATS, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11's `asyncio.wait_for` (under nats-py's requests) can lose a cancellation; a watch that lost
    one waited for its next entry for ever, and so did the read of the entries (a reader's stop hung on it).
    The read cancels again until the watch has ended."""
    bucket = await KVBucket(nc, f"radix_{namespace}_lossy").open()
    cancels = 0

    async def lossy_watch(ready: asyncio.Event | None = None) -> AsyncIterator[Entry]:
        nonlocal cancels
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise
        yield Entry("never", None, 0)  # an async generator, as the real watch is

    monkeypatch.setattr(bucket, "watch", lossy_watch)
    with pytest.raises(StoreUnavailableError, match=r"did not come within 0\.2s"):
        await asyncio.wait_for(bucket.entries(timeout=0.2), 10)
    assert cancels == 2
