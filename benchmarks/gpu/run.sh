#!/usr/bin/env bash
# The GPU benchmark, run ON the GPU machine as the one device call (docs/performance.md,
# "GPU benchmark"), after benchmarks/gpu/prepare.sh here:
#
#   run(command="bash benchmarks/gpu/run.sh", carry=[".whl", ".gpu-data"], timeout_s=420)
#
# Installs the carried wheels into $GPU_BENCH_SITE, puts this tree on PYTHONPATH, builds a
# random Llama-3.2-1B-shaped model there (make_random_model.py), then runs
# benchmarks/search_speed.py, each step under its own timeout inside GPU_BENCH_BUDGET_S:
#   setup      nvidia-smi, versions, the package imports, the model build
#   arc_<S>    arc_challenge, mcts protocol cola, naive / exact W=1 / exact W=P / fast W=P
#   gsm8k_<S>  gsm8k, max_gen_toks capped (a random model never stops: every chain runs to
#              the cap, the slowest case)
#   arc_<S2>   arc_challenge on a random model of SmolLM2-135M's shape (the default model's
#              GGUF is 100 MB: too big to carry)
# Logs and summary.md (wall s, s/sample, eval/s per row; the GPU's peak memory) go to $OUT;
# gpu_usage.csv samples the GPU once a second. A failed step is logged and the next runs.
# Sizes and caps are variables below (ARC_LIMIT=32 bash benchmarks/gpu/run.sh).
#
# Dry run HERE on the CPU (tiny shape, the wheels installed fresh into a throwaway folder,
# and of this venv only the packages the GPU machine has, via `python -S`):
#   GPU_BENCH_DRY=1 nice -n 10 bash benchmarks/gpu/run.sh
set -uo pipefail  # no -e: a failed benchmark step must not cost the later ones
cd "$(dirname "$0")/../.."
REPO=$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DRY=${GPU_BENCH_DRY:-0}
OUT=${OUT:-/tmp/gpu-bench-out}
SITE=${GPU_BENCH_SITE:-/tmp/site}
MODELS=${GPU_BENCH_MODELS:-/tmp/gpu-bench-models}
PYTHON=(python3)
PIP_TAGS=()
EXTRA_PATH=""
if [ "$DRY" = 1 ]; then
    DRY_DIR=$(mktemp -d)
    trap 'rm -rf "$DRY_DIR"' EXIT
    SITE=$DRY_DIR/site  # fresh: proves the wheel set complete
    MODELS=$DRY_DIR/models
    EXTRA_PATH=$DRY_DIR/device
    python3 benchmarks/gpu/check_wheels.py fake-site "$EXTRA_PATH" || exit 1
    PYTHON=(python3 -S)  # no site-packages: only the wheels, this tree and EXTRA_PATH
    # the wheels are for CPython 3.12 (multiprocess's is py312 only): let pip install them
    PIP_TAGS=(--python-version 3.12 --implementation cp --only-binary=:all:)
    : "${DEVICE:=cpu}" "${SHAPE:=tiny}" "${DTYPE:=float32}"
    : "${ARC_LIMIT:=2}" "${ARC_BUDGET:=4}" "${GSM_LIMIT:=2}" "${GSM_BUDGET:=2}"
    : "${GSM_TOKS:=8}" "${PARALLEL:=2}" "${GPU_BENCH_BUDGET_S:=900}"
fi
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-llama-1b}          # the main model
SHAPE2=${SHAPE2-smollm2-135m}     # the last step's model; SHAPE2= skips that step
DTYPE=${DTYPE:-bfloat16}
ARC_LIMIT=${ARC_LIMIT:-32}
ARC_BUDGET=${ARC_BUDGET:-40}
GSM_LIMIT=${GSM_LIMIT:-4}
GSM_BUDGET=${GSM_BUDGET:-8}
GSM_TOKS=${GSM_TOKS:-32}
PARALLEL=${PARALLEL:-8}
SEARCH_BATCH=${SEARCH_BATCH:-}    # empty: the model's default
BUDGET=${GPU_BENCH_BUDGET_S:-330}  # seconds for the whole script; the device call's limit
                                   # (timeout_s) should leave a minute above it
