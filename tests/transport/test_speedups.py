"""Radix's header parsing gives what nats-py's own gives, for any header block."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from radix.transport.speedups import original_parse_header_lines, parse_header_lines

_names = st.one_of(
    st.sampled_from(["Nats-Sequence", "Radix-Command-Id", "Status", "X_y", "a b", "\x1cA", "", " pad ", "tab\tin"]),
    st.text(max_size=12),
)
_lines = st.one_of(
    st.builds(lambda n, v: f"{n}:{v}".encode("utf-8", "surrogatepass"), _names, st.text(max_size=12)),
    st.binary(max_size=24),
)


@given(st.lists(_lines, max_size=8), st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_a_header_block_parses_as_nats_py_parses_it(lines: list[bytes], separator: bytes) -> None:
    raw = separator.join(lines) + b"\r\n\r\n"
    assert parse_header_lines(raw) == original_parse_header_lines(raw)


def test_the_headers_of_a_stored_message_parse_as_nats_py_parses_them() -> None:
    raw = b"Nats-Stream: radix_s_events\r\nNats-Sequence: 42\r\nRadix-Command-Id: c-1\r\nx y: z\r\nbad\r\n\r\n"
    assert parse_header_lines(raw) == original_parse_header_lines(raw)
    assert parse_header_lines(raw) == {
        "Nats-Stream": "radix_s_events",
        "Nats-Sequence": "42",
        "Radix-Command-Id": "c-1",
    }
