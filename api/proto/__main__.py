"""``python -m api.proto``: regenerate the committed gRPC stubs beside annotate.proto."""

from __future__ import annotations

from api.proto import ROOT, generate

if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
