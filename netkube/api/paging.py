"""LIST chunking as upstream does it: `limit` and `continue`, the opaque token naming the snapshot
revision and the key to resume at, remainingItemCount, and 410 Expired for a compacted snapshot."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .status import ApiStatusError, bad_request

Obj = dict[str, Any]
TOKEN_VERSION = "meta.k8s.io/v1"
# upstream's wording (staging/src/k8s.io/apiserver/pkg/storage/etcd3: handleCompactedErrorForPaging)
EXPIRED = ("The provided continue parameter is too old to display a consistent list result. You can start a "
           "new list without the continue parameter, or use the continue token in this response to retrieve "
           "the remainder of the results. Continuing with the provided token results in an inconsistent list "
           "- objects that were created, modified, or deleted between the time the first chunk was returned "
           "and now may show up in the list.")


def encode(rev: int, start: str) -> str:
    """The token: unpadded URL-safe base64 of {"v","rv","start"}; start is relative to the list's prefix
    and rev -1 means "the latest revision" (the inconsistent token an Expired answer carries)."""
    raw = json.dumps({"v": TOKEN_VERSION, "rv": rev, "start": start}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> tuple[int, str]:
    """(rev, start) from a token; 400 BadRequest for anything this server did not issue."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("v") != TOKEN_VERSION:
            raise ValueError("unsupported version")
        rev, start = data.get("rv"), data.get("start")
        if not isinstance(rev, int) or isinstance(rev, bool) or not isinstance(start, str):
            raise ValueError("malformed")
        if start.startswith("/") or ".." in start.split("/"):
            raise ValueError("start is not a relative key")
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise bad_request(f"invalid continue token: {e}") from None
    return rev, start


def parse_limit(value: str | None) -> int:
    """limit=N (N <= 0 or absent: everything)."""
    if value in (None, ""):
        return 0
    try:
        return max(int(value), 0)
    except ValueError:
        raise bad_request(f"invalid limit {value!r}: use a whole number of objects") from None


class ContinueExpired(ApiStatusError):
    """410 Expired whose Status carries a token to go on from the same key at the latest revision."""

    def __init__(self, start: str) -> None:
        super().__init__(410, "Expired", EXPIRED)
        self.token = encode(-1, start)

    def status(self) -> Obj:
        body = super().status()
        body["metadata"] = {"continue": self.token}
        return body
