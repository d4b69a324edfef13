"""The sandbox's sign-in, as the real vendors have it: with :class:`SignIn` Graph takes only tokens from the
tenant's Entra ID (an app of its own, served over TLS with a certificate made for the run, since ``msal``
takes only an ``https`` authority), DocuSign only tokens from its JWT grant, and both expire after
``token_lifetime_s``. The app registrations' credentials (a client secret or a certificate, an RSA key for the
integration key) are made for the run and written to a scratch folder: ``Sandbox.sign_in`` says where.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.docusign.oauth import DocuSignJwt
from simulators.kit.tls import KeyPair, self_signed
from simulators.kit.tokens import TokenIssuer
from simulators.sharepoint.login import EntraApp, EntraTenant

#: The client id the sandbox's own tools (``Sandbox.graph()``, ``Sandbox.docusign()``) get tokens for.
TOOL_CLIENT = "sandbox-tool"


@dataclass(frozen=True)
class SignIn:
    """Run the sandbox's Graph and DocuSign with sign-in and tokens living ``token_lifetime_s``; the Graph app
    signs in with a certificate (``graph_certificate``) or a client secret."""

    token_lifetime_s: float = 3_600.0
    graph_certificate: bool = False


@dataclass(frozen=True)
class SignInCredentials:
    """What a firm's settings would hold for the sandbox's tenant and DocuSign account: ids, sign-in hosts, and
    the files holding the secret or keys (the TLS certificate of the Entra ID host is its CA bundle)."""

    tenant_id: str
    graph_client_id: str
    login_url: str
    login_ca_file: Path
    graph_secret_file: Path | None
    graph_key_file: Path | None
    graph_thumbprint: str | None
    docusign_integration_key: str
    docusign_user_id: str
    docusign_key_file: Path
    docusign_auth_url: str

    def graph_settings(self) -> dict[str, Any]:
        """The Graph connector's sign-in settings (``HUB_GRAPH_*`` names, lower case)."""
        chosen: dict[str, Any] = ({"client_secret_file": self.graph_secret_file} if self.graph_secret_file else
                                  {"certificate_key_file": self.graph_key_file,
                                   "certificate_thumbprint": self.graph_thumbprint})
        return {"tenant_id": self.tenant_id, "client_id": self.graph_client_id, "authority_url": self.login_url,
                "sign_in_ca_file": self.login_ca_file, **chosen}

    def docusign_settings(self) -> dict[str, Any]:
        """The DocuSign connector's sign-in settings (``HUB_DOCUSIGN_*`` names, lower case)."""
        return {"integration_key": self.docusign_integration_key, "user_id": self.docusign_user_id,
                "private_key_file": self.docusign_key_file, "auth_url": self.docusign_auth_url}


def tool_tokens(graph: TokenIssuer, docusign: TokenIssuer) -> Callable[[str], str]:
    """Tokens for the sandbox's own tools, issued straight by the simulators' issuers (they stand for a
    user's tools, not the hub, so they do not sign in through the hub's path)."""
    issuers = {"graph": (graph, "https://graph.microsoft.com/.default"), "docusign": (docusign, "signature")}

    def token(system: str) -> str:
        issuer, scope = issuers[system]
        return issuer.issue(TOOL_CLIENT, scope).token

    return token


@dataclass(frozen=True)
class SignInParts:
    """The sign-in of one sandbox run: the tenant's and the integration key's registrations, the keys and the
    files holding them."""

    tls: KeyPair
    tenant: EntraTenant
    docusign: DocuSignJwt
    folder: Path
    graph_client_id: str
    graph_secret_file: Path | None
    graph_key_file: Path | None
    graph_thumbprint: str | None
    docusign_key_file: Path

    @classmethod
    def make(cls, sign_in: SignIn, folder: Path) -> SignInParts:
        """New registrations and keys for ``sign_in``, their files written to ``folder``."""
        tls = self_signed("login.sim.microsoftonline.example")
        client_id, user_id, integration_key = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        secret_file = key_file = None
        thumbprint = None
        if sign_in.graph_certificate:
            certificate = self_signed("hub-graph-app")
            app = EntraApp(client_id, certificate_public_key=certificate.public_key,
                           certificate_thumbprint=certificate.thumbprint)
            key_file = _private(folder / "graph-app-key.pem", certificate.private_key)
            thumbprint = certificate.thumbprint
        else:
            secret = secrets.token_urlsafe(30)
            app = EntraApp(client_id, secret=secret)
            secret_file = _private(folder / "graph-client-secret", secret)
        rsa = self_signed("hub-docusign-integration")
        return cls(
            tls=tls, tenant=EntraTenant(apps=(app,), token_lifetime_s=sign_in.token_lifetime_s),
            docusign=DocuSignJwt(integration_key=integration_key, public_key=rsa.public_key, users=(user_id,),
                                 consented=(user_id,), token_lifetime_s=sign_in.token_lifetime_s),
            folder=folder, graph_client_id=client_id, graph_secret_file=secret_file, graph_key_file=key_file,
            graph_thumbprint=thumbprint, docusign_key_file=_private(folder / "docusign-key.pem", rsa.private_key))

    def credentials(self, *, tenant_id: str, login_url: str, docusign_url: str) -> SignInCredentials:
        """What a firm's settings would hold, once the sign-in hosts listen."""
        return SignInCredentials(
            tenant_id=tenant_id, graph_client_id=self.graph_client_id, login_url=login_url,
            login_ca_file=self.folder / "tls-cert.pem", graph_secret_file=self.graph_secret_file,
            graph_key_file=self.graph_key_file, graph_thumbprint=self.graph_thumbprint,
            docusign_integration_key=self.docusign.integration_key, docusign_user_id=self.docusign.users[0],
            docusign_key_file=self.docusign_key_file, docusign_auth_url=docusign_url)


def _private(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")
    return path
