"""Dramatiq actors, one module per integration pattern, declared on the broker by :func:`register_all`."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from actors import document_intake, document_workflow, exceptions, fanout, invoice_readiness, master_data, provisioning
from actors.master_data_logic import load_master_data_mapping
from connectors.docusign.client import DocuSignClient
from connectors.erp.client import ErpClient
from connectors.sharepoint.client import GraphClient
from hub.crosswalk import RedisCrosswalk
from hub.policy import Policy, load_policy
from hub.runtime import Runtime

#: The policy used when ``HUB_POLICY_FILE`` is unset.
DEFAULT_POLICY = Path(str(files("actors") / "default_policy.yaml"))
#: The master-data mapping rules used when ``HUB_MAPPING_FILE`` is unset.
DEFAULT_MAPPING_FILE = Path(str(files("actors") / "default_mapping.yaml"))


def policy_of(runtime: Runtime) -> Policy:
    """The policy file of the settings, or the default one."""
    return load_policy(runtime.settings.policy_file or DEFAULT_POLICY)


def register_all(runtime: Runtime) -> dict[str, Any]:
    """Declare every pattern actor on the runtime's broker; returns them by actor name."""
    policy = policy_of(runtime)
    owners = {fanout.ACTOR_NAME: "platform_team", provisioning.ACTOR_NAME: policy.workflow("provisioning").owner,
              master_data.ACTOR_NAME: policy.workflow("master_data_sync").owner,
              document_intake.ACTOR_NAME: policy.workflow("document_intake").owner,
              document_workflow.ACTOR_NAME: policy.workflow("document_intake").owner,
              invoice_readiness.ACTOR_NAME: policy.workflow("invoice_readiness").owner}
    crosswalk = RedisCrosswalk(runtime.redis, prefix=runtime.queue_prefix)
    erp = ErpClient.from_settings(runtime.settings)
    graph = GraphClient.from_settings(runtime.settings)
    docusign = DocuSignClient.from_settings(runtime.settings)
    runtime.closers += [erp.close, graph.http.client.close, docusign.close]
    gate = invoice_readiness.ReadinessGate(runtime, policy=policy, erp=erp)
    declared = {
        exceptions.ACTOR_NAME: exceptions.register(runtime, owners=owners),
        provisioning.ACTOR_NAME: provisioning.register(
            runtime, policy=policy, erp=erp, graph=graph,
            crosswalk=crosswalk,
        ),
        master_data.ACTOR_NAME: master_data.register(
            runtime, rules=load_master_data_mapping(runtime.settings.mapping_file or DEFAULT_MAPPING_FILE),
            graph=graph, crosswalk=crosswalk, max_attempts=policy.workflow("master_data_sync").max_attempts,
        ),
        document_intake.ACTOR_NAME: document_intake.register(
            runtime, graph=graph, erp=erp, max_attempts=policy.workflow("document_intake").max_attempts,
            owner=policy.workflow("document_intake").owner,
        ),
        document_workflow.ACTOR_NAME: document_workflow.register(
            runtime, policy=policy, erp=erp, graph=graph, docusign=docusign,
            max_attempts=policy.workflow("document_intake").max_attempts,
        ),
        invoice_readiness.ACTOR_NAME: invoice_readiness.register(
            runtime, gate=gate, max_attempts=policy.workflow("invoice_readiness").max_attempts,
        ),
        fanout.ACTOR_NAME: fanout.register(
            runtime.broker, queue_prefix=runtime.queue_prefix, registry=runtime.registry, topics=runtime.topics
        ),
    }
    runtime.actors.update(declared)
    return declared
