"""Event schemas: the shape of each event type version, and the rules that keep versions compatible.

Each event type version (context, type, major, minor) has the JSON Schema msgspec derives from
its class and a hash of its canonical form: references inlined, titles, descriptions and
examples left out, keys sorted. So a docstring or a renamed nested class changes nothing; a
field added, removed, retyped, given another default or made required does.

The rules, checked against the namespace's registry (`radix.store.schemas`) when a node starts
and by `radix schemas check`:
- a version once registered keeps its shape;
- a new minor is backward compatible with every other minor of its major: it only adds fields,
  each with a default; no field is removed, renamed, retyped, given another default or made
  required. Anything else needs a new major (and an upcaster from the old one).

Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

import msgspec

from radix.domain.context import BoundedContext
from radix.domain.model import Event, event_type_name
from radix.wire.names import schema_key

__all__ = ["EventSchema", "canonical", "differences", "incompatibilities", "problems", "schemas_of", "unreadable"]

#: Keywords that describe a schema without constraining what it accepts (a tagged union's
#: `discriminator` maps tags to class names; each member's tag is a `const` of its own).
_ANNOTATIONS: Final = frozenset({"title", "description", "examples", "$comment", "$defs", "discriminator"})
#: Keywords whose value is a map of names to schemas (not a schema itself).
_SCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "dependentSchemas"})
#: Keywords whose value is data, taken as it is.
_DATA: Final = frozenset({"default", "const", "enum"})
_MISSING: Final = object()


@dataclass(frozen=True)
class EventSchema:
    """One event type version's shape, as this code or the registry has it (with who registered it, when)."""

    context: str
    type_name: str
    major: int
    minor: int
    schema: dict[str, Any]
    """The JSON Schema msgspec derives from the event type."""
    node: str = ""
    at: str = ""
    hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", _hash(self.canonical))

    @cached_property
    def canonical(self) -> dict[str, Any]:
        """The schema with references inlined and annotations left out: what the hash is of."""
        return canonical(self.schema)

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def key(self) -> str:
        """Its key in the schemas bucket."""
        return schema_key(self.context, self.type_name, self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.context} {self.type_name} {self.version}"


def schema_of(context: str, event_type: type[Event]) -> EventSchema:
    """The schema of an event type's newest version."""
    major, minor = event_type.schema_version
    schema = msgspec.json.schema(event_type)
    return EventSchema(context, event_type_name(event_type), major, minor, schema)


def schemas_of(context: BoundedContext) -> list[EventSchema]:
    """The schema of every event type of a context, in its newest version, by type name."""
    return [schema_of(context.name, t) for t in context.event_types.values()]


# -- canonical form ---------------------------------------------------------------------------


def canonical(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every `$ref` to its `$defs` inlined (a recursive one kept as a reference) and the
    annotations left out."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def inline(node: Any, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, expanding) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name not in defs:
                return {"$ref": "#unknown"}
            if name in expanding:  # recursive: which enclosing type it is, by depth, not by name
                return {"$ref": f"#recursive/{expanding.index(name)}"}
            return inline(defs[name], (*expanding, name))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _ANNOTATIONS:
                continue
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: inline(sub, expanding) for name, sub in value.items()}
            elif key in _DATA:
                out[key] = value
            elif key == "required" and isinstance(value, list):
                out[key] = sorted(value)
            else:
                out[key] = inline(value, expanding)
        return out

    result: dict[str, Any] = inline(schema, ())
    return result


def _hash(canonical_form: dict[str, Any]) -> str:
    return hashlib.sha256(msgspec.json.encode(canonical_form, order="sorted")).hexdigest()[:16]


def _shown(value: Any) -> str:
    text = msgspec.json.encode(value, order="sorted").decode()
    return text if len(text) <= 240 else text[:237] + "..."


# -- differences and rules ------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """How one field (or the type's settings, `field` None) differs between two shapes."""

    kind: str  # added, removed, retyped, default, required, optional, settings
    field: str | None
    detail: str
    compatible: bool
    """Whether a newer minor may differ from an older one so (only: a field added with a default, or
    one no longer required)."""

    def __str__(self) -> str:
        return self.detail


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[Difference]:
    """How the canonical shape `new` differs from `old`, field by field, in order of field name. Fields of
    nested structs (also inside an optional or a list) are compared in turn, named by path (`item.note`,
    `items[].note`), so a field added with a default there is compatible too."""
    return _compare(old, new, "")


def _compare(old: dict[str, Any], new: dict[str, Any], at: str) -> list[Difference]:
    found: list[Difference] = []
    before, after = old.get("properties", {}), new.get("properties", {})
    required_before, required_after = set(old.get("required", ())), set(new.get("required", ()))
    for name in sorted(before.keys() | after.keys()):
        path = f"{at}{name}"
        if name not in after:
            found.append(Difference("removed", path, f"field {path!r} removed", False))
            continue
        if name not in before:
            if name in required_after:
                found.append(Difference("added", path, f"field {path!r} added without a default", False))
            else:
                found.append(Difference("added", path, f"field {path!r} added, with a default", True))
            continue
        was, now = before[name], after[name]
        was_type = {k: v for k, v in was.items() if k != "default"}
        now_type = {k: v for k, v in now.items() if k != "default"}
        if was_type != now_type:
            nested = _nested(was_type, now_type, path)
            if nested is None:
                detail = f"field {path!r} retyped from {_shown(was_type)} to {_shown(now_type)}"
                found.append(Difference("retyped", path, detail, False))
            else:
                found.extend(nested)
        was_default, now_default = was.get("default", _MISSING), now.get("default", _MISSING)
        if was_default is not _MISSING and now_default is not _MISSING and was_default != now_default:
            detail = f"field {path!r} default changed from {_shown(was_default)} to {_shown(now_default)}"
            found.append(Difference("default", path, detail, False))
        if name in required_after and name not in required_before:
            found.append(Difference("required", path, f"field {path!r} now required (it had a default)", False))
        elif name in required_before and name not in required_after:
            found.append(Difference("optional", path, f"field {path!r} now has a default", True))
    where = f" of {at.removesuffix('.')!r}" if at else ""
    for key in sorted((old.keys() | new.keys()) - {"properties", "required"}):
        if old.get(key, _MISSING) != new.get(key, _MISSING):
            detail = f"{key}{where} changed from {_shown(old.get(key))} to {_shown(new.get(key))}"
            found.append(Difference("settings", at.removesuffix(".") or None, detail, False))
    return found


