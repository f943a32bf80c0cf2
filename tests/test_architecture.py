"""The package's shape: a pinned public surface, imports that point one way, a light domain, one error tree."""

from __future__ import annotations

import ast
import builtins
import importlib
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

import radix
from radix.errors import RadixError

PACKAGE = pathlib.Path(radix.__file__).parent

#: The parts of the package, lowest first. A module may import from its own part and from parts of a
#: lower rank; parts of one rank may not import each other. So: cli -> tools -> testing -> runtime ->
#: observability (metrics, micro) -> store, client -> transport -> examples -> domain -> wire -> errors, logs.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "observability.logs"),  # imported by every layer; import nothing of Radix themselves
    ("wire",),
    ("domain",),
    ("examples",),  # bounded contexts as a user writes them: on the domain alone
    ("transport",),
    ("store", "client"),
    ("observability",),
    ("runtime",),
    ("testing",),
    ("tools",),
    ("cli",),
    ("__init__", "__main__"),
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """The part a module `radix.x.y` belongs to."""
    if module in ("radix", "radix.__init__"):
        return "__init__"
    rest = module.removeprefix("radix.")
    return "observability.logs" if rest.startswith("observability.logs") else rest.split(".")[0]


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text())


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under `if TYPE_CHECKING:`: annotations, not imports at run time."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports(module: str, tree: ast.Module) -> Iterator[str]:
    """Every Radix module `module` imports at run time (lazy imports inside functions included)."""
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "radix")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "radix":
            if node.module == "radix":  # `from radix import wire`: a subpackage
                yield from (f"radix.{a.name}" for a in node.names)
            else:
                yield node.module


def violations(edges: list[tuple[str, str]]) -> list[str]:
    """The imports among `(importer, imported)` that point up, or across between parts of one rank."""
    found = []
    for source, target in edges:
        here, there = part_of(source), part_of(target)
        if here == there:
            continue
        if RANK[there] > RANK[here] or (RANK[there] == RANK[here]):
            found.append(f"{source} ({here}) imports {target} ({there})")
    return found


def test_imports_point_one_way() -> None:
    """No module imports a part above its own, and no two parts of one rank import each other (so no cycle)."""
    edges = [(module, target) for module, tree in modules() for target in imports(module, tree)]
    assert {part_of(m) for m, _ in modules()} <= set(RANK), "a part of the package has no rank in LAYERS"
    assert len(edges) > 100  # the walk sees the package's imports
    assert violations(edges) == []


def test_an_import_pointing_up_or_across_is_caught() -> None:
    """The direction check itself: upward and sideways imports are reported, downward ones are not."""
    assert violations([("radix.runtime.node", "radix.store.jetstream")]) == []
    assert violations([("radix.store.kv", "radix.runtime.node")]) == [
        "radix.store.kv (store) imports radix.runtime.node (runtime)"
    ]
    assert violations([("radix.client", "radix.store.memory")]) == [
        "radix.client (client) imports radix.store.memory (store)"
    ]
    assert violations([("radix.wire.names", "radix.observability.logs")]) == []
    assert len(violations([("radix.observability.logs", "radix.observability.metrics")])) == 1


def test_runtime_modules_stay_small() -> None:
    """Every module of the runtime has one concern, and reads in one sitting: about 400 lines at most."""
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "runtime").glob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 420} == {}


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_defining_a_context_loads_neither_nats_nor_prometheus() -> None:
    """What a user writes a context with imports the domain model only: no NATS client, no metrics client."""
    loaded = run_python(
        "import sys\n"
        "import radix.domain\n"
        "from radix import Aggregate, BoundedContext, Command, DomainError, Event\n"
        "import radix.examples.inventory, radix.examples.bank\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'nats', 'prometheus_client', 'asyncio'}))"
    )
    assert loaded == "[]"
    assert run_python("import sys, radix.runtime; print('nats' in sys.modules)") == "True"  # the check can fail


def test_sending_a_command_loads_no_tool() -> None:
    """`radix send` loads neither the bench nor the fault suite's harness."""
    loaded = run_python(
        "import sys\n"
        "import radix.cli, radix.cli.messages\n"
        "print(sorted(m for m in sys.modules if m.startswith('radix.tools.')))"
    )
    assert loaded == "['radix.tools.catalog', 'radix.tools.chaos', 'radix.tools.chaos.faults']"


def test_public_api_is_pinned() -> None:
    """The names a user imports from radix are exactly these, and each loads from the module it names."""
    assert radix.__all__ == [
        "Accepted",
        "ActorConfig",
        "Address",
        "Aggregate",
        "BoundedContext",
        "Client",
        "Command",
        "CommandConflictError",
        "CommandError",
        "CommandFailedError",
        "CommandLogConfig",
        "CommandRejectedError",
        "CommandTimeoutError",
        "Commit",
        "CommitTooLargeError",
        "ConfigError",
        "ConnectOptions",
        "CorruptCommitError",
        "DecodeError",
        "DefinitionError",
        "Delete",
        "DomainError",
        "EmbeddedCluster",
        "EmbeddedNats",
        "Event",
        "EventData",
        "EventStore",
        "InMemoryEventStore",
        "IntakeConfig",
        "InvalidArgumentError",
        "InvalidEventError",
        "InvalidNameError",
        "JetStreamEventStore",
        "KVView",
        "MetricsConfig",
        "NatsServerError",
        "Node",
        "NodeConfig",
        "PlacementConfig",
        "Put",
        "RadixError",
        "Record",
        "SQLiteView",
        "SchemaError",
        "Send",
        "StoreConfig",
        "StoreError",
        "StoreUnavailableError",
        "UnknownTypeError",
        "UnreadableEventError",
        "Update",
        "VersionConflictError",
        "Writer",
        "configure_logging",
        "projection",
        "reaction",
        "upcaster",
    ]
    assert sorted(radix._EXPORTS) == radix.__all__
    for name, module in radix._EXPORTS.items():
        assert getattr(radix, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = radix.Nope


#: Built-in exceptions Radix raises on purpose: an aggregate method left to the subclass, a name the
#: package does not have (a module's `__getattr__` must raise it), and the exit of the fault suite's
#: test build on an unknown mutation.
ALLOWED_BUILTINS = {"NotImplementedError", "AttributeError", "SystemExit"}


def test_everything_raised_is_a_radix_error() -> None:
    """Every exception class Radix defines derives from RadixError, and it raises no bare built-in error."""
    for module, tree in modules():
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        loaded = importlib.import_module(module) if names else None  # scripts (`python -m`) define none
        for name in names:
            cls = getattr(loaded, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                assert issubclass(cls, RadixError), f"{module}.{name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                raised = node.exc.func.id
                if isinstance(getattr(builtins, raised, None), type):
                    assert raised in ALLOWED_BUILTINS, f"{module}:{node.lineno} raises {raised}"
