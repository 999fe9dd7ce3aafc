"""mailer.scrub: e-mail addresses, secrets and credentials out of log lines; JSON logging."""

import io
import json
import logging
import re

import pytest

from mailer.scrub import JsonFormatter, scrub, setup_logging

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail from Erika.Mustermann@Example.ORG received", "mail from <email> received"),
        ("to <praxis@praxis.example>, cc a.b+tag@sub.shop.example", "to <<email>>, cc <email>"),
        ("Müller <müller@bäckerei.de>", "Müller <<email>>"),
        ("user=max@example.org;", "user=<email>;"),
        ("no address in here @ all", "no address in here @ all"),
        ("version 1.2.3 at 10:00", "version 1.2.3 at 10:00"),
    ],
)
def test_email_addresses(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login password=hunter22 for x", "login password=<secret> for x"),
        ("password: hunter22 rest", "password: <secret> rest"),
        ("PASSWORD = 'two words' rest", "PASSWORD = '<secret>' rest"),
        ('{"password": "hunter22", "user": "max"}', '{"password": "<secret>", "user": "max"}'),
        ("?user=max&password=hunter22&x=1", "?user=max&password=<secret>&x=1"),
        ("db_password=abc; next", "db_password=<secret>; next"),
        ("pass hunter22", "pass <secret>"),
        ("*cmd* 'PASS hunter22'", "*cmd* 'PASS <secret>'"),
        ("pass=hunter22", "pass=<secret>"),
        ("api_key: abcd1234 ok", "api_key: <secret> ok"),
        ("token=abc.def.ghi end", "token=<secret> end"),
        ("Authorization: Basic dXNlcjpwYXNz next", "Authorization: Basic <secret> next"),
        ("authorization: bearer eyJhbGciOi.x.y", "authorization: bearer <secret>"),
        (
            "postgresql://praxis:s3cr3t@db:5432/praxis",
            "postgresql://praxis:<secret>@db:5432/praxis",
        ),
        ("redis://:pw1234@redis:6379/0", "redis://:<secret>@redis:6379/0"),
        ("b'A001 LOGIN praxis geheim123'", "b'A001 LOGIN praxis <secret>'"),
        # not credentials: left alone
        ("SOURCE_PASSWORD_FILE=/run/secrets/pw", "SOURCE_PASSWORD_FILE=/run/secrets/pw"),
        ("passwords must be files", "passwords must be files"),
        ("the passenger=1", "the passenger=1"),
        ("5 tokens generated", "5 tokens generated"),
    ],
)
def test_credentials(text, expected):
    assert scrub(text) == expected


def test_secret_values_anywhere():
    secrets = ["s3cr3t-Value", "abc"]  # "abc" is too short to be searched
    text = "connect with s3cr3t-Value to abc; url-encoded: s3cr3t-Value"
    assert scrub(text, secrets) == "connect with <secret> to abc; url-encoded: <secret>"


def test_secret_url_encoded_form():
    assert scrub("redis://u:p%40ss%2Fw@host", ["p@ss/w"]) == "redis://u:<secret>@host"
    assert scrub("dsn=...p%40ss%2Fw...", ["p@ss/w"]) == "dsn=...<secret>..."


def test_longer_secret_wins_over_its_prefix():
    assert scrub("xx-abcdefgh-xx", ["abcd", "abcdefgh"]) == "xx-<secret>-xx"


def test_secret_with_regex_characters():
    assert scrub("pw is a.b*c(d) ok", ["a.b*c(d)"]) == "pw is <secret> ok"
    assert scrub("aXbYcZd", ["a.b*c(d)"]) == "aXbYcZd"


def test_other_lines_are_unchanged():
    text = "line one\npassword=x1 here\nline three with a@b.example"
    assert scrub(text).splitlines() == [
        "line one",
        "password=<secret> here",
        "line three with <email>",
    ]


def test_empty():
    assert scrub("") == ""


