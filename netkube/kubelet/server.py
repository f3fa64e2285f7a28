"""The kubelet's HTTP server on port 10250; the implementation lives in netkube/kubelet/streaming/."""

from netkube.kubelet.streaming.server import KUBELET_PORT, KubeletServer, local_launcher, nsexec_launcher

__all__ = ["KUBELET_PORT", "KubeletServer", "local_launcher", "nsexec_launcher"]
