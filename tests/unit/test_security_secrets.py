"""Secrets: key sources and placement, encryption at rest, names, and no plaintext in reprs."""

from __future__ import annotations

import copy
import pickle
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from zeroserve.security import (
    KeySource,
    SecretsError,
    SecretStore,
    SecretValue,
    generate_key_file,
    key_source,
    validate_secret_name,
)

VALUE = "hunter2-plaintext-VALUE-0123456789"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return generate_key_file(tmp_path / "config" / "secrets.key")


@pytest.fixture
def store(tmp_path: Path, key_file: Path) -> Iterator[SecretStore]:
    s = SecretStore(tmp_path / "state" / "secrets.db", KeySource(key_file=key_file))
    yield s
    s.close()


def test_generate_key_file_is_private_and_never_overwrites(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "k" / "secrets.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(path.read_bytes().strip())  # a valid key
    before = path.read_bytes()
    with pytest.raises(SecretsError, match="exists already; not overwriting"):
        generate_key_file(path)
    assert path.read_bytes() == before
    with pytest.raises(SecretsError, match="inside the state directory"):
        generate_key_file(tmp_path / "state" / "k", state_dir=tmp_path / "state")


@pytest.mark.parametrize(
    "inside", ["state/secrets.key", "state/sub/secrets.key", "other/../state/secrets.key"]
)
def test_a_key_file_in_the_state_directory_is_refused(tmp_path: Path, inside: str) -> None:
    path = tmp_path / inside
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(Fernet.generate_key())
    with pytest.raises(SecretsError, match="is inside the state directory"):
        SecretStore(tmp_path / "state" / "secrets.db", KeySource(key_file=path))


def test_a_symlink_into_the_state_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "state" / "secrets.key"
    real.parent.mkdir()
    real.write_bytes(Fernet.generate_key())
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(SecretsError, match="inside the state directory"):
        SecretStore(tmp_path / "state" / "secrets.db", KeySource(key_file=link))


def test_key_source_prefers_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "k"
    assert key_source({"ZEROSERVE_SECRETS_KEY": "abc"}, file) == KeySource(env_value="abc")
    assert key_source({"ZEROSERVE_SECRETS_KEY": ""}, file) == KeySource(key_file=file)
    assert key_source({}, None) == KeySource()


def test_the_env_key_works_and_is_not_shown(tmp_path: Path) -> None:
    env_key = Fernet.generate_key().decode()
    source = key_source({"ZEROSERVE_SECRETS_KEY": env_key})
    assert env_key not in repr(source)
    store = SecretStore(tmp_path / "secrets.db", source)
    store.set("acme", "TOKEN", VALUE, now=0.0)
    assert store.get("acme", "TOKEN").reveal() == VALUE
    store.close()
    assert env_key.encode() not in (tmp_path / "secrets.db").read_bytes()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (KeySource(), "no secrets key: set ZEROSERVE_SECRETS_KEY or give a key file"),
        (KeySource(env_value="not-a-key-SENSITIVE"), r"\$ZEROSERVE_SECRETS_KEY is not a Fernet"),
    ],
)
def test_a_missing_or_bad_key_is_refused_clearly(
    tmp_path: Path, source: KeySource, message: str
) -> None:
    with pytest.raises(SecretsError, match=message) as info:
        SecretStore(tmp_path / "secrets.db", source)
    assert "SENSITIVE" not in str(info.value)


def test_a_missing_or_bad_key_file_is_refused_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(SecretsError, match=r"cannot read secrets key file .*nope\.key"):
        SecretStore(tmp_path / "s" / "secrets.db", KeySource(key_file=missing))
    missing.write_text("garbage")
    with pytest.raises(SecretsError, match=r"nope\.key is not a Fernet key"):
        SecretStore(tmp_path / "s" / "secrets.db", KeySource(key_file=missing))


