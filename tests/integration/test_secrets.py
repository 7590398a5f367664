"""No secret in any output (issue 12, item 7): the certificate role (host and controller mode, role-level and
per-request `connection`, PKCS#12 passphrase), the trust role (trust_connection) and the certificates playbook run
at -vvvv, succeeding and failing, with the human `default` callback and the tests' JSON callback, with pipelining on
and off; the whole stdout + stderr is searched for every secret, its escaped, URL-encoded and base64 forms and the
NT hash of every password.
"""

import base64
import binascii
import json
import os
import re
import subprocess
from urllib.parse import quote

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils._ldap import nt_hash_of

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "tests", "integration", "playbooks", "roles-site.yml")
CERTIFICATES = os.path.join(ROOT, "playbooks", "certificates.yml")

ROLE_CONN = "S3cr3t-Role-Conn-91"      # role-level certificate_connection (wrong: its requests fail)
REQ_CONN = "S3cr3t-Req-Conn-55"        # per-request connection (wrong)
P12 = "S3cr3t-P12-Pass-77"             # PKCS#12 passphrase
NT_HASH = "5ec12e7c0ffee5ec12e7c0ffee5ec12e"  # trust_connection NT hash (wrong)
BAD_TYPES = ("S3cr3t-Bad-Type-1", "S3cr3t-Bad-Type-2")

# What a wrong password gets: the DC's answer when the run reads AD, the CA's when wcce_request's enrollment policy
# cache (filled by a run with the right password) answered instead of LDAP.
WRONG_PASSWORD = ("invalidCredentials", "Check user name, domain and password/NT hash")
OUTPUTS = [("default", "1"), ("default", "0"), ("adcs_json", "1"), ("adcs_json", "0")]
# The role run is the slowest (about 30 s each): both callbacks and both pipelining settings in two runs.
ROLE_OUTPUTS = [("default", "0"), ("adcs_json", "1")]


def lab_conn(lab, password, **extra):
    acct = lab["accounts"]["enroller"]
    conn = {"domain": lab["domain"], "domain_controller": lab["dc"]["address"], "ca_bundle": lab["ca_bundle"],
            "username": "%s@%s" % (acct["username"], lab["domain"]), "password": password}
    conn.update(extra)
    return conn


def secret_forms(secrets):
    """Every secret as text, JSON/Python-escaped, URL-encoded; and the NT hash (hex) of every password."""
    forms = set()
    for secret in secrets:
        forms.update([secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], quote(secret, safe=""),
                      secret.encode("unicode_escape").decode()])
        nt = nt_hash_of(secret)
        if nt:
            forms.update([nt, nt.upper()])
    return forms


def base64_leaks(text, secrets):
    """Secrets hidden in base64 runs of the output (each run decoded at its four alignments)."""
    found = []
    for run in re.findall(r"[A-Za-z0-9+/]{12,}={0,2}", text):
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[:len(chunk) - len(chunk) % 4]
            try:
                data = base64.b64decode(chunk)
            except (binascii.Error, ValueError):
                continue
            for secret in secrets:
                if secret.encode() in data or secret.encode("utf-16-le") in data:
                    found.append((secret, run[:60]))
    return found


def assert_no_secret(text, secrets):
    leaks = sorted(form for form in secret_forms(secrets) if form in text)
    assert not leaks, "secrets in the output: %s\n%s" % (leaks, "\n".join(
        line for line in text.splitlines() if any(form in line for form in leaks))[:3000])
    assert not base64_leaks(text, secrets)


class Run(object):
    def __init__(self, ansible, tmp_path, callback, pipelining):
        self.ansible, self.tmp, self.callback, self.pipelining = ansible, tmp_path, callback, pipelining

    def playbook(self, playbook, inventory):
        path = str(self.tmp / "inventory.json")
        with open(path, "w") as handle:
            json.dump(inventory, handle)
        argv = [os.path.join(self.ansible.bindir, "ansible-playbook"), "-vvvv", "-i", path, playbook]
        env = self.ansible.env({"ANSIBLE_STDOUT_CALLBACK": self.callback, "ANSIBLE_PIPELINING": self.pipelining})
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=900, cwd=ROOT,
                              check=False)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        data = None
        if self.callback == "adcs_json":
            data = json.loads(out[out.index("{\n"):]) if "{\n" in out else None
        return proc.returncode, out + "\n" + err, data

    def hosts(self, modes, **per_host):
        hosts = {}
        for host, mode in modes.items():
            root = str(self.tmp / host)
            os.makedirs(root, exist_ok=True)
            hosts[host] = {"ansible_connection": "local", "certificate_directory": root, "adcs_test_root": root,
                           "certificate_enroll_on": mode}
            hosts[host].update(per_host.get(host, {}))
        return hosts


def web(name, **extra):
    req = {"name": name, "template": "WebServer", "common_name": "{{ inventory_hostname }}.lab.adcs.test",
           "dns": ["{{ inventory_hostname }}.lab.adcs.test"]}
    req.update(extra)
    return req


def role_results(data):
    for task in reversed(data["plays"][0]["tasks"]):
        if task["task"]["name"] == "Publish the results":
            return {host: {r["name"]: r for r in res["certificate_results"]} for host, res in task["hosts"].items()}
    raise AssertionError("no results published")


