"""Validation of what smith writes against the OCI image-spec JSON schemas in ../shared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SCHEMAS = {
    "manifest": "image-manifest-schema.json",
    "index": "image-index-schema.json",
    "config": "config-schema.json",
    "layout": "image-layout-schema.json",
}


def validator(schema_dir: Path, kind: str) -> Draft4Validator:
    def retrieve(uri: str) -> Resource[Any]:
        # The schemas carry absolute `id`s (opencontainers.org) and refer to each other by
        # file name; whatever base a $ref resolved against, its last segment names the file.
        name = uri.rstrip("/").rsplit("/", 1)[-1].split("#")[0]
        return Resource.from_contents(json.loads((schema_dir / name).read_text()), DRAFT4)

    schema = json.loads((schema_dir / SCHEMAS[kind]).read_text())
    registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return Draft4Validator(schema, registry=registry)


def validate(schema_dir: Path, kind: str, doc: Any) -> None:
    errors = sorted(validator(schema_dir, kind).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)
