"""The hub's own sign-in: Entra ID client credentials through msal and DocuSign's JWT grant, against the
simulators over real HTTP (Entra ID's host over TLS), with tokens that expire, are revoked or are refused."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from structlog.testing import capture_logs

import actors
from actors.exceptions import ExceptionRouter
from connectors.auth import BearerAuth, DocuSignJwtGrant, TokenSource
from connectors.docusign.client import DocuSignClient
from connectors.settings import DocuSignSettings, GraphSettings
from connectors.sharepoint.client import GraphClient
from hub.actor import DeadLetter, Emitting, RecordingEmitter
from hub.cli.scenario import sandbox_connections
from hub.errors import ConfigurationError, SignInRefused
from hub.ingress.server import serve_in_thread
from hub.registry import SchemaRegistry
from hub.settings import load
from simulators.docusign import DocuSignSimConfig
from simulators.docusign import create_app as docusign_app
from simulators.docusign.oauth import DocuSignJwt
from simulators.kit.tls import self_signed
from simulators.sandbox import Sandbox, SignIn, running_sandbox
from tests.support.rabbit import wait_until


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """The simulators with sign-in: Graph behind Entra ID (client secret), DocuSign behind its JWT grant."""
    with running_sandbox(serve=serve_in_thread, ingress_events_url=None, webhook_secret="unused",
                         sign_in=SignIn(token_lifetime_s=2.0)) as running:
        yield running


def _graph(sandbox: Sandbox, **changes: object) -> GraphClient:
    settings = sandbox_connections(sandbox).graph.model_copy(update=changes)
    return GraphClient.from_settings(settings)


def _issued(sandbox: Sandbox, system: str, client: str) -> int:
    issued: int = sandbox.token_requests()[system]["issued"].get(client, 0)
    return issued


def _answer(sandbox: Sandbox, token: str) -> httpx.Response:
    return httpx.get(f"{sandbox.graph_url}/drives/{sandbox.drive_id}", timeout=10,
                     headers={"authorization": f"Bearer {token}"})


def test_the_hub_signs_in_to_entra_id_with_a_client_secret_and_reuses_the_token(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None
    client_id = sandbox.sign_in.graph_client_id
    before = _issued(sandbox, "graph", client_id)
    graph = _graph(sandbox, token_margin_s=0.0)
    try:
        assert graph.children("root") == []
        assert graph.children("root") == []
        assert _issued(sandbox, "graph", client_id) == before + 1  # one sign-in for both calls
    finally:
        graph.close()


def test_graph_refuses_static_and_expired_tokens_in_its_own_words(sandbox: Sandbox) -> None:
    refused = _answer(sandbox, "graph-sim-token")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert refused.json()["error"]["message"] == "Access token validation failure."
    credentials = sandbox.sign_in
    assert credentials is not None and credentials.graph_secret_file is not None
    token = httpx.post(f"{credentials.login_url}/{credentials.tenant_id}/oauth2/v2.0/token",
                       verify=ssl.create_default_context(cafile=credentials.login_ca_file), timeout=10,
                       data={"grant_type": "client_credentials", "client_id": credentials.graph_client_id,
                             "client_secret": credentials.graph_secret_file.read_text(),
                             "scope": "https://graph.microsoft.com/.default"})
    assert token.status_code == 200 and token.json()["token_type"] == "Bearer"
    access = token.json()["access_token"]
    assert _answer(sandbox, access).status_code == 200
    assert wait_until(lambda: _answer(sandbox, access).status_code == 401, timeout=10)
    expired = _answer(sandbox, access)
    error = expired.json()["error"]
    assert (error["code"], error["message"]) == ("InvalidAuthenticationToken",
                                                 "Lifetime validation failed, the token is expired.")
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
    assert expired.headers["www-authenticate"].startswith('Bearer realm=""')


def _tokens(client: GraphClient | DocuSignClient) -> TokenSource:
    auth = client.http.client.auth
    assert isinstance(auth, BearerAuth)
    return auth.tokens


def test_a_token_is_renewed_before_it_expires_across_several_lifetimes(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None
    client_id = sandbox.sign_in.graph_client_id
    graph = _graph(sandbox)  # the default 300 s margin is cut to half of the 2 s lifetime
    try:
        before = _issued(sandbox, "graph", client_id)
        with capture_logs() as logs:
            for renewals in range(1, 4):
                assert graph.children("root") == []
                assert _issued(sandbox, "graph", client_id) == before + renewals
                held = _tokens(graph).token()
                assert wait_until(lambda held=held: _answer(sandbox, held).status_code == 401, timeout=10)
            assert graph.children("root") == []
        assert _issued(sandbox, "graph", client_id) == before + 4
        assert not [line for line in logs if line["event"].startswith("token refused")]  # renewed before, no 401
        assert sandbox.token_requests()["graph"]["refused"].get("invalid_client", 0) == 0
    finally:
        graph.close()


def test_a_token_the_api_refuses_gets_one_retry_with_a_fresh_token(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None
    client_id = sandbox.sign_in.graph_client_id
    graph = _graph(sandbox, token_margin_s=0.0)
    try:
        assert graph.children("root") == []
        before = _issued(sandbox, "graph", client_id)
        revoked = httpx.post(f"{sandbox.graph_url.removesuffix('/v1.0')}/_sim/tokens/revoke",
                             params={"client_id": client_id}, timeout=10).json()["revoked"]
        assert revoked >= 1
        assert graph.children("root") == []  # 401, a new sign-in, the same call again
        assert _issued(sandbox, "graph", client_id) == before + 1
    finally:
        graph.close()


def test_the_hub_signs_in_with_a_certificate() -> None:
    with running_sandbox(serve=serve_in_thread, ingress_events_url=None, webhook_secret="unused",
                         sign_in=SignIn(graph_certificate=True)) as sandbox:
        assert sandbox.sign_in is not None and sandbox.sign_in.graph_secret_file is None
        graph = GraphClient.from_settings(sandbox_connections(sandbox).graph)
        try:
            assert graph.children("root") == []
        finally:
            graph.close()
        assert _issued(sandbox, "graph", sandbox.sign_in.graph_client_id) == 1


def _established_to(port: int) -> int:
    """Connections of this machine's loopback in state ESTABLISHED towards ``port`` (from /proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    return sum(1 for line in lines
               if line.split()[3] == "01" and int(line.split()[2].rsplit(":", 1)[1], 16) == port)


