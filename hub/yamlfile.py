"""YAML configuration files validated by pydantic, with file, line and field in every error.

A file is composed into a node tree (which keeps each node's line) and loaded into plain data; the
data is validated by a pydantic model, and each validation error's location is walked down the
node tree to the line it came from::

    model, root = load_model(path, PolicyFile, what="policy file")
    # ConfigurationError: invalid policy file:
    # actors/default_policy.yaml, line 12, field workflows.provisioning.mode: Input should be ...

Duplicate mapping keys are refused: YAML loaders would otherwise keep the last one silently.

Files are parsed once, by libyaml when PyYAML was built with it (a policy file in about a tenth of the time of
the pure-Python parser; every process reads the policy and the mapping at start).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from hub.errors import ConfigurationError

__all__ = [
    "Loc",
    "Problem",
    "SafeLoader",
    "StrictBoolLoader",
    "check_duplicate_keys",
    "error_loc",
    "field_path",
    "invalid_file",
    "load_model",
    "locate",
    "read_yaml",
    "validation_problems",
]

#: A location inside the data: mapping keys and sequence indexes, as pydantic reports them.
Loc = tuple[int | str, ...]
#: A location and what is wrong there.
Problem = tuple[Loc, str]

M = TypeVar("M", bound=BaseModel)


#: The safe loader, on libyaml's parser when PyYAML has it (the same tags and the same marks).
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictBoolLoader(SafeLoader):  # type: ignore[misc,valid-type]
    """A safe loader where only ``true``/``false`` are booleans (YAML 1.2), so ``NO`` stays Norway."""


StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictBoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def field_path(loc: Loc) -> str:
    """``('sources', 0, 'quota')`` as ``sources[0].quota``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def error_loc(error: ErrorDetails) -> Loc:
    """The error's location; a bad union tag is reported at the tag's field (such as ``scheme``)."""
    tag = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
    return (*error["loc"], tag) if error["type"].startswith("union_tag_") and tag else tuple(error["loc"])


def validation_problems(exc: ValidationError) -> list[Problem]:
    """Each error of a pydantic ``ValidationError`` as (location, message)."""
    return [(error_loc(e), e["msg"]) for e in exc.errors(include_input=False)]


def locate(root: yaml.Node, loc: Loc) -> tuple[int, Loc]:
    """The 1-based line of ``loc`` in the node tree, and ``loc`` without pydantic's own parts.

    Pydantic adds parts with no node of their own (union tags such as ``api_key``, ``[key]`` for a
    bad mapping key, validator names); they are skipped. A missing field is reported at its
    parent's line.
    """
    node, line = root, root.start_mark.line + 1
    shown: list[int | str] = []
    for n, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            hit = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if hit is None:
                if n == len(loc) - 1:
                    shown.append(part)  # a missing field: report it at its parent's line
                continue  # a discriminator tag such as 'api_key' has no node of its own
            node, line = hit[1], hit[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            continue
        shown.append(part)
    return line, tuple(shown)


def check_duplicate_keys(node: yaml.Node, where: str) -> None:
    """Refuse duplicate mapping keys, which YAML loaders would otherwise silently overwrite."""
    pairs = node.value if isinstance(node, yaml.MappingNode) else []
    keys = [k for k, _ in pairs if isinstance(k, yaml.ScalarNode)]
    for n, key in enumerate(keys):
        if any(key.value == earlier.value for earlier in keys[:n]):
            raise ConfigurationError(f"{where}, line {key.start_mark.line + 1}: duplicate key '{key.value}'")
    children = [v for _, v in pairs] if pairs else node.value if isinstance(node, yaml.SequenceNode) else []
    for child in children:
        check_duplicate_keys(child, where)


def read_yaml(path: Path, *, what: str, loader: type[yaml.SafeLoader] = SafeLoader) -> tuple[yaml.Node, object]:
    """The file's node tree (for line numbers) and its data; ``what`` names the file in errors."""
    try:
        text = path.read_text(encoding="utf-8")
        root, data = _compose_and_construct(text, loader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read {what}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f", line {mark.line + 1}" if mark else ""
        raise ConfigurationError(f"{path}{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: invalid YAML: {exc}") from None
    if root is None:
        raise ConfigurationError(f"{path}: the {what} is empty")
    check_duplicate_keys(root, str(path))
    return root, data


def _compose_and_construct(text: str, loader: type[yaml.SafeLoader]) -> tuple[yaml.Node | None, object]:
    """One parse: the node tree (which keeps every node's line) and the data constructed from it."""
    parser = loader(text)
    try:
        root = parser.get_single_node()
        return root, parser.construct_document(root) if root is not None else None
    finally:
        parser.dispose()


def invalid_file(path: Path, root: yaml.Node, problems: Iterable[Problem], *, what: str) -> ConfigurationError:
    """One error listing every problem as ``<file>, line <n>, field <field>: <message>``."""
    lines = [(*locate(root, loc), msg) for loc, msg in problems]
    return ConfigurationError(f"invalid {what}:\n" + "\n".join(
        f"{path}, line {line}, field {field_path(loc) or '(top level)'}: {msg}" for line, loc, msg in lines))


def load_model(
    path: Path,
    model: type[M],
    *,
    what: str,
    context: Mapping[str, Any] | None = None,
    loader: type[yaml.SafeLoader] = SafeLoader,
) -> tuple[M, yaml.Node]:
    """Read ``path`` and validate it as ``model``; returns the model and the node tree for later checks."""
    root, data = read_yaml(path, what=what, loader=loader)
    try:
        return model.model_validate(data, context=dict(context) if context is not None else None), root
    except ValidationError as exc:
        raise invalid_file(path, root, validation_problems(exc), what=what) from None
