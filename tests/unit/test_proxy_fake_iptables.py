"""The fake iptables refuses what the kernel refuses and prints what iptables-save prints."""

from __future__ import annotations

import pytest

from proxy_modes.kernel.iptables import IptablesError
from proxy_modes.kernel.iptables_fake import FakeIptables


def test_save_canonical_form_matches_real_iptables_save() -> None:
    # Expected lines were read back from iptables-save v1.8.9 (nf_tables) on this machine.
    f = FakeIptables()
    f.restore("""*nat
:KUBE-SVC-X - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-X -m comment --comment ns1/svc1:p80 -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-A
-A KUBE-SEP-A -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-A -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-A --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-A -p udp --dport 53 -j RETURN
COMMIT
""")
    lines = f.save("nat").splitlines()
    assert lines[1:6] == ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                          ":POSTROUTING ACCEPT [0:0]"]
    assert lines[6:9] == [":KUBE-MARK-MASQ - [0:0]", ":KUBE-SEP-A - [0:0]", ":KUBE-SVC-X - [0:0]"]
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in lines
    assert ('-A KUBE-SVC-X ! -s 10.244.0.0/16 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" '
            "-m tcp --dport 80 -j KUBE-MARK-MASQ") in lines
    assert ('-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80" -m statistic --mode random --probability 0.33333333349 '
            "-j KUBE-SEP-A") in lines
    assert '-A KUBE-SEP-A -s 10.180.0.1/32 -m comment --comment "ns1/svc1:p80" -j KUBE-MARK-MASQ' in lines
    assert ('-A KUBE-SEP-A -p tcp -m comment --comment "ns1/svc1:p80" -m recent --set --name KUBE-SEP-A --mask '
            "255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.1:80") in lines
    assert "-A KUBE-SEP-A -p udp -m udp --dport 53 -j RETURN" in lines


def test_refuses_jump_to_missing_chain_and_keeps_table() -> None:
    f = FakeIptables()
    f.restore("*nat\n:KUBE-A - [0:0]\nCOMMIT\n")
    before = f.save("nat")
    with pytest.raises(IptablesError, match="Chain 'KUBE-NOPE' does not exist"):
        f.restore("*nat\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-NOPE\nCOMMIT\n")
    assert f.save("nat") == before  # the failed table's batch did not commit


def test_refuses_deleting_referenced_chain() -> None:
    f = FakeIptables()
    f.restore("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\nCOMMIT\n")
    with pytest.raises(IptablesError, match="Device or resource busy"):
        f.restore("*nat\n-X KUBE-B\nCOMMIT\n")
    # Flushing the referrer in the same batch first makes the delete legal (what the proxier does).
    f.restore("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-X KUBE-B\nCOMMIT\n")
    assert not f.chain_exists("nat", "KUBE-B")


def test_refuses_missing_commit_unknown_match_and_missing_chain() -> None:
    f = FakeIptables()
    with pytest.raises(IptablesError, match="COMMIT expected"):
        f.restore("*nat\n:KUBE-A - [0:0]\n")
    assert not f.chain_exists("nat", "KUBE-A")
    with pytest.raises(IptablesError, match="Couldn't load match `foo'"):
        f.restore("*nat\n:KUBE-A - [0:0]\n-A KUBE-A -m foo --x 1 -j RETURN\nCOMMIT\n")
    with pytest.raises(IptablesError, match="No chain/target/match"):
        f.restore("*nat\n-A KUBE-GONE -j RETURN\nCOMMIT\n")
    with pytest.raises(IptablesError, match="Bad rule"):
        f.restore("*filter\n-D INPUT -j ACCEPT\nCOMMIT\n")


def test_chain_line_flushes_existing_chain_with_noflush() -> None:
    f = FakeIptables()
    f.restore("*filter\n:KUBE-A - [0:0]\n-A KUBE-A -j ACCEPT\n-A INPUT -j KUBE-A\nCOMMIT\n")
    f.restore("*filter\n:KUBE-A - [0:0]\n-A KUBE-A -j DROP\nCOMMIT\n")
    assert f.rules("filter", "KUBE-A") == ["-j DROP"]
    assert f.rules("filter", "INPUT") == ["-j KUBE-A"]  # other chains untouched by --noflush


def test_ensure_rule_is_idempotent_and_prepends() -> None:
    f = FakeIptables()
    f.restore("*nat\n-A PREROUTING -j RETURN\nCOMMIT\n")
    f.ensure_chain("nat", "KUBE-SERVICES")
    args = ["-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"]
    assert f.ensure_rule("prepend", "nat", "PREROUTING", args) is False
    assert f.ensure_rule("prepend", "nat", "PREROUTING", args) is True
    assert f.rules("nat", "PREROUTING") == ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                                            "-j RETURN"]
    assert f.delete_rule("nat", "PREROUTING", args) is True
    assert f.delete_rule("nat", "PREROUTING", args) is False
