"""Authentication at the ingress: API keys, Standard Webhooks signatures and replay protection on real Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from standardwebhooks.webhooks import Webhook

from hub.errors import AuthenticationFailed, StoreUnavailable
from hub.ingress.auth import AuthenticatedSource, RedisReplayGuard, authenticate
from hub.ingress.sources import SourceConfig, SourceRegistry


def now() -> datetime:
    """This host's clock: the reference library checks timestamps against it."""
    return datetime.now(UTC)


OLD_SECRET = "whsec_" + base64.b64encode(b"erp-acme-signing-secret-old!").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"erp-acme-signing-secret-new!!").decode()
DOCS_SECRET = "whsec_" + base64.b64encode(b"docs-signing-secret-0123456789").decode()
STRANGER_SECRET = "whsec_" + base64.b64encode(b"nobody-knows-this-secret-000").decode()
API_KEY = "erp-acme-api-key-for-tests"
BODY = json.dumps({"specversion": "1.0", "id": "e-1", "type": "com.acme.erp.project.created",
                   "source": "/erp/acme", "data": {"project": "P-1", "amount": 1200}}).encode()


def source(source_id: str, *secrets: str, api_key: str | None = None) -> SourceConfig:
    credentials: list[dict[str, str]] = [{"scheme": "standard_webhooks", "secret": s} for s in secrets]
    if api_key:
        credentials.append({"scheme": "api_key", "sha256": hashlib.sha256(api_key.encode()).hexdigest()})
    return SourceConfig.model_validate({
        "id": source_id, "description": source_id, "sources": [f"/{source_id}"],
        "event_types": ["com.acme.*"], "credentials": credentials, "quota": "10/second",
    })


SOURCES = SourceRegistry([source("erp-acme", OLD_SECRET, NEW_SECRET, api_key=API_KEY), source("docs", DOCS_SECRET)])


def signed(secret: str, body: bytes = BODY, *, msg_id: str = "msg_2f1c", at: datetime | None = None
           ) -> dict[str, str]:
    """Headers of a webhook signed by the reference ``standardwebhooks`` package (now, unless ``at``)."""
    at = at or now()
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode())}


def auth(headers: dict[str, str], body: bytes = BODY, *, prefix: str = "unused",
         hint: str | None = None, redis_port: int = 6379) -> AuthenticatedSource:
    """Run ``authenticate`` with a Redis replay guard under ``prefix``, closing the client afterwards."""
    async def run() -> AuthenticatedSource:
        client = redis.asyncio.Redis(port=redis_port, socket_connect_timeout=2, socket_timeout=2,
                                     retry=Retry(NoBackoff(), 1))
        try:
            guard = RedisReplayGuard(client, key_prefix=prefix)
            return await authenticate(headers, body, sources=SOURCES, replay_guard=guard, source_hint=hint)
        finally:
            await client.aclose()
    return asyncio.run(run())


