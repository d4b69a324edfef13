"""The firm's policy: workspace layout, folders, groups, retention, metadata, ethical walls and how each
workflow fails, with the vocabulary they share (engagement types, regions, document classes and states).

The patterns add sections of their own (the document rules, the invoice-readiness checklists): each
contributes a model, and :func:`policy_model` composes them into the one model the file is read with, so a
pattern's rules live with the pattern and this module names none. Read once at start from
``HUB_POLICY_FILE`` (default: the ``actors`` package's ``default_policy.yaml``) and validated with
pydantic; every error names the file, the line and the field. Only ``true``/``false`` are booleans in
this file, so country codes such as ``NO`` stay strings.

Templates (group names, the workspace path, metadata values) use ``{field}`` placeholders naming
fields of the ERP project event: ``project_code client_id name engagement_type practice region
country partner status``.

400 lines on purpose: the whole policy file's model, one section after another, validated together.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator

from hub.errors import ConfigurationError
from hub.redaction import BusWalls
from hub.yamlfile import Problem, StrictBoolLoader, invalid_file, load_model

DocumentClass = Literal[
    "sow", "contract", "change_order", "engagement_letter", "deliverable", "service_report",
    "customer_approval", "change_record",
]
DOCUMENT_CLASSES: tuple[DocumentClass, ...] = get_args(DocumentClass)
EngagementType = Literal["consulting", "legal", "engineering", "managed_services"]
DocumentState = Literal["draft", "in_review", "approved", "signed", "rejected", "superseded"]
DOCUMENT_STATES: tuple[DocumentState, ...] = get_args(DocumentState)
Region = Literal["NA", "EU", "ME", "APAC"]
ExceptionOwner = Literal["finance", "pmo", "records_management", "platform_team", "risk"]
Role = Literal["read", "write"]
WorkflowMode = Literal["queue_and_retry", "hard_stop"]
#: A workflow's name in the ``workflows`` section (the actors name the one they run).
WorkflowName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
#: Fields of the ERP project event a template or metadata value may use.
ProjectField = Literal[
    "project_code", "client_id", "name", "engagement_type", "practice", "region", "country", "partner", "status",
]

ENGAGEMENT_TYPES: tuple[EngagementType, ...] = get_args(EngagementType)
REGIONS: tuple[Region, ...] = get_args(Region)
PROJECT_FIELDS: tuple[ProjectField, ...] = get_args(ProjectField)
#: Placeholders with a closed set of values: group templates using only these are checked at load.
_CLOSED = frozenset({"region", "engagement_type"})
_WHAT = "policy file"
#: The folder of the document library that holds every workspace.
WORKSPACES_ROOT = "Engagements"


def file_stem(name: str) -> str:
    """A document's file name without its extension, as people name the document (``.2`` in ``Contract v1.2`` is a
    version, not an extension): a signed copy and its draft share it, and a reference may name it."""
    return re.sub(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", "", name.strip()).strip(" .")


def placeholders(template: str) -> set[str]:
    """The ``{field}`` names of a template; raises ValueError for anything but plain project fields."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or name not in PROJECT_FIELDS:
            raise ValueError(f"unknown placeholder {{{name}}}: use one of {', '.join(PROJECT_FIELDS)}")
        names.add(name)
    return names


def fill(template: str, values: Mapping[str, str]) -> str:
    """The template with each placeholder replaced by its value."""
    return template.format_map(values)


def _template(value: str) -> str:
    placeholders(value)
    return value


def _group(value: str) -> str:
    if "*" in value:
        raise ValueError("a granted group cannot contain '*' (patterns belong in ethical_walls)")
    return _template(value)


def _wall_pattern(value: str) -> str:
    if not value.strip("*").strip():
        raise ValueError("a wall pattern needs more than '*': it would wall off every group")
    return value


_BAD_SEGMENT = re.compile(r'["*:<>?\\|/]')


