"""Synthetic proxy state for benchmarks: N ClusterIP services × E endpoints (helper of bench/proxy)."""

from __future__ import annotations

from proxy_modes.model import Endpoint, ProxyState, ServicePort, ServicePortName


def make_state(n: int, eps: int = 4) -> ProxyState:
    """Service i: 172.30.x.y:80 (from 172.30.0.1), endpoints 10.244.x.y:8080 (distinct per service)."""
    st = ProxyState()
    for i in range(n):
        spn = ServicePortName(f"ns{i % 50}", f"svc{i}", "http", "TCP")
        a = i + 1
        st.services[spn] = ServicePort(spn, f"172.30.{a // 256}.{a % 256}", 80)
        base = i * eps
        st.endpoints[spn] = sorted(
            (Endpoint(f"10.{244 + (base + k) // 65536 % 8}.{(base + k) // 256 % 256}.{(base + k) % 256}", 8080)
             for k in range(eps)), key=str)
    return st
