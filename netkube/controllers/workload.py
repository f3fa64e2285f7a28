"""Pod plumbing shared by the DaemonSet, StatefulSet and Job controllers."""

from __future__ import annotations

from netkube.client import PODS, ApiError, Informer, Obj
from netkube.controllers.base import clone, controller_ref, owner_reference
from netkube.controllers.events import EventRecorder


def owned(inf: Informer, owner: Obj) -> list[Obj]:
    ns, uid = owner["metadata"].get("namespace"), owner["metadata"]["uid"]
    return [o for o in inf.items() if o["metadata"].get("namespace") == ns
            and (controller_ref(o) or {}).get("uid") == uid]


def pod_from_template(owner: Obj, template: Obj, labels: dict[str, str] | None = None, name: str | None = None) -> Obj:
    md = template.get("metadata") or {}
    meta: Obj = {"namespace": owner["metadata"]["namespace"],
                 "labels": {**clone(md.get("labels") or {}), **(labels or {})},
                 "ownerReferences": [owner_reference(owner)]}
    if md.get("annotations"):
        meta["annotations"] = clone(md["annotations"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f"{owner['metadata']['name']}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": clone(template.get("spec") or {})}


async def create_pod(client: object, recorder: EventRecorder, owner: Obj, pod: Obj, message: str | None = None) -> Obj | None:
    """Create; record SuccessfulCreate ("Created pod: x" unless a message is given) or FailedCreate."""
    try:
        made = await client.create(PODS, pod, owner["metadata"]["namespace"])  # type: ignore[attr-defined]
    except ApiError as e:
        if e.code == 409:
            return None
        await recorder.warning(owner, "FailedCreate", f"Error creating: {e.status.get('message', e)}")
        raise
    name = made["metadata"]["name"]
    await recorder.normal(owner, "SuccessfulCreate", (message or "Created pod: {name}").format(name=name))
    return made  # type: ignore[no-any-return]


async def delete_pod(client: object, recorder: EventRecorder, owner: Obj, pod: Obj, message: str | None = None) -> None:
    name = pod["metadata"]["name"]
    try:
        await client.delete(PODS, name, pod["metadata"]["namespace"])  # type: ignore[attr-defined]
    except ApiError as e:
        if e.code == 404:
            return
        raise
    await recorder.normal(owner, "SuccessfulDelete", (message or "Deleted pod: {name}").format(name=name))


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
