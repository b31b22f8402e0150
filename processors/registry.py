"""Model name -> processor handler. Adding a model: a triton_repo/ folder + a handler listed here."""

from __future__ import annotations

from core.settings import Settings
from models.caption_blip import CaptionBlip
from models.clip import Clip
from models.coco_centernet import CocoCenternet
from models.efficientnet_lite0 import EfficientNetLite0
from models.face_mtcnn import FaceMtcnn
from models.nsfw_nudenet import NsfwNudenet
from models.ocr_ppocr import OcrPpocr
from models.pdq import PdqHasher
from models.text_embed import TextEmbed
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
