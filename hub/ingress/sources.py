"""Publishing sources: who may send what to the ingress, read from the sources file at start.

The file (``HUB_SOURCES_FILE``, see ``examples/sources.yaml``) lists each source with its credentials,
the CloudEvents ``source`` values it may claim, the event types it may publish and its quota. It is
validated once; every error names the file, the line and the field. Secrets are ``SecretStr`` so
that no ``repr`` or log line ever shows one.

What a source may hold besides belongs to the packages mounted on the ingress, and the composition root
composes it in with :func:`source_model` (as :func:`hub.policy.policy_model` does for the policy file):
each webhook adapter's block of keys, named after its vendor, and the names of the queries the mounted
routers answer, which a source lists in ``queries``. An adapter reads its block with
:meth:`SourceConfig.vendor_block`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import limits
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from hub.errors import ConfigurationError, NotAuthorized
from hub.settings import Settings
from hub.yamlfile import Loc, field_path, invalid_file, load_model
from observability.logging import get_logger

log = get_logger(__name__)

_WHAT = "sources file"


def _from_env(value: object, info: ValidationInfo) -> object:
    """Replace ``{secret_env: NAME}`` by the variable's value from the environ given to load_sources()."""
    if not (isinstance(value, Mapping) and set(value) == {"secret_env"}):
        return value
    environ = (info.context or {}).get("environ")
    if environ is None:
        raise ValueError("secret_env is read only by load_sources()")
    name = value["secret_env"]
    if not isinstance(name, str) or name.upper().startswith("HUB_"):
        raise ValueError("secret_env must name a variable not starting with HUB_ (reserved for settings)")
    if name not in environ:
        raise ValueError(f"environment variable {name} is not set")
    return environ[name]


#: A secret given inline or as ``{secret_env: NAME}``.
Secret = Annotated[SecretStr, BeforeValidator(_from_env), Field(min_length=1)]


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (Standard Webhooks: 24 to 64 random bytes)."""
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
        raise ValueError("must be whsec_ followed by the base64 of 24 to 64 bytes")
    return key


def _whsec(value: SecretStr) -> SecretStr:
    webhook_key(value.get_secret_value())
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeyCredential(_Model):
    """An API key, stored as the SHA-256 of the key (``Authorization: Bearer <key>``)."""

    scheme: Literal["api_key"]
    # Hidden from repr: an unsalted hash lets anyone holding it test guessed keys offline.
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", repr=False)

    @property
    def digest(self) -> bytes:
        """The key's SHA-256 as bytes."""
        return bytes.fromhex(self.sha256)


class WebhookCredential(_Model):
    """A Standard Webhooks signing secret ``whsec_<base64>``, inline or as ``secret_env: NAME``."""

    scheme: Literal["standard_webhooks"]
    secret: Annotated[Secret, AfterValidator(_whsec)]

    @model_validator(mode="before")
    @classmethod
    def _secret_env(cls, data: object) -> object:
        if isinstance(data, Mapping) and "secret_env" in data:
            if "secret" in data:
                raise ValueError("give either secret or secret_env, not both")
            data = {**{k: v for k, v in data.items() if k != "secret_env"},
                    "secret": {"secret_env": data["secret_env"]}}
        return data

    @property
    def key(self) -> bytes:
        """The HMAC key."""
        return webhook_key(self.secret.get_secret_value())


Credential = Annotated[ApiKeyCredential | WebhookCredential, Field(discriminator="scheme")]


class VendorBlock(_Model):
    """The base of a vendor's block of webhook keys in a source (its fields use :data:`Secret`)."""


BlockT = TypeVar("BlockT", bound=BaseModel)


def _answered(queries: Collection[str]) -> Callable[[str], str]:
    """A check that a query name is one of ``queries``."""
    known = frozenset(queries)

    def check(name: str) -> str:
        if name not in known:
            raise ValueError(f"unknown query {name!r} (this ingress answers: {', '.join(sorted(known)) or 'none'})")
        return name

    return check


def _prefix_pattern(value: str) -> str:
    if "*" in value.removesuffix("*") or value == "*":
        raise ValueError("'*' is allowed only at the end, after a non-empty prefix")
    return value


