"""The kubelet's streaming API: container logs, exec, attach and port-forward over HTTP/WebSocket."""
