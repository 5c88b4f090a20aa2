"""`smith build --provenance`: an in-toto Statement v1 with a SLSA v1 provenance predicate,
attached as a referrer like the SBOM, checked against the in-toto attestation framework's
own schema (its protobuf definitions, parsed strictly: an unknown field is an error)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

from smith import __version__
from tests.rpm_universe import frozen_universe_dir
from tests.test_sbom import build, index_of, sbom_of

IN_TOTO = "application/vnd.in-toto+json"


def test_provenance_names_recipe_packages_epoch_and_builder(tmp_path: Path) -> None:
    repo = frozen_universe_dir() / "repos" / "main"
    out = build("cat", str(repo), tmp_path, "--provenance", "--sbom")
    manifests = index_of(out)["manifests"]
    assert [m.get("artifactType") for m in manifests] == [None, "application/spdx+json", IN_TOTO]
    data = sbom_of(out, "provenance")
    statement = json_format.Parse(data, statement_pb2.Statement())
    Statement.copy_from_pb(statement).validate()
    doc = json.loads(data)
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["subject"] == [{"name": "cat", "digest": {"sha256": manifests[0]["digest"][7:]}}]
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    predicate = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    for dependency in predicate.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(dependency).validate()
    definition = doc["predicate"]["buildDefinition"]
    recipe = (tmp_path / "cat" / "smith.yaml").read_bytes()
    assert definition["externalParameters"]["recipe"] == {
        "name": "smith.yaml",
        "digest": {"sha256": hashlib.sha256(recipe).hexdigest()},
    }
    assert definition["internalParameters"] == {"SOURCE_DATE_EPOCH": 0}
    rpms = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in repo.glob("*.rpm")}
    got = {d["name"]: d["digest"]["sha256"] for d in definition["resolvedDependencies"]}
    assert len(got) == 5 and set(got.values()) <= set(rpms.values())
    assert "pkg:rpm/coreutils@1.0-1?arch=x86_64" in {
        d["uri"] for d in definition["resolvedDependencies"]
    }
    assert doc["predicate"]["runDetails"]["builder"] == {
        "id": "urn:smith",
        "version": {"smith": __version__},
    }
    # Same inputs, same statement; another epoch is another statement.
    (tmp_path / "again").mkdir()
    again = build("cat", str(repo), tmp_path / "again", "--provenance")
    assert sbom_of(again, "provenance") == data
    later = build("cat", str(repo), tmp_path / "again", "--provenance",
                  env={"SOURCE_DATE_EPOCH": "86400"})  # fmt: skip
    assert json.loads(sbom_of(later, "provenance"))["predicate"]["buildDefinition"][
        "internalParameters"
    ] == {"SOURCE_DATE_EPOCH": 86400}
