"""The committed gRPC stubs (api/proto/annotate_pb2*.py) are what the pinned grpcio-tools generates from
api/proto/annotate.proto: regenerate with `python -m api.proto` after editing the .proto."""

from __future__ import annotations

from pathlib import Path

from api.proto import PROTO, STUBS, generate


def test_stubs_are_fresh(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    stale = [name for name, path in zip(STUBS, fresh, strict=True)
             if path.read_bytes() != (PROTO.parent / name).read_bytes()]
    assert stale == [], f"stale gRPC stubs {stale}: run `python -m api.proto`"
