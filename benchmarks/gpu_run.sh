#!/usr/bin/env bash
# Issue 17's GPU figures, measured through the product itself, in one call of the device tool.
#
# It ran four times on an H200 on 2026-11-30 (benchmarks/results/pipeline-gpu-h200-2026-11-30*.json,
# docs/benchmarks.md): the first call with the defaults below took 436 s of a 600 s limit (the
# machine's start and the transfers add about 30 s); the notes in each results file give each
# call's ARGS and PARTS; tests/test_bench_scripts.py runs its --quick form on the CPU. Twice more on
# 2026-12-04 (pipeline-gpu-h200-2026-12-04*.json): there the batch part alone took 183 s (its RGB-route
# rounds, 20 s each, and one slow round of the job), so BOUND_S=420 cut the video part; the second
# call measured the 1080p clip alone (PARTS=video, one round) in 207 s. The engine's load and the
# compiles of each part take about a minute of a call.
#
#   bash benchmarks/gpu_run.sh prepare   # here: wheels into .whl/ (ignored), trim the tree (below)
#   device run: command "bash benchmarks/gpu_run.sh device", carry [".whl"], timeout_s 600
#                (BOUND_S, 470 s, bounds the measuring; then 60 s at most for the CLI on a 1080p clip;
#                ARGS replaces the script's arguments, e.g. fewer clips or rounds for a shorter call;
#                PARTS names the parts to run, e.g. "engine rss"; CLI_S=0 leaves the CLI run out, CLI_VIDEO=0
#                its video; ARGS2: a second pipeline_bound run's arguments, BOUND2_S its limit; PARTS=none:
#                no pipeline_bound run; SCALING: benchmarks/batch_scaling.py's arguments, SCALING_S its limit,
#                e.g. SCALING="--variant default --variant processes=12" for the job's worker processes)
#   bash benchmarks/gpu_run.sh restore   # here: the whole tree back (always, even if the call failed)
#
# Why "prepare" trims: the device tool sends the working tree, 64 MiB at most, and the tracked files
# are about 81 MB. The run reads neither the seed model, nor the U-Net's ONNX files (on a GPU the
# Keras engine rebuilds the U-Net from model.json, the Lite0 weights and unet-trained.npz), nor
# docs' images. "prepare" leaves those out of the working tree with git's sparse checkout: git
# knows they are absent on purpose, so they cannot be committed as deletions. "restore" puts them
# back. Trimmed tree plus wheels: about 61 MiB.
#
# The device image has JAX with CUDA, OpenCV, NumPy, ONNX Runtime (CPU only), tqdm, click and
# psutil, but no Keras and no PyAV: those travel as Python 3.12 wheels. The figures come from
# benchmarks/pipeline_bound.py with the Keras engine (Keras 3 on JAX, bf16), which is what
# backend="auto" loads there (the environment check prints it), since ONNX Runtime has no CUDA
# provider there. They are:
#   - engine-only images/s at 256 x 256, batch 1, 16 and 64, and the copies to and from the GPU;
#   - batch: 1-megapixel photos against decode + encode only and the engine only;
#   - video at 1080p and 576p against decode + encode only on the same machine (h264_nvenc when
#     PyAV's FFmpeg opens it there, else libx264 on the 16 cores) and against a naive loop.
# One process measures them all (the engine is built and each shape compiled once) and rewrites
# the results file after each part and each clip, so the time limit loses only the part it cuts.
# Since 2026-12-01 each round of the video and batch parts also runs decode + encode with the colour
# (one more decode + encode a round, and one untimed product run before the rounds): the first
# call's 436 s would be longer now; ARGS="--rounds 3" or fewer clips keep a call under its limit.
set -u
cd "$(dirname "$0")/.." || exit 1
WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0 av==18.1.0)
TRIM=("/*" "!/streamcolor/engines/weights/seed/" "!/streamcolor/engines/weights/unet/*.onnx" "!/docs/gallery/"
      "!/docs/*.png")

case "${1:-}" in
prepare)
    if [ "$(git config --get core.sparseCheckout)" = true ]; then
        echo "this checkout is already sparse: restore it (or trim by hand) first" >&2; exit 1
    fi
    git check-ignore -q .whl || echo "/.whl/" >> "$(git rev-parse --git-path info/exclude)"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" || exit 1
    git sparse-checkout set --no-cone "${TRIM[@]}" || exit 1
    du -sh --exclude=.git . ;;
