#!/usr/bin/env bash
# Print the path of a Python interpreter of the given minor version (e.g. 3.12), or fail with a clear message.
# Looks on PATH, then in pyenv (installed versions need not be on PATH), then in the usual prefixes.
set -euo pipefail
want="$1"
if command -v "python$want" >/dev/null 2>&1 && "python$want" -c 'import sys' >/dev/null 2>&1; then
  "python$want" -c 'import sys; print(sys.executable)'; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E "^${want//./\\.}(\.[0-9]+)?$" | sort -rV); do
    p="$(pyenv prefix "$v" 2>/dev/null)/bin/python$want"
    if [ -x "$p" ]; then echo "$p"; exit 0; fi
  done
fi
for p in "$HOME"/.pyenv/versions/"$want"*/bin/python"$want" /usr/local/bin/python"$want" /usr/bin/python"$want"; do
  if [ -x "$p" ]; then echo "$p"; exit 0; fi
done
echo "find-python: no Python $want interpreter found (looked on PATH, in pyenv and /usr)" >&2
exit 1