def refused(headers: dict[str, str], body: bytes = BODY, **kwargs: object) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        auth(headers, body, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_good_api_key_identifies_its_source() -> None:
    result = auth({"Authorization": f"Bearer {API_KEY}"})
    assert (result.id, result.scheme) == ("erp-acme", "api_key")


def test_a_wrong_api_key_is_refused_without_echoing_it() -> None:
    message = refused({"authorization": "Bearer erp-acme-api-key-for-test"})
    assert message == "unknown API key"


def test_another_authorization_scheme_is_refused() -> None:
    assert "use Bearer" in refused({"Authorization": f"Basic {API_KEY}"})


def test_no_credentials_are_refused() -> None:
    assert refused({"Content-Type": "application/cloudevents+json"}) == "missing credentials"


def test_both_schemes_in_one_request_are_refused() -> None:
    assert "not both" in refused({**signed(OLD_SECRET), "Authorization": f"Bearer {API_KEY}"})


def test_a_webhook_signed_by_the_reference_package_verifies(prefix: str) -> None:
    result = auth(signed(NEW_SECRET), prefix=prefix)
    assert (result.id, result.scheme, result.webhook_id, result.resend) == (
        "erp-acme", "standard_webhooks", "msg_2f1c", False)


def test_header_names_are_case_insensitive(prefix: str) -> None:
    headers = {name.upper(): value for name, value in signed(OLD_SECRET).items()}
    assert auth(headers, prefix=prefix).id == "erp-acme"


def test_each_source_is_found_by_its_own_secret(prefix: str) -> None:
    assert auth(signed(DOCS_SECRET), prefix=prefix).id == "docs"


def test_a_webhook_we_accept_is_accepted_by_the_reference_package_too(prefix: str) -> None:
    headers = signed(OLD_SECRET)
    assert auth(headers, prefix=prefix).id == "erp-acme"
    assert Webhook(OLD_SECRET).verify(BODY, headers) == json.loads(BODY)


def test_a_wrong_secret_does_not_verify_and_the_message_leaks_nothing() -> None:
    headers = signed(STRANGER_SECRET)
    message = refused(headers)
    assert message == "signature does not verify"
    expected = Webhook(OLD_SECRET).sign("msg_2f1c", now(), BODY.decode()).split(",")[1]
    for secret in (OLD_SECRET, NEW_SECRET, STRANGER_SECRET, expected, headers["webhook-signature"]):
        assert secret not in message


def test_a_flipped_byte_of_the_body_does_not_verify() -> None:
    tampered = bytearray(BODY)
    tampered[BODY.index(b"1200")] ^= 0x01
    assert refused(signed(OLD_SECRET), bytes(tampered)) == "signature does not verify"


def test_re_serialised_json_with_the_same_content_does_not_verify() -> None:
    reserialised = json.dumps(json.loads(BODY), indent=2).encode()
    assert json.loads(reserialised) == json.loads(BODY) and reserialised != BODY
    assert refused(signed(OLD_SECRET), reserialised) == "signature does not verify"


def test_a_stale_timestamp_is_refused() -> None:
    headers = signed(OLD_SECRET, at=now() - timedelta(minutes=5, seconds=2))
    assert refused(headers) == "timestamp outside the 5 minute tolerance"


def test_a_future_timestamp_is_refused() -> None:
    headers = signed(OLD_SECRET, at=now() + timedelta(minutes=5, seconds=2))
    assert refused(headers) == "timestamp outside the 5 minute tolerance"


def test_a_timestamp_within_the_tolerance_is_accepted(prefix: str) -> None:
    # A few seconds inside the window: the timestamp is whole seconds, and the check reads the clock again.
    assert auth(signed(OLD_SECRET, at=now() - timedelta(minutes=4, seconds=55)), prefix=prefix).id == "erp-acme"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_signature_header_is_refused(missing: str) -> None:
    headers = {k: v for k, v in signed(OLD_SECRET).items() if k != missing}
    assert refused(headers).startswith("incomplete signature headers")


def test_a_non_integer_timestamp_is_refused() -> None:
    assert "invalid webhook-timestamp" in refused({**signed(OLD_SECRET), "webhook-timestamp": "1.5e9"})


def test_during_rotation_either_secret_signs(prefix: str) -> None:
    assert auth(signed(OLD_SECRET, msg_id="m-old"), prefix=prefix).id == "erp-acme"
    assert auth(signed(NEW_SECRET, msg_id="m-new"), prefix=prefix).id == "erp-acme"


def test_any_of_several_signatures_in_the_header_may_match(prefix: str) -> None:
    good = signed(NEW_SECRET)
    stranger = Webhook(STRANGER_SECRET).sign("msg_2f1c", now(), BODY.decode())
    header = f"v1a,bm90LXN1cHBvcnRlZA== v1,not*base64 {stranger} {good['webhook-signature']}"
    assert auth({**good, "webhook-signature": header}, prefix=prefix).id == "erp-acme"
    assert refused({**good, "webhook-signature": f"v1a,bm90 {stranger}"}) == "signature does not verify"


def test_the_same_webhook_id_with_the_same_body_is_a_harmless_resend(prefix: str) -> None:
    headers = signed(OLD_SECRET)
    assert auth(headers, prefix=prefix).resend is False
    again = auth(signed(NEW_SECRET), prefix=prefix)
    assert (again.id, again.resend) == ("erp-acme", True)


def test_the_same_webhook_id_with_another_body_is_refused(prefix: str) -> None:
    auth(signed(OLD_SECRET), prefix=prefix)
    other = BODY.replace(b"P-1", b"P-2")
    message = refused(signed(OLD_SECRET, other), other, prefix=prefix)
    assert message == "webhook-id already used with a different body"


def test_webhook_ids_are_remembered_per_source(prefix: str) -> None:
    auth(signed(OLD_SECRET), prefix=prefix)
    other = BODY.replace(b"P-1", b"P-2")
    assert auth(signed(DOCS_SECRET, other), other, prefix=prefix).id == "docs"


def test_a_source_hint_limits_the_secrets_tried(prefix: str) -> None:
    assert auth(signed(DOCS_SECRET), prefix=prefix, hint="docs").id == "docs"
    assert refused(signed(OLD_SECRET), hint="docs") == "signature does not verify"
    assert refused(signed(OLD_SECRET), hint="no-such-source") == "signature does not verify"


def test_a_webhook_source_header_works_as_a_hint_and_must_agree_with_the_path(prefix: str) -> None:
    assert auth({**signed(DOCS_SECRET), "Webhook-Source": "docs"}, prefix=prefix).id == "docs"
    assert refused({**signed(OLD_SECRET), "webhook-source": "docs"}) == "signature does not verify"
    assert "does not match" in refused({**signed(OLD_SECRET), "webhook-source": "docs"}, hint="erp-acme")


def test_redis_down_makes_the_replay_check_unavailable_never_skipped() -> None:
    with pytest.raises(StoreUnavailable):
        auth(signed(OLD_SECRET), redis_port=1)


def test_the_redis_guard_reports_new_resend_and_conflict(prefix: str) -> None:
    async def run() -> list[str]:
        client = redis.asyncio.Redis(decode_responses=True)
        try:
            guard = RedisReplayGuard(client, key_prefix=prefix)
            return [await guard.check("s", "id-1", "a" * 64), await guard.check("s", "id-1", "a" * 64),
                    await guard.check("s", "id-1", "b" * 64), await guard.check("t", "id-1", "b" * 64)]
        finally:
            await client.aclose()
    assert asyncio.run(run()) == ["new", "resend", "conflict", "new"]


def test_the_signed_content_is_id_timestamp_and_raw_body(prefix: str) -> None:
    key = base64.b64decode(OLD_SECRET.removeprefix("whsec_"))
    timestamp = str(int(now().timestamp()))
    digest = hmac.new(key, b"msg_raw." + timestamp.encode() + b"." + BODY, hashlib.sha256).digest()
    headers = {"webhook-id": "msg_raw", "webhook-timestamp": timestamp,
               "webhook-signature": "v1," + base64.b64encode(digest).decode()}
    assert auth(headers, prefix=prefix).id == "erp-acme"


@pytest.mark.parametrize("signature", ["v1", "v1,", "nocomma", "v1,@@@@", "v1,a,b", "v2,YWJjZA== v1a,YWJjZA=="])
def test_a_malformed_signature_header_is_refused_never_a_crash(signature: str) -> None:
    assert refused({**signed(OLD_SECRET), "webhook-signature": signature}) == "signature does not verify"


def test_a_body_that_is_not_utf_8_is_refused_never_a_crash() -> None:
    body = b"\xff\xfe not utf-8"
    headers = signed(OLD_SECRET)  # signed over another body: the library is asked, and must not crash
    assert refused(headers, body) == "signature does not verify"
