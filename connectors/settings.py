"""Each connector's own settings: where its system is and how the hub signs in, read from ``HUB_<SYSTEM>_*``
environment variables by pydantic-settings (``HUB_ERP_URL``, ``HUB_GRAPH_TOKEN``, ...). Secrets are
``SecretStr``: no ``repr`` or log line shows one. The defaults point at the simulators' default ports.

Graph and DocuSign take a static bearer token (``HUB_GRAPH_TOKEN``, ``HUB_DOCUSIGN_TOKEN``) unless the sign-in
settings are given (:class:`EntraSignIn`: ``HUB_GRAPH_CLIENT_ID`` and the rest; :class:`DocuSignJwtSignIn`:
``HUB_DOCUSIGN_INTEGRATION_KEY`` and the rest), in which case :mod:`connectors.auth` signs in and refreshes.
A client secret or private key is given in the environment or as a file path (``..._FILE``), never in the
policy file. Box always signs in (:class:`BoxSettings`: a Platform app's Client Credentials Grant for the
enterprise); its defaults are the simulator's app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BoxSettings", "DocuSignJwtSignIn", "DocuSignSettings", "EntraSignIn", "ErpSettings", "GraphSettings"]


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


#: A service's base URL.
HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="forbid", frozen=True, env_file=None, case_sensitive=False)


class ErpSettings(BaseSettings):
    """The ERP's API."""

    model_config = _config("HUB_ERP_")

    url: HttpUrl = Field(default="http://127.0.0.1:8091", description="Base URL of the ERP API (or its simulator).")
    token: SecretStr = Field(default=SecretStr("erp-sim-token"), description="Bearer token for the ERP API.")


def _one_of(settings: BaseSettings, names: tuple[str, ...], *, what: str) -> None:
    given = [name for name in names if getattr(settings, name) is not None]
    if len(given) != 1:
        raise ValueError(f"{what} needs exactly one of {', '.join(n.upper() for n in names)} ({len(given)} set)")


class EntraSignIn(BaseSettings):
    """Sign-in to Microsoft Graph with OAuth 2.0 client credentials against Entra ID (an app registration of
    the firm's tenant). Unset ``client_id``: the static ``token`` is sent instead."""

    tenant_id: str | None = Field(default=None, min_length=1,
                                  description="Entra ID tenant (directory) id or its verified domain name.")
    client_id: str | None = Field(default=None, min_length=1,
                                  description="Application (client) id of the hub's app registration.")
    client_secret: SecretStr | None = Field(default=None, description="The app registration's client secret.")
    client_secret_file: Path | None = Field(default=None, description="A file holding the client secret.")
    certificate_key: SecretStr | None = Field(
        default=None, description="PEM private key of the certificate uploaded to the app registration.")
    certificate_key_file: Path | None = Field(default=None, description="A file holding that PEM private key.")
    certificate_thumbprint: str | None = Field(
        default=None, pattern=r"^[0-9A-Fa-f]{40}$", description="SHA-1 thumbprint (hex) of that certificate.")
    authority_url: HttpUrl = Field(default="https://login.microsoftonline.com",
                                   description="Entra ID sign-in host (a national cloud's, or a simulator's).")
    scope: str = Field(default="https://graph.microsoft.com/.default", min_length=1,
                       description="The resource's .default scope asked for.")
    sign_in_ca_file: Path | None = Field(default=None,
                                         description="CA bundle trusted for the sign-in host (default: the system's).")
    token_margin_s: float = Field(default=300.0, ge=0,
                                  description="Sign in again this long before the token expires.")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.client_id is None:
            return self
        if self.tenant_id is None:
            raise ValueError("CLIENT_ID needs TENANT_ID")
        _one_of(self, ("client_secret", "client_secret_file", "certificate_key", "certificate_key_file"),
                what="Entra ID sign-in")
        if (self.certificate_key or self.certificate_key_file) and not self.certificate_thumbprint:
            raise ValueError("a certificate key needs CERTIFICATE_THUMBPRINT")
        return self

    @property
    def signs_in(self) -> bool:
        """Whether the hub signs in (rather than sending the static token)."""
        return self.client_id is not None


