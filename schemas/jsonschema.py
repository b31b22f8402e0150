"""Writes the JSON Schema of every event into schemas/json/ for downstream subscribers.

Run ``argus schemas`` (or ``python -m schemas.jsonschema``) after changing an event model;
tests/test_schemas.py fails while the committed files are stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import EVENT_TYPES

JSON_DIR = Path(__file__).parent / "json"


def render() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(by_alias=True, mode="serialization")
        schema["$id"] = f"https://argus.example/schemas/{name}.v1.json"
        out[f"{name}.v1.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_files(files: dict[str, str], directory: Path) -> list[Path]:
    """Write rendered files (name -> text) into ``directory``; the generated schema files all go through here."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, text in files.items():
        path = directory / filename
        path.write_text(text)
        paths.append(path)
    return paths


def write(directory: Path = JSON_DIR) -> list[Path]:
    return write_files(render(), directory)


if __name__ == "__main__":
    for p in write():
        print(p)
