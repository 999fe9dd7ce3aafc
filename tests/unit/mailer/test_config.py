"""mailer.config: environment -> Config, every problem reported at once, secrets only from files."""

import json
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from mailer.config import Config, ConfigError, describe, load_config, tls_context

pytestmark = pytest.mark.unit

SOURCE_PW = "source-Secret-1"
REDIS_PW = "redis-Secret-2"
DB_PW = "db-Secret-3"
SMTP_PW = "smtp-Secret-4"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    for name, value in [
        ("source", SOURCE_PW + "\n"),  # trailing newline as `echo` writes it
        ("redis", REDIS_PW),
        ("db", DB_PW + "\r\n"),
        ("smtp", SMTP_PW),
    ]:
        (tmp_path / name).write_text(value, encoding="utf-8")
    return tmp_path


@pytest.fixture
def env(secrets_dir: Path) -> dict[str, str]:
    return {
        "MAILER_PROFILE": "praxis",
        "MAILER_ADDRESSES": "Praxis@Praxis.example, termine@praxis.example",
        "SOURCE_PROTOCOL": "imaps",
        "SOURCE_HOST": "mail.example",
        "SOURCE_USER": "praxis@praxis.example",
        "SOURCE_PASSWORD_FILE": str(secrets_dir / "source"),
        "REDIS_HOST": "redis",
        "REDIS_PASSWORD_FILE": str(secrets_dir / "redis"),
        "DB_HOST": "postgres",
        "DB_PASSWORD_FILE": str(secrets_dir / "db"),
        "CLAMD_HOST": "clamav",
        "SMTP_HOST": "mailpit",
        "SMTP_FROM": "praxis@praxis.example",
        "STAFF_ADDRESS": "team@praxis.example",
        "PATH": "/usr/bin",  # unrelated variables are ignored
    }


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(env)
    return err.value.problems


def test_minimal_config_and_defaults(env):
    cfg = load_config(env)
    assert isinstance(cfg, Config)
    assert cfg.profile == "praxis"
    assert cfg.addresses == ("praxis@praxis.example", "termine@praxis.example")
    assert (cfg.source.protocol, cfg.source.host, cfg.source.port) == ("imaps", "mail.example", 993)
    assert cfg.source.user == "praxis@praxis.example"
    assert cfg.source.password == SOURCE_PW  # trailing newline stripped
    assert cfg.source.mailbox == "INBOX"
    assert cfg.source.poll_seconds == 5.0
    assert cfg.source.delete_after_store is False
    assert (cfg.redis.host, cfg.redis.port, cfg.redis.password) == ("redis", 6379, REDIS_PW)
    assert (cfg.db.host, cfg.db.port, cfg.db.name, cfg.db.user) == (
        "postgres",
        5432,
        "praxis",
        "praxis",
    )
    assert cfg.db.password == DB_PW  # CRLF stripped
    assert cfg.db.pool_max == 5
    assert (cfg.clamd.host, cfg.clamd.port, cfg.clamd.timeout) == ("clamav", 3310, 30.0)
    assert cfg.ollama.url is None
    assert cfg.ollama.model == "llama3.2:3b"
    assert cfg.ollama.timeout == 20.0
    assert (cfg.smtp.host, cfg.smtp.port, cfg.smtp.security) == ("mailpit", 25, "none")
    assert cfg.smtp.user is None and cfg.smtp.password is None
    assert cfg.smtp.from_address == "praxis@praxis.example"
    assert cfg.smtp.staff_address == "team@praxis.example"
    assert cfg.smtp.send_acknowledgement is True
    assert cfg.storage.data_dir == Path("/app/data")
    assert cfg.storage.max_attachment_bytes == 50 * 1024 * 1024
    assert cfg.process.http_port == 8000
    assert cfg.process.log_level == "INFO"
    assert cfg.process.worker_id  # the host name


