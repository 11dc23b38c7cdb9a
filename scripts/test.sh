#!/usr/bin/env bash
# README command 2: set everything up, then run the whole test suite (slow tests included).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# A local PostgreSQL for the multi-worker Optuna tests (root only; without it they skip, except in CI).
bash scripts/postgres.sh >/dev/null || exit 1
# --durations: the suite is over its 20-minute target; every run names the tests that cost the most.
.venv/bin/python -m pytest -q --durations=25 "$@"
rc=$?
# pytest exits 5 when it collected no tests: that is a failure here, never a pass.
[ "$rc" = 5 ] && { echo "no tests were collected" >&2; exit 1; }
exit "$rc"
