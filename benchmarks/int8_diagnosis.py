"""Issue 34 ("ImageNet bundle ... int8 top-1 agrees with the float model on >= 97 % of real photos"): where the int8
bundle's top-1 disagreements come from, measured on real photos not used for calibration or correction.

On the same test photos it scores, against the float model's top-1 (the same function the bundle was converted from):
- the shipped int8 model (full integer: every weight and activation int8);
- the float model with only its weights rounded to the int8 grid (batch norms folded into the kernels, per output
  channel, scale max|w| / 127, as the converter does), without and with the analytic bias correction of
  ``converter.export.imagenet.correct_weight_bias`` (on the bundle's calibration photos), and, with ``--gptq``, with the
  kernels rounded by GPTQ (Frantar et al. 2023: each input's rounding error pushed onto the inputs not yet rounded,
  weighted by the layer's input second moments on the calibration photos) then bias-corrected;
- the float head on the int8 model's pooled features (everything before the classifier int8, the classifier float);
- the float model with only its pooled features, or only its logits, rounded to the int8 bundle's grid for them;
- the agreement by the float model's top-2 logit gap (near ties).

    .venv/bin/python benchmarks/int8_diagnosis.py --out reports/bias-correction/imagenet-int8.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converter.evaluation.cross_validation import interval
from converter.export.bias_correction import folded_kernel, int8_rounded

REPO = Path(__file__).resolve().parents[1]


def score(top1: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    same = top1 == ref
    return {"agreement": round(float(same.mean()), 4), "ci95": interval(float(same.mean()), len(same))}


def layer_pairs(model: Any) -> list[tuple[Any, Any]]:
    """(convolution, batch norm) pairs of the bundle's float model (``fold_normalization``'s layout)."""
    import keras  # noqa: PLC0415

    body = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    norms = {"expand_conv": "bn0", "depthwise_conv": "bn1", "project_conv": "bn2"}

    def norm_of(conv: Any) -> Any:
        if not conv.name.startswith("blocks_"):
            return body.get_layer("bn1")
        _, block, kind = conv.name.split("_", 2)
        return body.get_layer(f"blocks_{block}_{norms[kind]}")

    convs = [layer for layer in body.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    return [(model.get_layer("conv_stem"), body.get_layer("bn0")), *((c, norm_of(c)) for c in convs)]


def round_weights(model: Any) -> None:
    """Every folded kernel (and the classifier's weights) rounded to TFLite's per-channel int8 grid, in place."""
    for conv, bn in layer_pairs(model):
        f, s, red = folded_kernel(conv, bn)
        conv.set_weights([int8_rounded(f, red) / s])
    fc = next(layer for layer in model.layers if hasattr(layer, "layers")).get_layer("fc")
    w, b = fc.get_weights()
    fc.set_weights([int8_rounded(w, (0,)), b])


def gptq_rows(w: np.ndarray, h: np.ndarray, step: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """GPTQ over G independent groups: ``w`` (G, d, out), ``h`` (G, d, d) input second moments, ``step`` (G, 1, out)."""
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    d = w.shape[1]
    dead = np.einsum("gii->gi", h) <= 0
    for g, i in zip(*np.nonzero(dead), strict=True):
        h[g, i, i] = 1.0
        w[g, i, :] = 0.0
    h += np.eye(d)[None] * (damp * np.einsum("gii->gi", h).mean(1))[:, None, None]
    u = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)
    q = np.zeros_like(w)
    for i in range(d):
        q[:, i, :] = np.clip(np.round(w[:, i, :] / step[:, 0, :]), -127, 127) * step[:, 0, :]
        err = (w[:, i, :] - q[:, i, :]) / u[:, i, i][:, None]
        w[:, i + 1 :, :] -= u[:, i, i + 1 :][:, :, None] * err[:, None, :]
    return q


def gptq_round(model: Any, calib: np.ndarray, max_positions: int = 256, batch: int = 8, seed: int = 0) -> None:
    """Round every folded kernel of ``model`` with GPTQ on ``calib``, then take the mean output shift against the float
    kernels off the batch norms (analytic bias correction), in place."""
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    pairs = layer_pairs(model)
    body = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    stem = model.get_layer("conv_stem")
    stem_input = keras.Model(model.input, model.get_layer("stem_pad").output)
    conv_inputs = keras.Model(body.input, [c.input for c, _ in pairs[1:]])
    rng = np.random.default_rng(seed)
    hs: list[Any] = [None] * len(pairs)
    sums: list[Any] = [None] * len(pairs)
    n = 0
    for i in range(0, len(calib), batch):
        x = np.asarray(stem_input(np.asarray(calib[i : i + batch], np.float32)))
        maps = [x, *(np.asarray(m) for m in conv_inputs(np.asarray(stem(x))))]
        n += len(x)
        for j, ((conv, _), m) in enumerate(zip(pairs, maps, strict=True)):
            sums[j] = m.sum(0) if sums[j] is None else sums[j] + m.sum(0)
            kh, kw = conv.kernel_size
            if (kh, kw) == (1, 1):
                p = m[:, :: conv.strides[0], :: conv.strides[1], :].reshape(-1, 1, m.shape[-1])
            else:
                p = np.asarray(tf.image.extract_patches(m, [1, kh, kw, 1], [1, *conv.strides, 1], [1, 1, 1, 1], conv.padding.upper()))
                p = p.reshape(-1, kh * kw, m.shape[-1])
            if len(p) > max_positions * len(x):
                p = p[rng.choice(len(p), max_positions * len(x), replace=False)]
            if isinstance(conv, keras.layers.DepthwiseConv2D):
                h = np.einsum("nkc,nlc->ckl", p, p, optimize=True)
            else:
                flat = p.reshape(len(p), -1)
                h = (flat.T @ flat)[None]
            hs[j] = h if hs[j] is None else hs[j] + h
    for j, (conv, bn) in enumerate(pairs):
        f, s, _ = folded_kernel(conv, bn)
        kh, kw = conv.kernel_size
        depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
        if depthwise:
            w = f[:, :, :, 0].reshape(kh * kw, -1).T[:, :, None]
            step = np.abs(w).max(1, keepdims=True) / 127.0
            fq = gptq_rows(w, hs[j], np.where(step > 0, step, 1.0))[:, :, 0].T.reshape(f.shape)
        else:
            w = f.reshape(-1, f.shape[3])[None]
            step = np.abs(w).max(1, keepdims=True) / 127.0
            fq = gptq_rows(w, hs[j], np.where(step > 0, step, 1.0))[0].reshape(f.shape)
        fq = fq.astype(np.float32)
        op = tf.nn.depthwise_conv2d if depthwise else tf.nn.conv2d
        shift = np.asarray(op((sums[j] / n)[None], fq - f, [1, *conv.strides, 1], conv.padding.upper())).mean((0, 1, 2))
        gamma, beta, mean, var = bn.get_weights()
        conv.set_weights([fq / s])
        bn.set_weights([gamma, beta - shift, mean, var])


def pooled_and_head(model: Any, x: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float model's pooled features, and its classifier's weights and bias."""
    import keras  # noqa: PLC0415

    body = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    pre = keras.Model(model.input, model.get_layer("conv_stem").output)
    pool = keras.Model(body.input, body.get_layer("pool").output)
    feats = np.concatenate([np.asarray(pool(pre(np.asarray(x[i : i + batch], np.float32)))) for i in range(0, len(x), batch)])
    w, b = body.get_layer("fc").get_weights()
    return feats, w, b


def int8_internals(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, tuple[float, int]]]:
    """The int8 model's output, dequantised pooled features (MEAN's output) and logits (SOFTMAX's input), and their grids."""
    from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=2)
    it.allocate_tensors()
    ops = it._get_ops_details()
    pool_t = next(int(op["outputs"][0]) for op in ops if op["op_name"] == "MEAN")
    logit_t = next(int(op["inputs"][0]) for op in ops if op["op_name"] == "SOFTMAX")
    details = {t["index"]: t for t in it.get_tensor_details()}
    grids = {"pool": details[pool_t]["quantization"], "logits": details[logit_t]["quantization"]}
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def deq(k: int) -> np.ndarray:
        s, z = details[k]["quantization"]
        return (it.get_tensor(k).astype(np.float32) - z) * s

    outs, pools, logits = [], [], []
    for img in x:
        it.set_tensor(inp, img[None])
        it.invoke()
        outs.append(it.get_tensor(out)[0].copy())
        pools.append(deq(pool_t)[0])
        logits.append(deq(logit_t)[0])
    return np.array(outs), np.array(pools), np.array(logits), grids


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=REPO / "models/imagenet/model.tflite", help="the int8 bundle model")
    p.add_argument("--photos", type=Path, default=REPO / "../shared/datasets/cats-vs-dogs.tar.gz")
    p.add_argument("--images", type=int, default=1000, help="test photos scored (default 1000, half cats, half dogs)")
    p.add_argument("--calib-images", type=int, default=300, help="train photos for the bias correction / GPTQ statistics (default 300)")
    p.add_argument("--gptq", action="store_true", help="also score GPTQ-rounded weights (several minutes on 2 cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    import keras  # noqa: PLC0415

    from converter.export.imagenet import correct_weight_bias, float_model, photos  # noqa: PLC0415

    t0 = time.time()
    x, _, _ = photos(args.photos, "test", args.images // 2, args.seed)
    calib, _, _ = photos(args.photos, "train", args.calib_images // 2, args.seed)  # the bundle's calibration photos
    tmp = tempfile.TemporaryDirectory(prefix="int8-diagnosis-")
    path = Path(tmp.name) / "float.keras"
    float_model()[0].save(path)
    model = keras.models.load_model(path, compile=False)  # loaded: one graph a layer (fold_normalization's nested body)
    feats, w, b = pooled_and_head(model, x)
    logits = feats @ w + b
    ref = logits.argmax(1)
    q_out, q_pool, q_logits, grids = int8_internals(args.model, x)
    (ps, pz), (ls, lz) = grids["pool"], grids["logits"]
    res: dict[str, Any] = {
        "int8 model (uint8 output)": score(q_out.argmax(1), ref),
        "int8 model's logits": score(q_logits.argmax(1), ref),
        "float classifier on the int8 pooled features": score((q_pool @ w + b).argmax(1), ref),
        "float, only the pooled features on the int8 grid": score(((np.clip(np.round(feats / ps) + pz, -128, 127) - pz) * ps @ w + b).argmax(1), ref),
        "float, only the logits on the int8 grid": score(((np.clip(np.round(logits / ls) + lz, -128, 127) - lz) * ls).argmax(1), ref),
    }
    with_gap = np.sort(logits, 1)
    gap = with_gap[:, -1] - with_gap[:, -2]
    same = q_out.argmax(1) == ref
    res["by float top-2 logit gap"] = {
        f">= {g}": {"photos": int((gap >= g).sum()), "share": round(float((gap >= g).mean()), 4), **score(q_out.argmax(1)[gap >= g], ref[gap >= g])}
        for g in (0.1, 0.3, 0.5, 1.0)
    }
    res["disagreements"] = {"count": int((~same).sum()), "float top-2 logit gap median": round(float(np.median(gap[~same])), 3),
                            "with gap < 0.3": int((~same & (gap < 0.3)).sum())}
    res["pooled features"] = {"int8 grid step": round(float(ps), 5), "float max": round(float(feats.max()), 3),
                              "float p99.9": round(float(np.percentile(feats, 99.9)), 3), "float mean": round(float(feats.mean()), 4),
                              "int8 error rms": round(float(np.sqrt(((q_pool - feats) ** 2).mean())), 4),
                              "int8 per-channel mean error rms": round(float(np.sqrt(((q_pool - feats).mean(0) ** 2).mean())), 4)}
    res["logits"] = {"int8 grid step": round(float(ls), 4), "int8 error rms": round(float(np.sqrt(((q_logits - logits) ** 2).mean())), 4)}

    variants = {"float, weights only on the int8 grid": None, "float, weights only on the int8 grid, analytic bias correction": "analytic"}
    if args.gptq:
        variants["float, weights only on the int8 grid, GPTQ rounding + bias correction"] = "gptq"
    for name, how in variants.items():
        copy = keras.models.load_model(path, compile=False)
        if how == "analytic":
            correct_weight_bias(copy, calib)
        elif how == "gptq":
            gptq_round(copy, calib)
        round_weights(copy)  # as the converter rounds them (the GPTQ kernels are on its grid already)
        f2, w2, b2 = pooled_and_head(copy, x)
        res[name] = score((f2 @ w2 + b2).argmax(1), ref)
        print(name, res[name], flush=True)
    tmp.cleanup()
    report = {"task": "int8 ImageNet bundle against its float model: where the top-1 disagreements come from",
              "model": str(args.model.relative_to(REPO)) if args.model.is_relative_to(REPO) else str(args.model),
              "photos": f"{len(x)} photos of {args.photos.name} (test); weight statistics from {len(calib)} of its train split",
              "results": res, "seconds": round(time.time() - t0, 1), "machine": f"{platform.machine()} {platform.system()}",
              "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
