"""TLS set-up: the server's SSL context, and a development CA + certificate made on first run."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

import attrs

DEV_CA = "dev-ca.pem"
DEV_CERT = "dev-cert.pem"
DEV_KEY = "dev-key.pem"


class CertificateError(Exception):
    """The certificate or key files are missing or unusable (a clear message for operators)."""


@attrs.frozen
class DevCertificate:
    ca_file: Path
    cert_file: Path
    key_file: Path


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/gameserver``, else ``~/.local/state/gameserver``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "gameserver"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_dev_certificate(state_dir: Path) -> DevCertificate:
    """Create (once) a development CA and a certificate for localhost, 127.0.0.1 and ::1.

    Clients trust ``dev-ca.pem``. The keys are written owner-only (0600).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    dev = DevCertificate(state_dir / DEV_CA, state_dir / DEV_CERT, state_dir / DEV_KEY)
    if dev.ca_file.exists() and dev.cert_file.exists() and dev.key_file.exists():
        return dev
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gameserver development CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(
        dev.key_file,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    dev.cert_file.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    dev.ca_file.write_bytes(ca_cert.public_bytes(pem))
    return dev


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context with the ssl module's secure defaults and TLS 1.2 at the least."""
    for what, path in (("certificate", cert_file), ("key", key_file)):
        if not Path(path).is_file():
            raise CertificateError(f"TLS {what} file not found: {path}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except (ssl.SSLError, ValueError) as exc:
        raise CertificateError(
            f"cannot use certificate {cert_file} with key {key_file}: {exc}"
        ) from None
    return ctx
