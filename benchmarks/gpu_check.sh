#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): ratios measured in one run on one CUDA device, <= 8 minutes,
# nothing downloaded. Run from anywhere:
#     bash benchmarks/gpu_check.sh                # the check (exit 2 at once without a CUDA device)
#     bash benchmarks/gpu_check.sh --cpu-smoke    # every section tiny on CPU, to test the script itself
# factlearn is imported from src/ (no install needed); PYTHON picks the interpreter (default: the
# checkout's .venv if there is one, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON="$(command -v python3 || command -v python)"; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
# The script keeps its own budget (--budget, 420 s of sections); this is the hard stop at 8 minutes.
exec timeout --signal=INT --kill-after=10 480 "$PYTHON" "$root/benchmarks/gpu_check.py" "$@"
