"""FTP ingest for cameras and wire drops (pyftpdlib): most professional camera bodies send pictures over FTP.

Each photographer (or agency) has an account: a user name, a password (only its sha256 is kept), a collection
and a source label. A file is ingested through the same ingest core as an upload (producers/ingest.py) once the
server saw its STOR complete; an aborted or cut transfer (``on_incomplete_file_received``) is deleted, never
ingested. The staged file is removed after ingest (the original lives in the object store, content-addressed).

- ``photo.xmp`` uploaded before ``photo.jpg`` is its sidecar (the media_metadata model reads it; the file's own
  metadata loses to it, as a photo desk edits captions in the sidecar);
- an agency account (``agency=True``) stages its media until a ninjs (``.json``) or NewsML-G2 (``.xml``) document
  naming them arrives, which ingests its best rendition (producers/agency.py; renditions are only looked up in
  the account's own folder) and removes the staged files it names;
- accounts may upload (``w``), list (``l``), change and make folders (``e``, ``m``); never download, delete or
  rename: an FTP account cannot read anything back;
- passive ports are configurable (a firewall opens exactly those);
- FTPS (explicit ``AUTH TLS``, pyftpdlib's TLS_FTPHandler on pyOpenSSL, TLS 1.2 at least) when a certificate is
  given (``FtpTls``); ``ensure_certificate`` makes a self-signed one when the operator has none. With
  ``required`` a login before ``AUTH TLS`` and a transfer before ``PROT P`` are refused (550): neither the
  password nor the pictures ever cross the network in clear.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from core.imaging import MediaDecodeError, load_image
from producers.agency import AgencyError, ingest_document, resolve
from producers.ingest import IngestError, Ingestor, Metadata

log = logging.getLogger(__name__)


def truncated(path: Path, max_pixels: int) -> bool:
    """A picture whose data stops early: a transfer cut short. In FTP's stream mode the end of the data connection IS
    the end of the file, so a camera that loses its link mid-STOR looks like a complete upload unless an ABOR
    arrived first; decoding (at 1/8 scale: cheap) tells. Other damage is left to the pipeline's decoders."""
    data = path.read_bytes()
    if not (data.startswith(b"\xff\xd8") or data.startswith(b"\x89PNG\r\n\x1a\n")):
        return False
    try:
        load_image(data, max_pixels, target=64)
    except MediaDecodeError as exc:
        return "truncated" in exc.reason
    return False
PERMS = "elmw"  # cd, list, mkdir, store: no retrieve, delete or rename
DOCUMENTS = (".json", ".xml")


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


@dataclass(frozen=True)
class FtpAccount:
    user: str
    password_sha256: str
    collection: str | None = None
    source: str | None = None  # default: ftp:<user>
    agency: bool = False  # media waits for its ninjs / NewsML-G2 document instead of being ingested alone


class _Authorizer(DummyAuthorizer):  # type: ignore[misc]
    """Passwords checked against their sha256 (constant time); the plain text is never stored."""

    def __init__(self, accounts: list[FtpAccount], root: Path) -> None:
        super().__init__()
        self.accounts = {a.user: a for a in accounts}
        for a in accounts:
            home = root / a.user
            home.mkdir(parents=True, exist_ok=True)
            self.add_user(a.user, "", str(home), perm=PERMS)

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        acc = self.accounts.get(username)
        if acc is None or not hmac.compare_digest(password_hash(password), acc.password_sha256):
            raise AuthenticationFailed("Authentication failed.")


@dataclass(frozen=True)
class FtpTls:
    """FTPS: the server's certificate chain and key (PEM); ``required``: no login or transfer without TLS."""

    certfile: Path
    keyfile: Path
    required: bool = False


