"""The header names of the wire contract: Radix's own and the JetStream ones Radix sets (docs/protocol.md).

Every name here is public; `radix.wire` exports them all.
"""

from __future__ import annotations

from typing import Final

# Radix headers.
H_COMMAND_ID: Final = "Radix-Command-Id"
H_CORRELATION_ID: Final = "Radix-Correlation-Id"
H_ISSUER: Final = "Radix-Issuer"
#: The event a reaction's command was sent for: `{ctx}/{Type}/{id}@{version}`.
H_CAUSATION_ID: Final = "Radix-Causation-Id"
H_EXPECTED_VERSION: Final = "Radix-Expected-Version"
H_FIRST_VERSION: Final = "Radix-First-Version"
H_VERSION: Final = "Radix-Version"
H_STATUS: Final = "Radix-Status"
H_NODE: Final = "Radix-Node"
H_EPOCH: Final = "Radix-Epoch"
# Node-to-node forwarding.
H_SUBJECT: Final = "Radix-Subject"
H_REPLY_TO: Final = "Radix-Reply-To"
H_HOPS: Final = "Radix-Hops"
H_CONTENT_TYPE: Final = "Content-Type"
CONTENT_TYPE: Final = "application/json"

# NATS JetStream headers.
H_MSG_ID: Final = "Nats-Msg-Id"
H_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
H_TTL: Final = "Nats-TTL"


#: The most digits a whole-number header may have (a version or a hop count fits in 18).
MAX_DIGITS: Final = 18


def whole_number(raw: str) -> int | None:
    """The value of a whole-number header (`Radix-Expected-Version`, `Radix-Hops`): ASCII digits only, at
    most `MAX_DIGITS` of them; None if it is anything else (`str.isdigit` also takes superscripts and the
    digits of other scripts)."""
    if not raw or len(raw) > MAX_DIGITS or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)
