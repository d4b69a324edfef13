"""The document-triggered workflow: a document reaching a state updates the ERP and the workspace."""

from actors.document_workflow.actor import SPEC, DocumentWorkflow
from actors.document_workflow.rules import SECTION, DocumentPolicy

__all__ = ["SECTION", "SPEC", "DocumentPolicy", "DocumentWorkflow"]
