"""The hub's error tree.

Whether an error is retried is a property of its type, never of the call site::

    HubError
     ├── ConfigurationError          bad settings, policy or schema files: fail at start
     │    ├── SchemaError            a broken or incompatible Avro schema
     │    └── CredentialsRefused     RabbitMQ or Redis refused the hub's own user or password: stop
     ├── RetryableError              try again later (with ``retry_after`` seconds when known)
     │    ├── StoreUnavailable       Redis did not answer: an explicit retry, never a silent run or skip
     │    ├── LeaseHeld              another worker holds the idempotency lease for this message
     │    ├── EntityLocked           another worker holds the lock on the entity: wait, on a budget of its own
     │    ├── BrokerUnavailable      RabbitMQ refused, nacked or could not be reached
     │    └── UpstreamUnavailable    a connected system answered 5xx / 429 / timed out
     └── PermanentError              retrying cannot help: dead-letter at once
          ├── InvalidEvent           the event breaks the CloudEvents contract
          │    ├── UnknownEventType  no schema is registered for the event's ``type``
          │    ├── SchemaViolation   the data does not match the type's Avro schema (names the field)
          │    └── JsonError         a body is not strict JSON (``hub.ingress.binding.loads``)
          │         ├── MalformedJson     not UTF-8 or JSON, NaN, a duplicate key, a lone surrogate
          │         └── JsonTooComplex    nested too deeply, an integer too long
          ├── UpstreamRejected       a connected system answered 4xx (not 408/409/429)
          │    └── SignInRefused     Entra ID or DocuSign refused the hub's own sign-in (names the tenant
          │                          or account, never the secret): routed to the platform team
          ├── AuthenticationFailed   a caller's credentials or signature did not verify
          ├── NotAuthorized          an authenticated source may not publish this event
          └── HardStop               a hard-stop workflow refused to continue; routed to its owner
"""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error the hub raises on purpose."""

    retryable: bool = False


class ConfigurationError(HubError):
    """Settings, policy or schema files are invalid; raised at start."""


class SchemaError(ConfigurationError):
    """An Avro schema is broken, unresolvable or not backward compatible."""


class CredentialsRefused(ConfigurationError):
    """RabbitMQ or Redis refused the hub's credentials (or their rights) again and again: retrying cannot
    help, so ``hub serve`` and ``hub worker`` stop. The message names the server and its URL, never the
    password."""


class RetryableError(HubError):
    """A transient failure: the message is retried with backoff."""

    retryable = True

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the other side asked us to wait (``Retry-After``), when known.
        self.retry_after = retry_after


class StoreUnavailable(RetryableError):
    """Redis (or the embedded store) could not be reached."""


class LeaseHeld(RetryableError):
    """Another worker holds the idempotency lease of this message."""


class EntityLocked(RetryableError):
    """Another worker holds the lock on the entity this message changes (:func:`hub.store.holding`).

    A wait, not a failure: :class:`hub.retries.HubRetries` retries it on a budget of its own that covers
    the lock's lifetime (``ttl_ms``), since a holder that died keeps the entity locked that long, and a
    lock wait counted as a failed attempt dead-lettered every update meanwhile.
    """

    def __init__(self, message: str, *, lock: str, remaining_ms: int, ttl_ms: int) -> None:
        super().__init__(message)
        #: The lock's name.
        self.lock = lock
        #: Milliseconds the lock still has to live when it was found held (0: it was just given back).
        self.remaining_ms = remaining_ms
        #: The lock's lifetime: the longest a holder that died keeps it.
        self.ttl_ms = ttl_ms


class BrokerUnavailable(RetryableError):
    """RabbitMQ could not be reached, was blocked, or did not confirm a publish."""


class UpstreamUnavailable(RetryableError):
    """A connected system is temporarily unavailable (5xx, 429, timeout, open circuit)."""


class CircuitOpen(UpstreamUnavailable):
    """A call refused without being sent: the circuit breaker of ``target`` is open (or its half-open trial
    call is out). Not a failure of the message: ``retry_after`` says when the breaker lets a call through
    again, and ``reset_s`` how long it stays open each time."""

    def __init__(self, message: str, *, target: str, retry_after: float, reset_s: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.target = target
        self.reset_s = reset_s


class NotYet(RetryableError):
    """A prerequisite of the message does not exist yet: the project's workspace not provisioned, a project the ERP
    does not know yet, a document not yet visible. Source systems deliver in any order, so a missing prerequisite
    is a wait, not a failure: :class:`hub.retries.HubRetries` retries it with backoff, outside the failure budget,
    up to the hub's horizon for prerequisites (``HUB_PREREQUISITE_WAIT_S``), then dead-letters it (replayable once
    the prerequisite exists) as a ``<actor>.prerequisite_missing`` case for the actor's owner.

    ``prerequisite``: what is missing, a short code (``workspace``, ``erp_project``, ``document``)."""

    def __init__(self, message: str, *, prerequisite: str) -> None:
        super().__init__(message)
        self.prerequisite = prerequisite


class PermanentError(HubError):
    """A failure that no retry can fix: the message is dead-lettered at once."""


class InvalidEvent(PermanentError):
    """The event breaks the CloudEvents contract of the hub."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: Path of the offending attribute or data field, when known.
        self.field = field


class UnknownEventType(InvalidEvent):
    """No Avro schema is registered for the event's ``type``."""


class SchemaViolation(InvalidEvent):
    """The event data does not match its type's Avro schema."""


class JsonError(InvalidEvent):
    """A body that strict JSON refuses (every route reads its body with ``hub.ingress.binding.loads``)."""


class MalformedJson(JsonError):
    """Not UTF-8, not JSON, or JSON the hub refuses: NaN/Infinity, a duplicate key, a lone surrogate."""


class JsonTooComplex(JsonError):
    """Nesting, integer length or number size beyond the bounds."""


class UpstreamRejected(PermanentError):
    """A connected system rejected the request (a 4xx that retrying cannot fix)."""


class SignInRefused(UpstreamRejected):
    """The identity provider refused the hub's own sign-in (a wrong secret or key, an unknown tenant or app,
    consent not granted): no retry helps until an operator fixes the settings or the app registration.

    The message names the provider, the tenant or account and the provider's error code, never a secret;
    ``who`` is the tenant or account, ``code`` the provider's error (``invalid_client``, ``consent_required``).
    """

    def __init__(self, message: str, *, who: str, code: str) -> None:
        super().__init__(message)
        self.who = who
        self.code = code


class AuthenticationFailed(PermanentError):
    """Credentials or a signature did not verify; the message never says which secret was tried."""


class NotAuthorized(PermanentError):
    """An authenticated source may not publish this event type or claim this ``source``."""


class HardStop(PermanentError):
    """A hard-stop workflow refused to continue; the case is routed to its owner."""


#: Exceptions an actor never retries, for Dramatiq's ``throws`` option.
NEVER_RETRIED: tuple[type[BaseException], ...] = (PermanentError,)