class DocuSignJwtSignIn(BaseSettings):
    """Sign-in to DocuSign with the JWT grant (an integration key impersonating a user who granted consent).
    Unset ``integration_key``: the static ``token`` is sent instead."""

    integration_key: str | None = Field(default=None, min_length=1,
                                        description="The app's integration key (client id).")
    user_id: str | None = Field(default=None, min_length=1, description="API user id (GUID) the hub acts as.")
    private_key: SecretStr | None = Field(default=None, description="PEM RSA private key of the integration key.")
    private_key_file: Path | None = Field(default=None, description="A file holding that PEM private key.")
    auth_url: HttpUrl = Field(default="https://account-d.docusign.com",
                              description="DocuSign's sign-in host (account.docusign.com in production).")
    scope: str = Field(default="signature impersonation", min_length=1, description="Scopes asked for.")
    token_margin_s: float = Field(default=300.0, ge=0,
                                  description="Sign in again this long before the token expires.")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.integration_key is None:
            return self
        if self.user_id is None:
            raise ValueError("INTEGRATION_KEY needs USER_ID")
        _one_of(self, ("private_key", "private_key_file"), what="DocuSign JWT sign-in")
        return self

    @property
    def signs_in(self) -> bool:
        """Whether the hub signs in (rather than sending the static token)."""
        return self.integration_key is not None


class GraphSettings(EntraSignIn):
    """Microsoft Graph: the SharePoint document library holding the workspaces."""

    model_config = _config("HUB_GRAPH_")

    url: HttpUrl = Field(default="http://127.0.0.1:8092/v1.0",
                         description="Base URL of Microsoft Graph, or of its simulator.")
    token: SecretStr = Field(default=SecretStr("graph-sim-token"), description="Bearer token for Graph.")
    site_url: HttpUrl = Field(default="https://sim.sharepoint.example/sites/hub",
                              description="The SharePoint site holding the workspaces library, as its URL.")
    library: str = Field(default="workspaces", min_length=1,
                         description="The document library (drive) holding the workspaces, by name.")
    # A firm whose library shares its name with another one of the site (SharePoint allows two libraries
    # with one title in different URLs) names the drive by id; otherwise the id is found from the name.
    drive_id: str | None = Field(default=None, min_length=1,
                                 description="The library's drive id (b!...), overriding the lookup by name.")
    client_state: SecretStr | None = Field(
        default=None, description="clientState of the hub's Graph change-notification subscription.")
    notification_url: HttpUrl | None = Field(
        default=None, description="The ingress's Graph webhook (https://.../v1/webhooks/graph/<source id>): with "
                                  "it and the clientState set, the workers keep the subscription renewed.")


class DocuSignSettings(DocuSignJwtSignIn):
    """The DocuSign eSignature account holding the envelopes."""

    model_config = _config("HUB_DOCUSIGN_")

    url: HttpUrl = Field(default="http://127.0.0.1:8093",
                     description="Base URL of the DocuSign eSignature API host (without /restapi).")
    token: SecretStr = Field(default=SecretStr("docusign-sim-token"),
                             description="OAuth access token for the DocuSign account.")
    account_id: str = Field(default="acme-firm", min_length=1, description="DocuSign account id holding the envelopes.")


class BoxSettings(BaseSettings):
    """Box: the enterprise holding the workspaces, signed in as a Box Platform app (server authentication with
    Client Credentials Grant) acting as its service account."""

    model_config = _config("HUB_BOX_")

    url: HttpUrl = Field(default="http://127.0.0.1:8094",
                         description="Box API host (https://api.box.com): the API at /2.0, sign-in at /oauth2/token.")
    upload_url: HttpUrl = Field(default="http://127.0.0.1:8094/api",
                                description="Box upload host with its /api prefix (https://upload.box.com/api).")
    enterprise_id: str = Field(default="1164695563", pattern=r"^[0-9]+$",
                               description="The enterprise id the app signs in for (box_subject_id).")
    client_id: str = Field(default="box-sim-client-id", min_length=1, description="The Platform app's client id.")
    client_secret: SecretStr = Field(default=SecretStr("box-sim-client-secret"),
                                     description="The Platform app's client secret.")
    client_secret_file: Path | None = Field(default=None,
                                            description="A file holding the client secret (read instead of it).")
    web_url: HttpUrl = Field(default="https://app.box.com",
                             description="Where people open Box: a workspace's link is <it>/folder/<id>.")
    root_folder_id: str = Field(default="0", pattern=r"^[0-9]+$",
                                description="The folder the workspaces are made in (0: the service account's root).")
    metadata_template: str = Field(default="hubWorkspace", pattern=r"^[a-zA-Z_][-a-zA-Z0-9_]{0,63}$",
                                   description="The enterprise metadata template holding the canonical fields.")
    chunked_upload_threshold: int = Field(default=50 * 1024 * 1024, ge=1,
                                          description="Files larger than this are uploaded in an upload session "
                                                      "(Box accepts sessions from 20 MB).")
    token_margin_s: float = Field(default=300.0, ge=0, description="Sign in again this long before the token expires.")