mkdir -p "$OUT" "$MODELS"
rm -f "$OUT"/*.log "$OUT/gpu_usage.csv"  # an earlier run's (steps append to their logs)
SUMMARY=$OUT/summary.md
: > "$SUMMARY"
# The package's start-up hook (lm_eval_cola.pth) runs only from a site-packages folder, and
# the tree is on PYTHONPATH: import it first, as the .pth would, then run the script.
LAUNCH='import runpy, sys; import lm_eval_cola._autoload
sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")'

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME CAP CMD...: CMD under a timeout of CAP s or what is left of BUDGET, output to
# $OUT/NAME.log (appended) and the console; returns CMD's status (124: timed out)
step() {
    local name=$1 cap=$2 started=$SECONDS; shift 2
    local shown="$*"
    shown=${shown//"$LAUNCH"/<launch>}
    shown=${shown//"${CHECK:-}"/<import check>}
    local limit=$((BUDGET - SECONDS - 5))
    ((limit > cap)) && limit=$cap
    if ((limit < 20)); then
        note "- $name: skipped, $((BUDGET - SECONDS)) s of the ${BUDGET} s budget left"
        return 1
    fi
    echo "== $name: $shown (timeout ${limit} s)" | tee -a "$OUT/$name.log"
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    note "- $name: exit $rc$( ((rc == 124)) && echo ' (timed out)') after" \
         "$((SECONDS - started)) s (limit ${limit} s): $shown"
    return "$rc"
}

bench() {  # bench NAME MODEL_DIR CAP ARGS...: search_speed.py on one model
    local name=$1 model=$2 cap=$3; shift 3
    step "$name" "$cap" "${PYTHON[@]}" -c "$LAUNCH" benchmarks/search_speed.py \
        --model_args "pretrained=$model,dtype=$DTYPE,device=$DEVICE" \
        --parallel "$PARALLEL" --numerics fast \
        ${SEARCH_BATCH:+--search_batch "$SEARCH_BATCH"} "$@"
}

build() {  # build SHAPE: the random model, once
    [ -f "$MODELS/$1/random_model.json" ] && return 0
    step setup 180 "${PYTHON[@]}" benchmarks/gpu/make_random_model.py --shape "$1" \
        --dtype "$DTYPE" --tokenizer .gpu-data/tokenizer --out "$MODELS/$1" &&
        note "  model: $(tr -d '\n' < "$MODELS/$1/random_model.json")"
}

note "# GPU benchmark, $(date -u +%FT%TZ), device $DEVICE, $DTYPE, budget $BUDGET s"
for need in .whl .gpu-data/data .gpu-data/tokenizer; do
    [ -e "$need" ] || { note "missing $need: run benchmarks/gpu/prepare.sh here and carry" \
                            "[\".whl\", \".gpu-data\"]"; exit 2; }
done
SAMPLER=""
if [ "$DRY" != 1 ] && command -v nvidia-smi > /dev/null; then
    nvidia-smi 2>&1 | tee -a "$OUT/setup.log"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw,clocks.sm \
        --format=csv -l 1 > "$OUT/gpu_usage.csv" 2>&1 &
    SAMPLER=$!
fi
step setup 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "${PIP_TAGS[@]}" .whl/*.whl || exit 3
export PYTHONPATH="$SITE:$REPO${EXTRA_PATH:+:$EXTRA_PATH}"
export COLA_DATA_DIR=$REPO/.gpu-data/data HF_HOME=${HF_HOME:-$MODELS/hf}
# the imports a run needs, with the hook as the .pth would run it
CHECK='import lm_eval_cola._autoload
import importlib.metadata as m, platform, torch
import lm_eval.tasks  # noqa: F401  (the hook installs the local data loader)
from lm_eval_cola.compat import local_data
from lm_eval_cola.harness.models import ColaHFLM  # noqa: F401
print("python", platform.python_version(), "| torch", torch.__version__, "cuda",
      torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print(" | ".join(f"{n} {m.version(n)}" for n in ("transformers", "tokenizers", "lm_eval",
      "datasets", "huggingface_hub", "accelerate", "fsspec", "pyarrow", "numpy")))
assert local_data.is_installed(), "the start-up hook did not install the local data loader"
'
step setup 90 "${PYTHON[@]}" -c "$CHECK" || exit 4

build "$SHAPE" && {
    bench "arc_$SHAPE" "$MODELS/$SHAPE" 150 --task arc_challenge --protocol cola \
        --limit "$ARC_LIMIT" --budget "$ARC_BUDGET"
    bench "gsm8k_$SHAPE" "$MODELS/$SHAPE" 120 --task gsm8k --limit "$GSM_LIMIT" \
        --budget "$GSM_BUDGET" --max_gen_toks "$GSM_TOKS"
}
if [ -n "$SHAPE2" ] && build "$SHAPE2"; then
    bench "arc_$SHAPE2" "$MODELS/$SHAPE2" 90 --task arc_challenge --protocol cola \
        --limit "$ARC_LIMIT" --budget "$ARC_BUDGET"
fi
[ -n "$SAMPLER" ] && kill "$SAMPLER" 2> /dev/null

# Per row: seconds per sample = the row's wall seconds / the samples of its run (the log's
# "model: ...; task T, N samples" line), the wall seconds taken as evaluations / (eval/s)
# (the table gives wall to 0.1 s, eval/s to 0.01: finer at GPU rates). Model loading and task building
# are not in it.
python3 - "$OUT" >> "$SUMMARY" <<'EOF'
import csv, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
setup = out / "setup.log"
for line in setup.read_text(errors="replace").splitlines() if setup.exists() else ():
    if line.startswith(("python ", "transformers ")):
        print(f"  {line}")
print("\n| run | row | samples | wall s | s / sample | evaluations | eval/s | speed-up |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for log in sorted(out.glob("*.log")):
    text = log.read_text(errors="replace")
    found = re.search(r"^model: .*, (\d+) samples, mcts budget", text, re.M)
    if found is None:  # the run stopped before its samples were built
        continue
    # | path | wall s | s / sample | cpu s | evaluations | eval/s | speed-up | ...
    for row in re.findall(r"^\| ((?:naive|exact|fast)[^|]*)\|([^|]+)\|[^|]+\|[^|]+\|"
                          r"([^|]+)\|([^|]+)\|([^|]+)\|", text, re.M):
        label, wall, evals, rate, speed = (c.strip() for c in row)
        n, count = int(found.group(1)), int(evals.replace(",", ""))
        seconds = count / float(rate) if float(rate) > 0 else float(wall)
        print(f"| {log.stem} | {label} | {n} | {seconds:.2f} | {seconds / n:.4f} | {evals} "
              f"| {rate} | {speed} |")
usage = out / "gpu_usage.csv"
if usage.exists():
    rows = [r for r in csv.reader(usage.open()) if len(r) > 2 and r[2].strip()[:1].isdigit()]
    if rows:
        peak = max(int(r[2].split()[0]) for r in rows)
        print(f"\nGPU memory used, peak of {len(rows)} one-second samples: {peak} MiB")
EOF
cat "$SUMMARY"
