#!/usr/bin/env bash
# ansible-lint (production profile) on the roles and playbooks. ansible-lint lives in its own virtualenv
# (.venv-lint, Python 3.12, pinned in tests/requirements-lint.txt; rebuilt when that file changes) and runs offline:
# it installs no collections or roles from Galaxy.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-lint"
req="$root/tests/requirements-lint.txt"
if [ ! -x "$venv/bin/ansible-lint" ] || ! cmp -s "$req" "$venv/.requirements"; then
  py="$("$root/tests/tools/find-python.sh" 3.12)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q -r "$req"
  cp "$req" "$venv/.requirements"
fi
mkdir -p "$root/.build/collections/ansible_collections/adcs"
[ -e "$root/.build/collections/ansible_collections/adcs/enrollment" ] || \
  ln -sfn "$root" "$root/.build/collections/ansible_collections/adcs/enrollment"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
export ANSIBLE_HOME="$root/.build/ansible-lint-home"
export PATH="$venv/bin:$PATH"
cd "$root"
exec "$venv/bin/ansible-lint" --offline --profile production "$@" roles playbooks
