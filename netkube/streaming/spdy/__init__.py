"""SPDY/3.1 (frames, header compression, a server session) for port-forward, as spdystream speaks it."""