@pytest.mark.parametrize(
    ("protocol", "port", "kind", "security"),
    [
        ("pop3s", 995, "pop3", "tls"),
        ("pop3+starttls", 110, "pop3", "starttls"),
        ("IMAPS", 993, "imap", "tls"),
        ("imap+STARTTLS", 143, "imap", "starttls"),
        ("pop3", 110, "pop3", "none"),
        ("imap", 143, "imap", "none"),
    ],
)
def test_source_port_defaults_by_protocol(env, protocol, port, kind, security):
    env["SOURCE_PROTOCOL"] = protocol
    env["ALLOW_PLAINTEXT_AUTH"] = "1"
    cfg = load_config(env)
    assert cfg.source.port == port
    assert cfg.source.protocol == protocol.lower()
    assert (cfg.source.kind, cfg.source.security) == (kind, security)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_plaintext_source_is_refused_unless_allowed(env, protocol):
    env["SOURCE_PROTOCOL"] = protocol
    found = problems(env)
    assert found == [
        f"SOURCE_PROTOCOL={protocol} sends the mailbox password unencrypted: use {protocol}s or "
        f"{protocol}+starttls (ALLOW_PLAINTEXT_AUTH=1 permits it, for a test stack only)"
    ]
    env["ALLOW_PLAINTEXT_AUTH"] = "0"
    assert problems(env) == found
    env["ALLOW_PLAINTEXT_AUTH"] = "1"
    assert load_config(env).allow_plaintext_auth is True


def test_smtp_auth_without_tls_is_refused_unless_allowed(env, secrets_dir):
    env.update({"SMTP_USER": "mailer", "SMTP_PASS_FILE": str(secrets_dir / "smtp")})
    found = problems(env)  # SMTP_SECURITY defaults to none
    assert len(found) == 1 and found[0].startswith(
        "SMTP_SECURITY=none with SMTP_USER set sends the SMTP password unencrypted"
    )
    env["ALLOW_PLAINTEXT_AUTH"] = "yes"
    assert load_config(env).smtp.password == SMTP_PW
    del env["ALLOW_PLAINTEXT_AUTH"]
    for security in ("starttls", "tls"):
        env["SMTP_SECURITY"] = security
        assert load_config(env).smtp.user == "mailer"


def test_smtp_without_login_may_be_plain(env):
    env["SMTP_SECURITY"] = "none"  # no password crosses the network: no switch needed
    assert load_config(env).smtp.security == "none"


def test_smtp_pass_file_and_its_older_name(env, secrets_dir):
    env.update({"SMTP_USER": "mailer", "SMTP_SECURITY": "tls"})
    env["SMTP_PASS_FILE"] = str(secrets_dir / "smtp")
    assert load_config(env).smtp.password == SMTP_PW
    env["SMTP_PASSWORD_FILE"] = str(secrets_dir / "smtp")  # the same file: accepted
    assert load_config(env).smtp.password == SMTP_PW
    del env["SMTP_PASS_FILE"]
    assert load_config(env).smtp.password == SMTP_PW  # the older name alone
    env["SMTP_PASS_FILE"] = str(secrets_dir / "db")
    assert any(
        p.startswith("SMTP_PASS_FILE and SMTP_PASSWORD_FILE name different files")
        for p in problems(env)
    )


def test_plain_smtp_pass_is_refused(env):
    env["SMTP_PASS"] = "leaked-value"
    found = problems(env)
    assert any(p.startswith("SMTP_PASS is not accepted") for p in found)
    assert "leaked-value" not in str(found)


def test_mail_ca_file(env, tmp_path):
    import ssl

    assert load_config(env).mail_ca_file is None  # the system store
    ca = tmp_path / "ca.pem"
    ca.write_text(ssl.DER_cert_to_PEM_cert(_any_ca_der()))
    env["MAIL_CA_FILE"] = str(ca)
    cfg = load_config(env)
    assert cfg.mail_ca_file == ca
    ctx = tls_context(cfg.mail_ca_file)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1  # that CA and nothing else
    assert describe(cfg)["mail_ca_file"] == str(ca)


