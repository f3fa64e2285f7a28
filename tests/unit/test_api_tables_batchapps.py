"""kubectl columns for StatefulSets, DaemonSets, Jobs and CronJobs, as a real cluster prints them."""

from netkube.api.tables import table
from netkube.api.tables.workloads import pod_status

TPL = {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}


def cells(kind: str, obj: dict) -> tuple[list[str], list]:
    t = table(kind, [obj], "1")
    return [c["name"] for c in t["columnDefinitions"]], t["rows"][0]["cells"]


def test_statefulset_and_daemonset():
    cols, row = cells("StatefulSet", {"metadata": {"name": "web"}, "spec": {"replicas": 3, "template": TPL},
                                      "status": {"readyReplicas": 2}})
    assert cols == ["Name", "Ready", "Age", "Containers", "Images"] and row[:2] == ["web", "2/3"]
    cols, row = cells("DaemonSet", {"metadata": {"name": "ds"}, "spec": {"template": {"spec": {
        **TPL["spec"], "nodeSelector": {"kubernetes.io/os": "linux"}}}, "selector": {"matchLabels": {"a": "b"}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1}})
    assert cols[:8] == ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age"]
    assert row[:7] == ["ds", 2, 2, 1, 2, 1, "kubernetes.io/os=linux"] and row[-1] == "a=b"


def test_job_and_cronjob():
    job = {"metadata": {"name": "pi"}, "spec": {"completions": 1, "template": TPL},
           "status": {"succeeded": 1, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:07Z",
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    cols, row = cells("Job", job)
    assert cols[:5] == ["Name", "Status", "Completions", "Duration", "Age"] and row[:4] == ["pi", "Complete", "1/1", "7s"]
    cols, row = cells("CronJob", {"metadata": {"name": "hello"}, "spec": {"schedule": "* * * * *",
                                  "jobTemplate": {"spec": {"template": TPL}}}, "status": {}})
    assert cols[:7] == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"]
    assert row[:6] == ["hello", "* * * * *", "<none>", "False", 0, "<none>"]


def test_pod_status_column_for_init_containers():
    def pod(init_state: dict) -> dict:
        return {"metadata": {}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]},
                "status": {"phase": "Pending", "initContainerStatuses": [{"state": init_state}],
                           "containerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}}]}}

    assert pod_status(pod({"running": {}}))[0] == "Init:0/1"
    assert pod_status(pod({"terminated": {"exitCode": 1, "reason": "Error"}}))[0] == "Init:Error"
    assert pod_status(pod({"waiting": {"reason": "CrashLoopBackOff"}}))[0] == "Init:CrashLoopBackOff"
