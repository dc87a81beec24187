"""The `server` fixture: a FramingServer (framing_server.py) on a free port, for one test."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from framing_server import FramingServer


@pytest.fixture
def server() -> Iterator[FramingServer]:
    srv = FramingServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
