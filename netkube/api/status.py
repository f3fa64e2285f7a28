"""Kubernetes Status objects for errors, raised as ApiStatusError and rendered by the app."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


class ApiStatusError(Exception):
    """An error a client caused; carries the HTTP code and the Status body kubectl prints."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(plural: str, group: str) -> str:
    # upstream prints group-qualified resource names: deployments.apps "web" not found
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, name: str, group: str = "") -> ApiStatusError:
    return ApiStatusError(
        404, "NotFound", f'{_qualified(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, name: str, group: str = "") -> ApiStatusError:
    return ApiStatusError(
        409, "AlreadyExists", f'{_qualified(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, name: str, group: str = "", why: str | None = None) -> ApiStatusError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiStatusError(
        409, "Conflict", f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": plural},
    )


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def forbidden(plural: str, name: str, why: str, group: str = "") -> ApiStatusError:
    return ApiStatusError(
        403, "Forbidden", f'{_qualified(plural, group)} "{name}" is forbidden: {why}',
        {"name": name, "group": group, "kind": plural},
    )


def expired(message: str) -> ApiStatusError:
    return ApiStatusError(410, "Expired", message)


def too_large() -> ApiStatusError:
    return ApiStatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiStatusError:
    return ApiStatusError(405, "MethodNotAllowed", message)


class FieldError:
    """One cause of a 422 Invalid answer, worded as upstream field.Error prints it."""

    def __init__(self, field: str, kind: str, value: Any = None, detail: str = "") -> None:
        self.field, self.kind, self.value, self.detail = field, kind, value, detail

    def message(self) -> str:
        if self.kind == "FieldValueRequired":
            return "Required value" + (f": {self.detail}" if self.detail else "")
        if self.kind == "FieldValueNotSupported":
            return f"Unsupported value: {_go_value(self.value)}" + (f": {self.detail}" if self.detail else "")
        if self.kind == "FieldValueForbidden":
            return "Forbidden" + (f": {self.detail}" if self.detail else "")
        if self.kind == "FieldValueDuplicate":
            return f"Duplicate value: {_go_value(self.value)}"
        return f"Invalid value: {_go_value(self.value)}: {self.detail}"

    def render(self) -> str:
        return f"{self.field}: {self.message()}"


def _go_value(v: Any) -> str:
    # field.Error formats strings quoted and numbers bare, like Go's %#v / %d
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        inner = ", ".join(f'"{k}":"{val}"' for k, val in v.items())
        return "map[string]string{" + inner + "}"
    if isinstance(v, list):
        return "[]string{" + ", ".join(f'"{x}"' for x in v) + "}"
    return str(v)


def invalid(kind: str, name: str, group: str, errors: list[FieldError]) -> ApiStatusError:
    rendered = [e.render() for e in errors]
    body = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return ApiStatusError(
        422, "Invalid", f'{kind} "{name}" is invalid: {body}',
        {
            "name": name, "group": group, "kind": kind,
            "causes": [{"reason": e.kind, "message": e.message(), "field": e.field} for e in errors],
        },
    )
