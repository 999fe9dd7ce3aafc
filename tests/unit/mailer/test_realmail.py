"""The parser on real mail: every message of the shared real-world corpus
(`<repo>/../shared/corpus/realmail`, 857 mails other parsers keep as test data; see its
README.md). They are never copied into this project: where the folder is absent (a clone without
../shared) these tests skip and say so.

Per mail: parse never raises, gives storable strings, takes less than MAX_SECONDS of CPU (CPU,
not wall-clock time: a loaded CI machine must not fail it) and allocates less than MAX_PEAK_MIB
at its peak (tracemalloc, on a second parse of the same mail). Mails larger than PARSE_FILE_FROM
also go through parse_file, the worker's path for large mail. The summary test prints the
slowest mails, the largest peaks and the defects by kind. Then a few known real-world shapes, by
path, must come out right."""

import collections
import re
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.unit.mailer.test_parsing import assert_clean_strings  # one definition of "storable"

from mailer.attachments import decide, detect_kind
from mailer.parsing import MAX_DEFECTS, ParsedMail, parse, parse_file

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO.parent / "shared" / "corpus" / "realmail"
MAX_SECONDS = 5.0
MAX_PEAK_MIB = 256
PARSE_FILE_FROM = 1 << 20  # bytes; the worker's threshold is 4 MiB, no corpus mail is that big
MIB = 1 << 20

needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(),
    reason=f"real-mail corpus not found at {CORPUS} (../shared/corpus/realmail)",
)


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix == ".eml")


@dataclass
class Measured:
    parsed: ParsedMail
    seconds: float  # CPU time of the parse (other processes on the machine do not count)
    wall: float  # wall-clock time of the same parse
    peak: int  # bytes allocated by Python at the peak of a second parse, under tracemalloc


RESULTS: dict[str, Measured] = {}
_NUMBER = re.compile(r"(?<![-\w])\d+(?![-\w])")  # part 3 -> part N; utf-8 stays


def measure(path: Path) -> Measured:
    key = str(path.relative_to(CORPUS))
    if key in RESULTS:
        return RESULTS[key]
    raw = path.read_bytes()
    wall, cpu = time.perf_counter(), time.process_time()
    parsed = parse(raw)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    tracemalloc.start()
    try:
        parse(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    RESULTS[key] = Measured(parsed, cpu, wall, peak)
    return RESULTS[key]


@needs_corpus
def test_corpus_is_there():
    assert len(corpus_files()) >= 800, f"expected the 857 mails of {CORPUS}"


@needs_corpus
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_real_mail_parses_bounded(path, tmp_path):
    m = measure(path)
    assert isinstance(m.parsed, ParsedMail)
    assert len(m.parsed.defects) <= MAX_DEFECTS
    assert_clean_strings(m.parsed)
    assert m.seconds < MAX_SECONDS, f"{m.seconds:.2f} s"
    assert m.peak < MAX_PEAK_MIB * MIB, f"{m.peak / MIB:.0f} MiB"
    if path.stat().st_size >= PARSE_FILE_FROM:
        big, digest = parse_file(path, tmp_path, threshold=256 << 10)
        assert len(digest) == 64
        assert big.message_id == m.parsed.message_id
        assert [a.sha256 for a in big.attachments] == [a.sha256 for a in m.parsed.attachments]


@needs_corpus
def test_real_mail_summary(record_property, capsys):
    """Numbers for the report: the slowest mails, the largest peaks, defects by kind."""
    files = corpus_files()
    for path in files:
        measure(path)
    results = {str(p.relative_to(CORPUS)): RESULTS[str(p.relative_to(CORPUS))] for p in files}
    slowest = sorted(results.items(), key=lambda kv: kv[1].seconds, reverse=True)[:5]
    largest = sorted(results.items(), key=lambda kv: kv[1].peak, reverse=True)[:5]
    kinds = collections.Counter(
        re.sub(r"(?<![-\w])\d+(?![-\w])", "N", d)
        for m in results.values()
        for d in m.parsed.defects
    )
    total = sum(m.seconds for m in results.values())
    lines = [f"real mail: {len(results)} mails parsed in {total:.1f} s of CPU"]
    lines += [
        f"  slowest {m.seconds:6.3f} s CPU ({m.wall:.3f} s wall)  {name}" for name, m in slowest
    ]
    lines += [f"  peak {m.peak / MIB:7.1f} MiB  {name}" for name, m in largest]
    lines += [f"  {n:5d} x {kind}" for kind, n in kinds.most_common(25)]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    record_property("realmail_slowest_s", round(slowest[0][1].seconds, 3))
    record_property("realmail_peak_mib", round(largest[0][1].peak / MIB, 1))
    assert slowest[0][1].seconds < MAX_SECONDS
    assert largest[0][1].peak < MAX_PEAK_MIB * MIB


# --- known real-world shapes ---------------------------------------------------------------------
def known(relative: str) -> ParsedMail:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"{relative} not in {CORPUS}")
    return measure(path).parsed


@needs_corpus
def test_tnef_yields_the_inner_attachment():
    p = known("mimekit/UnitTests__TestData__tnef__rich-text.eml")
    by_name = {a.filename: a for a in p.attachments}
    assert "winmail.dat" in by_name  # kept
    jpg = by_name["kitten-playing-with-a-christmas-tree.jpg"]
    assert detect_kind(jpg.data) == "jpg"
    assert decide(jpg.filename, jpg.data, 10 * MIB).accepted


@needs_corpus
def test_calendar_invite_yields_a_calendar_attachment():
    p = known("thunderbird/calendar__test__browser__invitations__data__single-event.eml")
    (ics,) = p.attachments
    assert ics.filename == "invite.ics"
    assert decide(ics.filename, ics.data, 10 * MIB).kind == "calendar"


@needs_corpus
def test_shift_jis_declared_utf8_is_readable():
    p = known("thunderbird/mail__test__browser__message-reader__data__wronglyDeclaredShift_JIS.eml")
    assert p.text.startswith("メールを簡単に。")
    assert "\ufffd" not in p.text


@needs_corpus
def test_raw_cjk_body_without_a_usable_label_is_readable():
    p = known("php-mime/tests__mails__failure.eml")
    assert p.text.startswith("次の受信者またはグループへの配信に失敗しました")


@needs_corpus
def test_iso_8859_8_i_subject_is_hebrew():
    p = known("php-mime/tests__mails__issue149.eml")
    assert p.subject == "מענה 'אני לא נמצא': Invoice 02722027"


@needs_corpus
def test_raw_8bit_inside_an_encoded_word():
    p = known("zbateson/tests___data__emails__m2004.txt.eml")
    assert p.subject == "Die Hasen und die Frösche"


@needs_corpus
def test_display_name_that_is_an_address_yields_the_recipients():
    """`To: smith@gmail.com, Mikel@Lindsaar <raasdnil@gmail.com>, tom@gmail.com`: on the image's
    Python (3.11.2 with the CVE-2023-27043 fix) getaddresses returned nothing for the list."""
    p = known("mikel-mail/spec__fixtures__emails__plain_emails__raw_email_with_at_display_name.eml")
    assert p.recipients == ["smith@gmail.com", "raasdnil@gmail.com", "tom@gmail.com"]


@needs_corpus
def test_message_partial_is_kept():
    p = known("mimekit/UnitTests__TestData__partial__message-partial.0.eml")
    (part,) = p.attachments
    assert part.declared_type == "message/partial"
    assert part.data
    assert any(d.startswith("message/partial fragment 1 of 3") for d in p.defects)
