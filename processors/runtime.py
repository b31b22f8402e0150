"""The stream-processor runtime every model shares: consume -> batch -> fetch -> decode -> Triton -> emit.

One consumer group per model (``argus-processor-<model>``) reads ``media.uploaded``. A batch is up to
``processor.batch_size`` records or ``processor.batch_timeout_ms``; fetch + decode run on a small
thread pool, the decoded items go to Triton in one request per ``max_batch`` rows, and one
annotation event per item goes to ``annotations.<model>``. Offsets are committed only after every
output of the batch is acknowledged by the broker (at-least-once; the sinks deduplicate by the
deterministic annotation id, which makes the effect exactly-once).

What cannot be processed (malformed event, missing object, undecodable media, a model error on
this input) becomes a dead letter with the reason; it never blocks the partition. What may recover
(Triton, S3 or the broker unreachable) is retried with capped backoff, never dropped.
"""

from __future__ import annotations

import base64
import logging
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from confluent_kafka import KafkaError, Message, TopicPartition
from tenacity import retry, retry_if_exception_type, stop_never, wait_exponential
from tritonclient.utils import InferenceServerException

from argus import faults, kafka
from argus.imaging import MediaDecodeError
from argus.settings import Settings
from argus.storage import ObjectMissing, ObjectStore
from argus.triton import TritonClient
from schemas.events import Annotation, AnnotationPayload, DeadLetter, MediaUploaded, SchemaError, dump, parse
from schemas.events import annotation_id as make_annotation_id

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One model input row cut from an asset (the image, or one keyframe of a video)."""

    event: MediaUploaded
    keyframe_ms: int | None
    row: dict[str, np.ndarray]  # input name -> array without the batch axis


class ModelHandler(ABC):
    """What one model adds to the shared runtime: its inputs and how its outputs become payloads."""

    model: ClassVar[str]  # Triton model name == annotation model name == topic suffix
    media_types: ClassVar[frozenset[str]] = frozenset({"image"})
    outputs: ClassVar[list[str]]
    max_batch: ClassVar[int] = 32

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        """Decode the original into model input rows; raise MediaDecodeError for bad media."""

    @abstractmethod
    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        """One payload per input row of the batch."""


class _Retryable(Exception):
    pass


class Processor:
    def __init__(self, settings: Settings, handler: ModelHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.stage = f"processor:{handler.model}"
        self.group = f"argus-processor-{handler.model}"
        self.in_topic = settings.topic(kafka.TOPIC_UPLOADED)
        self.out_topic = settings.topic(kafka.annotations_topic(handler.model))
        self.dlq_topic = settings.topic(kafka.TOPIC_DLQ)
        self.store = ObjectStore(settings)
        self.triton = TritonClient(settings)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"fetch-{handler.model}")
        self.stop_event = threading.Event()
        self.stats = {"annotations": 0, "dead_letters": 0, "batches": 0}

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        kafka.ensure_topics(self.settings, [self.in_topic, self.out_topic, self.dlq_topic])
        self.consumer = kafka.consumer(self.settings, self.group)
        self.producer = kafka.producer(self.settings)
        self.consumer.subscribe([self.in_topic])
        log.info("%s consuming %s (group %s)", self.stage, self.in_topic, self.group)
        cfg = self.settings.processor
        try:
            while not self.stop_event.is_set():
                msgs = self.consumer.consume(num_messages=cfg.batch_size, timeout=cfg.batch_timeout_ms / 1000)
                msgs = [m for m in msgs if not kafka.is_noise(m)]
                if msgs:
                    self.process_batch(msgs)
        finally:
            self.consumer.close()
            self.producer.flush(10)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.triton.close()

    def stop(self, *_: Any) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    # -- one batch -----------------------------------------------------------------------
    def process_batch(self, msgs: Sequence[Message]) -> None:
        outputs: list[tuple[str, bytes]] = []  # (key, value) for the annotation topic
        dead: list[DeadLetter] = []
        events: list[tuple[Message, MediaUploaded]] = []
        for m in msgs:
            try:
                ev = parse(m.value(), MediaUploaded)
            except SchemaError as exc:
                dead.append(self._dead_letter(m, exc, None))
                continue
            if ev.media_type in self.handler.media_types:
                events.append((m, ev))

        items: list[Item] = []
        for (m, ev), result in zip(events, self.pool.map(self._fetch_prepare, [e for _, e in events]), strict=True):
            if isinstance(result, Exception):
                dead.append(self._dead_letter(m, result, ev))
            else:
                items.extend(result)

        for start in range(0, len(items), self.handler.max_batch):
            chunk = items[start : start + self.handler.max_batch]
            try:
                outs = self._infer(chunk)
            except InferenceServerException as exc:
                # Triton answered but rejected this input: isolate the culprit(s) one by one
                outputs_ok, dead_more = self._infer_individually(chunk, exc)
                outputs.extend(outputs_ok)
                dead.extend(dead_more)
                continue
            outputs.extend(self._annotations(chunk, outs))

        self._emit(outputs, dead)
        faults.crash_point("processor.after_emit")  # outputs acked, offsets not yet committed
        offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            key = (m.topic(), m.partition())
            offsets[key] = max(offsets.get(key, -1), m.offset() + 1)
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
        self.stats["batches"] += 1
        self.stats["annotations"] += len(outputs)
        self.stats["dead_letters"] += len(dead)

    def _fetch_prepare(self, ev: MediaUploaded) -> list[Item] | Exception:
        try:
            data = self._fetch(ev)
            return self.handler.prepare(ev, data)
        except (ObjectMissing, MediaDecodeError) as exc:
            return exc

    @retry(retry=retry_if_exception_type(OSError), wait=wait_exponential(0.2, max=30), stop=stop_never)
    def _fetch(self, ev: MediaUploaded) -> bytes:
        return self.store.get(ev.object_key, bucket=ev.bucket)

    def _infer(self, chunk: list[Item]) -> dict[str, np.ndarray]:
        names = chunk[0].row.keys()
        inputs = {n: np.stack([it.row[n] for it in chunk]) for n in names}
        return self.triton.infer(self.handler.model, inputs, self.handler.outputs)

    def _infer_individually(
        self, chunk: list[Item], batch_error: Exception
    ) -> tuple[list[tuple[str, bytes]], list[DeadLetter]]:
        ok: list[tuple[str, bytes]] = []
        dead: list[DeadLetter] = []
        log.warning("%s: batch rejected by Triton (%s); retrying items one by one", self.stage, batch_error)
        for it in chunk:
            try:
                ok.extend(self._annotations([it], self._infer([it])))
            except InferenceServerException as exc:
                dead.append(self._dead_letter(None, exc, it.event))
        return ok, dead

    def _annotations(self, chunk: list[Item], outs: dict[str, np.ndarray]) -> list[tuple[str, bytes]]:
        payloads = self.handler.to_payloads(outs, len(chunk))
        version = self.handler.version
        result = []
        for it, payload in zip(chunk, payloads, strict=True):
            aid = make_annotation_id(it.event.asset_id, self.handler.model, version, it.keyframe_ms)
            ann = Annotation(
                event_id=f"ann-{aid}",
                annotation_id=aid,
                asset_id=it.event.asset_id,
                model=self.handler.model,
                model_version=version,
                keyframe_ms=it.keyframe_ms,
                payload=payload,
            )
            result.append((it.event.asset_id, dump(ann)))
        return result

    def _dead_letter(self, m: Message | None, exc: Exception, ev: MediaUploaded | None) -> DeadLetter:
        where = f"{m.topic()}/{m.partition()}/{m.offset()}" if m is not None else ""
        ident = ev.asset_id if ev is not None else where
        raw = None
        if ev is None and m is not None and m.value() is not None:
            raw = base64.b64encode(m.value()[:4096]).decode()
        log.warning("%s dead-letter %s: %s", self.stage, ident[:16], exc)
        return DeadLetter(
            event_id=f"dlq-{self.handler.model}-{ident}",
            stage=self.stage,
            reason=str(exc) or type(exc).__name__,
            error_type=type(exc).__name__,
            asset_id=ev.asset_id if ev else None,
            model=self.handler.model,
            source_topic=m.topic() if m is not None else None,
            source_partition=m.partition() if m is not None else None,
            source_offset=m.offset() if m is not None else None,
            raw_value=raw,
        )

    def _emit(self, outputs: list[tuple[str, bytes]], dead: list[DeadLetter]) -> None:
        """Produce everything and wait for the broker's acks; raise (so nothing is committed) if any failed."""
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        while True:
            failures.clear()
            for key, value in outputs:
                self._produce(self.out_topic, key, value, on_delivery)
            for d in dead:
                self._produce(self.dlq_topic, d.asset_id or d.event_id, dump(d), on_delivery)
            remaining = self.producer.flush(60)
            if not failures and remaining == 0:
                return
            # broker unreachable: re-send the whole batch (duplicates are deduplicated downstream)
            log.warning("%s: %d deliveries failed (%s); retrying", self.stage, len(failures) + remaining,
                        failures[:1])
            self.stop_event.wait(2.0)
            if self.stop_event.is_set():
                raise _Retryable("stopping with undelivered outputs; offsets not committed")

    def _produce(self, topic: str, key: str, value: bytes, cb: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=value, on_delivery=cb)
                return
            except BufferError:  # local queue full: let deliveries drain (backpressure)
                self.producer.poll(0.5)
