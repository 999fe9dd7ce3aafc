"""Compare a restored database with its source (B6): the set of tables, each table's row count,
and a checksum of each table's content (md5 over the sorted md5s of its rows' text form, so the
physical row order does not matter and no table is held in memory as text)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# One query, no functions created: query_to_xml runs the per-table statements.
TABLE_STATS_SQL = r"""
SELECT n.nspname, c.relname,
  (xpath('/row/n/text()', query_to_xml(format(
     'SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text,
  (xpath('/row/h/text()', query_to_xml(format(
     'SELECT md5(coalesce(string_agg(r, '''' ORDER BY r), '''')) AS h '
     'FROM (SELECT md5(t::text) AS r FROM ONLY %I.%I AS t) AS s', n.nspname, c.relname),
     false, true, '')))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'
ORDER BY 1, 2
"""

_TABLE_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (?P<schema>\S+) (?P<table>\S+) ", re.MULTILINE)
_DBNAME = re.compile(r"^;\s*dbname:\s*(?P<db>\S+)\s*$", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class TableStats:
    rows: int
    digest: str


Stats = dict[str, TableStats]  # "schema.table" -> stats


def parse_stats(rows: list[list[str]]) -> Stats:
    return {f"{schema}.{table}": TableStats(int(n), h) for schema, table, n, h in rows}


def dump_tables(listing: str) -> set[str]:
    """Tables with data in a dump, from `pg_restore --list`."""
    return {f"{m['schema']}.{m['table']}" for m in _TABLE_DATA.finditer(listing)}


def dump_database_name(listing: str) -> str | None:
    m = _DBNAME.search(listing)
    return m["db"] if m else None


@dataclass
class Comparison:
    equal: list[str]
    missing: list[str]  # in the reference, not in the restored database
    extra: list[str]  # in the restored database only
    differ: dict[str, str]  # table -> what differs

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differ)


def compare(reference: Stats, restored: Stats) -> Comparison:
    differ = {}
    for name in sorted(reference.keys() & restored.keys()):
        a, b = reference[name], restored[name]
        if a.rows != b.rows:
            differ[name] = f"rows {a.rows} in the source, {b.rows} restored"
        elif a.digest != b.digest:
            differ[name] = f"content differs ({a.rows} rows each)"
    return Comparison(
        equal=sorted(n for n in reference.keys() & restored.keys() if n not in differ),
        missing=sorted(reference.keys() - restored.keys()),
        extra=sorted(restored.keys() - reference.keys()),
        differ=differ,
    )
