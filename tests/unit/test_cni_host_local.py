"""host-local allocation against a temp dataDir: round robin, gateway skip, exhaustion, release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cni.install import install_plugins
from cni.ipam.ranges import iterate, parse_range
from cni.plugins.host_local import PLUGIN
from cni.spec import execute


def conf(data_dir: Path, **rng: str) -> bytes:
    r = {"subnet": "10.1.2.0/24", **rng}
    return json.dumps({"cniVersion": "1.0.0", "name": "testnet", "type": "bridge",
                       "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[r]],
                                "routes": [{"dst": "10.1.0.0/16"}]}}).encode()


def run(cmd: str, cid: str, stdin: bytes, ifname: str = "eth0") -> tuple[int, dict]:
    env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": "/x", "CNI_IFNAME": ifname}
    rc, out = execute(PLUGIN, env, stdin)
    return rc, (json.loads(out) if out else {})


def test_range_defaults_exclude_network_broadcast() -> None:
    r = parse_range({"subnet": "10.1.2.0/24"})
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.2.1", "10.1.2.254", "10.1.2.1")
    assert str(r) == "10.1.2.1-10.1.2.254"


def test_iterate_round_robin_after_last_and_wraps() -> None:
    r = parse_range({"subnet": "10.1.2.0/29"})  # .1 gateway, .2-.6 usable
    from ipaddress import IPv4Address as IP
    order = [str(ip) for ip, _ in iterate([r], IP("10.1.2.4"))]
    assert order == ["10.1.2.5", "10.1.2.6", "10.1.2.2", "10.1.2.3", "10.1.2.4"]


def test_first_add_gets_first_non_gateway_and_files_like_upstream(tmp_path) -> None:
    rc, res = run("ADD", "ctr-a", conf(tmp_path))
    assert rc == 0
    assert res["ips"] == [{"address": "10.1.2.2/24", "gateway": "10.1.2.1"}]
    assert res["routes"] == [{"dst": "10.1.0.0/16"}]
    d = tmp_path / "testnet"
    assert (d / "10.1.2.2").read_bytes() == b"ctr-a\r\neth0"
    assert (d / "last_reserved_ip.0").read_text() == "10.1.2.2"
    assert (d / "lock").exists()


def test_round_robin_does_not_reuse_released_immediately(tmp_path) -> None:
    c = conf(tmp_path)
    assert run("ADD", "a", c)[1]["ips"][0]["address"] == "10.1.2.2/24"
    assert run("ADD", "b", c)[1]["ips"][0]["address"] == "10.1.2.3/24"
    assert run("DEL", "a", c)[0] == 0
    assert not (tmp_path / "testnet" / "10.1.2.2").exists()
    assert run("ADD", "c", c)[1]["ips"][0]["address"] == "10.1.2.4/24"


def test_exhausted_range_reports_upstream_text(tmp_path) -> None:
    c = conf(tmp_path, rangeStart="10.1.2.10", rangeEnd="10.1.2.11")
    assert run("ADD", "a", c)[0] == 0
    assert run("ADD", "b", c)[0] == 0
    rc, err = run("ADD", "c", c)
    assert rc == 1
    assert err["msg"] == "failed to allocate for range 0: no IP addresses available in range set: 10.1.2.10-10.1.2.11"


def test_gateway_inside_range_is_skipped(tmp_path) -> None:
    c = conf(tmp_path, rangeStart="10.1.2.1", rangeEnd="10.1.2.2", gateway="10.1.2.1")
    assert run("ADD", "a", c)[1]["ips"][0]["address"] == "10.1.2.2/24"
    assert run("ADD", "b", c)[0] == 1


def test_duplicate_add_refused_and_del_idempotent_per_ifname(tmp_path) -> None:
    c = conf(tmp_path)
    run("ADD", "a", c)
    rc, err = run("ADD", "a", c)
    assert rc == 1 and "duplicate allocation is not allowed" in err["msg"]
    assert run("ADD", "a", c, ifname="net1")[0] == 0  # another interface of the same container
    assert run("DEL", "a", c, ifname="net1")[0] == 0
    assert (tmp_path / "testnet" / "10.1.2.2").exists()
    assert run("DEL", "a", c)[0] == 0
    assert run("DEL", "a", c)[0] == 0
    assert sorted(os.listdir(tmp_path / "testnet")) == ["last_reserved_ip.0", "lock"]


def test_bad_config_is_clear(tmp_path) -> None:
    bad = json.dumps({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "host-local",
                      "dataDir": str(tmp_path), "ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.9.9.9"}]]}})
    rc, err = run("ADD", "a", bad.encode())
    assert rc == 1 and err["code"] == 7 and err["msg"] == "rangeStart 10.9.9.9 not in network 10.1.2.0/24"


def test_50_concurrent_processes_get_distinct_addresses(tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    install_plugins(bin_dir, sys.executable)
    c = conf(tmp_path / "data")

    def one(i: int) -> str:
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"ctr{i}", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0",
               "CNI_PATH": str(bin_dir), "PATH": os.environ["PATH"]}
        p = subprocess.run([str(bin_dir / "host-local")], input=c, env=env, capture_output=True, timeout=60)
        assert p.returncode == 0, p.stdout
        return json.loads(p.stdout)["ips"][0]["address"]

    with ThreadPoolExecutor(max_workers=50) as ex:
        got = list(ex.map(one, range(50)))
    assert len(set(got)) == 50
    files = [f for f in os.listdir(tmp_path / "data" / "testnet") if f.startswith("10.")]
    assert len(files) == 50 and "10.1.2.1" not in files


@pytest.mark.parametrize("missing", ["ipam", "name"])
def test_missing_keys(tmp_path, missing) -> None:
    d = json.loads(conf(tmp_path))
    del d[missing]
    rc, err = run("ADD", "a", json.dumps(d).encode())
    assert rc == 1 and err["code"] == 7
