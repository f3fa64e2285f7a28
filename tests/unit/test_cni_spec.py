"""CNI protocol plumbing: env parsing, VERSION, error JSON, result conversion, conflist loading."""

from __future__ import annotations

import json

import pytest

from cni.invoke import load_conflist
from cni.spec import CniError, Plugin, convert_result, execute, parse_cni_args

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1"}


def _plugin(seen: list) -> Plugin:
    def add(a):
        seen.append(a)
        return {"ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2}]}

    def boom(a):
        raise CniError(7, "bad thing", "more")

    return Plugin(add=add, delete=lambda a: None, check=boom)


def test_version_lists_supported() -> None:
    rc, out = execute(_plugin([]), {"CNI_COMMAND": "VERSION"}, b"")
    assert rc == 0
    assert json.loads(out) == {"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_add_parses_env_and_prints_result() -> None:
    seen: list = []
    rc, out = execute(_plugin(seen), ENV, b'{"cniVersion":"1.0.0","name":"n"}')
    assert rc == 0
    assert seen[0].args == {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-1"}
    assert seen[0].netns == "/var/run/netns/x" and seen[0].path == ["/opt/cni/bin"]
    assert json.loads(out) == {"cniVersion": "1.0.0", "ips": [
        {"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2}]}


def test_old_version_result_has_ip_version() -> None:
    out = convert_result({"ips": [{"address": "10.0.0.2/24"}]}, "0.4.0")
    assert out == {"cniVersion": "0.4.0", "ips": [{"address": "10.0.0.2/24", "version": "4"}]}


@pytest.mark.parametrize("env,stdin,code,msg", [
    ({**ENV, "CNI_IFNAME": ""}, b'{"cniVersion":"1.0.0"}', 4, "required env variables [CNI_IFNAME] missing"),
    ({**ENV, "CNI_COMMAND": "FROB"}, b'{"cniVersion":"1.0.0"}', 4, "unknown CNI_COMMAND: FROB"),
    (ENV, b"{not json", 6, "error decoding network config"),
    (ENV, b'{"cniVersion":"9.9.9"}', 1, "incompatible CNI versions"),
    ({**ENV, "CNI_ARGS": "FOO"}, b'{"cniVersion":"1.0.0"}', 4, "invalid CNI_ARGS pair 'FOO'"),
    ({**ENV, "CNI_COMMAND": "CHECK"}, b'{"cniVersion":"1.0.0"}', 7, "bad thing"),
])
def test_errors_are_cni_json(env, stdin, code, msg) -> None:
    rc, out = execute(_plugin([]), env, stdin)
    err = json.loads(out)
    assert rc == 1
    assert err["code"] == code and err["msg"] == msg and "cniVersion" in err


def test_del_needs_no_netns_and_prints_nothing() -> None:
    rc, out = execute(_plugin([]), {**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}, b'{"cniVersion":"1.0.0"}')
    assert (rc, out) == (0, "")


def test_parse_cni_args_empty_values() -> None:
    assert parse_cni_args("A=1;;B=") == {"A": "1", "B": ""}


def test_load_conflist_errors(tmp_path) -> None:
    bad = tmp_path / "bad.conflist"
    bad.write_text('{"name": "cbr0", "plugins": [')
    with pytest.raises(CniError) as e:
        load_conflist(str(bad))
    assert e.value.code == 6 and "is not valid JSON" in e.value.msg
    noplug = tmp_path / "np.conflist"
    noplug.write_text('{"name": "cbr0", "plugins": [{"mtu": 1}]}')
    with pytest.raises(CniError, match="every plugin needs a 'type'"):
        load_conflist(str(noplug))
    with pytest.raises(CniError, match="cannot read CNI config"):
        load_conflist(str(tmp_path / "missing"))
    good = tmp_path / "ok.conflist"
    good.write_text('{"name": "cbr0", "cniVersion": "1.0.0", "plugins": [{"type": "flannel"}]}')
    assert load_conflist(str(good))["plugins"] == [{"type": "flannel"}]
