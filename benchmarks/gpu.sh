#!/usr/bin/env bash
# expkit on one GPU (issue 29): mnist_convnet and imdb_dense, with `expkit train` and with the raw scripts
# (benchmarks/raw/), in float32 and in mixed_float16. For each run: wall time, GPU utilisation (mean and max of
# nvidia-smi samples every 200 ms), peak GPU memory (memory.used above the idle figure; TensorFlow allocates on
# demand here, TF_FORCE_GPU_ALLOW_GROWTH=true) and the test accuracy. About 5-8 minutes on a GPU, install included.
#
#   bash benchmarks/gpu.sh [RESULTS_FILE]       # default: benchmarks/results/gpu.md
#
# It installs the `gpu` extra (tensorflow[and-cuda]) into a fresh virtualenv, checks that TensorFlow sees a GPU,
# and stops with exit code 3 and a message when none is visible. Settings (environment):
#   GPU_SKIP_INSTALL=1   use the current `python` instead of a fresh virtualenv (a dry run up to the GPU check)
#   GPU_ALLOW_CPU=1      run the table even without a GPU (rehearses the commands on CPU; its figures are not GPU figures)
#   GPU_MODELS="mnist_convnet imdb_dense"   which models;   GPU_INDEX=0   which card
#   EXPKIT_REPO          the checkout to install and run (default: the one holding this script)
#   EXPKIT_SHARED_DATA   folder holding mnist.npz (default: ../shared/datasets next to the repository; else Keras downloads it)
set -euo pipefail

REPO=${EXPKIT_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
OUT=${1:-$REPO/benchmarks/results/gpu.md}
MODELS=${GPU_MODELS:-"mnist_convnet imdb_dense"}
GPU_INDEX=${GPU_INDEX:-0}
SHARED=${EXPKIT_SHARED_DATA:-$REPO/../shared/datasets}
WORK=$(mktemp -d -t expkit-gpu-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)
say() { echo "[gpu.sh $(($(date +%s) - started))s] $*" >&2; }

# 1. A fresh virtualenv with the gpu extra.
if [[ "${GPU_SKIP_INSTALL:-0}" == 1 ]]; then
    PY=$(command -v python)
    say "GPU_SKIP_INSTALL=1: using $PY, no install"
else
    say "creating a virtualenv in $WORK/venv and installing $REPO[gpu]"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet --upgrade pip
    "$WORK/venv/bin/pip" install --quiet -e "$REPO[gpu]"
    PY=$WORK/venv/bin/python
fi

# 2. The first GPU step: the card must be visible to the driver and to TensorFlow.
export CUDA_VISIBLE_DEVICES=$GPU_INDEX TF_FORCE_GPU_ALLOW_GROWTH=true TF_CPP_MIN_LOG_LEVEL=2
CARD="none"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    CARD=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i "$GPU_INDEX" || echo "?")
fi
TF_GPUS=$("$PY" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null | tail -1 || echo 0)
say "nvidia-smi: $CARD; GPUs TensorFlow sees: $TF_GPUS"
if [[ "$CARD" == "none" || "${TF_GPUS:-0}" == 0 ]]; then
    if [[ "${GPU_ALLOW_CPU:-0}" != 1 ]]; then
        echo "gpu.sh: no GPU is visible (nvidia-smi: $CARD; TensorFlow GPUs: ${TF_GPUS:-0})." >&2
        echo "  Run this on a machine with an NVIDIA GPU and its driver; the gpu extra brings CUDA (tensorflow[and-cuda])." >&2
        echo "  GPU_ALLOW_CPU=1 rehearses the runs on CPU (no GPU figures)." >&2
        exit 3
    fi
    say "GPU_ALLOW_CPU=1: no GPU, rehearsing on CPU"
fi

# 3. Data: MNIST from the shared folder, a real-size generated IMDB (benchmarks/run_all.py's write_imdb).
mkdir -p "$WORK/data"
if [[ -f "$SHARED/mnist.npz" ]]; then
    cp "$SHARED/mnist.npz" "$WORK/data/"
