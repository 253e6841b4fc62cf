#!/usr/bin/env bash
# Run HERE (not on the GPU machine), from any folder, before a device session:
#
#   bash benchmarks/gpu/prepare.sh
#
# fills the two git-ignored folders the device call carries (docs/performance.md, "GPU
# benchmark"):
#   .whl/       the wheels the machine lacks (benchmarks/gpu/wheels.txt), for CPython 3.12;
#               the folder is this kit's: wheels not in the list are removed (two versions
#               of one package stop the machine's install)
#   .gpu-data/  data/: the benchmark files the tasks read (arc_challenge, gsm8k), laid out as
#               COLA_DATA_DIR expects; tokenizer/: the embedded SmolLM2 model's tokenizer
# then checks the wheels against the machine's packages and prints what will travel.
# Needs: the project's venv active (pip, the embedded model for the tokenizer), the index
# reachable, COLA_DATA_DIR (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
DATA_SRC=${COLA_DATA_DIR:-../shared/data}
LIST=benchmarks/gpu/wheels.txt
# pip matches each manylinux tag exactly: name the ones the machine (glibc 2.39) accepts
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)

mapfile -t binary < <(grep -v '^#' "$LIST" | grep -v '# sdist' | sed 's/ *#.*//' | grep .)
mapfile -t sdist < <(grep '# sdist' "$LIST" | sed 's/ *#.*//')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
nice -n 10 "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d "$stage" "${binary[@]}"
# rouge_score, sqlitedict, word2number have no wheel: build pure-Python ones (py3-none-any)
nice -n 10 "$PY" -m pip wheel -q --no-deps -w "$stage" "${sdist[@]}"
rm -rf .whl && mkdir .whl && mv "$stage"/*.whl .whl/

for f in ai2_arc/ARC-Challenge/{train,validation,test}.jsonl gsm8k/main/{train,test}.jsonl; do
    install -D -m 0644 "$DATA_SRC/$f" ".gpu-data/data/$f"  # writable: a rerun replaces it
done
if [ ! -f .gpu-data/tokenizer/tokenizer_config.json ]; then
    OMP_NUM_THREADS=1 nice -n 10 "$PY" benchmarks/gpu/make_random_model.py \
        --save_tokenizer .gpu-data/tokenizer
fi

"$PY" benchmarks/gpu/check_wheels.py check .whl
echo "travels: .whl $(du -sh .whl | cut -f1), .gpu-data $(du -sh .gpu-data | cut -f1)," \
     "tracked and untracked files $(git ls-files -co --exclude-standard -z \
     | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes; the limit is 64 MiB"
