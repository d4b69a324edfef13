"""Running the real ingress (uvicorn on a free port) over a real runtime, and signing requests to it."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from hub.cli.compose import build_ingress, load_sources
from hub.ingress.server import serve_in_thread
from hub.ingress.sources import SourceRegistry
from hub.runtime import Runtime


@dataclass(frozen=True)
class Credentials:
    """The secrets of the test sources file."""

    api_key: str
    webhook_secrets: tuple[str, str]  # two while rotating
    docusign_key: str
    graph_state: str
    box_keys: tuple[str, str] = ("", "")  # primary, secondary


def write_sources(directory: Path, *, quota: str = "1000/minute", vendor_quota: str = "100/minute"
                  ) -> tuple[Path, Credentials]:
    """A sources file with an ERP (API key + two webhook secrets), DocuSign, SharePoint and Box sources."""
    creds = Credentials(
        api_key=secrets.token_urlsafe(24),
        webhook_secrets=tuple("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode() for _ in range(2)),  # type: ignore[arg-type]
        docusign_key=secrets.token_urlsafe(24),
        graph_state=secrets.token_urlsafe(16),
        box_keys=("box" + secrets.token_hex(16), "box" + secrets.token_hex(16)),
    )
    path = directory / "sources.yaml"
    path.write_text(f"""\
sources:
  - id: erp-acme
    description: the simulated ERP
    sources: ["erp-sim://acme-psa/*"]
    event_types: ["erp.*"]
    credentials:
      - {{scheme: api_key, sha256: {hashlib.sha256(creds.api_key.encode()).hexdigest()}}}
      - {{scheme: standard_webhooks, secret: {creds.webhook_secrets[0]}}}
      - {{scheme: standard_webhooks, secret: {creds.webhook_secrets[1]}}}
    quota: {quota}
  - id: docusign
    description: DocuSign Connect
    sources: ["docusign://docusign"]
    event_types: ["esign.*"]
    docusign: {{hmac_keys: [{creds.docusign_key}]}}
    quota: {vendor_quota}
  - id: sharepoint
    description: SharePoint through Microsoft Graph
    sources: ["graph://sharepoint"]
    event_types: ["dms.*"]
    graph: {{client_states: [{creds.graph_state}]}}
    quota: {vendor_quota}
  - id: box
    description: Box webhooks
    sources: ["box://box"]
    event_types: ["dms.*"]
    box: {{primary_key: {creds.box_keys[0]}, secondary_key: {creds.box_keys[1]}}}
    quota: {vendor_quota}
""")
    return path, creds


def load(path: Path) -> SourceRegistry:
    """Load a sources file the way ``hub serve`` does."""
    return load_sources(path, {})


def signed_headers(secret: str, body: bytes, *, msg_id: str | None = None,
                   timestamp: float | None = None) -> dict[str, str]:
    """Standard Webhooks headers made by the reference package."""
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}


@contextmanager
def serving(runtime: Runtime, sources: SourceRegistry) -> Iterator[str]:
    """Serve the ingress of ``runtime`` on 127.0.0.1 and a free port; yields the base URL."""
    with serve_in_thread(build_ingress(runtime, sources=sources)) as url:
        yield url
