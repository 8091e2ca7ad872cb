"""The SQL that differs between key databases: types, DDL and catalogue queries.

A table is declared once, as a list of typed columns (`KEY_TABLE`); each dialect says how a
column type is spelled and how a table is wrapped, so adding a table (or a column) is one
edit, not four. Every statement that reads or writes rows is shared and uses `?` parameters.
Table names are validated identifiers, never input.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar

import attrs

from swimctl.core.usage import COUNTS
from swimctl.keys.records import (
    MAX_DESCRIPTION,
    MAX_EMAIL,
    MAX_OWNER,
    KeyStoreError,
)

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@attrs.frozen
class Column:
    """One column: `kind` is a portable type each dialect spells its own way."""

    name: str
    kind: str  # id | hash | short | name | text | time | flag | count | day | ref
    nullable: bool = True
    unique: bool = False
    default: str | None = None  # "true" for flags; portable literal


@attrs.frozen
class Table:
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()  # a composite key; an `id` column is its own

    def names(self) -> str:
        return ", ".join(c.name for c in self.columns)


KEY_TABLE = Table((
    Column("id", "id", nullable=False),
    Column("api_key", "hash", nullable=False, unique=True),
    Column("tier", "short", nullable=False),
    Column("owner_name", "name", nullable=False),
    Column("owner_email", "email"),
    Column("description", "text"),
    Column("expires_at", "time"),
    Column("created_at", "time", nullable=False),
    Column("last_used_at", "time"),
    Column("is_active", "flag", nullable=False, default="true"),
    Column("revoked_at", "time"),
))
# Added after the first tables were made: `keys migrate` adds it to an older table, and until
# then the store works without it (it only says *when* a key was revoked).
OPTIONAL_COLUMNS = ("revoked_at",)
# What every key table has, in this order: what lookups select.
KEY_COLUMNS = ", ".join(c.name for c in KEY_TABLE.columns if c.name not in OPTIONAL_COLUMNS)

# Per key and UTC day, beside the key table (`swim_api_usage`): counts a hub *adds* to
# (dialect.upsert_usage), so several hubs can write the same row. `key_id` is the key's id;
# there is no foreign key, so usage outlives nothing it describes and needs no ordering.
USAGE_TABLE = Table((
    Column("day", "day", nullable=False),
    Column("key_id", "ref", nullable=False),
    *(Column(name, "count", nullable=False, default="0") for name in COUNTS),
    Column("updated_at", "time"),
), primary_key=("day", "key_id"))
USAGE_COLUMNS = ", ".join(("day", "key_id", *COUNTS))

_WIDTHS = {"short": 16, "name": MAX_OWNER, "email": MAX_EMAIL, "text": MAX_DESCRIPTION}


@attrs.frozen
class ColumnInfo:
    data_type: str
    max_length: int | None
    nullable: bool


class Dialect:
    """SQL that differs between backends."""

    name: str = "generic"
    # How a hashed-key parameter is written in WHERE clauses (SQL Server casts, see there).
    key_param: str = "?"
    # Spelling of each portable type; `{n}` is the width of the text kinds.
    types: ClassVar[dict[str, str]] = {}
    true_literal = "1"

    def column_def(self, table: str, column: Column) -> str:
        width = _WIDTHS.get(column.kind)
        spelled = self.types[column.kind].format(n=width)
        parts = [column.name, spelled]
        if column.kind != "id":
            parts.append("NULL" if column.nullable else "NOT NULL")
        if column.unique:
            parts.append(self.unique_clause(table, column))
        if column.default is not None:
            literal = self.true_literal if column.default == "true" else column.default
            parts.append(self.default_clause(table, column, literal))
        return " ".join(p for p in parts if p)

    def unique_clause(self, table: str, column: Column) -> str:
        return "UNIQUE"

    def default_clause(self, table: str, column: Column, literal: str) -> str:
        return f"DEFAULT {literal}"

    def create_table(self, table: str, spec: Table = KEY_TABLE) -> str:
        body = ", ".join(self.column_def(table, c) for c in spec.columns)
        if spec.primary_key:
            body += f", CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(spec.primary_key)})"
        return self.wrap_create(table, body, spec)

    def upsert_usage(self, table: str) -> str:
        """Add one row's counts to the stored row of its (day, key_id), making it when there
        is none, in one atomic statement: concurrent writers (several hubs) never lose an
        addition and never collide on the insert. Parameters: day, key_id, the counts in
        `COUNTS` order, updated_at."""
        columns = ", ".join(("day", "key_id", *COUNTS, "updated_at"))
        marks = ", ".join("?" * (len(COUNTS) + 3))
        sums = ", ".join(f"{n} = {self.existing(table, n)} + {self.incoming(n)}"
                         for n in COUNTS)
        return (f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
                f"{self.on_conflict()} {sums}, updated_at = {self.incoming('updated_at')}")

    def on_conflict(self) -> str:
        return "ON CONFLICT (day, key_id) DO UPDATE SET"

    def existing(self, table: str, name: str) -> str:
        return f"{table}.{name}"

    def incoming(self, name: str) -> str:
        return f"excluded.{name}"

    def wrap_create(self, table: str, body: str, spec: Table) -> str:
        return f"CREATE TABLE IF NOT EXISTS {table} ({body})"

    def table_exists_sql(self) -> str:
        raise NotImplementedError

    def column_sql(self) -> str | None:
        """Query (table, column) -> (data_type, max_length, is_nullable); None: no widening."""
        return None

    def column_exists_sql(self) -> str:
        """Query (table, column) -> a row when the column exists."""
        sql = self.column_sql()
        assert sql is not None
        return sql

    def add_column_sql(self, table: str, name: str) -> str:
        column = next(c for c in KEY_TABLE.columns if c.name == name)
        return f"ALTER TABLE {table} ADD COLUMN {self.column_def(table, column)}"

    def widen_sql(self, table: str, column: ColumnInfo) -> str | None:
        return None

    def table_name(self, table: str) -> str:
        """The name as the catalogue stores it."""
        return table

    def param(self, value: Any) -> Any:
        return value


class SQLiteDialect(Dialect):
    """SQLite ignores VARCHAR widths, so an old narrow column never needs widening."""

    name = "sqlite"
    types: ClassVar[dict[str, str]] = {
             "id": "INTEGER PRIMARY KEY AUTOINCREMENT", "hash": "VARCHAR(64)",
             "short": "VARCHAR({n})", "name": "VARCHAR({n})", "email": "VARCHAR({n})",
             "text": "VARCHAR({n})", "time": "TIMESTAMP", "flag": "INTEGER",
             "count": "BIGINT", "day": "DATE", "ref": "INTEGER"}

    def table_exists_sql(self) -> str:
        return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def column_exists_sql(self) -> str:
        return "SELECT 1 FROM pragma_table_info(?) WHERE name = ?"


class NativeSQLiteDialect(SQLiteDialect):
    """The stdlib driver: datetimes go in as ISO text (its default adapters are deprecated)."""

    def param(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=" ")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value


class PostgreSQLDialect(Dialect):
    name = "postgresql"
    types: ClassVar[dict[str, str]] = {"id": "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
             "hash": "VARCHAR(64)", "short": "VARCHAR({n})", "name": "VARCHAR({n})",
             "email": "VARCHAR({n})", "text": "VARCHAR({n})", "time": "TIMESTAMP",
             "flag": "BOOLEAN", "count": "BIGINT", "day": "DATE", "ref": "INTEGER"}
    true_literal = "TRUE"

    def table_name(self, table: str) -> str:
        return table.lower()  # unquoted identifiers fold to lower case

    def table_exists_sql(self) -> str:
        return (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?"
        )

    def column_sql(self) -> str:
        return (
            "SELECT data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? AND column_name = ?"
        )

    def widen_sql(self, table: str, column: ColumnInfo) -> str:
        return f"ALTER TABLE {table} ALTER COLUMN api_key TYPE VARCHAR(64)"


class MariaDBDialect(Dialect):
    """MariaDB and MySQL. DATETIME (not TIMESTAMP) so the server never shifts time zones."""

    name = "mariadb"
    types: ClassVar[dict[str, str]] = {"id": "INT NOT NULL AUTO_INCREMENT PRIMARY KEY",
             "hash": "VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin",
             "short": "VARCHAR({n})", "name": "VARCHAR({n})", "email": "VARCHAR({n})",
             "text": "VARCHAR({n})", "time": "DATETIME", "flag": "TINYINT(1)",
             "count": "BIGINT", "day": "DATE", "ref": "INT"}

    def unique_clause(self, table: str, column: Column) -> str:
        return ""  # a named UNIQUE KEY after the columns (wrap_create)

    def on_conflict(self) -> str:
        return "ON DUPLICATE KEY UPDATE"

    def existing(self, table: str, name: str) -> str:
        return name

    def incoming(self, name: str) -> str:
        return f"VALUES({name})"

    def wrap_create(self, table: str, body: str, spec: Table) -> str:
        keys = "".join(f", UNIQUE KEY uq_{table}_{c.name} ({c.name})"
                       for c in spec.columns if c.unique)
        return (f"CREATE TABLE IF NOT EXISTS {table} ({body}{keys}) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")

    def table_exists_sql(self) -> str:
        return (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = ?"
        )

    def column_sql(self) -> str:
        return (
            "SELECT data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = ? AND column_name = ?"
        )

    def widen_sql(self, table: str, column: ColumnInfo) -> str:
        # MODIFY restates the whole column: keep its nullability; indexes are kept.
        null = "NULL" if column.nullable else "NOT NULL"
        return (
            f"ALTER TABLE {table} MODIFY api_key VARCHAR(64) "
            f"CHARACTER SET ascii COLLATE ascii_bin {null}"
        )


class SQLServerDialect(Dialect):
    """SQL Server / Azure SQL via ODBC Driver 18 or FreeTDS (use TDS_Version=7.4 for DATETIME2).

    pyodbc sends str as NVARCHAR; comparing that with a VARCHAR column converts the column and
    scans the index, so key parameters are cast to VARCHAR(64) for an index seek.
    """

    name = "mssql"
    key_param = "CAST(? AS VARCHAR(64))"
    types: ClassVar[dict[str, str]] = {
             "id": "INT IDENTITY(1,1) NOT NULL PRIMARY KEY", "hash": "VARCHAR(64)",
             "short": "VARCHAR({n})", "name": "NVARCHAR({n})", "email": "NVARCHAR({n})",
             "text": "NVARCHAR({n})", "time": "DATETIME2(0)", "flag": "BIT",
             "count": "BIGINT", "day": "DATE", "ref": "INT"}

    def unique_clause(self, table: str, column: Column) -> str:
        return f"CONSTRAINT uq_{table}_{column.name} UNIQUE"

    def default_clause(self, table: str, column: Column, literal: str) -> str:
        return f"CONSTRAINT df_{table}_{column.name} DEFAULT {literal}"

    def wrap_create(self, table: str, body: str, spec: Table) -> str:
        return f"IF OBJECT_ID(N'{table}', N'U') IS NULL CREATE TABLE {table} ({body})"

    def add_column_sql(self, table: str, name: str) -> str:
        column = next(c for c in KEY_TABLE.columns if c.name == name)
        return f"ALTER TABLE {table} ADD {self.column_def(table, column)}"

    def upsert_usage(self, table: str) -> str:
        """MERGE under HOLDLOCK: without it two sessions can both miss the row and both insert."""
        names = ("day", "key_id", *COUNTS, "updated_at")
        source = ", ".join(f"? AS {n}" for n in names)
        sums = ", ".join(f"t.{n} = t.{n} + s.{n}" for n in COUNTS)
        return (f"MERGE {table} WITH (HOLDLOCK) AS t USING (SELECT {source}) AS s "
                "ON t.day = s.day AND t.key_id = s.key_id "
                f"WHEN MATCHED THEN UPDATE SET {sums}, t.updated_at = s.updated_at "
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
                f"VALUES ({', '.join('s.' + n for n in names)});")

    def table_exists_sql(self) -> str:
        return (
            "SELECT 1 FROM INFORMATION_SCHEMA.TABLES "
            "WHERE TABLE_SCHEMA = SCHEMA_NAME() AND TABLE_NAME = ?"
        )

    def column_sql(self) -> str:
        return (
            "SELECT DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE "
            "FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = SCHEMA_NAME() "
            "AND TABLE_NAME = ? AND COLUMN_NAME = ?"
        )

    def widen_sql(self, table: str, column: ColumnInfo) -> str | None:
        # Growing a (n)(var)char is allowed even under a UNIQUE index, provided the type and
        # nullability stay as they are; any other type we leave to the DBA.
        kind = column.data_type.lower()
        if kind not in {"varchar", "nvarchar", "char", "nchar"}:
            return None
        null = "NULL" if column.nullable else "NOT NULL"
        return f"ALTER TABLE {table} ALTER COLUMN api_key {kind.upper()}(64) {null}"


DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SQLiteDialect,
    "postgresql": PostgreSQLDialect,
    "mariadb": MariaDBDialect,
    "mssql": SQLServerDialect,
}


def detect_dialect(dbms_name: str | None, connection_string: str = "") -> Dialect:
    """Pick the dialect from SQL_DBMS_NAME, else from the DRIVER= of the connection string."""
    for text in (dbms_name or "", driver_of(connection_string)):
        low = text.lower()
        if "sql server" in low or "freetds" in low or "tds" in low.split():
            return SQLServerDialect()
        if "postgres" in low or "psql" in low:
            return PostgreSQLDialect()
        if "mariadb" in low or "mysql" in low:
            return MariaDBDialect()
        if "sqlite" in low:
            return SQLiteDialect()
    raise KeyStoreError(
        f"unsupported database {dbms_name or '(unknown)'!r}: "
        "use SQLite, PostgreSQL, MariaDB/MySQL or SQL Server"
    )


def driver_of(connection_string: str) -> str:
    match = re.search(r"(?i)(?:^|;)\s*driver\s*=\s*(\{[^}]*\}|[^;]*)", connection_string)
    return match.group(1).strip("{} ") if match else ""
