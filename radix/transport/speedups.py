"""nats-py's header parsing, with the same results, in less time.

nats-py parses every received message's header block with `Client._parse_header_lines`, which checks
each header name for white space one character at a time (a generator step per character). A history
of one-event commits is read as that many messages of a dozen headers each, so the check was a large
part of the read (docs/benchmarks.md). `install()` puts in a parse that
first asks whether a name is letters, digits and dashes (as every NATS and Radix header name is), and
only for another name makes nats-py's own check: the same dict for every block
(`tests/transport/test_speedups.py` compares them on generated blocks).
"""

from __future__ import annotations

from typing import Final

from nats.aio.client import Client as NATS

__all__ = ["install", "parse_header_lines"]

_CRLF: Final = b"\r\n"
_ORIGINAL: Final = NATS._parse_header_lines


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """What nats-py's `Client._parse_header_lines` returns for `raw` (a header block after its first line)."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if not key.replace("-", "").isalnum() and any(c.isspace() for c in key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def original_parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py's own parse, as it was before `install()`."""
    parsed: dict[str, str] = _ORIGINAL(raw)
    return parsed


def install() -> None:
    """Put `parse_header_lines` in place of nats-py's (once)."""
    NATS._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
