"""API keys: format, hashing at rest, authentication, expiry, revocation, bootstrap."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from zeroserve.security import KeyStore, KeyStoreError, Role, parse_duration

KEY = re.compile(r"zs_[a-z0-9]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    s = KeyStore(tmp_path / "state" / "keys.db")
    yield s
    s.close()


def test_a_key_is_shown_once_and_only_a_salted_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = KeyStore(path)
    plaintext, record = store.create("acme", Role.DEPLOYER, now=0.0, description="ci")
    store.close()

    assert KEY.fullmatch(plaintext), plaintext
    assert len(plaintext) == 55
    assert plaintext.startswith(f"zs_{record.prefix}_")
    assert (record.tenant, record.role, record.models) == ("acme", Role.DEPLOYER, None)
    assert (record.created_at, record.expires_at, record.revoked_at) == (0.0, None, None)
    assert record.description == "ci"

    secret = plaintext.split("_", 2)[2]
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in files
    assert plaintext.encode() not in files
    assert hashlib.sha256(plaintext.encode()).digest() not in files  # salted, not bare

    db = sqlite3.connect(path)
    salt, digest = db.execute("SELECT salt, hash FROM api_keys").fetchone()
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    assert len(salt) == 16
    assert digest == hashlib.sha256(salt + plaintext.encode()).digest()


def test_keys_are_distinct(store: KeyStore) -> None:
    made = [store.create("acme", "invoker", now=0.0) for _ in range(20)]
    assert len({p for p, _ in made}) == 20
    assert len({r.prefix for _, r in made}) == 20


def test_authenticate_accepts_the_key_and_nothing_else(store: KeyStore) -> None:
    plaintext, record = store.create("acme", Role.INVOKER, models=["iris"], now=0.0)
    got = store.authenticate(plaintext, now=1.0)
    assert got is not None
    assert (got.prefix, got.tenant, got.role, got.models) == (
        record.prefix, "acme", Role.INVOKER, ("iris",),
    )  # fmt: skip

    prefix, secret = record.prefix, plaintext.split("_", 2)[2]
    other = "A" if secret[0] != "A" else "B"
    wrong = [
        f"zs_{prefix}_{other}{secret[1:]}",  # one character off
        f"zs_zzzzzzzz_{secret}",  # unknown prefix
        "",
        "Bearer " + plaintext,
        plaintext + "x",
        plaintext[:-1],
        plaintext.upper(),
        f"zs_{prefix}_{secret[:-1]}!",
        f"xx_{prefix}_{secret}",
    ]
    for candidate in wrong:
        assert store.authenticate(candidate, now=1.0) is None, candidate


def test_revocation_takes_effect_at_once_and_keeps_the_first_time(store: KeyStore) -> None:
    plaintext, record = store.create("acme", Role.DEPLOYER, now=0.0)
    assert store.authenticate(plaintext, now=5.0) is not None
    revoked = store.revoke(record.prefix, now=10.0)
    assert revoked.revoked_at == 10.0
    assert not revoked.active(10.0)
    assert store.authenticate(plaintext, now=10.0) is None
    assert store.revoke(record.prefix, now=20.0).revoked_at == 10.0
    with pytest.raises(KeyStoreError, match="no key with prefix 'nope'"):
        store.revoke("nope", now=20.0)


def test_a_key_expires_at_its_time(store: KeyStore) -> None:
    plaintext, record = store.create(
        "acme", "deployer", expires_in_s=parse_duration("1h"), now=100.0
    )
    assert record.expires_at == 3700.0
    assert store.authenticate(plaintext, now=3699.9) is not None
    assert store.authenticate(plaintext, now=3700.0) is None
    assert store.authenticate(plaintext, now=10_000.0) is None


def test_last_used_is_written_at_most_once_a_minute(store: KeyStore) -> None:
    plaintext, record = store.create("acme", "invoker", now=0.0)
    assert record.last_used_at is None
    seen = []
    for now in (10.0, 30.0, 69.9, 70.0, 100.0, 131.0):
        got = store.authenticate(plaintext, now=now)
        assert got is not None
        stored = store.get(record.prefix)
        assert stored is not None
        assert got.last_used_at == stored.last_used_at
        seen.append(stored.last_used_at)
    assert seen == [10.0, 10.0, 10.0, 70.0, 70.0, 131.0]


def test_list_filters_by_tenant_and_shows_revoked_keys(store: KeyStore) -> None:
    _, a1 = store.create("a", "admin", now=1.0)
    _, b1 = store.create("b", "invoker", now=2.0)
    _, a2 = store.create("a", "deployer", now=3.0)
    store.revoke(a1.prefix, now=4.0)
    assert [r.prefix for r in store.list()] == [a1.prefix, b1.prefix, a2.prefix]
    listed = store.list("a")
    assert [r.prefix for r in listed] == [a1.prefix, a2.prefix]
    assert listed[0].revoked_at == 4.0
    assert store.list("nobody") == []


def test_keys_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = KeyStore(path)
    plaintext, record = store.create("acme", "invoker", models=["b", "a", "b"], now=0.0)
    assert record.models == ("a", "b")
    store.close()
    store = KeyStore(path)
    got = store.authenticate(plaintext, now=1.0)
    store.close()
    assert got is not None
    assert got.models == ("a", "b")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant": "Acme"}, "invalid tenant name 'Acme'"),
        ({"tenant": ""}, "invalid tenant name ''"),
        ({"tenant": "-x"}, "invalid tenant name"),
        ({"tenant": "a" * 64}, "invalid tenant name"),
        ({"role": "root"}, "'root' is not a valid Role"),
        ({"role": "admin", "models": ["iris"]}, "admin keys cannot be limited"),
        ({"models": []}, "name at least one model"),
        ({"models": [""]}, "name at least one model"),
        ({"expires_in_s": 0}, "expires_in_s = 0, must be greater than 0"),
    ],
)
def test_create_validates(store: KeyStore, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"tenant": "acme", "role": "invoker", "now": 0.0, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        store.create(**args)  # type: ignore[arg-type]
    assert store.list() == []


def test_bootstrap_makes_the_first_admin_key_only(store: KeyStore) -> None:
    plaintext, record = store.bootstrap(now=0.0)
    assert (record.tenant, record.role, record.expires_at) == ("default", Role.ADMIN, None)
    assert store.authenticate(plaintext, now=1.0) is not None
    with pytest.raises(
        KeyStoreError, match=re.escape(f"admin key exists already (prefix {record.prefix}")
    ):
        store.bootstrap(now=2.0)


def test_bootstrap_is_refused_by_any_active_admin_key_of_any_tenant(store: KeyStore) -> None:
    store.create("default", "deployer", now=0.0)
    store.create("other", "invoker", now=0.0)
    _, admin = store.create("other", "admin", expires_in_s=100, now=0.0)
    with pytest.raises(KeyStoreError):
        store.bootstrap(now=50.0)
    # Once no admin key is usable, the holder of the state directory may recover.
    _, record = store.bootstrap(now=100.0)
    assert record.role is Role.ADMIN
    store.revoke(record.prefix, now=101.0)
    store.bootstrap(now=102.0)
    assert admin.prefix in {r.prefix for r in store.list("other")}


def test_concurrent_bootstraps_make_one_admin_key(tmp_path: Path) -> None:
    # Two stores on one file stand for two processes (two `keys bootstrap` runs).
    path = tmp_path / "keys.db"
    stores = [KeyStore(path) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def run(s: KeyStore) -> None:
        barrier.wait()
        try:
            s.bootstrap(now=0.0)
            outcomes.append("made")
        except KeyStoreError:
            outcomes.append("refused")

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["made", "refused", "refused", "refused"]
    assert len(stores[0].list()) == 1
    for s in stores:
        s.close()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 2_592_000), ("12h", 43_200), ("15m", 900), ("3600s", 3600), (" 1d ", 86_400)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", "invalid duration '30': expected a whole number followed by s, m, h or d"),
        ("30x", "invalid duration '30x'"),
        ("1.5h", "invalid duration '1.5h'"),
        ("-1d", "invalid duration '-1d'"),
        ("d", "invalid duration 'd'"),
        ("", "invalid duration ''"),
        ("1 d", "invalid duration '1 d'"),
        ("0s", "invalid duration '0s': must be longer than zero"),
    ],
)
def test_parse_duration_errors_name_the_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)
