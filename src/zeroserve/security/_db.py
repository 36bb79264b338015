"""One way to open the security stores' SQLite files, and one write transaction helper.

Each store owns one connection guarded by a lock, like the registry: the gateway is one event
loop (with `to_thread` callers), the CLI one thread. `BEGIN IMMEDIATE` takes SQLite's write lock
up front, so a check-then-write (bootstrap, audit append) is also serialised against another
process (the CLI) writing the same file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["open_db", "write_transaction"]


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
