"""What operators see: structured logs (`logs`), counters and the Prometheus collector (`metrics`), and
NATS micro discovery (`micro`).

Only the logs are imported here: every layer logs, while metrics (prometheus_client) and micro
(nats.micro) are the runtime's, imported from their modules.
"""

from radix.observability.logs import (
    bind,
    bound,
    configure_logging,
    in_actor,
    logged,
    logger,
    merge_runtime_context,
    on_command,
)

__all__ = [
    "bind",
    "bound",
    "configure_logging",
    "in_actor",
    "logged",
    "logger",
    "merge_runtime_context",
    "on_command",
]
