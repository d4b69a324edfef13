"""The invoice-readiness checklists: what an invoice needs before the ERP may finalise it (the policy
file's ``invoice_readiness`` section). Data in the policy file, validated here; the gate carries it out."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hub.policy import DocumentClass, DocumentState, EngagementType, ExceptionOwner

#: The policy file's section these rules are read from.
SECTION = "invoice_readiness"
HoldCode = Literal[
    "DELIVERABLE_NOT_APPROVED", "RETENTION_LABEL_MISSING", "UNSIGNED_CHANGE_ORDER", "CUSTOMER_APPROVAL_MISSING",
    "SERVICE_REPORT_MISSING", "CHANGE_RECORD_MISSING", "SOW_NOT_SIGNED", "ENGAGEMENT_LETTER_NOT_SIGNED",
    "INVOICE_NOT_DRAFTED",
]
HOLD_CODES: tuple[HoldCode, ...] = get_args(HoldCode)
#: Who takes the next step on each hold, unless the policy's ``owners`` says otherwise: the project office gets
#: documents approved and signed, records management labels them, finance drafts the invoice in the ERP.
DEFAULT_OWNERS: dict[HoldCode, ExceptionOwner] = {
    "DELIVERABLE_NOT_APPROVED": "pmo", "RETENTION_LABEL_MISSING": "records_management",
    "UNSIGNED_CHANGE_ORDER": "pmo", "CUSTOMER_APPROVAL_MISSING": "pmo", "SERVICE_REPORT_MISSING": "pmo",
    "CHANGE_RECORD_MISSING": "pmo", "SOW_NOT_SIGNED": "pmo", "ENGAGEMENT_LETTER_NOT_SIGNED": "pmo",
    "INVOICE_NOT_DRAFTED": "finance",
}
#: Which documents a requirement looks at: those linked to the invoice (by invoice number or milestone),
#: or any document of the project.
Scope = Literal["invoice", "project"]
#: Classes a checklist may require to be signed whenever one exists.
SignedClass = Literal["change_order", "sow", "engagement_letter"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requirement(_Model):
    """One line of a checklist: documents of a class, in an accepted state, with a hold code when lacking.

    ``every_document``: each relevant document must be accepted (deliverables); otherwise one accepted
    document is enough (a signed SOW). ``retention_label``: accepted documents must also carry the
    jurisdiction's retention label for their class. ``envelope_counts``: a completed e-signature envelope
    of the class counts as a signed document.
    """

    document_class: DocumentClass
    code: HoldCode
    states: frozenset[DocumentState] = frozenset({"approved", "signed"})
    scope: Scope = "invoice"
    every_document: StrictBool = False
    retention_label: StrictBool = False
    envelope_counts: StrictBool = False


class Checklist(_Model):
    """What an invoice of one engagement type needs; ``must_be_signed`` classes hold while unsigned."""

    requirements: tuple[Requirement, ...] = ()
    must_be_signed: tuple[SignedClass, ...] = ("change_order",)


class ReadinessRules(_Model):
    """The checklist of every engagement type (the ``invoice_readiness`` section), and who owns the next step of
    each hold code (``owners``: those it names; :data:`DEFAULT_OWNERS` the others)."""

    checklists: dict[EngagementType, Checklist] = Field(default_factory=dict)
    owners: dict[HoldCode, ExceptionOwner] = Field(default_factory=dict)

    def owner_of(self, code: HoldCode) -> ExceptionOwner:
        """Who takes the next step on a hold of ``code``."""
        return self.owners.get(code, DEFAULT_OWNERS[code])

    def checklist_for(self, engagement_type: EngagementType) -> Checklist:
        """The checklist of an engagement type (an empty one when the rules do not name it)."""
        return self.checklists.get(engagement_type, Checklist())
