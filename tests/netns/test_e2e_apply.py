"""Field validation and server-side apply with the real kubectl on a live 2-node netkube cluster.

A typo in a manifest is refused with upstream's strict decoding error; a Deployment managed with
`kubectl apply --server-side` runs its pods, conflicts with another manager's change until
--force-conflicts, and the fields its applier stops setting (an env var) leave the running pods.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.netns.test_e2e_cluster import Cluster, live_cluster

pytestmark = pytest.mark.netns

APP = "ssa-web"


def manifest(replicas: int, env: str = "", typo: str = "") -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {APP}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {APP}}}}}
  template:
    metadata: {{labels: {{app: {APP}}}}}
    spec:
      containers:
      - name: web
        image: httpd
        ports: [{{containerPort: 80}}]
{env}{typo}"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with live_cluster("ss", "--nodes", "2") as (c, _):
        yield c


def test_a_typo_is_refused_with_the_strict_decoding_error(cluster: Cluster) -> None:
    r = cluster.kubectl("apply", "-f", "-", stdin=manifest(2, typo="        imagePullPolicyy: Always\n"), check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be handled '
        'as a Deployment: strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy"')
    assert cluster.kubectl("get", "deploy", APP, check=False).returncode == 1


def test_server_side_apply_runs_conflicts_forces_and_prunes(cluster: Cluster) -> None:
    env = "        env: [{name: GREETING, value: hello}]\n"
    r = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=manifest(2, env))
    assert r.stdout == f"deployment.apps/{APP} serverside-applied\n"
    pods = cluster.wait_ready(f"app={APP}", 2, timeout=90)
    assert all({"name": "GREETING", "value": "hello"} in p["spec"]["containers"][0]["env"] for p in pods)

    # another manager changes replicas: the applier's next apply of a different value conflicts
    cluster.kubectl("patch", "deploy", APP, "--type=merge", "-p", '{"spec":{"replicas":3}}')
    r = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=manifest(2, env), check=False)
    assert r.returncode == 1
    assert r.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: '
                               '.spec.replicas\n'), r.stderr
    cluster.wait_ready(f"app={APP}", 3, timeout=90)

    # --force-conflicts takes replicas back; the env var the applier no longer sets is removed
    r = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest(2))
    assert r.stdout == f"deployment.apps/{APP} serverside-applied\n"
    d = json.loads(cluster.kubectl("get", "deploy", APP, "-o", "json", "--show-managed-fields").stdout)
    assert d["spec"]["replicas"] == 2 and "env" not in d["spec"]["template"]["spec"]["containers"][0]
    owners = {(m["manager"], m["operation"]) for m in d["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in owners
    assert ("kubectl-patch", "Update") not in owners  # it lost its only field
    pods = cluster.wait_ready(f"app={APP}", 2, timeout=120)
    assert all("env" not in p["spec"]["containers"][0] for p in pods)  # rolled out without the env var
    assert cluster.kubectl("rollout", "status", f"deploy/{APP}", "--timeout=60s").returncode == 0
