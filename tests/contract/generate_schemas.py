"""Writes tests/contract/schemas/*.json from Render's published OpenAPI reference.

The reference is the one pulumi-render generates its provider from, vendored as
`provider/cmd/pulumi-gen-render/openapi.yml` in github.com/cloudy-sky-software/pulumi-render
(info.title "Render Public API", info.version 1.0.0). Each schema is the component the
reference names for an endpoint's answer (or request body), with every `$ref` it reaches copied
under `$defs` and OpenAPI 3.0's `nullable` turned into a JSON Schema type union, so the files
are standalone JSON Schema (draft 2020-12) and nothing here needs the network.

    python tests/contract/generate_schemas.py path/to/openapi.yml [commit]

The files are checked in; run this again only to follow a newer reference, and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

SPEC_REPO = "cloudy-sky-software/pulumi-render"
SPEC_PATH = "provider/cmd/pulumi-gen-render/openapi.yml"
OUT = Path(__file__).parent / "schemas"

# file name -> (JSON pointer in the reference, the endpoints whose answer or body it is)
SCHEMAS: dict[str, tuple[str, list[str]]] = {
    "service-list": ("#/components/schemas/serviceList", ["GET /services 200"]),
    "service": ("#/components/schemas/service", ["GET /services/{serviceId} 200"]),
    "web-service-details": (
        "#/components/schemas/webServiceDetails",
        ["service.serviceDetails of a web_service"],
    ),
    "service-post": ("#/components/schemas/servicePOST", ["POST /services request body"]),
    "service-and-deploy": ("#/components/schemas/serviceAndDeploy", ["POST /services 201"]),
    "deploy-list": ("#/components/schemas/deployList", ["GET /services/{serviceId}/deploys 200"]),
    "deploy": (
        "#/components/schemas/deploy",
        [
            "POST /services/{serviceId}/deploys 201",
            "GET /services/{serviceId}/deploys/{deployId} 200",
        ],
    ),
    "create-deploy-body": (
        "#/paths/~1services~1{serviceId}~1deploys/post/requestBody/content/application~1json/schema",
        ["POST /services/{serviceId}/deploys request body"],
    ),
    "env-var-list": (
        "#/paths/~1services~1{serviceId}~1env-vars/put/responses/200/content/application~1json/schema",
        ["GET /services/{serviceId}/env-vars 200", "PUT /services/{serviceId}/env-vars 200"],
    ),
    "env-var-input-array": (
        "#/components/schemas/envVarInputArray",
        ["PUT /services/{serviceId}/env-vars request body"],
    ),
    "env-var": (
        "#/components/schemas/envVar",
        ["PUT /services/{serviceId}/env-vars/{envVarKey} 200"],
    ),
    "add-update-env-var-input": (
        "#/components/schemas/addUpdateEnvVarInput",
        ["PUT /services/{serviceId}/env-vars/{envVarKey} request body"],
    ),
    "error": ("#/components/schemas/error", ["every 4xx/5xx answer, including 429"]),
}


def _resolve(spec: dict[str, Any], pointer: str) -> Any:
    node: Any = spec
    for raw in pointer.removeprefix("#/").split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


_DETAILS = ("Details", "DetailsPOST")


def _def_name(pointer: str) -> str:
    parts = [unquote(p).replace("~1", "/") for p in pointer.removeprefix("#/").split("/")]
    if parts[:2] == ["components", "schemas"]:
        parts = parts[2:]
    return "_".join(p.strip("/").replace("/", ".") for p in parts if p)


class _Converter:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.defs: dict[str, Any] = {}

    def ref(self, pointer: str) -> dict[str, str]:
        name = _def_name(pointer)
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: breaks cycles
            self.defs[name] = self.convert(_resolve(self.spec, pointer))
        return {"$ref": f"#/$defs/{name}"}

    def convert(self, node: Any, *, names: bool = False) -> Any:
        """`names`: node maps property names to schemas (its keys are not keywords)."""
        if isinstance(node, list):
            return [self.convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        if names:
            return {k: self.convert(v) for k, v in node.items()}
        if "$ref" in node:
            # OpenAPI 3.0: siblings of $ref are ignored.
            return self.ref(node["$ref"])
        out = {
            k: self.convert(v, names=k in ("properties", "patternProperties"))
            for k, v in node.items()
            if k not in ("nullable", "example", "examples", "discriminator", "xml")
        }
        branches = node.get("oneOf")
        if isinstance(branches, list) and all(
            isinstance(b, dict) and _def_name(str(b.get("$ref", ""))).endswith(_DETAILS)
            for b in branches
        ):
            # The reference's serviceDetails is oneOf the five *Details schemas, but none of them
            # forbids extra properties and web/private/worker details share their required
            # fields: a real web service's details match three branches, so `oneOf` refuses
            # every real answer. `type` is the real discriminator; anyOf keeps the rest, and
            # web-service-details.json checks a web service's details strictly.
            out["anyOf"] = out.pop("oneOf")
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        return out


def main(argv: list[str]) -> None:
    spec_file = Path(argv[1])
    commit = argv[2] if len(argv) > 2 else "unknown"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    version = spec["info"]["version"]
    OUT.mkdir(exist_ok=True)
    for name, (pointer, endpoints) in SCHEMAS.items():
        conv = _Converter(spec)
        root = conv.convert(_resolve(spec, pointer))
        doc: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://koinonia.invalid/contract/{name}.json",
            "$comment": (
                f"Generated by tests/contract/generate_schemas.py from {SPEC_REPO} {SPEC_PATH} "
                f"(commit {commit}; '{spec['info']['title']}' version {version}), {pointer}"
            ),
            "x-endpoints": endpoints,
            **root,
        }
        if conv.defs:
            doc["$defs"] = conv.defs
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv)
