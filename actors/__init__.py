"""The integration patterns, one package each: its actor's declaration and class, its pure decision
logic, its store and its rules. The composition root (:mod:`hub.cli.compose`) builds each actor with its
dependencies; nothing here connects or declares anything at import time.

This module also says what the patterns bring to the firm's policy file: their own sections (the
document rules, the readiness checklists) composed into the one policy model, and the default file.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from actors import (
    document_intake,
    document_workflow,
    exceptions,
    fanout,
    invoice_readiness,
    master_data,
    provisioning,
    reconciliation,
)
from hub import platforms
from hub.actor import ActorSpec
from hub.errors import ConfigurationError
from hub.policy import Policy, policy_model
from hub.policy import load_policy as _load_policy

#: The policy used when ``HUB_POLICY_FILE`` is unset.
DEFAULT_POLICY = Path(str(files("actors") / "default_policy.yaml"))
#: The policy file's model: the shared sections and the patterns' own.
POLICY_MODEL = policy_model({platforms.SECTION: platforms.PlatformRules,
                             document_workflow.SECTION: document_workflow.DocumentPolicy,
                             invoice_readiness.SECTION: invoice_readiness.ReadinessRules})
#: Every actor's declaration, as written in its package (before the policy's workflow settings).
SPECS: tuple[ActorSpec, ...] = (fanout.SPEC, provisioning.SPEC, master_data.SPEC, document_intake.SPEC,
                                document_workflow.SPEC, invoice_readiness.SPEC, exceptions.SPEC,
                                exceptions.INBOX_SPEC)
#: The migrations folders of the patterns' stores in the hub's database (Alembic, one branch each).
MIGRATIONS: tuple[Path, ...] = (master_data.MIGRATIONS, invoice_readiness.MIGRATIONS, fanout.MIGRATIONS,
                                exceptions.MIGRATIONS, reconciliation.MIGRATIONS)


def load_policy(path: Path | None = None) -> Policy:
    """The policy file (the default one when ``path`` is None), checked to list every actor's workflow.

    The one place the default is resolved; raises ConfigurationError naming the file, line and field.
    """
    chosen = path or DEFAULT_POLICY
    policy = _load_policy(chosen, POLICY_MODEL)
    missing = sorted({spec.workflow for spec in SPECS if spec.workflow} - set(policy.workflows))
    if missing:
        raise ConfigurationError(f"{chosen}: workflows must list {', '.join(missing)}")
    return policy


def platform_rules(policy: Policy) -> platforms.PlatformRules:
    """The policy's ``platforms`` section: which document platform holds each project's workspace."""
    return policy.section(platforms.SECTION, platforms.PlatformRules)


def with_workflows(policy: Policy) -> dict[str, ActorSpec]:
    """Every actor's declaration with the mode, attempts and owner the policy gives its workflow."""
    resolved: dict[str, ActorSpec] = {}
    for spec in SPECS:
        if spec.workflow is not None:
            workflow = policy.workflow(spec.workflow)
            spec = spec.with_workflow(mode=workflow.mode, max_attempts=workflow.max_attempts, owner=workflow.owner)
        resolved[spec.name] = spec
    return resolved
