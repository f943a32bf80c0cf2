"""The deployment files parse, and name the services, ports and commands the CLI really accepts."""

from __future__ import annotations

import argparse
import configparser
import pathlib
import shlex
from typing import Any

import pytest
import yaml

from radix.cli import load_context
from radix.cli.parser import parser

ROOT = pathlib.Path(__file__).parents[2]


def node_args(command: list[str], environment: dict[str, str] | None = None) -> argparse.Namespace:
    """Parse a `radix node ...` command line exactly as the CLI would, and load its contexts."""
    assert command[0].endswith("radix")
    expanded = [environment.get(a.strip("$()"), a) if a.startswith("$(") and environment else a for a in command]
    args = parser().parse_args(expanded[1:])
    assert args.command == "node"
    for spec in args.context:
        load_context(spec)
    return args


def test_compose_cluster() -> None:
    """docker-compose.yml: three clustered JetStream servers and three nodes with R3 storage and health checks."""
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert sorted(services) == ["nats-1", "nats-2", "nats-3", "radix-1", "radix-2", "radix-3"]
    for name in ("nats-1", "nats-2", "nats-3"):
        command = services[name]["command"]
        assert "--js" in command
        routes = command[command.index("--routes") + 1].split(",")
        assert routes == ["nats://nats-1:6222", "nats://nats-2:6222", "nats://nats-3:6222"]
        assert "healthcheck" in services[name]
    node_ids = set()
    for name in ("radix-1", "radix-2", "radix-3"):
        service = services[name]
        args = node_args(service["command"])
        assert args.nats.split(",") == [f"nats://nats-{i}:4222" for i in (1, 2, 3)]
        assert args.replicas == 3
        assert str(args.metrics_port) in service["healthcheck"]["test"][-1]
        assert set(service["depends_on"]) == {"nats-1", "nats-2", "nats-3"}
        assert service["stop_signal"] == "SIGTERM"
        node_ids.add(args.node_id)
    assert node_ids == {"radix-1", "radix-2", "radix-3"}
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), "published ports stay on the host's loopback"


def test_kubernetes_manifests() -> None:
    """The Deployment runs `radix node` with a drain-friendly grace period and probes on the metrics port."""
    documents = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/radix.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    (container,) = pod["containers"]
    args = node_args(container["command"], {"POD_NAME": "radix-5d8f7c9b4-x2x7q"})
    assert args.node_id == "radix-5d8f7c9b4-x2x7q"
    assert container["ports"][0]["containerPort"] == args.metrics_port
    assert container["readinessProbe"]["httpGet"]["port"] == "metrics"
    assert kinds["ConfigMap"]["data"]["RADIX_NATS"].startswith("nats://")
    assert kinds["Service"]["spec"]["ports"][0]["port"] == args.metrics_port


def test_nats_helm_values() -> None:
    """The NATS chart values ask for a three-server cluster with file-backed JetStream."""
    values = yaml.safe_load((ROOT / "deploy/nats/values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True


def test_systemd_unit() -> None:
    """The unit runs `radix node` and gives the drain time to finish on stop."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string((ROOT / "deploy/systemd/radix-node.service").read_text())
    service = unit["Service"]
    args = node_args(shlex.split(service["ExecStart"].replace("%l", "host-1")))
    assert args.node_id == "host-1"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= 30


@pytest.mark.parametrize("path", ["Dockerfile"])
def test_image_builds_the_package(path: str) -> None:
    """The image installs the package and stops with SIGTERM (the drain signal)."""
    text = (ROOT / path).read_text()
    assert "pip install --no-cache-dir ." in text
    assert "STOPSIGNAL SIGTERM" in text
