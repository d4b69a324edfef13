"""Which document platform holds a project's workspace: the policy's ``platforms`` section.

A firm may keep matters on Box and engagements on SharePoint. The section names the ``default`` platform and
``rules`` tried in order: the first whose every criterion matches the project (its engagement type, practice,
region) chooses. A project's platform must not change once its workspace exists (the hub does not move
workspaces between platforms), so a firm adds rules for new work and leaves old ones in place.

Pure data and choice: the connectors of each platform are wired by the composition root.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.policy import EngagementType, Region, Text

__all__ = ["PLATFORMS", "SECTION", "PlatformName", "PlatformRule", "PlatformRules"]

#: The document platforms the hub has connectors for (also the crosswalk's system name of a workspace).
PlatformName = Literal["sharepoint", "box"]
PLATFORMS: tuple[PlatformName, ...] = get_args(PlatformName)
#: The policy file's section.
SECTION = "platforms"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PlatformRule(_Model):
    """Projects of these engagement types, practices (case-insensitive) and regions go to ``platform``; an
    unnamed criterion matches every project, and a rule names at least one."""

    platform: PlatformName
    engagement_types: list[EngagementType] | None = Field(default=None, min_length=1)
    practices: list[Text] | None = Field(default=None, min_length=1)
    regions: list[Region] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _names_a_criterion(self) -> PlatformRule:
        if self.engagement_types is None and self.practices is None and self.regions is None:
            raise ValueError("a rule names engagement_types, practices or regions (use default for every project)")
        return self

    def matches(self, values: Mapping[str, str]) -> bool:
        """Whether the project whose fields are ``values`` meets every criterion of the rule."""
        practice = values.get("practice", "").casefold()
        return ((self.engagement_types is None or values.get("engagement_type") in self.engagement_types)
                and (self.practices is None or practice in {p.casefold() for p in self.practices})
                and (self.regions is None or values.get("region") in self.regions))


class PlatformRules(_Model):
    """The default platform and the rules choosing another one per practice, region or engagement type."""

    default: PlatformName = "sharepoint"
    rules: list[PlatformRule] = Field(default_factory=list)

    def platform_for(self, values: Mapping[str, str]) -> PlatformName:
        """The platform of a project (``values``: its fields by name, as ``Project.values()`` gives them)."""
        return next((rule.platform for rule in self.rules if rule.matches(values)), self.default)

    def in_use(self) -> frozenset[PlatformName]:
        """Every platform the section can choose."""
        return frozenset({self.default, *(rule.platform for rule in self.rules)})
