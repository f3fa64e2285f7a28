"""Resource quantities and pod requests, as the NodeResourcesFit plugin counts them."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from netkube.client import Obj

_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
MSG_PODS = "Too many pods"


def quantity(value: object) -> Decimal:
    """A Kubernetes quantity ("500m", "128Mi", "1e3", 2) as a number of base units."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            try:
                return Decimal(text[: -len(suffix)]) * Decimal(_SUFFIX[suffix])
            except InvalidOperation:
                continue
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"invalid quantity {value!r}") from None


# Scoring only (upstream schedutil.DefaultMilliCPURequest / DefaultMemoryRequest): a container without
# a cpu or memory request counts as this much, so pods without requests still spread by LeastAllocated.
NONZERO_DEFAULTS = {"cpu": Decimal("0.1"), "memory": Decimal(200 * 2**20)}


def _container_requests(c: Obj, nonzero: bool = False) -> dict[str, Decimal]:
    res = c.get("resources") or {}
    # The apiserver defaults a missing request to the limit, so a limit alone also reserves.
    merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    out = {k: quantity(v) for k, v in merged.items()}
    if nonzero:
        for k, v in NONZERO_DEFAULTS.items():
            if k not in merged:
                out[k] = v
    return out


def pod_requests(pod: Obj, nonzero: bool = False) -> dict[str, Decimal]:
    """Sum of the containers' requests, at least the largest init container's, plus overhead.
    nonzero: missing cpu/memory requests count as upstream's scoring defaults (NonZeroRequested)."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for k, v in _container_requests(c, nonzero).items():
            total[k] = total.get(k, Decimal(0)) + v
    for c in spec.get("initContainers") or []:
        for k, v in _container_requests(c, nonzero).items():
            total[k] = max(total.get(k, Decimal(0)), v)
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, Decimal(0)) + quantity(v)
    return total


def insufficient(pod: Obj, node: Obj, placed: list[Obj]) -> list[str]:
    """The Fit filter's reasons: "Too many pods", "Insufficient cpu", ... (all that apply)."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    reasons = []
    if "pods" in alloc and len(placed) + 1 > int(quantity(alloc["pods"])):
        reasons.append(MSG_PODS)
    want = pod_requests(pod)
    used: dict[str, Decimal] = {}
    for p in placed:
        for k, v in pod_requests(p).items():
            used[k] = used.get(k, Decimal(0)) + v
    for name in sorted(want):
        if name in alloc and want[name] > 0 and used.get(name, Decimal(0)) + want[name] > quantity(alloc[name]):
            reasons.append(f"Insufficient {name}")
    return reasons


def free_fraction(pod: Obj, node: Obj, placed: list[Obj]) -> float | None:
    """LeastAllocated: mean free share of cpu and memory after placing the pod (None: unknown).
    Counts requests as upstream's scorer does: a container without one as the non-zero default."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    shares = []
    want = pod_requests(pod, nonzero=True)
    placed_req = [pod_requests(p, nonzero=True) for p in placed]
    for name in ("cpu", "memory"):
        if name not in alloc or quantity(alloc[name]) <= 0:
            continue
        used = sum((r.get(name, Decimal(0)) for r in placed_req), Decimal(0)) + want.get(name, Decimal(0))
        shares.append(float(max(Decimal(0), quantity(alloc[name]) - used) / quantity(alloc[name])))
    return sum(shares) / len(shares) if shares else None
