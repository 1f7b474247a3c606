"""Pack each run's best (lowest val_loss) and final weights as float16 .npz
(under the 16 MiB a returned file may have) plus one tarball of logs."""
import json, os, tarfile
from pathlib import Path
import numpy as np
from streamcolor.trainer.train import list_checkpoints, load_trained

out = Path(os.environ["OUT"])
summary = {}
for run in sorted(Path("/tmp/runs").glob("run-*")):
    ckpts = list_checkpoints(run)
    if not ckpts:
        continue
    states = {c: json.loads((c / "state.json").read_text()) for c in ckpts}
    best = min(ckpts, key=lambda c: states[c].get("val_loss") or 9e9)
    for tag, ck in (("best", best), ("final", ckpts[-1])):
        model, info = load_trained(ck)
        np.savez(out / f"{run.name}-{tag}.npz", *[w.astype(np.float16) for w in model.get_weights()])
        summary[f"{run.name}-{tag}"] = {k: states[ck].get(k) for k in ("step", "epoch", "loss", "val_loss")}
    summary[run.name + "-checkpoints"] = [{k: states[c].get(k) for k in ("step", "loss", "val_loss")} for c in ckpts]
(out / "summary.json").write_text(json.dumps(summary, indent=1))
with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
    for run in Path("/tmp/runs").glob("run-*"):
        for f in ["log.csv", "run.json", "fit.log"] + [f"samples/{p.name}" for p in sorted((run / "samples").glob("*.png"))[-3:]]:
            if (run / f).exists():
                tar.add(run / f, arcname=f"{run.name}/{f}")
    for f in ("prepare.log", "bench.log", "bench_infer.json"):
        if Path("/tmp/runs", f).exists():
            tar.add(Path("/tmp/runs", f), arcname=f)
print(json.dumps({k: v for k, v in summary.items() if not k.endswith("checkpoints")}, indent=1))
