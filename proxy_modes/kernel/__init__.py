"""Kernel interfaces kube-proxy drives (iptables, conntrack), each a Protocol with a real and a fake side."""