def test_a_closed_graph_client_leaves_no_connection_open_to_entra_id(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None
    login_port = int(sandbox.sign_in.login_url.rsplit(":", 1)[1])
    graph = GraphClient.from_settings(sandbox_connections(sandbox).graph)
    try:
        graph.children("root")
        assert _established_to(login_port) >= 1  # msal's session keeps its connection alive between sign-ins
    finally:
        graph.close()
    assert wait_until(lambda: _established_to(login_port) == 0, timeout=10)


def test_a_refused_sign_in_names_the_tenant_and_never_the_secret(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None
    wrong = "not-the-secret-0123456789"
    graph = _graph(sandbox, client_secret_file=None, client_secret=SecretStr(wrong))
    try:
        with pytest.raises(SignInRefused) as refused:
            graph.children("root")
    finally:
        graph.close()
    assert refused.value.code == "invalid_client" and refused.value.who == sandbox.sign_in.tenant_id
    assert sandbox.sign_in.tenant_id in str(refused.value) and "AADSTS7000215" in str(refused.value)
    assert wrong not in str(refused.value)
    unknown = _graph(sandbox, tenant_id="no-such-tenant.onmicrosoft.com")
    try:
        with pytest.raises(SignInRefused, match=r"tenant no-such-tenant\.onmicrosoft\.com .*: invalid_tenant"):
            unknown.children("root")
    finally:
        unknown.close()
    assert sandbox.token_requests()["graph"]["refused"].get("invalid_client", 0) >= 1


def test_a_secret_file_fixed_after_a_refusal_is_read_again_without_a_restart(sandbox: Sandbox,
                                                                            tmp_path: Path) -> None:
    assert sandbox.sign_in is not None and sandbox.sign_in.graph_secret_file is not None
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("an-expired-secret")
    graph = _graph(sandbox, client_secret_file=secret_file)
    try:
        with pytest.raises(SignInRefused):
            graph.children("root")
        secret_file.write_text(sandbox.sign_in.graph_secret_file.read_text())
        assert graph.children("root") == []
    finally:
        graph.close()


def test_the_hub_signs_in_to_docusign_with_the_jwt_grant(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None
    envelope_id = sandbox.send_for_signature("ENG-1", "sow", "SOW.pdf")
    user = sandbox.sign_in.docusign_user_id
    before = _issued(sandbox, "docusign", user)
    docusign = DocuSignClient.from_settings(sandbox_connections(sandbox).docusign)
    try:
        assert docusign.get_envelope(envelope_id)["envelopeId"] == envelope_id
        assert docusign.get_envelope(envelope_id)["status"]
        assert _issued(sandbox, "docusign", user) == before + 1
        httpx.post(f"{sandbox.docusign_url}/_sim/tokens/revoke", params={"user_id": user}, timeout=10)
        assert docusign.get_envelope(envelope_id)["envelopeId"] == envelope_id  # one retry on a fresh token
        assert _issued(sandbox, "docusign", user) == before + 2
    finally:
        docusign.close()


def test_docusign_answers_an_unknown_token_in_its_own_words(sandbox: Sandbox) -> None:
    answer = httpx.get(f"{sandbox.docusign_url}/restapi/v2.1/accounts/{sandbox.docusign_account}/envelopes/x",
                       headers={"authorization": "Bearer docusign-sim-token"}, timeout=10)
    assert answer.status_code == 401
    assert answer.json() == {"errorCode": "AUTHORIZATION_INVALID_TOKEN",
                             "message": "The access token provided is expired, revoked or malformed."}


def test_docusign_refuses_a_wrong_key_and_a_user_without_consent_naming_the_account(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None
    other_key = self_signed("someone-else").private_key
    settings = sandbox_connections(sandbox).docusign.model_copy(
        update={"private_key_file": None, "private_key": SecretStr(other_key)})
    docusign = DocuSignClient.from_settings(settings)
    try:
        with pytest.raises(SignInRefused, match=r"account acme-firm .*invalid_grant \(no_valid_keys_or_signatures\)"):
            docusign.get_envelope("any")
    finally:
        docusign.close()
    key = self_signed("integration")
    grant = DocuSignJwt(integration_key="ik-1", public_key=key.public_key, users=("u-1",), consented=())
    with serve_in_thread(docusign_app(DocuSignSimConfig(jwt=grant))) as url:
        unconsented = DocuSignClient.from_settings(DocuSignSettings(
            url=url, auth_url=url, account_id="acme-firm", integration_key="ik-1", user_id="u-1",
            private_key=SecretStr(key.private_key)))
        try:
            with pytest.raises(SignInRefused) as refused:
                unconsented.get_envelope("any")
        finally:
            unconsented.close()
        assert refused.value.code == "consent_required" and refused.value.who == "acme-firm"
        token = httpx.post(f"{url}/oauth/token", data={"grant_type": "password"}, timeout=10)
        assert (token.status_code, token.json()) == (400, {"error": "unsupported_grant_type"})


def test_threads_of_a_process_share_one_sign_in() -> None:
    key = self_signed("integration")
    grant = DocuSignJwt(integration_key="ik-2", public_key=key.public_key, users=("u-2",), consented=("u-2",))
    with serve_in_thread(docusign_app(DocuSignSimConfig(jwt=grant))) as url:
        tokens = DocuSignJwtGrant(DocuSignSettings(url=url, auth_url=url, integration_key="ik-2", user_id="u-2",
                                                   private_key=SecretStr(key.private_key)), account_id="acme-firm")
        start = threading.Barrier(8)
        got: list[str] = []

        def sign_in() -> None:
            start.wait(timeout=30)
            got.append(tokens.token())

        threads = [threading.Thread(target=sign_in) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        tokens.close()
        issued = httpx.get(f"{url}/_sim/tokens", timeout=10).json()["issued"]
    assert len(got) == 8 and len(set(got)) == 1
    assert issued == {"u-2": 1} and tokens.sign_ins == 1


def test_secrets_keys_and_tokens_appear_in_no_log_line_span_or_error(sandbox: Sandbox) -> None:
    assert sandbox.sign_in is not None and sandbox.sign_in.graph_secret_file is not None
    secret = sandbox.sign_in.graph_secret_file.read_text()
    private_key = sandbox.sign_in.docusign_key_file.read_text()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    connections = sandbox_connections(sandbox)
    errors: list[str] = []
    with capture_logs() as logs:
        graph = GraphClient.from_settings(connections.graph, tracer_provider=provider)
        wrong = GraphClient.from_settings(connections.graph.model_copy(
            update={"client_secret_file": None, "client_secret": SecretStr(secret + "x")}), tracer_provider=provider)
        docusign = DocuSignClient.from_settings(connections.docusign)
        try:
            graph.children("root")
            docusign.get_envelope(sandbox.send_for_signature("ENG-2", "sow", "SOW.pdf"))
            try:
                wrong.children("root")
            except SignInRefused as exc:
                errors.append(repr(exc) + str(exc))
            tokens = [_tokens(graph).token(), _tokens(docusign).token()]
        finally:
            graph.close()
            wrong.close()
            docusign.close()
    assert errors and any(line.get("event") == "signed in" for line in logs)
    seen = " ".join([repr(logs), *errors, *(span.to_json() for span in exporter.get_finished_spans()),
                     repr(connections)])
    for needle in (secret, private_key.splitlines()[1], *tokens):
        assert needle not in seen


def test_a_refused_sign_in_is_an_exception_for_the_platform_team_whatever_the_workflow() -> None:
    registry = SchemaRegistry.load()
    emitter = RecordingEmitter()
    now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    out = Emitting(spec=actors.exceptions.SPEC, registry=registry, emitter=emitter, clock=lambda: now)
    message = {"message_id": "m-7", "actor_name": "document_intake",
               "options": {"hub_event": {"id": "evt-7", "type": "dms.document.changed.v1", "subject": "ENG-7"}}}
    error = "SignInRefused: Entra ID refused the sign-in of tenant t-1 (client id c-1): invalid_client (AADSTS7000215)"
    ExceptionRouter({"document_intake": "records_management"}).handle_dead_letter(
        DeadLetter(message=message, why="permanent error", error=error), out)
    [raised] = emitter.of_type("hub.exception.raised.v1")
    data = registry.decode("hub.exception.raised.v1", raised.get_data())
    assert (data["owner"], data["kind"]) == ("platform_team", "platform.sign_in_refused")
    assert "tenant t-1" in data["detail"]


def test_sign_in_settings_are_checked_at_start_without_quoting_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_GRAPH_CLIENT_ID", "c-1")
    monkeypatch.setenv("HUB_GRAPH_TENANT_ID", "t-1")
    monkeypatch.setenv("HUB_GRAPH_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("HUB_GRAPH_CERTIFICATE_KEY", "-----BEGIN PRIVATE KEY-----")
    with pytest.raises(ConfigurationError) as both:
        load(GraphSettings)
    assert "HUB_GRAPH_" in str(both.value) and "CLIENT_SECRET" in str(both.value)
    assert "s3cret-value" not in str(both.value) and "BEGIN" not in str(both.value)
    monkeypatch.delenv("HUB_GRAPH_CERTIFICATE_KEY")
    settings = load(GraphSettings)
    assert settings.signs_in and "s3cret-value" not in repr(settings)