restore)
    git sparse-checkout disable && git status --short | head ;;
device)
    # PY, PARTS, QUICK, BACKEND and BOUND_S can be changed for a try on a CPU (tests/test_bench_scripts.py)
    PY=${PY:-python3}
    SITE=${SITE:-/tmp/site}
    mkdir -p "$SITE"
    WHL=${WHL:-.whl}  # (a try on a CPU names another: .whl holds Python 3.12 wheels for the device)
    if [ -d "$WHL" ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHL"/*.whl \
            || exit 1
    fi
    # streamcolor travels as source, not installed, so the entry points that its pyproject.toml
    # declares (the Keras engine finds the U-Net's builder by one) are written as a dist-info here
    $PY - "$SITE" <<'PYEOF' || exit 1
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"streamcolor-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: streamcolor\nVersion: {project['version']}\n")
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
    for group, eps in project.get("entry-points", {}).items()))
PYEOF
    export PYTHONPATH=$SITE:$PWD
    # the parts run in three processes: XLA's cache lets the later ones reuse what the first compiled
    export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache
    unset KERAS_BACKEND  # the Keras engine picks JAX itself
    OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
      lscpu | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket)"; } > "$OUT/gpu.txt" 2>&1
    cat "$OUT/gpu.txt"
    KERAS_BACKEND=jax $PY -c "import av, cv2, jax, keras, onnxruntime as o
print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'av', av.__version__, 'cv2', cv2.__version__)
print('onnxruntime', o.__version__, o.get_available_providers())
print('nvenc in PyAV:', sorted(c for c in av.codecs_available if 'nvenc' in c))" > "$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
    # what backend="auto" would load here (a user's default), beside the Keras engine measured below
    $PY -c "from streamcolor.engines.select import auto_runtime, cuda_available, has_nvidia_gpu, jax_on_gpu as j
