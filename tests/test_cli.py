"""The command line, run as a user runs it: a separate process."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_to_a_verified_finish() -> None:
    """`radix demo` starts its own nats-server, races writers, verifies the histories and cleans up."""
    done = subprocess.run(
        [sys.executable, "-m", "radix", "demo", "--items", "4", "--commands", "60", "--writers", "6", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "seed 7" in done.stdout
    assert "verified:" in done.stdout
    assert "versions contiguous" in done.stdout


def test_help_lists_the_commands() -> None:
    """`radix --help` names every command."""
    done = subprocess.run(
        [sys.executable, "-m", "radix", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "demo" in done.stdout
