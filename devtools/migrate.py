"""Applies the numbered SQL files in migrations/ once each, in order, recorded in schema_migrations.

Not yoyo-migrations: its lock is a row in a table, so a run killed while holding it (SIGKILL, a cancelled CI
job, a Lambda timeout) locks every later run out until someone runs `yoyo break-lock`; and it commits a
migration's DDL on one connection before recording it on another, so a run killed in between leaves a schema
the next run tries to create again. Here each file and its record commit in one transaction under
`pg_advisory_xact_lock`, which Postgres releases with the transaction or the dead connection, and an edited
file that was already applied is refused.

Run against the direct (non-pooled) URL: the transaction-level lock would survive PgBouncer's transaction
mode, but DDL belongs on a direct connection.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# One application-wide key for pg_advisory_xact_lock: the bytes of "AgPayMig".
_LOCK_KEY = 0x4167_5061_794D_6967

_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<title>\w+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """Base of the errors that stop a migration run."""


class BadMigrationFile(MigrationError):
    """A file in the migrations folder is misnamed, or two files share a version."""


class ChecksumMismatch(MigrationError):
    """A migration already applied has been edited since; write a new migration instead."""

    def __init__(self, name: str, *, recorded: str, current: str) -> None:
        super().__init__(f"{name} was applied with checksum {recorded} but the file now has {current}")
        self.name = name
        self.recorded = recorded
        self.current = current


class MigrationFailed(MigrationError):
    """A migration's SQL failed; its transaction was rolled back and nothing of it was applied."""

    def __init__(self, name: str) -> None:
        super().__init__(f"migration {name} failed and was rolled back")
        self.name = name


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def read_migrations(directory: Path | None = None) -> list[Migration]:
    """The `NNNN_title.sql` files of `directory`, in version order; other files are ignored."""
    directory = directory or MIGRATIONS_DIR
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise BadMigrationFile(f"{path.name}: migration files are named like 0001_title.sql")
        version = int(match["version"])
        if version in migrations:
            raise BadMigrationFile(f"{path.name} and {migrations[version].name}.sql share version {version}")
        # Normalised line endings: a checkout with CRLF must not look like an edited migration.
        sql = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        migrations[version] = Migration(version=version, name=path.stem, sql=sql)
    return [migrations[version] for version in sorted(migrations)]


def apply_migrations(database_url: str, directory: Path | None = None) -> list[str]:
    """Apply each migration not yet recorded, each in its own transaction; return the names this call applied.

    Concurrent callers are serialised file by file: each waits for the lock, then skips what another applied.
    """
    applied: list[str] = []
    with _connect(database_url) as conn:
        for migration in read_migrations(directory):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(_CREATE_TABLE)
                recorded = _recorded_checksums(conn)
                if migration.version in recorded:
                    _check_unchanged(migration, recorded[migration.version])
                    continue
                try:
                    # Without parameters psycopg sends one simple query, which may hold many statements.
                    conn.execute(migration.sql)
                except psycopg.Error as exc:
                    raise MigrationFailed(migration.name) from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            applied.append(migration.name)
    return applied


def pending_migrations(database_url: str, directory: Path | None = None) -> list[str]:
    """The names of the migrations `apply_migrations` would apply now, in order."""
    migrations = read_migrations(directory)
    with _connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        recorded = _recorded_checksums(conn) if exists and exists[0] else {}
    for migration in migrations:
        if migration.version in recorded:
            _check_unchanged(migration, recorded[migration.version])
    return [migration.name for migration in migrations if migration.version not in recorded]


def _connect(database_url: str) -> psycopg.Connection:
    # Accept the SQLAlchemy/yoyo spelling too; libpq itself takes postgresql:// and postgres://.
    url = re.sub(r"^postgres(ql)?\+psycopg\d?://", "postgresql://", database_url)
    return psycopg.connect(url, autocommit=True)


def _recorded_checksums(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def _check_unchanged(migration: Migration, recorded: str) -> None:
    if recorded != migration.checksum:
        raise ChecksumMismatch(migration.name, recorded=recorded, current=migration.checksum)
