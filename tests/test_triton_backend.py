"""The shared python-backend execute loop (models/triton_batching.py) and its installer (models/triton_backend.py).

Triton's ``triton_python_backend_utils`` only exists inside the python stub, so these tests run the loop with
``fake_triton_python_backend_utils()``, a small stand-in with the same names. The module is imported the way
the stub imports it: ``install_backend`` copies it into a model folder, which is then put on ``sys.path``.
The real server runs it in tests/test_model_*.py (embedded Triton).
"""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.triton_backend import BACKEND_FILE, SOURCE, install_backend

REPO = Path(__file__).resolve().parent.parent


# ---- a stand-in for Triton's triton_python_backend_utils ---------------------------------------------------


def fake_triton_python_backend_utils() -> types.ModuleType:
    """FAKE ``triton_python_backend_utils``: just the names the loop uses, with the same call signatures."""
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name: str, arr: np.ndarray) -> None:
            self._name, self._arr = name, arr

        def name(self) -> str:
            return self._name

        def as_numpy(self) -> np.ndarray:
            return self._arr

    class TritonError:
        def __init__(self, msg: str) -> None:
            self._msg = msg

        def message(self) -> str:
            return self._msg

        def __str__(self) -> str:
            return self._msg

    class InferenceResponse:
        def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
            self.output_tensors, self.error = output_tensors or [], error

        def outputs(self) -> dict[str, np.ndarray]:
            return {t.name(): t.as_numpy() for t in self.output_tensors}

    class Request:
        def __init__(self, **tensors: np.ndarray) -> None:
            self.tensors = tensors

    class Logger:
        errors: list[str] = []

        @classmethod
        def log_error(cls, msg: str) -> None:
            cls.errors.append(msg)

    pb.Tensor, pb.TritonError, pb.InferenceResponse, pb.Request, pb.Logger = (  # type: ignore[attr-defined]
        Tensor, TritonError, InferenceResponse, Request, Logger)
    pb.TritonModelException = type("TritonModelException", (Exception,), {})  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = lambda req, name: (  # type: ignore[attr-defined]
        Tensor(name, req.tensors[name]) if name in req.tensors else None
    )
    return pb


@pytest.fixture
def pb(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    fake = fake_triton_python_backend_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    return fake


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "toy" / "1").mkdir(parents=True)
    return tmp_path / "toy"


@pytest.fixture
def tb(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """``triton_batching`` imported from a model folder, as Triton's stub does (<model>/ is on sys.path)."""
    install_backend(model_dir)
    monkeypatch.syspath_prepend(str(model_dir))
    monkeypatch.delitem(sys.modules, "triton_batching", raising=False)
    import triton_batching

    assert Path(triton_batching.__file__).parent == model_dir
    yield triton_batching
    sys.modules.pop("triton_batching", None)


def config(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], max_batch_size: int = 8,
           **params: str) -> dict[str, Any]:
    """A model config as Triton hands it to initialize() (JSON, dims as strings)."""
    def entries(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**i, "dims": [str(d) for d in i["dims"]]} for i in items]

    return {"name": "toy", "backend": "python", "max_batch_size": max_batch_size, "input": entries(inputs),
            "output": entries(outputs), "parameters": {k: {"string_value": v} for k, v in params.items()}}


def init(model: Any, model_dir: Path, cfg: dict[str, Any]) -> Any:
    model.initialize({"model_config": json.dumps(cfg), "model_repository": str(model_dir), "model_version": "1",
                      "model_name": "toy", "model_instance_kind": "CPU"})
    return model


XY = config([{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}],
            [{"name": "Y", "data_type": "TYPE_FP32", "dims": [4]},
             {"name": "ROW", "data_type": "TYPE_INT32", "dims": [1]}])


def toy_class(tb: types.ModuleType) -> type:
    class Toy(tb.BatchingModel):  # type: ignore[name-defined,misc]
        def load(self, version_dir: str, params: dict[str, str], args: dict[str, str]) -> None:
            self.batches: list[dict[str, np.ndarray]] = []
            self.params_seen = params
            self.fail: Exception | None = None

        def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.batches.append(batch)
            if self.fail is not None:
                raise self.fail
            n = len(batch["X"])
            return {"Y": batch["X"] * 2, "ROW": np.arange(n, dtype=np.int64)[:, None]}  # int64 -> config INT32

    return Toy


