"""The server signs and verifies exactly as the SDKs do: every case of sdk/testdata is checked here too."""

from __future__ import annotations

import json

import pytest

from shared.http import auth
from tests.conftest import REPO

SIGNATURES = json.loads((REPO / "sdk/testdata/signatures.json").read_text())


@pytest.mark.parametrize("case", SIGNATURES, ids=[c["name"] for c in SIGNATURES])
def test_server_computes_each_vector_signature(case: dict[str, object]) -> None:
    body = str(case["body"]).encode()
    key_hash = auth.hash_key(str(case["api_key"]))
    computed = auth.compute_signature(key_hash, str(case["timestamp"]), str(case["method"]), str(case["path"]), body)
    assert computed == case["signature"]
    auth.verify_signature(
        key_hash=key_hash,
        timestamp=str(case["timestamp"]),
        signature="v1=" + str(case["signature"]),
        method=str(case["method"]),
        path=str(case["path"]),
        body=body,
        now=float(case["timestamp"]),  # type: ignore[arg-type]
    )
