"""`streamcolor models`: what models and runtimes this install has, as a table a person reads."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from typing import Any

import click

from streamcolor.commands.common import common_options
from streamcolor.engines import ALIASES, available_backends, available_models, resolve_model, runtime_info

#: Backend -> the modules it needs (all must be importable here for it to be listed).  fp16
#: converts the float32 graphs when it loads (no shipped bundle holds float16 files), with
#: onnx and onnxconverter-common: the [gpu] and [train] extras, not [cpu].
BACKEND_NEEDS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime",), "onnx-int8": ("onnxruntime",),
    "onnx-fp16": ("onnxruntime", "onnx", "onnxconverter_common"),
    "keras": ("keras",), "tensorrt": ("tensorrt",),
}


def installed_backends() -> list[str]:
    """The backends whose runtime is installed in this environment (found without importing it)."""
    return [b for b in available_backends()
            if all(importlib.util.find_spec(m) is not None for m in BACKEND_NEEDS.get(b, ()))]


def quality_line(meta: dict[str, Any]) -> list[str]:
    """Measured quality from model.json: per held-out split, a*b* MSE as a
    fraction of the gray baseline's (lower is better) and PSNR over gray."""
    # a model.json with one "eval" (the seed's) scored photos kept out of training from its training
    # sources: a val split in all but name, said as such (not to be read as the unseen-source holdout)
    splits = meta.get("eval_splits") or ({"val": meta["eval"]} if isinstance(meta.get("eval"), dict) else {})
    out = []
    for split, ev in splits.items():
        try:
            mse, gray = ev["model"]["mse_ab"], ev["gray"]["mse_ab"]
            dpsnr = ev["model"]["psnr"] - ev["gray"]["psnr"]
        except (KeyError, TypeError):
            continue
        out.append(f"{split}: {mse / gray:.3f}x gray a*b* MSE, PSNR {dpsnr:+.2f} dB over gray "
                   f"({ev.get('images', '?')} photos)")
    return out


def data_line(meta: dict[str, Any]) -> str:
    """Training data in one line: photos per split and where they came from."""
    data = meta.get("data") or {}
    counts = data.get("data_counts") or {}
    parts = [f"{c['photos']} {split}" for split, c in counts.items() if isinstance(c, dict) and "photos" in c]
    text = ", ".join(parts) + " photos" if parts else ""
    desc = meta.get("description", "")
    if "Debian" in desc:
        text += " from Debian packages (docs/training-data.md)"
    return text or str(data.get("source", "-"))


def _runs(backend: str, info, precisions: list[str]) -> bool:
    """Whether ``backend`` (installed here) can run the bundle ``info``."""
    if backend == "onnx-int8":
        return "int8" in precisions
    if backend == "onnx-fp16":
        return True  # (converted when it loads: the backend is listed only where the converter is installed)
    if backend == "keras":
        from streamcolor.engines.keras_engine import can_run

        return can_run(info)
    return True  # onnx, and tensorrt (which builds its engines from the ONNX graphs)


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the same facts as JSON.")
@common_options
def command(as_json: bool) -> None:
    """List the shipped models with their training data, licence and measured
    quality (on held-out photos, against the gray baseline), and the
    runtimes (backends) installed here.

    \b
    Examples:
      streamcolor models
      streamcolor image old.jpg -o new.jpg -m seed --backend onnx-int8
    """
    rows = []
    backends = installed_backends()
    aliases = {target: alias for alias, target in ALIASES.items()}
    for name in available_models():
        if name in ALIASES:
            continue
        info = resolve_model(name)
        meta = info.meta
        precisions = ["fp32", *sorted(meta.get("variants", {}))]
        runs_on = [b for b in backends if _runs(b, info, precisions)]
        rows.append({"model": name, "alias": aliases.get(name), "id": info.name,
                     "architecture": info.architecture,
                     "render_size": meta.get("render_size"), "precisions": precisions, "runs_on": runs_on,
                     "folder": str(info.path),
                     "data": data_line(meta), "licence": meta.get("licence", "-"),
                     "quality": quality_line(meta), "description": meta.get("description", "")})
    rows.sort(key=lambda r: r["alias"] is None)  # the default first
    rt = runtime_info()
    if as_json:
        click.echo(json.dumps({"models": rows, "backends": backends, "onnxruntime": rt}, indent=2))
        return
    width = min(click.get_terminal_size()[0] if hasattr(click, "get_terminal_size") else 100, 110)
    header = f"{'MODEL':<16}{'ID':<28}{'KIND':<15}{'RENDER':<8}PRECISIONS"
    click.echo(header)
    for r in rows:
        label = r["model"] + (f" ({r['alias']})" if r["alias"] else "")
        click.echo(f"{label:<16}{r['id']:<28}{r['architecture']:<15}{r['render_size'] or '-':<8}"
                   f"{', '.join(r['precisions'])}")
    for r in rows:
        click.echo("")
        click.echo(f"{r['model']}: {r['id']}")
        licence = r["licence"].replace("in this folder", f"in {r['folder']}")
        for key, text in (("data", r["data"]), ("licence", licence), *(("quality", q) for q in r["quality"]),
                          ("runs on", ", ".join(r["runs_on"]) + " (of the backends installed here)")):
            click.echo(textwrap.fill(text, width=width, initial_indent=f"  {key + ':':<9}",
                                     subsequent_indent=" " * 11, break_on_hyphens=False))
    click.echo("")
    click.echo(f"Backends installed here: {', '.join(backends)} "
               f"(ONNX Runtime {rt['onnxruntime']}: {', '.join(p.replace('ExecutionProvider', '') for p in rt['providers'])})")
    click.echo(textwrap.fill(
        "Quality: a*b* MSE as a fraction of the gray image's (1.0 = no better than gray; lower is better). "
        "val: photos kept out of training, from the training's sources; holdout: photos from sources "
        "training never saw (the figure to trust). "
        "Training record: model.json in each model's folder; README 'Models'.", width=width))