def _any_ca_der() -> bytes:
    """A CA certificate to load: one from the system store, else a throwaway one."""
    import ssl

    certs = ssl.create_default_context().get_ca_certs(binary_form=True)
    if certs:
        return certs[0]
    pytest.importorskip("cryptography")
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "holds no usable PEM certificate"),
        ("not a certificate\n", "holds no usable PEM certificate"),
    ],
)
def test_unusable_mail_ca_file(env, tmp_path, content, message):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    env["MAIL_CA_FILE"] = str(path)
    found = problems(env)
    assert len(found) == 1 and found[0].startswith(f"MAIL_CA_FILE: file {path} {message}"), found


def test_mail_ca_file_is_a_directory(env, tmp_path):
    env["MAIL_CA_FILE"] = str(tmp_path)
    found = problems(env)
    assert len(found) == 1 and found[0].startswith("MAIL_CA_FILE: "), found


@pytest.mark.parametrize(("security", "port"), [("none", 25), ("starttls", 587), ("tls", 465)])
def test_smtp_port_defaults_by_security(env, security, port):
    env["SMTP_SECURITY"] = security
    assert load_config(env).smtp.port == port


def test_every_setting_can_be_overridden(env, secrets_dir):
    env.update(
        {
            "MAILER_PROFILE": "ecom",
            "SOURCE_PORT": "1110",
            "SOURCE_MAILBOX": "Orders",
            "SOURCE_POLL_SECONDS": "0.5",
            "SOURCE_DELETE_AFTER_STORE": "yes",
            "REDIS_PORT": "6380",
            "DB_PORT": "5433",
            "DB_NAME": "shop",
            "DB_USER": "shop_app",
            "DB_POOL_MAX": "20",
            "CLAMD_PORT": "3311",
            "CLAMD_TIMEOUT_SECONDS": "10",
            "OLLAMA_URL": "http://host.docker.internal:11434/",
            "OLLAMA_MODEL": "qwen2.5:7b",
            "OLLAMA_TIMEOUT_SECONDS": "15.5",
            "SMTP_PORT": "1025",
            "SMTP_SECURITY": "STARTTLS",
            "SMTP_USER": "mailer",
            "SMTP_PASS_FILE": str(secrets_dir / "smtp"),
            "SEND_ACKNOWLEDGEMENT": "0",
            "DATA_DIR": "/srv/data",
            "MAX_ATTACHMENT_MB": "10",
            "HTTP_PORT": "9000",
            "LOG_LEVEL": "debug",
            "WORKER_ID": "ecom-worker-1",
        }
    )
    cfg = load_config(env)
    assert cfg.profile == "ecom"
    assert (cfg.source.port, cfg.source.mailbox, cfg.source.poll_seconds) == (1110, "Orders", 0.5)
    assert cfg.source.delete_after_store is True
    assert (cfg.redis.port, cfg.db.port, cfg.db.name, cfg.db.user) == (
        6380,
        5433,
        "shop",
        "shop_app",
    )
    assert cfg.db.pool_max == 20
    assert (cfg.clamd.port, cfg.clamd.timeout) == (3311, 10.0)
    assert cfg.ollama.url == "http://host.docker.internal:11434"  # trailing slash dropped
    assert (cfg.ollama.model, cfg.ollama.timeout) == ("qwen2.5:7b", 15.5)
    assert (cfg.smtp.port, cfg.smtp.security) == (1025, "starttls")
    assert (cfg.smtp.user, cfg.smtp.password) == ("mailer", SMTP_PW)
    assert cfg.smtp.send_acknowledgement is False
    assert cfg.storage.data_dir == Path("/srv/data")
    assert cfg.storage.max_attachment_bytes == 10 * 1024 * 1024
    assert (cfg.process.http_port, cfg.process.log_level, cfg.process.worker_id) == (
        9000,
        "DEBUG",
        "ecom-worker-1",
    )