def valid_segment(name: str) -> bool:
    """Whether ``name`` can be one folder name: no path tricks, no characters SharePoint refuses."""
    return bool(name) and name == name.strip() and name not in (".", "..") and not _BAD_SEGMENT.search(name)


def _folder_path(value: str) -> str:
    if not all(valid_segment(segment) for segment in value.split("/")):
        raise ValueError(f"bad folder path {value!r}: segments are non-empty names without "
                         '" * : < > ? \\ | or surrounding spaces, joined by /')
    return value


def _workspace_path(value: str) -> str:
    _folder_path(re.sub(r"\{[^}]*\}", "x", value))
    return _template(value)


def _folder_shorthand(value: object) -> object:
    return {"path": value} if isinstance(value, str) else value


def _legal_only() -> list[EngagementType]:
    return ["legal"]


def _metadata_shorthand(value: object) -> object:
    return {"field": value} if isinstance(value, str) else value


Text = Annotated[str, Field(min_length=1, max_length=255)]
GroupTemplate = Annotated[Text, AfterValidator(_group)]
WallPattern = Annotated[Text, AfterValidator(_wall_pattern)]
Label = Text
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FolderSpec(_Model):
    """A folder of a template (``A/B`` nests); ``document_class`` gives it that class's retention label."""

    path: Annotated[str, AfterValidator(_folder_path)]
    document_class: DocumentClass | None = None


Folder = Annotated[FolderSpec, BeforeValidator(_folder_shorthand)]


class FolderTemplates(_Model):
    """The folder template of each engagement type; an entry is a path or ``{path, document_class}``."""

    consulting: list[Folder]
    legal: list[Folder]
    engineering: list[Folder]
    managed_services: list[Folder]


class WorkspaceLayout(_Model):
    """Where a workspace lives below the root the provisioning actor is given."""

    path: Annotated[Text, AfterValidator(_workspace_path)] = "{client_id}/{project_code}"


class GroupRule(_Model):
    """A group to grant, as a template such as ``{practice}-{region}``, with its role."""

    group: GroupTemplate
    role: Role


class SecurityGroups(_Model):
    """Groups granted on every workspace (``templates``) and per engagement type; optional allow-list."""

    templates: list[GroupRule] = Field(default_factory=list)
    per_engagement_type: dict[EngagementType, list[GroupRule]] = Field(default_factory=dict)
    known_groups: list[Text] | None = None

    def rules_for(self, engagement_type: EngagementType) -> tuple[GroupRule, ...]:
        """Every rule that applies to this engagement type."""
        return (*self.templates, *self.per_engagement_type.get(engagement_type, []))

    def is_known(self, group: str) -> bool:
        """Whether the group is in ``known_groups`` (case-insensitive); always true without a list."""
        return self.known_groups is None or group.casefold() in self._known_keys

    @cached_property
    def _known_keys(self) -> frozenset[str]:
        return frozenset(g.casefold() for g in self.known_groups or ())


class LabelSet(_Model):
    """A region's retention labels: the workspace default and per document class."""

    workspace: Label
    classes: dict[DocumentClass, Label] = Field(default_factory=dict)


class LabelOverride(_Model):
    """Labels that replace the region's for a country; unset ones fall through."""

    workspace: Label | None = None
    classes: dict[DocumentClass, Label] = Field(default_factory=dict)


class ClientOverride(LabelOverride):
    """Client-specific retention, for legal matters unless ``engagement_types`` says otherwise."""

    engagement_types: list[EngagementType] = Field(default_factory=_legal_only, min_length=1)


class RegionLabels(_Model):
    """Every region must have its labels."""

    NA: LabelSet
    EU: LabelSet
    ME: LabelSet
    APAC: LabelSet


