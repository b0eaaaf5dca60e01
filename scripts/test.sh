#!/usr/bin/env bash
# Installs what the tests need, then runs the checks and the whole test suite:
# lint (ruff), types (mypy), playbooks (ansible-lint), unit and integration tests.
# Integration tests build real labs; they need root and skip with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";         ruff check labctl tests bench
echo "== mypy";         mypy labctl
echo "== ansible-lint"; ansible-lint -q playbooks
echo "== pytest"
pytest "$@"
