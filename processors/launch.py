"""Which runner a model's processor uses: the media runtime, or the text embedder for a model that reads the
other models' annotations. ``argus run processor <model>`` and the supervisor start processors through here."""

from __future__ import annotations

from core.settings import Settings
from models.registry import get_model
from models.text_embed import TextEmbed
from processors.runtime import Processor
from processors.text_embedder import TextEmbedder


def processor_for(settings: Settings, name: str) -> Processor:
    model = get_model(settings, name)
    if model.consumes == "nothing":
        raise ValueError(f"{name} has no processor: it is served for other models ({name} is a companion)")
    if model.consumes == "annotations":
        if not isinstance(model, TextEmbed):
            raise TypeError(f"{name}: only the text embedder reads annotations (got {type(model).__name__})")
        return TextEmbedder(settings, model)
    return Processor(settings, model)
