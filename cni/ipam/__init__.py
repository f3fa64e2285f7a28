"""host-local IPAM: range parsing, allocation and the on-disk store."""
