#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command (CI has no GPU; see BENCHMARKS.md, "On a GPU"):
#   1. the tests marked `gpu` (quantum_flex forward/backward vs dense, fp16/bf16 large logits, the Triton
#      circuit-gradient kernel vs the torch pass, fp16 Trainer overflow, the accelerate FSDP2 config);
#   2. bench_train_step.py on the Llama-3.2-1B config (seq 2048, batch 1, fp16 and bf16), arms (a)-(e);
#   3. a torch.profiler table of arm (e) (superpositional_adamw + quantum_flex), bf16;
#   4. bench_attention.py in bf16 (quantum and quantum_flex against eager and SDPA).
# Each step's output is also written to OUTPUT_DIR; a failing step does not stop the later ones. STEPS picks
# a subset (e.g. to fit a time limit per command): STEPS="tests bench" bash recipes/benchmarks/gpu_checks.sh
#
# Usage: [STEPS="tests bench profile attention"] bash recipes/benchmarks/gpu_checks.sh [OUTPUT_DIR]
#        (default OUTPUT_DIR outputs/gpu_checks; all four steps take roughly 10-15 minutes on one H100/H200)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-outputs/gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
steps=" ${STEPS:-tests bench profile attention} "
run() {  # run STEP NAME COMMAND...: if STEP is selected, tee the output to $out/NAME, remember a failure
    local step=$1 name=$2
    shift 2
    [[ $steps == *" $step "* ]] || return 0
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name" || status=1
}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: these checks need a GPU')" || exit 2
run tests gpu_tests.log python -m pytest -m gpu -q -rs tests/
run bench bench_train_step_cuda.md python recipes/benchmarks/bench_train_step.py --device cuda
run profile profile_e_bf16.txt python recipes/benchmarks/bench_train_step.py --device cuda --profile e --profile-only --precision bf16
run attention bench_attention_cuda_bf16.md python recipes/benchmarks/bench_attention.py --device cuda --dtype bfloat16
exit $status
