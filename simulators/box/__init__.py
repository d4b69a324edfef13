"""The simulated Box enterprise, as the Box Platform API subset the hub uses: the app (:mod:`.app`), its
routes (:mod:`.routes`, :mod:`.governance`, :mod:`.files`, :mod:`.changes`), the records (:mod:`.model`,
:mod:`.state`) and webhooks V2 (:mod:`.webhooks`)."""

from simulators.box.app import BOX_ERRORS, create_app, run
from simulators.box.config import DEFAULT_GROUPS, DEFAULT_RETENTION_POLICIES, BoxSimConfig

__all__ = ["BOX_ERRORS", "DEFAULT_GROUPS", "DEFAULT_RETENTION_POLICIES", "BoxSimConfig", "create_app", "run"]
