"""stackcheck.ops.mailtls: the stack's mail CA and the mail server's certificate (issue 11)."""

import os
import socket
import ssl
import stat
import threading

import pytest

from stackcheck.ops import mailtls

pytestmark = pytest.mark.unit


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make(directory):
    return mailtls.ensure(directory, server_uid=os.getuid(), server_gid=os.getgid())


def test_ensure_makes_ca_and_server_cert_with_modes(tmp_path):
    d = tmp_path / "secrets"
    changed = make(d)
    assert len(changed) == 2 and "new CA: missing" in changed[0]
    assert mode(d / mailtls.CA_KEY) == 0o400
    assert mode(d / mailtls.CA_CERT) == 0o444  # public: both mailers, Alertmanager, the suite
    assert mode(d / mailtls.SERVER_KEY) == 0o400
    assert mode(d / mailtls.SERVER_CERT) == 0o400
    assert sorted(p.name for p in d.iterdir()) == sorted(mailtls.FILES)  # no temp files


def test_ensure_is_idempotent_and_renews_what_is_wrong(tmp_path):
    d = tmp_path / "secrets"
    make(d)
    before = {n: (d / n).read_text() for n in mailtls.FILES}
    assert make(d) == []
    assert {n: (d / n).read_text() for n in mailtls.FILES} == before
    # a server certificate of another CA is replaced, the CA is kept
    _, other_ca = mailtls.make_ca("other")
    other_key, _ = mailtls.make_ca("x")
    key, cert = mailtls.make_server_cert(other_key, other_ca)
    for name, text in ((mailtls.SERVER_KEY, key), (mailtls.SERVER_CERT, cert)):
        (d / name).chmod(0o600)
        (d / name).write_text(text)
    changed = make(d)
    assert changed == [
        f"{mailtls.SERVER_KEY} and {mailtls.SERVER_CERT} "
        f"(signed by {mailtls.CA_CERT}: not signed by the current CA)"
    ]
    assert (d / mailtls.CA_CERT).read_text() == before[mailtls.CA_CERT]
    # a lost CA key makes a new CA and a new server certificate
    (d / mailtls.CA_KEY).unlink()
    assert len(make(d)) == 2
    assert (d / mailtls.CA_CERT).read_text() != before[mailtls.CA_CERT]


def test_server_problem_names_wrong_hosts(tmp_path):
    ca_key, ca_cert = mailtls.make_ca()
    key, cert = mailtls.make_server_cert(ca_key, ca_cert, dns=("mail.example",))
    assert mailtls.server_problem(ca_cert, key, cert) == "names other hosts"
    key, cert = mailtls.make_server_cert(ca_key, ca_cert, days=10)
    assert mailtls.server_problem(ca_cert, key, cert) == "expires within 30 days"
    key, cert = mailtls.make_server_cert(ca_key, ca_cert)
    assert mailtls.server_problem(ca_cert, key, cert) is None


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_python_tls_client_verifies_the_server_cert(tmp_path, host):
    """A default (strict) Python client trusting only the stack's CA accepts the certificate
    for every name the suite and the mailers use; a client with the system CAs refuses it."""
    d = tmp_path / "s"
    make(d)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(d / mailtls.SERVER_CERT, d / mailtls.SERVER_KEY)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ctx = ssl.create_default_context(cafile=str(d / mailtls.CA_CERT))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.recv(2) == b"ok"
    stranger = ssl.create_default_context()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        stranger.wrap_socket(raw, server_hostname=host)
    t.join(5)
    listener.close()
