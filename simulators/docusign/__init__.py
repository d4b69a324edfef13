"""The simulated DocuSign eSignature account: its REST API (:mod:`.app`), envelopes (:mod:`.envelopes`) and
Connect notifications (:mod:`.connect`)."""

from simulators.docusign.app import DocuSignSimConfig, create_app, run
from simulators.docusign.connect import ConnectConfig, connect_message, connect_signature

__all__ = ["ConnectConfig", "DocuSignSimConfig", "connect_message", "connect_signature", "create_app", "run"]
