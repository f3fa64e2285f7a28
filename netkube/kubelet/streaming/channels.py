"""The v4/v5.channel.k8s.io WebSocket framing: one channel byte, then the data."""

from __future__ import annotations

import json
from typing import Any

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5 only: [255, channel] means the peer closed that channel (stdin EOF)
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
# Preference order; kubectl 1.32 offers v5 first. Older protocols carry no exit-code Status.
PROTOCOLS = (V5, V4)


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes([channel]) + data


def success() -> bytes:
    return json.dumps({"metadata": {}, "status": "Success"}).encode()


def exit_status(code: int, argv: list[str]) -> bytes:
    """The Status a kubelet writes on the error channel; kubectl exits with causes[ExitCode]."""
    if code == 0:
        return success()
    body: dict[str, Any] = {
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {_go_list(argv)}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }
    return json.dumps(body).encode()


def failure(message: str) -> bytes:
    return json.dumps({"metadata": {}, "status": "Failure", "message": message,
                       "reason": "InternalError", "code": 500}).encode()


def _go_list(argv: list[str]) -> str:
    return "[" + " ".join(argv) + "]"  # Go's %v of a []string


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(cols, rows) from a TerminalSize JSON such as {"Width":80,"Height":24}."""
    try:
        size = json.loads(data)
        return int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
