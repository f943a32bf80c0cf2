"""A wire fuzzer: generated hostile requests against a real node on a real nats-server.

Random bytes, truncated and deeply nested JSON, wrong field types, unknown tags, commands of another
aggregate, NaN and huge numbers, strings with NUL and lone surrogates, payloads at and over the
node's limit, empty bodies, odd headers (expected versions `abc`, `-1`, `2**64`, other scripts'
digits; 10 KB command ids and issuers) and the same command id with another body. Every request must
get a Radix reply; the node must stay connected and live, store nothing malformed, and serve a
canary aggregate throughout.

CI runs `FUZZ_EXAMPLES` (150) inputs; `RADIX_FUZZ_EXAMPLES=10000 pytest tests/runtime/test_fuzz.py`
runs the long form. Hypothesis prints the failing input and its seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radix import Client, ConnectOptions, EmbeddedNats, IntakeConfig, Node, NodeConfig, wire
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.store import JetStreamEventStore
from radix.wire.names import Address
from tests.rawwire import send_raw_frames

FUZZ_EXAMPLES = int(os.environ.get("RADIX_FUZZ_EXAMPLES", "150"))
MAX_COMMAND = IntakeConfig().max_command_bytes  # the default, 256 KiB: deep nesting fits under it

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_tags = st.sampled_from(["CheckIn", "CreateItem", "Remove", "Poke", "Teleport", "", "checkin", "CheckIn\x00"])


@st.composite
def _command_like(draw: st.DrawFn) -> bytes:
    """A JSON object that looks like a command, with a tag and fields of any shape."""
    body: dict[str, Any] = {"type": draw(_tags)}
    body.update(draw(st.dictionaries(st.sampled_from(["count", "name", "extra", "type"]), _json, max_size=3)))
    try:
        return json.dumps(body, allow_nan=True, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    except (ValueError, UnicodeEncodeError):
        return b'{"type": "CheckIn", "count": NaN}'


#: Valid commands, so that some ids are decided and then sent again with other bodies.
_VALID = [b'{"type": "CreateItem", "name": "f"}', b'{"type": "CheckIn", "count": 2}', b'{"type": "Remove"}']
_payloads = st.one_of(
    st.binary(max_size=600),
    _command_like(),
    _json.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass")),
    st.integers(1, 100_000).map(lambda depth: b'{"type": "CheckIn", "count": ' + b"[" * depth + b"]" * depth + b"}"),
    st.integers(1, 100_000).map(lambda depth: b'{"x": ' + b"[" * depth + b"]" * depth + b"}"),
    st.sampled_from([b"", b"{", b'{"type":', b'{"type": "CheckIn", "count": 3', b"null", b"[]", b"1e999999"]),
    st.sampled_from(_VALID),
    st.integers(MAX_COMMAND - 40, MAX_COMMAND + 40).map(
        lambda n: b'{"type": "CreateItem", "name": "' + b"x" * n + b'"}'
    ),
)
_header_text = st.one_of(
    st.sampled_from(["abc", "-1", str(2**64), "\u00b2", "\u0661\u0662", "\uff11", "9" * 4301, "", " 3", "3 "]),
    st.integers(0, 50).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30),
    st.integers(1, 20_000).map(lambda n: "x" * n),
)
_headers = st.dictionaries(
    st.sampled_from([wire.H_COMMAND_ID, wire.H_EXPECTED_VERSION, wire.H_ISSUER, wire.H_CORRELATION_ID]),
    _header_text,
    max_size=4,
)
_targets = st.sampled_from(
    [
        "cmd.InventoryItem.f-1",
        "cmd.InventoryItem.f-2",
        "get.InventoryItem.f-1",
        "cmd.Warehouse.f-1",
        "cmd.InventoryItem.fresh",
    ]
)


class _Fuzzed:
    """A node on its own connection, and an attacker's connection, on one event loop of the test's own."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.namespace = url, namespace
        self.loop = asyncio.new_event_loop()
        self.node = Node(
            {namespace: [inventory]},
            nats=ConnectOptions(servers=[url]),
            config=NodeConfig(node_id="fuzzed"),
        )
        self.run(self.node.start())
        self.attacker = self.run(nats.connect(url))
        self.client = Client(self.attacker, inventory, namespace=namespace)
        self.run(self.client.send(CreateItem(name="canary"), aggregate_id="canary"))
        self.canary = 1
        self.incarnation = self.node.placement(namespace).incarnation  # a new one would mean liveness lost
        # The first payload and outcome of each (subject, command id) decided: the same id sent again with
        # another payload must not be applied.
        # (Within the node's dedup window, 120 s: one decided longer ago is forgotten, and decided anew.)
        self.decided: dict[tuple[str, str], tuple[bytes, str, float]] = {}
        self.reused = 0

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    async def attack(self, target: str, payload: bytes, headers: dict[str, str], again: int | None = None) -> None:
        """Send one request and check its answer, then that the canary is served. `again`: instead, send this
        payload as command `again-{again}` of aggregate f-2, decided first (if it is not yet) as a check-in."""
        subject = f"radix.{self.namespace}.inventory.{target}"
        if again is not None:
            subject, headers = (
                f"radix.{self.namespace}.inventory.cmd.InventoryItem.f-2",
                {wire.H_COMMAND_ID: f"again-{again}"},
            )
            if (subject, headers[wire.H_COMMAND_ID]) not in self.decided:
                await self.attack("cmd.InventoryItem.f-2", _VALID[1], headers)
        try:
            reply = await self.attacker.request(subject, payload, headers=headers or None, timeout=10)
        except nats.errors.MaxPayloadError:
            return  # nats-py will not send it: nothing reached the node
        body = msgspec.json.decode(reply.data)
        status = body.get("status")
        assert status in (wire.ACCEPTED, wire.REJECTED, wire.CONFLICT, wire.ERROR, wire.OK), body
        if ".cmd." in subject and headers.get(wire.H_COMMAND_ID):  # an empty id is none: the node makes one
            first = self.decided.get((subject, headers[wire.H_COMMAND_ID]))
            if first is not None and time.monotonic() - first[2] > 100:
                del self.decided[subject, headers[wire.H_COMMAND_ID]]
            elif first is not None and first[0] != payload:
                assert status == wire.ERROR, f"command id reused with another body was answered {body}"
                self.reused += 1
            elif first is not None and again is not None:
                assert status == first[1], f"a retry was answered {body}, first {first[1]}"
            elif first is None and status != wire.ERROR:
                self.decided[subject, headers[wire.H_COMMAND_ID]] = (payload, status, time.monotonic())
        self.canary += 1
        assert (await self.client.send(CheckIn(count=1), aggregate_id="canary", timeout=5)).version == self.canary

    async def stored_alright(self) -> None:
        """Every commit stored for the fuzzed aggregates reads back as a Radix commit."""
        async with JetStreamEventStore(self.attacker) as store:
            for aggregate in ("f-1", "f-2", "fresh", "canary"):
                for commit in await store.read(Address(self.namespace, "inventory", "InventoryItem", aggregate)):
                    for event in commit.events:
                        inventory.codec("InventoryItem").decode_event(event.type, event.schema, event.data)

    def unharmed(self) -> None:
        """The node is running on its first connection, never reconnected, and never lost its liveness."""
        assert self.node.status().state == "running"
        assert self.node.failure is None
        assert not self.node.nc.is_closed
        assert self.node.nc.stats["reconnects"] == 0
        assert self.node.placement(self.namespace).incarnation == self.incarnation

    def close(self) -> None:
        self.run(self.node.stop())
        self.run(self.attacker.close())
        self.loop.close()


