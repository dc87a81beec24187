"""A stand-in `pulumi` executable for argv-mapping tests (copied to <tmp>/bin/pulumi).

It records each invocation (argv and whether the Render key arrived through the environment) to
$STUB_LOG as JSON lines, answers the few commands the Automation API runs, and streams the engine
events of $STUB_EVENTS (JSON lines in the event-log format) to the `--event-log` gRPC address.
"""

from __future__ import annotations

import json
import os
import sys

HISTORY = [
    {
        "kind": "update",
        "startTime": "2024-01-01T00:00:00.000Z",
        "endTime": "2024-01-01T00:00:05.000Z",
        "message": "",
        "environment": {},
        "config": {},
        "result": "succeeded",
        "resourceChanges": {"update": 1},
    }
]


def stream_events(address: str) -> None:
    import grpc  # type: ignore[import-untyped]
    from pulumi.runtime.proto import events_pb2, events_pb2_grpc

    path = os.environ.get("STUB_EVENTS")
    lines = open(path, encoding="utf-8").read().splitlines() if path else []  # noqa: SIM115
    with grpc.insecure_channel(address.removeprefix("tcp://")) as channel:
        stub = events_pb2_grpc.EventsStub(channel)
        stub.StreamEvents(iter([events_pb2.EventRequest(event=line) for line in lines if line]))


def main() -> int:
    argv = sys.argv[1:]
    with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
        record = {
            "argv": argv,
            "renderKeyInEnv": os.environ.get("RENDER_APIKEY") == os.environ.get("STUB_EXPECT_KEY"),
            "cwd": os.getcwd(),
        }
        log.write(json.dumps(record) + "\n")
    args = [a for a in argv if a != "--non-interactive"]
    if args[:1] == ["version"]:
        print("v" + os.environ.get("STUB_VERSION", "3.272.0"))
        return 0
    if args[:2] == ["stack", "select"]:
        if os.environ.get("STUB_NO_STACK"):
            print("error: no stack named 'prod' found", file=sys.stderr)
            return 255
        return 0
    if args[:2] == ["stack", "output"]:
        print(os.environ.get("STUB_OUTPUTS", "{}"))
        return 0
    if args[:2] == ["stack", "history"]:
        print(json.dumps(HISTORY))
        return 0
    if args[:1] in (["preview"], ["up"]):
        if "--event-log" in args:
            stream_events(args[args.index("--event-log") + 1])
        if os.environ.get("STUB_STDERR"):
            print(os.environ["STUB_STDERR"], file=sys.stderr)
        return int(os.environ.get("STUB_EXIT", "0"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
