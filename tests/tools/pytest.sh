#!/usr/bin/env bash
# Run pytest from a virtualenv with the collection importable; pytest's "no tests ran" (exit 5) is a failure.
# Usage: pytest.sh VENV PATH... [pytest args]
set -uo pipefail
venv="$(cd "$1" && pwd)"; shift
root="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$root/tests/output/junit"
name="$(basename "$venv" | sed 's/^\.//')-$(echo "$1" | tr '/' '_')"
export PYTHONPATH="$root/.build/collections:$root/tests/lab${PYTHONPATH:+:$PYTHONPATH}"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
"$venv/bin/python" -m pytest -p no:cacheprovider --junitxml="$root/tests/output/junit/$name.xml" "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest.sh: no tests were collected in $1 with $venv: that is a failure" >&2
  exit 1
fi
exit $rc