def _nested(was: dict[str, Any], now: dict[str, Any], path: str) -> list[Difference] | None:
    """The differences inside two shapes of one field, if both are structs, optional structs (an `anyOf`
    of the same kinds) or lists of structs; None if they are of other kinds (the field is retyped)."""
    if "properties" in was and "properties" in now:
        return _compare(was, now, f"{path}.")
    if was.keys() == now.keys() == {"type", "items"} and was["type"] == now["type"] == "array":
        return _nested(was["items"], now["items"], f"{path}[]")
    options_was, options_now = was.get("anyOf"), now.get("anyOf")
    if isinstance(options_was, list) and isinstance(options_now, list) and len(options_was) == len(options_now):
        if was.keys() != now.keys() or any(was[k] != now[k] for k in was.keys() - {"anyOf"}):
            return None
        found: list[Difference] = []
        for a, b in zip(options_was, options_now, strict=True):
            if a == b:
                continue
            inner = _nested(a, b, path) if isinstance(a, dict) and isinstance(b, dict) else None
            if inner is None:
                return None
            found.extend(inner)
        return found
    return None


def incompatibilities(older: EventSchema, newer: EventSchema) -> list[Difference]:
    """What makes minor `newer` incompatible with minor `older` of the same major (none: compatible)."""
    return [d for d in differences(older.canonical, newer.canonical) if not d.compatible]


def problems(own: Iterable[EventSchema], registered: Sequence[EventSchema]) -> list[str]:
    """What stops `own` from being registered beside `registered`: a version registered with another shape,
    a minor incompatible with another minor of its major. Each names the field and the rule, and the next
    version free to take instead.

    Two shapes whose canonical forms differ in no field or setting (a refinement of the canonical form,
    or of the schema msgspec derives) are the same shape."""
    by_key = {r.key: r for r in registered}
    found: list[str] = []
    for schema in own:
        same = by_key.get(schema.key)
        if same is not None:
            changed = differences(same.canonical, schema.canonical) if same.hash != schema.hash else []
            if changed:
                found.append(_changed(schema, same, changed, _free(schema, registered)))
                continue
        for other in registered:  # every other minor, also when this one is registered (by a node racing another)
            if (other.context, other.type_name, other.major) != (schema.context, schema.type_name, schema.major):
                continue
            if other.key == schema.key:
                continue
            older, newer = sorted((schema, other), key=lambda s: s.minor)
            broken = incompatibilities(older, newer)
            if broken:
                found.append(_incompatible(schema, other, older, newer, broken, _free(schema, registered)))
    return found


def _free(schema: EventSchema, registered: Sequence[EventSchema]) -> tuple[str, str]:
    """The next minor of `schema`'s major and the next major of its type that nothing registered has."""
    same_type = [r for r in registered if (r.context, r.type_name) == (schema.context, schema.type_name)]
    minor = max([schema.minor, *(r.minor for r in same_type if r.major == schema.major)]) + 1
    major = max([schema.major, *(r.major for r in same_type)]) + 1
    return f"{schema.major}.{minor}", f"{major}.0"


def _by(schema: EventSchema) -> str:
    if not schema.node:
        return ""
    return f" (by {schema.node}" + (f" at {schema.at})" if schema.at else ")")


def _changed(schema: EventSchema, registered: EventSchema, changed: list[Difference], free: tuple[str, str]) -> str:
    what = "; ".join(str(d) for d in changed)
    return (
        f"{schema} is registered with another shape{_by(registered)}: {what}. A version keeps its shape once "
        f"registered: raise the version to {free[0]} if every change is a field added with a default, else "
        f"to {free[1]} (with an upcaster from {schema.major})"
    )


def _incompatible(
    schema: EventSchema,
    other: EventSchema,
    older: EventSchema,
    newer: EventSchema,
    broken: list[Difference],
    free: tuple[str, str],
) -> str:
    what = "; ".join(str(d) for d in broken)
    return (
        f"{schema} is not compatible with {other}{_by(other)}: from {older.version} to {newer.version}, {what}. "
        f"A minor may only add fields with defaults: raise the version to {free[1]} instead (with an upcaster "
        f"from {schema.major})"
    )


def unreadable(context: BoundedContext, registered: Iterable[EventSchema]) -> list[str]:
    """The registered versions of the context's events that this code cannot read (the events stored
    under them would make their aggregates unservable here), each with what to do."""
    found: list[str] = []
    for schema in registered:
        if schema.context != context.name:
            continue
        codec = next((c for c in context.codecs.values() if schema.type_name in c.event_types), None)
        if codec is None:
            found.append(
                f"{schema} is registered{_by(schema)}, but this code has no event type {schema.type_name}: "
                f"aggregates that hold such events could not be served by it"
            )
            continue
        problem = codec.unreadable(schema.type_name, schema.version)
        if problem is not None:
            found.append(f"{schema} is registered{_by(schema)}: {problem}")
    return found
