"""Model cards: a markdown file beside each weights file (``<name>.pt`` -> ``<name>.md``)."""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ichnode.models.registry import SLICE_SEGMENTATION, ModelSpec
from ichnode.training.recipes import recipe_for, untrained_head_flags
from ichnode.training.metrics import CLASSIFICATION_KEYS

_NAMES = {"accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
          "precision": "precision", "f1": "F1", "balanced_accuracy": "balanced accuracy", "auc": "ROC AUC"}

_OUTPUT = {
    "resnet50_cls": "`logits` (B, 2) over (no_hemorrhage, hemorrhage); P(hemorrhage) = softmax(logits)[:, 1]. "
                    "`features` for Grad-CAM.",
    "dtvit": "`ich_logits` (B, 2) over (normal, ICH); P(ICH) = softmax(ich_logits)[:, 1]. `location_logits` "
             "(B, 3) over (deep, lobar, infratentorial).",
    "vgg_wso": "`logits` (B, 6) over (any, EDH, IPH, IVH, SAH, SDH): P(hemorrhage) = sigmoid(logits[:, 0]), "
               "subtypes sigmoid(logits[:, 1:]). `cam` (B, 6, h, w): the engine's heatmap is channel 0.",
}


def not_reported_lines(spec: ModelSpec, meta: dict[str, Any]) -> list[str]:
    """One card line per head the sidecar marks untrained: that it reports nothing, and why."""
    return [f"- **Not reported: the {role} head** ({head.meaning}) is **untrained**: the training data has no "
            "labels for it, so it got no training signal and keeps its random initialisation (sidecar "
            f"`\"{head.trained_flag}\": false`). The engine never reads it: nothing of it reaches the SR, the "
            "worklist or a notification."
            for role, head in spec.heads.untrained(meta).items()]


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.1f} %"


