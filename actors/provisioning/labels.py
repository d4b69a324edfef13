"""The policy's retention labels checked against a document platform's published ones when a worker process starts.

One read of the platform's labels (SharePoint: ``GET /security/labels/retentionLabels``; Box: the enterprise's
retention policies): each label the policy applies that the platform does not publish is named in one warning and
raised to records management, one case per label and platform (the same id at every start, so a restart does not
open it again). A tenant that does not let the app list labels (403) or a platform that does not answer at start is
logged and left to provisioning, which checks again before it applies a label.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from actors.provisioning.actor import SPEC
from connectors.platform import DocumentPlatform
from hub.actor import ActorSpec, Emitter, Emitting
from hub.errors import HubError
from hub.events import SchemaLookup
from hub.policy import Policy
from observability.logging import get_logger

__all__ = ["LabelCheck"]

_NAMESPACE = uuid.UUID("5b1e7c3a-9d24-4f6e-8a05-c7d3e2f1b948")
log = get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class LabelCheck:
    """Run once per worker process at start (``Runtime.at_worker_start``): the policy's labels the platform does
    not publish, said once and raised to records management."""

    policy: Policy
    platform: DocumentPlatform
    spec: ActorSpec = SPEC

    def __call__(self, emitter: Emitter, registry: SchemaLookup) -> list[str]:
        """Check, and return the labels found unpublished (empty when none or when they cannot be listed)."""
        try:
            published = self.platform.published_retention(refresh=True)
        except HubError as exc:  # the platform away or the sign-in refused: provisioning checks before applying one
            log.warning("retention labels not checked at start: the tenant's labels could not be read",
                        platform=self.platform.name, reason=str(exc))
            return []
        if published is None:
            log.info("retention labels not checked at start: the tenant does not let the app list them (403)",
                     platform=self.platform.name)
            return []
        missing = sorted(self.policy.retention.all_labels() - published)
        if not missing:
            return []
        log.warning("the tenant does not publish retention labels the policy applies", platform=self.platform.name,
                    labels=missing)
        raising = Emitting(spec=self.spec, registry=registry, emitter=emitter)
        # SharePoint's ids stay what they were before Box, so a restart opens no second case for a label.
        scope = "" if self.platform.name == "sharepoint" else f"{self.platform.name}:"
        for label in missing:
            raising.raise_exception(
                "records_management", kind="provisioning.retention_label_unpublished",
                id=str(uuid.uuid5(_NAMESPACE, f"label-unpublished:{scope}{label}")), subject=label,
                detail=f"the policy applies retention label {label!r}, which the tenant ({self.platform.name}) "
                       "does not publish; workspaces that need it are provisioned without it until it is published")
        return missing