# ---- install_backend ---------------------------------------------------------------------------------------


def test_install_backend_copies_once_and_refreshes_stale_copies(model_dir: Path) -> None:
    target = model_dir / BACKEND_FILE
    install_backend(model_dir)
    assert target.read_bytes() == SOURCE.read_bytes()
    stat = target.stat()
    install_backend(model_dir)  # idempotent: an up-to-date copy is not rewritten
    assert target.stat().st_ino == stat.st_ino and target.stat().st_mtime_ns == stat.st_mtime_ns
    target.write_text("# stale\n")
    install_backend(model_dir)
    assert target.read_bytes() == SOURCE.read_bytes()
    target.unlink()
    target.symlink_to(SOURCE)  # a link would dangle in the production volume: replaced by a real file
    install_backend(model_dir)
    assert not target.is_symlink() and target.read_bytes() == SOURCE.read_bytes()
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", BACKEND_FILE]  # no temp files left behind


def test_install_backend_needs_the_model_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        install_backend(tmp_path / "nope")


def test_shared_module_is_pure_python_without_argus_imports() -> None:
    # it runs inside Triton's stub, where Argus is not installed
    text = SOURCE.read_text()
    for package in ("argus", "core", "models", "schemas", "processors", "retrieval", "sinks"):
        assert f"import {package}" not in text and f"from {package}" not in text, package


def test_every_python_backend_model_uses_the_shared_loop() -> None:
    for model_py in sorted((REPO / "triton_repo").glob("*/1/model.py")):
        text = model_py.read_text()
        assert "from triton_batching import" in text, model_py
        assert "def execute" not in text, f"{model_py}: the execute loop belongs in models/triton_batching.py"


# ---- the execute loop ---------------------------------------------------------------------------------------