print('auto loads:', auto_runtime(ort_cuda=cuda_available(), nvidia_gpu=has_nvidia_gpu(), jax_gpu=j))" >> "$OUT/env.txt" 2>&1
    tail -1 "$OUT/env.txt"
    # NVENC: why h264_nvenc does (not) open, in FFmpeg's words, and where the driver's encoder library is.
    # A driver mounted without its video capability has no libnvidia-encode; one outside the loader's
    # path is put on it, so that codec="auto" (the product's default) finds it in every part below.
    nvenc() { $PY -c "from streamcolor.video.codecs import encoder_error as e; print('h264_nvenc:', e('h264_nvenc') or 'opens')"; }
    OLD_LD=${LD_LIBRARY_PATH-}
    { echo "NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DRIVER_CAPABILITIES:-(unset)}"; nvenc
      ldconfig -p 2>/dev/null | grep -E "libcuda\.so|libnvidia-encode|libnvcuvid" | head -5
      libs=$(timeout 20 find /usr/local/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 /lib/x86_64-linux-gnu -maxdepth 3 -name 'libnvidia-encode.so*' \
             2>/dev/null | head -5); echo "libnvidia-encode found: ${libs:-none}"
      if [ -n "$libs" ] && ! nvenc | grep -q opens; then
          export LD_LIBRARY_PATH=$(dirname "$(echo "$libs" | head -1)")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
          echo "with LD_LIBRARY_PATH=$LD_LIBRARY_PATH:"; nvenc
      fi; } > "$OUT/nvenc.txt" 2>&1
    cat "$OUT/nvenc.txt"
    if grep -q "^with LD_LIBRARY_PATH" "$OUT/nvenc.txt" && ! tail -1 "$OUT/nvenc.txt" | grep -q opens; then
        export LD_LIBRARY_PATH=$OLD_LD  # (it did not help: the parts run as they would have)
    fi
    F="$OUT/pipeline-gpu-h200.json"
    skip=$(printf '%s\n' engine video batch rss | grep -vxF -f <(printf '%s\n' ${PARTS:-engine video batch}) | tr '\n' ' ')
    # One process: the engine is built and each shape compiled once.  The results file is
    # rewritten after each part (and each clip), so the time limit cuts short only the part it lands in.
    T0=$(date +%s)
    if [ "${PARTS:-}" != none ]; then
    # shellcheck disable=SC2086
    timeout -k 10 "${BOUND_S:-470}" $PY -m benchmarks.pipeline_bound ${QUICK:-} --backend "${BACKEND:-keras}" \
        ${QUICK:-${ARGS:---require-gpu --clips 1080p 576p --frames 240 --photos 128 --rounds 3}} \
        --skip $skip --out "$F" > "$OUT/bound.log" 2>&1
    echo "bound: rc=$? $(( $(date +%s) - T0 )) s"
    grep -E "pipeline_bound: |Error|error" "$OUT/bound.log" | cut -c1-600
    fi
    if [ -n "${SCALING:-}" ]; then  # benchmarks/batch_scaling.py's variants, e.g. SCALING="--variant default --variant cv2=1"
        T0=$(date +%s)
        # shellcheck disable=SC2086
        timeout -k 10 "${SCALING_S:-300}" $PY -m benchmarks.batch_scaling --backend "${BACKEND:-keras}" $SCALING \
            --out "$OUT/batch-scaling.json" > "$OUT/scaling.log" 2>&1
        echo "scaling: rc=$? $(( $(date +%s) - T0 )) s"; grep -E "batch_scaling: |Error" "$OUT/scaling.log" | cut -c1-400
    fi
    if [ -z "${QUICK:-}" ] && [ -n "${ARGS2:-}" ]; then
        # a second run in a new process, e.g. with other OpenCV threads (cv2.setNumThreads is the
        # process's); XLA's cache above spares it the compiles
        T0=$(date +%s)
        # shellcheck disable=SC2086
        timeout -k 10 "${BOUND2_S:-150}" $PY -m benchmarks.pipeline_bound --backend "${BACKEND:-keras}" $ARGS2 \
            --out "$OUT/pipeline-gpu-h200-2.json" > "$OUT/bound2.log" 2>&1
        echo "bound2: rc=$? $(( $(date +%s) - T0 )) s"
        grep -E "pipeline_bound: |Error|error" "$OUT/bound2.log" | cut -c1-600
    fi
    if [ -z "${QUICK:-}" ] && [ "${CLI_S:-60}" != 0 ]; then  # (CLI_S=0: no CLI run)
        # the CLI as a user types it, on a 1080p clip: what it logs (codec, engine, frames/s)
        if [ "${CLI_VIDEO:-1}" != 0 ]; then
            $PY -c "from streamcolor.video import make_clip; make_clip('/tmp/cli-in.mp4', 1920, 1080, 240)" &&
            T0=$(date +%s) && timeout -k 5 "${CLI_S:-60}" $PY -m streamcolor video /tmp/cli-in.mp4 -o /tmp/cli-out.mp4 \
                --no-progress > "$OUT/cli.log" 2>&1
            echo "cli: rc=$? $(( $(date +%s) - T0 )) s"; tail -5 "$OUT/cli.log" | cut -c1-300
        fi
        # and `streamcolor batch` on 128 one-megapixel gray JPEGs (its time includes the engine's load)
        $PY -c "import cv2, numpy as np, pathlib
d = pathlib.Path('/tmp/cli-photos'); d.mkdir(exist_ok=True); g = np.random.default_rng(0)
x = np.add.outer(np.arange(864), np.arange(1152)) % 256
for i in range(128):
    cv2.imwrite(str(d / f'p{i:03d}.jpg'), np.clip(x + g.normal(0, 20, x.shape) + i, 0, 255).astype(np.uint8))" &&
        # twice, as a user's first and second job: the second finds the JAX programs that the first
        # compiled kept in the product's own cache ($STREAMCOLOR_CACHE/jax, new here; XLA's cache of
        # the runs above is not used)
        for k in 1 2; do
            T0=$(date +%s) && STREAMCOLOR_CACHE=/tmp/sc-cache timeout -k 5 "${CLI_S:-60}" \
                env -u JAX_COMPILATION_CACHE_DIR $PY -m streamcolor batch /tmp/cli-photos -o /tmp/cli-photos-out$k --no-progress > "$OUT/cli-batch$k.log" 2>&1
            echo "cli batch $k: rc=$? $(( $(date +%s) - T0 )) s, $(ls /tmp/cli-photos-out$k | grep -c jpg) photos out," \
                "$(find /tmp/sc-cache/jax -type f 2>/dev/null | wc -l) files in the JAX cache"
            tail -3 "$OUT/cli-batch$k.log" | cut -c1-300
        done
    fi
    [ -f "$F" ] || [ -f "$OUT/batch-scaling.json" ] ;;
*)
    echo "usage: bash benchmarks/gpu_run.sh prepare|device|restore (see the comments at the top)" >&2; exit 2 ;;
esac
