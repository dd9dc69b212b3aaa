"""What a restore test compares: a profile of the source database, the same facts read from the
restored one, and a pure verdict.

The source profile is captured when the restore test starts (from the reader endpoint, cheap
queries only) and travels in the workflow state; the restored cluster is checked against it:

* the database exists;
* every schema of the source exists, and every table of the source (up to MAX_TABLES);
* every key table that has rows in the source has rows in the restore (counted up to COUNT_CAP);
* pg_database_size of the restore is within [ratio_min, ratio_max] of the source's.

Key tables are the configured ones (RESTORE_KEY_TABLES), else the DEFAULT_KEY_TABLES largest
tables of the source. Identifiers only go through psycopg2.sql.Identifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from hapg import errors
from hapg.names import DB_SCHEMA
from hapg.pg import query, query_one

COUNT_CAP = 1_000_000  # rows counted per key table in the restore: bounded work on a cold volume
MAX_TABLES = 2000  # tables carried in the workflow state (256 KB limit); the rest is reported
DEFAULT_KEY_TABLES = 10
OWN_SCHEMAS = (DB_SCHEMA,)  # our bookkeeping (heartbeat, blocked roles): never a default key table
LIST_SHOWN = 5

_SCHEMAS = """
SELECT nspname FROM pg_namespace
 WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%%'
 ORDER BY 1
"""
_TABLES = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'
 ORDER BY 1, 2
 LIMIT %(limit)s
"""
_LARGEST = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'
   AND n.nspname <> ALL (%(skip)s)
 ORDER BY pg_total_relation_size(c.oid) DESC, 1, 2
 LIMIT %(limit)s
"""
_PRESENT = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS want(s, t) ON want.s = n.nspname AND want.t = c.relname
 WHERE c.relkind IN ('r', 'p')
"""
_SIZE = "SELECT pg_database_size(current_database())"
_DB_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %(name)s"
_COUNT = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %(cap)s) AS bounded")

Table = tuple[str, str]


def display(table: Table) -> str:
    return f"{table[0]}.{table[1]}"


