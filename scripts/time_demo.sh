#!/usr/bin/env bash
# Wall time of each task's demo, as `make demo TASK=<task>` runs it on a fresh clone (the tiny model and the data
# written first) and again with both reused. The machine's load is printed before and after: measure on an idle
# machine for the README figures.
#
#   scripts/time_demo.sh                      # depth, segmentation, referring
#   scripts/time_demo.sh depth                # one task
#   PY=.venv/bin/python scripts/time_demo.sh  # the interpreter (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
TASKS=("$@")
[ ${#TASKS[@]} -eq 0 ] && TASKS=(depth segmentation referring)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vpd-time-demo.XXXXXX")
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false NO_ALBUMENTATIONS_UPDATE=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

echo "load before: $(uptime | sed 's/.*load average/load average/'); $(nproc) CPUs; logs in $WORK"
run() {  # run <task> <label>: one demo, its wall time and its verdict
    local task=$1 label=$2 log="$WORK/$1-$2.log" start end
    start=$(date +%s%N)
    if ! "$PY" -m vpd_lightning.demo --task "$task" --data-dir "$WORK/data" --output "$WORK/out-$task" >"$log" 2>&1; then
        echo "$task ($label): FAILED, see $log"; return 1
    fi
    end=$(date +%s%N)
    local ds=$(((end - start) / 100000000))  # tenths of a second
    printf '%-13s %-7s %4d.%d s  %s\n' "$task" "$label" $((ds / 10)) $((ds % 10)) \
        "$(grep -o 'is \(better\|worse\) than the baseline.*' "$log" | head -1 | cut -c1-110)"
}
for task in "${TASKS[@]}"; do
    rm -rf "$WORK/data"          # fresh: tiny model and data written, as on a fresh clone
    run "$task" fresh
    run "$task" cached           # both reused
done
echo "load after:  $(uptime | sed 's/.*load average/load average/')"
rm -rf "$WORK/data" "$WORK"/out-*   # keep only the logs
