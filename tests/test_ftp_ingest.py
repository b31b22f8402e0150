"""FTP ingest (producers/ftp_server.py) on 127.0.0.1 with Python's ftplib, into the embedded stack's database and
object store: a camera account's photo (with an XMP sidecar uploaded first), wrong credentials, an aborted upload
that is never ingested, no downloads, and an agency account whose NewsML-G2 document ingests its staged media."""

from __future__ import annotations

import ftplib
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core import db
from core.settings import Settings
from core.storage import ObjectStore
from models.media_metadata import extract, sidecar_key
from producers.ftp_server import FtpAccount, FtpIngestServer, password_hash
from producers.ingest import Ingestor
from tests.test_agency import NEWSML
from tests.test_model_media_metadata import WIRE, tagged

pytestmark = pytest.mark.integration


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def ftp_server(env: Settings, tmp_path: Path) -> Iterator[FtpIngestServer]:
    accounts = [FtpAccount("nikon", password_hash("s3cret"), collection="sports"),
                FtpAccount("reuters", password_hash("wire"), agency=True, source="reuters")]
    srv = FtpIngestServer(Ingestor(env), accounts, tmp_path / "ftp")  # 127.0.0.1, a free port
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def login(srv: FtpIngestServer, user: str, password: str) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(*srv.address, timeout=10)
    ftp.login(user, password)
    return ftp


