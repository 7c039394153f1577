"""Names in our Terraform, checked against the google provider's schema and our modules' variables.

The offline stand-in for the name checks of `terraform validate`: for every `google_*`
resource and data source and every `provider "google"` block, the type exists, every
argument and nested block (also inside `dynamic` blocks) is one the schema has at that
level, written as an argument or a block as the schema says, a block allowed once is
not repeated, and required arguments and blocks are present. For every call of a local
module, each argument is a variable the module declares and every variable without a
default is given.

Not checked: value types and allowed values, expressions and references, and rules
beyond required/optional (conflicts_with, exactly_one_of...): plan-time matters.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.provider_schema import Block, ProviderSchema

__all__ = ["Report", "check_directory", "parse"]

_RESOURCE_META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
_RESOURCE_META_BLOCKS = {"lifecycle", "connection", "provisioner"}
_DATA_META_BLOCKS = {"lifecycle"}
_LIFECYCLE_ARGUMENTS = {
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
}
_LIFECYCLE_BLOCKS = {"precondition", "postcondition"}
_DYNAMIC_ARGUMENTS = {"for_each", "iterator", "labels", "content"}
_MODULE_META_ARGUMENTS = {"source", "version", "count", "for_each", "depends_on", "providers"}


@dataclass
class Report:
    """What a check found: problems (file, address, message) and how much it looked at."""

    problems: list[str] = field(default_factory=list)
    resources_checked: int = 0
    module_calls_checked: int = 0

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")


def parse(path: Path) -> dict[str, Any]:
    """One .tf file as python-hcl2 8.x gives it (quoted labels, `__is_block__` marks)."""
    import hcl2

    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle)
    return parsed


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _names(body: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    return ((k, v) for k, v in body.items() if not k.startswith("__"))


def _is_block_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get("__is_block__") for item in value)
    )


def _labelled(section: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """`kind "label" { ... }` blocks of one section: (label, body)."""
    for entry in section:
        for label, body in _names(entry):
            yield _unquote(label), body


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_block(
    report: Report,
    where: str,
    body: Mapping[str, Any],
    schema: Block,
    meta_arguments: AbstractSet[str] = frozenset(),
    meta_blocks: AbstractSet[str] = frozenset(),
) -> None:
    present: dict[str, int] = {}
    for name, value in _names(body):
        if name == "dynamic" and isinstance(value, list) and not _is_block_list(value):
            for dynamic_name, dynamic in _labelled(value):
                _check_dynamic(report, where, dynamic_name, dynamic, schema)
                present[dynamic_name] = present.get(dynamic_name, 0) + 2  # may be any count
            continue
        if name in meta_blocks and _is_block_list(value):
            if name == "lifecycle":
                for lifecycle in value:
                    _check_lifecycle(report, f"{where}.lifecycle", lifecycle)
            continue
        if name in meta_arguments:
            continue
        if _is_block_list(value):
            nested = schema.blocks.get(name)
            if nested is None:
                if name in schema.arguments:
                    report.add(where, f"'{name}' is an argument, written as a block")
                else:
                    report.add(where, f"unknown block '{name}'{_hint(name, schema.blocks)}")
                continue
            if not nested.repeatable and len(value) > 1:
                report.add(where, f"block '{name}' is allowed once, given {len(value)} times")
            for item in value:
                _check_block(report, f"{where}.{name}", item, nested.block)
            present[name] = len(value)
        elif name in schema.blocks:
            report.add(where, f"'{name}' is a block, written as an argument")
            present[name] = 1
        elif name not in schema.arguments:
            report.add(where, f"unknown argument '{name}'{_hint(name, schema.arguments)}")
        else:
            present[name] = 1
    for name, required in schema.arguments.items():
        if required and name not in present:
            report.add(where, f"missing required argument '{name}'")
    for name, nested in schema.blocks.items():
        if nested.required and name not in present:
            report.add(where, f"missing required block '{name}'")


def _check_dynamic(
    report: Report, where: str, name: str, dynamic: Mapping[str, Any], schema: Block
) -> None:
    for key, _ in _names(dynamic):
        if key not in _DYNAMIC_ARGUMENTS:
            report.add(where, f"dynamic \"{name}\": unknown argument '{key}'")
    nested = schema.blocks.get(name)
    if nested is None:
        report.add(where, f'dynamic "{name}": unknown block{_hint(name, schema.blocks)}')
        return
    contents = dynamic.get("content", [])
    if len(contents) != 1:
        report.add(where, f'dynamic "{name}" needs exactly one content block')
    for content in contents:
        _check_block(report, f"{where}.{name}", content, nested.block)


def _check_lifecycle(report: Report, where: str, body: Mapping[str, Any]) -> None:
    for name, _ in _names(body):
        if name not in _LIFECYCLE_ARGUMENTS | _LIFECYCLE_BLOCKS:
            report.add(where, f"unknown lifecycle argument '{name}'")


def _declared_variables(module_dir: Path) -> dict[str, bool]:
    """The variables of a module: name -> required (no default)."""
    variables: dict[str, bool] = {}
    for path in sorted(module_dir.glob("*.tf")):
        for name, body in _labelled(parse(path).get("variable", [])):
            variables[name] = "default" not in body
    return variables


def _check_module_call(
    report: Report, where: str, directory: Path, call: Mapping[str, Any]
) -> None:
    source = _unquote(str(call.get("source", "")))
    if not source.startswith(("./", "../")):
        return  # registry and git modules are not in the repository
    module_dir = (directory / source).resolve()
    variables = _declared_variables(module_dir)
    if not variables:
        report.add(where, f"module source {source} has no variables (wrong path?)")
        return
    report.module_calls_checked += 1
    given = {name for name, _ in _names(call)} - _MODULE_META_ARGUMENTS
    for name in sorted(given - set(variables)):
        report.add(where, f"'{name}' is not a variable of {source}{_hint(name, variables)}")
    for name in sorted(n for n, required in variables.items() if required and n not in given):
        report.add(where, f"missing required variable '{name}' of {source}")


def _check_file(report: Report, schema: ProviderSchema, root: Path, path: Path) -> None:
    try:
        content = parse(path)
    except Exception as error:  # any parser failure is a problem to report, not a crash
        report.add(str(path.relative_to(root)), f"python-hcl2 cannot parse it: {error}")
        return
    file = str(path.relative_to(root))
    for kind, types, meta_blocks in (
        ("resource", schema.resources, _RESOURCE_META_BLOCKS),
        ("data", schema.data_sources, _DATA_META_BLOCKS),
    ):
        for rtype, by_name in _labelled(content.get(kind, [])):
            if not rtype.startswith("google_"):
                continue
            for name, body in _names(by_name):
                address = f"{file}: {'data.' if kind == 'data' else ''}{rtype}.{_unquote(name)}"
                report.resources_checked += 1
                if rtype not in types:
                    report.add(address, f"unknown {kind} type{_hint(rtype, types)}")
                    continue
                _check_block(
                    report,
                    address,
                    body,
                    types[rtype],
                    meta_arguments=_RESOURCE_META_ARGUMENTS,
                    meta_blocks=meta_blocks,
                )
    for provider, body in _labelled(content.get("provider", [])):
        if provider in ("google", "google-beta"):
            _check_block(
                report, f"{file}: provider {provider}", body, schema.provider_config, {"alias"}
            )
    for name, call in _labelled(content.get("module", [])):
        _check_module_call(report, f"{file}: module.{name}", path.parent, call)


def check_directory(directory: Path, schema: ProviderSchema) -> Report:
    """Check every .tf file under DIRECTORY (modules included; .terraform/ skipped)."""
    report = Report()
    for path in sorted(directory.rglob("*.tf")):
        if ".terraform" not in path.parts:
            _check_file(report, schema, directory, path)
    return report
