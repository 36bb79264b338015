"""Schemathesis against /openapi.json of a live `zeroserve up`, with auth off and on: a
bounded number of generated requests per operation (fixed seed). No 500, no hang; every
status, content type and body matches the document."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.integration.conftest import Server

EXAMPLES = 12


# What the document promises: no 5xx, and every status, content type, header and body as
# documented; with auth on, a request without a valid key is refused. (Not checked: that
# every schema-valid body is accepted: some rules, like "exactly one of sha256 or uri", are
# beyond what the JSON schema says, and get a 422 that names them.)
@schemathesis.check
def no_internal_error(ctx: Any, response: Any, case: Any) -> None:
    """A 500 is a bug. (503 and 504, documented with what they mean, are answers.)"""
    if response.status_code == 500:
        raise AssertionError(f"500 from {case.method} {case.path}: {response.text[:300]}")


CHECKS = [
    no_internal_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.ignored_auth,
]


def bootstrap_key(state_dir: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "zeroserve.cli", "keys", "bootstrap", "--state-dir", str(state_dir)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.fixture(scope="module", params=["auth-off", "auth-on"])
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    iris_models: dict[str, Path],
) -> Iterator[tuple[Server, dict[str, str]]]:
    state = tmp_path_factory.mktemp("fuzz") / "state"
    auth = request.param == "auth-on"
    # Failed deploys start throwaway instances; keep their waits short.
    env = {
        **os.environ,
        "ZEROSERVE_START_TIMEOUT_S": "10",
        "ZEROSERVE_QUEUE_TIMEOUT_S": "5",
        "ZEROSERVE_SECRETS_KEY": Fernet.generate_key().decode(),
    }
    server = Server(state, env, ["--auth"] if auth else [])
    headers: dict[str, str] = {}
    if auth:
        key = bootstrap_key(state)
        env["ZEROSERVE_API_KEY"] = key
        headers = {"Authorization": f"Bearer {key}"}
    server.start()
    server.deploy("iris", iris_models["onnx"])
    yield server, headers
    server.stop()


def test_every_operation_conforms(live: tuple[Server, dict[str, str]]) -> None:
    server, headers = live
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
    # Setting limits on the fuzzer's own tenant would turn the rest of the run into 429s.
    api = api.exclude(path_regex="^/api/limits/")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) > 40
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)

        try:
            run()
        except BaseException as exc:  # every operation's failures (a group), reported together
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
