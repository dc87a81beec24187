"""Writes tests/adopt/schemas/*.json: the schemas pulumi-render's provider itself uses on import
and diff, from the spec it EMBEDS (cloudy-sky-software/pulumi-render
provider/cmd/pulumi-resource-render/openapi_generated.yml, `//go:embed` in
provider/cmd/pulumi-resource-render/main.go), converted like tests/contract/generate_schemas.py.

    python tests/adopt/generate_provider_schemas.py path/to/openapi_generated.yml [commit]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent.parent / "contract"))
from generate_schemas import _Converter, _resolve  # type: ignore[import-not-found, unused-ignore]

SPEC = "cloudy-sky-software/pulumi-render provider/cmd/pulumi-resource-render/openapi_generated.yml"
OUT = Path(__file__).parent / "schemas"
# file name -> pointer: the GET answer (what Read turns into inputs), the POST body (what Read
# filters by), the PATCH body (what Diff calls an update rather than a replace).
SCHEMAS = {
    "postgres-get": "#/components/schemas/postgresDetail",
    "postgres-post": "#/components/schemas/postgresPOSTInput",
    "postgres-patch": "#/components/schemas/postgresPATCHInput",
    "key-value-get": "#/components/schemas/keyValueDetail",
    "key-value-post": "#/components/schemas/keyValuePOSTInput",
    "key-value-patch": "#/components/schemas/keyValuePATCHInput",
    "web-service-get": "#/components/schemas/webServiceOutput",
    "web-service-post": "#/components/schemas/webService",
    "web-service-patch": "#/components/schemas/webServicePatch",
}


def main(argv: list[str]) -> None:
    spec: dict[str, Any] = yaml.safe_load(Path(argv[1]).read_text(encoding="utf-8"))
    commit = argv[2] if len(argv) > 2 else "unknown"
    OUT.mkdir(exist_ok=True)
    for name, pointer in SCHEMAS.items():
        conv = _Converter(spec)
        doc: dict[str, Any] = {"$comment": f"Generated from {SPEC} (commit {commit}), {pointer}"}
        doc.update(conv.convert(_resolve(spec, pointer)))
        if conv.defs:
            doc["$defs"] = conv.defs
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv)
