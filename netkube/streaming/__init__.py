"""Byte streams under HTTP upgrades (raw takeover, relays) shared by the apiserver and the kubelet."""
