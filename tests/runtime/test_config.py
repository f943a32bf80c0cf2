"""Configuration: every part checks its fields and names the one out of range; the CLI's defaults are its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from radix import (
    ActorConfig,
    CommandLogConfig,
    ConfigError,
    IntakeConfig,
    InvalidNameError,
    MetricsConfig,
    NodeConfig,
    PlacementConfig,
    RadixError,
    StoreConfig,
)
from radix.cli.node import config_of
from radix.cli.parser import parser
from radix.runtime.ports import ActorSettings


@pytest.mark.parametrize(
    ("part", "field", "value"),
    [
        (ActorConfig, "idle_timeout", 0),
        (ActorConfig, "mailbox_size", 0),
        (ActorConfig, "snapshot_every", -1),
        (ActorConfig, "dedup_max", 1),  # fewer than the refusals it keeps (recent_commands)
        (PlacementConfig, "liveness_ttl", 0.5),  # JetStream's per-key TTLs are whole seconds
        (PlacementConfig, "max_hops", 0),
        (PlacementConfig, "handoff_concurrency", 0),
        (IntakeConfig, "max_command_bytes", 0),
        (CommandLogConfig, "max_age", 0),
        (MetricsConfig, "port", 70_000),
        (StoreConfig, "replicas", 2),
        (StoreConfig, "storage", "tape"),
        (NodeConfig, "shutdown_timeout", -1),
    ],
)
def test_a_value_out_of_range_is_refused_naming_its_field(part: Callable[..., Any], field: str, value: object) -> None:
    """The error names the part and the field, holds the value, and is a `ValueError` as well as a Radix error."""
    with pytest.raises(ConfigError) as refused:
        part(**{field: value})
    assert refused.value.field == f"{part.__name__}.{field}"
    assert refused.value.value == value
    assert str(refused.value).startswith(f"{part.__name__}.{field} = {value!r}: ")
    assert isinstance(refused.value, ValueError)
    assert isinstance(refused.value, RadixError)


def test_a_node_id_is_a_name() -> None:
    """A node id that could not be a subject token is refused as a name."""
    with pytest.raises(InvalidNameError, match=r"invalid node id 'a\.b'"):
        NodeConfig(node_id="a.b")


def test_the_defaults_are_valid_and_nested() -> None:
    """Every part has production defaults; a node's configuration holds one of each."""
    config = NodeConfig(node_id="n1")
    assert (config.actors, config.placement, config.intake) == (ActorConfig(), PlacementConfig(), IntakeConfig())
    assert (config.command_log, config.metrics, config.store) == (CommandLogConfig(), MetricsConfig(), StoreConfig())


def test_the_cli_takes_its_defaults_from_the_configuration() -> None:
    """`radix node` with no options runs with the configuration's own defaults, not copies of them."""
    args = parser().parse_args(["node", "--namespace", "n", "--context", "radix.examples.inventory", "--node-id", "a"])
    assert config_of(args) == NodeConfig(node_id="a")
    checks = ["--strict", "--server-monitor", "http://127.0.0.1:8222"]
    tuned = parser().parse_args(
        ["node", "--namespace", "n", "--context", "m", "--liveness-ttl", "7", "--snapshot-every", "0", *checks]
    )
    assert config_of(tuned).placement.liveness_ttl == 7
    assert config_of(tuned).actors.snapshot_every == 0
    assert (config_of(tuned).strict, config_of(tuned).server_monitor) == (True, "http://127.0.0.1:8222")


def test_actor_settings_are_the_actor_configuration_and_a_refusal_budget() -> None:
    """What an actor runs with: its part of the configuration as given, and its share of a server message."""
    config = ActorConfig(recent_commands=9, group_commit=3)
    settings = ActorSettings.of(config, max_payload=1000)
    assert {f.name: getattr(settings, f.name) for f in dataclasses.fields(ActorConfig)} == dataclasses.asdict(config)
    assert settings.refusal_bytes == 100


def test_a_reactions_redelivery_must_stay_well_inside_the_dedup_window() -> None:
    """A command a reaction sends again after a takeover must still be known by its id: the liveness TTL,
    two ownership looks and the command time-out must stay under half the dedup window."""
    from radix.runtime.config import ProcessingConfig

    NodeConfig(actors=ActorConfig(dedup_window=31), processing=ProcessingConfig(command_timeout=10, interval=1))
    with pytest.raises(ConfigError, match="more than twice the longest redelivery of a reaction's command"):
        NodeConfig(actors=ActorConfig(dedup_window=29), processing=ProcessingConfig(command_timeout=10, interval=1))
