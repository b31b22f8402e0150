"""Triton client shared by processors and the query API (tritonclient over HTTP).

tritonclient.http clients are not thread-safe (greenlet-based), so each thread gets its own.
Connection failures are retried with capped exponential backoff: Triton being down must make
processors wait, never drop work.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import numpy as np
import tritonclient.http as httpclient
from tenacity import before_sleep_log, retry, retry_if_exception, stop_never, wait_exponential
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from argus.settings import Settings

log = logging.getLogger(__name__)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | OSError | TimeoutError):
        return True
    if isinstance(exc, InferenceServerException):
        msg = str(exc).lower()
        # unavailable / not ready / connection refused are worth waiting for; bad input is not
        return any(s in msg for s in ("unavailable", "not ready", "connect", "timed out", "refused", "reset"))
    return False


class TritonClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

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
        except Exception:
            self._reset()
            raise
        return {o: result.as_numpy(o) for o in outputs}

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """infer_once, retried forever (with backoff) while Triton is unreachable or not ready."""
        cap = self.settings.processor.retry_max_wait_s

        @retry(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential(multiplier=0.2, max=cap),
            stop=stop_never,
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )
        def _call() -> dict[str, np.ndarray]:
            return self.infer_once(model, inputs, outputs)

        return _call()

    def close(self) -> None:
        self._reset()
