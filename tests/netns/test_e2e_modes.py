"""Proxy modes on one live cluster: ClusterIP, NodePort, LoadBalancer from a pod, a node and an outside
client; traffic policies, affinity, hairpin, UDP, spread; `netkube proxy-mode` switches between them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.netns.test_e2e_cluster import Cluster, live_cluster, run

pytestmark = pytest.mark.netns

MODES = ["iptables", "nftables", "userspace"]  # ipvs needs a kernel with IP_VS (tests/vm)
CHI2_DF2_P001 = 13.816
UDP_ASK = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); "
           "s.sendto(b'hostname',(sys.argv[1],int(sys.argv[2]))); print(s.recv(200).decode())")  # chi-square critical value, 2 degrees of freedom, p = 0.001

MANIFESTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - {name: agnhost, image: registry.k8s.io/e2e-test-images/agnhost:2.47, args: [netexec, --http-port=8080, --udp-port=8081]}
---
apiVersion: v1
kind: Pod
metadata: {name: hair, labels: {app: hair}}
spec:
  containers:
  - {name: agnhost, image: registry.k8s.io/e2e-test-images/agnhost:2.47, args: [netexec, --http-port=8080]}
---
apiVersion: v1
kind: Pod
metadata: {name: src}
spec:
  containers:
  - {name: sh, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: udp, port: 81, targetPort: 8081, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: echo-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-sticky}
spec:
  selector: {app: echo}
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: hair}
spec:
  selector: {app: hair}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  type: NodePort
  selector: {app: nobody}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


class Lab:
    """The cluster plus the addresses the checks use, looked up once."""

    def __init__(self, c: Cluster) -> None:
        self.c, self.cfg = c, c.cfg
        svcs = {s["metadata"]["name"]: s for s in json.loads(c.kubectl("get", "svc", "-o", "json").stdout)["items"]}
        self.svc = svcs
        pods = json.loads(c.kubectl("get", "pods", "-o", "json").stdout)["items"]
        self.pods = {p["metadata"]["name"]: p for p in pods}
        self.echo_ips = {p["status"]["podIP"]: p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("echo-")}
        self.echo_nodes = {p["spec"]["nodeName"] for p in pods if p["metadata"]["name"].startswith("echo-")}

    def ip(self, svc: str) -> str:
        return str(self.svc[svc]["spec"]["clusterIP"])

    def lb(self, svc: str) -> str:
        return str(self.svc[svc]["status"]["loadBalancer"]["ingress"][0]["ip"])

    def node_port(self, svc: str) -> int:
        return int(self.svc[svc]["spec"]["ports"][0]["nodePort"])

    def netns(self, where: str) -> str:
        if where == "client":
            return self.cfg.client_netns
        if where.startswith("node/"):
            return self.cfg.node_netns(where.removeprefix("node/"))
        return self.cfg.pod_netns(self.pods[where]["metadata"]["uid"])

    def sh(self, where: str, script: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.netns(where), "sh", "-c", script], timeout=timeout, check=False)

    def get(self, where: str, url: str, timeout: float = 3) -> str:
        proc = self.sh(where, f"curl -sS --max-time {timeout} {url}", timeout=timeout + 10)
        assert proc.returncode == 0, f"{where} -> {url}: exit {proc.returncode} {proc.stderr}"
        return proc.stdout.strip()

    def many(self, where: str, url: str, n: int) -> list[str]:
        # One shell loop in the namespace: 60 requests cost one process start, not 60.
        out = self.sh(where, f"for i in $(seq {n}); do curl -s --max-time 2 {url}; echo; done", timeout=60).stdout
        return [line for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with live_cluster("md") as (c, _):
        c.kubectl("apply", "-f", "-", stdin=MANIFESTS)
        c.wait_ready("app=echo", 3)
        c.wait_ready("app=hair", 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # both LoadBalancers have their EXTERNAL-IP and endpoints
            lab = Lab(c)
            if all((lab.svc[s].get("status", {}).get("loadBalancer") or {}).get("ingress") for s in ("echo", "echo-local")) \
                    and lab.pods["src"].get("status", {}).get("podIP"):
                break
            time.sleep(0.3)
        yield lab


def test_load_balancer_gets_an_external_ip_from_the_pool(lab: Lab) -> None:
    table = lab.c.kubectl("get", "svc", "echo").stdout
    assert lab.lb("echo") in table and lab.lb("echo").startswith("192.168.56.24"), table
    assert lab.lb("echo") != lab.lb("echo-local")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, lab: Lab) -> str:
    out = lab.c.netkube("proxy-mode", "--name", lab.cfg.name, request.param, timeout=60).stdout
    assert f"-> {request.param}" in out, out
    assert json.loads(lab.cfg.state_dir.joinpath("cluster.json").read_text())["proxy_mode"] == request.param
    return str(request.param)


def test_mode(lab: Lab, mode: str) -> None:
    """Every check for one mode (one test per mode keeps the switches to three)."""
    echo = set(lab.echo_ips.values())
    nodes = lab.cfg.node_names
    lb, port = lab.lb("echo"), lab.node_port("echo")
    # The old mode's objects are gone (each backend's data-driven cleanup).
    ipt = run(["ip", "netns", "exec", lab.netns("node/node2"), "iptables-save", "-t", "nat"]).stdout
    nft = run(["ip", "netns", "exec", lab.netns("node/node2"), "nft", "list", "tables"]).stdout
    assert ("KUBE-SVC-" in ipt) == (mode == "iptables"), ipt
    assert ("KUBE-PORTALS-CONTAINER" in ipt) == (mode == "userspace")
    assert ("kube-proxy" in nft) == (mode == "nftables"), nft

    # ClusterIP from a pod and from a node; NodePort on every node IP and the LB IP from all three.
    assert lab.get("src", f"http://{lab.ip('echo')}/hostname") in echo
    assert lab.get("node/node1", f"http://{lab.ip('echo')}/hostname") in echo
    for where in ("src", "node/node1", "client"):
        for n in nodes:
            assert lab.get(where, f"http://{lab.cfg.node_ip(n)}:{port}/hostname") in echo, (where, n)
        assert lab.get(where, f"http://{lb}/hostname") in echo, where

    # Session affinity ClientIP: one endpoint for one client.
    assert len(set(lab.many("src", f"http://{lab.ip('echo-sticky')}/hostname", 8))) == 1
    # Hairpin: a pod reaching itself through its own Service.
    assert lab.get("hair", f"http://{lab.ip('hair')}/hostname") == "hair"
    # UDP: DNS through kube-dns, and agnhost's UDP netexec through the Service's UDP port.
    dns = lab.sh("src", f"busybox nslookup kubernetes.default.svc.cluster.local {lab.cfg.dns_service_ip}")
    assert lab.cfg.kubernetes_service_ip in dns.stdout, dns.stdout + dns.stderr
    udp = run(["ip", "netns", "exec", lab.netns("src"), sys.executable, "-c", UDP_ASK, lab.ip("echo"), "81"],
              check=False, timeout=10)
    assert udp.stdout.strip() in echo, udp

    # No endpoints: refused at once (userspace: its proxy accepts, then closes).
    t0 = time.monotonic()
    refused = lab.sh("src", f"curl -sS --max-time 3 http://{lab.ip('empty')}/")
    assert refused.returncode != 0 and time.monotonic() - t0 < 2.5, refused
    if mode != "userspace":
        assert refused.returncode == 7, refused.stderr  # curl: connection refused (REJECT)

    # Even spread over the three endpoints, from outside through the LoadBalancer IP.
    hits = Counter(lab.many("client", f"http://{lb}/hostname", 60))
    assert set(hits) == echo, hits
    chi2 = sum((hits[h] - 20) ** 2 / 20 for h in echo)
    assert chi2 < CHI2_DF2_P001, hits

    # `netkube trace` names exactly the endpoints real requests reached.
    tr = lab.c.netkube("trace", "--name", lab.cfg.name, "--from", "client", "--to", f"{lb}:80", "--brief").stdout
    traced = {ip for ip in lab.echo_ips if f"{ip}:8080" in tr}
    assert {lab.echo_ips[ip] for ip in traced} == set(hits), tr
    assert f"{mode} mode" in tr

    if mode == "userspace":
        return  # upstream's userspace proxy never implemented externalTrafficPolicy: Local
    # externalTrafficPolicy Local: the client IP is kept, and only nodes with an endpoint answer.
    lport = lab.node_port("echo-local")
    for n in nodes:
        url = f"http://{lab.cfg.node_ip(n)}:{lport}/clientip"
        if n in lab.echo_nodes:
            assert lab.get("client", url).startswith(lab.cfg.client_ip + ":"), n
        else:
            assert lab.sh("client", f"curl -s --max-time 1 {url}").returncode != 0, f"{n} has no endpoint but answered"
    assert lab.get("client", f"http://{lab.lb('echo-local')}/clientip").startswith(lab.cfg.client_ip + ":")
