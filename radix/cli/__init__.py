"""The `radix` command line: run nodes, send commands, watch and steer a cluster, and run the tools.

Each command lives in a module of its own (`node`, `messages`, `cluster`, `tools`), imported only when
that command runs: `radix send` loads no bench and no fault suite.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

import uvloop

from radix.cli.common import load_context
from radix.cli.parser import parser
from radix.errors import RadixError
from radix.observability.logs import configure_logging

__all__ = ["load_context", "main"]

#: Each command: the module of `radix.cli` that runs it, and the function there.
_COMMANDS = {
    "demo": ("tools", "demo"),
    "bench": ("tools", "bench"),
    "chaos": ("tools", "chaos"),
    "server": ("server", "run"),
    "node": ("node", "run"),
    "send": ("messages", "send"),
    "get": ("messages", "get"),
    "tail": ("messages", "tail"),
    "schemas": ("schemas", "run"),
    "merge": ("merge", "run"),
    "permissions": ("permissions", "run"),
    "reaction": ("processing", "run"),
    "projection": ("processing", "run"),
    "status": ("cluster", "status"),
    "migrate": ("cluster", "migrate"),
    "drain": ("cluster", "drain"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `radix` command line; returns the exit status."""
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: `radix node --processes` passes it on
    module, name = _COMMANDS[args.command]
    try:
        run = getattr(importlib.import_module(f"radix.cli.{module}"), name)
        command = cast(Callable[..., Coroutine[Any, Any, int]], run)
        level = "warning" if args.command == "demo" else getattr(args, "log_level", "warning")
        configure_logging(json=True if getattr(args, "log_json", False) else None, level=level)
        return uvloop.run(command(args))
    except RadixError as e:
        print(f"radix: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # no command ends in a traceback; RADIX_DEBUG=1 shows it
        if os.environ.get("RADIX_DEBUG"):
            raise
        print(f"radix: {args.command} failed unexpectedly ({e!r}); RADIX_DEBUG=1 shows where", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
