#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command (CI has no GPU; see BENCHMARKS.md, "On a GPU"):
#   1. the tests marked `gpu` (quantum_flex forward/backward vs dense, fp16/bf16 large logits, the Triton
#      circuit-gradient kernel vs the torch pass, fp16 Trainer overflow, the accelerate FSDP2 config);
#   2. bench_train_step.py on the Llama-3.2-1B config (seq 2048, batch 1, fp16 and bf16), arms (a)-(e);
#   3. a torch.profiler table of arm (e) (superpositional_adamw + quantum_flex), bf16;
#   4. bench_attention.py in bf16 (quantum and quantum_flex against eager and SDPA).
# Each step's output is also written to OUTPUT_DIR; a failing step does not stop the later ones.
#
# Usage: bash recipes/benchmarks/gpu_checks.sh [OUTPUT_DIR]    (default outputs/gpu_checks)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-outputs/gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
run() {  # run NAME COMMAND...: tee the output to $out/NAME, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name" || status=1
}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: these checks need a GPU')" || exit 2
run gpu_tests.log python -m pytest -m gpu -q -rs tests/
run bench_train_step_cuda.md python recipes/benchmarks/bench_train_step.py --device cuda
run profile_e_bf16.txt python recipes/benchmarks/bench_train_step.py --device cuda --profile e --profile-only --precision bf16
run bench_attention_cuda_bf16.md python recipes/benchmarks/bench_attention.py --device cuda --dtype bfloat16
exit $status
