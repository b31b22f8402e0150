"""Security: hashed API keys with scopes, rate and size limits, expiring presigned URLs, parameterized
SQL only, and no secret in any worker's log."""

from __future__ import annotations

import ast
import io
import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from argus import pipeline
from argus.workers import Supervisor, default_workers
from core import db
from core.auth import KeyStore, create_key, hash_key, revoke_key
from core.redact import install_redaction
from core.settings import SETTINGS_ENV, Settings
from core.storage import ObjectStore
from producers.ingest import Ingestor, Metadata

REPO = Path(__file__).resolve().parent.parent


def jpeg(color: str, size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "JPEG")
    return buf.getvalue()


def strict(env: Settings, **security: object) -> Settings:
    s = env.model_copy(deep=True)
    s.security.anonymous_read = False
    s.security.key_cache_s = 0.0  # revocation takes effect at once in the test
    for k, v in security.items():
        setattr(s.security, k, v)
    return s


@pytest.mark.integration
def test_keys_are_stored_hashed_and_scopes_are_enforced(env: Settings) -> None:
    s = strict(env)
    _, read = create_key(s, ["read"], "desk")
    _, upload = create_key(s, ["upload"], "camera")
    admin_id, admin = create_key(s, ["admin"], "ops")
    with db.connect(s) as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
    stored = json.dumps([dict(r) for r in rows], default=str)
    assert all(tok not in stored for tok in (read, upload, admin))  # only digests are stored
    assert hash_key(upload) in stored

    c = TestClient(create_app(s))
    files = {"file": ("a.jpg", jpeg("red"))}
    assert c.get("/v1/search").status_code == 401  # anonymous read switched off
    assert c.get("/v1/search", headers={"X-API-Key": read}).status_code == 200
    assert c.get("/v1/search", headers={"X-API-Key": upload}).status_code == 403  # upload is not read
    assert c.post("/v1/assets", files=files, headers={"X-API-Key": read}).status_code == 403
    assert c.post("/v1/assets", files=files, headers={"X-API-Key": upload}).status_code == 201
    assert c.post("/v1/assets", files={"file": ("b.jpg", jpeg("blue"))},
                  headers={"X-API-Key": admin}).status_code == 201
    assert c.get("/v1/search", headers={"X-API-Key": admin}).status_code == 200
    assert c.get("/v1/search", headers={"X-API-Key": "argus_nope_guess"}).status_code == 401
    assert c.get("/healthz").status_code == 200  # ops endpoints stay open
    assert revoke_key(s, admin_id)
    assert c.get("/v1/search", headers={"X-API-Key": admin}).status_code == 401

    # the development key in plain text keeps working, but the key store holds only its digest
    store = KeyStore(s)
    assert "dev-key" not in repr(store._static) and store.authenticate("dev-key") is not None
    # keys can also be configured as digests in settings
    s2 = s.model_copy(deep=True)
    s2.api_keys = []
    s2.security.api_key_hashes = [f"{hash_key('from-settings-1234')}:read"]
    p = KeyStore(s2).authenticate("from-settings-1234")
    assert p is not None and p.allows("read") and not p.allows("upload")


