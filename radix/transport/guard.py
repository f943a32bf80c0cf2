"""A guard around nats-py's handling of each message it receives.

nats-py's protocol parser hands every MSG/HMSG frame to `Client._process_msg`, which parses the header
block and decodes the subject. A frame it cannot read (a header block of exactly `NATS/1.0`: an
IndexError; a subject that is not UTF-8: a UnicodeDecodeError) raised out of the parser into the read
loop, which logged it and ended: the connection then heard nothing until the server's pings timed
out, seconds later, and every node on it lost its liveness. Any client that can publish to a subject
a node listens on could do that.

`install()` wraps `Client._process_msg` so that such a frame is dropped and counted (`dropped`), and
the read loop goes on: the parser has consumed the frame before handing it on, so nothing else is
lost. It is installed once, when Radix's transport is imported, and leaves every frame nats-py can
read as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.aio.client import Client as NATS

from radix.observability.logs import logger

__all__ = ["dropped", "install"]

_MARK: Final = "_radix_guarded"
_counts = {"dropped": 0}


def dropped() -> int:
    """How many received frames nats-py could not read, in this process."""
    return _counts["dropped"]


def install() -> None:
    """Wrap `nats.aio.client.Client._process_msg` (once)."""
    original: Callable[..., Awaitable[None]] = NATS._process_msg
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    async def guarded(self: NATS, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        try:
            await original(self, sid, subject, reply, data, headers)
        except Exception as e:
            _counts["dropped"] += 1
            logger.warning(
                "a message nats-py could not read was dropped", subject=repr(bytes(subject)[:120]), error=repr(e)
            )

    setattr(guarded, _MARK, True)
    NATS._process_msg = guarded  # type: ignore[method-assign]
