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
