"""The bridge plugin's ipMasq chain (CNI-<hash> from POSTROUTING), as upstream's SetupIPMasq."""

from __future__ import annotations

import hashlib
import subprocess

MULTICAST = "224.0.0.0/4"


def chain_name(network: str, container_id: str) -> str:
    # upstream utils.FormatChainName: "CNI-" + sha512(name+id) hex, cut to 28 characters
    return "CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest()[:24]


def comment(network: str, container_id: str) -> str:
    return f'name: "{network}" id: "{container_id}"'


def _quote(s: str) -> str:
    # iptables-restore tokenizer: a quoted argument with backslash-escaped quotes
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def setup_rules(chain: str, pod_ip: str, subnet: str, note: str) -> str:
    c = _quote(note)
    return (
        "*nat\n"
        f":{chain} - [0:0]\n"
        f"-A {chain} -d {subnet} -m comment --comment {c} -j ACCEPT\n"
        f"-A {chain} ! -d {MULTICAST} -m comment --comment {c} -j MASQUERADE\n"
        f"-A POSTROUTING -s {pod_ip}/32 -m comment --comment {c} -j {chain}\n"
        "COMMIT\n"
    )


def teardown_rules(save: str, chain: str) -> str | None:
    """From `iptables-save -t nat`, the restore text deleting every jump to chain and chain itself."""
    lines = save.splitlines()
    if not any(line.startswith(f":{chain} ") for line in lines):
        return None
    out = ["*nat"]
    out += ["-D" + line[2:] for line in lines if line.startswith("-A ") and line.endswith(f"-j {chain}")]
    out += [f"-F {chain}", f"-X {chain}", "COMMIT", ""]
    return "\n".join(out)


def _run(argv: list[str], stdin: str | None = None) -> str:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {p.stderr.strip()}")
    return p.stdout


def setup(network: str, container_id: str, pod_ip: str, subnet: str) -> None:
    rules = setup_rules(chain_name(network, container_id), pod_ip, subnet, comment(network, container_id))
    _run(["iptables-restore", "-w", "5", "--noflush"], rules)


def teardown(network: str, container_id: str) -> None:
    text = teardown_rules(_run(["iptables-save", "-t", "nat"]), chain_name(network, container_id))
    if text:
        _run(["iptables-restore", "-w", "5", "--noflush"], text)


def stale_chains(save: str, network: str, valid: set[str]) -> list[str]:
    """Our CNI-<hash> chains whose comment names this network and a container not in valid."""
    keep = {chain_name(network, cid) for cid in valid}
    prefix = f'name: \\"{network}\\" id: \\"'
    out: list[str] = []
    for line in save.splitlines():
        if not line.startswith("-A POSTROUTING ") or prefix not in line:
            continue
        chain = line.rsplit("-j ", 1)[-1].strip()
        if chain.startswith("CNI-") and chain not in keep and chain not in out:
            out.append(chain)
    return out


def gc(network: str, valid: set[str]) -> None:
    save = _run(["iptables-save", "-t", "nat"])
    for chain in stale_chains(save, network, valid):
        text = teardown_rules(save, chain)
        if text:
            _run(["iptables-restore", "-w", "5", "--noflush"], text)