@pytest.mark.parametrize("callback,pipelining", ROLE_OUTPUTS)
def test_certificate_role_keeps_connection_secrets(lab, ansible, tmp_path, callback, pipelining):
    """Host mode (host1, with a PKCS#12 passphrase) and controller mode (host2); per host one request that succeeds
    through its per-request connection, one that fails with a wrong per-request password and one that fails with
    the wrong role-level password."""
    real = lab["accounts"]["enroller"]["password"]
    run = Run(ansible, tmp_path, callback, pipelining)

    def requests(pkcs12):
        good = web("good", connection={"password": real})
        if pkcs12:
            good.update(pkcs12_path="{{ adcs_test_root }}/good.p12", pkcs12_passphrase=P12)
        return [good, web("badreq", connection={"password": REQ_CONN}), web("badrole")]
    hosts = run.hosts({"host1": "host", "host2": "controller"},
                      host1={"certificate_requests": requests(True)}, host2={"certificate_requests": requests(False)})
    inventory = {"all": {"hosts": hosts, "vars": {
        "ansible_python_interpreter": ansible.python, "certificate_connection": lab_conn(lab, ROLE_CONN),
        "certificate_fail_on_error": False}}}
    rc, text, data = run.playbook(SITE, inventory)
    assert_no_secret(text, [real, ROLE_CONN, REQ_CONN, P12])
    assert rc == 0, text[-3000:]
    assert any(m in text for m in WRONG_PASSWORD)  # the failures keep a useful message
    assert os.path.getsize(str(tmp_path / "host1" / "good.p12")) > 0
    if data is not None:
        results = role_results(data)
        for host in ("host1", "host2"):
            assert results[host]["good"]["status"] == "issued", results[host]["good"]
            for name in ("badreq", "badrole"):
                assert results[host][name]["status"] == "failed"
                assert any(m in results[host][name]["summary"] for m in WRONG_PASSWORD), results[host][name]
    else:
        assert "badreq: failed: " in text and "badrole: failed: " in text


@pytest.mark.parametrize("callback,pipelining", OUTPUTS)
def test_certificates_playbook_with_trust_keeps_secrets(lab, ansible, tmp_path, callback, pipelining):
    """The certificates playbook: trust role (trust_connection, AD query on the controller) then the certificate
    role, all succeeding."""
    real = lab["accounts"]["enroller"]["password"]
    run = Run(ansible, tmp_path, callback, pipelining)
    store = tmp_path / "anchors"
    hosts = run.hosts({"host1": "host"})
    inventory = {"all": {"hosts": hosts, "vars": {
        "ansible_python_interpreter": ansible.python,
        "trust_from_ad": True, "trust_connection": lab_conn(lab, real), "trust_store_dir": str(store),
        "trust_update_command": "/bin/true",
        "certificate_connection": lab_conn(lab, ROLE_CONN),
        "certificate_requests": [web("good", connection={"password": real},
                                     pkcs12_path="{{ adcs_test_root }}/good.p12", pkcs12_passphrase=P12)]}}}
    rc, text, _data = run.playbook(CERTIFICATES, inventory)
    assert_no_secret(text, [real, ROLE_CONN, P12])
    assert rc == 0, text[-3000:]
    assert os.listdir(str(store))
    assert os.path.exists(str(tmp_path / "host1" / "certs" / "good.crt"))


@pytest.mark.parametrize("callback,pipelining", OUTPUTS)
def test_trust_role_failure_keeps_secrets(lab, ansible, tmp_path, callback, pipelining):
    """trust_connection with Kerberos from a wrong NT hash, and (second host) a wrong password: the play fails
    with the KDC's / DC's answer and neither secret is shown."""
    run = Run(ansible, tmp_path, callback, pipelining)
    acct = lab["accounts"]["enroller"]
    hosts = run.hosts({"host1": "host", "host2": "host"},
                      host1={"trust_connection": lab_conn(lab, None, auth="kerberos", nt_hash=NT_HASH)},
                      host2={"trust_connection": lab_conn(lab, REQ_CONN)})
    del hosts["host1"]["trust_connection"]["password"]
    inventory = {"all": {"hosts": hosts, "vars": {
        "ansible_python_interpreter": ansible.python, "trust_from_ad": True, "trust_query_on": "host",
        "trust_store_dir": str(tmp_path / "anchors"), "trust_update_command": "/bin/true",
        "certificate_requests": [web("never")]}}}
    rc, text, _data = run.playbook(CERTIFICATES, inventory)
    assert_no_secret(text, [NT_HASH, REQ_CONN, acct["password"]])
    assert rc != 0
    assert "Kerberos for LDAP failed" in text
    assert "invalidCredentials" in text
    assert not os.path.exists(str(tmp_path / "host1" / "certs" / "never.crt"))


@pytest.mark.parametrize("callback,pipelining", OUTPUTS[:1] + OUTPUTS[3:])
def test_role_argument_validation_failure_keeps_secrets(lab, ansible, tmp_path, callback, pipelining):
    """Connection options of the wrong type, holding secrets: the argument spec validation fails without them."""
    run = Run(ansible, tmp_path, callback, pipelining)
    hosts = run.hosts({"host1": "host"})
    inventory = {"all": {"hosts": hosts, "vars": {
        "ansible_python_interpreter": ansible.python, "certificate_connection": [BAD_TYPES[0]],
        "certificate_requests": [web("bad", connection="password=%s x" % BAD_TYPES[1])]}}}
    rc, text, _data = run.playbook(SITE, inventory)
    assert_no_secret(text, BAD_TYPES)
    assert rc != 0
    assert "Validation of arguments failed" in text
    assert "argument 'certificate_connection' is of type" in text