def ensure_certificate(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` in ``folder`` (``ftps-cert.pem``, ``ftps-key.pem``, the key mode 600),
    made once and kept: cameras pin or accept it on first use. An operator with a CA-signed one sets its paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / "ftps-cert.pem", folder / "ftps-key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64] or "argus-ftp"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Argus FTP ingest")])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    tmp = key_path.with_suffix(".tmp")
    tmp.write_bytes(b"")
    tmp.chmod(0o600)  # private before the key is in it
    tmp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    tmp.replace(key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _tls_context(tls: FtpTls) -> Any:
    from OpenSSL import SSL

    for f in (tls.certfile, tls.keyfile):
        if not Path(f).is_file():
            raise FileNotFoundError(f"FTPS: {f} does not exist (settings ftp.certfile / ftp.keyfile)")
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION)
    ctx.use_certificate_chain_file(str(tls.certfile))
    ctx.use_privatekey_file(str(tls.keyfile))
    ctx.check_privatekey()
    return ctx


@dataclass
class FtpResult:
    user: str
    file: str
    outcome: str  # ingested | duplicate | rejected: ... | sidecar | staged | incomplete | canceled | withheld
    asset_id: str | None = None


class FtpIngestServer:
    """One pyftpdlib server (a thread per connection) that ingests what accounts upload."""

    def __init__(self, ingestor: Ingestor, accounts: list[FtpAccount], root: Path, host: str = "127.0.0.1",
                 port: int = 0, passive_ports: range | None = None, masquerade_address: str | None = None,
                 tls: FtpTls | None = None) -> None:
        self.ingestor = ingestor
        self.root = root
        self.tls = tls
        self.results: list[FtpResult] = []
        self._lock = threading.Lock()
        owner = self
        base: type = FTPHandler
        if tls is not None:
            from pyftpdlib.handlers import TLS_FTPHandler  # needs pyOpenSSL

            base = TLS_FTPHandler

        class Handler(base):  # type: ignore[misc,valid-type]
            authorizer = _Authorizer(accounts, root)
            banner = "Argus ingest"
            permit_foreign_addresses = False

            def on_file_received(self, file: str) -> None:
                owner._received(self.username, Path(file))

            def on_incomplete_file_received(self, file: str) -> None:
                Path(file).unlink(missing_ok=True)  # a cut or aborted transfer: never ingested
                owner._note(FtpResult(self.username, Path(file).name, "incomplete"))

        if tls is not None:
            Handler.ssl_context = _tls_context(tls)  # read once, here: a bad path fails at start, not per login
            Handler.tls_control_required = Handler.tls_data_required = tls.required
        Handler.passive_ports = list(passive_ports) if passive_ports else None
        Handler.masquerade_address = masquerade_address  # the public address behind NAT, for PASV replies
        self.accounts = {a.user: a for a in accounts}
        self.server = ThreadedFTPServer((host, port), Handler)
        self.address: tuple[str, int] = self.server.socket.getsockname()[:2]
        self._thread: threading.Thread | None = None

    def _note(self, r: FtpResult) -> None:
        with self._lock:
            self.results.append(r)
        log.info("ftp %s: %s %s", r.user, r.file, r.outcome)

    def _received(self, user: str, path: Path) -> None:
        acc = self.accounts[user]
        source = acc.source or f"ftp:{user}"
        name = path.name
        if path.suffix.lower() == ".xmp":
            self._note(FtpResult(user, name, "sidecar"))  # kept for the picture of the same name
            return
        try:
            if path.suffix.lower() in DOCUMENTS:
                ar = ingest_document(self.ingestor, path, source=source, collection=acc.collection)
                self._note(FtpResult(user, name, ar.outcome, ar.ingest.asset_id if ar.ingest else None))
                for rend in ar.item.renditions:  # the staged renditions it named (inside the folder only)
                    with contextlib.suppress(AgencyError):
                        resolve(path.parent, rend.href).unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                return
            if acc.agency:
                self._note(FtpResult(user, name, "staged"))
                return
            if truncated(path, self.ingestor.settings.limits.max_image_pixels):  # a cut transfer (see truncated)
                path.unlink(missing_ok=True)
                self._note(FtpResult(user, name, "incomplete"))
                return
            side = path.with_suffix(".xmp")
            sidecar = side.read_bytes() if side.is_file() else None
            r = self.ingestor.ingest_path(path, Metadata(filename=name, source=source, collection=acc.collection),
                                          sidecar)
            self._note(FtpResult(user, name, "ingested" if r.created else "duplicate", r.asset_id))
            side.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        except (AgencyError, IngestError) as exc:
            self._note(FtpResult(user, name, f"rejected: {exc}"))
            if path.suffix.lower() in DOCUMENTS or not isinstance(exc, AgencyError):
                path.unlink(missing_ok=True)
        except OSError as exc:  # the store or the database: the file stays staged for an operator
            log.warning("ftp %s: %s not ingested yet: %s", user, name, exc)
            self._note(FtpResult(user, name, f"rejected: {exc}"))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"timeout": 0.5},
                                        name="ftp-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.close_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