@pytest.fixture
def fuzzed(nats_server: EmbeddedNats, namespace: str) -> Iterator[_Fuzzed]:
    target = _Fuzzed(nats_server.url, namespace)
    yield target
    target.close()


@pytest.mark.slow
def test_hostile_requests_are_all_answered_and_the_node_serves_on(fuzzed: _Fuzzed) -> None:
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(target=_targets, payload=_payloads, headers=_headers, again=st.none() | st.integers(0, 20))
    def attack(target: str, payload: bytes, headers: dict[str, str], again: int | None) -> None:
        fuzzed.run(fuzzed.attack(target, payload, headers, again))

    attack()
    assert fuzzed.reused > 0, "no command id was sent again with another body"
    fuzzed.run(fuzzed.stored_alright())
    fuzzed.unharmed()


_subject_bytes = st.binary(max_size=12).map(lambda b: b.replace(b" ", b"").replace(b"\n", b""))
_header_block = st.one_of(
    st.sampled_from([b"NATS/1.0\r\n", b"NATS/1.0\r\n\r\n", b"NATS/1.0 503\r\n\r\n", b"NATS/2.0\r\n\r\n", b"\r\n\r\n"]),
    st.lists(st.binary(max_size=30), max_size=4).map(lambda lines: b"NATS/1.0\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"),
    st.binary(max_size=40),
)


