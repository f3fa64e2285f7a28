"""Pure kubelet pieces: resolv.conf/hosts, env vars, phase, back-off numbers, node conditions."""

from netkube.config import ClusterConfig
from netkube.kubelet.envvars import container_env
from netkube.kubelet.node import NOT_READY_MESSAGE, conditions, node_object
from netkube.kubelet.podfiles import render_hosts, render_resolv_conf
from netkube.kubelet.status import ContainerView, format_duration, pod_phase, restart_delay, terminated_state

CLUSTER = ClusterConfig()


def pod(**spec):
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "x"}], **spec}}


def test_resolv_conf_cluster_first():
    assert render_resolv_conf(pod(), CLUSTER) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_resolv_conf_default_and_dnsconfig():
    host = "nameserver 192.0.2.53\nsearch example.org\n"
    out = render_resolv_conf(pod(dnsPolicy="Default", dnsConfig={"options": [{"name": "ndots", "value": "2"}]}),
                             CLUSTER, host)
    assert out == "search example.org\nnameserver 192.0.2.53\noptions ndots:2\n"
    assert "10.96.0.10" not in render_resolv_conf(pod(hostNetwork=True), CLUSTER, host)


def test_hosts_file():
    out = render_hosts(pod(), CLUSTER, ["10.244.1.5"])
    assert out.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert out.endswith("fe00::2\tip6-allrouters\n10.244.1.5\tweb-1\n")
    sub = render_hosts(pod(hostname="db", subdomain="g", hostAliases=[{"ip": "192.0.2.9", "hostnames": ["a", "b"]}]),
                       CLUSTER, ["10.244.1.5"])
    assert "10.244.1.5\tdb.g.shop.svc.cluster.local\tdb\n" in sub
    assert sub.endswith("\n# Entries added by HostAliases.\n192.0.2.9\ta\n192.0.2.9\tb\n")


def test_service_env():
    svcs = [
        {"metadata": {"name": "redis-main", "namespace": "shop"},
         "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "db", "port": 6379, "protocol": "TCP"}]}},
        {"metadata": {"name": "other", "namespace": "elsewhere"}, "spec": {"clusterIP": "10.96.0.21", "ports": [{"port": 1}]}},
        {"metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"port": 2}]}},
    ]
    c = {"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "KUBERNETES_SERVICE_PORT", "value": "9"}]}
    env = container_env(pod(), c, svcs, CLUSTER, "web-1", {"PATH": "/img"})
    assert env["PATH"] == "/img" and env["HOSTNAME"] == "web-1" and env["A"] == "1"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "9"  # container env wins
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert env["REDIS_MAIN_SERVICE_HOST"] == "10.96.0.20"
    assert env["REDIS_MAIN_SERVICE_PORT_DB"] == "6379"
    assert env["REDIS_MAIN_PORT"] == "tcp://10.96.0.20:6379"
    assert env["REDIS_MAIN_PORT_6379_TCP_ADDR"] == "10.96.0.20"
    assert not any(k.startswith(("OTHER_", "HEADLESS_")) for k in env)
    no_links = container_env(pod(enableServiceLinks=False), c, svcs, CLUSTER, "h", {})
    assert "REDIS_MAIN_SERVICE_HOST" not in no_links and "KUBERNETES_SERVICE_HOST" in no_links


def test_restart_backoff_numbers():
    assert [restart_delay(n, 10, 300) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert [format_duration(s) for s in (10, 40, 160, 300)] == ["10s", "40s", "2m40s", "5m0s"]


def test_phase():
    run = ContainerView("a", "i", state={"running": {}})
    ok = ContainerView("b", "i", state=terminated_state(0, "t", "t", "id"))
    bad = ContainerView("c", "i", state=terminated_state(1, "t", "t", "id"))
    new = ContainerView("d", "i")
    crash = ContainerView("e", "i", state={"waiting": {"reason": "CrashLoopBackOff"}}, last_state=bad.state)
    assert pod_phase("Always", [run, new]) == "Pending"
    assert pod_phase("Always", [run, ok]) == "Running"
    assert pod_phase("Never", [ok]) == "Succeeded"
    assert pod_phase("Never", [ok, bad]) == "Failed"
    assert pod_phase("OnFailure", [bad]) == "Running"
    assert pod_phase("Always", [crash]) == "Running"
    assert bad.state["terminated"]["reason"] == "Error" and ok.state["terminated"]["reason"] == "Completed"


def test_node_object_and_conditions():
    two = ClusterConfig(nodes=2)
    n1 = node_object(two, "node1", "192.168.56.101")
    assert n1["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert n1["spec"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert "taints" not in node_object(ClusterConfig(nodes=1), "node1", "x")["spec"]
    assert node_object(two, "node2", "x")["metadata"]["labels"]["kubernetes.io/hostname"] == "node2"
    first = conditions(False, [], "T1")
    ready = {c["type"]: c for c in first}["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "KubeletNotReady", NOT_READY_MESSAGE)
    again = {c["type"]: c for c in conditions(False, first, "T2")}
    assert again["Ready"]["lastTransitionTime"] == "T1" and again["Ready"]["lastHeartbeatTime"] == "T2"
    up = {c["type"]: c for c in conditions(True, first, "T3")}["Ready"]
    assert (up["status"], up["reason"], up["message"], up["lastTransitionTime"]) == (
        "True", "KubeletReady", "kubelet is posting ready status", "T3")
