#!/usr/bin/env bash
# Training and evaluation speed of two source trees, alternated in one session, as ratios.
#
# Made for the CPU speed-up layer (mvae_cli/accel/, issue 31): the code before it against the code
# after, so that a regression shows as a ratio above 1. Each tree runs its OWN
# benchmarks/train_throughput.py and benchmarks/eval_throughput.py, with its own mvae_cli first on
# PYTHONPATH, so each sets the process up exactly as its own CLI does. The runs alternate
# (before, after, before, after, ...), each in a fresh process, so a change of load during the
# session hits both sides alike; the load average is printed with every run. Run it on a quiet
# machine: other processes on the cores make single runs noisy (benchmarks/accel_inprocess_ab.py
# compares the layer's hot paths with the old code's in one process, which a shared machine can resolve).
#
#   git worktree add /tmp/accel-before 7d8ffa5            # the code before (any tree or commit)
#   mvae prepare mnist --source DIR --out /tmp/mnist.h5   # real MNIST (optional; else synthetic data)
#   benchmarks/accel_ab.sh /tmp/accel-before [AFTER_DIR] [--data /tmp/mnist.h5] [--repeats 2]
#
# AFTER_DIR defaults to this checkout; --data is the training benchmark's dataset (the evaluation
# trains its model on its own small synthetic set; add --data to EVAL_ARGS to change that).
# Settings (environment):
#   PYTHON      the interpreter with mvae's dependencies (default: python3)
#   TRAIN_ARGS  for train_throughput.py (default: --epochs 1 --device cpu)
#   EVAL_ARGS   for eval_throughput.py (default: --limit 200 --device cpu)
#
# Prints, per benchmark and tree, every run's seconds, then after/before of the best run and of the
# mean: the training epoch (best epoch, training steps only), the evaluation's importance sampling
# (seconds_by_part.likelihoods, the better of the benchmark's two evaluations) and the whole later
# evaluation (classifiers loaded). Logs of every run go to $OUT (default: a temporary folder).
set -euo pipefail

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $1 != -* ]] || usage
before=$(cd "$1" && pwd); shift
after=$(cd "$(dirname "$0")/.." && pwd)
if [[ $# -ge 1 && $1 != -* ]]; then after=$(cd "$1" && pwd); shift; fi
data="" repeats=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --data) data=$(realpath "$2"); shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    *) usage ;;
  esac
done
python=${PYTHON:-python3}
read -r -a train_args <<< "${TRAIN_ARGS:---epochs 1 --device cpu}"
read -r -a eval_args <<< "${EVAL_ARGS:---limit 200 --device cpu}"
[[ -n $data ]] && train_args+=(--data "$data")
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "before: $before"; echo "after:  $after"; echo "logs:   $out"; echo "$(nproc) cores; $(uptime)"

# run TREE NAME SCRIPT ARGS...: one benchmark in a fresh process of that tree, its log under $out
run() {
  local tree=$1 name=$2 script=$3; shift 3
  local log="$out/$name.$script.$(date +%s%N).log"
  (cd "$tree" && PYTHONPATH="$tree" "$python" "benchmarks/$script.py" "$@") > "$log" 2>&1 \
    || { echo "$name $script failed, see $log" >&2; tail -5 "$log" >&2; exit 1; }
  echo "$log"
}

# figure LOG KIND: the seconds of one kind of figure in a benchmark's log
figure() {
  case $2 in
    epoch) sed -n 's/^best epoch: \([0-9.]*\) s.*/\1/p' "$1" ;;
    importance) sed -n 's/.*by part:.*likelihoods \([0-9.]*\) s.*/\1/p' "$1" | sort -g | head -1 ;;
    later) sed -n 's/^a later eval (classifiers loaded): \([0-9.]*\) s.*/\1/p' "$1" ;;
  esac
}

declare -A runs
for ((i = 1; i <= repeats; i++)); do
  for name in before after; do
    tree=$before; [[ $name == after ]] && tree=$after
    log=$(run "$tree" "$name" train_throughput "${train_args[@]}")
    runs[$name.epoch]+=" $(figure "$log" epoch)"
    echo "round $i, $name, train: best epoch $(figure "$log" epoch) s   (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    log=$(run "$tree" "$name" eval_throughput "${eval_args[@]}")
    runs[$name.importance]+=" $(figure "$log" importance)"
    runs[$name.later]+=" $(figure "$log" later)"
    echo "round $i, $name, eval: importance sampling $(figure "$log" importance) s, later eval $(figure "$log" later) s" \
         "  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  done
done

echo; echo "$(uptime)"
for kind in epoch importance later; do
  "$python" - "$kind" "${runs[before.$kind]}" "${runs[after.$kind]}" <<'EOF'
import statistics, sys
kind, before, after = sys.argv[1], [float(v) for v in sys.argv[2].split()], [float(v) for v in sys.argv[3].split()]
label = {"epoch": "training epoch", "importance": "eval, importance sampling", "later": "eval, whole (classifiers loaded)"}[kind]
print(f"{label:34s} before {', '.join(f'{v:.2f}' for v in before)} s; after {', '.join(f'{v:.2f}' for v in after)} s; "
      f"after/before: best {min(after) / min(before):.3f}, mean {statistics.mean(after) / statistics.mean(before):.3f}")
EOF
done
