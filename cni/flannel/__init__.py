"""flannel: the node daemon (subnet lease from podCIDR, vxlan backend) and its kernel seam."""
