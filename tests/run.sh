#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests, and the end-to-end tests that drive a
# real `mycelium up` with psql, pgbench, tokio-postgres, psycopg 3 and SQLAlchemy 2.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=tests/python/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
export MYCELIUM_TEST_PYTHON="$PWD/$venv/bin/python"
cargo test --workspace
