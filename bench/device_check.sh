#!/usr/bin/env bash
# Run ON THE LENT GPU MACHINE through the device tool, after bench/device_wheels.sh here:
#   run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=480)
# It installs the carried wheels beside the image's PyTorch and runs tests/test_device.py, whose CUDA tests compare
# with the CPU's: calibration statistics, every method's unit scores, probes, SLEB's order, the refit, logits,
# perplexity, the fingerprint, and every baseline's architecture and measured pair on PTB-valid; and time finished
# GPU work. The log comes back as $OUT/device_check.log.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH="/tmp/site:$PWD" PRUNESEARCH_CACHE=/tmp/prunesearch-cache HF_HUB_OFFLINE=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, optuna, xgboost; print(torch.__version__, torch.cuda.is_available(),
transformers.__version__, optuna.__version__, xgboost.__version__)"
  python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_device.py -rs
} 2>&1 | tee "${OUT:-/tmp}/device_check.log"
