"""Keys and self-signed certificates made on the spot, and a simulator served over TLS with one.

Some clients refuse plain HTTP for sign-in (``msal`` takes only an ``https`` authority), and app registrations
authenticate with a certificate's key and thumbprint. Both are generated here for a run of the sandbox, never
stored: :func:`self_signed` gives a key, its certificate and the certificate's SHA-1 thumbprint;
:func:`serving_tls` serves an app on loopback with such a certificate (the client trusts the certificate
file as its CA bundle).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

__all__ = ["KeyPair", "self_signed", "serving_tls"]


@dataclass(frozen=True)
class KeyPair:
    """An RSA key (PEM, PKCS#8), its public key (PEM), a self-signed certificate (PEM) and the certificate's
    SHA-1 thumbprint (hex, upper case, as Entra ID shows it)."""

    private_key: str
    public_key: str
    certificate: str
    thumbprint: str


def self_signed(common_name: str, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> KeyPair:
    """A fresh 2048-bit RSA key and a certificate for ``hosts`` valid for a day."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                   .not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return KeyPair(
        private_key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode(),
        public_key=key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        certificate=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra ID's x5t is SHA-1
    )


class _Server(uvicorn.Server):
    """uvicorn's server, telling when its start is over (started or not)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_over.set()


@contextmanager
def serving_tls(app: FastAPI, *, keys: KeyPair, folder: Path, start_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve ``app`` over TLS on a free loopback port while the block runs; yields ``https://127.0.0.1:port``.
    The key and certificate are written to ``folder`` (uvicorn reads them from files)."""
    key_file, cert_file = folder / "tls-key.pem", folder / "tls-cert.pem"
    key_file.write_text(keys.private_key, encoding="utf-8")
    key_file.chmod(0o600)
    cert_file.write_text(keys.certificate, encoding="utf-8")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ssl_keyfile=str(key_file), ssl_certfile=str(cert_file),
                            log_level="warning", access_log=False, lifespan="off")
    server = _Server(config)

    def run() -> None:
        try:
            server.run()
        finally:
            server.startup_over.set()  # a start that failed before ``startup``

    thread = threading.Thread(target=run, name="sim-tls", daemon=True)
    thread.start()
    try:
        if not server.startup_over.wait(start_timeout_s) or not server.started:
            raise RuntimeError("the TLS simulator did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
