"""kube-proxy reimplemented: a shared change tracker and one backend package per proxy mode."""