class RetentionPolicy(_Model):
    """Retention labels by jurisdiction: client override, then country, then region.

    A document class without a label anywhere takes the workspace's label.
    """

    regions: RegionLabels
    countries: dict[CountryCode, LabelOverride] = Field(default_factory=dict)
    client_overrides: dict[Text, ClientOverride] = Field(default_factory=dict)

    def label_for(self, *, region: Region, country: str, client_id: str, engagement_type: EngagementType,
                  document_class: DocumentClass | None = None) -> str:
        """The retention label of the workspace (``document_class=None``) or of one document class."""
        client = self.client_overrides.get(client_id)
        layers: list[LabelOverride | LabelSet] = [
            *([client] if client is not None and engagement_type in client.engagement_types else []),
            *([self.countries[country.upper()]] if country.upper() in self.countries else []),
            getattr(self.regions, region),
        ]
        if document_class is not None:
            for layer in layers:
                if document_class in layer.classes:
                    return layer.classes[document_class]
        return next(layer.workspace for layer in layers if layer.workspace is not None)

    def all_labels(self) -> frozenset[str]:
        """Every label the policy can apply (the tenant must publish each one)."""
        layers: list[LabelOverride | LabelSet] = [*(getattr(self.regions, r) for r in RegionLabels.model_fields),
                                                  *self.countries.values(), *self.client_overrides.values()]
        return frozenset(label for layer in layers
                         for label in (layer.workspace, *layer.classes.values()) if label is not None)


