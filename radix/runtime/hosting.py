"""The bounded contexts a node hosts, by namespace: the one place that maps an address to its codec,
its state's fingerprint, its shard and its shard's lease key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from radix.domain import AggregateCodec, BoundedContext
from radix.errors import ConfigError
from radix.runtime.config import DEFAULT_SHARDS
from radix.runtime.history import state_fingerprint
from radix.wire.names import Address, lease_key, shard_of, validate_namespace

__all__ = ["Hosted", "Hosting"]


@dataclass(frozen=True)
class Hosted:
    """One context hosted in one namespace, with its aggregate types' state fingerprints and its shard count
    (`DEFAULT_SHARDS` until the node has read the recorded one: `Hosting.agreed`)."""

    namespace: str
    context: BoundedContext
    fingerprints: dict[str, str | None]
    shards: int = DEFAULT_SHARDS


class Hosting:
    """The (namespace, context) pairs a node serves."""

    def __init__(self, hosts: Mapping[str, Sequence[BoundedContext]]) -> None:
        self._hosted: dict[tuple[str, str], Hosted] = {}
        for namespace, contexts in hosts.items():
            validate_namespace(namespace)
            for context in contexts:
                fingerprints = {name: state_fingerprint(codec) for name, codec in context.codecs.items()}
                self._hosted[(namespace, context.name)] = Hosted(namespace, context, fingerprints)
        if not self._hosted:
            raise ConfigError("hosts", dict(hosts), "a node needs at least one namespace with at least one context")

    def __iter__(self) -> Iterator[Hosted]:
        """Every hosted context, in order of namespace and name."""
        return iter(self._hosted[key] for key in sorted(self._hosted))

    def get(self, namespace: str, context: str) -> Hosted | None:
        return self._hosted.get((namespace, context))

    @property
    def namespaces(self) -> list[str]:
        return sorted({namespace for namespace, _ in self._hosted})

    def contexts(self, namespace: str) -> list[str]:
        return sorted(context for ns, context in self._hosted if ns == namespace)

    @property
    def labels(self) -> list[str]:
        """`namespace/context` of each hosted context, in order."""
        return [f"{h.namespace}/{h.context.name}" for h in self]

    def codec(self, address: Address) -> AggregateCodec:
        return self._hosted[(address.namespace, address.context)].context.codec(address.aggregate_type)

    def fingerprint(self, address: Address) -> str | None:
        return self._hosted[(address.namespace, address.context)].fingerprints[address.aggregate_type]

    def agreed(self, namespace: str, context: str, shards: int) -> None:
        """Use the shard count the cluster agreed on for a hosted context (recorded in the leases bucket)."""
        self._hosted[(namespace, context)] = replace(self._hosted[(namespace, context)], shards=shards)

    def shards(self, namespace: str, context: str) -> int:
        return self._hosted[(namespace, context)].shards

    def shard(self, address: Address) -> int:
        """The shard the aggregate lives in: that of its placement key, so a placement group shares one."""
        hosted = self._hosted[(address.namespace, address.context)]
        aggregate = hosted.context.codec(address.aggregate_type).aggregate
        return shard_of(aggregate.placement_key(address.aggregate_id), hosted.shards)

    def lease_key(self, address: Address) -> str:
        """The key of the lease of the aggregate's shard, which its owner holds for every aggregate in it."""
        return lease_key(address.context, self.shard(address))
