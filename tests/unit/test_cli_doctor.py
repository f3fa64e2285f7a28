"""`netkube up` and `doctor` say exactly what is missing and how to get it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from netkube.cli import doctor
from netkube.cli.up import up
from netkube.config import ClusterConfig, ConfigError


def test_missing_tools_are_named_with_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    monkeypatch.setattr(doctor.shutil, "which", lambda tool: None if tool in ("tcpdump", "conntrack") else "/x")
    monkeypatch.setattr(doctor, "_kernel_checks", lambda: [])
    found = doctor.problems()
    assert len(found) == 1
    assert "conntrack, tcpdump" in found[0] and "apt-get install -y conntrack tcpdump" in found[0]


def test_not_root_is_the_first_thing_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    assert doctor.problems() == ["netkube needs root to create namespaces: run it with sudo"]


def test_up_refuses_with_the_problem_list_and_creates_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "problems", lambda: ["kernel lacks the vxlan link type (x); load its module (modprobe vxlan)"])
    root = Path("/var/tmp") / f"netkube-unit-{uuid.uuid4().hex}"  # not /tmp: containers hide it
    cluster = ClusterConfig(name="doc", state_root=str(root))
    with pytest.raises(ConfigError, match="modprobe vxlan"):
        up(cluster, quiet=True)
    assert not root.exists()
