"""The deployment descriptor: parsing outputs files; the API key stays out of its public form."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from koinonia_infra.descriptor import load_descriptor
from koinonia_infra.errors import UsageError
from koinonia_infra.targets import resolve_descriptor

OUTPUTS = {
    "edgeUrl": "https://koinonia-edge.onrender.com",
    "instances": [
        {"number": 1, "name": "koinonia-sms-backend", "serviceId": "srv-a",
         "url": "https://a.onrender.com", "privateAddress": "koinonia-sms-backend-x:8080"},
        {"number": 2, "name": "koinonia-sms-backend-2", "serviceId": "srv-b",
         "url": "https://b.onrender.com", "privateAddress": "koinonia-sms-backend-2-y:8080"},
    ],
    "postgresId": "dpg-1",
    "keyValueId": "red-1",
    "region": "oregon",
}  # fmt: skip


def test_stack_outputs_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    descriptor = load_descriptor(path)
    assert descriptor.edge_url == OUTPUTS["edgeUrl"]
    assert [i.private_address for i in descriptor.instances] == [
        "koinonia-sms-backend-x:8080",
        "koinonia-sms-backend-2-y:8080",
    ]
    assert descriptor.instance(2).service_id == "srv-b"
    with pytest.raises(UsageError, match=r"instance 3 is not in the deployment \(declared: 1, 2\)"):
        descriptor.instance(3)


def test_pulumi_secret_wrapped_outputs_are_unwrapped(tmp_path: Path) -> None:
    wrapped = dict(OUTPUTS)
    wrapped["instances"] = {
        "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
        "value": OUTPUTS["instances"],
    }
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(wrapped))
    assert len(load_descriptor(path).instances) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON (line 1"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"[]", "expected a JSON object with edgeUrl and instances"),
        (b'{"instances": []}', "edgeUrl: Field required"),
        (json.dumps({**OUTPUTS, "instances": []}).encode(), "instances: empty"),
        (
            json.dumps({**OUTPUTS, "instances": [OUTPUTS["instances"][0]] * 2}).encode(),  # type: ignore[index]
            "duplicate instance numbers",
        ),
    ],
)
def test_malformed_outputs_file_is_a_usage_error_naming_it(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(UsageError) as info:
        load_descriptor(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_missing_outputs_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="outputs file not found"):
        load_descriptor(tmp_path / "nope.json")


def test_api_key_is_written_only_on_request_and_privately(tmp_path: Path) -> None:
    sentinel = "sentinel-key-must-not-leak"
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**OUTPUTS, "renderApiKey": sentinel}))
    descriptor = load_descriptor(path)
    assert descriptor.render_api_key is not None
    assert descriptor.render_api_key.get_secret_value() == sentinel
    assert sentinel not in json.dumps(descriptor.public_dict())
    assert sentinel not in repr(descriptor)

    public, private = tmp_path / "public.json", tmp_path / "private.json"
    descriptor.write(public)
    descriptor.write(private, include_key=True)
    assert sentinel not in public.read_text()
    assert json.loads(private.read_text())["renderApiKey"] == sentinel
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_target_options_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="choose one of --stack, --outputs, --target"):
        resolve_descriptor(stack="prod", outputs=tmp_path / "x.json")
    with pytest.raises(UsageError, match="the only target is 'sandbox'"):
        resolve_descriptor(target="staging")
    with pytest.raises(UsageError, match="start one with `koinonia-infra sandbox up`"):
        resolve_descriptor(target="sandbox", state_dir=tmp_path)
    with pytest.raises(UsageError, match="--state-dir goes with --target sandbox"):
        resolve_descriptor(outputs=tmp_path / "x.json", state_dir=tmp_path)


def test_a_left_over_sandbox_descriptor_is_not_a_running_sandbox(tmp_path: Path) -> None:
    # A descriptor without a supervisor holding the state dir's lock: killed, or rebooted.
    (tmp_path / "descriptor.json").write_text(json.dumps(OUTPUTS))
    with pytest.raises(UsageError, match=r"no running sandbox in .*: start one with"):
        resolve_descriptor(target="sandbox", state_dir=tmp_path)
