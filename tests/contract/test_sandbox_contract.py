"""The real sandbox's control plane (real processes behind it) answers every endpoint in the
shapes of Render's reference, including the answers of writes that start real work."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from contract_support import assert_valid

pytestmark = pytest.mark.integration


def test_live_sandbox_answers_match_the_reference(sandbox: Any) -> None:
    with httpx.Client(base_url=sandbox.api_url, headers=sandbox.auth_headers, timeout=10) as api:
        listed = api.get("/services", params={"limit": 100})
        assert_valid("service-list", listed.json())
        assert listed.headers["Ratelimit-Limit"] == "400"
        for item in listed.json():
            service = item["service"]
            assert_valid("web-service-details", service["serviceDetails"])
            assert re.fullmatch(re.escape(service["name"]) + r"-[a-z0-9]{4}", service["slug"])
            assert_valid("deploy-list", api.get(f"/services/{service['id']}/deploys").json())
            assert_valid("env-var-list", api.get(f"/services/{service['id']}/env-vars").json())
        edge = next(i["service"] for i in listed.json() if i["service"]["name"] == "koinonia-edge")
        assert edge["serviceDetails"]["runtime"] == "image"
        assert edge["imagePath"].startswith("docker.io/library/caddy:")

        inst = sandbox.descriptor.instance(1)
        assert (
            inst.private_address.split(":")[0]
            == api.get(f"/services/{inst.service_id}").json()["slug"]
        )
        created = api.post(f"/services/{inst.service_id}/deploys", json={})
        assert created.status_code == 201
        assert_valid("deploy", created.json())
        deadline = time.monotonic() + 30
        while True:
            deploy = api.get(f"/services/{inst.service_id}/deploys/{created.json()['id']}").json()
            assert_valid("deploy", deploy)
            if deploy["status"] in ("live", "update_failed"):
                break
            assert time.monotonic() < deadline, deploy["status"]
            time.sleep(0.1)
        assert deploy["status"] == "live"
        assert {"startedAt", "finishedAt"} <= set(deploy)
