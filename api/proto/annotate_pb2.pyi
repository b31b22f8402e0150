from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnnotateRequest(_message.Message):
    __slots__ = ("content", "url", "models", "filename", "ingest", "title", "description")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    INGEST_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    url: str
    models: _containers.RepeatedScalarFieldContainer[str]
    filename: str
    ingest: bool
    title: str
    description: str
    def __init__(self, content: _Optional[bytes] = ..., url: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., filename: _Optional[str] = ..., ingest: _Optional[bool] = ..., title: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ModelResult(_message.Message):
    __slots__ = ("model", "model_version", "annotation_id", "payload_json", "keyframes", "elapsed_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    annotation_id: str
    payload_json: str
    keyframes: _containers.RepeatedCompositeFieldContainer[Keyframe]
    elapsed_ms: float
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., annotation_id: _Optional[str] = ..., payload_json: _Optional[str] = ..., keyframes: _Optional[_Iterable[_Union[Keyframe, _Mapping]]] = ..., elapsed_ms: _Optional[float] = ...) -> None: ...

class Keyframe(_message.Message):
    __slots__ = ("keyframe_ms", "payload_json")
    KEYFRAME_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    keyframe_ms: int
    payload_json: str
    def __init__(self, keyframe_ms: _Optional[int] = ..., payload_json: _Optional[str] = ...) -> None: ...

class AnnotateResponse(_message.Message):
    __slots__ = ("asset_id", "media_type", "content_type", "size_bytes", "results", "ingested")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    media_type: str
    content_type: str
    size_bytes: int
    results: _containers.RepeatedCompositeFieldContainer[ModelResult]
    ingested: bool
    def __init__(self, asset_id: _Optional[str] = ..., media_type: _Optional[str] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., results: _Optional[_Iterable[_Union[ModelResult, _Mapping]]] = ..., ingested: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "task", "media_types")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    task: str
    media_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., task: _Optional[str] = ..., media_types: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
