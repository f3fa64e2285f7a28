"""Enter a pod's namespaces (or make new ones) and exec a command: the pause and container launcher.

Usage: python -m netkube.kubelet.nsexec [--cgroup PROCS_FILE ...] [--target PID] [--netns PATH]
       [--new-uts --hostname H] [--new-mount] [--bind SRC:DST ...] [--private-tmp] [--cwd DIR]
       [--ready-fd N] -- argv...

Stdlib only, so the kubelet can start it as `python -I -S nsexec.py` in a few milliseconds.
Exit codes follow the container convention: 125 setup failed, 126 not executable, 127 not found;
otherwise the exec'd command's own exit code (this process becomes it).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_NOSUID = 2
MS_NODEV = 4

def _load_libc() -> Any:
    """libc's setns, unshare, mount and sethostname through _ctypes, the C core of ctypes.

    Importing the ctypes package itself (its Python wrapper types and struct) costs about twice
    as much, and this process starts once per pause and per container. Same calls as
    ctypes.CDLL(None, use_errno=True): C int result, errno saved for get_errno().
    """
    import _ctypes

    class c_int(_ctypes._SimpleCData):
        _type_ = "i"

    class c_ulong(_ctypes._SimpleCData):
        _type_ = "L"

    class Func(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_int

    class Libc:
        _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)
        ulong = c_ulong
        get_errno = staticmethod(_ctypes.get_errno)

        def __getattr__(self, name: str) -> Any:
            func = Func((name, self))
            setattr(self, name, func)
            return func

    return Libc()


class _Lazy:
    """Loads libc on first use."""

    def __getattr__(self, name: str) -> Any:
        lib = _load_libc()
        globals()["_libc"] = lib
        return getattr(lib, name)


_libc: Any = _Lazy()


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = _libc.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int, what: str) -> None:
    _check(_libc.setns(fd, nstype), f"setns {what}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(src), enc(dst), enc(fstype), _libc.ulong(flags), enc(data)), f"mount {dst}")


def make_rprivate() -> None:
    # A fresh mount namespace inherits shared propagation from the host (systemd makes / shared);
    # without this our bind mounts would leak back into the host's /etc.
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def join_target(pid: int) -> None:
    """Join net, uts and mnt of PID; open every fd first so /proc stays reachable."""
    fds = []
    for ns, flag in (("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS), ("mnt", CLONE_NEWNS)):
        fds.append((os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC), flag, ns))
    for fd, flag, ns in fds:
        setns(fd, flag, f"{ns} of pid {pid}")
        os.close(fd)


class Options:
    """The parsed command line (same attributes as parse()'s argparse result)."""

    def __init__(self) -> None:
        self.target: int | None = None
        self.netns: str | None = None
        self.new_uts = False
        self.hostname: str | None = None
        self.new_mount = False
        self.bind: list[str] = []
        self.cgroup: list[str] = []
        self.private_tmp = False
        self.cwd: str | None = None
        self.ready_fd: int | None = None
        self.argv: list[str] = []


_FLAGS = {"--new-uts": "new_uts", "--new-mount": "new_mount", "--private-tmp": "private_tmp"}
_VALUES = {"--target": "target", "--netns": "netns", "--hostname": "hostname", "--cwd": "cwd",
           "--ready-fd": "ready_fd", "--bind": "bind", "--cgroup": "cgroup"}


def _fast_parse(argv: list[str]) -> Options | None:
    """The command lines the kubelet writes (--opt value ... -- argv) without importing argparse
    (and re, gettext ...): a few milliseconds per pod process. None: let argparse decide."""
    o = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            o.argv = argv[i + 1:]
            break
        if arg in _FLAGS:
            setattr(o, _FLAGS[arg], True)
            i += 1
            continue
        if arg not in _VALUES or i + 1 >= len(argv) or argv[i + 1].startswith("-"):
            return None
        value = argv[i + 1]
        if arg in ("--bind", "--cgroup"):
            getattr(o, _VALUES[arg]).append(value)
        elif arg in ("--target", "--ready-fd"):
            if not value.isdigit():
                return None
            setattr(o, _VALUES[arg], int(value))
        else:
            setattr(o, _VALUES[arg], value)
        i += 2
    else:
        return None
    if not o.argv or (o.target is not None and o.target <= 0):
        return None
    return o


def parse(argv: list[str]) -> Options:
    fast = _fast_parse(argv)
    if fast is not None:
        return fast
    import argparse

    p = argparse.ArgumentParser(prog="nsexec", description="run a command inside a netkube pod's namespaces")
    p.add_argument("--target", type=int, help="join net/uts/mnt namespaces of this pid")
    p.add_argument("--netns", help="join this network namespace (path such as /run/netns/x)")
    p.add_argument("--new-uts", action="store_true", help="unshare the UTS namespace")
    p.add_argument("--hostname", help="hostname to set (needs --new-uts)")
    p.add_argument("--new-mount", action="store_true", help="unshare the mount namespace, make / rprivate")
    p.add_argument("--bind", action="append", default=[], metavar="SRC:DST", help="bind mount SRC over DST")
    p.add_argument("--private-tmp", action="store_true", help="own mount namespace with a tmpfs on /tmp")
    p.add_argument("--cwd", help="working directory for the command")
    p.add_argument("--cgroup", action="append", default=[], metavar="PROCS_FILE",
                   help="join this cgroup (its cgroup.procs file) before anything else")
    p.add_argument("--ready-fd", type=int, help="write 'ok' to this fd once set up, then close it")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    ns = p.parse_args(argv)
    if ns.argv and ns.argv[0] == "--":
        ns.argv = ns.argv[1:]
    if ns.target is not None and ns.target <= 0:
        p.error(f"--target {ns.target}: give the pid of a running pod process")
    if not ns.argv:
        p.error("no command given; put it after --, e.g. nsexec --target 1234 -- sh")
    return ns  # type: ignore[return-value]  # same attributes as Options


def join_cgroups(files: list[str]) -> None:
    """Move this process into the container's cgroups while it is still our code: the command
    exec'd later starts under its limits, with no moment outside them."""
    me = str(os.getpid())
    for path in files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, me.encode())
        finally:
            os.close(fd)


