"""The sources file: validated at start with file, line and field in every error; lookups and permissions.

Files are loaded as ``hub serve`` loads them (:func:`hub.cli.compose.load_sources`: the runtime's source model
with the webhook adapters' blocks and the mounted routers' queries), except where the runtime's own model is
the point.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from hub.cli.compose import load_sources, source_model, sources_from_settings
from hub.errors import ConfigurationError, NotAuthorized
from hub.ingress import sources as runtime_sources
from hub.ingress.sources import Secret, SourceConfig, SourceRegistry, VendorBlock
from hub.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_c2VjcmV0LW9mLXRoZS10ZXN0LXNvdXJjZS0wMDE="  # 27 bytes
API_KEY = "test-api-key-erp"

GOOD = f"""\
sources:
  - id: erp-acme
    description: ACME ERP
    sources: ["https://erp.acme.example/*", /erp/acme]
    event_types: [com.acme.erp.project.*, com.acme.erp.invoice.drafted]
    credentials:
      - scheme: api_key
        sha256: {hashlib.sha256(API_KEY.encode()).hexdigest()}
      - scheme: standard_webhooks
        secret: {SECRET}
    quota: 100/minute
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_sources(write(tmp_path, text), environ or {})
    return str(caught.value)


def test_a_valid_file_loads_and_finds_a_source_by_id_and_by_api_key(tmp_path: Path) -> None:
    registry = load_sources(write(tmp_path, GOOD), {})
    source = registry.get("erp-acme")
    assert source is not None
    assert registry.by_api_key(API_KEY) is source
    assert registry.by_api_key("not-the-key") is None
    assert registry.get("nobody") is None
    assert source.rate_limit.amount == 100


def test_the_example_file_loads_without_any_environment_variable() -> None:
    registry = load_sources(ROOT / "examples" / "sources.yaml", {})
    assert [s.id for s in registry] == ["erp-acme", "erp-finance", "docusign", "sharepoint", "box"]
    erp = registry.get("erp-acme")
    assert erp is not None and len(erp.webhook_keys) == 1
    assert registry.by_api_key("example-api-key-erp-acme") is erp
    finance = registry.get("erp-finance")
    assert finance is not None and finance.queries == ["invoice_readiness"]
    assert registry.by_api_key("example-api-key-erp-finance") is finance


def test_the_example_file_names_only_the_hubs_real_event_types_and_vendor_sources() -> None:
    from hub.registry import SchemaRegistry

    types = SchemaRegistry.load().event_types
    registry = load_sources(ROOT / "examples" / "sources.yaml", {})
    for source in registry:
        for pattern in source.event_types:
            assert any(source.may_publish_type(t) for t in types if t == pattern or pattern.endswith(".*")), pattern
            assert pattern.split(".", 1)[0] in {"erp", "esign", "dms"}, pattern
        for vendor in ("docusign", "graph", "box"):
            if getattr(source, vendor) is not None:
                assert source.may_claim(f"{vendor}://{source.id}")


def test_a_bad_quota_names_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("quota: 100/minute", "quota: lots"))
    assert str(tmp_path / "sources.yaml") in message
    assert "line 11" in message
    assert "sources[0].quota" in message


def test_a_bad_secret_is_reported_at_its_line_without_showing_it(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace(SECRET, "whsec_not*base64"))
    assert "line 10, field sources[0].credentials[1].secret" in message
    assert "not*base64" not in message


def test_an_unknown_field_is_refused_at_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("    quota: 100/minute", "    quota: 100/minute\n    qouta: 5/second"))
    assert "line 12, field sources[0].qouta" in message
    assert "Extra inputs are not permitted" in message


def test_an_unknown_field_inside_a_credential_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("        secret: ", "        algorithm: sha1\n        secret: "))
    assert "line 10, field sources[0].credentials[1].algorithm" in message


def test_a_missing_field_is_reported_at_its_parents_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("    description: ACME ERP\n", ""))
    assert "line 2, field sources[0].description: Field required" in message


def test_an_unknown_scheme_names_the_credential(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("scheme: api_key", "scheme: basic"))
    assert "line 7, field sources[0].credentials[0].scheme" in message


