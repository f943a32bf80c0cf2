"""Radix nodes in child processes, for tests of the real thing (and the demo, the bench and the fault suite)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from radix.errors import RadixError
from radix.store.placement import owner_of
from radix.testing.conditions import eventually
from radix.transport.inbox import Inbox
from radix.wire.names import STATUS, Address, default_placement_key, node_subject

__all__ = ["NodeExitedError", "NodeProcess", "lease_owners", "open_inboxes"]


class NodeExitedError(RadixError):
    """A node process a test waited on exited; the error holds the end of its log."""


async def open_inboxes(nc: NATS) -> None:
    """Open the connection's request inboxes (nats-py's and Radix's): they belong to the connection and
    outlive any node, so a test counting the tasks a node leaves behind opens them first."""
    await nc.jetstream().account_info()
    await Inbox.of(nc).listen()


class NodeProcess:
    """A `radix node` in a child process, for tests of the real thing: started, signalled and stopped by handle.

    Its output goes to `log_path`. `status()` asks the node itself over NATS.
    """

    def __init__(
        self,
        *,
        nats_url: str,
        namespace: str,
        context: str,
        node_id: str,
        log_dir: Path,
        extra: Sequence[str] = (),
        launcher: Sequence[str] = ("-m", "radix"),
    ) -> None:
        self.nats_url = nats_url
        self.namespace = namespace
        self.node_id = node_id
        self.log_path = log_dir / f"{node_id}.log"
        self.args = [
            sys.executable,
            *launcher,
            "node",
            "--nats",
            nats_url,
            "--namespace",
            namespace,
            "--context",
            context,
            "--node-id",
            node_id,
            "--log-json",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def several(
        cls,
        count: int,
        *,
        nats_url: str,
        namespace: str,
        context: str,
        log_dir: Path,
        prefix: str,
        extra: Sequence[str] = (),
    ) -> list[NodeProcess]:
        """`count` nodes named `{prefix}1`, `{prefix}2`, ..., not yet started."""
        return [
            cls(
                nats_url=nats_url,
                namespace=namespace,
                context=context,
                node_id=f"{prefix}{i}",
                log_dir=log_dir,
                extra=extra,
            )
            for i in range(1, count + 1)
        ]

    def start(self) -> NodeProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    async def status(self, nc: NATS, timeout: float = 1.0) -> dict[str, Any]:
        """The node's own account of itself (`radix.{ns}._node.{id}.status`)."""
        reply = await nc.request(node_subject(self.namespace, self.node_id, STATUS), b"", timeout=timeout)
        status: dict[str, Any] = msgspec.json.decode(reply.data)
        return status

    async def wait_running(self, nc: NATS, timeout: float = 20.0) -> None:
        """Wait until the node answers status requests as running."""

        async def running() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise NodeExitedError(
                    f"node {self.node_id} exited with {self.process.returncode}; the end of {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                return bool((await self.status(nc, timeout=0.5))["state"] == "running")
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                return False

        await eventually(running, timeout=timeout, what=f"node {self.node_id} running")

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the node's log (where an exit says why)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_records(self) -> list[dict[str, Any]]:
        """The node's log so far as structured records (it logs JSON lines); lines of other output are left out."""
        records: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(record, dict) and "event" in record:
                records.append(record)
        return records

    def drained(self) -> dict[str, Any] | None:
        """The summary the node logged when it finished draining (handoffs, pauses), if it did."""
        return next((r for r in self.log_records() if r["event"] == "drained"), None)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the process: SIGCONT (in case it is paused), SIGTERM, then SIGKILL after `timeout`. Idempotent."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


async def lease_owners(nc: NATS, addresses: Sequence[Address]) -> dict[str, str]:
    """Which node holds each aggregate's shard lease (default placement keys), read from the leases bucket.

    Keyed by aggregate id; aggregates live nowhere are left out.
    """
    owners: dict[str, str] = {}
    for address in addresses:
        placement_key = default_placement_key(address.aggregate_type, address.aggregate_id)
        _, owner = await owner_of(nc, address.namespace, address.context, placement_key)
        if owner is not None:
            owners[address.aggregate_id] = owner
    return owners
