"""kube-proxy's iptables mode: renderer, proxier and cleanup (see README.md for the netfilter path)."""
