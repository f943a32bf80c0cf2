"""The code in the README and the docs runs as written."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent


def test_readme_python_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Every python block in the README executes: the counter behaves as described, the client prints its result."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    counters = namespace["counters"]
    assert repr(counters) == "BoundedContext('counters', [Counter])"
    codec = counters.codec("Counter")  # type: ignore[attr-defined]
    command = codec.decode_command(b'{"type": "Add", "amount": 2}')
    events = codec.aggregate.decide(codec.aggregate.initial_state(), command)
    assert codec.aggregate.evolve(0, events[0]) == 2
    printed = capsys.readouterr().out
    assert "Accepted(" in printed
    assert "version=2" in printed


def test_quickstart_context_runs() -> None:
    """The quickstart's own context decides and evolves as its text says."""
    text = (ROOT / "docs" / "quickstart.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict[str, object] = {}
    exec(compile(block, "quickstart.md", "exec"), namespace)
    codec = namespace["shop"].codec("Cart")  # type: ignore[attr-defined]
    command = codec.decode_command(b'{"type": "AddItem", "sku": "A-1"}')
    (event,) = codec.aggregate.decide((), command)
    assert codec.aggregate.evolve((), event) == ("A-1",)


def test_the_testing_guide_runs() -> None:
    """Every python block of docs/testing.md runs as written, in order: the user's context, its plain
    calls, its scenarios, the in-memory runtime, the captured logs and the real node all hold."""
    text = (ROOT / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 6
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "testing.md", "exec"), namespace)
    assert repr(namespace["library"]) == "BoundedContext('library', [Book])"
