#!/usr/bin/env bash
# The whole suite (`make test`): unit tests on the newest and the oldest supported ansible-core, the lab's own tests
# (independent clients against the lab CA), ansible-test sanity, ansible-lint, and integration tests that run
# `ansible` / `ansible-playbook` against the lab on both ansible-core versions. Every stage runs; any failure fails
# the suite.
# Two lanes run side by side (the machine has 2 cores). Lane A: the stages that need no lab (unit, sanity, lint),
# then, once the lab's own tests are done, the integration files of INTEGRATION_A (the long role workflows). Lane B:
# lab up, the lab's own tests, then every other integration file. A file runs in one lane only, so the fixed
# addresses of its hostile servers and the private lab CA (127.0.0.91: test_wcce_request_faults, _names,
# test_roles_controller, all in lane B) are never used twice at once. Lane A's output is kept in tests/output/logs/
# and printed when both lanes are done.
# The lab is started if needed and stopped at the end if this run started it (ADCS_LAB_KEEP=1 keeps it).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
VENV="$root/.venv"; OLDEST="$root/.venv-oldest"
lab() { PYTHONPATH="$root/tests/lab" "$VENV/bin/python" -m adcslab "$@"; }
rm -rf tests/output/junit tests/output/logs
mkdir -p tests/output/logs
status_dir="tests/output/logs/status"; mkdir -p "$status_dir"
stage() {
  local name="$1"; shift
  echo; echo "=== $name"
  local start=$SECONDS
  if "$@"; then echo "=== $name: ok ($((SECONDS - start)) s)"; echo ok > "$status_dir/$name";
  else echo "=== $name: FAILED ($((SECONDS - start)) s)"; echo failed > "$status_dir/$name"; fi
}

# The integration files of lane A (newest ansible-core; on the oldest only what the oldest lane ran before).
INTEGRATION_A=(tests/integration/test_roles.py tests/integration/test_secrets.py tests/integration/test_files_safety.py)
ignore_a=(); for f in "${INTEGRATION_A[@]}"; do ignore_a+=("--ignore=$f"); done
KILL_TEST=tests/integration/test_files_safety.py::test_kill_after_every_step_of_a_regenerate_key_switch

wait_for_lab_tests() {
  local waited=0
  until [ -e "$status_dir/lab CA with independent clients" ]; do
    sleep 2; waited=$((waited + 2))
    if [ $waited -ge 1800 ]; then echo "lane A: the lab stages did not finish in 1800 s"; return 1; fi
  done
}

no_lab_lane() {
  stage "unit (ansible-core newest)" tests/tools/pytest.sh "$VENV" tests/unit -q
  stage "unit (ansible-core oldest)" tests/tools/pytest.sh "$OLDEST" tests/unit -q
  stage "sanity (ansible-test)" tests/tools/sanity.sh "$VENV"
  stage "ansible-lint (production profile)" tests/tools/lint.sh
  wait_for_lab_tests
  stage "integration A (ansible-core newest)" env ADCS_PYTHON="$VENV/bin/python" tests/tools/pytest.sh "$VENV" \
    "${INTEGRATION_A[@]}" -q
  # On the oldest supported ansible-core: every module's integration tests (the role workflows, controller mode, the
  # roles' secrets at -vvvv and the kill after every file step, whose mechanism the unit tests also cover on both
  # versions, run on the newest only, to keep the suite within its time budget).
  stage "integration A (ansible-core oldest)" env ADCS_PYTHON="$OLDEST/bin/python" tests/tools/pytest.sh "$OLDEST" \
    tests/integration/test_files_safety.py -q --deselect=$KILL_TEST
}

lab_lane() {
  stage "lab up" lab up
  stage "lab CA with independent clients" tests/tools/pytest.sh "$VENV" tests/lab/tests -q
  stage "integration B (ansible-core newest)" env ADCS_PYTHON="$VENV/bin/python" tests/tools/pytest.sh "$VENV" \
    tests/integration -q "${ignore_a[@]}"
  stage "integration B (ansible-core oldest)" env ADCS_PYTHON="$OLDEST/bin/python" tests/tools/pytest.sh "$OLDEST" \
    tests/integration -q "${ignore_a[@]}" --ignore=tests/integration/test_roles_controller.py
}

started_lab=0
if ! lab status >/dev/null 2>&1; then started_lab=1; fi
suite_start=$SECONDS
no_lab_lane > tests/output/logs/no-lab-lane.log 2>&1 &
no_lab_pid=$!
echo "=== lane A (unit, sanity, ansible-lint, then integration A) runs beside the lab stages (log: tests/output/logs/no-lab-lane.log)"
lab_lane
wait "$no_lab_pid"
echo; echo "=== output of lane A"
cat tests/output/logs/no-lab-lane.log
if [ "$started_lab" = 1 ] && [ "${ADCS_LAB_KEEP:-0}" != 1 ]; then lab down; fi

rc=0
failed=()
for f in "$status_dir"/*; do
  [ "$(cat "$f")" = ok ] || failed+=("$(basename "$f")")
done
expected=10
count=$(ls "$status_dir" | wc -l)
if [ "$count" -ne "$expected" ]; then echo "only $count of $expected stages reported a result"; rc=1; fi
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED stages: ${failed[*]}"; rc=1; elif [ $rc -eq 0 ]; then echo "all stages passed"; fi
echo "suite wall time: $((SECONDS - suite_start)) s"
"$VENV/bin/python" - <<'PY'
import glob, xml.etree.ElementTree as ET
t = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in glob.glob("tests/output/junit/*.xml") + glob.glob("tests/output/junit/.*.xml"):
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.findall("testsuite")):
        for key in t:
            t[key] += int(suite.get(key, 0))
passed = t["tests"] - t["failures"] - t["errors"] - t["skipped"]
print()
print("suite: %d passed, %d failed, %d skipped" % (passed, t["failures"] + t["errors"], t["skipped"]))
PY
exit $rc
