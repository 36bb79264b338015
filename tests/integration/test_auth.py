"""Keys, roles, tenants, rate limits and the audit log against a real `zeroserve up --auth`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Server

IRIS_ROW = {
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


def bootstrap(state_dir: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "zeroserve.cli", "keys", "bootstrap", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def client(server: Server, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, timeout=60, headers=headers)


def make_key(admin: httpx.Client, tenant: str, role: str, **extra: Any) -> str:
    r = admin.post("/api/keys", json={"tenant": tenant, "role": role, **extra})
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


@pytest.fixture
def secured(server_factory: Any, tmp_path: Path) -> tuple[Server, str]:
    state = tmp_path / "secure-state"
    admin_key = bootstrap(state)
    server: Server = server_factory("--auth", state_dir=state, ZEROSERVE_API_KEY=admin_key)
    return server, admin_key


def test_open_on_loopback_says_so_and_auth_closes_everything_but_health(
    server: Server, secured: tuple[Server, str]
) -> None:
    assert "AUTH IS OFF" in server.log()
    with client(server, None) as c:
        assert c.get("/api/whoami").json() == {
            "tenant": "default", "key": None, "role": "admin", "auth": False,
        }  # fmt: skip
    closed, admin_key = secured
    assert "auth ON" in closed.log()
    with client(closed, None) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
        for path in ("/api/models", "/v2", "/v2/models/x", "/metrics", "/openapi.json", "/"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "API key" in r.json()["error"]
    with client(closed, "zs_abcdefgh_" + "x" * 43) as c:
        assert c.get("/api/models").status_code == 401
    with client(closed, admin_key) as c:
        assert c.get("/api/whoami").json()["role"] == "admin"
    # A second bootstrap is refused: the first admin key exists.
    again = subprocess.run(
        [sys.executable, "-m", "zeroserve.cli", "keys", "bootstrap", "--state-dir",
         str(closed.state_dir)], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 1


def test_each_role_is_allowed_and_denied_by_route_group(
    secured: tuple[Server, str], iris_models: dict[str, Path], tmp_path: Path
) -> None:
    server, admin_key = secured
    with client(server, admin_key) as admin:
        deployer = make_key(admin, "acme", "deployer")
        invoker = make_key(admin, "acme", "invoker", models=["iris"])
    env = {**server.env, "ZEROSERVE_API_KEY": deployer}
    out = subprocess.run(
        [sys.executable, "-m", "zeroserve.cli", "deploy", "iris", str(iris_models["onnx"]),
         "--url", server.url], capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    with client(server, deployer) as d, client(server, invoker) as i, client(server, None) as anon:
        # invocation: both roles; no key: 401
        assert i.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
        assert d.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
        assert anon.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 401
        # deploy, traffic, delete: deployer only
        traffic = {"traffic": [{"version": 1, "percent": 100}]}
        assert d.put("/api/models/iris/traffic", json=traffic).status_code == 200
        assert i.put("/api/models/iris/traffic", json=traffic).status_code == 403
        assert i.post("/api/models/other/versions", json={}).status_code == 403
        assert i.delete("/api/models/iris").status_code == 403
        assert i.put("/api/artifacts", content=b"x").status_code == 403
        # metrics and audit: deployer only
        assert d.get("/metrics").status_code == 200
        assert i.get("/metrics").status_code == 403
        assert d.get("/api/audit").status_code == 200
        assert i.get("/api/audit").status_code == 403
        # keys and limits: admin only
        assert d.post("/api/keys", json={"role": "invoker", "tenant": "acme"}).status_code == 403
        assert d.get("/api/keys").status_code == 403
        assert d.put("/api/limits/tenant/acme", json={"daily_quota": 5}).status_code == 403
        # jobs: an invoker reads its own, a deployer all of the tenant's
        mine = i.post("/api/models/iris/jobs", json=IRIS_ROW).json()["id"]
        theirs = d.post("/api/models/iris/jobs", json=IRIS_ROW).json()["id"]
        assert i.get(f"/api/jobs/{mine}").status_code == 200
        assert i.get(f"/api/jobs/{theirs}").status_code == 404
        assert {j["id"] for j in i.get("/api/jobs").json()["jobs"]} == {mine}
        assert {j["id"] for j in d.get("/api/jobs").json()["jobs"]} == {mine, theirs}
        assert i.get("/api/dead-letters").status_code == 403
        assert d.get("/api/dead-letters").status_code == 200
        trigger = {"name": "t", "model": "iris", "watch": str(tmp_path)}
        assert i.post("/api/triggers", json=trigger).status_code == 403
        # an invoker limited to iris sees only iris
        assert d.put("/api/models/iris/traffic", json=traffic).status_code == 200
        assert [m["name"] for m in i.get("/api/models").json()["models"]] == ["iris"]


def test_tenants_cannot_see_each_others_models_jobs_metrics_or_audit(
    secured: tuple[Server, str], iris_models: dict[str, Path]
) -> None:
    server, admin_key = secured
    with client(server, admin_key) as admin:
        a = make_key(admin, "alpha", "deployer")
        b = make_key(admin, "beta", "deployer")
        b_invoker = make_key(admin, "beta", "invoker")
    with client(server, a) as ca, client(server, b) as cb, client(server, b_invoker) as bi:
        upload = ca.put("/api/artifacts", content=iris_models["onnx"].read_bytes())
        digest = upload.json()["sha256"]
        deploy = {"artifact": {"sha256": digest, "filename": "iris.onnx"}}
        assert ca.post("/api/models/iris/versions", json=deploy).status_code == 201
        assert ca.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
        job = ca.post("/api/models/iris/jobs", json=IRIS_ROW).json()["id"]
        for c in (cb, bi):  # another tenant: as if it did not exist
            assert c.get("/api/models/iris").status_code == 404
            assert c.get("/v2/models/iris").status_code == 404
            assert c.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 404
            v1 = {"instances": [[1, 2, 3, 4]]}
            assert c.post("/v1/models/iris:predict", json=v1).status_code == 404
            assert c.post("/api/models/iris/jobs", json=IRIS_ROW).status_code == 404
            assert c.get(f"/api/jobs/{job}").status_code == 404
            assert c.get("/api/models").json()["models"] == []
            assert c.get("/v1/models").json()["models"] == []
            assert c.post("/v2/repository/index").json() == []
        assert cb.get("/api/jobs").json()["jobs"] == []
        assert cb.delete("/api/models/iris").status_code == 404
        assert cb.put("/api/models/iris/traffic", json={"traffic": []}).status_code == 404
        assert cb.post(f"/api/dead-letters/{job}/requeue").status_code == 404
        # The name is taken; which tenant has it is not said.
        taken = cb.post("/api/models/iris/versions", json=deploy)
        assert taken.status_code == 409
        assert "alpha" not in taken.text
        assert 'model="iris"' in ca.get("/metrics").text
        assert 'model="iris"' not in cb.get("/metrics").text
        audit_b = cb.get("/api/audit").json()["entries"]
        assert audit_b
        assert all(e["tenant"] == "beta" for e in audit_b)
        assert any(e["action"] == "model.deploy" for e in ca.get("/api/audit").json()["entries"])
        # Another tenant's artifact, by its digest, is as if it were not in the store; the
        # same bytes uploaded by this tenant are its own.
        stolen = cb.post("/api/models/iris-b/versions", json=deploy)
        assert stolen.status_code == 422
        assert "not in the store" in stolen.json()["error"]
        assert cb.put("/api/artifacts", content=iris_models["onnx"].read_bytes()).status_code == 201
        # Idempotency keys are per tenant: the same key in another tenant is another request.
        assert cb.post("/api/models/iris-b/versions", json=deploy).status_code == 201
        k = {"Idempotency-Key": "order-1"}
        assert ca.post("/v2/models/iris/infer", json=IRIS_ROW, headers=k).status_code == 200
        other = cb.post("/v2/models/iris-b/infer", json=IRIS_ROW, headers=k)
        assert other.status_code == 200
        assert "idempotent-replayed" not in other.headers


def test_revoking_a_key_takes_effect_at_once(secured: tuple[Server, str]) -> None:
    server, admin_key = secured
    with client(server, admin_key) as admin:
        key = make_key(admin, "acme", "invoker")
        prefix = key.split("_")[1]
        with client(server, key) as c:
            assert c.get("/api/models").status_code == 200
            listed = server.cli("keys", "ls", "--json").stdout
            assert prefix in listed
            assert key not in listed  # only prefixes are ever shown again
            server.cli("keys", "revoke", prefix)
            assert c.get("/api/models").status_code == 401


def test_rate_limits_answer_429_with_headers(secured: tuple[Server, str]) -> None:
    server, admin_key = secured
    with client(server, admin_key) as admin:
        key = make_key(admin, "acme", "invoker")
        keys = admin.get("/api/keys").json()["keys"]
        prefix = next(k["prefix"] for k in keys if k["tenant"] == "acme")
    server.cli("limits", "set", "key", prefix, "--rps", "0.5", "--burst", "2")
    with client(server, key) as c:
        first = c.get("/api/models")
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit"] == "2"
        assert first.headers["x-ratelimit-remaining"] == "1"
        assert c.get("/api/models").status_code == 200
        refused = c.get("/api/models")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert "rate" in refused.json()["error"]
    # A daily quota on the tenant binds every key of it.
    server.cli("limits", "rm", "key", prefix)
    server.cli("limits", "set", "tenant", "acme", "--daily", "1")
    with client(server, key) as c:
        assert c.get("/api/models").status_code == 200
        over = c.get("/api/models")
        assert over.status_code == 429
        assert "quota" in over.json()["error"]
    with client(server, admin_key) as admin:  # other tenants are not affected
        assert admin.get("/api/models").status_code == 200


def test_audit_log_records_who_did_what_and_detects_tampering(
    secured: tuple[Server, str], iris_models: dict[str, Path]
) -> None:
    server, admin_key = secured
    with client(server, admin_key) as admin:
        make_key(admin, "acme", "deployer")
    server.deploy("iris", iris_models["onnx"])
    with client(server, admin_key) as admin:
        assert admin.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
        time.sleep(0.5)  # invocation records are written in batches
        entries = admin.get("/api/audit").json()["entries"]
    actions = [e["action"] for e in entries]
    assert actions[:2] == ["key.create", "model.deploy"]
    invoke = next(e for e in entries if e["action"] == "model.invoke")
    assert invoke["detail"]["status"] == 200
    assert len(invoke["detail"]["input_sha256"]) == 64
    assert invoke["detail"]["input_bytes"] > 0
    assert invoke["detail"]["output_bytes"] > 0  # the response's digest, not an empty one
    assert "5.1" not in str(invoke)  # digests of the data, never the data
    assert all(e["actor"] == admin_key.split("_")[1] for e in entries)
    assert "intact" in server.cli("audit", "verify").stdout
    listed = server.cli("audit", "ls", "--action", "model.deploy").stdout
    assert "iris" in listed
    server.stop()

    db = sqlite3.connect(server.state_dir / "audit.db")
    db.execute("DROP TRIGGER audit_no_update")  # what someone with the file can do
    db.execute(
        "UPDATE audit SET detail = '{\"runtime\":\"sklearn\"}' WHERE action = 'model.deploy'"
    )
    db.commit()
    db.close()
    verify = subprocess.run(
        [sys.executable, "-m", "zeroserve.cli", "audit", "verify", "--state-dir",
         str(server.state_dir)], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )  # fmt: skip
    assert verify.returncode == 1
    assert "row 2" in verify.stderr


def test_secrets_reach_only_their_instances_and_never_leak(
    server_factory: Any, tmp_path: Path
) -> None:
    from cryptography.fernet import Fernet

    value = "s3cr3t-value-9f8e7d"
    state = tmp_path / "secret-state"
    admin_key = bootstrap(state)
    server: Server = server_factory(
        "--auth", state_dir=state, ZEROSERVE_API_KEY=admin_key,
        ZEROSERVE_SECRETS_KEY=Fernet.generate_key().decode(),
    )  # fmt: skip
    models = Path(__file__).parent / "models"
    with client(server, admin_key) as admin:
        deployer = make_key(admin, "acme", "deployer")
    env = {**server.env, "ZEROSERVE_API_KEY": deployer}

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "zeroserve.cli", *args, "--url", server.url],
            input=stdin, capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out

    cli("secrets", "set", "API_TOKEN", stdin=value)
    assert cli("secrets", "ls").stdout.split() == ["API_TOKEN"]
    spec = tmp_path / "with-secret.yaml"
    spec.write_text("secrets: [API_TOKEN]\n")
    cli("deploy", "envdump", str(models / "envdump.py"), "-f", str(spec))
    cli("deploy", "plain", str(models / "envdump.py"))
    row = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}]}
    with client(server, deployer) as c:
        seen = json.loads(
            c.post("/v2/models/envdump/infer", json=row).json()["outputs"][0]["data"][0]
        )
        plain = json.loads(
            c.post("/v2/models/plain/infer", json=row).json()["outputs"][0]["data"][0]
        )
        metrics = c.get("/metrics").text
        document = c.get("/openapi.json").text
        status = c.get("/api/models/envdump").text
        audit = c.get("/api/audit").text
        assert c.get("/api/secrets").json() == {"secrets": ["API_TOKEN"]}
    assert seen["environ"]["API_TOKEN"] == value  # the instance that names it gets it
    assert "API_TOKEN" not in plain["environ"]  # another version does not
    assert "ZEROSERVE_SECRETS_KEY" not in seen["environ"]
    assert "ZEROSERVE_API_KEY" not in seen["environ"]
    # Another tenant cannot read or use it.
    with client(server, admin_key) as admin:
        other = make_key(admin, "other", "deployer")
    with client(server, other) as o:
        assert o.get("/api/secrets").json() == {"secrets": []}
    server.stop()
    leaks = {
        "server log": server.log(),
        "metrics": metrics,
        "openapi": document,
        "model status": status,
        "audit API": audit,
    }
    for name in ("registry.db", "secrets.db", "audit.db", "jobs.db", "keys.db"):
        for path in server.state_dir.glob(name + "*"):  # with -wal and -shm
            leaks[path.name] = path.read_bytes().decode("latin-1")
    for where, text in leaks.items():
        assert value not in text, where
    assert "secret.set" in audit


def test_a_zip_slip_archive_is_refused_at_deploy(server: Server, tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        source = "class M:\n    def load(self, p): pass\n    def predict(self, b): return b\n"
        zf.writestr("model.py", source)
        zf.writestr("../../escaped.py", "boom")
    out = server.cli("deploy", "evil", str(archive), "--runtime", "python", check=False)
    assert out.returncode == 1
    assert "outside the archive" in out.stderr
    assert not list(server.state_dir.parent.rglob("escaped.py"))
    with client(server, None) as c:
        assert c.get("/api/models/evil").status_code == 404
