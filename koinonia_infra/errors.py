"""The project's one exception hierarchy, caught once at the CLI boundary.

    KoinoniaError                 exit 1   an operation ran and failed (deploy, verification)
    ├── OperationFailed           exit 1   a deploy/check/drill failed; message names what and where
    ├── ConfigError               exit 2   bad stack file or settings; one line per problem
    ├── UsageError                exit 2   bad flags, bad descriptor / outputs file
    ├── EnvironmentProblem        exit 3   missing binary, credentials, backend, engine
    │   └── EngineNotFound        exit 3   no Pulumi CLI
    ├── RenderApiError            exit 3   the Render REST API refused or could not be reached
    └── StackLocked               exit 4   another update holds the stack, or another operation
                                           (drill, rollout, destroy-instance) holds the deployment
    Interrupted                   exit 130 (KeyboardInterrupt / SIGTERM translated by the CLI)

Third-party errors (pydantic, Pulumi automation, httpx, OSError) are translated into these by the
module that calls the third party, never by the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 success · 1 deploy or verification failed (or cancelled) · 2 usage/config "
    "error · 3 environment/engine error · 4 stack or deployment locked by another operation · "
    "130 interrupted."
)


class KoinoniaError(Exception):
    """Base class: `str(err)` is the message shown to the user (one line per problem)."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, *, lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.lines = list(lines)

    def __str__(self) -> str:
        return "\n".join([self.message, *self.lines]) if self.lines else self.message


class OperationFailed(KoinoniaError):
    exit_code = EXIT_FAILED


class ConfigError(KoinoniaError):
    """Invalid stack file or settings; `lines` holds one `koinonia:<path>: <message>` each."""

    exit_code = EXIT_USAGE


class UsageError(KoinoniaError):
    exit_code = EXIT_USAGE


class EnvironmentProblem(KoinoniaError):
    exit_code = EXIT_ENVIRONMENT


class EngineNotFound(EnvironmentProblem):
    pass


class RenderApiError(KoinoniaError):
    exit_code = EXIT_ENVIRONMENT


class StackLocked(KoinoniaError):
    exit_code = EXIT_LOCKED


class Interrupted(KoinoniaError):
    exit_code = EXIT_INTERRUPTED
