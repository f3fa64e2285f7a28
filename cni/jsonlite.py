"""json.loads / json.dumps for the plugin processes without importing the json package.

json.decoder and json.encoder compile regular expressions at import, which pulls in re and enum:
about 5 ms of every plugin start. The C accelerator `_json` that the json package itself uses needs
none of that, so these functions call its scanner and encoder directly with json's default
settings: same results, same output text. Anything off the plain path (BOMs, UTF-16/32 input,
invalid documents, unserialisable objects, no `_json`) is handed to the json package, so errors
and edge cases are exactly json's.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

_WS = " \t\n\r"
_scanner = None
_encoder = None


class _Context:
    """The attributes _json.make_scanner reads from a JSONDecoder, with json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


def _fast_loads(s: str) -> Any:
    global _scanner
    if _scanner is None:
        _scanner = _json.make_scanner(_Context())
    idx = len(s) - len(s.lstrip(_WS))
    obj, end = _scanner(s, idx)
    if s[end:].strip(_WS):
        raise ValueError("extra data")
    return obj


def loads(s: str | bytes | bytearray) -> Any:
    """json.loads(s)."""
    if _json is not None:
        try:
            if isinstance(s, (bytes, bytearray)):
                head = bytes(s[:4])
                # json.detect_encoding says UTF-8 exactly when there is no BOM and no NUL up front.
                if b"\x00" not in head and not head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
                    return _fast_loads(bytes(s).decode("utf-8", "surrogatepass"))
            elif isinstance(s, str) and not s.startswith("\ufeff"):
                return _fast_loads(s)
        except Exception:  # noqa: S110 - json.loads below raises the exact error
            pass
    import json

    return json.loads(s)


def dumps(obj: Any) -> str:
    """json.dumps(obj) with the default settings."""
    global _encoder
    if _json is not None:
        try:
            if isinstance(obj, str):
                return _json.encode_basestring_ascii(obj)
            if _encoder is None:
                _encoder = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                                              ": ", ", ", False, False, True)
            return "".join(_encoder(obj, 0))
        except Exception:  # noqa: S110 - json.dumps below raises the exact error
            pass
    import json

    return json.dumps(obj)


def _default(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def load(fp: Any) -> Any:
    """json.load(fp)."""
    return loads(fp.read())


def dump(obj: Any, fp: Any) -> None:
    """json.dump(obj, fp): the same text, written in one piece."""
    fp.write(dumps(obj))
