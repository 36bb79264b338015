"""The hash-chained audit log: appends, queries, and tampering with the SQLite file itself."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from zeroserve.security import AuditHead, AuditLog, invocation_detail
from zeroserve.security.audit import GENESIS_HASH


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit.db"


@pytest.fixture
def log(path: Path) -> Iterator[AuditLog]:
    audit = AuditLog(path)
    yield audit
    audit.close()


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            tenant="acme" if i % 2 else "other", actor="local", action="model.deploy",
            target=f"m{i}", detail={"version": i}, now=float(i),
        )  # fmt: skip


def tamper(path: Path, *statements: str) -> None:
    """Edit the file as an attacker would: drop the append-only triggers first."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER IF EXISTS audit_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def own_hash(row: dict[str, object]) -> str:
    """The hash as the module docstring defines it, computed independently."""
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_rows_form_a_chain_with_a_head(log: AuditLog) -> None:
    assert log.head() == AuditHead(0, GENESIS_HASH)
    first = log.append(tenant="acme", actor="abcd1234", action="key.create", now=1.5,
                       target="k2", detail={"role": "invoker", "models": ["iris"]})  # fmt: skip
    second = log.append(tenant="acme", actor="local", action="secret.set", now=2.0)
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash, second.detail) == (2, first.hash, {})
    assert first.hash == own_hash({
        "seq": 1, "ts": 1.5, "tenant": "acme", "actor": "abcd1234", "action": "key.create",
        "target": "k2", "detail": '{"models":["iris"],"role":"invoker"}',
        "prev_hash": GENESIS_HASH,
    })  # fmt: skip
    assert log.head() == AuditHead(2, second.hash)
    assert log.verify().ok


def test_the_chain_survives_reopening(path: Path) -> None:
    log = AuditLog(path)
    fill(log, 3)
    head = log.head()
    log.close()
    log = AuditLog(path)
    fill(log, 2)
    result = log.verify(anchor=head)
    log.close()
    assert (result.ok, result.rows_checked, result.first_bad_seq, result.reason) == (
        True, 5, None, "",
    )  # fmt: skip


def test_list_filters_and_pages(log: AuditLog) -> None:
    fill(log, 10)
    log.append(tenant="acme", actor="local", action="key.revoke", now=20.0, target="k")
    assert [e.seq for e in log.list(tenant="acme")] == [2, 4, 6, 8, 10, 11]
    assert [e.seq for e in log.list(since=7.0)] == [8, 9, 10, 11]
    assert [e.seq for e in log.list(action="key.revoke")] == [11]
    page1 = log.list(limit=4)
    page2 = log.list(limit=4, after_seq=page1[-1].seq)
    assert [e.seq for e in page1 + page2] == list(range(1, 9))
    assert [e.seq for e in log.list(tenant="acme", since=5.0, limit=2)] == [6, 8]
    assert page1[2].detail == {"version": 2}
    with pytest.raises(ValueError, match="limit = 0, must be between 1 and 10000"):
        log.list(limit=0)


def test_the_rows_refuse_update_and_delete(path: Path, log: AuditLog) -> None:
    fill(log, 2)
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET detail = '{}' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 2")
    db.close()


