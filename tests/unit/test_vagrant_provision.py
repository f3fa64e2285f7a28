"""The lab's provisioning scripts parse, and the join script never runs the shared file as a shell line."""

from __future__ import annotations

import subprocess
from pathlib import Path

PROVISION = Path(__file__).resolve().parents[2] / "vagrant" / "provision"


def test_scripts_parse() -> None:
    for script in sorted(PROVISION.glob("*.sh")):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_join_script_refuses_a_file_that_is_not_a_join_command(tmp_path: Path) -> None:
    (tmp_path / "join-command").write_text("touch /tmp/should-not-run; netkube join x\n")
    p = subprocess.run(["bash", str(PROVISION / "join.sh")], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "NETKUBE_SHARED": str(tmp_path),
                            "NETKUBE_CLUSTER": "no-such-cluster-here", "NETKUBE_JOIN_WAIT": "1"})
    assert p.returncode == 1 and "is not a `netkube join` command" in p.stderr