def test_set_get_names_delete_per_tenant(store: SecretStore) -> None:
    store.set("acme", "DB_PASSWORD", VALUE, now=0.0)
    store.set("acme", "API_TOKEN", SecretValue("t0k"), now=1.0)
    store.set("other", "DB_PASSWORD", "other-value", now=2.0)
    assert store.names("acme") == ["API_TOKEN", "DB_PASSWORD"]
    assert store.get("acme", "DB_PASSWORD").reveal() == VALUE
    assert store.get("other", "DB_PASSWORD").reveal() == "other-value"
    assert store.get("acme", "API_TOKEN").reveal() == "t0k"

    store.set("acme", "DB_PASSWORD", "rotated", now=3.0)
    assert store.get("acme", "DB_PASSWORD").reveal() == "rotated"
    assert store.delete("acme", "DB_PASSWORD") is True
    assert store.delete("acme", "DB_PASSWORD") is False
    assert store.names("acme") == ["API_TOKEN"]
    with pytest.raises(KeyError, match="no secret 'DB_PASSWORD' in tenant 'acme'"):
        store.get("acme", "DB_PASSWORD")
    with pytest.raises(KeyError):
        store.get("nobody", "API_TOKEN")


def test_plaintext_never_reaches_the_database_files(tmp_path: Path, key_file: Path) -> None:
    db_path = tmp_path / "state" / "secrets.db"
    store = SecretStore(db_path, KeySource(key_file=key_file))
    store.set("acme", "DB_PASSWORD", VALUE, now=0.0)
    store.set("acme", "DB_PASSWORD", VALUE + "-v2", now=1.0)  # the old row's pages linger
    store.delete("acme", "DB_PASSWORD")
    store.set("acme", "OTHER", VALUE + "-v3", now=2.0)

    def all_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())

    assert VALUE.encode() not in all_bytes()  # db and -wal, mid-session
    store.close()
    assert VALUE.encode() not in all_bytes()
    assert key_file.read_bytes().strip() not in all_bytes()


def test_a_wrong_key_cannot_read(tmp_path: Path, store: SecretStore) -> None:
    store.set("acme", "TOKEN", VALUE, now=0.0)
    other = generate_key_file(tmp_path / "other" / "secrets.key")
    wrong = SecretStore(tmp_path / "state" / "secrets.db", KeySource(key_file=other))
    with pytest.raises(SecretsError, match="cannot be decrypted: wrong key") as info:
        wrong.get("acme", "TOKEN")
    assert VALUE not in str(info.value)
    wrong.close()


def test_a_ciphertext_moved_to_another_row_is_refused(tmp_path: Path, store: SecretStore) -> None:
    store.set("acme", "TOKEN", VALUE, now=0.0)
    store.set("other", "TOKEN", "theirs", now=0.0)
    db = sqlite3.connect(tmp_path / "state" / "secrets.db")
    db.execute(
        "UPDATE secrets SET token = (SELECT token FROM secrets WHERE tenant = 'acme')"
        " WHERE tenant = 'other'"
    )
    db.commit()
    db.close()
    with pytest.raises(SecretsError, match="belongs to another row"):
        store.get("other", "TOKEN")


def test_secret_values_do_not_show_themselves() -> None:
    value = SecretValue(VALUE)
    assert repr(value) == "SecretValue('***')"
    assert str(value) == "***"
    assert f"{value}" == "***"
    assert VALUE not in repr([value, {"k": value}])
    assert copy.deepcopy(value).reveal() == VALUE
    assert copy.copy(value) is value
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(value)
    assert not hasattr(value, "__dict__")


def test_the_store_repr_shows_nothing(store: SecretStore) -> None:
    store.set("acme", "TOKEN", VALUE, now=0.0)
    assert repr(store) == "SecretStore(...)"


@pytest.mark.parametrize("name", ["A", "_X", "DB_PASSWORD", "A" * 64, "X9"])
def test_valid_secret_names(name: str) -> None:
    assert validate_secret_name(name) == name


@pytest.mark.parametrize("name", ["", "9A", "lower", "A-B", "A B", "A" * 65, "É", "A\n"])
def test_invalid_secret_names_are_refused_by_set(store: SecretStore, name: str) -> None:
    with pytest.raises(ValueError, match="invalid secret name") as info:
        store.set("acme", name, VALUE, now=0.0)
    assert VALUE not in str(info.value)
    assert store.names("acme") == []


def test_bad_tenant_and_value_types_are_refused(store: SecretStore) -> None:
    with pytest.raises(ValueError, match="invalid tenant name 'Acme'"):
        store.set("Acme", "TOKEN", VALUE, now=0.0)
    with pytest.raises(TypeError, match="secret TOKEN must be a str, not bytes"):
        store.set("acme", "TOKEN", b"raw", now=0.0)  # type: ignore[arg-type]
