"""Each connector's own settings: where its system is and how the hub signs in, read from ``HUB_<SYSTEM>_*``
environment variables by pydantic-settings (``HUB_ERP_URL``, ``HUB_GRAPH_TOKEN``, ...). Secrets are
``SecretStr``: no ``repr`` or log line shows one. The defaults point at the simulators' default ports.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DocuSignSettings", "ErpSettings", "GraphSettings"]


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


class GraphSettings(BaseSettings):
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


class DocuSignSettings(BaseSettings):
    """The DocuSign eSignature account holding the envelopes."""

    model_config = _config("HUB_DOCUSIGN_")

    url: HttpUrl = Field(default="http://127.0.0.1:8093",
                     description="Base URL of the DocuSign eSignature API host (without /restapi).")
    token: SecretStr = Field(default=SecretStr("docusign-sim-token"),
                             description="OAuth access token for the DocuSign account.")
    account_id: str = Field(default="acme-firm", min_length=1, description="DocuSign account id holding the envelopes.")
