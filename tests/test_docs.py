"""The code in the README and the docs runs as written."""

from __future__ import annotations

import os
import pathlib
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from radix import BoundedContext

ROOT = pathlib.Path(__file__).parent.parent


def test_readme_python_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Every python block in the README executes: the counter behaves as described, the client prints what
    it sent and what it read."""
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
    assert "AggregateState(version=2, state=ItemState(name='widget', count=3))" in printed


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


def run_python_blocks(page: str, count: int) -> dict[str, object]:
    """Run every python block of a docs page, in order, in one namespace (there must be `count`)."""
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == count
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
    return namespace


def test_the_testing_guide_runs() -> None:
    """Every python block of docs/testing.md runs as written, in order: the user's context, its plain
    calls, its scenarios, the in-memory runtime and its successor, the captured logs and the real node all hold."""
    namespace = run_python_blocks("testing.md", 7)
    assert repr(namespace["library"]) == "BoundedContext('library', [Book])"


def test_the_read_side_guide_runs() -> None:
    """Every python block of docs/reactions-and-projections.md runs as written, in order: the context as
    radix/examples/restock.py declares it, its handlers tested by calling them, and a node running them
    on an embedded nats-server, the reaction's command and the view included."""
    namespace = run_python_blocks("reactions-and-projections.md", 3)
    from radix.examples import restock

    declared = namespace["inventory"]
    assert isinstance(declared, BoundedContext)
    for context in (declared, restock.inventory):
        assert [r.name for r in context.reactions] + [p.name for p in context.projections] == ["restock", "stock"]


#: How long each step of the quickstart may take, and what a command left running says once it is up.
STEP_TIMEOUT = 60
RUNNING = re.compile(r"radix: (nats-server running at nats://|node \S+ serving )")


def test_the_quickstart_runs_as_written(tmp_path: pathlib.Path) -> None:
    """Every shell command of docs/quickstart.md runs as written in a fresh directory, beside the `.venv` the
    README's install line makes: those marked `# terminal N` stay running (each is waited for until it
    says it is up), every other ends with status 0; the python block is saved where its comment says."""
    (tmp_path / ".venv").symlink_to(pathlib.Path(sys.executable).parent.parent)
    text = (ROOT / "docs" / "quickstart.md").read_text()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running: list[subprocess.Popen[str]] = []
    try:
        for kind, block in re.findall(r"```(sh|python)\n(.*?)```", text, flags=re.S):
            if kind == "python":
                name = block.splitlines()[0].removeprefix("# ").strip()
                (tmp_path / name).write_text(block)
                continue
            for line in block.strip().splitlines():
                command, _, comment = line.partition("  #")
                if comment.strip().startswith("terminal"):
                    running.append(start_and_wait(command.strip(), tmp_path, env))
                    continue
                done = subprocess.run(
                    shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT
                )
                assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert len(running) == 4  # the server and three nodes
    finally:
        for process in reversed(running):
            process.send_signal(signal.SIGTERM)
            process.wait(STEP_TIMEOUT)
    assert [p.returncode for p in running] == [0, 0, 0, 0]


def start_and_wait(command: str, cwd: pathlib.Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a command that runs for good, and wait until it says it is up (on its stderr, read by a thread
    of its own so that neither a silent command nor a full pipe can hold the test)."""
    process = subprocess.Popen(
        shlex.split(command), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in process.stderr or ():
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    deadline = time.monotonic() + STEP_TIMEOUT
    said: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            said.append(lines.get(timeout=min(left, 1.0)))
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if RUNNING.search(said[-1]):
            return process
    process.kill()
    process.wait()
    raise AssertionError(f"{command} did not say it is up (exit {process.returncode}):\n{''.join(said)}")