def test_a_wildcard_in_the_middle_of_a_pattern_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("com.acme.erp.project.*", "com.*.project"))
    assert "line 5, field sources[0].event_types[0]" in message
    message = error_of(tmp_path, GOOD.replace('"https://erp.acme.example/*"', '"*"'))
    assert "field sources[0].sources[0]" in message


def test_duplicate_ids_and_shared_credentials_are_refused(tmp_path: Path) -> None:
    second = GOOD.split("sources:\n", 1)[1]
    message = error_of(tmp_path, GOOD + second)
    assert "line 12, field sources[1].id: duplicate source id" in message
    assert "field sources[1].credentials[0]: credential already used (first in source 'erp-acme')" in message


def test_a_duplicate_yaml_key_is_refused_rather_than_overwritten(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("    quota: 100/minute", "    quota: 100/minute\n    quota: 1/day"))
    assert "line 12: duplicate key 'quota'" in message


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "sources:\n  - id: [unclosed\n")
    assert "line 3" in message and "invalid YAML" in message


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read sources file"):
        load_sources(tmp_path / "absent.yaml", {})


def test_secret_env_is_read_from_the_environ_given(tmp_path: Path) -> None:
    text = GOOD.replace(f"secret: {SECRET}", "secret_env: ERP_SECRET")
    registry = load_sources(write(tmp_path, text), {"ERP_SECRET": SECRET})
    source = registry.get("erp-acme")
    assert source is not None and len(source.webhook_keys) == 1
    message = error_of(tmp_path, text, {})
    assert "line 9, field sources[0].credentials[1]" in message
    assert "environment variable ERP_SECRET is not set" in message


def test_secret_env_may_not_use_the_settings_prefix(tmp_path: Path) -> None:
    text = GOOD.replace(f"secret: {SECRET}", "secret_env: HUB_ERP_SECRET")
    assert "not starting with HUB_" in error_of(tmp_path, text, {"HUB_ERP_SECRET": SECRET})


def test_repr_and_str_of_the_sources_show_no_secret(tmp_path: Path) -> None:
    text = GOOD + textwrap.indent(textwrap.dedent("""\
        docusign: {hmac_keys: [docusign-hmac-key-value]}
        graph: {client_states: [graph-client-state-value]}
        box: {primary_key: box-primary-value, secondary_key: box-secondary-value}
    """), "    ")
    registry = load_sources(write(tmp_path, text), {})
    source = registry.get("erp-acme")
    shown = " ".join([repr(registry), repr(source), str(source), repr(list(registry))])
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    for secret in (SECRET, SECRET[6:], digest, API_KEY, "docusign-hmac-key-value", "graph-client-state-value",
                   "box-primary-value", "box-secondary-value"):
        assert secret not in shown
    assert "erp-acme" in shown


def test_may_publish_accepts_listed_types_and_sources(tmp_path: Path) -> None:
    registry = load_sources(write(tmp_path, GOOD), {})
    source = registry.get("erp-acme")
    assert source is not None
    registry.may_publish(source, "com.acme.erp.project.created", "https://erp.acme.example/projects/1")
    registry.may_publish(source, "com.acme.erp.invoice.drafted", "/erp/acme")


def test_may_publish_refuses_a_foreign_type(tmp_path: Path) -> None:
    registry = load_sources(write(tmp_path, GOOD), {})
    source = registry.get("erp-acme")
    assert source is not None
    expected = re.escape("source 'erp-acme' may not publish type 'com.docusign.envelope.completed'")
    with pytest.raises(NotAuthorized, match=expected):
        registry.may_publish(source, "com.docusign.envelope.completed", "/erp/acme")
    with pytest.raises(NotAuthorized, match="may not publish type"):
        registry.may_publish(source, "com.acme.erp.project", "/erp/acme")  # the wildcard needs a segment


def test_may_publish_refuses_a_spoofed_source(tmp_path: Path) -> None:
    registry = load_sources(write(tmp_path, GOOD), {})
    source = registry.get("erp-acme")
    assert source is not None
    with pytest.raises(NotAuthorized, match=re.escape("source 'erp-acme' may not claim source 'https://docusign.example/x'")):
        registry.may_publish(source, "com.acme.erp.invoice.drafted", "https://docusign.example/x")
    with pytest.raises(NotAuthorized, match="may not claim source '/erp/acme/other'"):
        registry.may_publish(source, "com.acme.erp.invoice.drafted", "/erp/acme/other")  # exact, not a prefix


