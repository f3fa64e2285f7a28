"""kube-proxy's nftables mode: one `table ip kube-proxy`, verdict-map dispatch, batched transactions."""