def setup(ns: Options) -> None:
    join_cgroups(ns.cgroup)  # first: the host's /sys/fs/cgroup, before joining the pod's mounts
    if ns.target:
        join_target(ns.target)
    if ns.netns:
        fd = os.open(ns.netns, os.O_RDONLY | os.O_CLOEXEC)
        setns(fd, CLONE_NEWNET, f"net {ns.netns}")
        os.close(fd)
    if ns.new_uts:
        unshare(CLONE_NEWUTS)
        if ns.hostname:
            name = ns.hostname.encode()
            _check(_libc.sethostname(name, len(name)), "sethostname")
    if ns.new_mount:
        unshare(CLONE_NEWNS)
        make_rprivate()
    for spec in ns.bind:
        src, _, dst = spec.partition(":")
        mount(src, dst, None, MS_BIND)
    if ns.private_tmp:
        unshare(CLONE_NEWNS)
        make_rprivate()
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
    if ns.cwd:
        os.chdir(ns.cwd)


def main(argv: list[str] | None = None) -> int:
    ns = parse(sys.argv[1:] if argv is None else argv)
    try:
        setup(ns)
    except OSError as e:
        print(f"nsexec: {e}", file=sys.stderr)
        return 125
    if ns.ready_fd is not None:
        os.write(ns.ready_fd, b"ok")
        os.close(ns.ready_fd)
    try:
        os.execvpe(ns.argv[0], ns.argv, dict(os.environ))
    except FileNotFoundError:
        print(f"nsexec: {ns.argv[0]}: executable file not found in $PATH", file=sys.stderr)
        return 127
    except OSError as e:
        print(f"nsexec: cannot run {ns.argv[0]}: {e.strerror}", file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main())
