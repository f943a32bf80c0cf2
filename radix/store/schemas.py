"""The schema registry: each namespace's event schemas, and registering a context's at node start.

One KV bucket per namespace (`radix_{ns}_schemas`), one key per event type version
(`{ctx}.{Type}.{major}.{minor}`), written once with a create and never changed. Its value
(`SchemaRecord`, JSON) holds the JSON Schema msgspec derives from the event type, the hash of its
canonical form (`radix.domain.schemas`), and which node registered it, when.

A node registers its contexts' schemas before it joins (`register`): a version registered with
another shape, or a minor incompatible with another minor of its major, stops it from starting
with a `SchemaError` that names each field and rule. So every event a node writes is of a version
registered with exactly its shape, and every node of the namespace agrees on what each means.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from typing import Any, Final

import msgspec
from nats.aio.client import Client as NATS

from radix import wire
from radix.domain import BoundedContext
from radix.domain.schemas import EventSchema, problems, schemas_of
from radix.errors import KeyChangedError, SchemaError
from radix.observability.logs import logger
from radix.store.kv import KVBucket, NamespaceBuckets
from radix.store.ports import SchemaRegistry
from radix.wire.names import schemas_bucket

__all__ = [
    "KVSchemaRegistry",
    "SchemaRecord",
    "decode_schema",
    "encode_schema",
    "register",
    "registered_as",
    "selected",
]


class SchemaRecord(msgspec.Struct, frozen=True):
    """An event type version as the registry stores it."""

    context: str
    type: str
    major: int
    minor: int
    schema: dict[str, Any]
    hash: str
    node: str = ""
    at: str = ""


_encoder: Final = msgspec.json.Encoder(order="sorted")
_decoder: Final = msgspec.json.Decoder(SchemaRecord)


def encode_schema(schema: EventSchema) -> bytes:
    record = SchemaRecord(
        schema.context, schema.type_name, schema.major, schema.minor, schema.schema, schema.hash, schema.node, schema.at
    )
    return _encoder.encode(record)


def decode_schema(data: bytes) -> EventSchema | None:
    """A stored schema, or None if the value is not one (written by something else than Radix)."""
    try:
        r = _decoder.decode(data)
    except msgspec.DecodeError:
        return None
    # The hash is of the canonical form as this code computes it, not as the registering node did: a
    # Radix upgrade that refines the canonical form must not make an unchanged node disagree.
    return EventSchema(r.context, r.type, r.major, r.minor, r.schema, node=r.node, at=r.at)


def selected(values: Iterable[bytes], context: str | None) -> list[EventSchema]:
    """The schemas among stored values (of one context, or all), in order of context, type and version."""
    found = (decode_schema(v) for v in values)
    return sorted(
        (s for s in found if s is not None and (context is None or s.context == context)),
        key=lambda s: (s.context, s.type_name, s.major, s.minor),
    )


def registered_as(bucket: str, key: str, value: bytes | None) -> EventSchema:
    """What a key of the registry holds, found there when registering; `SchemaError` if it is not a schema."""
    registered = decode_schema(value) if value is not None else None
    if registered is None:
        raise SchemaError(
            f"{key} in {bucket} holds something that is not a Radix schema: remove it with `nats kv del`", [key]
        )
    return registered


class KVSchemaRegistry:
    """A `SchemaRegistry` on JetStream KV: one bucket per namespace, created on first use."""

    def __init__(self, nc: NATS, *, replicas: int = 1, timeout: float = 5.0) -> None:
        self._buckets = NamespaceBuckets(nc, schemas_bucket, replicas=replicas, timeout=timeout)
        self._timeout = timeout

    async def bucket(self, namespace: str) -> KVBucket:
        return await self._buckets.get(namespace)

    async def schemas(self, namespace: str, context: str | None = None) -> list[EventSchema]:
        entries = await (await self.bucket(namespace)).entries(timeout=self._timeout)
        return selected((e.value for e in entries if e.value is not None), context)

    async def add(self, namespace: str, schema: EventSchema) -> EventSchema | None:
        bucket = await self.bucket(namespace)
        try:
            await bucket.create(schema.key, encode_schema(schema))
        except KeyChangedError:
            entry = await bucket.get(schema.key, leader=True)
            return registered_as(bucket.name, schema.key, entry.value)
        return None

    async def withdraw(self, namespace: str, schema: EventSchema) -> None:
        bucket = await self.bucket(namespace)
        entry = await bucket.get(schema.key, leader=True)
        if entry.value is not None and decode_schema(entry.value) == schema:
            with contextlib.suppress(KeyChangedError):  # changed meanwhile: no longer ours to remove
                await bucket.delete_if(schema.key, revision=entry.revision)

    async def close(self) -> None:
        """Forget opened buckets. Safe to call twice."""
        self._buckets.close()


async def register(registry: SchemaRegistry, namespace: str, context: BoundedContext, node: str) -> list[EventSchema]:
    """Register the context's event schemas in the namespace (those not registered yet), or raise
    `SchemaError` naming every version that disagrees with the registry and why. Returns what this
    node added."""
    own = schemas_of(context)
    registered = await registry.schemas(namespace, context.name)
    _refuse(namespace, context, problems(own, registered))
    known = {r.key for r in registered}
    added: list[EventSchema] = []
    for schema in own:
        if schema.key in known:
            continue
        stamped = dataclasses.replace(schema, node=node, at=wire.timestamp())
        there = await registry.add(namespace, stamped)
        if there is None:
            added.append(stamped)
        else:  # another node registered the version meanwhile
            _refuse(namespace, context, problems([schema], [there]))
    if added:
        # Another node may have registered another minor of the same major meanwhile: check again, and
        # undo this node's part if they conflict, so that the registry is left as it was before.
        found = problems(own, await registry.schemas(namespace, context.name))
        if found:
            for schema in added:
                await registry.withdraw(namespace, schema)
            meanwhile = "another node registered a conflicting version meanwhile; what this node added is withdrawn"
            _refuse(namespace, context, [*found, meanwhile])
        logger.info(
            "event schemas registered", namespace=namespace, context=context.name, versions=[str(s) for s in added]
        )
    return added


def _refuse(namespace: str, context: BoundedContext, found: list[str]) -> None:
    if found:
        lines = "".join(f"\n  - {p}" for p in found)
        raise SchemaError(
            f"the event schemas of context {context.name!r} disagree with the registry of namespace "
            f"{namespace!r}:{lines}",
            found,
        )
