"""`verify`: the runbook's manual checks as one command (see docs/verify.md)."""

from koinonia_infra.verify.model import CheckResult, VerifyOptions, VerifyReport
from koinonia_infra.verify.runner import run_verify

__all__ = ["CheckResult", "VerifyOptions", "VerifyReport", "run_verify"]
