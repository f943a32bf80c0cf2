"""A guard around nats-py's handling of each message it receives.

nats-py's protocol parser hands every MSG/HMSG frame to `Client._process_msg`, which parses the header
block and decodes the subject. A frame it cannot read (a header block of exactly `NATS/1.0`: an
IndexError; a subject that is not UTF-8: a UnicodeDecodeError) raised out of the parser into the read
loop, which logged it and ended: the connection then heard nothing until the server's pings timed
out, seconds later, and every node on it lost its liveness. Any client that can publish to a subject
a node listens on could do that.

`install()` wraps `Client._process_msg` so that such a frame is dropped and counted (`dropped`), and
the read loop goes on: the parser has consumed the frame before handing it on, so nothing else is
lost.

A subject or reply subject holding a lone carriage return (`foo.a\rb`) is passed on by the server
as it is, but nats-py's control-line pattern splits it there: the frame is "malformed", and the
client drops its connection and reconnects. `install()` also wraps `Parser.parse`: on that protocol
error, a MSG/HMSG control line at the head of the buffer is read the way the server writes it
(arguments separated by single spaces, the byte counts last), and the parser is set to skip the
frame's payload as one for no subscription; what follows is parsed as before.

nats-py's HMSG pattern lets the white space between the header size and the total size span a line
end: an HMSG whose header block is digits (`HMSG s 1 1 1\r\n0\r\n`, from a raw client) is read with
the block's digits as its size, and the parser loses its place in the stream. `install()` puts in the
same pattern with that gap kept to one line (as the server writes it), so the frame is read as sent and
then dropped by the guard above.

It is installed once, when Radix's transport is imported, and leaves every frame nats-py can read
as it was.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.aio.client import Client as NATS
from nats.errors import ProtocolError
from nats.protocol import parser as protocol

from radix.observability.logs import logger

__all__ = ["dropped", "install"]

_MARK: Final = "_radix_guarded"
_counts = {"dropped": 0}


def dropped() -> int:
    """How many received frames nats-py could not read, in this process."""
    return _counts["dropped"]


#: nats-py's HMSG pattern, but for the gap before the total size, kept to one line.
_HMSG: Final = re.compile(b"\\AHMSG\\s+([^\\s]+)\\s+([^\\s]+)\\s+(([^\\s]+)[^\\S\r\n]+)?([\\d]+)[^\\S\r\n]+(\\d+)\r\n")


def install() -> None:
    """Wrap `nats.aio.client.Client._process_msg` and `nats.protocol.parser.Parser.parse`, and mend the HMSG
    pattern (once)."""
    original: Callable[..., Awaitable[None]] = NATS._process_msg
    if getattr(original, _MARK, False):
        return
    _guard_parser()
    protocol.HMSG_RE = _HMSG

    @functools.wraps(original)
    async def guarded(self: NATS, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        try:
            await original(self, sid, subject, reply, data, headers)
        except Exception as e:
            _dropped(bytes(subject), repr(e))

    setattr(guarded, _MARK, True)
    NATS._process_msg = guarded  # type: ignore[method-assign]


def _dropped(subject: bytes, error: str) -> None:
    """Count and log a frame dropped unread."""
    _counts["dropped"] += 1
    logger.warning("a message nats-py could not read was dropped", subject=repr(subject[:120]), error=error)


#: The sid of no subscription (nats-py numbers them from 1): a skipped frame is handed on as one for it.
_NO_SUBSCRIPTION: Final = 0


def _guard_parser() -> None:
    original: Callable[..., Awaitable[None]] = protocol.Parser.parse

    @functools.wraps(original)
    async def guarded(self: protocol.Parser, data: bytes = b"") -> None:
        try:
            await original(self, data)
        except ProtocolError:
            while _skip_unreadable_frame(self):
                try:
                    await original(self)
                    return
                except ProtocolError:
                    continue
            raise

    protocol.Parser.parse = guarded  # type: ignore[method-assign]


def _skip_unreadable_frame(parser: protocol.Parser) -> bool:
    """Set `parser` to skip the MSG/HMSG frame whose control line heads its buffer and which its pattern
    could not read; False if the buffer does not start with one (the protocol error stands)."""
    buf = parser.buf
    end = buf.find(b"\r\n")
    if parser.state != protocol.AWAITING_CONTROL_LINE or end < 0:
        return False
    args = bytes(buf[:end]).split(b" ")
    counts = args[-2:] if args[0] == b"HMSG" else args[-1:]
    if not all(a.isdigit() for a in counts):
        return False
    if args[0] == b"MSG" and len(args) in (4, 5):
        header_size, size = 0, int(args[-1])
    elif args[0] == b"HMSG" and len(args) in (5, 6) and int(args[-2]) <= int(args[-1]):
        header_size, size = int(args[-2]), int(args[-1])
    else:
        return False
    _dropped(args[1], "its control line")
    del buf[: end + 2]
    parser.msg_arg.update(subject=b"", sid=_NO_SUBSCRIPTION, reply=b"")
    parser.header_needed, parser.needed = header_size, size
    parser.state = protocol.AWAITING_MSG_PAYLOAD
    return True
