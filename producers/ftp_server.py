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
- passive ports are configurable (a firewall opens exactly those). FTPS needs pyOpenSSL, which this project does
  not ship: TLS is not offered yet (docs/metadata.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
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


@dataclass
class FtpResult:
    user: str
    file: str
    outcome: str  # ingested | duplicate | rejected: ... | sidecar | staged | incomplete | canceled | withheld
    asset_id: str | None = None


class FtpIngestServer:
    """One pyftpdlib server (a thread per connection) that ingests what accounts upload."""

    def __init__(self, ingestor: Ingestor, accounts: list[FtpAccount], root: Path, host: str = "127.0.0.1",
                 port: int = 0, passive_ports: range | None = None, masquerade_address: str | None = None) -> None:
        self.ingestor = ingestor
        self.root = root
        self.results: list[FtpResult] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(FTPHandler):  # type: ignore[misc]
            authorizer = _Authorizer(accounts, root)
            banner = "Argus ingest"
            permit_foreign_addresses = False

            def on_file_received(self, file: str) -> None:
                owner._received(self.username, Path(file))

            def on_incomplete_file_received(self, file: str) -> None:
                Path(file).unlink(missing_ok=True)  # a cut or aborted transfer: never ingested
                owner._note(FtpResult(self.username, Path(file).name, "incomplete"))

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