def test_requests_are_stacked_into_one_run_and_split_back(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    model = init(toy_class(tb)(), model_dir, {**XY, "parameters": {"k": {"string_value": "v"}}})
    assert model.params_seen == {"k": "v"}
    xs = [np.full((n, 4), n, np.float32) for n in (2, 1, 3)]
    responses = model.execute([pb.Request(X=x) for x in xs])
    assert len(model.batches) == 1 and model.batches[0]["X"].shape == (6, 4)
    assert [r.error for r in responses] == [None, None, None]
    for x, r in zip(xs, responses, strict=True):
        out = r.outputs()
        np.testing.assert_array_equal(out["Y"], x * 2)
        assert out["ROW"].dtype == np.int32 and out["ROW"].shape == (len(x), 1)  # cast to the config's dtype
        assert out["Y"].flags.c_contiguous
    np.testing.assert_array_equal(responses[2].outputs()["ROW"][:, 0], [3, 4, 5])  # rows 3..5 of the batch
    model.finalize()


def test_a_bad_request_gets_its_own_error_and_the_others_run(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    model = init(toy_class(tb)(), model_dir, XY)
    good = np.ones((1, 4), np.float32)
    responses = model.execute([
        pb.Request(X=good),
        pb.Request(X=np.ones((1, 4), np.int32)),  # wrong dtype
        pb.Request(X=np.ones((2, 5), np.float32)),  # wrong row shape
        pb.Request(X=np.ones(4, np.float32)),  # no batch dim
        pb.Request(),  # missing input
        pb.Request(Z=good),  # unknown input only
        pb.Request(X=good + 1),
    ])
    errors = [str(r.error) if r.error is not None else None for r in responses]
    assert errors == [
        None,
        "X: expected float32 [N,4], got int32 [1,4]",
        "X: expected float32 [N,4], got float32 [2,5]",
        "X: expected float32 [N,4], got float32 [4]",
        "X: missing input (expected float32 [N,4])",
        "X: missing input (expected float32 [N,4])",
        None,
    ]
    assert len(model.batches) == 1 and len(model.batches[0]["X"]) == 2  # only the good rows ran
    np.testing.assert_array_equal(responses[6].outputs()["Y"], (good + 1) * 2)


def test_a_failing_run_fails_only_its_batch(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    model = init(toy_class(tb)(), model_dir, XY)
    model.fail = RuntimeError("boom")
    responses = model.execute([pb.Request(X=np.ones((1, 4), np.float32)), pb.Request(),
                               pb.Request(X=np.ones((2, 4), np.float32))])
    assert [str(r.error) for r in responses] == ["toy failed: RuntimeError: boom",
                                                 "X: missing input (expected float32 [N,4])",
                                                 "toy failed: RuntimeError: boom"]
    assert pb.Logger.errors == ["toy failed: RuntimeError: boom"]  # logged once per batch on the server side
    model.fail = None
    assert model.execute([pb.Request(X=np.ones((1, 4), np.float32))])[0].error is None  # the instance lives on


def test_run_must_return_every_output_with_one_row_per_input(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    class Short(toy_class(tb)):  # type: ignore[misc]
        def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"Y": batch["X"][:1], "ROW": np.zeros((1, 1))}

    class Partial(toy_class(tb)):  # type: ignore[misc]
        def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"Y": batch["X"]}

    requests = [pb.Request(X=np.ones((1, 4), np.float32)), pb.Request(X=np.ones((1, 4), np.float32))]
    short = init(Short(), model_dir, XY).execute(requests)
    assert all("run() returned 1 rows of Y for 2 inputs" in str(r.error) for r in short)
    partial = init(Partial(), model_dir, XY).execute(requests)
    assert all("run() returned no ROW" in str(r.error) for r in partial)


def test_variable_dims_are_grouped_and_same_shape_checked(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    cfg = config([{"name": "IDS", "data_type": "TYPE_INT64", "dims": [-1]},
                  {"name": "MASK", "data_type": "TYPE_INT64", "dims": [-1]}],
                 [{"name": "EMB", "data_type": "TYPE_FP32", "dims": [2]}])

    class Seq(tb.BatchingModel):  # type: ignore[name-defined,misc]
        same_shape = ("IDS", "MASK")

        def load(self, version_dir: str, params: dict[str, str], args: dict[str, str]) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.shapes.append(batch["IDS"].shape)
            ids = batch["IDS"]
            return {"EMB": np.stack([ids.sum(1), np.full(len(ids), ids.shape[1])], 1)}

    model = init(Seq(), model_dir, cfg)

    def req(n: int, t: int, mask_t: int | None = None) -> Any:
        return pb.Request(IDS=np.full((n, t), 1, np.int64), MASK=np.ones((n, mask_t or t), np.int64))

    responses = model.execute([req(1, 32), req(2, 64), req(3, 32), req(1, 32, mask_t=64)])
    assert sorted(model.shapes) == [(2, 64), (4, 32)]  # one run per sequence length
    assert [r.outputs()["EMB"].tolist() for r in responses[:3]] == [
        [[32, 32]], [[64, 64], [64, 64]], [[32, 32]] * 3]
    assert str(responses[3].error) == "inputs IDS, MASK must have the same shape, got IDS [1,32], MASK [1,64]"


def test_optional_inputs_default_per_request_or_group(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    cfg = config([{"name": "X", "data_type": "TYPE_FP32", "dims": [1]},
                  {"name": "K", "data_type": "TYPE_INT32", "dims": [1], "optional": True},
                  {"name": "L", "data_type": "TYPE_INT32", "dims": [1], "optional": True}],
                 [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}])

    class Opt(tb.BatchingModel):  # type: ignore[name-defined,misc]
        def load(self, version_dir: str, params: dict[str, str], args: dict[str, str]) -> None:
            self.keys: list[list[str]] = []

        def default_input(self, name: str, rows: int) -> np.ndarray | None:
            return np.full((rows, 1), 7, np.int32) if name == "K" else None  # L: no default

        def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.keys.append(sorted(batch))
            y = batch["X"] + batch["K"] + batch.get("L", 0)
            return {"Y": y}

    model = init(Opt(), model_dir, cfg)
    x = np.zeros((1, 1), np.float32)
    responses = model.execute([
        pb.Request(X=x), pb.Request(X=x, K=np.ones((1, 1), np.int32)),  # K defaulted: one batch
        pb.Request(X=x, L=np.ones((1, 1), np.int32)),  # with L: a batch of its own
        pb.Request(X=np.zeros((2, 1), np.float32), K=np.ones((1, 1), np.int32)),  # rows differ
    ])
    assert sorted(model.keys) == [["K", "L", "X"], ["K", "X"]]
    assert [r.outputs()["Y"].tolist() for r in responses[:3]] == [[[7.0]], [[1.0]], [[8.0]]]
    assert str(responses[3].error) == "inputs must have the same number of rows, got X 2, K 1"


def test_string_outputs_and_inputs(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    cfg = config([{"name": "S", "data_type": "TYPE_STRING", "dims": [1]}],
                 [{"name": "T", "data_type": "TYPE_STRING", "dims": [1]}])

    class Upper(tb.BatchingModel):  # type: ignore[name-defined,misc]
        def load(self, version_dir: str, params: dict[str, str], args: dict[str, str]) -> None:
            pass

        def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"T": np.vectorize(lambda b: b.upper(), otypes=[object])(batch["S"])}

    model = init(Upper(), model_dir, cfg)
    responses = model.execute([pb.Request(S=np.array([[b"ab"]], dtype=object)),
                               pb.Request(S=np.array([[1.0]], np.float32))])
    assert responses[0].outputs()["T"].tolist() == [[b"AB"]]
    assert str(responses[1].error) == "S: expected bytes [N,1], got float32 [1,1]"


def test_initialize_checks_the_artifact_and_the_batching(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    class NeedsWeights(toy_class(tb)):  # type: ignore[misc]
        artifact = "weights.bin"
        missing_hint = "run `argus models pull toy`"

    with pytest.raises(pb.TritonModelException, match=r"1/weights.bin is missing; run `argus models pull toy`"):
        init(NeedsWeights(), model_dir, XY)
    (model_dir / "1" / "weights.bin").write_bytes(b"w")
    init(NeedsWeights(), model_dir, XY)
    with pytest.raises(pb.TritonModelException, match="max_batch_size > 0"):
        init(toy_class(tb)(), model_dir, {**XY, "max_batch_size": 0})


# ---- the generic ONNX model ---------------------------------------------------------------------------------


def test_onnx_model_serves_any_graph_with_the_configs_io(tb: types.ModuleType, pb: Any, model_dir: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx builds the test graph (installed by scripts/bootstrap.sh)")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "TWO"], ["Y"])], "twice",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor("TWO", TensorProto.FLOAT, [], [2.0])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(model_dir / "1" / "model.onnx"))
    cfg = config([{"name": "X", "data_type": "TYPE_FP32", "dims": [3]}],
                 [{"name": "Y", "data_type": "TYPE_FP32", "dims": [3]}], intra_op_threads="1")
    model = init(tb.OnnxModel(), model_dir, cfg)
    assert model.core.session.get_session_options().intra_op_num_threads == 1
    responses = model.execute([pb.Request(X=np.ones((2, 3), np.float32)), pb.Request(X=np.ones((1, 3), np.uint8)),
                               pb.Request(X=np.full((1, 3), 5, np.float32))])
    assert responses[0].outputs()["Y"].tolist() == [[2.0] * 3] * 2
    assert str(responses[1].error) == "X: expected float32 [N,3], got uint8 [1,3]"
    assert responses[2].outputs()["Y"].tolist() == [[10.0] * 3]
    # Core (tests, benchmarks) is the same session without Triton
    core = tb.OnnxCore(str(model_dir / "1"))
    assert core.infer({"X": np.ones((1, 3), np.float32)})["Y"].tolist() == [[2.0] * 3]
    model.finalize()
    assert model.core is None
    os.remove(model_dir / "1" / "model.onnx")
    with pytest.raises(pb.TritonModelException, match="model.onnx is missing; run `argus models pull`"):
        init(tb.OnnxModel(), model_dir, cfg)
