"""backup.verify: what a restore is compared by (tables, row counts, content checksums), and what
is read from `pg_restore --list`."""

import pytest

from backup.verify import TableStats, compare, dump_database_name, dump_tables, parse_stats

pytestmark = pytest.mark.unit

LISTING = """;
; Archive created at 2025-01-31 02:30:04 UTC
;     dbname: praxis
;     TOC Entries: 16
;     Dumped from database version: 15.10 (Debian 15.10-0+deb12u1)
;
; Selected TOC Entries:
;
6; 2615 16402 SCHEMA - app praxis
217; 1259 16403 TABLE app notes praxis
216; 1259 16391 TABLE public emails praxis
3354; 0 16403 TABLE DATA app notes praxis
3353; 0 16391 TABLE DATA public emails praxis
3362; 0 0 SEQUENCE SET public emails_id_seq praxis
"""


def test_listing_gives_source_database_and_tables_with_data():
    assert dump_database_name(LISTING) == "praxis"
    assert dump_tables(LISTING) == {"app.notes", "public.emails"}


def test_parse_stats():
    stats = parse_stats([["public", "emails", "3", "abc"], ["app", "notes", "0", "d41d"]])
    assert stats == {"public.emails": TableStats(3, "abc"), "app.notes": TableStats(0, "d41d")}


def test_compare_finds_every_kind_of_difference():
    source = {
        "public.a": TableStats(3, "h1"),
        "public.b": TableStats(5, "h2"),
        "public.c": TableStats(5, "h3"),
        "public.gone": TableStats(1, "h4"),
    }
    restored = {
        "public.a": TableStats(3, "h1"),
        "public.b": TableStats(4, "hx"),
        "public.c": TableStats(5, "hy"),
        "public.new": TableStats(0, "h5"),
    }
    cmp = compare(source, restored)
    assert not cmp.ok
    assert cmp.equal == ["public.a"]
    assert cmp.missing == ["public.gone"] and cmp.extra == ["public.new"]
    assert cmp.differ == {
        "public.b": "rows 5 in the source, 4 restored",
        "public.c": "content differs (5 rows each)",
    }
    assert compare(source, dict(source)).ok
