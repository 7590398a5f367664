"""Shared pytest fixtures: the lab (brought up once per session) and runners for `ansible` / `ansible-playbook`."""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# wcce_request's enrollment policy cache (default directory: ADCS_POLICY_CACHE_DIR) of every process this test session
# starts, never the machine's /var/cache/adcs-enrollment; integration runs and unit tests make their own
if not os.environ.get("ADCS_POLICY_CACHE_DIR"):
    os.environ["ADCS_POLICY_CACHE_DIR"] = tempfile.mkdtemp(prefix="adcs-policy-cache-session-")
    atexit.register(shutil.rmtree, os.environ["ADCS_POLICY_CACHE_DIR"], True)
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
LAB_DIR = os.path.join(ROOT, "tests", "lab")

for _path in (COLLECTIONS, LAB_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def _ensure_collection_link():
    link = os.path.join(COLLECTIONS, "ansible_collections", "adcs", "enrollment")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)


_ensure_collection_link()


@pytest.fixture(scope="session")
def lab():
    """The running lab's connection details (tests/lab/state/lab.json); starts the lab when it is not running."""
    from adcslab.ad import LabError
    from adcslab.lab import Lab

    instance = Lab()
    try:
        instance.up()
    except (LabError, TimeoutError, OSError) as exc:
        pytest.fail("the lab could not be started: %s" % exc)
    with open(instance.lab_json) as handle:
        return json.load(handle)


class AnsibleRunner:
    """Runs the real `ansible` / `ansible-playbook` of a virtualenv against localhost, parsing the JSON callback."""

    def __init__(self, python):
        self.python = python
        self.bindir = os.path.dirname(python)
        # wcce_request's enrollment policy cache of this test session (never the user's: ADCS_POLICY_CACHE_DIR is
        # the default of its policy_cache_dir); tests that need AD read afresh set policy_cache: false
        self.policy_cache = tempfile.mkdtemp(prefix="adcs-policy-cache-")
        atexit.register(shutil.rmtree, self.policy_cache, True)

    def env(self, extra=None):
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_STDOUT_CALLBACK": "adcs_json",
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "integration", "callback_plugins"),
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "ANSIBLE_PYTHON_INTERPRETER": self.python,
            "ADCS_POLICY_CACHE_DIR": self.policy_cache,
        })
        for name, value in (extra or {}).items():   # None: not in the environment of the run
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def _run(self, argv, extra_env=None, timeout=600):
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(extra_env),
                              timeout=timeout, cwd=ROOT, check=False)
        out = proc.stdout.decode("utf-8", "replace")
        try:
            data = json.loads(out[out.index("{"):])
        except ValueError:
            raise AssertionError("ansible printed no JSON (rc=%d)\nstdout:\n%s\nstderr:\n%s"
                                 % (proc.returncode, out, proc.stderr.decode("utf-8", "replace")))
        return proc.returncode, data, proc.stderr.decode("utf-8", "replace")

    def module(self, name, args, check=False, diff=False, extra_env=None):
        """Run one module ad hoc (`ansible localhost -m NAME -a JSON`); returns (rc, result dict)."""
        argv = [os.path.join(self.bindir, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                "-m", name] + (["-a", json.dumps(args)] if args else [])
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        rc, data, stderr = self._run(argv, extra_env)
        plays = data["plays"]
        result = plays[0]["tasks"][0]["hosts"]["localhost"]
        return rc, result

    def playbook(self, path, extra_vars=None, check=False, inventory="localhost,", extra_env=None, limit=None):
        """Run a playbook; returns (rc, json callback output)."""
        argv = [os.path.join(self.bindir, "ansible-playbook"), "-i", inventory, path]
        if inventory == "localhost,":
            argv += ["-c", "local"]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if check:
            argv.append("--check")
        if limit:
            argv += ["--limit", limit]
        rc, data, _stderr = self._run(argv, extra_env)
        return rc, data


@pytest.fixture(scope="session")
def ansible():
    """Runner for the ansible-core under test: ADCS_PYTHON selects the virtualenv (newest or oldest)."""
    return AnsibleRunner(os.environ.get("ADCS_PYTHON", sys.executable))
