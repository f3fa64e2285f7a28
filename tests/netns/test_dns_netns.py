"""The DNS module as root inside a fresh network namespace, on the real port 53."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.netns


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"nkt-dns-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)  # exactly the one we made


def test_dns_on_port_53_in_pod_netns(netns: str) -> None:
    p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "netkube.dns",
                          "--apiserver", "http://127.0.0.1:9"],
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, stderr=subprocess.DEVNULL)
    try:
        out = ""
        for _ in range(50):
            r = subprocess.run(["ip", "netns", "exec", netns, "dig", "@127.0.0.1", "+tries=1", "+time=1",
                                "kubernetes.default.svc.cluster.local"], capture_output=True, text=True)
            out = r.stdout
            if "status:" in out:
                break
            time.sleep(0.1)
        assert "status: SERVFAIL" in out  # no apiserver reachable yet: never a false NXDOMAIN
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_static_index_corefile_and_metrics_in_netns(netns: str, tmp_path) -> None:
    import json

    (tmp_path / "objs.json").write_text(json.dumps({"kind": "List", "items": [
        {"kind": "Namespace", "metadata": {"name": "default"}},
        {"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}}]}))
    (tmp_path / "Corefile").write_text(".:53 {\n  kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
                                       "    pods insecure\n    ttl 30\n  }\n  prometheus :9153\n}\n")
    p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "netkube.dns", "--static-index",
                          str(tmp_path / "objs.json"), "--corefile", str(tmp_path / "Corefile")],
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, stderr=subprocess.DEVNULL)
    try:
        out = ""
        for _ in range(50):
            out = subprocess.run(["ip", "netns", "exec", netns, "dig", "@127.0.0.1", "+tries=1", "+time=1", "+noall",
                                  "+answer", "+tcp", "web.default.svc.cluster.local"], capture_output=True,
                                 text=True).stdout
            if " IN A " in out:
                break
            time.sleep(0.1)
        assert " ".join(out.split()) == "web.default.svc.cluster.local. 30 IN A 10.96.0.20"
        # Outside names: `.` block without forward -> SERVFAIL (no next plugin), as CoreDNS.
        r = subprocess.run(["ip", "netns", "exec", netns, "dig", "@127.0.0.1", "+tries=1", "+time=1",
                            "www.example.com"], capture_output=True, text=True).stdout
        assert "status: SERVFAIL" in r
        m = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c",
                            "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9153/metrics').read().decode())"],
                           capture_output=True, text=True).stdout
        assert 'coredns_dns_requests_total{family="1",proto="tcp",server="dns://:53",type="A",view="",zone="."}' in m
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
