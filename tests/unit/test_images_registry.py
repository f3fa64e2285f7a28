"""resolve() over real-world references, Kubernetes command/args rules and the prepared assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netkube.images.registry import CommandNotFound, ImageNotFound, prepare_assets, resolve

PY = "/opt/py/bin/python"
ASSETS = Path("/var/lib/netkube/x/assets")
POD = {"metadata": {"name": "web-7d9f", "namespace": "default"}, "spec": {}}


@pytest.mark.parametrize("image,kind,repo,tag", [
    ("httpd", "httpd", "docker.io/library/httpd", "latest"),
    ("httpd:2.4", "httpd", "docker.io/library/httpd", "2.4"),
    ("docker.io/library/httpd:latest", "httpd", "docker.io/library/httpd", "latest"),
    ("nginx:1.25", "nginx", "docker.io/library/nginx", "1.25"),
    ("nginx:1.14.2", "nginx", "docker.io/library/nginx", "1.14.2"),
    ("nginx@sha256:" + "ab" * 32, "nginx", "docker.io/library/nginx", ""),
    ("busybox:1.36", "busybox", "docker.io/library/busybox", "1.36"),
    ("gcr.io/google-samples/kubernetes-bootcamp:v1", "kubernetes-bootcamp",
     "gcr.io/google-samples/kubernetes-bootcamp", "v1"),
    ("registry.k8s.io/e2e-test-images/agnhost:2.39", "agnhost", "registry.k8s.io/e2e-test-images/agnhost", "2.39"),
    ("registry.k8s.io/coredns/coredns:v1.11.3", "coredns", "registry.k8s.io/coredns/coredns", "v1.11.3"),
])
def test_resolve_known(image: str, kind: str, repo: str, tag: str) -> None:
    img = resolve(image)
    assert (img.kind, img.ref.repository, img.ref.tag) == (kind, repo, tag)


@pytest.mark.parametrize("image,fragment,reason", [
    ("foo:1.0", 'Failed to pull image "foo:1.0": ', "ErrImagePull"),
    ("nginx:1.161", "docker.io/library/nginx:1.161: not found", "ErrImagePull"),  # the docs' rollout typo
    ("quay.io/library/httpd", "quay.io/library/httpd:latest: not found", "ErrImagePull"),
    ("Nginx", "invalid reference format", "InvalidImageName"),
    ("nginx:", "invalid reference format", "InvalidImageName"),
])
def test_resolve_unknown(image: str, fragment: str, reason: str) -> None:
    with pytest.raises(ImageNotFound) as exc:
        resolve(image)
    assert fragment in str(exc.value) and exc.value.reason == reason
    assert str(exc.value).startswith(f'Failed to pull image "{image}"')


def argv(image: str, container: dict) -> list[str]:
    return resolve(image).command(container, POD, ASSETS, PY)[0]


def test_defaults_per_image() -> None:
    assert argv("httpd", {}) == ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", f"{ASSETS}/www/httpd"]
    assert argv("nginx", {}) == ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", f"{ASSETS}/www/nginx"]
    assert argv("busybox", {}) == [f"{ASSETS}/bin/sh"]
    assert argv("gcr.io/google-samples/kubernetes-bootcamp:v1", {}) == [PY, "-m", "netkube.images.bootcamp"]
    assert argv("gcr.io/google-samples/kubernetes-bootcamp:v2", {})[-2:] == ["--version", "2"]
    assert argv("registry.k8s.io/e2e-test-images/agnhost:2.39", {}) == [PY, "-m", "netkube.images.agnhost", "netexec"]


def test_command_replaces_entrypoint_and_drops_cmd() -> None:
    agn = "registry.k8s.io/e2e-test-images/agnhost:2.39"
    assert argv(agn, {"args": ["serve-hostname"]}) == [PY, "-m", "netkube.images.agnhost", "serve-hostname"]
    # The agnhost binary path from upstream manifests maps to our program, keeping its arguments.
    assert argv(agn, {"command": ["/agnhost", "netexec", "--http-port=9000"]}) == [
        PY, "-m", "netkube.images.agnhost", "netexec", "--http-port=9000"]
    assert argv("busybox", {"command": ["/bin/sh", "-c"], "args": ["echo hi"]}) == ["/bin/sh", "-c", "echo hi"]
    assert argv("registry.k8s.io/coredns/coredns:v1.11.3", {"args": ["-conf", "/etc/coredns/Corefile"]}) == [
        PY, "-m", "netkube.dns", "-conf", "/etc/coredns/Corefile"]
    assert argv("nginx", {"command": ["nginx", "-g", "daemon off;"]})[:2] == ["/bin/busybox", "httpd"]


def test_env_var_expansion_in_args() -> None:
    c = {"command": ["/bin/sh", "-c"], "args": ["echo $(GREETING) $(MISSING) $$(GREETING)"],
         "env": [{"name": "GREETING", "value": "hello"}]}
    assert argv("busybox", c)[-1] == "echo hello $(MISSING) $(GREETING)"


def test_env_puts_applets_first_on_path() -> None:
    _, env = resolve("busybox").command({}, POD, ASSETS, PY)
    assert env["PATH"].split(":")[0] == f"{ASSETS}/bin" and env["HOSTNAME"] == "web-7d9f"
    _, env = resolve("registry.k8s.io/e2e-test-images/agnhost:2.39").command({}, POD, ASSETS, PY)
    assert (Path(env["PYTHONPATH"]) / "netkube" / "images" / "agnhost.py").is_file()


def test_bare_command_resolved_on_path(tmp_path: Path) -> None:
    prepare_assets(tmp_path)
    args, _ = resolve("busybox").command({"command": ["sleep", "3600"]}, POD, tmp_path, PY)
    assert args == [str(tmp_path / "bin" / "sleep"), "3600"]
    with pytest.raises(CommandNotFound, match='exec: "no-such-tool": executable file not found in \\$PATH'):
        resolve("busybox").command({"command": ["no-such-tool"]}, POD, tmp_path, PY)


def test_prepare_assets_idempotent(tmp_path: Path) -> None:
    prepare_assets(tmp_path)
    for applet in ("sh", "wget", "nslookup", "sleep", "touch", "httpd"):
        link = tmp_path / "bin" / applet
        assert link.is_symlink() and os.readlink(link) == "/bin/busybox"
    (tmp_path / "bin" / "sh").unlink()
    (tmp_path / "www" / "httpd" / "index.html").write_text("tampered")
    prepare_assets(tmp_path)
    assert os.readlink(tmp_path / "bin" / "sh") == "/bin/busybox"
    assert (tmp_path / "www" / "httpd" / "index.html").read_bytes() == b"<html><body><h1>It works!</h1></body></html>\n"
    nginx = (tmp_path / "www" / "nginx" / "index.html").read_text()
    assert "<title>Welcome to nginx!</title>" in nginx and len(nginx.encode()) == 615
    assert not [p for p in (tmp_path / "bin").iterdir() if p.name.startswith(".")]
