"""vagrant/Vagrantfile passes `vagrant validate --ignore-provider` (Debian's vagrant, installed here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns  # root: it may install Debian's vagrant package

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"


def _vagrant() -> str:
    found = shutil.which("vagrant")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        p = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "vagrant"],
                           capture_output=True, text=True, timeout=600, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"vagrant is not installed and apt-get could not install it: {e}")
    if p.returncode != 0 or not shutil.which("vagrant"):
        pytest.skip(f"vagrant is not installed and `apt-get install vagrant` failed: {p.stderr.strip()[-300:]}")
    return str(shutil.which("vagrant"))


def test_vagrantfile_validates() -> None:
    vagrant = _vagrant()
    home = VAGRANT_DIR.parent / ".vagrant-test-home"  # vagrant writes its home; keep it out of ~
    try:
        p = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=VAGRANT_DIR, capture_output=True,
                           text=True, timeout=120, env={**os.environ, "VAGRANT_HOME": str(home)})
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert p.returncode == 0 and "Vagrantfile validated successfully" in p.stdout, p.stdout + p.stderr
    # a lab setting is read from the environment: a bad one is a Ruby error, not a silent default
    bad = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=VAGRANT_DIR, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "VAGRANT_HOME": str(home), "NETKUBE_CPUS": "two"})
    shutil.rmtree(home, ignore_errors=True)
    assert bad.returncode != 0
