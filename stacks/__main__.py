"""The Pulumi entry point (`main: stacks/` in Pulumi.yaml): validate the stack config, build."""

import pulumi

from koinonia_infra.errors import ConfigError
from koinonia_infra.program import build, settings_from_pulumi_config

try:
    settings = settings_from_pulumi_config()
except ConfigError as exc:
    # RunError: the engine prints the message alone, one line per problem, no traceback.
    raise pulumi.RunError(str(exc)) from None
build(settings)
