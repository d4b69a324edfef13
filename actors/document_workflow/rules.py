"""The document rules: what a document reaching a state does (the policy file's ``documents`` section).

Data in the policy file, validated here; the document-workflow actor only carries them out. No rule
names a customer: rules match a document class, its states and the project's engagement type.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hub.policy import DocumentClass, DocumentState, EngagementType

#: The policy file's section these rules are read from.
SECTION = "documents"
#: What a document rule may do, in the order the workflow runs them (whatever order the rule lists). The
#: ERP comes first: billing starts the moment the paperwork allows it, even while the document platform
#: is down (filing is retried on its own).
#:
#: - ``write_contract_terms``: the value and dates the document states become the ERP project's (the
#:   latest document wins, by its signing or approval time);
#: - ``update_milestones``: the milestones the document states are added to the ERP project, or updated;
#: - ``open_matter``: the ERP project's status becomes ``active``;
#: - ``enable_time_entry``: the ERP project accepts time entries;
#: - ``activate_billing_codes``: the engagement type's billing codes exist and are active;
#: - ``file_document``: a document signed on the e-signature platform is filed into the class's folder of
#:   the project's workspace, with metadata and the class's retention label; the draft it was signed from
#:   (beside it, of its class, of its name but for the extension, not signed) is superseded as
#:   ``supersede_drafts`` says;
#: - ``notify_reporting``: ``hub.engagement.activated.v1`` tells reporting what was opened.
DocumentAction = Literal[
    "write_contract_terms", "update_milestones", "open_matter", "enable_time_entry", "activate_billing_codes",
    "file_document", "notify_reporting",
]
ACTION_ORDER: tuple[DocumentAction, ...] = get_args(DocumentAction)
_PLACEHOLDERS = frozenset({"project_code", "client_id", "engagement_type", "practice", "region", "country"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _billing_code(template: str) -> str:
    parts = list(string.Formatter().parse(template))
    if any(name is not None and (spec or conversion) for _, name, spec, conversion in parts):
        raise ValueError("placeholders take no conversion or format spec: write {project_code}")
    names = {name for _, name, _, _ in parts if name is not None}
    unknown = sorted(names - _PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join(unknown)}; use {', '.join(sorted(_PLACEHOLDERS))}")
    if not template or len(template) > 64:
        raise ValueError("a billing code template must be 1 to 64 characters")
    return template


class RuleMatch(_Model):
    """When a rule applies: a document of this class reaches one of these states, on a project of one of
    these engagement types (every type when left out)."""

    document_class: DocumentClass
    states: frozenset[DocumentState] = frozenset({"signed"})
    engagement_types: frozenset[EngagementType] = frozenset()


class DocumentRule(_Model):
    """One rule: a name (shown in logs, events and exceptions), when it applies and what it does."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    when: RuleMatch
    do: tuple[DocumentAction, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _once_each(self) -> DocumentRule:
        if len(set(self.do)) != len(self.do):
            raise ValueError("an action is listed twice")
        return self

    def applies(self, document_class: str, state: str, engagement_type: str) -> bool:
        """Whether this rule applies to a document of ``document_class`` reaching ``state``."""
        return (self.when.document_class == document_class and state in self.when.states
                and (not self.when.engagement_types or engagement_type in self.when.engagement_types))

    def actions(self) -> tuple[DocumentAction, ...]:
        """The rule's actions in the order they run."""
        return tuple(action for action in ACTION_ORDER if action in self.do)


#: What becomes of the draft a signed copy supersedes: ``mark`` keeps it, ``DocumentState`` superseded and
#: ``SupersededBy`` the signed copy's name; ``replace`` deletes it (to the site's recycle bin).
SupersedeDrafts = Literal["mark", "replace"]


class DocumentPolicy(_Model):
    """The ``documents`` section: the rules, the billing codes each engagement type opens, and what becomes of a
    draft once its signed copy is filed."""

    rules: tuple[DocumentRule, ...] = ()
    supersede_drafts: SupersedeDrafts = "mark"
    billing_codes: dict[EngagementType, tuple[Annotated[str, AfterValidator(_billing_code)], ...]] = Field(
        default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> DocumentPolicy:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule name(s) used twice: {', '.join(duplicates)}")
        return self

    def rules_for(self, document_class: str, state: str, engagement_type: str) -> tuple[DocumentRule, ...]:
        """Every rule that applies, in file order."""
        return tuple(rule for rule in self.rules if rule.applies(document_class, state, engagement_type))
