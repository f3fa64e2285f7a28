"""A cluster's own Docker engine (Debian's dockerd) and the local image the docker runtime runs.

dockerd is started so that it leaves the host alone: no iptables or ip6tables rules, no docker0
bridge, no ip_forward or masquerade changes, and its own data root, exec root, pid file and unix
socket. Its pid (and its managed containerd's) are recorded, so `netkube down` stops exactly them.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from netkube.lab.records import Records

BUSYBOX_IMAGE = "netkube/busybox:latest"
BUSYBOX_BINARY = "/bin/busybox"
EXEC_ROOT_BASE = Path("/run/netkube-docker")  # short: containerd's sockets live below it (108-byte limit)
HINT = "install Debian's docker.io (`sudo scripts/setup` does) so that dockerd and containerd are on PATH"
# Paths of the real images' web roots, so `kubectl exec` finds the page where a user expects it.
WEB_ROOTS = {"httpd": "usr/local/apache2/htdocs", "nginx": "usr/share/nginx/html"}
# Scripts named like the real images' entrypoints; busybox httpd serves both pages.
SCRIPTS = {
    "usr/local/bin/httpd-foreground": "#!/bin/sh\nexec httpd -f -p 80 -h /usr/local/apache2/htdocs\n",
    "usr/sbin/nginx": "#!/bin/sh\n# nginx -g 'daemon off;': the flags are nginx's, the server is busybox httpd\n"
                      "exec httpd -f -p 80 -h /usr/share/nginx/html\n",
}


class EngineError(RuntimeError):
    """dockerd could not be started or reached; the message says why (and the end of its log)."""


def engine_dirs(state_dir: Path, name: str) -> tuple[Path, Path]:
    """(data root, exec root) of the cluster's engine."""
    return state_dir / "docker", EXEC_ROOT_BASE / name


def socket_url(exec_root: Path) -> str:
    return f"unix://{exec_root / 'docker.sock'}"


def dockerd_argv(data_root: Path, exec_root: Path) -> list[str]:
    binary = shutil.which("dockerd")
    if binary is None:
        raise EngineError(f"dockerd is not installed; {HINT}")
    return [binary, "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
            "--ip-masq=false", "--userland-proxy=false", "--data-root", str(data_root),
            "--exec-root", str(exec_root), "--pidfile", str(exec_root / "dockerd.pid"),
            "-H", socket_url(exec_root), "--shutdown-timeout", "1", "--log-level", "warn"]


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def client(url: str, timeout: float = 60.0) -> Any:
    import docker  # PyPI docker, imported only where the docker runtime is used

    return docker.DockerClient(base_url=url, timeout=int(timeout))


def wait_engine(url: str, pid: int, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            raise EngineError(f"dockerd exited during start-up; the end of its log:\n{_tail(log_path)}")
        try:
            c = client(url, 5)
            try:
                c.ping()
                return
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.1)
    raise EngineError(f"dockerd did not answer at {url} within {timeout:.0f}s ({last}); log:\n{_tail(log_path)}")


def _zombie(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == pid
    except ChildProcessError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_engine(data_root: Path, exec_root: Path, log_path: Path, records: Records | None) -> tuple[str, int]:
    """Start dockerd; returns (socket URL, pid). With records, its pid, its containerd's and the exec
    root are recorded (`netkube down` stops and removes them); without, the caller stops it."""
    argv = dockerd_argv(data_root, exec_root)
    exec_root.mkdir(parents=True, exist_ok=True)
    data_root.mkdir(parents=True, exist_ok=True)
    if records is not None:
        records.add("path", path=str(exec_root))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    if records is not None:
        records.add_process(proc.pid, "dockerd")
    url = socket_url(exec_root)
    wait_engine(url, proc.pid, log_path)
    if records is not None:
        for child in children(proc.pid):  # the containerd dockerd manages
            records.add_process(child, "containerd (dockerd)")
    return url, proc.pid


def stop_recorded_engines(records: Records, timeout: float = 20.0) -> int:
    """Stop the dockerd a cluster recorded before the rest of its records go: on SIGTERM it stops
    its containers, unmounts their filesystems and ends its containerd and shims, which a SIGKILL
    (the generic record cleanup after its grace period) would leave behind. Returns how many."""
    from netkube.lab.records import process_start_time

    engines = [r for r in records.live() if r.kind == "process" and r.data.get("what") == "dockerd"
               and process_start_time(r.data["pid"]) == r.data["start"]]
    for r in engines:
        stop_engine(int(r.data["pid"]), timeout)
    return len(engines)


def remove_cluster_containers(url: str, cluster: str) -> int:
    """With an engine netkube did not start (--docker-host): remove the cluster's containers."""
    try:
        c = client(url, 30)
    except Exception:  # noqa: BLE001 - no engine, nothing to remove
        return 0
    removed = 0
    try:
        for ct in c.api.containers(all=True, filters={"label": f"netkube.cluster={cluster}"}):
            c.api.remove_container(ct["Id"], force=True)
            removed += 1
    except Exception:  # noqa: BLE001 - engine gone meanwhile
        pass
    finally:
        c.close()
    return removed


def stop_engine(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM dockerd (it stops its containers and containerd), SIGKILL if it hangs; only this pid."""
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o644,
         link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, mode
    else:
        info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def image_context(busybox: str = BUSYBOX_BINARY) -> bytes:
    """The build context of netkube/busybox: FROM scratch, busybox-static with one link per applet,
    the web roots and entrypoint scripts of the httpd and nginx images, and lib links so a container
    given the host's /usr read-only (netkube's Python images) finds the dynamic loader."""
    from netkube.images.assets import applets

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dockerfile = b'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["sh"]\n'
        _add(tar, "Dockerfile", dockerfile)
        for d in ("rootfs", "rootfs/bin", "rootfs/etc", "rootfs/root", "rootfs/usr", "rootfs/usr/local",
                  "rootfs/usr/local/bin", "rootfs/usr/sbin", "rootfs/var", "rootfs/var/run"):
            _add(tar, d, mode=0o755)
        _add(tar, "rootfs/tmp", mode=0o1777)
        _add(tar, "rootfs/bin/busybox", Path(busybox).read_bytes(), 0o755)
        for name in applets(busybox):
            if name != "busybox":
                _add(tar, f"rootfs/bin/{name}", link="busybox")
        _add(tar, "rootfs/lib", link="usr/lib")
        _add(tar, "rootfs/lib64", link="usr/lib64")
        _add(tar, "rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        _add(tar, "rootfs/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        www = resources.files("netkube.images") / "www"
        for kind, root in WEB_ROOTS.items():
            parts = f"rootfs/{root}".split("/")
            for i in range(len(parts)):
                prefix = "/".join(parts[: i + 1])
                if prefix not in tar.getnames():
                    _add(tar, prefix, mode=0o755)
            _add(tar, f"rootfs/{root}/index.html", (www / kind / "index.html").read_bytes())
        for path, text in SCRIPTS.items():
            _add(tar, f"rootfs/{path}", text.encode(), 0o755)
    return buf.getvalue()


def ensure_image(url: str, tag: str = BUSYBOX_IMAGE) -> str:
    """Build netkube/busybox in the engine unless it is there; returns the image id."""
    import docker

    c = client(url, 120)
    try:
        try:
            return str(c.images.get(tag).id)
        except docker.errors.ImageNotFound:
            pass
        image, _ = c.images.build(fileobj=io.BytesIO(image_context()), custom_context=True, tag=tag, rm=True)
        return str(image.id)
    finally:
        c.close()
