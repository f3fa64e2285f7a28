"""The cluster DNS add-on as kubeadm installs it: Deployment `coredns` and Service `kube-dns`."""

from __future__ import annotations

from typing import Any

from netkube.config import ClusterConfig

DNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"


# kubeadm's Corefile, less `forward . /etc/resolv.conf`: the lab has no way out, so names outside
# the cluster are refused at once instead of timing out. The kubernetes plugin's default TTL (5 s)
# is kept. Add a forward line with `kubectl -n kube-system edit cm coredns` (reloads on change).
COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes %(domain)s in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}
"""


def manifests(cluster: ClusterConfig, replicas: int = 2) -> list[dict[str, Any]]:
    labels = {"k8s-app": "kube-dns"}
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "coredns", "namespace": "kube-system"},
        "data": {"Corefile": COREFILE % {"domain": cluster.cluster_domain}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "dnsPolicy": "Default",
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "containers": [
                        {
                            "name": "coredns",
                            "image": DNS_IMAGE,
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
                            ],
                            # As upstream's coredns.yaml.base / kubeadm ship them.
                            "resources": {
                                "limits": {"memory": "170Mi"},
                                "requests": {"cpu": "100m", "memory": "70Mi"},
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                "initialDelaySeconds": 60,
                                "timeoutSeconds": 5,
                                "successThreshold": 1,
                                "failureThreshold": 5,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                                "periodSeconds": 10,
                            },
                            # Not in upstream's manifest. The kubelet probes readiness as soon as
                            # the container starts, before the server has bound :8181, and then
                            # only every 10 s: `netkube up` (which waits for DNS) took ~13 s. A
                            # 1 s startup probe on the same endpoint makes the first readiness probe
                            # (run at once when startup succeeds) land right after the first sync.
                            # Liveness and readiness are as upstream; the threshold only bounds how
                            # long a server that never syncs waits before it is restarted.
                            "startupProbe": {
                                "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                                "periodSeconds": 1,
                                "failureThreshold": 300,
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "clusterIP": cluster.dns_service_ip,
            "selector": dict(labels),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }
    return [configmap, service, deployment]