# --- JsonFormatter ----------------------------------------------------------------------------
def record(msg, *args, exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("mailer.worker", logging.INFO, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def fmt(rec: logging.LogRecord, secrets=("TopSecret99",)) -> dict:
    line = JsonFormatter(secrets).format(rec)
    assert "\n" not in line
    return json.loads(line)


def test_json_core_fields():
    rec = record("Processing email: %s from %s", "ext-1", "a@b.example")
    rec.created = 1709540100.123456  # 2024-03-04T08:15:00.123Z
    out = fmt(rec)
    assert out == {
        "ts": "2024-03-04T08:15:00.123Z",
        "level": "INFO",
        "logger": "mailer.worker",
        "msg": "Processing email: ext-1 from <email>",
    }


def test_json_ts_is_rfc3339_utc():
    out = fmt(record("x"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["ts"])


def test_json_extra_fields_are_scrubbed():
    out = fmt(
        record(
            "stored",
            external_id="ext-1",
            sender="max@example.org",
            seconds=1.5,
            attachments=2,
            ok=True,
            nothing=None,
            nested={"to": ["a@b.example", "c"], "n": 1},
            dsn="postgresql://u:TopSecret99@db/x",
        )
    )
    assert out["external_id"] == "ext-1"
    assert out["sender"] == "<email>"
    assert out["seconds"] == 1.5 and out["attachments"] == 2 and out["ok"] is True
    assert out["nothing"] is None
    assert out["nested"] == {"to": ["<email>", "c"], "n": 1}
    assert out["dsn"] == "postgresql://u:<secret>@db/x"


def test_json_extra_fields_named_like_secrets_are_hidden():
    out = fmt(record("x", password="plain", db_password="p2", api_key="k", token=""))
    assert out["password"] == out["db_password"] == out["api_key"] == "<secret>"
    assert out["token"] == ""  # empty: nothing to hide, and shows it is unset


def test_json_non_serialisable_extra():
    class Thing:
        def __str__(self):
            return "thing for x@y.example"

    out = fmt(record("x", thing=Thing(), raw=b"bytes", nan=float("nan")))
    assert out["thing"] == "thing for <email>"
    assert out["raw"] == "b'bytes'"
    assert out["nan"] == "nan"


def test_json_exception_is_scrubbed():
    try:
        raise RuntimeError("login max@example.org with TopSecret99 failed")
    except RuntimeError:
        import sys

        rec = record("failed", exc_info=sys.exc_info())
    out = fmt(rec)
    assert "Traceback" in out["exc"]
    assert "RuntimeError: login <email> with <secret> failed" in out["exc"]
    assert "TopSecret99" not in json.dumps(out)


def test_json_message_with_bad_args_still_logs():
    out = fmt(record("two %s %s", "only-one"))
    assert "two %s %s" in out["msg"]


def test_json_surrogates_do_not_break_the_line():
    line = JsonFormatter().format(record("bad \udcff byte"))
    line.encode("utf-8")
    assert json.loads(line)["msg"] == "bad \ufffd byte"


# --- setup_logging ----------------------------------------------------------------------------
@pytest.fixture
def clean_root():
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield root
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    for handler in saved_handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def test_setup_logging_writes_scrubbed_json_lines(clean_root):
    stream = io.StringIO()
    setup_logging("info", secrets=["Geheim-1234"], stream=stream)
    log = logging.getLogger("mailer.test")
    log.debug("hidden at INFO")
    log.info("fetched %d mails for %s", 3, "praxis@praxis.example")
    log.warning("auth failed with Geheim-1234", extra={"user": "x@y.example"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["level"], x["msg"]) for x in lines] == [
        ("INFO", "fetched 3 mails for <email>"),
        ("WARNING", "auth failed with <secret>"),
    ]
    assert lines[1]["user"] == "<email>"
    assert clean_root.level == logging.INFO


def test_setup_logging_twice_keeps_one_handler_and_drops_plain_stream_handlers(clean_root):
    plain = logging.StreamHandler(io.StringIO())
    clean_root.addHandler(plain)
    first, second = io.StringIO(), io.StringIO()
    setup_logging("DEBUG", stream=first)
    setup_logging("DEBUG", stream=second)
    assert plain not in clean_root.handlers
    logging.getLogger("mailer.test").debug("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1
    assert plain.stream.getvalue() == ""


def test_setup_logging_rejects_unknown_level(clean_root):
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("LOUD", stream=io.StringIO())


def test_setup_logging_quietens_httpx(clean_root):
    setup_logging("INFO", stream=io.StringIO())
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
