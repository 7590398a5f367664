#!/usr/bin/env bash
# ansible-test sanity on the collection, offline-capable: ansible-test's pip bootstrap downloads get-pip.py from a
# host this network cannot reach, so a local stand-in (get_pip_offline.py) is put where ansible-test caches it.
# The collection is copied (tracked and new files, as git sees them) to .build/sanity/ansible_collections/adcs/enrollment.
# Usage: sanity.sh VENV [ansible-test sanity args]
set -euo pipefail
venv="$(cd "$1" && pwd)"; shift
root="$(cd "$(dirname "$0")/../.." && pwd)"
site="$("$venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')"
pip_version="$(grep -oP "pip='\K[0-9.]+" "$site/_internal/python_requirements.py" | head -n1)"
pyver="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
mkdir -p "$HOME/.ansible/test/cache"
cp "$root/tests/tools/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"

dest="$root/.build/sanity/ansible_collections/adcs/enrollment"
rm -rf "$dest" && mkdir -p "$dest"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
   [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q && git add -A >/dev/null && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
export PATH="$venv/bin:$PATH"
ansible-test sanity --venv --python "$pyver" --color no --exclude tests/lab/ "$@"
