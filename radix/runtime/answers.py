"""A node's answers: the reply to each command, its count in the metrics, and its entry in the command log.

Every outcome goes through here, from an actor (`answer`, the actors' `Answers` port) or from
intake and routing, which refuse bad or unroutable commands before any actor sees them
(`refuse`). The reply goes out first; the log entry is only buffered (`radix.store.commandlog`),
so the log is never between a command and its reply.
"""

from __future__ import annotations

import time
from collections import Counter

import msgspec
from nats.aio.client import Client as NATS

from radix import wire
from radix.errors import RadixError
from radix.observability.logs import logger
from radix.observability.metrics import Metrics
from radix.runtime.hosting import Hosting
from radix.runtime.mailbox import Envelope
from radix.store.commandlog import CommandLog
from radix.transport.publish import MessageTooLargeError, encode_headers, publish
from radix.wire.names import READS, Address, invalid_log_subject, log_subject, parse_command_subject

__all__ = ["BadCommand", "Replies", "entry_of"]


def entry_of(envelope: Envelope, reply: wire.Reply, *, node: str, duplicate: bool) -> wire.LogEntry:
    """The command-log entry of a command an actor answered (`duplicate`: its id was answered before)."""
    return wire.LogEntry(
        command_id=reply.command_id,
        type=envelope.type_name,
        status=reply.status,
        reason=reply.reason,
        issuer=envelope.issuer,
        correlation_id=envelope.correlation_id,
        expected_version=envelope.expected_version,
        version=reply.version,
        node=node,
        at=wire.timestamp(),
        aggregate=envelope.subject,
        duplicate=duplicate,
        causation_id=envelope.headers.get(wire.H_CAUSATION_ID),
    )


class BadCommand(RadixError):
    """A command refused before it reached an actor: malformed, unroutable, or for a full mailbox.

    `address` is None when the subject names no valid aggregate (it is logged on the context's
    `log._invalid` subject, if the context is hosted here).
    """

    def __init__(self, reason: str, *, command_id: str, type_name: str | None, address: Address | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.type_name = type_name
        self.address = address


class Replies:
    """Answers commands for one node, and records each outcome."""

    def __init__(
        self,
        nc: NATS,
        *,
        node_id: str,
        hosting: Hosting,
        command_log: CommandLog,
        metrics: Metrics,
        counts: Counter[str],
    ) -> None:
        self._nc = nc
        self._node_id = node_id
        self._hosting = hosting
        self._command_log = command_log
        self._metrics = metrics
        self._counts = counts  # replies sent, by status
        self._headers = {  # by status, encoded once
            status: encode_headers({wire.H_STATUS: status, wire.H_NODE: node_id})
            for status in (wire.ACCEPTED, wire.REJECTED, wire.CONFLICT, wire.ERROR, wire.OK)
        }

    def dropped(self, reply_to: str) -> None:
        """A command dropped unanswered (it asked to be answered on a protected subject): counted and logged."""
        self._counts["dropped"] += 1
        logger.warning("command dropped: its reply subject is Radix's or the server's", reply_to=reply_to[:200])

    async def answer(self, address: Address, envelope: Envelope, reply: wire.Reply, duplicate: bool) -> None:
        """Reply to a command an actor handled, count it, and log it (`duplicate`: an id answered again).

        A command accepted with events is logged by the commit that holds them (`wire.CommitBody.log`);
        every other outcome is written to the command-log stream."""
        await self._send(envelope.reply_to, reply)
        self._metrics.answered(
            address.namespace, address.context, reply.status, time.monotonic() - envelope.received, reply.reason
        )
        if duplicate or reply.status != wire.ACCEPTED or not reply.events:
            self._command_log.record(
                log_subject(address), entry_of(envelope, reply, node=self._node_id, duplicate=duplicate)
            )

    async def state(self, reply_to: str | None, reply: wire.StateReply) -> None:
        """Answer a read (reads are not counted as commands, nor logged on the command log)."""
        if reply_to:
            try:
                body = wire.reply_encoder.encode(reply)
                try:
                    await publish(self._nc, reply_to, body, headers=self._headers[reply.status])
                except MessageTooLargeError as e:
                    reason = f"the state is {e.size} bytes as shown, over the server's max_payload of {e.limit}: "
                    reason += "show less of it (the aggregate's `show`)"
                    error = wire.StateReply(status=wire.ERROR, reason=reason)
                    await publish(
                        self._nc, reply_to, wire.reply_encoder.encode(error), headers=self._headers[wire.ERROR]
                    )
            except Exception as e:
                logger.warning("reply not sent", error=repr(e))

    async def refuse(self, subject: str, headers: dict[str, str], reply_to: str | None, bad: BadCommand) -> None:
        """Answer a command that reached no actor with an `error`, count it and log it where it can be."""
        logger.info("bad command", subject=subject, reason=bad.reason, command_id=bad.command_id)
        parts = parse_command_subject(subject)
        if parts is not None and parts.kind == READS:
            await self.state(reply_to, wire.StateReply(status=wire.ERROR, reason=bad.reason))
            return
        reply = wire.Reply(status=wire.ERROR, command_id=bad.command_id, reason=bad.reason)
        await self._send(reply_to, reply)
        hosted = self._hosting.get(parts.namespace, parts.context) if parts is not None else None
        if hosted is not None:
            self._metrics.answered(hosted.namespace, hosted.context.name, wire.ERROR, None, bad.reason)
        if bad.address is not None:
            log_to = log_subject(bad.address)
        elif hosted is not None:
            log_to = invalid_log_subject(hosted.namespace, hosted.context.name)
        else:
            return
        entry = wire.LogEntry(
            command_id=reply.command_id,
            type=bad.type_name,
            status=reply.status,
            reason=reply.reason,
            issuer=headers.get(wire.H_ISSUER),
            correlation_id=headers.get(wire.H_CORRELATION_ID),
            expected_version=None,
            version=None,
            node=self._node_id,
            at=wire.timestamp(),
            aggregate=subject,
        )
        self._command_log.record(log_to, entry)

    async def fail(self, envelope: Envelope, address: Address, reason: str) -> None:
        """Answer a decoded command that cannot be delivered (a full mailbox, an owner that does not answer)."""
        bad = BadCommand(reason, command_id=envelope.command_id, type_name=envelope.type_name, address=address)
        await self.refuse(envelope.subject, envelope.headers, envelope.reply_to, bad)

    async def _send(self, reply_to: str | None, reply: wire.Reply) -> None:
        self._counts[reply.status] += 1
        if reply_to:
            try:
                try:
                    body = wire.reply_encoder.encode(reply)
                    await publish(self._nc, reply_to, body, headers=self._headers[reply.status])
                except MessageTooLargeError:  # its events make it too large: the outcome and version still go
                    body = wire.reply_encoder.encode(msgspec.structs.replace(reply, events=[], conflicts=[]))
                    await publish(self._nc, reply_to, body, headers=self._headers[reply.status])
            except Exception as e:
                logger.warning("reply not sent", error=repr(e))
