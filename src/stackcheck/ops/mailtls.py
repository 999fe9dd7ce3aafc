"""The stack's own certificate authority and the mail server's certificate (issue 11: mail over
TLS with authentication, as Gmail requires).

Made by setup (`python -m stackcheck.ops.secretfiles` calls `ensure`) beside the other secrets:

  mail_ca_key       the CA's private key (EC P-256): owned by the user running setup, 0400,
                    mounted nowhere; it only signs the server certificate below
  mail_ca.crt       the CA certificate, 0444: public by nature, and needed by several readers at
                    once (both mailers, uids 1001/1002; Alertmanager, 65534; the suite on the host),
                    which one owner with mode 0400 cannot serve
  mailpit_tls_key   the mail server's private key, owned by the mail server's uid (1025), 0400
  mailpit_tls_cert  its certificate, signed by the CA, SANs mailpit, localhost, 127.0.0.1;
                    1025, 0400

Not SecretSpecs: the files are made as a set (a certificate is signed with the CA key, not
derived deterministically from other secrets, so secretfiles' "re-derive when different" would
make a new certificate at every setup), and the CA certificate is public.

Kept as long as they are valid: a new CA only when its files are missing or it expires within 30
days; a new server certificate when it is missing, not signed by the current CA, names other
hosts, or expires within 30 days (setup renews it; restart the mail server to load it).
Needs the `cryptography` package (a dependency of stackcheck; no openssl binary is shelled out to).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stackcheck.ops.secretio import chown_secret, read_secret, write_secret

MAILPIT_UID = 1025  # mailpit's uid: it reads the server key

CA_KEY = "mail_ca_key"
CA_CERT = "mail_ca.crt"
SERVER_KEY = "mailpit_tls_key"
SERVER_CERT = "mailpit_tls_cert"
FILES = (CA_KEY, CA_CERT, SERVER_KEY, SERVER_CERT)

SERVER_DNS = ("mailpit", "localhost")  # the service name in the stack; the suite on loopback
SERVER_IPS = ("127.0.0.1",)
CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a leaf; setup renews it 30 days before the end
RENEW_BEFORE = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(common_name: str = "stackcheck mail CA") -> tuple[str, str]:
    """A new CA: (key PEM, certificate PEM)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_key(key), _pem_cert(cert)


def make_server_cert(
    ca_key_pem: str,
    ca_cert_pem: str,
    dns: tuple[str, ...] = SERVER_DNS,
    ips: tuple[str, ...] = SERVER_IPS,
    days: int = SERVER_DAYS,
) -> tuple[str, str]:
    """A server key and certificate signed by the CA: (key PEM, certificate PEM)."""
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    key = _key()
    now = _now()
    san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_key(key), _pem_cert(cert)


def _expiring(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() < RENEW_BEFORE


def ca_problem(ca_key_pem: str, ca_cert_pem: str) -> str | None:
    """Why this CA must be made anew, or None."""
    try:
        key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
        cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    except ValueError:
        return "unreadable"
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return "key and certificate do not match"
    if _expiring(cert):
        return "expires within 30 days"
    return None


def server_problem(
    ca_cert_pem: str, key_pem: str, cert_pem: str, dns=SERVER_DNS, ips=SERVER_IPS
) -> str | None:
    """Why the server certificate must be made anew, or None."""
    try:
        ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except ValueError:
        return "unreadable"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != (
        cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    ):
        return "key and certificate do not match"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative names"
    names = set(san.get_values_for_type(x509.DNSName))
    addrs = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    if names != set(dns) or addrs != set(ips):
        return "names other hosts"
    if _expiring(cert):
        return "expires within 30 days"
    return None


def _install(path: Path, content: str, mode: int, uid: int, gid: int) -> None:
    if path.exists():
        path.chmod(0o600)
    write_secret(path, content)  # written 0400
    path.chmod(mode)
    chown_secret(path, uid, gid)


def ensure(
    directory: Path, server_uid: int = MAILPIT_UID, server_gid: int = MAILPIT_UID
) -> list[str]:
    """Create or renew the CA and the server certificate; fix modes and owners; return what
    changed (as secretfiles.ensure does)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    own_uid, own_gid = os.geteuid(), os.getegid()
    paths = {n: directory / n for n in FILES}
    changed: list[str] = []

    ca_key = read_secret(paths[CA_KEY]) if paths[CA_KEY].exists() else ""
    ca_cert = read_secret(paths[CA_CERT]) if paths[CA_CERT].exists() else ""
    why = ca_problem(ca_key, ca_cert) if ca_key and ca_cert else "missing"
    if why:
        ca_key, ca_cert = make_ca()
        _install(paths[CA_KEY], ca_key, 0o400, own_uid, own_gid)
        _install(paths[CA_CERT], ca_cert, 0o444, own_uid, own_gid)
        changed.append(f"{CA_KEY} and {CA_CERT} (new CA: {why})")

    key = read_secret(paths[SERVER_KEY]) if paths[SERVER_KEY].exists() else ""
    cert = read_secret(paths[SERVER_CERT]) if paths[SERVER_CERT].exists() else ""
    why = server_problem(ca_cert, key, cert) if key and cert else "missing"
    if why:
        key, cert = make_server_cert(ca_key, ca_cert)
        _install(paths[SERVER_KEY], key, 0o400, server_uid, server_gid)
        _install(paths[SERVER_CERT], cert, 0o400, server_uid, server_gid)
        changed.append(f"{SERVER_KEY} and {SERVER_CERT} (signed by {CA_CERT}: {why})")

    for name, mode, uid, gid in (
        (CA_KEY, 0o400, own_uid, own_gid),
        (CA_CERT, 0o444, own_uid, own_gid),
        (SERVER_KEY, 0o400, server_uid, server_gid),
        (SERVER_CERT, 0o400, server_uid, server_gid),
    ):
        if paths[name].stat().st_mode & 0o777 != mode:
            paths[name].chmod(mode)
        chown_secret(paths[name], uid, gid)
    return changed
