"""Model name -> processor handler. Adding a model: a triton_repo/ folder + a handler listed here."""

from __future__ import annotations

from argus.settings import Settings
from processors.handlers.caption_blip import CaptionBlip
from processors.handlers.clip import Clip
from processors.handlers.coco_centernet import CocoCenternet
from processors.handlers.efficientnet_lite0 import EfficientNetLite0
from processors.handlers.face_mtcnn import FaceMtcnn
from processors.handlers.nsfw_nudenet import NsfwNudenet
from processors.handlers.ocr_ppocr import OcrPpocr
from processors.handlers.pdq import PdqHasher
from processors.handlers.text_embed import TextEmbed
from processors.runtime import ModelHandler

HANDLERS: dict[str, type[ModelHandler]] = {
    Clip.model: Clip,
    CaptionBlip.model: CaptionBlip,
    EfficientNetLite0.model: EfficientNetLite0,
    PdqHasher.model: PdqHasher,
    FaceMtcnn.model: FaceMtcnn,
    OcrPpocr.model: OcrPpocr,
    TextEmbed.model: TextEmbed,
    NsfwNudenet.model: NsfwNudenet,
    CocoCenternet.model: CocoCenternet,
}


def get_handler(name: str, settings: Settings) -> ModelHandler:
    try:
        return HANDLERS[name](settings)
    except KeyError:
        raise KeyError(f"no processor for model {name!r}; known: {', '.join(sorted(HANDLERS))}") from None
