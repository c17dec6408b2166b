"""A private certificate authority and a server certificate for the names the server answers to:
`python -m stack.certs [--dir DIR] NAME...` (`make certs NAMES="prefect.example.com 10.0.0.5"`).

Writes into DIR (default `certs/`, git-ignored):

- `ca.pem`: the authority's certificate, what clients trust (`SSL_CERT_FILE`,
  `PREFECT_API_SSL_CERT_FILE`, a browser's certificate store);
- `ca-key.pem` (mode 0600): its key, kept to issue the next server certificate;
- `server.pem`: the server's certificate, then the authority's (the chain a TLS server sends);
- `server-key.pem` (mode 0600): the server's key.

The authority is made once and reused, so clients keep trusting it when the server certificate
is issued again for other names. Each NAME is a DNS name or an IP address; `localhost` and
`127.0.0.1` are always included, for clients on the server's own machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deployments import settings

DEFAULT_DIR = settings.REPO_ROOT / "certs"
ALWAYS = ("localhost", "127.0.0.1")
CA_DAYS = 3650
# Browsers refuse server certificates valid for longer than 398 days.
SERVER_DAYS = 397
CA_NAME = "prefect-deployments private CA"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def subject_names(names: list[str]) -> list[x509.GeneralName]:
    """Each name as an IP address or a DNS name, ALWAYS included, each once. Raises ValueError
    naming a name that is neither."""
    found: list[x509.GeneralName] = []
    for name in [*ALWAYS, *names]:
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            if not name or any(c in name for c in " /:@*") or name.startswith(("-", ".")):
                raise ValueError(f"{name!r} is neither a DNS name nor an IP address") from None
            entry = x509.DNSName(name.lower())
        if entry not in found:
            found.append(entry)
    return found


def _authority(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The authority in `directory`, made first if it has none."""
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return certificate, key
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(_pem(certificate))
    return certificate, key


def issue(directory: Path, names: list[str]) -> list[x509.GeneralName]:
    """The authority (made once) and a new server certificate for `names` in `directory`; the
    names it certifies."""
    alternative = subject_names(names)  # refuses a bad name before anything is written
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca, ca_key = _authority(directory)
    key = _key()
    now = datetime.now(UTC)
    first = alternative[len(ALWAYS)] if len(alternative) > len(ALWAYS) else alternative[0]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(first.value))]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / "server-key.pem", key)
    (directory / "server.pem").write_bytes(_pem(certificate, ca))
    return alternative


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack.certs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("names", nargs="*", help="DNS names and IP addresses of the server")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where to write (certs/)")
    args = parser.parse_args(argv)
    try:
        certified = issue(args.dir, args.names)
    except ValueError as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return 2
    shown = ", ".join(str(name.value) for name in certified)
    where = args.dir
    print(f"server certificate for {shown} in {where}/server.pem (key server-key.pem)")
    print(f"clients trust {where}/ca.pem: SSL_CERT_FILE={where}/ca.pem, or add it to a browser")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
