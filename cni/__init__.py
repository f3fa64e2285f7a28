"""CNI plugins (bridge, host-local, loopback, flannel), the runtime-side invoker and the flannel daemon."""
