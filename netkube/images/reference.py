"""Parse image references the way containerd normalises them (docker.io/library/ defaults, tags, digests)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# distribution/reference grammar, trimmed: lower-case path components, optional tag, optional digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_REF = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}))?$"
)


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True)
class ImageRef:
    repository: str  # fully qualified, e.g. docker.io/library/httpd
    tag: str  # "latest" when neither tag nor digest was given
    digest: str | None

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(image: str) -> ImageRef:
    m = _REF.match(image.strip())
    if not m or not image.strip():
        raise InvalidReference(f'couldn\'t parse image name "{image}": invalid reference format')
    domain, path = m["domain"], m["path"]
    # Like docker: the first component is a registry only if it looks like a host name.
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        path, domain = f"{domain}/{path}", None
    if domain is None:
        domain = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    if domain == "index.docker.io":
        domain = "docker.io"
    tag = m["tag"] or ("" if m["digest"] else "latest")
    return ImageRef(f"{domain}/{path}", tag, m["digest"])
