"""The simulated ERP/PSA: its REST API (:mod:`.app`), records (:mod:`.state`, bodies in :mod:`.models`),
signed CloudEvent webhooks (:mod:`.webhooks`) and the readiness gate it asks before finalising (:mod:`.gate`)."""

from simulators.erp.app import ErpSimConfig, create_app, run
from simulators.erp.gate import ReadinessGate
from simulators.erp.webhooks import WebhookConfig

__all__ = ["ErpSimConfig", "ReadinessGate", "WebhookConfig", "create_app", "run"]
