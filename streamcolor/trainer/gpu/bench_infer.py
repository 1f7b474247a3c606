"""GPU inference throughput of the colorizer (Keras 3 on JAX, XLA-compiled)."""
import json, os, time
import numpy as np, keras
from streamcolor.trainer.model import build_colorizer
from streamcolor.trainer.extractors import build_extractor

res = {"device": open(os.environ["OUT"] + "/gpu.txt").read().strip()}
for policy in ("float32", "bfloat16"):
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if policy == "bfloat16" else "float32")
    model = build_colorizer(1000)
    ext = build_extractor("efficientnet_lite0")
    for size in (256,):
        for batch in (1, 16, 64):
            l = np.random.uniform(-1, 1, (batch, size, size, 1)).astype("float32")
            l_ext = np.random.uniform(-1, 1, (batch, 224, 224, 1)).astype("float32")
            f = lambda: np.asarray(model.predict_on_batch([l, np.asarray(ext.predict_on_batch(l_ext), "float32")]))
            f(); f()
            n = max(5, 200 // batch)
            t = time.perf_counter()
            for _ in range(n):
                f()
            dt = (time.perf_counter() - t) / n
            res[f"{policy}_r{size}_b{batch}_images_per_s"] = round(batch / dt, 1)
            print(policy, size, batch, round(batch / dt, 1), flush=True)
json.dump(res, open("/tmp/runs/bench_infer.json", "w"), indent=1); print(json.dumps(res))
