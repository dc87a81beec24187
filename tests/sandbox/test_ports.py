"""The ports the sandbox picks for the children that bind their own (PostgreSQL, Redis, Caddy)
lie below the kernel's ephemeral range, which outgoing connections draw from until they do."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from koinonia_infra.sandbox import supervisor


def test_a_chosen_port_is_free_and_below_the_ephemeral_range() -> None:
    floor = supervisor._ephemeral_floor()
    if floor is None:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range: the kernel's own choice is used")
    for _ in range(20):
        port = supervisor._free_port()
        assert supervisor.LOW_PORTS <= port < floor
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: nothing holds it


def test_without_a_known_range_the_kernel_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "EPHEMERAL_RANGE", tmp_path / "absent")
    assert supervisor._ephemeral_floor() is None
    port = supervisor._free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_taken_port_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    if supervisor._ephemeral_floor() is None:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        # Every draw lands on the taken port: it is refused, and the kernel's choice is used.
        monkeypatch.setattr(supervisor, "LOW_PORTS", taken)
        monkeypatch.setattr(supervisor, "_ephemeral_floor", lambda: taken + 1)
        assert supervisor._free_port() != taken
