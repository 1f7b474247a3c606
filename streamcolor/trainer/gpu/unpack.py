"""Turn a float16 .npz of colorizer weights (from pack.py) back into a run
folder that `streamcolor train export` reads (colorizer.weights.h5 + run.json)."""
import json, sys
from pathlib import Path
import numpy as np
from streamcolor.trainer.model import build_colorizer

npz, run_json, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
data = np.load(npz)
model = build_colorizer(1000)
model.set_weights([data[f"arr_{i}"].astype(np.float32) for i in range(len(data.files))])
model.save_weights(out / "colorizer.weights.h5")
run = json.loads(run_json.read_text())
run["source_weights"] = npz.name
(out / "run.json").write_text(json.dumps(run, indent=1))
print("ok", out)
