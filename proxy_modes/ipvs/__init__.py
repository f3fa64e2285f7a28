"""kube-proxy's ipvs mode: desired state, iptables companion rules, proxier, cleanup (see README.md)."""
