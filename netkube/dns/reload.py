"""Watch kube-system/coredns (key Corefile) and apply it like CoreDNS's reload plugin would."""

from __future__ import annotations

import logging
from collections.abc import Callable

from netkube.client import CONFIGMAPS, ApiClient, Informer, Obj
from netkube.dns.config import DnsConfig
from netkube.dns.corefile import CorefileError, parse_corefile

log = logging.getLogger(__name__)


class ConfigReloader:
    """Parses every version of the ConfigMap; a bad one is logged and the running config kept.

    The first Corefile seen is applied (it is the pod's start-up config in a real cluster); later
    changes only when the running config has the `reload` plugin, as in CoreDNS.
    """

    def __init__(self, apply: Callable[[DnsConfig], None], defaults: DnsConfig,
                 on_failure: Callable[[], None] = lambda: None, name: str = "coredns",
                 namespace: str = "kube-system") -> None:
        self.apply = apply
        self.defaults = defaults
        self.on_failure = on_failure
        self.current = defaults
        self.loaded = False
        self.last_text: str | None = None
        self.name, self.namespace = name, namespace

    def informer(self, client: ApiClient) -> Informer:
        inf = Informer(client, CONFIGMAPS, namespace=self.namespace, field_selector=f"metadata.name={self.name}")
        inf.add_handler(self.on_event)
        return inf

    def on_event(self, event: str, obj: Obj, old: Obj | None) -> None:
        if obj["metadata"].get("name") != self.name:
            return
        if event == "DELETED":
            log.warning("ConfigMap %s/%s deleted: keeping the running configuration", self.namespace, self.name)
            return
        text = (obj.get("data") or {}).get("Corefile")
        if text is None:
            log.error("ConfigMap %s/%s has no key Corefile: keeping the running configuration",
                      self.namespace, self.name)
            self.on_failure()
            return
        self.load(text)

    def load(self, text: str) -> bool:
        if text == self.last_text:
            return False
        if self.loaded and not self.current.blocks[0].reload and not any(b.reload for b in self.current.blocks):
            log.warning("Corefile changed but the running config has no `reload` plugin: change ignored "
                        "(restart the coredns pod to apply it)")
            self.last_text = text
            return False
        try:
            config = parse_corefile(text, f"ConfigMap {self.namespace}/{self.name}")
        except CorefileError as e:
            log.error("Corefile in ConfigMap %s/%s is invalid, keeping the running configuration: %s",
                      self.namespace, self.name, e)
            self.on_failure()
            return False
        for w in config.warnings:
            log.warning("Corefile %s", w)
        self.current, self.loaded, self.last_text = config, True, text
        self.apply(config)
        log.info("loaded Corefile from ConfigMap %s/%s (%d server blocks)", self.namespace, self.name,
                 len(config.blocks))
        return True