#: A CloudEvents ``source``: exact, or a prefix ending in ``*``.
SourcePattern = Annotated[str, AfterValidator(_prefix_pattern)]
#: An event type: exact, or ``prefix.*`` for every type under ``prefix.``.
TypePattern = Annotated[str, Field(pattern=r"^[\w-]+(\.[\w-]+)*(\.\*)?$")]


class SourceConfig(_Model):
    """One publishing source: identity, credentials, permissions and quota."""

    id: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=64)
    description: str = Field(min_length=1)
    sources: list[SourcePattern] = Field(min_length=1)
    event_types: list[TypePattern] = Field(min_length=1)
    credentials: list[Credential] = Field(default_factory=list)
    quota: str
    #: Synchronous questions the source may ask with its API key; :func:`source_model` names those there are.
    queries: list[Annotated[str, AfterValidator(_answered(()))]] = Field(default_factory=list)

    @field_validator("quota")
    @classmethod
    def _quota(cls, value: str) -> str:
        if len(limits.parse_many(value)) != 1:
            raise ValueError("give a single rate such as '100/minute'")
        return value

    @model_validator(mode="after")
    def _some_credential(self) -> SourceConfig:
        vendors = self.vendors()
        if not (self.credentials or any(getattr(self, vendor) is not None for vendor in vendors)):
            raise ValueError(f"a source needs credentials or a vendor block ({', '.join(vendors) or 'none here'})")
        return self

    @classmethod
    def vendors(cls) -> tuple[str, ...]:
        """The vendor blocks a source may hold: those :func:`source_model` composed in."""
        return tuple(name for name in cls.model_fields if name not in SourceConfig.model_fields)

    def vendor_block(self, vendor: str, model: type[BlockT]) -> BlockT | None:
        """The source's block of ``vendor`` (composed in by :func:`source_model`), typed; None when it has none."""
        if vendor not in self.vendors():
            raise ConfigurationError(f"the sources model has no {vendor!r} block: load the sources with the "
                                     "model the composition root composes")
        value = getattr(self, vendor)
        if value is not None and not isinstance(value, model):
            raise ConfigurationError(f"the {vendor!r} block of the sources model is not a {model.__name__}")
        return value

    @property
    def rate_limit(self) -> limits.RateLimitItem:
        """The quota as a ``limits`` item."""
        return limits.parse(self.quota)

    @property
    def webhook_keys(self) -> tuple[bytes, ...]:
        """HMAC keys of the source's Standard Webhooks secrets (several while rotating)."""
        return tuple(c.key for c in self.credentials if isinstance(c, WebhookCredential))

    def may_publish_type(self, event_type: str) -> bool:
        """Whether ``event_type`` is listed exactly or under a ``prefix.*`` wildcard."""
        return any(event_type == p or (p.endswith(".*") and event_type.startswith(p[:-1]) and
                                       len(event_type) > len(p) - 1) for p in self.event_types)

    def may_claim(self, ce_source: str) -> bool:
        """Whether the CloudEvents ``source`` is listed exactly or under a ``prefix*``."""
        return any(ce_source == p or (p.endswith("*") and ce_source.startswith(p[:-1])) for p in self.sources)


class SourcesFile(_Model):
    """The whole sources file."""

    sources: list[SourceConfig] = Field(min_length=1)


def source_model(*, vendors: Mapping[str, type[BaseModel]] | None = None, queries: Collection[str] = ()
                 ) -> type[SourceConfig]:
    """The model of one source: the runtime's fields, an optional block per vendor in ``vendors`` (its adapter's
    model of keys) and ``queries`` listing only the names in ``queries`` (those the mounted routers answer)."""
    blocks = dict(vendors or {})
    clash = sorted(set(blocks) & (set(SourceConfig.model_fields) | set(dir(SourceConfig))))
    if clash:
        raise ConfigurationError(f"vendor blocks {', '.join(clash)} clash with the fields or methods of a source")
    fields: dict[str, Any] = {name: (model | None, None) for name, model in blocks.items()}
    fields["queries"] = (list[Annotated[str, AfterValidator(_answered(queries))]], Field(default_factory=list))
    composed: type[SourceConfig] = create_model("SourceConfig", __base__=SourceConfig, **fields)
    return composed


