"""`status` checks what only a real account can prove, on every run (docs/first-deploy.md):
each instance's Render slug is the host the edge dials, the edge's Caddyfile dials exactly the
deployment's instances, and requests through the edge reach each of them."""

from __future__ import annotations

from ops_fakes import World

from koinonia_infra.caddy import render_caddyfile
from koinonia_infra.ops.status import StatusReport, collect_status, private_network_line
from koinonia_infra.settings import EdgeSettings


def caddyfile(*upstreams: str) -> str:
    return render_caddyfile(list(upstreams), EdgeSettings(), health_path="/health")


def status(world: World) -> StatusReport:
    return collect_status(world.descriptor(), world.client(), world.probe, world.sample_edge)


def consistent_world() -> World:
    world = World()
    world.edge_caddyfile = caddyfile("svc-1:8080", "svc-2:8080")
    return world


def test_a_consistent_deployment_is_confirmed_without_warnings() -> None:
    report = status(consistent_world())
    assert report.warnings == []
    assert report.private_network.confirmed is True
    assert report.private_network.edge_upstreams == ["svc-1:8080", "svc-2:8080"]
    assert private_network_line(report) == (
        "private network confirmed: the edge reaches api-1 at svc-1:8080, api-2 at svc-2:8080"
    )
    data = report.to_json()
    api_2 = data["services"][1]
    assert api_2["slug"] == "svc-2"
    assert api_2["privateAddress"] == "svc-2:8080"
    assert api_2["slugIsPrivateHost"] is True
    assert api_2["inEdgeUpstreams"] is True
    assert api_2["servedViaEdge"] is True
    assert data["privateNetwork"]["confirmed"] is True
    # The edge row carries no slug check.
    assert data["services"][2]["slugIsPrivateHost"] is None


def test_a_slug_that_is_not_the_private_host_is_said() -> None:
    world = consistent_world()
    world.slugs[2] = "svc-2-x7k2"  # Render's slug: <name>-<4 chars>, not the name
    world.edge_cannot_reach.add(2)  # so the edge's dial of svc-2:8080 goes nowhere
    report = status(world)
    assert report.private_network.confirmed is False
    assert report.warnings == [
        "api-2: Render's slug is 'svc-2-x7k2' but its private address is svc-2:8080: the "
        "private hostname is the slug (docs/first-deploy.md); run `koinonia-infra up` so the "
        "edge follows the service",
        "api-2: healthy, yet none of 4 requests through the edge reached svc-2:8080: is "
        "'svc-2' its private hostname? (docs/first-deploy.md)",
    ]
    row = report.services[1]
    assert (row.slug_is_private_host, row.in_edge_upstreams, row.served_via_edge) == (
        False,
        True,
        False,
    )


def test_an_edge_dialing_a_stale_list_is_said() -> None:
    world = World()
    world.edge_caddyfile = caddyfile("svc-1:8080", "old-3:8080")
    report = status(world)
    assert report.private_network.confirmed is False
    assert report.warnings == [
        "api-2: the edge's Caddyfile does not dial svc-2:8080 (it dials: svc-1:8080, old-3:8080)",
        "the edge also dials old-3:8080, which is no instance of this deployment",
    ]
    assert report.services[1].in_edge_upstreams is False
    assert private_network_line(report) is None


def test_an_unreadable_edge_is_said_and_nothing_is_confirmed() -> None:
    world = World()  # the fake API knows no edge service: its upstreams cannot be read
    report = status(world)
    assert report.private_network.confirmed is False
    assert report.private_network.edge_upstreams is None
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("the edge's upstreams could not be read: ")
    # Without an API key nothing is claimed either way.
    bare = collect_status(world.descriptor(), None, world.probe, None)
    assert bare.warnings == []
    assert bare.private_network.confirmed is None
    assert all(s.slug_is_private_host is None for s in bare.services)


def test_in_the_sandbox_the_edge_dials_loopback_and_the_slug_is_still_checked() -> None:
    world = World()
    # The sandbox's edge dials each instance's loopback address (nothing resolves a slug there).
    world.edge_caddyfile = caddyfile("api-1.test:80", "api-2.test:80")
    world.edge_dials = lambda n: f"api-{n}.test:80"
    descriptor = world.descriptor().model_copy(
        update={"stack": "sandbox", "sandbox_timing": "fast"}
    )
    report = collect_status(descriptor, world.client(), world.probe, world.sample_edge)
    assert report.warnings == []
    assert report.private_network.confirmed is True
    assert [s.slug_is_private_host for s in report.services] == [True, True, None]
    # The same sandbox with Render's addressing would be said to be inconsistent.
    real = collect_status(world.descriptor(), world.client(), world.probe, world.sample_edge)
    assert real.private_network.confirmed is False
