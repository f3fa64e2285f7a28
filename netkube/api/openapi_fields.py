"""The upstream fields of the served types that openapi_schemas.py does not describe in prose.

openapi_schemas.py describes the fields netkube acts on; field validation (strict.py) needs every
field upstream declares, or a real manifest using e.g. `securityContext` would be rejected as an
unknown field. These are listed here by name and JSON type only (names from k8s.io/api v1.32).
A `{"type": "object"}` without properties is opaque: its contents are not checked.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."

OBJ: Obj = {"type": "object"}
A: Obj = {"type": "array", "items": {"type": "object"}}
STR: Obj = {"type": "string"}
I32: Obj = {"type": "integer", "format": "int32"}
I64: Obj = {"type": "integer", "format": "int64"}
B: Obj = {"type": "boolean"}
SMAP: Obj = {"type": "object", "additionalProperties": {"type": "string"}}
SLIST: Obj = {"type": "array", "items": {"type": "string"}}
RAW: Obj = {}  # runtime.RawExtension: anything

# fields per schema that openapi_schemas.SCHEMAS leaves out
MORE: dict[str, Obj] = {
    META + "ObjectMeta": {"selfLink": STR, "deletionGracePeriodSeconds": I64, "managedFields": A},
    APPS + "DeploymentStatus": {"terminatingReplicas": I32, "collisionCount": I32},
    CORE + "PodSpec": {
        "activeDeadlineSeconds": I64, "affinity": OBJ, "automountServiceAccountToken": B, "dnsConfig": OBJ,
        "enableServiceLinks": B, "ephemeralContainers": A, "hostAliases": A, "hostIPC": B, "hostPID": B,
        "hostUsers": B, "hostname": STR, "imagePullSecrets": A, "os": OBJ, "overhead": OBJ,
        "preemptionPolicy": STR, "priority": I32, "priorityClassName": STR, "readinessGates": A,
        "resourceClaims": A, "resources": OBJ, "runtimeClassName": STR, "schedulerName": STR,
        "schedulingGates": A, "securityContext": OBJ, "serviceAccount": STR, "setHostnameAsFQDN": B,
        "shareProcessNamespace": B, "subdomain": STR, "topologySpreadConstraints": A,
    },
    CORE + "Container": {
        "workingDir": STR, "envFrom": A, "resizePolicy": A, "restartPolicy": STR, "volumeMounts": A,
        "volumeDevices": A, "livenessProbe": OBJ, "startupProbe": OBJ, "lifecycle": OBJ,
        "terminationMessagePath": STR, "terminationMessagePolicy": STR, "securityContext": OBJ,
        "stdin": B, "stdinOnce": B, "tty": B,
    },
    CORE + "ServiceSpec": {
        "clusterIPs": SLIST, "externalIPs": SLIST, "loadBalancerIP": STR, "loadBalancerSourceRanges": SLIST,
        "externalName": STR, "healthCheckNodePort": I32, "publishNotReadyAddresses": B,
        "sessionAffinityConfig": OBJ, "ipFamilies": SLIST, "ipFamilyPolicy": STR,
        "allocateLoadBalancerNodePorts": B, "loadBalancerClass": STR, "internalTrafficPolicy": STR,
        "trafficDistribution": STR,
    },
    CORE + "ServicePort": {"appProtocol": STR},
}

# top-level fields of the kinds that openapi_schemas describes only by apiVersion/kind/metadata
TOP: dict[str, Obj] = {
    "Namespace": {"spec": OBJ, "status": OBJ},
    "Node": {"spec": OBJ, "status": OBJ},
    "Endpoints": {"subsets": A},
    "Event": {"action": STR, "count": I32, "eventTime": STR, "firstTimestamp": STR, "involvedObject": OBJ,
              "lastTimestamp": STR, "message": STR, "reason": STR, "related": OBJ, "reportingComponent": STR,
              "reportingInstance": STR, "series": OBJ, "source": OBJ, "type": STR},
    "ConfigMap": {"data": SMAP, "binaryData": SMAP, "immutable": B},
    "Secret": {"data": SMAP, "stringData": SMAP, "type": STR, "immutable": B},
    "ServiceAccount": {"automountServiceAccountToken": B, "imagePullSecrets": A, "secrets": A},
    "ReplicaSet": {"spec": OBJ, "status": OBJ},
    "DaemonSet": {"spec": OBJ, "status": OBJ},
    "StatefulSet": {"spec": OBJ, "status": OBJ},
    "ControllerRevision": {"data": RAW, "revision": I64},
    "Job": {"spec": OBJ, "status": OBJ},
    "CronJob": {"spec": OBJ, "status": OBJ},
    "EndpointSlice": {"addressType": STR, "endpoints": A, "ports": A},
    "Lease": {"spec": OBJ},
}


def with_more(schemas: Obj) -> Obj:
    """A copy of schemas with MORE's fields added to each named schema's properties."""
    out = dict(schemas)
    for name, fields in MORE.items():
        if name in out:
            sch = dict(out[name])
            sch["properties"] = {**fields, **sch.get("properties", {})}
            out[name] = sch
    return out
