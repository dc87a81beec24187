"""Writes the contract schemas of the datastore endpoints `adopt` reads (GET /postgres,
/postgres/{id}, /key-value, /key-value/{id}) with generate_schemas.py's converter, from the same
reference (cloudy-sky-software/pulumi-render provider/cmd/pulumi-gen-render/openapi.yml).

    python tests/contract/generate_datastore_schemas.py path/to/openapi.yml [commit]
"""

from __future__ import annotations

import json
import sys

import generate_schemas

DATASTORE_SCHEMAS: dict[str, tuple[str, list[str]]] = {
    "postgres-list": (
        "#/paths/~1postgres/get/responses/200/content/application~1json/schema",
        ["GET /postgres 200"],
    ),
    "postgres-detail": ("#/components/schemas/postgresDetail", ["GET /postgres/{postgresId} 200"]),
    "key-value-list": (
        "#/paths/~1key-value/get/responses/200/content/application~1json/schema",
        ["GET /key-value 200"],
    ),
    "key-value-detail": (
        "#/components/schemas/keyValueDetail",
        ["GET /key-value/{keyValueId} 200"],
    ),
}


def drop_invalid_required(path: str = "postgres-detail") -> None:
    """The reference lists `project` as required in postgresDetail without defining it as a
    property; pulumi-render removes it before using the spec (provider/pkg/gen/openapi_fixes.go,
    fixPostgresResponseInvalidRequiredProp), and so does this schema."""
    file = generate_schemas.OUT / f"{path}.json"
    doc = json.loads(file.read_text(encoding="utf-8"))
    doc["required"] = [r for r in doc["required"] if r != "project"]
    doc["$comment"] += "; 'project' dropped from required as pulumi-render's openapi_fixes.go does"
    file.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    generate_schemas.SCHEMAS = DATASTORE_SCHEMAS
    generate_schemas.main(sys.argv)
    drop_invalid_required()
