"""The embedded stack against the real servers: free ports, a temp state dir, stop/start by PID."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console

from argus.stack.base import ServiceStartError
from argus.stack.manager import EmbeddedStack
from argus.stack.ports import free_ports, settings_for_tests
from argus.stack.postgres import PostgresService
from argus.stack.seaweedfs import SeaweedFSService
from argus.stack.tansu import TansuService
from core.settings import KafkaSettings, Settings, TritonSettings

pytestmark = pytest.mark.integration

CORE = ["seaweedfs", "tansu", "postgres"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    settings = settings_for_tests(tmp_path_factory.mktemp("stack"))
    assert settings.kafka.storage == "s3"  # the durable broker is what these tests are about
    st = EmbeddedStack(settings, console=Console(quiet=True))
    try:
        st.up(services=CORE)
        yield st
    finally:
        st.down()


# ---- helpers --------------------------------------------------------------------------------------
def _create_topic(bootstrap: str, topic: str, partitions: int = 4) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        future.result(timeout=10)


def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(15) == 0


def _drain(consumer: Consumer, n: int, timeout: float = 30.0) -> set[bytes]:
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            seen.add(msg.value())
    finally:
        consumer.close()
    return seen


def _consume_group(bootstrap: str, topic: str, n: int) -> set[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",  # tansu's end offsets are wrong: never rely on "latest"
            "session.timeout.ms": 6000,  # tansu's JoinGroup waits session.timeout/2
        }
    )
    consumer.subscribe([topic])
    return _drain(consumer, n)


def _consume_assigned(bootstrap: str, topic: str, n: int, partitions: int = 4) -> set[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    return _drain(consumer, n)


def _pg(settings: Settings) -> psycopg.Connection:
    return psycopg.connect(settings.postgres_dsn, autocommit=True, connect_timeout=5)


# ---- the core stack -----------------------------------------------------------------------------
def test_status_reports_running_and_healthy(stack: EmbeddedStack) -> None:
    by_name = {s.name: s for s in stack.status()}
    assert [s.name for s in stack.status()] == ["seaweedfs", "tansu", "postgres", "triton"]
    for name in CORE:
        st = by_name[name]
        assert st.running and st.healthy and st.pid, st
        assert stack.service(name).pid_path.read_text().strip() == str(st.pid)
        assert st.log_path.exists()
    assert not by_name["triton"].running and not by_name["triton"].healthy
    assert by_name["tansu"].endpoint == stack.settings.kafka_bootstrap


def test_up_is_idempotent_and_provisions(stack: EmbeddedStack) -> None:
    before = {s.name: s.pid for s in stack.status()}
    stack.up(services=CORE)
    assert {s.name: s.pid for s in stack.status()} == before
    client, http = stack.service("seaweedfs").client()  # type: ignore[attr-defined]
    try:
        assert client.bucket_exists(stack.settings.s3.media_bucket)
        assert client.bucket_exists(stack.settings.s3.broker_bucket)
    finally:
        http.clear()
    with _pg(stack.settings) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()


def test_data_survives_down_up(stack: EmbeddedStack) -> None:
    settings = stack.settings
    topic = f"durable-{uuid.uuid4().hex[:8]}"
    _create_topic(settings.kafka_bootstrap, topic)
    _produce(settings.kafka_bootstrap, topic, 100)
    with _pg(settings) as conn:
        conn.execute("CREATE TABLE survivors (id int PRIMARY KEY, emb vector(3))")
        conn.execute("INSERT INTO survivors VALUES (1, '[1,2,3]'), (2, '[4,5,6]')")

    stack.down()
    assert not any(s.running for s in stack.status())
    assert not any(stack.service(n).pid_path.exists() for n in CORE)
    stack.up(services=CORE)

    values = _consume_group(settings.kafka_bootstrap, topic, 100)
    assert values == {f"v{i}".encode() for i in range(100)}
    with _pg(settings) as conn:
        rows = conn.execute("SELECT id, emb::text FROM survivors ORDER BY id").fetchall()
    assert rows == [(1, "[1,2,3]"), (2, "[4,5,6]")]


def test_tansu_survives_kill_9(stack: EmbeddedStack) -> None:
    settings = stack.settings
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    _create_topic(settings.kafka_bootstrap, topic)
    _produce(settings.kafka_bootstrap, topic, 20)
    tansu = stack.service("tansu")
    old_pid = tansu.pid()
    assert tansu.kill()
    assert not tansu.is_running()
    tansu.start()
    tansu.wait_healthy()
    assert tansu.pid() not in (None, old_pid)
    assert _consume_assigned(settings.kafka_bootstrap, topic, 20) == {f"v{i}".encode() for i in range(20)}


# ---- failures -------------------------------------------------------------------------------------
def test_port_in_use_raises_naming_service_and_log(tmp_path: Path) -> None:
    settings = settings_for_tests(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", settings.ports.postgres))
        blocker.listen()
        svc = PostgresService(settings)
        with pytest.raises(ServiceStartError) as info:
            svc.start()
    err = info.value
    assert err.service == "postgres"
    assert "postgres" in str(err) and str(svc.log_path) in str(err)
    assert str(settings.ports.postgres) in str(err)
    assert not svc.is_running()


def test_exit_during_start_raises_with_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for_tests(tmp_path, kafka=KafkaSettings(storage="memory"))
    svc = TansuService(settings)
    monkeypatch.setattr(svc, "args", lambda: ["broker", "--no-such-flag"])
    svc.start()
    with pytest.raises(ServiceStartError) as info:
        svc.wait_healthy(timeout=20)
    message = str(info.value)
    assert message.startswith("tansu:") and "exited with code" in message
    assert str(svc.log_path) in message and "--no-such-flag" in info.value.log_tail
    assert not svc.pid_path.exists()


def test_stop_never_signals_a_foreign_pid(tmp_path: Path) -> None:
    settings = settings_for_tests(tmp_path)
    svc = SeaweedFSService(settings)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        svc.pid_path.parent.mkdir(parents=True)
        svc.pid_path.write_text(f"{other.pid}\n")  # e.g. a PID recycled after a reboot
        assert not svc.is_running()
        assert svc.stop() is False and svc.kill() is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_free_ports_and_test_settings(tmp_path: Path) -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    a, b = settings_for_tests(tmp_path / "a"), settings_for_tests(tmp_path / "b")
    assert a.abs_state_dir == (tmp_path / "a").resolve()
    values = list(a.ports.model_dump().values())
    assert len(set(values)) == len(values)
    assert a.ports.seaweed_admin + 10000 <= 65535
    assert a.ports != b.ports


# ---- Triton -----------------------------------------------------------------------------------------
IDENTITY_CONFIG = """\
name: "identity"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
instance_group [ { count: 1 } ]
"""

IDENTITY_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x.copy())]))
        return responses
"""


def test_triton_serves_a_python_model(tmp_path: Path) -> None:
    import tritonclient.http as triton_http

    repo_root = tmp_path / "repo"
    model_dir = repo_root / "triton_repo" / "identity"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(IDENTITY_CONFIG)  # no configs/cpu.pbtxt: falls back to this
    (model_dir / "1" / "model.py").write_text(textwrap.dedent(IDENTITY_MODEL))
    settings = settings_for_tests(
        tmp_path / "state", repo_root=repo_root, triton=TritonSettings(models=["identity"])
    )
    stack = EmbeddedStack(settings, console=Console(quiet=True))
    try:
        stack.up(services=["triton"])
        status = {s.name: s for s in stack.status()}
        assert status["triton"].running and status["triton"].healthy
        assert not status["seaweedfs"].running  # a subset really is a subset
        client = triton_http.InferenceServerClient(settings.triton_url)
        try:
            assert client.is_model_ready("identity")
            x = np.arange(8, dtype=np.float32).reshape(2, 4)
            inp = triton_http.InferInput("INPUT0", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            result = client.infer("identity", [inp])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)
        finally:
            client.close()  # an open keep-alive connection would hold Triton's shutdown
    finally:
        stack.down()
    assert not stack.service("triton").is_running()