class MetadataSource(_Model):
    """A metadata value: a project ``field`` (the shorthand ``Field: practice``), a ``literal`` or a ``template``."""

    field: ProjectField | None = None
    literal: str | None = None
    template: Annotated[Text, AfterValidator(_template)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MetadataSource:
        if sum(v is not None for v in (self.field, self.literal, self.template)) != 1:
            raise ValueError("give exactly one of field, literal or template")
        return self

    def value(self, values: Mapping[str, str]) -> str:
        """The value for a project whose fields are ``values``."""
        if self.field is not None:
            return values[self.field]
        return self.literal if self.literal is not None else fill(self.template or "", values)


class EthicalWalls(_Model):
    """Groups never granted on a matter (``never_grant``, per practice or ``*``); what the bus shows of it."""

    applies_to: list[EngagementType] = Field(default_factory=_legal_only)
    never_grant: dict[Text, list[WallPattern]] = Field(default_factory=dict)
    on_the_bus: BusWalls | None = None

    def patterns_for(self, engagement_type: EngagementType, practice: str) -> tuple[str, ...]:
        """The policy's wall patterns for a project (its own ``conflicted_groups`` come on top)."""
        if engagement_type not in self.applies_to:
            return ()
        wanted = {"*", practice.casefold()}
        return tuple(p for key, patterns in self.never_grant.items() if key.casefold() in wanted for p in patterns)


class Workflow(_Model):
    """How a workflow fails: retried from a queue, or stopped at once; and who gets the exception."""

    mode: WorkflowMode
    max_attempts: int = Field(ge=1, le=100)
    owner: ExceptionOwner

    @model_validator(mode="after")
    def _hard_stop_does_not_retry(self) -> Workflow:
        if self.mode == "hard_stop" and self.max_attempts != 1:
            raise ValueError("a hard_stop workflow does not retry: max_attempts must be 1")
        return self


SectionT = TypeVar("SectionT", bound=BaseModel)


class Policy(_Model):
    """The policy file's shared sections; :func:`policy_model` adds the patterns' own."""

    version: Literal[1]
    workspace: WorkspaceLayout = Field(default_factory=WorkspaceLayout)
    folders: FolderTemplates
    security_groups: SecurityGroups
    retention: RetentionPolicy
    metadata: dict[FieldName, Annotated[MetadataSource, BeforeValidator(_metadata_shorthand)]]
    ethical_walls: EthicalWalls = Field(default_factory=EthicalWalls)
    #: Every workflow's mode, attempts and owner, by name; each actor's must be listed (checked at start).
    workflows: dict[WorkflowName, Workflow] = Field(min_length=1)

    def folders_for(self, engagement_type: EngagementType) -> tuple[FolderSpec, ...]:
        """The folder template of an engagement type."""
        return tuple(getattr(self.folders, engagement_type))

    def group_rules_for(self, engagement_type: EngagementType) -> tuple[GroupRule, ...]:
        """The group rules of an engagement type."""
        return self.security_groups.rules_for(engagement_type)

    def workflow(self, name: str) -> Workflow:
        """The mode, attempts and owner of a workflow (ConfigurationError when the file does not list it)."""
        try:
            return self.workflows[name]
        except KeyError:
            raise ConfigurationError(f"policy file: workflows lists no {name!r} "
                                     f"(listed: {', '.join(sorted(self.workflows))})") from None

    def workspace_path(self, values: Mapping[str, str], *, root: str = WORKSPACES_ROOT) -> str:
        """A project's workspace in the document library: ``root`` and the ``workspace.path`` template."""
        relative = fill(self.workspace.path, values)
        return f"{root.strip('/')}/{relative}" if root.strip("/") else relative

    def section(self, name: str, model: type[SectionT]) -> SectionT:
        """A pattern's own section (composed in by :func:`policy_model`), typed."""
        value = getattr(self, name, None)
        if not isinstance(value, model):
            raise ConfigurationError(f"the policy model has no {name!r} section of type {model.__name__}")
        return value


def policy_model(sections: Mapping[str, type[BaseModel]]) -> type[Policy]:
    """The policy file's model: the shared sections and the patterns' ``sections`` (each optional, every
    field of a section model having a default)."""
    fields: dict[str, Any] = {name: (model, Field(default_factory=model)) for name, model in sections.items()}
    clash = sorted(set(fields) & set(Policy.model_fields))
    if clash:
        raise ConfigurationError(f"policy sections {', '.join(clash)} clash with the shared ones")
    composed: type[Policy] = create_model("Policy", __base__=Policy, **fields)
    return composed


def _problems(policy: Policy) -> list[Problem]:
    """Checks across fields: duplicate folders or practices, and groups missing from ``known_groups``."""
    problems: list[Problem] = []
    for engagement_type in ENGAGEMENT_TYPES:
        seen: set[str] = set()
        for i, folder in enumerate(policy.folders_for(engagement_type)):
            if folder.path.casefold() in seen:
                problems.append((("folders", engagement_type, i, "path"), f"duplicate folder '{folder.path}'"))
            seen.add(folder.path.casefold())
    practices: set[str] = set()
    for practice in policy.ethical_walls.never_grant:
        if practice.casefold() in practices:
            problems.append((("ethical_walls", "never_grant", practice), "practice listed twice (case-insensitive)"))
        practices.add(practice.casefold())
    groups = policy.security_groups
    rule_sets = [(("templates",), ENGAGEMENT_TYPES, groups.templates)] + [
        (("per_engagement_type", et), (et,), rules) for et, rules in groups.per_engagement_type.items()]
    for loc, engagement_types, rules in rule_sets:
        for i, rule in enumerate(rules):
            names = placeholders(rule.group)
            if groups.known_groups is None or not names <= _CLOSED:
                continue  # open placeholders (practice, ...) are checked per project by the plan
            domains = {"region": REGIONS, "engagement_type": engagement_types}
            for combo in itertools.product(*(domains[n] for n in sorted(names))):
                group = fill(rule.group, dict(zip(sorted(names), combo, strict=True)))
                if not groups.is_known(group):
                    problems.append((("security_groups", *loc, i, "group"), f"group '{group}' is not in known_groups"))
    return problems


def load_policy(path: Path, model: type[Policy] = Policy) -> Policy:
    """Read and validate the policy file with ``model`` (see :func:`policy_model`); raises
    ConfigurationError naming file, line and field."""
    policy, root = load_model(path, model, what=_WHAT, loader=StrictBoolLoader)
    problems = _problems(policy)
    if problems:
        raise invalid_file(path, root, problems, what=_WHAT)
    return policy
