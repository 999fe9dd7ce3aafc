"""stackcheck.evidence.catalogue: parsing docs/REQUIREMENTS.md and checking cited IDs."""

from pathlib import Path

import pytest

from stackcheck.evidence.catalogue import Catalogue, Requirement

pytestmark = pytest.mark.unit

REQUIREMENTS = Path(__file__).resolve().parents[4] / "docs" / "REQUIREMENTS.md"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(REQUIREMENTS)


def _table_rows(text: str) -> list[str]:
    """The ID rows of the markdown tables, counted independently of the parser's regex."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith(("|---", "| ID "))
    ]


SAMPLE_IDS = ["T1", "T10", "E4", "SLA-AV1", "SLA-DB2", "SLA-H1", "X2", "H5", "S9", "B6", "M7"]
SAMPLE_IDS += ["A6", "O2", "D5"]


@pytest.mark.parametrize("rid", SAMPLE_IDS)
def test_real_catalogue_has_id(catalogue, rid):
    assert rid in catalogue
    assert catalogue[rid].id == rid
    assert catalogue[rid].text


def test_real_catalogue_counts_every_table_row(catalogue):
    rows = _table_rows(REQUIREMENTS.read_text(encoding="utf-8"))
    assert len(rows) == 84  # docs/REQUIREMENTS.md as of this test; keep in step
    assert len(catalogue) == len(rows)
    assert len(catalogue.ids()) == len(rows)


def test_real_catalogue_keeps_document_order(catalogue):
    ids = catalogue.ids()
    assert ids[:3] == ["T1", "T2", "T3"]
    assert ids[-1] == "SC3"
    assert ids.index("T10") < ids.index("E1") < ids.index("SLA-AV1") < ids.index("X1")


@pytest.mark.parametrize(
    ("rid", "group_start"),
    [
        ("T1", "T — one-line infrastructure checks"),
        ("E4", "E — end-to-end flows"),
        ("SLA-DB2", "SLA — measurable targets"),
        ("X2", "X — exit codes"),
        ("H5", "H — service hardening"),
        ("S9", "S — security"),
        ("B6", "B — backup and disaster recovery"),
        ("M7", "M — monitoring and logs"),
        ("A6", "A — attachments"),
        ("O2", "O — Ollama"),
        ("D5", "D — documents"),
    ],
)
def test_real_catalogue_group_headings(catalogue, rid, group_start):
    assert catalogue[rid].group.startswith(group_start)


def test_row_text_is_trimmed_and_keeps_inner_markup(catalogue):
    assert catalogue["T7"].text == (
        "the Mailpit API answers `/api/v1/messages` with a numeric `total`"
    )


def test_parse_small_text():
    cat = Catalogue.parse(
        "# title\n\n## Alpha\n| ID | requirement |\n|---|---|\n| A1 | first |\n"
        "| AB-CD12 |  second, padded  |\n\n## Beta\n| B7 | third |\n"
    )
    assert list(cat) == [
        Requirement("A1", "Alpha", "first"),
        Requirement("AB-CD12", "Alpha", "second, padded"),
        Requirement("B7", "Beta", "third"),
    ]


def test_rows_before_any_heading_have_empty_group():
    cat = Catalogue.parse("| Q1 | no heading yet |\n")
    assert cat["Q1"].group == ""


def test_text_without_rows_raises():
    with pytest.raises(ValueError, match="no"):
        Catalogue.parse("# Requirements\n\n## Group\n| ID | requirement |\n|---|---|\n")


def test_empty_text_raises():
    with pytest.raises(ValueError):
        Catalogue.parse("")


def test_duplicate_id_raises_naming_it():
    text = "## G\n| A1 | one |\n| B2 | two |\n| A1 | again |\n"
    with pytest.raises(ValueError, match="A1") as info:
        Catalogue.parse(text)
    assert "B2" not in str(info.value)