@dataclass(frozen=True)
class SourceProfile:
    dbname: str
    size_bytes: int
    schemas: tuple[str, ...]
    tables: tuple[Table, ...]
    truncated: bool  # the source has more than MAX_TABLES tables; the first MAX_TABLES are checked
    key_tables: tuple[tuple[str, str, bool], ...]  # (schema, table, has rows in the source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dbname": self.dbname,
            "size_bytes": self.size_bytes,
            "schemas": list(self.schemas),
            "tables": [list(t) for t in self.tables],
            "truncated": self.truncated,
            "key_tables": [list(k) for k in self.key_tables],
        }

    @classmethod
    def from_dict(cls, data: Any) -> SourceProfile:
        try:
            return cls(
                dbname=str(data["dbname"]),
                size_bytes=int(data["size_bytes"]),
                schemas=tuple(str(s) for s in data["schemas"]),
                tables=tuple((str(s), str(t)) for s, t in data["tables"]),
                truncated=bool(data["truncated"]),
                key_tables=tuple((str(s), str(t), bool(r)) for s, t, r in data["key_tables"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.InvalidInput(f"source profile is malformed: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class RestoredProfile:
    dbname: str
    exists: bool
    size_bytes: int = 0
    schemas: tuple[str, ...] = ()
    present: frozenset[Table] = frozenset()  # the source's tables that exist in the restore
    key_rows: tuple[tuple[str, str, int | None], ...] = ()  # None: the table is missing


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    failures: tuple[str, ...]
    figures: dict[str, Any]


# ---- capture (I/O) -----------------------------------------------------------------------------
def capture_source(conn, dbname: str, key_tables: tuple[Table, ...]) -> SourceProfile:
    """The source profile, on a session to the source's `dbname` (the reader is fine)."""
    schemas = tuple(r[0] for r in query(conn, _SCHEMAS))
    rows = query(conn, _TABLES, {"limit": MAX_TABLES + 1})
    tables = tuple((s, t) for s, t in rows[:MAX_TABLES])
    if key_tables:
        known = {(s, t) for s, t in query(conn, _PRESENT, _arrays(key_tables))}
        absent = [display(k) for k in key_tables if k not in known]
        if absent:
            raise errors.ConfigError(
                f"key table(s) {', '.join(absent)} (RESTORE_KEY_TABLES) do not exist in the source"
            )
        keys = key_tables
    else:
        largest = query(conn, _LARGEST, {"skip": list(OWN_SCHEMAS), "limit": DEFAULT_KEY_TABLES})
        keys = tuple((s, t) for s, t in largest)
    key_rows = tuple((s, t, _count(conn, (s, t), 1) > 0) for s, t in keys)
    size = int(query_one(conn, _SIZE)[0])
    return SourceProfile(dbname, size, schemas, tables, len(rows) > MAX_TABLES, key_rows)


def database_exists(conn, dbname: str) -> bool:
    """On a session to any database of the server (e.g. `postgres`)."""
    return query_one(conn, _DB_EXISTS, {"name": dbname}) is not None


def capture_restored(conn, source: SourceProfile) -> RestoredProfile:
    """The restored side, on a session to the restored `source.dbname`."""
    schemas = tuple(r[0] for r in query(conn, _SCHEMAS))
    present = frozenset((s, t) for s, t in query(conn, _PRESENT, _arrays(source.tables)))
    keys = [(s, t) for s, t, _ in source.key_tables]
    key_present = {(s, t) for s, t in query(conn, _PRESENT, _arrays(keys))} if keys else set()
    key_rows = tuple((s, t, _count(conn, (s, t), COUNT_CAP) if (s, t) in key_present else None) for s, t in keys)
    size = int(query_one(conn, _SIZE)[0])
    return RestoredProfile(source.dbname, True, size, schemas, present, key_rows)


def _arrays(tables: Any) -> dict[str, list[str]]:
    tables = list(tables)
    return {"schemas": [s for s, _ in tables], "tables": [t for _, t in tables]}


def _count(conn, table: Table, cap: int) -> int:
    return int(query_one(conn, _COUNT.format(table=sql.Identifier(*table)), {"cap": cap})[0])


# ---- verdict (pure) ----------------------------------------------------------------------------
def size_text(size: int) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:.1f} GB"
    return f"{size / 1024**2:.1f} MB"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:LIST_SHOWN])
    return shown + (f" and {len(items) - LIST_SHOWN} more" if len(items) > LIST_SHOWN else "")


def compare(source: SourceProfile, restored: RestoredProfile, ratio_min: float, ratio_max: float) -> Verdict:
    """Does the restore hold what the source held? One sentence per failed check, in order."""
    db = source.dbname
    if not restored.exists:
        reason = f"database {db} does not exist in the restored cluster"
        return Verdict(False, reason, (reason,), {"database": False})
    failures: list[str] = []
    missing_schemas = [s for s in source.schemas if s not in set(restored.schemas)]
    if len(missing_schemas) == 1:
        failures.append(f"schema {missing_schemas[0]} is missing from the restored {db}")
    elif missing_schemas:
        failures.append(
            f"{len(missing_schemas)} schemas are missing from the restored {db}: {_listed(missing_schemas)}"
        )
    gone = set(missing_schemas)
    missing = [display(t) for t in source.tables if t not in restored.present and t[0] not in gone]
    # a key table beyond the MAX_TABLES carried in the state is still checked
    missing += [
        display((s, t))
        for s, t, rows in restored.key_rows
        if rows is None and s not in gone and display((s, t)) not in missing
    ]
    if len(missing) == 1:
        failures.append(f"table {missing[0]} is missing from the restored {db}")
    elif missing:
        failures.append(f"{len(missing)} tables are missing from the restored {db}: {_listed(missing)}")
    source_rows = {(s, t): has for s, t, has in source.key_tables}
    empty = [display((s, t)) for s, t, rows in restored.key_rows if rows == 0 and source_rows.get((s, t))]
    if len(empty) == 1:
        failures.append(f"key table {empty[0]} is empty in the restore but has rows in the source")
    elif empty:
        failures.append(
            f"{len(empty)} key tables are empty in the restore but have rows in the source: {_listed(empty)}"
        )
    ratio = restored.size_bytes / source.size_bytes if source.size_bytes else 0.0
    if not ratio_min <= ratio <= ratio_max:
        failures.append(
            f"the restored {db} is {size_text(restored.size_bytes)} against {size_text(source.size_bytes)} "
            f"in the source (ratio {ratio:.2f}, expected {ratio_min:.2f} to {ratio_max:.2f})"
        )
    with_rows = [r for _, _, r in restored.key_rows if r]
    figures = {
        "database": True,
        "schemas": len(source.schemas),
        "tables_checked": len(source.tables),
        "tables_truncated": source.truncated,
        "tables_missing": len(missing),
        "key_tables": {display((s, t)): rows for s, t, rows in restored.key_rows},
        "size_bytes": restored.size_bytes,
        "source_size_bytes": source.size_bytes,
        "size_ratio": round(ratio, 3),
    }
    if failures:
        return Verdict(False, "; ".join(failures), tuple(failures), figures)
    more = f" (first {len(source.tables)} checked)" if source.truncated else ""
    reason = (
        f"restore verified: {db} has the source's {len(source.schemas)} schemas and {len(source.tables)} "
        f"tables{more}, {len(with_rows)} of {len(restored.key_rows)} key tables have rows, "
        f"{size_text(restored.size_bytes)} ({ratio:.2f} of the source)"
    )
    return Verdict(True, reason, (), figures)