def write_card(
    weights: str | Path,
    spec: ModelSpec,
    *,
    config: dict[str, Any],
    small: bool,
    image_size: int,
    epochs: int,
    seed: int,
    n_train: int,
    labels: Sequence[int] | np.ndarray | None = None,
    history: list[dict[str, Any]] | None = None,
    cv: dict[str, Any] | None = None,
    command: str | None = None,
    data_dir: str | Path | None = None,
    train_seconds: float | None = None,
    report: str | None = None,
) -> Path:
    """Write ``<weights stem>.md`` beside ``weights`` and return its path."""
    weights = Path(weights)
    recipe = recipe_for(spec)
    size = weights.stat().st_size
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    n_pos = int(np.sum(labels)) if labels is not None else None
    n_params = None
    try:
        import torch

        state = torch.load(weights, map_location="cpu", weights_only=True)
        n_params = sum(int(v.numel()) for k, v in state.items()
                       if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    except Exception:  # pragma: no cover - the card is still useful without the count
        pass
    overrides = {k: v for k, v in config.items() if spec.small.get(k) != v} if small else {}
    lines = [
        f"# Model card: {spec.name} (seed {spec.seed}) - `{weights.name}`",
        "",
        f"> **Not for clinical use.** Research weights trained on {n_train} public 2D images; not validated on "
        "DICOM series, not a medical device, not to be used for diagnosis or triage decisions.",
        "",
        "## Model",
        "",
        f"- Architecture: {spec.paper}.",
        f"- Registry name `{spec.name}`, version **{spec.version}** (`ichnode.models.registry.get"
        f"(\"{spec.name}\")`).",
        f"- Configuration: {'the registry **small** configuration' if small else 'the paper configuration'}"
        + (f", with `{json.dumps(overrides)}`" if overrides else "")
        + f"; full build arguments: `{json.dumps(config)}`.",
        f"- Parameters: {n_params:,}." if n_params is not None else "- Parameters: n/a.",
        f"- Load: `spec = get(\"{spec.name}\"); m = spec.build(small={small}"
        + "".join(f", {k}={v!r}" for k, v in overrides.items())
        + f"); m.load_state_dict(torch.load(\"{weights.name}\", weights_only=True))`.",
        f"- Input: (B, {spec.input.small_shape[0]}, {image_size}, {image_size}); the 8-bit grey level v of a "
        "training image mapped back to HU as v / 255 x 80 (the inverse of the brain-window export assumed in "
        "`ichnode.training.png_dataset`), then `get(\"" + spec.name + f"\").input.hu_to_input(hu, ({image_size}, "
        f"{image_size}))` - the same function the engine applies to a CT slice ({spec.input.values}).",
        f"- Output: {_OUTPUT[spec.name]}",
        *not_reported_lines(spec, untrained_head_flags(spec)),
        f"- Weights: `{weights.name}`, {size / 1e6:.2f} MB, sha256 `{sha}`; a torch state dict, "
        "`torch.load(..., weights_only=True)`.",
        "",
        "## Training data",
        "",
        f"- head-ct-png (public Kaggle \"Head CT - hemorrhage\" set, the seed 004 data): {n_train} images"
        + (f" ({n_pos} hemorrhage, {n_train - n_pos} normal)" if n_pos is not None else "")
        + ", one per patient, 8-bit windowed PNG, image-level labels only. The set has 200 images; the "
        "other 50 are held back by the data owner for independent evaluation and were not used.",
        "- No location / subtype labels, no HU, no spacing. No ImageNet pretraining."
        + (f" Read from `{data_dir}`." if data_dir is not None else ""),
        "",
        "## Training",
        "",
        f"- {recipe.optimizer} lr {recipe.lr:g}"
        + (f" momentum {recipe.momentum:g}" if recipe.optimizer == "sgd" else "")
        + (f", x{recipe.gamma:g} every {recipe.step_size} epochs" if recipe.step_size else "")
        + f", batch {recipe.batch_size}, loss `{recipe.loss}`, {epochs} epochs (paper: {recipe.paper_epochs}), "
        f"seed {seed}, random horizontal flip + rotation +-15 deg. Source: {recipe.source}.",
        "- Trained on **all** images (no held-out set); the performance below comes from the separate "
        "cross-validation with the same recipe.",
    ]
    if history:
        last = history[-1]
        lines.append(f"- Final epoch: training loss {last['loss']:.4f}, training accuracy "
                     f"{_pct(last.get('train_accuracy'))} (augmented, on the training images: not a performance "
                     "estimate).")
    if train_seconds is not None:
        lines.append(f"- Training time: {train_seconds:.0f} s (sum of the epochs).")
    lines += ["", "Command:", "", "```", command or "(called from Python: ichnode.training.classify.train_classifier)",
              "```", "", "## Measured performance", ""]
    if cv:
        s, pooled = cv["summary"], cv["pooled"]
        lines += [
            f"{cv['folds']}-fold stratified cross-validation (split seed {cv['split_seed']}) on the same "
            f"{cv['n_images']} images, same configuration and recipe, {cv['epochs']} epochs, "
            f"{cv['image_size']} px, threshold 0.5, model after the last epoch:",
            "",
            "| metric | mean +- SD over folds | pooled out-of-fold |",
            "|---|---|---|",
        ]
        for k in CLASSIFICATION_KEYS:
            lines.append(f"| {_NAMES[k]} | {_pct(s[k]['mean'])} +- {_pct(s[k]['sd'])} | {_pct(pooled[k])} |")
        lines += ["", "Per fold (accuracy / sensitivity / specificity / AUC):", ""]
        for f in cv["per_fold"]:
            lines.append(f"- fold {f['fold']} (n={f['n_test']}): {_pct(f['accuracy'])} / {_pct(f['sensitivity'])}"
                         f" / {_pct(f['specificity'])} / {_pct(f['auc'])}")
        lines += ["", "For comparison, the seed 004 paper reports 80 % accuracy, sensitivity, specificity, "
                  "precision, F1 and \"AUC\" (= balanced accuracy) on one 80/20 split of the full 200-image set "
                  "with an ImageNet-pretrained full ResNet-50.",
                  ""]
        if report:
            lines.append(f"Full report: `{report}` in the repository.")
    else:
        lines.append("Not measured (no cross-validation metrics were given).")
    lines += [
        "",
        "## Limitations",
        "",
        f"- {n_train} training images from one public source; 2D, one slice per patient; the images were already "
        "windowed and resized by the data set's authors - real DICOM input goes through a different path.",
        "- A small network trained from scratch for a few epochs on a CPU"
        + (f"; the wide SD over folds reflects about {cv['n_images'] // cv['folds']} test images per fold."
           if cv else "."),
        "- Not for clinical use.",
        "",
    ]
    path = weights.with_suffix(".md")
    path.write_text("\n".join(lines))
    return path


# ------------------------------------------------------------------ networks trained on synthetic phantoms
_SYNTH_OUTPUT = {
    "dense_unet": "`seg_logits` (B, C, S, S), one sigmoid channel per class in the sidecar's `classes`; the engine "
                  "(`ichnode.infer.deep.DenseUNetEngine`) labels a voxel with the most probable class where its "
                  "probability is >= 0.5; volume = labelled voxels x voxel volume.",
    "resnet3d_multitask": "`volume_cbrt` (B,): cube root of the hematoma volume in mm^3 (`cbrt_mm_to_ml` gives mL). "
                          "`prognosis_logit` (B,): P(death) = sigmoid(prognosis_logit). `features` for Grad-CAM.",
}


def write_synthetic_card(weights: str | Path, *, performance: Sequence[str] | None = None,
                         report: str | None = None) -> Path:
    """Model card of a network trained on synthetic phantoms (seeds 002, 000), from the sidecar
    ``<name>.json`` that ``ichnode.training.segment`` / ``regress3d`` write (build configuration, data,
    recipe, per-epoch history, command). ``performance``: markdown lines (from
    ``ichnode.training.evaluate_synthetic``) for the measured-performance section."""
    from ichnode.models.registry import get

    weights = Path(weights)
    meta = json.loads(weights.with_suffix(".json").read_text())
    spec = get(meta["model"])
    size = weights.stat().st_size
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    n_params = sum(int(v.numel()) for k, v in state.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    recipe, history = meta.get("recipe", {}), meta.get("history", [])
    overrides = meta.get("overrides", {})
    shape = "(B, 1, " + ", ".join(str(v) for v in spec.input.trained_size(meta)) + ")"
    lines = [
        f"# Model card: {spec.name} (seed {spec.seed}) - `{weights.name}`",
        "",
        "> **Not for clinical use.** Research weights trained only on synthetic head CT phantoms "
        "(`ichnode.synth`); never validated on patient data, not a medical device, not to be used for diagnosis "
        "or triage decisions.",
        "",
        "## Model",
        "",
        f"- Architecture: {spec.paper}.",
        f"- Registry name `{spec.name}`, version **{spec.version}**; the registry **small** configuration"
        + (f" with `{json.dumps(overrides)}`" if overrides else "") + f"; full build arguments: "
        f"`{json.dumps(meta['config'])}`.",
        f"- Parameters: {n_params:,}.",
        f"- Load: `ichnode.infer.deep.load_weights(\"{spec.name}\")`, or `get(\"{spec.name}\").build(small=True"
        + "".join(f", {k}={v!r}" for k, v in overrides.items())
        + f")` + `load_state_dict(torch.load(\"{weights.name}\", weights_only=True))`.",
        f"- Input: {shape}; {meta['input']} - the same function the engine applies to a CT series.",
        f"- Output: {_SYNTH_OUTPUT[spec.name]}",
        *not_reported_lines(spec, meta),
    ]
    if spec.task == SLICE_SEGMENTATION:
        lines.append(f"- Classes (output channels, in order): {', '.join(meta['classes'])}.")
    lines += [
        f"- Weights: `{weights.name}`, {size / 1e6:.2f} MB, sha256 `{sha}`; a torch state dict "
        "(`torch.load(..., weights_only=True)`).",
        "",
        "## Training data",
        "",
        f"- {meta['data']}.",
        "- Phantoms: analytic head (skull, diploe, grey/white matter, deep grey, ventricles, CSF spaces, falx, "
        "cerebellum) with one hemorrhage of the sampled subtype, volume log-uniform in the sampled range, 230 mm "
        "field of view, slice thickness 5 or 2.5 mm, matrix 128 or 256, in-plane blur and noise (6 HU). Ground "
        "truth is exact: the hemorrhage mask on the written voxel grid.",
        "- Phantom seeds are disjoint from the evaluation phantoms (`synthetic.TRAIN_SEED_START` vs "
        "`EVAL_SEED_START`): different anatomy draw, lesion shape and noise.",
        "",
        "## Training",
        "",
        f"- {recipe.get('optimizer', '?')} lr {recipe.get('lr', float('nan')):g}"
        + (f" momentum {recipe['momentum']:g}" if recipe.get("optimizer") == "sgd" else "")
        + f", batch {recipe.get('batch_size')}, {meta['epochs']} epochs, seed {meta['train_seed']}, random "
        f"left-right flip. Paper: {recipe.get('source', '')}.",
    ]
    if spec.task == SLICE_SEGMENTATION:
        lines.append("- Loss: binary cross-entropy per class channel (the paper's). Output bias initialised to the "
                     "log-odds of each class's pixel frequency. **Deviation from the paper:** "
                     + ("Adam instead of SGD (SGD at the paper's lr 1e-3 did not learn within the CPU budget: "
                        "validation Dice 0.000 after 4 epochs; see `ichnode/training/segment.py`)"
                        if recipe.get("optimizer") == "adam" else "none in the optimiser")
                     + (f"; width {overrides['width']} instead of the small configuration's 0.125 (the 17 k-"
                        "parameter network learned too slowly)" if "width" in overrides else "") + ".")
    else:
        lines.append("- Loss: MSE on the cube root of the volume (mm) + BCE on death over the samples with an "
                     "outcome label (none here: the BCE term is 0). Volume head bias initialised to the mean "
                     "training target; batch-norm statistics re-estimated over the training set after the last "
                     "epoch.")
    if history:
        last = history[-1]
        extra = "".join(f", {k} {v:.4g}" for k, v in last.items() if k.startswith("val_"))
        lines.append(f"- Final epoch: training loss {last['loss']:.5g}{extra} (validation phantoms are logged only, "
                     "never used to choose an epoch).")
    if meta.get("train_seconds") is not None:
        lines.append(f"- Training time: {meta['train_seconds']:.0f} s (sum of the epochs, CPU, one thread).")
    lines += ["", "Command:", "", "```", meta.get("command") or "(called from Python)", "```", "",
              "## Measured performance", ""]
    if performance:
        lines += list(performance)
    else:
        lines.append("Not measured yet: run `python -m ichnode.training.evaluate_synthetic`.")
    if report:
        lines += ["", f"Full report: `{report}` in the repository."]
    lines += [
        "",
        "## Limitations",
        "",
        "- Synthetic phantoms only: real hemorrhages, real anatomy, scanner noise, beam hardening, motion and "
        "post-operative changes are not represented. Performance on patient CT is unknown.",
        "- A small network trained for minutes on a CPU at reduced resolution "
        + (f"({meta['image_size']} px slices)." if spec.task == SLICE_SEGMENTATION
           else "(" + "x".join(str(v) for v in meta["input_size"]) + " voxels)."),
    ]
    lines += ["- Not for clinical use.", ""]
    path = weights.with_suffix(".md")
    path.write_text("\n".join(lines))
    return path
