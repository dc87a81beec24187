"""ONE attribution of an answer to an instance, for verify and for drill/rollout alike."""

from __future__ import annotations

import pytest

from koinonia_infra.descriptor import Descriptor, parse_descriptor
from koinonia_infra.measure.attribution import Attributor
from koinonia_infra.measure.samples import Sample
from koinonia_infra.ops.common import TrafficTotals, summarize
from koinonia_infra.verify.checks import failure_reason


def _descriptor() -> Descriptor:
    return parse_descriptor(
        {
            "edgeUrl": "http://127.0.0.1:7000",
            "edge": {"name": "koinonia-edge", "serviceId": "srv-edge"},
            "instances": [
                {
                    "number": n,
                    "name": f"koinonia-api-{n}",
                    "serviceId": f"srv-{n}",
                    "url": f"http://127.0.0.1:700{n}",
                    "privateAddress": f"koinonia-api-{n}:10000",
                }
                for n in (1, 2)
            ],
        },
        source="test",
    )


LABELS_OF_API_2 = [
    "koinonia-api-2:10000",  # the edge's header on Render: the private address it dialed
    "127.0.0.1:7002",  # the sandbox's edge dials the instance's loopback URL
    "2",
    "api-2",
    "API-2",
    "koinonia-api-2",
    "srv-2",  # a body naming its service id
]


@pytest.mark.parametrize("label", LABELS_OF_API_2)
def test_verify_and_drill_attribute_a_label_to_the_same_instance(label: str) -> None:
    descriptor = _descriptor()
    answer = Sample(started=0.0, latency_ms=1.0, status=200, upstream=label, error=None)
    failed = Sample(started=0.0, latency_ms=1.0, status=500, upstream=label, error=None)
    totals = TrafficTotals(samples=[answer], duration=1.0, target_rate=1.0, achieved_rate=1.0)
    # drill and rollout count who served; verify names who failed: both say api-2.
    assert summarize(totals, Attributor(descriptor)).served_by == {"api-2": 1}
    assert failure_reason(failed, descriptor) == "HTTP 500 from api-2"


def test_an_unknown_label_is_nobody() -> None:
    attribution = Attributor(_descriptor())
    assert attribution.instance("10.0.0.9:10000") is None
    assert attribution.instance(None) is None
    assert attribution.instance("") is None
    stray = Sample(started=0.0, latency_ms=1.0, status=200, upstream="10.0.0.9:10000", error=None)
    assert attribution(stray) is None
