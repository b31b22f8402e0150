"""The gRPC contract (annotate.proto) and its generated stubs (annotate_pb2*.py, committed).

``python -m api.proto`` regenerates the stubs with grpcio-tools (a dev dependency); tests/test_grpc_stubs.py
fails when the committed stubs differ from what the pinned grpcio-tools generates from annotate.proto.
"""

from __future__ import annotations

from pathlib import Path

PROTO = Path(__file__).resolve().parent / "annotate.proto"
ROOT = PROTO.parents[2]  # the repository root: the import path api.proto.annotate_pb2 follows from it
STUBS = ("annotate_pb2.py", "annotate_pb2.pyi", "annotate_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs for annotate.proto under ``out_dir`` (laid out as api/proto/...); returns their paths."""
    from grpc_tools import protoc  # lazy: grpcio-tools is only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    rel = PROTO.relative_to(ROOT)
    code = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                        f"--grpc_python_out={out_dir}", str(rel)])
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) on {rel}")
    return [out_dir / rel.parent / name for name in STUBS]
