"""flanneld's masquerade rules: what each one leaves alone and what it NATs."""

from __future__ import annotations

from cni.flannel.masq import JUMPS, rules


def test_masquerade_rules_as_flanneld_writes_them() -> None:
    text = rules("10.244.0.0/16", "10.244.1.0/24")
    nat = [line for line in text.splitlines() if line.startswith("-A FLANNEL-POSTRTG")]
    assert nat == [
        '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
    ]
    assert text.count("COMMIT") == 2 and ":FLANNEL-FWD - [0:0]" in text
    assert [(t, c) for t, c, _ in JUMPS] == [("nat", "POSTROUTING"), ("filter", "FORWARD")]
