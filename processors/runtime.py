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
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import KafkaException, Message, TopicPartition
from tenacity import retry, retry_if_exception_type, stop_never, wait_exponential
from tritonclient.utils import InferenceServerException

from core import faults, kafka, metrics
from core.imaging import MediaDecodeError, jpeg_header_end
from core.resilience import wait_for
from core.settings import Settings
from core.storage import ObjectMissing, ObjectStore
from core.triton import TritonClient
from models.base import Item, Model
from models.registry import check_repo
from schemas.events import Annotation, AnnotationPayload, DeadLetter, MediaUploaded, SchemaError, dump, parse
from schemas.events import annotation_id as make_annotation_id

log = logging.getLogger(__name__)


# Bounded in-flight work: at most MAX_INFLIGHT batches are consumed but not yet committed (one on
# Triton, the next one fetched + decoded). When the oldest has waited PAUSE_AFTER_S (Triton slow or
# down), the assigned partitions are paused: nothing more is fetched or buffered, and the loop keeps
# polling so the group membership and rebalances stay served. Resumed once a batch completes.
MAX_INFLIGHT = 2
PAUSE_AFTER_S = 2.0


@dataclass
class Batch:
    msgs: list[Message]
    started: float
    events: list[tuple[Message, MediaUploaded, Future[list[Item] | Exception]]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    outputs: int = 0  # annotations emitted (set once finished)
    dead_count: int = 0


class Processor:
    def __init__(self, settings: Settings, model: Model) -> None:
        self.settings = settings
        self.model = model
        self.stage = f"processor:{model.name}"
        self.group = settings.consumer_group(f"argus-processor-{model.name}")
        self.in_topic = settings.topic(kafka.TOPIC_UPLOADED)
        self.backfill_topic = settings.topic(kafka.backfill_topic(model.name))  # argus reindex
        self.out_topic = settings.topic(kafka.annotations_topic(model.name))
        self.dlq_topic = settings.topic(kafka.TOPIC_DLQ)
        self.store = ObjectStore(settings)
        self.triton = TritonClient(settings)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"fetch-{model.name}")
        self.infer_pool = ThreadPoolExecutor(max_workers=max(1, settings.processor.infer_concurrency),
                                             thread_name_prefix=f"infer-{model.name}")
        self.stop_event = threading.Event()
        self.triton.abort = self.stop_event  # SIGTERM ends a Triton retry loop (the batch is then not committed)
        # one thread finishes batches (infer + emit) strictly in order; the main thread commits them
        self.finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"finish-{model.name}")
        self.health = metrics.Health(self.stage)
        self.lag = metrics.LagTracker(self.stage, settings.observability.lag_interval_s)
        self.paused = False
        self.stats: dict[str, float] = {"annotations": 0, "dead_letters": 0, "batches": 0}
        # seconds per stage: fetch and decode (model.prepare) summed over the pool's threads; wait_inputs = the
        # finisher waiting for them (what the overlap did not hide); infer, emit, commit on their threads
        self.stage_s: dict[str, float] = {"fetch": 0.0, "decode": 0.0, "wait_inputs": 0.0, "infer": 0.0,
                                          "emit": 0.0, "commit": 0.0}
        # what the fetches read: originals vs working copies (producers/working_copy.py), count and bytes
        self.reads: dict[str, float] = {"original": 0, "original_bytes": 0, "working": 0, "working_bytes": 0,
                                        "working_missing": 0, "head": 0, "head_bytes": 0}
        self._stage_lock = threading.Lock()

    def input_topics(self) -> list[str]:
        """What the consumer group reads: uploads, and the model's backfill topic (argus reindex)."""
        return [self.in_topic, self.backfill_topic]

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        metrics.start_ops_server(self.settings, self.health)
        # the broker may be down when (re)started: wait for it instead of crashing
        check_repo(self.settings)  # the registry and triton_repo/ must agree before anything is consumed
        inputs = self.input_topics()
        wait_for(lambda: kafka.ensure_topics(self.settings, [*inputs, self.out_topic, self.dlq_topic]),
                 f"{self.stage}: the broker", self.stop_event)
        self.consumer = kafka.consumer(self.settings, self.group)
        self.producer = kafka.producer(self.settings)
        self.consumer.subscribe(inputs, on_assign=self._on_assign)
        log.info("%s consuming %s (group %s)", self.stage, inputs, self.group)
        cfg = self.settings.processor
        inflight: deque[tuple[Batch, Future[None]]] = deque()
        clean = False
        try:
            while not self.stop_event.is_set():
                self.health.beat()
                self._commit_completed(inflight)
                self._update_readiness()
                self.lag.update(self.consumer, lambda: metrics.kafka_committed(self.consumer))
                if len(inflight) >= MAX_INFLIGHT:
                    self._wait_or_pause(inflight)
                    if self.paused:
                        # keep polling while paused (rebalances, max.poll.interval); paused partitions
                        # return nothing, a partition assigned meanwhile is paused in _on_assign
                        msgs = self._consume(cfg.batch_size, 0.2)
                        if msgs:
                            self._submit(inflight, msgs)
                    continue
                if self.paused:
                    self._set_paused(False)
                msgs = self._consume(cfg.batch_size, cfg.batch_timeout_ms / 1000)
                if msgs:
                    self._submit(inflight, msgs)
            clean = True
        finally:
            # graceful stop (SIGTERM): finish what is in flight and commit it, in order; a batch that
            # cannot finish (Triton down) is left uncommitted and is redelivered after the restart
            drained = self._drain(inflight) if clean else 0
            if clean:
                log.info("%s: stopped; drained and committed %d in-flight batch(es)", self.stage, drained)
            self.consumer.close()
            self.producer.flush(10)
            self.finisher.shutdown(wait=False, cancel_futures=True)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.infer_pool.shutdown(wait=False, cancel_futures=True)
            self.triton.close()

    # -- backpressure + in-order completion ----------------------------------------------------
    def _consume(self, n: int, timeout: float) -> list[Message]:
        msgs = [m for m in self.consumer.consume(num_messages=n, timeout=timeout) if not kafka.is_noise(m)]
        if msgs:
            self.lag.observe(msgs)
            for m in msgs:
                metrics.EVENTS_IN.labels(self.stage, m.topic()).inc()
        return msgs

    def _submit(self, inflight: deque[tuple[Batch, Future[None]]], msgs: list[Message]) -> None:
        batch = self.start_batch(msgs)
        inflight.append((batch, self.finisher.submit(self._finish_work, batch)))
        metrics.INFLIGHT.labels(self.stage).set(len(inflight))

    def _commit_completed(self, inflight: deque[tuple[Batch, Future[None]]]) -> None:
        while inflight and inflight[0][1].done():
            batch, fut = inflight.popleft()
            metrics.INFLIGHT.labels(self.stage).set(len(inflight))
            fut.result()  # a failed batch raises: nothing after it may be committed (its offsets are lower)
            self._commit(batch)

    def _wait_or_pause(self, inflight: deque[tuple[Batch, Future[None]]]) -> None:
        batch, fut = inflight[0]
        wait_futures([fut], timeout=0.25)
        if not fut.done() and not self.paused and time.perf_counter() - batch.started > PAUSE_AFTER_S:
            self._set_paused(True)

    def _set_paused(self, paused: bool) -> None:
        parts = self.consumer.assignment()
        if parts:
            (self.consumer.pause if paused else self.consumer.resume)(parts)
        self.paused = paused
        metrics.PAUSED.labels(self.stage).set(1 if paused else 0)
        if paused:
            metrics.PAUSES.labels(self.stage).inc()
            log.warning("%s: backpressure: a batch is waiting on inference; consumption paused", self.stage)
        else:
            log.info("%s: consumption resumed", self.stage)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        if self.paused:
            consumer.pause(partitions)

    def _update_readiness(self) -> None:
        since = self.triton.failing_since
        if since is not None:
            self.health.set_ready(False, f"inference unavailable for {time.monotonic() - since:.0f}s")
        else:
            self.health.set_ready(True, "consuming")

    def _drain(self, inflight: deque[tuple[Batch, Future[None]]]) -> int:
        self.health.stopping = True
        done = 0
        while inflight:
            batch, fut = inflight.popleft()
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. aborted on Triton; offsets stay uncommitted
                log.warning("%s: in-flight batch not finished (%s); it will be redelivered", self.stage, exc)
                return done
            self._commit(batch)
            done += 1
        return done

    def stop(self, *_: Any) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    # -- one batch -----------------------------------------------------------------------
    def process_batch(self, msgs: Sequence[Message]) -> None:
        self.finish_batch(self.start_batch(msgs))

    def start_batch(self, msgs: Sequence[Message]) -> Batch:
        """Parse the records and start fetching + decoding their media on the pool (non-blocking)."""
        batch = Batch(list(msgs), time.perf_counter())
        for m in msgs:
            try:
                ev = parse(m.value(), MediaUploaded)
            except SchemaError as exc:
                batch.dead.append(self._dead_letter(m, exc, None))
                continue
            if ev.media_type in self.model.media_types:
                batch.events.append((m, ev, self.pool.submit(self._fetch_prepare, ev)))
        return batch

    def finish_batch(self, batch: Batch) -> None:
        """Infer, emit, and commit the batch's offsets once every output is acknowledged."""
        self._finish_work(batch)
        self._commit(batch)

    def _finish_work(self, batch: Batch) -> None:
        """Infer and emit (on the finisher thread); raises when the outputs were not all acknowledged."""
        outputs: list[tuple[str, bytes]] = []  # (key, value) for the annotation topic
        dead = batch.dead
        t0 = time.perf_counter()
        items: list[Item] = []
        for m, ev, fut in batch.events:
            result = fut.result()
            if isinstance(result, Exception):
                dead.append(self._dead_letter(m, result, ev))
            else:
                items.extend(result)

        t1 = time.perf_counter()
        for outs_ok, dead_more in self.infer_pool.map(self._infer_chunk, self._chunks(items)):
            outputs.extend(outs_ok)
            dead.extend(dead_more)

        if any(it.keyframe_ms is not None for it in items):
            outputs.extend(self._video_summaries(outputs))

        t2 = time.perf_counter()
        self._emit(outputs, dead)
        t3 = time.perf_counter()
        batch.outputs, batch.dead_count = len(outputs), len(dead)
        for k, v in zip(("wait_inputs", "infer", "emit"), (t1 - t0, t2 - t1, t3 - t2), strict=True):
            self._add_stage(k, v)
        metrics.EVENTS_OUT.labels(self.stage, self.out_topic).inc(len(outputs))
        if dead:
            metrics.EVENTS_OUT.labels(self.stage, self.dlq_topic).inc(len(dead))
            for d in dead:
                metrics.DEAD_LETTERS.labels(self.stage, d.error_type).inc()

    def _commit(self, batch: Batch) -> None:
        """Commit the batch's offsets (main thread): only after _finish_work saw every output acked."""
        t3 = time.perf_counter()
        faults.crash_point("processor.after_emit")  # outputs acked, offsets not yet committed
        try:
            self.consumer.commit(offsets=kafka.next_offsets(batch.msgs), asynchronous=False)
        except KafkaException as exc:
            # e.g. the partitions moved to another member meanwhile: the records will be redelivered
            # there, and the sinks deduplicate the annotations already emitted
            log.warning("%s: offset commit failed (%s); records will be redelivered", self.stage, exc)
        self._add_stage("commit", time.perf_counter() - t3)
        self.stats["batches"] += 1
        self.stats["annotations"] += batch.outputs
        self.stats["dead_letters"] += batch.dead_count
        if self.stats["batches"] % 10 == 0:
            log.info("%s: %d batches, %d annotations, %d dead letters; seconds per stage %s", self.stage,
                     self.stats["batches"], self.stats["annotations"], self.stats["dead_letters"],
                     {k: round(v, 2) for k, v in self.stage_s.items()})

    def _add_stage(self, stage: str, seconds: float) -> None:
        with self._stage_lock:
            self.stage_s[stage] += seconds
        metrics.STAGE_SECONDS.labels(self.stage, stage).inc(seconds)

    def _fetch_prepare(self, ev: MediaUploaded) -> list[Item] | Exception:
        try:
            t0 = time.perf_counter()
            ev, data = self._fetch_input(ev)
            t1 = time.perf_counter()
            items = self.model.prepare(ev, data)
            self._add_stage("fetch", t1 - t0)
            self._add_stage("decode", time.perf_counter() - t1)
            return items
        except (ObjectMissing, MediaDecodeError) as exc:
            return exc

    def _fetch_input(self, ev: MediaUploaded) -> tuple[MediaUploaded, bytes]:
        """The bytes ``prepare`` decodes and the event that says what they are: the working copy when the model
        looks at no more than its side (``Model.reads_working_copy``), else the original. A missing copy (removed,
        or a store that lost it) falls back to the original, with ``working_copy`` dropped from the event."""
        wc = ev.working_copy
        if wc is not None and self.model.reads_working_copy(ev):
            try:
                data = self._fetch(wc.object_key, ev.bucket)
                self._count_read("working", len(data))
                return ev, data
            except ObjectMissing:
                log.warning("%s: working copy of %s missing; reading the original", self.stage, ev.asset_id[:16])
                self._count_read("working_missing", 0)
        if wc is not None:
            ev = ev.model_copy(update={"working_copy": None})
        head = self.model.head_bytes
        if head and ev.media_type == "image" and ev.size_bytes > head:
            data = self._fetch(ev.object_key, ev.bucket, head)
            if jpeg_header_end(data) is not None:  # the whole header is in: the pixels are not needed
                self._count_read("head", len(data))
                return ev, data
        data = self._fetch(ev.object_key, ev.bucket)
        self._count_read("original", len(data))
        return ev, data

    def _count_read(self, kind: str, size: int) -> None:
        with self._stage_lock:
            self.reads[kind] += 1
            if size:
                self.reads[f"{kind}_bytes"] += size
        metrics.FETCHED_BYTES.labels(self.stage, kind).inc(size)

    @retry(retry=retry_if_exception_type(OSError), wait=wait_exponential(0.2, max=30), stop=stop_never)
    def _fetch(self, key: str, bucket: str, length: int | None = None) -> bytes:
        return self.store.get(key, bucket=bucket, length=length)

    def _chunks(self, items: list[Item]) -> list[list[Item]]:
        """Split a batch into parallel Triton requests (one per model instance), each <= max_batch."""
        if not items:
            return []
        n = max(self.settings.processor.infer_concurrency, -(-len(items) // self.model.max_batch))
        size = -(-len(items) // n)
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _infer_chunk(self, chunk: list[Item]) -> tuple[list[tuple[str, bytes]], list[DeadLetter]]:
        try:
            return self._annotations(chunk, self._infer(chunk)), []
        except InferenceServerException as exc:
            # Triton answered but rejected this input: isolate the culprit(s) one by one
            return self._infer_individually(chunk, exc)

    def _infer(self, chunk: list[Item]) -> dict[str, np.ndarray]:
        names = chunk[0].row.keys()
        inputs = {n: np.stack([it.row[n] for it in chunk]) for n in names}
        t0 = time.perf_counter()
        out = self.model.infer(self.triton, inputs)
        metrics.INFER_SECONDS.labels(self.model.name).observe(time.perf_counter() - t0)
        metrics.INFER_BATCH.labels(self.model.name).observe(len(chunk))
        return out

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
        payloads = self.model.to_payloads(outs, len(chunk))
        version = self.model.model_version
        result = []
        for it, payload in zip(chunk, payloads, strict=True):
            aid = make_annotation_id(it.event.asset_id, self.model.name, version, it.keyframe_ms)
            ann = Annotation(
                event_id=f"ann-{aid}",
                annotation_id=aid,
                asset_id=it.event.asset_id,
                model=self.model.name,
                model_version=version,
                keyframe_ms=it.keyframe_ms,
                payload=payload,
            )
            result.append((it.event.asset_id, dump(ann)))
        return result

    def _video_summaries(self, outputs: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """One summary annotation (keyframe_ms=None) per video of the batch. Every keyframe of a video
        is in the same batch (``prepare`` returns them together), so no state spans batches."""
        per_video: dict[str, list[tuple[int, AnnotationPayload]]] = {}
        for _key, value in outputs:
            ann = Annotation.model_validate_json(value)
            if ann.keyframe_ms is not None:
                per_video.setdefault(ann.asset_id, []).append((ann.keyframe_ms, ann.payload))
        result = []
        version = self.model.model_version
        for asset_id, frames in per_video.items():
            payload = self.model.summarize(frames)
            if payload is None:
                continue
            aid = make_annotation_id(asset_id, self.model.name, version, None)
            ann = Annotation(event_id=f"ann-{aid}", annotation_id=aid, asset_id=asset_id, model=self.model.name,
                             model_version=version, keyframe_ms=None, payload=payload)
            result.append((asset_id, dump(ann)))
        return result

    def _dead_letter(self, m: Message | None, exc: Exception, ev: MediaUploaded | None) -> DeadLetter:
        where = f"{m.topic()}/{m.partition()}/{m.offset()}" if m is not None else ""
        ident = ev.asset_id if ev is not None else where
        value = m.value() if m is not None else None
        raw = base64.b64encode(value[:4096]).decode() if ev is None and value else None
        log.warning("%s dead-letter %s: %s", self.stage, ident[:16], exc)
        return DeadLetter(
            event_id=f"dlq-{self.model.name}-{ident}",
            stage=self.stage,
            reason=str(exc) or type(exc).__name__,
            error_type=type(exc).__name__,
            asset_id=ev.asset_id if ev else None,
            model=self.model.name,
            source_topic=m.topic() if m is not None else None,
            source_partition=m.partition() if m is not None else None,
            source_offset=m.offset() if m is not None else None,
            raw_value=raw,
        )

    def _emit(self, outputs: list[tuple[str, bytes]], dead: list[DeadLetter]) -> None:
        """Produce everything and wait for the broker's acks; raise (so nothing is committed) if stopped first."""
        kafka.produce_all(self.producer, [(self.out_topic, k, v) for k, v in outputs]
                          + [(self.dlq_topic, d.asset_id or d.event_id, dump(d)) for d in dead],
                          self.stop_event, self.stage)