def wait_results(srv: FtpIngestServer, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(srv.results) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(srv.results) >= n, srv.results


def test_camera_upload_with_sidecar_bad_login_aborted_upload_and_no_download(
        env: Settings, ftp_server: FtpIngestServer) -> None:
    with pytest.raises(ftplib.error_perm):
        login(ftp_server, "nikon", "wrong")
    with pytest.raises(ftplib.error_perm):
        login(ftp_server, "nobody", "s3cret")
    photo = tagged(jpeg((200, 30, 30)), **WIRE)
    sidecar = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               b'<rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
               b'photoshop:Headline="Desk headline"/></rdf:RDF></x:xmpmeta>')
    ftp = login(ftp_server, "nikon", "s3cret")
    ftp.storbinary("STOR DSC_0001.xmp", io.BytesIO(sidecar))
    ftp.storbinary("STOR DSC_0001.jpg", io.BytesIO(photo))
    wait_results(ftp_server, 2)
    got = ftp_server.results[1]
    assert got.outcome == "ingested" and got.asset_id is not None, ftp_server.results
    m = extract(photo, "image", ObjectStore(env).get(sidecar_key(got.asset_id)))
    assert m.headline == "Desk headline" and m.credit == "Reuters"  # the sidecar wins, the rest from the file
    with db.connect(env) as conn:
        row = conn.execute("SELECT source, collection, filename FROM assets WHERE asset_id=%s",
                           (got.asset_id,)).fetchone()
    assert row is not None and (row["source"], row["collection"], row["filename"]) == (
        "ftp:nikon", "sports", "DSC_0001.jpg")
    # the same picture again: one asset
    ftp.storbinary("STOR again.jpg", io.BytesIO(photo))
    wait_results(ftp_server, 3)
    assert ftp_server.results[2].outcome == "duplicate"
    # nothing can be read back or deleted
    with pytest.raises(ftplib.error_perm):
        ftp.retrbinary("RETR DSC_0001.jpg", lambda b: None)
    with pytest.raises(ftplib.error_perm):
        ftp.delete("DSC_0001.jpg")

    # an upload cut off mid-way (ABOR, then the connection drops) is never ingested
    big = jpeg((10, 10, 200), (1600, 1200))
    conn = ftp.transfercmd("STOR cut.jpg")
    conn.sendall(big[: len(big) // 3])
    ftp.sock.sendall(b"ABOR\r\n")
    conn.close()
    ftp.sock.close()
    wait_results(ftp_server, 4)
    assert ftp_server.results[3].outcome in ("incomplete",), ftp_server.results
    with db.connect(env) as conn2:
        assert db.scalar(conn2, "SELECT count(*) FROM assets") == 1
    assert not any(p.name == "cut.jpg" for p in (ftp_server.root / "nikon").iterdir())


def test_agency_account_stages_media_until_its_newsml_document(env: Settings, ftp_server: FtpIngestServer) -> None:
    ftp = login(ftp_server, "reuters", "wire")
    photo = jpeg((30, 160, 60))
    ftp.storbinary("STOR photo.jpg", io.BytesIO(photo))
    ftp.storbinary("STOR thumb.jpg", io.BytesIO(jpeg((30, 160, 60), (32, 24))))
    ftp.storbinary("STOR item.xml", io.BytesIO(NEWSML))
    ftp.quit()
    wait_results(ftp_server, 3)
    assert [r.outcome for r in ftp_server.results] == ["staged", "staged", "ingested"], ftp_server.results
    aid = ftp_server.results[2].asset_id
    assert aid is not None
    m = extract(photo, "image", ObjectStore(env).get(sidecar_key(aid)))
    assert (m.headline, m.credit) == ("Elbe bridge opens", "Reuters/Jane Doe")
    with db.connect(env) as conn:
        assert conn.execute("SELECT source FROM assets WHERE asset_id=%s", (aid,)).fetchone()["source"] == \
            "reuters:newsml"
        assert conn.execute("SELECT embargo_until FROM asset_lifecycle WHERE asset_id=%s", (aid,)).fetchone()
    assert list((ftp_server.root / "reuters").iterdir()) == []  # the staged renditions went with the document
    assert socket.gethostbyname(ftp_server.address[0]) == "127.0.0.1"


def test_ftps_required_upload_is_ingested_and_searchable_and_plain_login_refused(
        stack_settings: Settings, sample_files: list[Path], tmp_path: Path) -> None:
    """FTPS (explicit AUTH TLS, PROT P) with a self-signed certificate made by ensure_certificate: a plain login is
    refused before the password is even read, a real photo sent over TLS is ingested, annotated and found."""
    import ssl

    from argus import pipeline
    from argus.workers import Supervisor, default_workers
    from core import kafka
    from producers.ftp_server import FtpTls, ensure_certificate
    from retrieval.search import get_search_index
    from retrieval.search.interface import SearchQuery
    from tests.support.stack import isolated_settings
    from tests.test_metadata_rights import _photo

    s = isolated_settings(stack_settings, "t_ftps")
    s.models = ["media_metadata"]
    kafka.ensure_topics(s, kafka.all_topics(s, s.models))
    cert, key = ensure_certificate(tmp_path / "tls")
    assert ensure_certificate(tmp_path / "tls") == (cert, key) and oct(key.stat().st_mode & 0o777) == "0o600"
    srv = FtpIngestServer(Ingestor(s), [FtpAccount("nikon", password_hash("s3cret"), collection="sports")],
                          tmp_path / "ftp", tls=FtpTls(cert, key, required=True))
    srv.start()
    sup = Supervisor(s, default_workers(s))
    sup.start()
    try:
        plain = ftplib.FTP()
        plain.connect(*srv.address, timeout=10)
        with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required"):
            plain.login("nikon", "s3cret")
        plain.close()

        ctx = ssl.create_default_context(cafile=str(cert))  # the client verifies the server's certificate
        ftps = ftplib.FTP_TLS(context=ctx)
        ftps.connect(*srv.address, timeout=10)
        ftps.login("nikon", "s3cret")  # AUTH TLS first
        assert isinstance(ftps.sock, ssl.SSLSocket) and ftps.sock.version() in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required on the data channel"):
            ftps.storbinary("STOR clear.jpg", io.BytesIO(jpeg((1, 2, 3))))  # PROT C: refused
        ftps.prot_p()
        photo = tagged(_photo(sorted(sample_files)[0]), **WIRE)
        ftps.storbinary("STOR DSC_0042.jpg", io.BytesIO(photo))
        ftps.quit()
        wait_results(srv, 1)
        got = srv.results[-1]
        assert got.outcome == "ingested" and got.asset_id is not None, srv.results
        final = pipeline.wait_until_done(s, [got.asset_id], "media_metadata", timeout=180)
        assert final.done and final.failed == 0, (final, sup.dead())
        index = get_search_index(s)
        deadline = time.monotonic() + 60
        while not (hits := [h.asset_id for h in index.search(SearchQuery(text="elbe bridge")).hits]):
            assert time.monotonic() < deadline, "the FTPS upload never became searchable"
            time.sleep(0.3)
        assert hits == [got.asset_id]
        with db.connect(s) as conn:
            row = conn.execute("SELECT source, collection FROM assets WHERE asset_id=%s", (got.asset_id,)).fetchone()
        assert (row["source"], row["collection"]) == ("ftp:nikon", "sports")
    finally:
        sup.stop()
        srv.stop()