def test_db_name_and_user_default_to_the_profile(env):
    env["MAILER_PROFILE"] = "ecom"
    cfg = load_config(env)
    assert (cfg.db.name, cfg.db.user) == ("ecom", "ecom")


def test_empty_ollama_url_disables_ai(env):
    env["OLLAMA_URL"] = "  "
    assert load_config(env).ollama.url is None


def test_worker_id_defaults_to_hostname(env):
    import socket

    assert load_config(env).process.worker_id == socket.gethostname()


def test_missing_required_variables_are_all_listed(env):
    required = [
        "MAILER_PROFILE",
        "MAILER_ADDRESSES",
        "SOURCE_PROTOCOL",
        "SOURCE_HOST",
        "SOURCE_USER",
        "SOURCE_PASSWORD_FILE",
        "REDIS_HOST",
        "REDIS_PASSWORD_FILE",
        "DB_HOST",
        "DB_PASSWORD_FILE",
        "CLAMD_HOST",
        "SMTP_HOST",
        "SMTP_FROM",
        "STAFF_ADDRESS",
    ]
    found = problems({})
    for name in required:
        assert any(p.startswith(f"{name} is required") for p in found), name
    assert len(found) == len(required)


def test_error_message_lists_every_problem(env):
    env["HTTP_PORT"] = "0"
    env["DB_POOL_MAX"] = "50"
    env["LOG_LEVEL"] = "LOUD"
    with pytest.raises(ConfigError) as err:
        load_config(env)
    text = str(err.value)
    assert text.startswith("invalid configuration (3 problems):")
    assert "HTTP_PORT=0 is out of range 1..65535" in text
    assert "DB_POOL_MAX=50 is out of range 1..20" in text
    assert "LOG_LEVEL='LOUD' is not one of" in text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAILER_PROFILE", "bank", "MAILER_PROFILE='bank' is not one of: praxis, ecom"),
        ("SOURCE_PROTOCOL", "smtp", "SOURCE_PROTOCOL='smtp' is not one of"),
        ("SMTP_SECURITY", "ssl", "SMTP_SECURITY='ssl' is not one of: none, starttls, tls"),
        ("SOURCE_PORT", "99999", "SOURCE_PORT=99999 is out of range 1..65535"),
        ("REDIS_PORT", "abc", "REDIS_PORT='abc' is not an integer"),
        ("DB_POOL_MAX", "0", "DB_POOL_MAX=0 is out of range 1..20"),
        ("SOURCE_POLL_SECONDS", "0", "SOURCE_POLL_SECONDS=0 is out of range"),
        ("SOURCE_POLL_SECONDS", "nan", "SOURCE_POLL_SECONDS=nan is out of range"),
        ("CLAMD_TIMEOUT_SECONDS", "-1", "CLAMD_TIMEOUT_SECONDS=-1 is out of range"),
        ("OLLAMA_TIMEOUT_SECONDS", "soon", "OLLAMA_TIMEOUT_SECONDS='soon' is not a number"),
        ("MAX_ATTACHMENT_MB", "0", "MAX_ATTACHMENT_MB=0 is out of range 1..1024"),
        ("MAX_ATTACHMENT_MB", "1.5", "MAX_ATTACHMENT_MB='1.5' is not an integer"),
        ("SEND_ACKNOWLEDGEMENT", "maybe", "SEND_ACKNOWLEDGEMENT='maybe' is not a boolean"),
        ("SOURCE_DELETE_AFTER_STORE", "2", "SOURCE_DELETE_AFTER_STORE='2' is not a boolean"),
        ("DATA_DIR", "data", "DATA_DIR='data' must be an absolute path"),
        ("SOURCE_HOST", "mail host", "SOURCE_HOST='mail host' is not a valid host"),
        ("WORKER_ID", "a b", "WORKER_ID='a b' may only use"),
        ("OLLAMA_URL", "ftp://x", "OLLAMA_URL='ftp://x' is not an http(s) URL"),
        ("OLLAMA_URL", "localhost:11434", "is not an http(s) URL"),
        ("OLLAMA_URL", "http://u:p@ollama:11434", "OLLAMA_URL must not contain credentials"),
        ("SMTP_FROM", "not-an-address", "SMTP_FROM: 'not-an-address' is not a valid e-mail"),
        ("STAFF_ADDRESS", "team@", "STAFF_ADDRESS: 'team@' is not a valid e-mail address"),
        ("MAILER_ADDRESSES", "a@b.example, nope", "MAILER_ADDRESSES: 'nope' is not a valid"),
        ("MAILER_ADDRESSES", " , ", "MAILER_ADDRESSES lists no address"),
    ],
)
def test_invalid_values(env, name, value, message):
    env[name] = value
    found = problems(env)
    assert any(message in p for p in found), found


