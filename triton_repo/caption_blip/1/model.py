"""Triton python-backend model: BLIP image captioning (HF transformers ``BlipForConditionalGeneration``).

Weights: ``blip.zip`` next to this file, built by ``argus models pull caption_blip`` from the
``save_pretrained`` folder the operator configured (``ARGUS_CAPTION__WEIGHTS``; docs/models.md). It is a
stored zip of that folder's config/tokenizer/preprocessor JSON and text files and ONE weights file
(model.safetensors, else pytorch_model.bin); it is unpacked to a temp folder, loaded, and the folder removed.

IO (batched, fixed shapes so the runtime and Triton's dynamic batcher can stack requests):
  IMAGE           uint8 [384,384,3]  RGB, already resized to 384x384 (BLIP's own resize, aspect not kept)
  MAX_NEW_TOKENS  int32 [1]          optional: caption length cap (default: parameter ``max_new_tokens``)
  NUM_BEAMS       int32 [1]          optional: beam width (default: parameter ``num_beams``)
  CAPTION         bytes [1]          the caption, UTF-8
  SCORE           fp32  [1]          geometric-mean token probability of the caption (0..1)

``Core`` is the model without Triton (tests and the in-process benchmark use it); ``TritonPythonModel``
wraps it. Self-contained: Argus need not be installed where Triton runs, transformers + torch must be.

torchvision: transformers imports it whenever it is installed, and the PyPI torchvision wheel does not
load beside a CPU torch (``operator torchvision::nms does not exist``). BLIP needs none of it (the PIL image
processor does the same resize/normalise), so transformers is imported with torchvision hidden, unless
torchvision was already imported successfully in this process.
"""

import contextlib
import os
import shutil
import sys
import tempfile
import zipfile

import numpy as np
import torch

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import BatchingModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import BatchingModel  # inside Triton: run `argus models pull` (copies it)

ARTIFACT = "blip.zip"
SIZE = 384


@contextlib.contextmanager
def torchvision_hidden():
    """While active, ``import torchvision`` fails cleanly and transformers sees it as not installed."""
    hide = "torchvision" not in sys.modules
    if hide:
        sys.modules["torchvision"] = None  # find_spec() -> None, import -> ImportError
    try:
        if hide:
            with contextlib.suppress(Exception):
                from transformers.utils import import_utils

                import_utils.is_torchvision_available.cache_clear()  # lru-cached; re-evaluated hidden
        yield
    finally:
        if hide and sys.modules.get("torchvision", 0) is None:
            del sys.modules["torchvision"]


def load_blip(folder):
    """(model, processor) from a ``save_pretrained`` folder, eval mode, on CPU."""
    with torchvision_hidden():
        from transformers import BlipForConditionalGeneration, BlipProcessor

        processor = BlipProcessor.from_pretrained(folder)
        model = BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    return model, processor


class Core:
    """BLIP on a batch of 384x384 RGB images -> one caption (+ score) per image."""

    def __init__(self, version_dir, params=None, device="cpu"):
        params = params or {}
        self.device = torch.device(device)
        torch.set_num_threads(int(params.get("intra_op_threads") or 1))
        self.max_new_tokens = int(params.get("max_new_tokens") or 30)
        self.num_beams = int(params.get("num_beams") or 3)
        tmp = tempfile.mkdtemp(prefix="argus-blip-")
        try:
            with zipfile.ZipFile(os.path.join(version_dir, ARTIFACT)) as zf:
                for name in zf.namelist():
                    if "/" in name or name.startswith("."):  # flat archive by construction; never escape tmp
                        raise ValueError(f"{ARTIFACT}: unexpected member {name!r}")
                zf.extractall(tmp)
            self.model, self.processor = load_blip(tmp)
            self.model.to(self.device)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @torch.no_grad()
    def caption(self, images, max_new_tokens, num_beams):
        """images uint8 [N,384,384,3] -> ([N] str, [N] float)."""
        with torchvision_hidden():  # the image processor may resolve lazily
            pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        out = self.model.generate(
            pixel_values=pixels, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
            return_dict_in_generate=True, output_scores=True,
        )
        texts = [t.strip() for t in self.processor.batch_decode(out.sequences, skip_special_tokens=True)]
        if num_beams > 1 and getattr(out, "sequences_scores", None) is not None:
            logp = out.sequences_scores  # sum of log-probs / length (length_penalty 1): mean per token
        else:
            steps = self.model.text_decoder.compute_transition_scores(out.sequences, out.scores,
                                                                      normalize_logits=True)
            gen = out.sequences[:, -steps.shape[1]:]
            valid = (gen != self.model.config.text_config.pad_token_id) & torch.isfinite(steps)
            logp = (steps.masked_fill(~valid, 0).sum(1) / valid.sum(1).clamp(min=1))
        scores = [float(min(1.0, max(0.0, np.exp(float(v))))) for v in logp.cpu()]
        return texts, scores

    def infer(self, inputs):
        images = inputs["IMAGE"]
        n = images.shape[0]
        tokens = inputs.get("MAX_NEW_TOKENS")
        beams = inputs.get("NUM_BEAMS")
        groups = {}  # rows with the same generation parameters run together
        for i in range(n):
            key = (int(tokens[i, 0]) if tokens is not None else self.max_new_tokens,
                   int(beams[i, 0]) if beams is not None else self.num_beams)
            key = (max(1, min(key[0], 128)), max(1, min(key[1], 8)))
            groups.setdefault(key, []).append(i)
        captions = np.full((n, 1), b"", dtype=object)
        scores = np.zeros((n, 1), np.float32)
        for (max_new, n_beams), rows in groups.items():
            texts, probs = self.caption(images[rows], max_new, n_beams)
            for i, text, p in zip(rows, texts, probs, strict=True):
                captions[i, 0] = text.encode("utf-8")
                scores[i, 0] = p
        return {"CAPTION": captions, "SCORE": scores}


class TritonPythonModel(BatchingModel):
    """``Core`` behind the shared execute loop (``triton_batching``): requests stacked, split back."""

    artifact = ARTIFACT
    missing_hint = "set ARGUS_CAPTION__WEIGHTS, `argus models pull caption_blip`"

    def load(self, version_dir, params, args):
        device = "cpu"  # KIND_GPU instances (production config.pbtxt) run on their GPU
        if args.get("model_instance_kind") == "GPU" and torch.cuda.is_available():
            device = f"cuda:{int(args.get('model_instance_device_id') or 0)}"
        self.core = Core(version_dir, params, device)

    def default_input(self, name, rows):
        # per request, so requests with and without MAX_NEW_TOKENS / NUM_BEAMS stack into one batch
        default = {"MAX_NEW_TOKENS": self.core.max_new_tokens, "NUM_BEAMS": self.core.num_beams}.get(name)
        return None if default is None else np.full((rows, 1), default, np.int32)

    def run(self, batch):
        return self.core.infer(batch)

    def unload(self):
        self.core = None