def _file_model(model: type[SourceConfig]) -> type[SourcesFile]:
    if model is SourceConfig:
        return SourcesFile
    composed: type[SourcesFile] = create_model(
        "SourcesFile", __base__=SourcesFile, sources=(list[model], Field(min_length=1)))  # type: ignore[valid-type]
    return composed


def _duplicates(sources: list[SourceConfig]) -> list[tuple[Loc, str]]:
    """Ids, API keys and webhook secrets used twice: each would make a request's source ambiguous."""
    problems: list[tuple[Loc, str]] = []
    seen: dict[object, str] = {}
    for i, source in enumerate(sources):
        owned: list[tuple[Loc, object, str]] = [(("sources", i, "id"), ("id", source.id), "duplicate source id")]
        for j, cred in enumerate(source.credentials):
            what = ("api_key", cred.digest) if isinstance(cred, ApiKeyCredential) else ("wh", cred.key)
            owned.append((("sources", i, "credentials", j), what, "credential already used"))
        for loc, key, message in owned:
            if key in seen:
                problems.append((loc, f"{message} (first in source '{seen[key]}')"))
            seen.setdefault(key, source.id)
    return problems


class SourceRegistry:
    """The validated sources with the lookups the ingress needs."""

    def __init__(self, sources: Iterable[SourceConfig], *, origin: str = "<memory>") -> None:
        listed = list(sources)
        problems = _duplicates(listed)
        if problems:
            raise ConfigurationError("; ".join(f"{origin}: {field_path(loc)}: {msg}" for loc, msg in problems))
        self.origin = origin
        self._by_id = {s.id: s for s in listed}
        self._api_keys = tuple((c.digest, s) for s in listed for c in s.credentials
                               if isinstance(c, ApiKeyCredential))

    def __repr__(self) -> str:
        return f"SourceRegistry(origin={self.origin!r}, sources={list(self._by_id)!r})"

    def __iter__(self) -> Iterator[SourceConfig]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, source_id: str) -> SourceConfig | None:
        """The source with this id, if any."""
        return self._by_id.get(source_id)

    def by_api_key(self, key: str) -> SourceConfig | None:
        """The source holding this API key: its SHA-256 is compared in constant time with every candidate."""
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for stored, source in self._api_keys:
            # No early exit: the time taken does not depend on which candidate matched.
            if hmac.compare_digest(stored, digest) and found is None:
                found = source
        return found

    def may_publish(self, source: SourceConfig, event_type: str, ce_source: str) -> None:
        """Raise ``NotAuthorized`` unless ``source`` may publish ``event_type`` claiming ``ce_source``."""
        if not source.may_publish_type(event_type):
            raise NotAuthorized(f"source '{source.id}' may not publish type '{event_type[:200]}'")
        if not source.may_claim(ce_source):
            raise NotAuthorized(f"source '{source.id}' may not claim source '{ce_source[:200]}'")


def load_sources(path: Path, environ: Mapping[str, str], *, model: type[SourceConfig] = SourceConfig
                 ) -> SourceRegistry:
    """Read and validate the sources file, each source with ``model`` (see :func:`source_model`);
    ``secret_env`` names are looked up in ``environ`` only."""
    parsed, root = load_model(path, _file_model(model), what=_WHAT, context={"environ": environ})
    duplicates = _duplicates(parsed.sources)
    if duplicates:
        raise invalid_file(path, root, duplicates, what=_WHAT)
    registry = SourceRegistry(parsed.sources, origin=str(path))
    log.info("sources loaded", path=str(path), sources=len(registry))
    return registry


def sources_from_settings(settings: Settings, environ: Mapping[str, str], *,
                          model: type[SourceConfig] = SourceConfig) -> SourceRegistry:
    """Load the file named by ``HUB_SOURCES_FILE`` with ``model``; the ingress refuses to start without one."""
    if settings.sources_file is None:
        raise ConfigurationError("HUB_SOURCES_FILE is not set: the ingress needs a sources file")
    return load_sources(settings.sources_file, environ, model=model)
