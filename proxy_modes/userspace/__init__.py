"""kube-proxy's old userspace mode: a proxy socket per service port, iptables REDIRECT/DNAT to it."""
