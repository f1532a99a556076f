"""cluster.yaml, the Ray cluster launcher config for AWS: valid for Ray, pinned, locked down.

Validity is Ray's own: the config goes through the same ``prepare_config`` (defaults merged,
setup commands merged, docker checked) and ``validate_config`` (Ray's JSON schema plus its
cross-field checks) that ``ray up`` runs before it talks to AWS. Only the AWS calls (resource
detection, IAM, subnets, security group) are left out: they need an account.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
PLACEHOLDER_CIDR = "<YOUR_PUBLIC_IP>/32"
WORLD = {"0.0.0.0/0", "::/0"}


@pytest.fixture(scope="module")
def text() -> str:
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def raw(text: str) -> dict[str, Any]:
    config = yaml.safe_load(text)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` has validated just before its first AWS call."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def ray_pin() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if re.match(r"ray(\[[^\]]*\])?\s*==", d)]
    assert len(pins) == 1, f"expected one exact ray pin in pyproject.toml, got {pins}"
    return pins[0].split("==", 1)[1].strip()


def start_commands(config: dict[str, Any]) -> list[str]:
    return list(config["head_start_ray_commands"]) + list(config["worker_start_ray_commands"])


def ray_start_args(command: str) -> list[str]:
    """The argv of the ``ray start`` in one shell command line (``a; b && ray start ...``)."""
    for part in re.split(r"[;&|]+", command):
        argv = shlex.split(part)
        if argv[:2] == ["ray", "start"]:
            return argv
    return []


def option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# ---------------------------------------------------------------------------------------------
# Ray's validator
# ---------------------------------------------------------------------------------------------
def test_ray_validator_accepts_the_config(prepared: dict[str, Any]) -> None:
    # The fixture ran prepare_config + validate_config; check what they produced.
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_ray_validator_is_really_checking(raw: dict[str, Any]) -> None:
    """The same validator rejects a broken copy: the test above is not vacuous."""
    import jsonschema

    broken = copy.deepcopy(raw)
    broken["available_node_types"]["gpu_worker"]["resources"] = {"GPU": 0.5}  # must be int
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    typo = copy.deepcopy(raw)
    typo["docker"]["pull_before_runn"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(typo))


def test_node_types(prepared: dict[str, Any]) -> None:
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head"
    assert set(types) == {"head", "gpu_worker"}

    head = types["head"]
    # No GPU on the head: not advertised, not in the instance type (g*/p* are GPU families).
    assert not head["resources"].get("GPU")
    assert not re.match(r"^(g|p)\d", head["node_config"]["InstanceType"])
    assert head["max_workers"] == 0

    worker = types["gpu_worker"]
    assert worker["resources"] == {}, "leave {} so Ray detects the instance type's GPUs"
    assert re.match(r"^(g|p)\d", worker["node_config"]["InstanceType"]), "a GPU instance type"
    assert worker["min_workers"] == 0
    assert 1 <= worker["max_workers"] <= prepared["max_workers"]


# ---------------------------------------------------------------------------------------------
# Versions: image == installed Ray == pyproject pin
# ---------------------------------------------------------------------------------------------
def test_ray_pin_matches_installed_ray() -> None:
    assert ray_pin() == ray.__version__


def test_docker_image_matches_installed_ray(prepared: dict[str, Any]) -> None:
    docker = prepared["docker"]
    assert docker["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    for key in ("head_image", "worker_image"):  # no per-node override drifting away
        assert key not in docker or docker[key] == docker["image"]
    assert docker["container_name"]
    assert "--ulimit nofile=65536:65536" in docker["run_options"]


# ---------------------------------------------------------------------------------------------
# Network exposure
# ---------------------------------------------------------------------------------------------
def test_only_ssh_may_be_open_to_the_world(prepared: dict[str, Any]) -> None:
    group = prepared["provider"].get("security_group")
    assert group, "cluster.yaml should name the cluster's security group"
    rules = group.get("IpPermissions", [])
    assert rules, "expected the SSH rule for the user's CIDR"
    for rule in rules:
        protocol = str(rule.get("IpProtocol"))
        ports = (rule.get("FromPort"), rule.get("ToPort"))
        cidrs = [r["CidrIp"] for r in rule.get("IpRanges", [])]
        cidrs += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        for cidr in cidrs:
            if cidr != PLACEHOLDER_CIDR:
                ipaddress.ip_network(cidr, strict=False)  # a real CIDR once filled in
            if cidr in WORLD:
                assert protocol == "tcp" and ports == (22, 22), (
                    f"{protocol} ports {ports} open to {cidr}: only SSH (22) may be"
                )
        ssh_only = protocol == "tcp" and ports == (22, 22)
        assert ssh_only, f"unexpected inbound rule {rule}: only SSH is opened from outside"


def test_dashboard_listens_on_loopback_only(prepared: dict[str, Any]) -> None:
    heads = [ray_start_args(c) for c in prepared["head_start_ray_commands"]]
    heads = [argv for argv in heads if "--head" in argv]
    assert len(heads) == 1, prepared["head_start_ray_commands"]
    assert option(heads[0], "--dashboard-host") == "127.0.0.1"
    assert option(heads[0], "--include-dashboard") in (None, "true", "True")
    for command in start_commands(prepared):
        assert "0.0.0.0" not in command, command
        assert option(ray_start_args(command), "--dashboard-host") in (None, "127.0.0.1")
    workers = [ray_start_args(c) for c in prepared["worker_start_ray_commands"]]
    assert any(option(argv, "--address") for argv in workers), "workers must join the head"


# ---------------------------------------------------------------------------------------------
# No credentials in the file
# ---------------------------------------------------------------------------------------------
CREDENTIAL_PATTERNS = {
    "AWS key name": re.compile(r"aws_(access_key_id|secret_access_key|session_token)", re.I),
    "the word secret": re.compile(r"secret", re.I),
    "token assignment": re.compile(r"token\s*[=:]", re.I),
    "password": re.compile(r"passw(or)?d", re.I),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS account id": re.compile(r"(?<![\d.])\d{12}(?![\d.])"),
    "IAM ARN with an account": re.compile(r"arn:aws:iam::\d+"),
}


@pytest.mark.parametrize("name", sorted(CREDENTIAL_PATTERNS))
def test_no_credentials(text: str, name: str) -> None:
    match = CREDENTIAL_PATTERNS[name].search(text)
    assert match is None, f"{name} in cluster.yaml: {match.group(0)!r}"


def test_credential_patterns_catch_what_they_should() -> None:
    samples = {
        "AWS key name": "aws_secret_access_key: x",
        "AWS access key id": "key: AKIAIOSFODNN7EXAMPLE",
        "token assignment": "RAY_AUTH_TOKEN=abc",
        "AWS account id": "arn: 123456789012",
        "IAM ARN with an account": "arn:aws:iam::123456789012:instance-profile/x",
    }
    for name, sample in samples.items():
        assert CREDENTIAL_PATTERNS[name].search(sample), name


def test_ssh_key_is_not_inlined(raw: dict[str, Any]) -> None:
    auth = raw.get("auth", {})
    assert auth.get("ssh_user") == "ubuntu"
    assert "ssh_public_key" not in auth or Path(auth["ssh_public_key"]).suffix == ".pub"
    key = auth.get("ssh_private_key")
    assert key is None or not key.strip().startswith("-----"), "a key path, never the key"


# ---------------------------------------------------------------------------------------------
# The project gets onto every node
# ---------------------------------------------------------------------------------------------
def test_setup_installs_this_project_on_every_node(prepared: dict[str, Any]) -> None:
    mounts = {
        remote: (REPO / local).resolve()
        for remote, local in prepared["file_mounts"].items()
        if not local.startswith("~")
    }
    project_mounts = {remote for remote, local in mounts.items() if local == REPO}
    assert project_mounts, f"no file mount of the repository: {prepared['file_mounts']}"
    assert (REPO / "pyproject.toml").is_file()

    def installs_project(command: str) -> bool:
        argv = shlex.split(command)
        if "pip" not in " ".join(argv[:3]) or "install" not in argv:
            return False
        return any(arg.rstrip("/") in project_mounts for arg in argv)

    # After prepare_config, setup_commands are merged into both node kinds' setup commands.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(installs_project(c) for c in prepared[key]), (key, prepared[key])


def test_the_code_upload_leaves_local_state_behind(prepared: dict[str, Any]) -> None:
    """.venv, mlflow.db, ray_results... are .gitignore'd; rsync must honour that (and .git)."""
    assert ".gitignore" in prepared["rsync_filter"]
    assert "**/.git" in prepared["rsync_exclude"]
    ignored = (REPO / ".gitignore").read_text().split()
    assert ".venv/" in ignored
