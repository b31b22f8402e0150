"""Triton client shared by processors and the query API (tritonclient over HTTP).

tritonclient.http clients are not thread-safe (greenlet-based), so each thread gets its own.
Connection failures are retried with capped exponential backoff: Triton being down must make
processors wait, never drop work.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
import time

import numpy as np
import tritonclient.http as httpclient
from tenacity import before_sleep_log, retry, retry_if_exception, stop_never, stop_when_event_set, wait_exponential
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from core import metrics
from core.settings import Settings

log = logging.getLogger(__name__)


class TritonUnavailable(RuntimeError):
    """Triton stayed unreachable until the caller gave up (e.g. SIGTERM): retry later, never dead-letter."""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | OSError | TimeoutError):
        return True
    if isinstance(exc, http.client.HTTPException):
        # geventhttpclient's HTTPConnectionClosed / HTTPParseError: Triton died mid-request (kill -9)
        return True
    if isinstance(exc, InferenceServerException):
        msg = str(exc).lower()
        # unavailable / not ready / connection refused are worth waiting for; bad input is not
        # a restarting server answers "unknown model" until its models are loaded again: wait for it too
        return any(s in msg for s in ("unavailable", "not ready", "connect", "timed out", "refused", "reset",
                                      "unknown model", "is not found", "broken pipe"))
    return False


class TritonClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self.abort: threading.Event | None = None  # set -> stop retrying (raise TritonUnavailable)
        self.failing_since: float | None = None  # monotonic time of the first transient failure in a row

    @property
    def _client(self) -> httpclient.InferenceServerClient:
        c = getattr(self._local, "client", None)
        if c is None:
            c = httpclient.InferenceServerClient(
                self.settings.triton_url,
                connection_timeout=self.settings.triton.timeout_s,
                network_timeout=self.settings.triton.timeout_s,
            )
            self._local.client = c
        return c

    def _reset(self) -> None:
        c = getattr(self._local, "client", None)
        if c is not None:
            with contextlib.suppress(Exception):  # the connection is being discarded anyway
                c.close()
            self._local.client = None

    def is_ready(self, model: str) -> bool:
        try:
            return bool(self._client.is_model_ready(model))
        except Exception:  # noqa: BLE001
            self._reset()
            return False

    def infer_once(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        req = []
        for name, arr in inputs.items():
            inp = httpclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            inp.set_data_from_numpy(arr, binary_data=True)
            req.append(inp)
        outs = [httpclient.InferRequestedOutput(o, binary_data=True) for o in outputs]
        try:
            result = self._client.infer(model, req, outputs=outs)
        except Exception as exc:
            self._reset()
            transient = _is_transient(exc)
            metrics.TRITON_ERRORS.labels(model, "transient" if transient else "rejected").inc()
            if transient and self.failing_since is None:
                self.failing_since = time.monotonic()
            raise
        self.failing_since = None
        return {o: result.as_numpy(o) for o in outputs}

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """infer_once, retried forever (with backoff) while Triton is unreachable or not ready."""
        cap = self.settings.processor.retry_max_wait_s

        @retry(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential(multiplier=0.2, max=cap),
            stop=stop_when_event_set(self.abort) if self.abort is not None else stop_never,
            before_sleep=before_sleep_log(log, logging.WARNING),
            sleep=self._sleep,
            reraise=True,
        )
        def _call() -> dict[str, np.ndarray]:
            if self.abort is not None and self.abort.is_set() and self.failing_since is not None:
                raise TritonUnavailable(f"gave up waiting for Triton ({model}): stopping")
            return self.infer_once(model, inputs, outputs)

        try:
            return _call()
        except Exception as exc:
            if self.abort is not None and self.abort.is_set() and _is_transient(exc):
                # not the input's fault: the batch must stay uncommitted, never be dead-lettered
                raise TritonUnavailable(f"Triton unavailable while stopping: {exc}") from exc
            raise

    def _sleep(self, seconds: float) -> None:
        if self.abort is not None:
            self.abort.wait(seconds)  # SIGTERM cuts the backoff short
        else:
            time.sleep(seconds)

    def close(self) -> None:
        self._reset()