def test_an_edited_row_is_detected(path: Path, log: AuditLog) -> None:
    fill(log, 5)
    tamper(path, """UPDATE audit SET detail = '{"version":99}' WHERE seq = 3""")
    result = log.verify()
    assert (result.ok, result.rows_checked, result.first_bad_seq) == (False, 2, 3)
    assert result.reason == "row 3 does not match its hash: it was edited"


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(path: Path, log: AuditLog) -> None:
    fill(log, 5)
    row = log.list(after_seq=2, limit=1)[0]
    forged = own_hash({
        "seq": 3, "ts": row.ts, "tenant": row.tenant, "actor": row.actor,
        "action": row.action, "target": "forged", "detail": '{"version":2}',
        "prev_hash": row.prev_hash,
    })  # fmt: skip
    tamper(path, f"UPDATE audit SET target = 'forged', hash = '{forged}' WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "row 4 does not link to row 3" in result.reason


def test_a_deleted_middle_row_is_detected(path: Path, log: AuditLog) -> None:
    fill(log, 5)
    tamper(path, "DELETE FROM audit WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.rows_checked, result.first_bad_seq) == (False, 2, 3)
    assert result.reason == "row 3 is missing (the next row is 4)"


def test_a_deleted_first_row_is_detected(path: Path, log: AuditLog) -> None:
    fill(log, 3)
    tamper(path, "DELETE FROM audit WHERE seq = 1")
    assert log.verify().first_bad_seq == 1


def test_renumbering_after_a_delete_is_detected(path: Path, log: AuditLog) -> None:
    fill(log, 5)
    tamper(path, "DELETE FROM audit WHERE seq = 3", "UPDATE audit SET seq = seq - 1 WHERE seq > 3")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_a_deleted_last_row_is_detected_by_the_head(path: Path, log: AuditLog) -> None:
    fill(log, 5)
    tamper(path, "DELETE FROM audit WHERE seq = 5")
    result = log.verify()
    assert (result.ok, result.rows_checked, result.first_bad_seq) == (False, 4, 5)
    assert result.reason == "the log ends at row 4 but its head names row 5"


def test_a_deleted_last_row_with_a_forged_head_needs_an_anchor(path: Path, log: AuditLog) -> None:
    fill(log, 5)
    anchor = log.head()
    row4 = log.list(after_seq=3, limit=1)[0]
    tamper(
        path,
        "DELETE FROM audit WHERE seq = 5",
        f"UPDATE audit_head SET seq = 4, hash = '{row4.hash}'",
    )
    assert log.verify().ok  # consistent, as far as the file alone can tell
    result = log.verify(anchor=anchor)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "the anchor names row 5" in result.reason


def test_a_rewritten_row_differs_from_the_anchor(path: Path, log: AuditLog) -> None:
    fill(log, 3)
    anchor = log.head()
    tamper(path, "UPDATE audit SET hash = 'x' WHERE seq = 3", "UPDATE audit_head SET hash = 'x'")
    # The row's own hash check fires first; an anchor would also have caught it.
    assert log.verify(anchor=anchor).first_bad_seq == 3
    assert log.verify(anchor=AuditHead(2, "wrong")).reason.startswith("row 2 differs")


def test_reordered_rows_are_detected(path: Path, log: AuditLog) -> None:
    fill(log, 5)
    columns = ("ts", "tenant", "target", "detail", "prev_hash", "hash")
    swap = ", ".join(
        f"{c} = (SELECT {c} FROM audit AS o WHERE o.seq = 5 - audit.seq)" for c in columns
    )
    tamper(path, f"UPDATE audit SET {swap} WHERE seq IN (2, 3)")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "does not link" in result.reason


def test_rows_added_behind_the_heads_back_are_detected(path: Path, log: AuditLog) -> None:
    fill(log, 2)
    head = log.head()
    tamper(
        path,
        "INSERT INTO audit SELECT 3, ts, tenant, actor, action, target, detail, hash, hash"
        " FROM audit WHERE seq = 2",
    )
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert head == log.head()


def test_a_wiped_head_is_detected(path: Path, log: AuditLog) -> None:
    fill(log, 2)
    tamper(path, "DELETE FROM audit_head")
    assert log.verify().first_bad_seq == 1


def test_concurrent_appends_do_not_fork_the_chain(path: Path) -> None:
    # Threads on one log (the gateway) and a second log on the same file (the CLI).
    logs = [AuditLog(path), AuditLog(path)]
    barrier = threading.Barrier(6)

    def write(i: int) -> None:
        barrier.wait()
        for j in range(20):
            logs[i % 2].append(tenant="acme", actor=f"w{i}", action="model.invoke",
                               now=float(j), detail={"j": j})  # fmt: skip

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = logs[0].verify()
    assert (result.ok, result.rows_checked) == (True, 120)
    assert logs[1].head().seq == 120
    for audit in logs:
        audit.close()


def test_an_invocation_records_digests_not_data(path: Path, log: AuditLog) -> None:
    body, answer = b"SECRET-INPUT-" * 10, b"SECRET-OUTPUT"
    entry = log.invocation(tenant="acme", actor="abcd1234", now=3.0, model="iris", version=2,
                           status=200, latency_ms=12.34567, input_data=body,
                           output_data=answer)  # fmt: skip
    assert (entry.action, entry.target) == ("model.invoke", "iris")
    assert entry.detail == {
        "model": "iris", "version": 2, "status": 200, "latency_ms": 12.346,
        "input_sha256": hashlib.sha256(body).hexdigest(), "input_bytes": 130,
        "output_sha256": hashlib.sha256(answer).hexdigest(), "output_bytes": 13,
    }  # fmt: skip
    assert entry.detail == invocation_detail(model="iris", version=2, status=200,
                                             latency_ms=12.34567, input_data=body,
                                             output_data=answer)  # fmt: skip
    log.close()
    files = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"SECRET-INPUT" not in files
    assert b"SECRET-OUTPUT" not in files


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tenant": "Acme"}, ValueError, "invalid tenant name 'Acme'"),
        ({"actor": ""}, ValueError, "invalid actor ''"),
        ({"action": "Deploy"}, ValueError, "invalid action 'Deploy'"),
        ({"action": "model..deploy"}, ValueError, "invalid action"),
        ({"detail": {"x": float("nan")}}, ValueError, "Out of range float"),
        ({"detail": {"x": object()}}, TypeError, "not JSON serializable"),
    ],
)
def test_append_validates(
    log: AuditLog, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    args: dict[str, object] = {"tenant": "acme", "actor": "local", "action": "a.b", "now": 0.0}
    with pytest.raises(error, match=message):
        log.append(**{**args, **kwargs})  # type: ignore[arg-type]
    assert log.head().seq == 0