def test_addresses_are_lower_cased_and_deduplicated(env):
    env["MAILER_ADDRESSES"] = "A@B.example,a@b.example , c@d.example,"
    assert load_config(env).addresses == ("a@b.example", "c@d.example")


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on"])
def test_true_values(env, value):
    env["SOURCE_DELETE_AFTER_STORE"] = value
    assert load_config(env).source.delete_after_store is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_false_values(env, value):
    env["SEND_ACKNOWLEDGEMENT"] = value
    assert load_config(env).smtp.send_acknowledgement is False


# --- secrets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["SOURCE_PASSWORD", "REDIS_PASSWORD", "DB_PASSWORD"])
def test_plain_secret_variables_are_refused(env, name):
    del env[f"{name}_FILE"]
    env[name] = "leaked-value"
    found = problems(env)
    assert any(p.startswith(f"{name} is not accepted") and f"{name}_FILE" in p for p in found)
    assert "leaked-value" not in " ".join(found)


def test_plain_smtp_password_is_refused(env):
    env["SMTP_USER"] = "u"
    env["SMTP_PASSWORD"] = "leaked-value"
    found = problems(env)
    assert any(p.startswith("SMTP_PASSWORD is not accepted") for p in found)
    assert "leaked-value" not in str(found)


def test_secret_and_secret_file_together(env):
    env["DB_PASSWORD"] = "leaked-value"
    found = problems(env)
    assert any("both DB_PASSWORD and DB_PASSWORD_FILE are set" in p for p in found)
    assert "leaked-value" not in str(found)


def test_empty_plain_secret_variable_is_ignored(env):
    env["DB_PASSWORD"] = ""
    assert load_config(env).db.password == DB_PW


def test_missing_secret_file(env, tmp_path):
    path = tmp_path / "nope"
    env["REDIS_PASSWORD_FILE"] = str(path)
    assert problems(env) == [f"REDIS_PASSWORD_FILE: file {path} does not exist"]


def test_empty_secret_file(env, tmp_path):
    path = tmp_path / "empty"
    path.write_text("\n")
    env["DB_PASSWORD_FILE"] = str(path)
    assert problems(env) == [f"DB_PASSWORD_FILE: file {path} is empty"]


def test_secret_file_is_a_directory(env, tmp_path):
    env["SOURCE_PASSWORD_FILE"] = str(tmp_path)
    assert problems(env) == [f"SOURCE_PASSWORD_FILE: {tmp_path} is a directory, not a file"]


def test_unreadable_secret_file_via_open_error(env, tmp_path, monkeypatch):
    """Works as root too: the PermissionError is simulated."""
    import builtins

    path = tmp_path / "locked"
    path.write_text("x1234")
    real_open = builtins.open

    def fake_open(file, *args, **kw):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kw)

    monkeypatch.setattr(builtins, "open", fake_open)
    env["SOURCE_PASSWORD_FILE"] = str(path)
    assert problems(env) == [
        f"SOURCE_PASSWORD_FILE: file {path} is not readable (permission denied)"
    ]


