"""Starting netkube's long-running processes detached from the CLI, each one recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from netkube.lab.records import Records


def python_module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def spawn_detached(
    argv: list[str], log_path: Path, records: Records, what: str, netns: str | None = None
) -> int:
    """Start argv in its own session (it outlives the CLI), output appended to log_path."""
    if netns:
        # nsenter joins only the network namespace and execs argv in place (the pid we record is
        # the component's own). `ip netns exec` would also give it a private mount namespace, and
        # the pod namespaces the kubelet mounts there would then be invisible to the host.
        argv = ["nsenter", f"--net=/var/run/netns/{netns}", "--", *argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    records.add_process(proc.pid, what)
    return proc.pid