@pytest.mark.integration
def test_cli_creates_a_working_key(env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from argus.cli import app

    monkeypatch.setenv(SETTINGS_ENV, env.model_dump_json())
    out = CliRunner().invoke(app, ["keys", "create", "--scope", "upload", "--name", "cam-7"])
    assert out.exit_code == 0, out.output
    token = out.output.strip().splitlines()[-1]
    assert token.startswith("argus_")
    r = TestClient(create_app(env)).post("/v1/assets", files={"file": ("c.jpg", jpeg("green"))},
                                          headers={"X-API-Key": token})
    assert r.status_code == 201
    assert CliRunner().invoke(app, ["keys", "create", "--scope", "root"]).exit_code != 0


@pytest.mark.integration
def test_rate_and_size_limits(env: Settings) -> None:
    s = env.model_copy(deep=True)
    s.security.rate_per_s, s.security.rate_burst = 0.5, 3
    s.security.max_request_bytes = 20_000
    c = TestClient(create_app(s))
    codes = [c.get("/v1/search").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.get("/v1/search")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # another client (a key) has its own bucket
    assert c.get("/v1/search", headers={"X-API-Key": "dev-key"}).status_code == 200
    big = jpeg("red", 400) + b"\0" * 30_000
    h = {"X-API-Key": "dev-key"}
    r = c.post("/v1/assets", files={"file": ("big.jpg", big)}, headers=h)
    assert r.status_code == 413  # declared Content-Length over the cap: refused before reading

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(10):
            yield b"x" * 4096

    s2 = s.model_copy(deep=True)
    s2.security.rate_burst = 100
    c2 = TestClient(create_app(s2))
    r = c2.post("/v1/assets", content=chunks(), headers={**h, "Content-Type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 413


@pytest.mark.integration
def test_presigned_url_expires(env: Settings) -> None:
    s = env.model_copy(deep=True)
    s.s3.presign_expiry_s = 1
    store = ObjectStore(s)
    store.ensure_bucket()
    store.put_bytes("test/expiring.jpg", jpeg("red"), "image/jpeg")
    url = store.presigned_url("test/expiring.jpg", "expiring.jpg")
    assert httpx.get(url).status_code == 200
    time.sleep(2.5)
    r = httpx.get(url)
    assert r.status_code == 403 and b"expired" in r.content.lower(), r.text[:300]


# ---- parameterized SQL only -------------------------------------------------------------------
SQL_CALLS = {"execute", "executemany", "scalar", "copy"}
PRODUCT_DIRS = ("argus", "api", "producers", "processors", "sinks", "schemas", "benchmarks")


def _dynamic_sql(node: ast.expr) -> str | None:
    """Why the first argument of an execute() is built from strings at run time, or None when safe."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return "f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return "string concatenation/% formatting"
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)):
        return "str.format"
    return None


def test_sql_is_parameterized_never_built_from_strings() -> None:
    """Every execute()/executemany()/scalar() gets a constant, a name or psycopg.sql composition as its
    query; values always travel as parameters. (psycopg.sql.SQL(...).format(...) is the safe way to
    compose identifiers; it is a Call on sql.SQL, not on a str constant.)"""
    offences = []
    for d in PRODUCT_DIRS:
        for path in sorted((REPO / d).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name not in SQL_CALLS:
                    continue
                query = node.args[1] if name == "scalar" and len(node.args) > 1 else node.args[0]
                why = _dynamic_sql(query)
                if why:
                    offences.append(f"{path.relative_to(REPO)}:{node.lineno}: SQL built with {why}")
    assert not offences, "\n".join(offences)


# ---- secrets never logged ------------------------------------------------------------------------
def test_redaction_filter_masks_secrets(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    s = Settings(api_keys=["canary-key-123456"])
    s.postgres.dsn = "host=db user=argus password='pw canary 98765' dbname=argus"
    logger = logging.getLogger("argus.test.redact")
    flt = install_redaction(s)
    caplog.handler.addFilter(flt)
    logger.warning("connecting with %s and key %s", s.postgres.dsn, "canary-key-123456")
    try:
        raise RuntimeError(f"boom {s.s3.secret_key}")
    except RuntimeError:
        logger.exception("failed")
    text = caplog.text
    assert "pw canary 98765" not in text and "canary-key-123456" not in text and s.s3.secret_key not in text
    assert "***" in text


@pytest.mark.integration
@pytest.mark.slow
def test_workers_never_log_secrets(env: Settings, stack) -> None:  # type: ignore[no-untyped-def]
    """Run every worker with known secrets in its settings, make them log errors (PostgreSQL killed
    for a moment), and search their logs for the secrets."""
    s = env.model_copy(deep=True)
    canary_pw = "Canary-PG-Password-4242"
    canary_key = "canary-api-key-7f3e9a1c"
    s.postgres.dsn = (f"host=127.0.0.1 port={s.ports.postgres} user={s.postgres.user} "
                      f"dbname={s.postgres.database} password={canary_pw}")  # trust auth ignores it
    s.api_keys = [canary_key]
    sup = Supervisor(s, default_workers(s))
    offsets = {n: (sup.log_dir / f"{n}.log").stat().st_size if (sup.log_dir / f"{n}.log").exists() else 0
               for n in sup.workers}
    sup.start()
    try:
        ids = [Ingestor(s).ingest_bytes(jpeg(c), Metadata(filename=f"{c}.jpg")).asset_id
               for c in ("red", "green", "blue")]
        assert pipeline.wait_until_done(s, ids, s.models[0], timeout=180).done
        pg = stack.service("postgres")
        pg.kill()  # errors get logged now: connection failures in the relay and the sinks
        Ingestor(s).store.put_bytes("noise", b"x", "image/jpeg")
        time.sleep(4)
    finally:
        pg = stack.service("postgres")
        if not pg.is_running():
            pg.start()
            pg.wait_healthy(60)
        sup.stop()
    logs = ""
    for name, off in offsets.items():
        with open(sup.log_dir / f"{name}.log", "rb") as fh:
            fh.seek(off)
            logs += fh.read().decode(errors="replace")
    assert "unavailable" in logs.lower() or "retrying" in logs.lower(), "the outage should have been logged"
    for secret in (canary_pw, canary_key, s.s3.secret_key):
        assert secret not in logs, f"secret {secret[:6]}... found in a worker log"
