"""stackcheck.evidence.report and stackcheck.evidence.plots: the page a reviewer reads (issue 14).

Rendered from evidence made here (every kind of plot, two runs for a trend and a regression);
the browser tests open it in headless Chromium (Debian's `chromium`, installed by ./run setup)
and check that nothing overflows at 1280 px, every plot is there, the console stays clean and
it prints to A4. The screenshot of the reports/ evidence (or of this one where there is none
yet) goes to reports/sla-evidence.png.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackcheck.evidence import history, report
from stackcheck.evidence.catalogue import Catalogue
from stackcheck.evidence.recorder import Evidence
from stackcheck.evidence.thresholds import load

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[4]
CATALOGUE = Catalogue.load(ROOT / "docs" / "REQUIREMENTS.md")
THRESHOLDS = load(ROOT / "fixtures" / "sla.yml", CATALOGUE)
LONG = "tests/recovery/test_stack_recovery.py::test_every_service_sigkilled_comes_back_healthy"


def make_run(out: Path, k: int, *, p1: float, complete: bool = True, fail_s3: bool = False):
    ev = Evidence(CATALOGUE, THRESHOLDS)
    lat = [p1 * f for f in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
    ev.samples("SLA-P1", lat, unit="s", how="submission to committed row", test="t::latency")
    ev.measure("SLA-P1", max(lat), how="p95 " + "of sequential mails " * 6, test="t::latency")
    ev.samples("E4", [1 + i * 0.7 for i in range(50)], kind="timeline", test="t::burst")
    ev.measure("E4", 36.0, how="50 mails", test="t::burst")
    ev.samples("SLA-R2", {"postgres": 7.5, "redis": 2.0, "praxis-mailer": 4.0}, test=LONG)
    ev.measure("SLA-R2", 7.5, unit="s", how="worst", test=LONG)
    ev.measure("SLA-AV1", "99.98 % over 2.1 h", how="x", test="t::av", verdict="provisional")
    for rid in ("SLA-P1", "E4", "SLA-R2", "SLA-AV1", "T1", "S1", "B1", "M1", "RW1"):
        ev.outcome(rid, {"SLA-R2": LONG}.get(rid, f"t::{rid}"), "passed")
    ev.outcome("S3", "t::S3", "failed" if fail_s3 else "passed")
    ev.context["<ctx>"] = "<script>alert(1)</script>"
    started = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=k)
    run_dir = history.new_run_dir(out, started, "abc1234")
    data = ev.as_dict()
    data["run"] = {
        "id": run_dir.name,
        "started": history.iso(started),
        "finished": history.iso(started + timedelta(minutes=17)),
        "complete": complete,
        "commit": "abc1234",
        "summary": data["summary"],
        "context": {"selection": "tests" if complete else "-m perf"},
    }
    return history.publish(out, data, run_dir=run_dir, render=report.render)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """Two runs: a complete one, then a partial one whose SLA-P1 regressed and S3 fails."""
    out = tmp_path_factory.mktemp("report")
    make_run(out, 0, p1=1.0)
    make_run(out, 1, p1=2.0, complete=False, fail_s3=True)
    return out


def page(rendered: Path) -> str:
    return (rendered / "sla-evidence.html").read_text(encoding="utf-8")


# --- the page's content -------------------------------------------------------------------------
def test_banner_comes_first_and_names_what_fails(rendered):
    text = page(rendered)
    body = text[text.index("<body>") :]
    assert body.index("class='banner fail'") < body.index("<table")
    assert "FAIL: 1 of 78 requirements fail" in text if len(CATALOGUE) == 78 else True
    assert re.search(r"FAIL: 1 of \d+ requirements fail", text)
    assert "href='#req-S3'>S3</a>" in text
    assert "complete run 12-01 00:00 abc1234 + 1 newer partial run" in text


def test_what_fails_listed_under_the_banner_with_its_test_and_run(rendered):
    text = page(rendered)
    part = text[text.index("<h2 class=reg>What fails</h2>") :]
    part = part[: part.index("</ul>")]
    assert "href='#req-S3'><b>S3</b></a>" in part
    assert "<code>t::S3</code> failed" in part
    assert "12-01 01:00 abc1234" in part  # the partial run that failed it
    assert text.index("What fails") < text.index("id='area-availability'")


def test_one_section_per_area_with_counts(rendered):
    text = page(rendered)
    for area in ("Availability", "Performance", "Recovery", "Security", "Backup", "Monitoring"):
        assert f">{area} <small>" in text
    assert ">Mail flows <small>" in text
    sec = text[text.index("id='area-security'") :]
    assert "<span class=n-fail>1 fail</span>" in sec[: sec.index("</h2>")]


@pytest.mark.parametrize(
    ("rid", "area"),
    [
        ("T1", "availability"),
        ("SLA-AV3", "availability"),
        ("SLA-H1", "availability"),
        ("H2", "availability"),
        ("SLA-P1", "performance"),
        ("SLA-DB2", "performance"),
        ("SLA-D1", "performance"),
        ("O2", "performance"),
        ("SLA-R4", "recovery"),
        ("E3", "recovery"),
        ("X1", "recovery"),
        ("S10", "security"),
        ("B6", "backup"),
        ("M7", "monitoring"),
        ("E5", "monitoring"),
        ("E1", "mail flows"),
        ("E4", "mail flows"),
        ("A6", "mail flows"),
        ("RW3", "mail flows"),
        ("D4", "documents"),
        ("SC1", "the suite"),
    ],
)
def test_areas_by_id_prefix(rid, area):
    assert report.area_of(rid) == area


def test_every_catalogue_id_has_an_area():
    assert all(report.area_of(r.id) != "other" for r in CATALOGUE)


def test_values_labelled_with_their_run_and_method_folded(rendered):
    text = page(rendered)
    row = text[text.index("id='req-E4'") :]
    row = row[: row.index("</tr>")]
    assert "<b>36 s</b> ✓" in row
    assert "12-01 01:00 abc1234" in row  # the newer partial run measured it again
    assert "<details><summary>method, 1 test</summary>" in row


def test_regression_against_the_previous_run_flagged(rendered):
    text = page(rendered)
    assert "Regressions against the previous run" in text
    assert "SLA-P1</a>: 1 → 2 s (+100% worse)" in text
    row = text[text.index("id='req-SLA-P1'") :]
    assert "▲ regression" in row[: row.index("</tr>")]


def test_every_plot_is_inline_svg(rendered):
    text = page(rendered)
    for fid in ("latency", "burst-1", "recovery", "trends"):
        fig = text[text.index(f"<figure id='plot-{fid}'") :]
        assert fig[fig.index(">") + 1 :].startswith("<svg"), fid
    assert "Not plotted" not in text
    assert "redis (SLA-R2)" in text  # recovery per service from the labelled samples
    # ids are unique on the page although every SVG numbers its own
    ids = re.findall(r'id="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_no_script_and_everything_escaped(rendered):
    text = page(rendered)
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert not re.search(r"(src|href)=[\"']?https?:", text)  # no external resource


def test_missing_plots_are_named():
    ev = Evidence(CATALOGUE, THRESHOLDS)
    ev.outcome("T1", "t::a", "passed")
    text = report.render(ev.as_dict(), [])
    assert "Not plotted: latency distribution (SLA-P1/P2 record no samples)" in text
    assert "<figure" not in text
    assert "PASS: none of" in text


def test_provisional_banner():
    ev = Evidence(CATALOGUE, THRESHOLDS)
    ev.measure("SLA-AV1", "99.9 % over 2 h", how="x", test="t", verdict="provisional")
    ev.outcome("SLA-AV1", "t", "passed")
    text = report.render(ev.as_dict(), [])
    assert "PASS SO FAR: none of" in text
    assert "Provisional (measured over less than the window" in text
    assert "href='#req-SLA-AV1'>SLA-AV1</a>" in text


def test_series_verdict_flip_is_a_regression():
    reqs = {"T9": {"bound": "max", "target_value": 80.0, "unit": "% CPU"}}
    hist = [
        {"kind": "run", "run": "a", "finished": "1"},
        {"kind": "run", "run": "b", "finished": "2"},
        {"kind": "measurement", "run": "a", "id": "T9", "value": 79.0, "verdict": "pass"},
        {"kind": "measurement", "run": "b", "id": "T9", "value": 81.0, "verdict": "fail"},
    ]
    (s,) = report.series_from_history(hist, reqs)
    assert s["regressed"] and s["why"] == "passed in the previous run, fails now"


def test_series_improvement_and_small_noise_are_not_regressions():
    reqs = {"AV": {"bound": "min", "target_value": 99.5, "unit": "%"}}
    hist = [
        {"kind": "measurement", "run": "a", "id": "AV", "value": 99.6, "verdict": "pass"},
        {"kind": "measurement", "run": "b", "id": "AV", "value": 99.55, "verdict": "pass"},
        {"kind": "measurement", "run": "c", "id": "AV", "value": "text"},
    ]
    (s,) = report.series_from_history(hist, reqs)
    assert s["points"] == [("a", 99.6), ("b", 99.55)] or [v for _, v in s["points"]] == [
        99.6,
        99.55,
    ]
    assert not s["regressed"]


def test_series_change_small_against_the_target_is_noise():
    reqs = {"T10": {"bound": "max", "target_value": 100.0, "unit": "MB"}}
    hist = [
        {"kind": "measurement", "run": "a", "id": "T10", "value": 2.2, "verdict": "pass"},
        {"kind": "measurement", "run": "b", "id": "T10", "value": 7.0, "verdict": "pass"},
    ]
    assert not report.series_from_history(hist, reqs)[0]["regressed"]
    hist[1]["value"] = 12.0  # 9.8 MB worse: more than 5 % of the limit
    assert report.series_from_history(hist, reqs)[0]["regressed"]


def test_run_label():
    assert report.run_label("20261202T100344Z-b6a7376") == "12-02 10:03 b6a7376"
    assert report.run_label("odd") == "odd"


# --- in a browser -------------------------------------------------------------------------------
PROBE = """<script>
window.__errors = [];
addEventListener('error', e => __errors.push(String(e.message || e.target && e.target.src)), true);
const _ce = console.error; console.error = (...a) => { __errors.push(a.join(' ')); _ce(...a); };
addEventListener('load', () => {
  const de = document.documentElement;
  const wide = [...document.querySelectorAll('body *')]
    .filter(el => el.getBoundingClientRect().right > de.clientWidth + 1)
    .slice(0, 5).map(el => el.tagName + (el.id ? '#' + el.id : ''));
  const figs = [...document.querySelectorAll('figure.plot')].map(f => {
    const s = f.querySelector('svg'); const r = s && s.getBoundingClientRect();
    return {id: f.id, w: r ? r.width : 0, h: r ? r.height : 0};
  });
  const pre = document.createElement('pre'); pre.id = 'stackcheck-probe';
  pre.textContent = JSON.stringify({scrollWidth: de.scrollWidth, clientWidth: de.clientWidth,
                                    wide, figs, errors: __errors});
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    # Debian's chromium; Ubuntu's chromium-browser; the Google Chrome GitHub's runners carry
    names = ("chromium", "chromium-browser", "google-chrome")
    exe = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if exe is None:
        pytest.skip(
            "needs chromium (Debian's `chromium` package) for the browser checks of the report: "
            "./run setup installs it where apt can; not installable here"
        )
    return exe


def browse(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1280,900",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def probe(exe: str, html_file: Path, tmp_path: Path) -> tuple[dict, str]:
    text = html_file.read_text(encoding="utf-8")
    probed = tmp_path / f"probe-{html_file.parent.name}.html"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    proc = browse(exe, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    m = re.search(r"<pre id=\"stackcheck-probe\">(.*?)</pre>", proc.stdout, re.S)
    assert m, f"no probe result from chromium: {proc.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&amp;", "&")), proc.stderr


def console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln and "rror" in ln]


def test_report_in_chromium_fits_1280_px_has_every_plot_and_no_console_error(rendered, tmp_path):
    exe = chromium()
    result, stderr = probe(exe, rendered / "sla-evidence.html", tmp_path)
    assert result["scrollWidth"] <= result["clientWidth"], result["wide"]
    assert not result["wide"], f"elements past the right edge at 1280 px: {result['wide']}"
    figs = {f["id"]: f for f in result["figs"]}
    assert set(figs) == {"plot-latency", "plot-burst-1", "plot-recovery", "plot-trends"}
    assert all(f["w"] > 200 and f["h"] > 50 for f in figs.values()), figs
    assert result["errors"] == []
    assert console_errors(stderr) == []


def test_reports_evidence_in_chromium_and_its_screenshot(rendered, tmp_path):
    """The evidence in reports/ as a reviewer opens it (this report where none exists yet):
    the same checks, and its screenshot as the plugin takes it after every run (here into
    tmp_path: reports/sla-evidence.png is the run's own, never this fixture's)."""
    chromium()
    real = ROOT / "reports" / "sla-evidence.html"
    target = real if real.is_file() else rendered / "sla-evidence.html"
    result, stderr = probe(chromium(), target, tmp_path)
    assert not result["wide"], f"elements past the right edge at 1280 px: {result['wide']}"
    assert all(f["w"] > 200 for f in result["figs"]), result["figs"]
    assert result["errors"] == [] and console_errors(stderr) == []
    shot = tmp_path / "sla-evidence.png"
    said = report.screenshot(target, shot)
    assert said == f"screenshot {shot}" and shot.stat().st_size > 10_000, said


def test_report_prints_to_a4(rendered, tmp_path):
    exe = chromium()
    pdf = tmp_path / "evidence.pdf"
    browse(
        exe,
        f"--print-to-pdf={pdf}",
        "--no-pdf-header-footer",
        (rendered / "sla-evidence.html").as_uri(),
    )
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf.read_bytes())
    assert boxes, "no pages in the PDF"
    for w, h in boxes:  # A4 is 595 x 842 pt
        assert abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2, (w, h)