def test_a_registry_built_in_code_refuses_duplicate_ids(tmp_path: Path) -> None:
    source = load_sources(write(tmp_path, GOOD), {}).get("erp-acme")
    assert source is not None
    with pytest.raises(ConfigurationError, match="duplicate source id"):
        SourceRegistry([source, source])


def test_settings_without_a_sources_file_refuse_to_start() -> None:
    with pytest.raises(ConfigurationError, match="HUB_SOURCES_FILE is not set"):
        sources_from_settings(load_settings(sources_file=None), {})


def test_an_unknown_query_is_refused_at_its_line_naming_those_the_ingress_answers(tmp_path: Path) -> None:
    text = GOOD.replace("    quota: 100/minute", "    quota: 100/minute\n    queries: [invoice_readiness, gossip]")
    assert load_sources(write(tmp_path, text.replace(", gossip", "")), {}).get("erp-acme") is not None
    message = error_of(tmp_path, text)
    assert "line 12, field sources[0].queries[1]: Value error, unknown query 'gossip'" in message
    assert "this ingress answers: exception_actions, exceptions, held_invoices, invoice_readiness" in message


def test_the_runtimes_own_model_knows_no_vendor_block_and_no_query(tmp_path: Path) -> None:
    text = GOOD.replace("    quota: 100/minute", "    quota: 100/minute\n    docusign: {hmac_keys: [k]}")
    with pytest.raises(ConfigurationError) as caught:
        runtime_sources.load_sources(write(tmp_path, text), {})
    assert "line 12, field sources[0].docusign: Extra inputs are not permitted" in str(caught.value)
    with pytest.raises(ValidationError, match="unknown query 'invoice_readiness' \\(this ingress answers: none\\)"):
        SourceConfig.model_validate({"id": "a", "description": "a", "sources": ["x"], "event_types": ["x"],
                                     "quota": "1/second", "queries": ["invoice_readiness"],
                                     "credentials": [{"scheme": "api_key", "sha256": "0" * 64}]})
    assert SourceConfig.vendors() == ()


class _PagerKeys(VendorBlock):
    tokens: list[Secret] = Field(min_length=1)


def test_a_contributed_vendor_block_is_read_typed_and_counts_as_a_credential(tmp_path: Path) -> None:
    model = runtime_sources.source_model(vendors={"pager": _PagerKeys}, queries=["status"])
    text = GOOD.split("    credentials:")[0] + "    pager: {tokens: [{secret_env: PAGER_TOKEN}]}\n" + \
        "    queries: [status]\n    quota: 5/second\n"
    registry = runtime_sources.load_sources(write(tmp_path, text), {"PAGER_TOKEN": "t0ken"}, model=model)
    source = registry.get("erp-acme")
    assert source is not None and source.queries == ["status"] and model.vendors() == ("pager",)
    block = source.vendor_block("pager", _PagerKeys)
    assert block is not None and block.tokens[0].get_secret_value() == "t0ken"
    with pytest.raises(ConfigurationError, match="no 'fax' block"):
        source.vendor_block("fax", _PagerKeys)
    bare = text.replace("    pager: {tokens: [{secret_env: PAGER_TOKEN}]}\n", "")
    with pytest.raises(ConfigurationError, match=r"a source needs credentials or a vendor block \(pager\)"):
        runtime_sources.load_sources(write(tmp_path, bare), {}, model=model)


def test_a_vendor_block_may_not_take_the_name_of_a_field_or_a_method_of_a_source() -> None:
    for name in ("quota", "vendors", "rate_limit"):
        with pytest.raises(ConfigurationError, match=f"vendor blocks {name} clash"):
            runtime_sources.source_model(vendors={name: _PagerKeys})


def test_hub_serve_loads_the_file_with_each_adapters_block_of_keys() -> None:
    from connectors.box.inbound import BoxKeys

    assert set(source_model().vendors()) == {"docusign", "graph", "box"}
    settings = load_settings(sources_file=ROOT / "examples" / "sources.yaml")
    box = sources_from_settings(settings, {}).get("box")
    assert box is not None
    keys = box.vendor_block("box", BoxKeys)
    assert keys is not None and keys.primary_key.get_secret_value() == "example-only-box-primary-key"
