"""The ERP simulator's request bodies: what its API takes for clients, projects, milestones, invoices,
billing codes and time entries (snake_case JSON; unknown fields and stray ``null`` values are refused)."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

EngagementType = Literal["consulting", "legal", "engineering", "managed_services"]
Region = Literal["NA", "EU", "ME", "APAC"]
BillingModel = Literal["time_and_materials", "fixed_fee", "milestone", "retainer", "subscription"]
ProjectStatus = Literal["planned", "active", "on_hold", "closed", "cancelled"]
ClientStatus = Literal["prospect", "active", "inactive"]
MilestoneStatus = Literal["open", "achieved", "invoiced"]
#: The kinds of document an invoice may bill (the hub's document classes).
DocumentClass = Literal["sow", "contract", "change_order", "engagement_letter", "deliverable", "service_report",
                        "customer_approval", "change_record"]
_CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Fields an explicit ``null`` may clear; any other field sent as ``null`` is refused.
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        refused = [k for k in self.model_fields_set if getattr(self, k) is None and k not in self.nullable]
        if refused:
            raise ValueError(f"may not be null: {', '.join(sorted(refused))}")
        return self


class Money(_In):
    """An amount in minor units of an ISO 4217 currency."""

    amount_minor: int
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class ClientPatch(_In):
    """Changes to a client; fields left out keep their value."""

    nullable = frozenset({"id", "industry", "parent_client_id", "billing_currency"})

    name: str | None = Field(default=None, min_length=1)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    status: ClientStatus | None = None
    industry: str | None = None
    parent_client_id: str | None = None
    billing_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class ClientIn(ClientPatch):
    """A new client; ``id`` is generated when left out."""

    id: str | None = Field(default=None, pattern=_CODE)
    name: str = Field(min_length=1)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    status: ClientStatus = "active"


class ProjectPatch(_In):
    """Changes to a project; ``custom_fields`` are merged key by key; ``null`` clears optional fields."""

    nullable = frozenset({"value", "start_date", "end_date"})

    client_id: str | None = None
    name: str | None = Field(default=None, min_length=1)
    engagement_type: EngagementType | None = None
    practice: str | None = None
    region: Region | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    partner: str | None = None
    billing_model: BillingModel | None = None
    status: ProjectStatus | None = None
    value: Money | None = None
    start_date: date | None = None
    end_date: date | None = None
    conflicted_groups: list[str] | None = None
    time_entry_enabled: bool | None = None
    billing_codes_active: bool | None = None
    custom_fields: dict[str, Any] | None = None


class ProjectIn(ProjectPatch):
    """A new project, engagement or matter; ``code`` is its unique business key."""

    code: str = Field(pattern=_CODE)
    client_id: str
    name: str = Field(min_length=1)
    engagement_type: EngagementType
    practice: str
    region: Region
    country: str = Field(pattern=r"^[A-Z]{2}$")
    partner: str
    billing_model: BillingModel
    status: ProjectStatus = "planned"
    conflicted_groups: list[str] = Field(default_factory=list)
    time_entry_enabled: bool = False
    billing_codes_active: bool = False
    custom_fields: dict[str, Any] = Field(default_factory=dict)


class MilestonePatch(_In):
    """Changes to a milestone."""

    nullable = frozenset({"due_date"})

    name: str | None = Field(default=None, min_length=1)
    amount: Money | None = None
    due_date: date | None = None
    status: MilestoneStatus | None = None
    #: The titles of the deliverables the milestone bills.
    deliverables: list[str] | None = Field(default=None, max_length=200)


class MilestoneIn(MilestonePatch):
    """A new milestone of a project."""

    name: str = Field(min_length=1)
    amount: Money
    status: MilestoneStatus = "open"


class BilledIn(_In):
    """One artefact an invoice bills: a document class and its business number or title."""

    document_class: DocumentClass
    reference: str = Field(min_length=1, max_length=200)


class InvoiceIn(_In):
    """A new draft invoice; ``number`` is generated when left out. ``bills``: what it bills besides its
    milestone's deliverables (the period's change records, the service report)."""

    nullable = frozenset({"number", "milestone_id"})

    number: str | None = Field(default=None, pattern=_CODE)
    project_code: str
    amount: Money
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    milestone_id: str | None = None
    bills: list[BilledIn] = Field(default_factory=list, max_length=200)


class TimeEntryIn(_In):
    """Hours a person books on a project under one of its billing codes."""

    date: date
    hours: float = Field(gt=0, le=24)
    billing_code: str = Field(pattern=_CODE)
    person: str = Field(min_length=1)


class BillingCodeIn(_In):
    """A billing code of a project (created, or its ``active`` flag set)."""

    code: str = Field(pattern=_CODE)
    active: bool = True