def test_secret_file_not_utf8(env, tmp_path):
    path = tmp_path / "bin"
    path.write_bytes(b"\xff\xfe\x00")
    env["DB_PASSWORD_FILE"] = str(path)
    assert problems(env) == [f"DB_PASSWORD_FILE: file {path} is not UTF-8 text"]


def test_secret_keeps_inner_and_leading_whitespace(env, tmp_path):
    path = tmp_path / "spaced"
    path.write_text(" pass word \n")
    env["DB_PASSWORD_FILE"] = str(path)
    assert load_config(env).db.password == " pass word "


@pytest.mark.parametrize("password_var", ["SMTP_PASS_FILE", "SMTP_PASSWORD_FILE"])
def test_smtp_user_and_password_file_go_together(env, secrets_dir, password_var):
    env["SMTP_SECURITY"] = "starttls"
    env["SMTP_USER"] = "mailer"
    assert any("SMTP_USER and SMTP_PASS_FILE must be set together" in p for p in problems(env))
    del env["SMTP_USER"]
    env[password_var] = str(secrets_dir / "smtp")
    assert any("SMTP_USER and SMTP_PASS_FILE must be set together" in p for p in problems(env))


def test_problems_never_contain_secret_values(env, secrets_dir, tmp_path):
    # many problems at once, secrets present in files and (refused) in the environment
    env.update(
        {
            "SOURCE_PASSWORD": SOURCE_PW,
            "REDIS_PASSWORD": REDIS_PW,
            "HTTP_PORT": "x",
            "SMTP_PASSWORD_FILE": str(secrets_dir / "smtp"),
        }
    )
    with pytest.raises(ConfigError) as err:
        load_config(env)
    text = str(err.value) + repr(err.value.problems)
    for secret in (SOURCE_PW, REDIS_PW, DB_PW, SMTP_PW):
        assert secret not in text


def test_secrets_and_describe(env, secrets_dir):
    env["SMTP_USER"] = "mailer"
    env["SMTP_SECURITY"] = "tls"
    env["SMTP_PASS_FILE"] = str(secrets_dir / "smtp")
    cfg = load_config(env)
    assert set(cfg.secrets()) == {SOURCE_PW, REDIS_PW, DB_PW, SMTP_PW}
    summary = describe(cfg)
    assert summary["source"]["password"] == "set"
    assert summary["smtp"]["password"] == "set"
    assert summary["storage"]["data_dir"] == "/app/data"
    assert summary["addresses"] == ["praxis@praxis.example", "termine@praxis.example"]
    assert summary["smtp"]["user"] == "mailer"
    assert summary["db"]["pool_max"] == 5
    flat = repr(summary)
    for secret in cfg.secrets():
        assert secret not in flat
    json.dumps(summary)  # loggable as it is
    # every setting of every section is there, every secret field only as set/unset
    assert set(summary) == {f.name for f in fields(Config)}
    secret_fields = []
    for f in fields(Config):
        if is_dataclass(section := getattr(cfg, f.name)):
            assert set(summary[f.name]) == {g.name for g in fields(section)}, f.name
            for g in fields(section):
                if g.metadata.get("secret"):
                    secret_fields.append(f"{f.name}.{g.name}")
                    assert summary[f.name][g.name] == "set"
    assert secret_fields == ["source.password", "redis.password", "db.password", "smtp.password"]


def test_describe_unset_smtp_password(env):
    cfg = load_config(env)
    assert describe(cfg)["smtp"]["password"] == "unset"
    assert cfg.secrets() == (SOURCE_PW, REDIS_PW, DB_PW)


def test_repr_does_not_leak_secrets(env):
    text = repr(load_config(env))
    assert "Config(" in text and "SourceConfig(" in text and "DatabaseConfig(" in text
    for secret in (SOURCE_PW, REDIS_PW, DB_PW):
        assert secret not in text


def test_config_is_frozen(env):
    cfg = load_config(env)
    with pytest.raises(AttributeError):
        cfg.profile = "ecom"
    with pytest.raises(AttributeError):
        cfg.source.host = "elsewhere"