@st.composite
def _raw_frame(draw: st.DrawFn, namespace: str) -> bytes:
    """A PUB or HPUB frame to a node's command subject (its aggregate id, reply subject and header block
    any bytes but a space or a line feed, which would end the frame for the server), its counts true."""
    subject = f"radix.{namespace}.inventory.cmd.InventoryItem.".encode() + draw(_subject_bytes)
    reply = draw(st.sampled_from([b"", b"_INBOX.raw "]) | _subject_bytes.map(lambda b: b"_INBOX." + b + b" "))
    payload = draw(st.sampled_from(_VALID) | st.binary(max_size=40))
    if draw(st.booleans()):
        return b"PUB " + subject + b" " + reply + str(len(payload)).encode() + b"\r\n" + payload + b"\r\n"
    headers = draw(_header_block)
    counts = f"{len(headers)} {len(headers) + len(payload)}".encode()
    return b"HPUB " + subject + b" " + reply + counts + b"\r\n" + headers + payload + b"\r\n"


@pytest.mark.slow
def test_raw_frames_leave_the_node_connected_and_serving(fuzzed: _Fuzzed) -> None:
    """Frames nats-py would not send (subjects with control bytes and lone carriage returns, header blocks
    of any bytes), over a plain socket: the node's connection never drops or reconnects, and it serves the
    canary after each."""
    sent: list[bool] = []

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(frames=st.lists(_raw_frame(fuzzed.namespace), min_size=1, max_size=3))
    def attack(frames: list[bytes]) -> None:
        async def one() -> None:
            reconnects = fuzzed.node.nc.stats["reconnects"]
            sent.append(await send_raw_frames(fuzzed.url, *frames))
            fuzzed.canary += 1
            assert (await fuzzed.client.send(CheckIn(count=1), aggregate_id="canary", timeout=5)).version == (
                fuzzed.canary
            )
            assert fuzzed.node.nc.stats["reconnects"] == reconnects

        fuzzed.run(one())

    attack()
    assert any(sent), "the server took none of the frames"
    fuzzed.unharmed()


@pytest.mark.slow
def test_bursts_of_hostile_messages_with_and_without_reply_subjects(fuzzed: _Fuzzed) -> None:
    """Thousands at once, half of them with nowhere to answer: those with a reply subject are answered, the
    rest are dropped, and the node serves the canary throughout."""
    hostile = [b"", b"{", b"[" * 5000, b'{"type": "Teleport"}', b'{"type": "CheckIn", "count": "x"}', b"\xff" * 64]
    subject = f"radix.{fuzzed.namespace}.inventory.cmd.InventoryItem.f-1"

    async def burst() -> None:
        for n in range(2000):
            await fuzzed.attacker.publish(subject, hostile[n % len(hostile)])
        answers = await asyncio.gather(
            *(fuzzed.attacker.request(subject, hostile[n % len(hostile)], timeout=20) for n in range(1000))
        )
        assert all(msgspec.json.decode(a.data)["status"] == wire.ERROR for a in answers)
        fuzzed.canary += 1
        assert (await fuzzed.client.send(CheckIn(count=1), aggregate_id="canary", timeout=10)).version == fuzzed.canary

    fuzzed.run(burst())
    fuzzed.unharmed()