else # Keras' own copy (the same layout), downloaded once into its cache
    say "no $SHARED/mnist.npz: fetching Keras' mnist.npz"
    "$PY" -c "import shutil, keras; shutil.copy(keras.utils.get_file('mnist.npz', 'https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz'), '$WORK/data/mnist.npz')"
fi
if [[ " $MODELS " == *" imdb_dense "* ]]; then
    say "writing a real-size imdb.npz"
    "$PY" -c "import sys; sys.path.insert(0, '$REPO/benchmarks'); from pathlib import Path; from run_all import write_imdb; write_imdb(Path('$WORK/data/imdb.npz'))"
fi
export EXPKIT_DATA_DIR=$WORK/data EXPKIT_ROOT=$WORK PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

# 4. Each run, with nvidia-smi sampling in the background.
{
    if [[ "$CARD" == "none" || "${TF_GPUS:-0}" == 0 ]]; then
        echo "# CPU rehearsal of gpu.sh: NO GPU, these are not GPU figures ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    else
        echo "# expkit on one GPU ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    fi
    echo
    echo "- GPU: $CARD (CUDA_VISIBLE_DEVICES=$GPU_INDEX); TensorFlow GPUs: $TF_GPUS"
    echo "- Versions: $("$PY" -c "import tensorflow as tf, keras, mlflow; print(f'tensorflow {tf.__version__} keras {keras.__version__} mlflow {mlflow.__version__}')" 2>/dev/null | tail -1 || echo '?')"
    echo "- Wall: whole process. GPU util: mean / max of nvidia-smi samples (200 ms). Peak GPU memory: max memory.used minus the idle figure."
    echo
    echo "| model | side | precision | wall s | GPU util mean % | GPU util max % | peak GPU MiB | test accuracy |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} >"$OUT"

run_one() { # model side precision command...
    local model=$1 side=$2 precision=$3
    shift 3
    local samples=$WORK/samples.csv log=$WORK/run.log sampler="" idle=0
    : >"$samples"
    if [[ "$CARD" != "none" ]]; then
        idle=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_INDEX" | head -1)
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -i "$GPU_INDEX" -lms 200 >"$samples" &
        sampler=$!
    fi
    say "$model / $side / $precision"
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$WORK" && "$PY" "$@") >"$log" 2>&1 || {
        [[ -n "$sampler" ]] && kill "$sampler"
        echo "gpu.sh: $model / $side / $precision failed:" >&2
        tail -20 "$log" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    [[ -n "$sampler" ]] && kill "$sampler" && wait "$sampler" 2>/dev/null || true
    local accuracy stats
    accuracy=$(grep -oE 'test_accuracy: [0-9.]+' "$log" | tail -1 | cut -d' ' -f2)
    stats=$(awk -F', *' -v idle="$idle" 'NF >= 2 { n++; s += $1; if ($1 > m) m = $1; if ($2 > p) p = $2 }
        END { if (n) printf "%.0f | %.0f | %.0f", s / n, m, p - idle; else printf "– | – | –" }' "$samples")
    echo "| $model | $side | $precision | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') | $stats | ${accuracy:-?} |" >>"$OUT"
}

for model in $MODELS; do
    case $model in
        mnist_convnet) expkit_args=(--config-dir "$REPO/benchmarks/conf" +experiment=bench_mnist_convnet) ;;
        imdb_dense) expkit_args=(+experiment=imdb_dense) ;;
        *) echo "gpu.sh: unknown model $model" >&2 && exit 2 ;;
    esac
    for precision in float32 mixed_float16; do
        mixed_expkit=() mixed_raw=()
        [[ $precision == mixed_float16 ]] && mixed_expkit=(trainer.mixed_precision=true) mixed_raw=(--mixed-precision)
        run_one "$model" expkit "$precision" -m expkit.cli train "${expkit_args[@]}" trainer.verbose=0 "${mixed_expkit[@]}"
        run_one "$model" raw "$precision" "$REPO/benchmarks/raw/$model.py" "${mixed_raw[@]}"
    done
done

echo >>"$OUT"
echo "Total: $(($(date +%s) - started)) s (install included)." >>"$OUT"
cat "$OUT"
