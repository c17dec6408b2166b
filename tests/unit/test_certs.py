"""stack/certs.py (`make certs`): a private CA and a server certificate that OpenSSL accepts for
every listed name and refuses for others; the CA kept across issues; keys private; a bad name
refused before anything is written."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from stack import certs


def handshake(directory: Path, server_name: str) -> None:
    """A TLS handshake on loopback with the issued server certificate, the client trusting only
    the CA and checking `server_name`; raises ssl.SSLError when verification fails."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(directory / "server.pem", directory / "server-key.pem")
    client_context = ssl.create_default_context(cafile=directory / "ca.pem")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_context.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                tls.sendall(b"x")
        finally:
            thread.join(10)


def test_the_certificate_is_trusted_for_its_names_only(tmp_path) -> None:
    assert certs.main(["--dir", str(tmp_path), "prefect.example.com", "10.0.0.5"]) == 0
    for name in ("prefect.example.com", "localhost", "127.0.0.1", "10.0.0.5"):
        handshake(tmp_path, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path, "other.example.com")
    for key in ("ca-key.pem", "server-key.pem"):
        assert (tmp_path / key).stat().st_mode & 0o777 == 0o600, key


def test_the_authority_is_kept_when_the_server_certificate_is_issued_again(tmp_path) -> None:
    certs.issue(tmp_path, ["first.example.com"])
    ca = (tmp_path / "ca.pem").read_bytes()
    certs.issue(tmp_path, ["second.example.com"])
    assert (tmp_path / "ca.pem").read_bytes() == ca
    handshake(tmp_path, "second.example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path, "first.example.com")


@pytest.mark.parametrize("bad", ["has space", "http://x", "*.wild.example", ""])
def test_a_bad_name_is_named_and_nothing_is_written(tmp_path, capsys, bad) -> None:
    assert certs.main(["--dir", str(tmp_path / "certs"), "ok.example.com", bad]) == 2
    assert f"{bad!r} is neither a DNS name nor an IP address" in capsys.readouterr().err
    assert not (tmp_path / "certs").exists()


def test_the_default_directory_is_git_ignored() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(certs.DEFAULT_DIR / "ca-key.pem")],
        cwd=certs.DEFAULT_DIR.parent,
    )
    assert ignored.returncode == 0, "certs/ would be committed with its keys"
