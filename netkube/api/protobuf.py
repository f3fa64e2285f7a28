"""Decode the Kubernetes protobuf request bodies kubectl's typed clients send (kubectl create ...).

client-go's clientset defaults to Content-Type application/vnd.kubernetes.protobuf; the body is
"k8s\\0" + runtime.Unknown{typeMeta, raw}. Only the kinds and fields those commands fill are
mapped (field numbers from k8s.io/api generated.proto); unknown fields are skipped.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .status import ApiStatusError

Obj = dict[str, Any]
MAGIC = b"k8s\x00"

# schema: field number -> (json name, type, sub-schema name)
S: dict[str, dict[int, tuple[str, str, str]]] = {
    "Unknown": {1: ("typeMeta", "msg", "TypeMeta"), 2: ("raw", "bytes", "")},
    "TypeMeta": {1: ("apiVersion", "str", ""), 2: ("kind", "str", "")},
    "Time": {1: ("seconds", "int", ""), 2: ("nanos", "int", "")},
    "ObjectMeta": {1: ("name", "str", ""), 2: ("generateName", "str", ""), 3: ("namespace", "str", ""),
                   6: ("resourceVersion", "str", ""), 11: ("labels", "map", ""), 12: ("annotations", "map", ""),
                   14: ("finalizers", "rstr", "")},
    "Deployment": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "DeploymentSpec")},
    "DeploymentSpec": {1: ("replicas", "int", ""), 2: ("selector", "msg", "LabelSelector"),
                       3: ("template", "msg", "PodTemplateSpec"), 4: ("strategy", "msg", "Strategy"),
                       5: ("minReadySeconds", "int", ""), 6: ("revisionHistoryLimit", "int", ""),
                       9: ("progressDeadlineSeconds", "int", "")},
    "Strategy": {1: ("type", "str", "")},
    "LabelSelector": {1: ("matchLabels", "map", "")},
    "PodTemplateSpec": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "PodSpec")},
    "PodSpec": {2: ("containers", "rmsg", "Container"), 3: ("restartPolicy", "str", ""),
                4: ("terminationGracePeriodSeconds", "int", ""), 6: ("dnsPolicy", "str", ""),
                7: ("nodeSelector", "map", ""), 8: ("serviceAccountName", "str", ""),
                10: ("nodeName", "str", ""), 11: ("hostNetwork", "bool", ""),
                20: ("initContainers", "rmsg", "Container")},
    "Container": {1: ("name", "str", ""), 2: ("image", "str", ""), 3: ("command", "rstr", ""),
                  4: ("args", "rstr", ""), 5: ("workingDir", "str", ""), 6: ("ports", "rmsg", "ContainerPort"),
                  7: ("env", "rmsg", "EnvVar"), 8: ("resources", "msg", "Resources"),
                  13: ("terminationMessagePath", "str", ""), 14: ("imagePullPolicy", "str", ""),
                  20: ("terminationMessagePolicy", "str", "")},
    "Resources": {1: ("limits", "qmap", ""), 2: ("requests", "qmap", "")},
    "ContainerPort": {1: ("name", "str", ""), 2: ("hostPort", "int", ""), 3: ("containerPort", "int", ""),
                      4: ("protocol", "str", "")},
    "EnvVar": {1: ("name", "str", ""), 2: ("value", "str", "")},
    "Namespace": {1: ("metadata", "msg", "ObjectMeta")},
    "ConfigMap": {1: ("metadata", "msg", "ObjectMeta"), 2: ("data", "map", ""), 3: ("binaryData", "bmap", ""),
                  4: ("immutable", "bool", "")},
    "Secret": {1: ("metadata", "msg", "ObjectMeta"), 2: ("data", "bmap", ""), 3: ("type", "str", ""),
               4: ("stringData", "map", ""), 5: ("immutable", "bool", "")},
    "ServiceAccount": {1: ("metadata", "msg", "ObjectMeta")},
    "Service": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "ServiceSpec")},
    "ServiceSpec": {1: ("ports", "rmsg", "ServicePort"), 2: ("selector", "map", ""), 3: ("clusterIP", "str", ""),
                    4: ("type", "str", ""), 5: ("externalIPs", "rstr", ""), 7: ("sessionAffinity", "str", ""),
                    10: ("externalName", "str", "")},
    "ServicePort": {1: ("name", "str", ""), 2: ("protocol", "str", ""), 3: ("port", "int", ""),
                    4: ("targetPort", "ios", ""), 5: ("nodePort", "int", "")},
    "Eviction": {1: ("metadata", "msg", "ObjectMeta"), 2: ("deleteOptions", "msg", "DeleteOptions")},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int", ""), 2: ("preconditions", "msg", "Preconditions"),
                      3: ("orphanDependents", "bool", ""), 4: ("propagationPolicy", "str", ""),
                      5: ("dryRun", "rstr", "")},
    "Preconditions": {1: ("uid", "str", ""), 2: ("resourceVersion", "str", "")},
    "IntOrString": {1: ("type", "int", ""), 2: ("intVal", "int", ""), 3: ("strVal", "str", "")},
    "Pair": {1: ("key", "bytes", ""), 2: ("value", "bytes", "")},
    "Quantity": {1: ("string", "str", "")},
}
# *int32/*int64 fields: present means set, even when 0
POINTER_INTS = {"replicas", "revisionHistoryLimit", "progressDeadlineSeconds", "terminationGracePeriodSeconds",
                "type", "intVal", "gracePeriodSeconds"}
TOP = {"Deployment", "Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Eviction", "DeleteOptions"}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7


def _fields(b: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(b):
        tag, i = _varint(b, i)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = _varint(b, i)
            out.append((num, v))
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated field")
            out.append((num, b[i:i + n]))
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def decode(b: bytes, schema: str) -> Obj:
    out: Obj = {}
    for num, v in _fields(b):
        if num not in S[schema]:
            continue
        name, typ, sub = S[schema][num]
        if typ == "str":
            if v:  # Go emits empty non-pointer strings; JSON (omitempty) would not
                out[name] = bytes(v).decode()  # type: ignore[arg-type]
        elif typ == "bytes":
            out[name] = v
        elif typ == "int":
            if v or name in POINTER_INTS:
                out[name] = _signed(int(v))  # type: ignore[arg-type]
        elif typ == "bool":
            if v:
                out[name] = True
        elif typ == "msg":
            out[name] = decode(v, sub)  # type: ignore[arg-type]
        elif typ == "rmsg":
            out.setdefault(name, []).append(decode(v, sub))  # type: ignore[arg-type]
        elif typ == "rstr":
            out.setdefault(name, []).append(bytes(v).decode())  # type: ignore[arg-type]
        elif typ in ("map", "bmap", "qmap"):
            pair = decode(v, "Pair")  # type: ignore[arg-type]
            key, val = pair.get("key", b"").decode(), pair.get("value", b"")
            if typ == "map":
                val = val.decode()
            elif typ == "bmap":
                val = base64.b64encode(val).decode()  # JSON form of []byte
            else:
                val = decode(val, "Quantity").get("string", "")
            out.setdefault(name, {})[key] = val
        elif typ == "ios":
            ios = decode(v, "IntOrString")  # type: ignore[arg-type]
            out[name] = ios.get("strVal", "") if ios.get("type") == 1 else ios.get("intVal", 0)
    return out


def decode_object(body: bytes) -> Obj:
    if not body.startswith(MAGIC):
        raise ApiStatusError(400, "BadRequest", "protobuf body lacks the k8s\\0 envelope")
    try:
        unknown = decode(body[len(MAGIC):], "Unknown")
        tm = unknown.get("typeMeta", {})
        kind = tm.get("kind", "")
        if kind not in TOP:
            raise ApiStatusError(415, "UnsupportedMediaType",
                                 f"protobuf bodies for kind {kind!r} are not supported by netkube; send JSON "
                                 "(for example `kubectl apply -f` with a manifest)")
        obj = decode(unknown.get("raw", b""), kind)
    except (ValueError, UnicodeDecodeError, KeyError) as e:
        raise ApiStatusError(400, "BadRequest", f"unable to decode protobuf body: {e}") from None
    obj["apiVersion"], obj["kind"] = tm.get("apiVersion", ""), kind
    return obj


def rfc3339(t: Obj) -> str:
    return datetime.fromtimestamp(t.get("seconds", 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
