"""The certificate role in controller mode (certificate_enroll_on: controller) against a compromised managed host:
a host that hands over a CSR for other names gets nothing issued; and key and certificate switch together.

The compromised host is host2 with a Python interpreter that runs every module normally but replaces the CSR in
adcs.enrollment.wcce_csr's result by one for victim-<random>.lab.adcs.test (what a host under an attacker's control
can do: its module output is whatever it says). host1 enrolls on the host as usual."""

import json
import os
import shutil
import sqlite3
import stat
import tempfile
import uuid

import pytest

# fixtures of the private-CA harness (for the last test)
from test_wcce_request_faults import faults, private_ca  # noqa: F401  pylint: disable=unused-import
from test_roles import (
    Fleet, HOSTS, cert_public, changed, changed_tasks, key_public, load_cert, results, web_request,
)

pytestmark = pytest.mark.lab

LIAR = r'''#!{python}
"""Runs a module with the real interpreter; a wcce_csr result gets a CSR for {victim} instead of its own."""
import json
import subprocess
import sys

proc = subprocess.run([{python!r}] + sys.argv[1:], input=sys.stdin.buffer.read(), stdout=subprocess.PIPE)
out = proc.stdout
try:
    data = json.loads(out[out.index(b"{{"):])
except ValueError:
    data = None
if isinstance(data, dict) and "csr" in data and "public_key" in data:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, {victim!r})]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName({victim!r})]), critical=False)
           .sign(key, hashes.SHA256()))
    data["csr"] = csr.public_bytes(serialization.Encoding.PEM).decode()
    out = json.dumps(data).encode()
sys.stdout.buffer.write(out)
sys.exit(proc.returncode)
'''


def requests_for(lab, subject):
    """Requests for ``subject`` in the shared lab CA's request database."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(lab["state_dir"], "ca", "requests.db"), uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM requests WHERE subject LIKE ?", ("%" + subject + "%",)).fetchone()[0]
    finally:
        db.close()


def compromise(fleet, host, victim):
    """host's modules run through the lying interpreter."""
    liar = os.path.join(str(fleet.tmp), "liar-python")
    with open(liar, "w") as handle:
        handle.write(LIAR.format(python=fleet.ansible.python, victim=victim))
    os.chmod(liar, 0o755)
    with open(fleet.inventory) as handle:
        inventory = json.load(handle)
    inventory["all"]["hosts"][host]["ansible_python_interpreter"] = liar
    with open(fleet.inventory, "w") as handle:
        json.dump(inventory, handle)


def test_substituted_csr_gets_nothing_issued(lab, ansible, tmp_path):
    victim = "victim-%s.lab.adcs.test" % uuid.uuid4().hex[:8]
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(run_after=None, notify=[])])
    compromise(fleet, "host2", victim)
    rc, out = fleet.run()
    assert rc == 0, out  # certificate_fail_on_error is false in these tests
    res = results(out)
    assert res["host1"]["web"]["status"] == "issued", res["host1"]
    r = res["host2"]["web"]
    assert r["status"] == "failed", r
    assert r["message"] == (
        "The CSR (csr_content) is not the one expected; nothing was sent to the CA; subject: expected "
        "CN=host2.lab.adcs.test, the CSR has CN=%s; subject_alt_name: expected DNS:host2.lab.adcs.test, "
        "DNS:www.host2.lab.adcs.test, IP:192.0.2.10, the CSR has DNS:%s. What to do: The CSR must carry exactly the "
        "subject, subject_alt_name and key type given with it. If it comes from a managed host, that host may be "
        "compromised." % (victim, victim)), r["message"]
    assert not os.path.exists(fleet.path("host2")), "no certificate on the compromised host"
    assert requests_for(lab, victim) == 0, "the CSR for the victim never reached the CA"


def test_controller_mode_switches_key_and_certificate_together(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    request = web_request(template="ShortLived", reuse_key=False, run_after=None, notify=[])
    fleet.write([request], modes={"host1": "controller", "host2": "controller"})
    rc, out = fleet.run()
    assert rc == 0, out
    first = {}
    for host in HOSTS:
        assert results(out)[host]["web"]["status"] == "issued", results(out)[host]
        cert = load_cert(fleet.path(host))
        assert cert_public(cert) == key_public(fleet.path(host, kind="key"))
        first[host] = (cert.serial_number, key_public(fleet.path(host, kind="key")))

    # a renewal with a new key (reuse_key=false): the key and the certificate files change in the same run
    fleet.write([dict(request, renew_before=3)], modes={"host1": "controller", "host2": "controller"})
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "renewed", r
        cert = load_cert(fleet.path(host))
        key = key_public(fleet.path(host, kind="key"))
        assert cert.serial_number != first[host][0] and key != first[host][1]
        assert cert_public(cert) == key
        full = open(fleet.path(host, kind="-fullchain.crt"), "rb").read()
        assert full.startswith(open(fleet.path(host), "rb").read()), "full chain switched with the certificate"
        assert stat.S_IMODE(os.stat(fleet.path(host, kind="key")).st_mode) == 0o600
        assert not os.path.exists(fleet.path(host, kind="key") + ".new")
        assert not os.path.exists(fleet.path(host, kind=".crt.csr") + ".new")
        # the CSR kept on the host is the new key's
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        csr = x509.load_pem_x509_csr(open(fleet.path(host, kind=".crt.csr"), "rb").read())
        assert csr.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) == key
    # and then nothing to do
    fleet.write([request], modes={"host1": "controller", "host2": "controller"})
    rc, out = fleet.run()
    assert rc == 0 and changed(out) == {"host1": 0, "host2": 0}, out["stats"]


def test_controller_mode_fetches_the_crl_on_the_controller_without_scratch_files(lab, ansible, tmp_path):
    from cryptography import x509
    fleet = Fleet(lab, ansible, tmp_path)
    crl_options = {"urls": [lab["ca"]["crl_url"]], "host_addresses": {lab["ca"]["hostname"]: lab["ca"]["address"]}}
    before = set(os.listdir(tempfile.gettempdir()))
    fleet.write([web_request(crl_path="{{ adcs_test_root }}/certs/web.crl", run_after=None, notify=[])],
                modes={"host1": "controller", "host2": "controller"}, certificate_crl_options=crl_options)
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        crl = x509.load_pem_x509_crl(open(os.path.join(fleet.root(host), "certs", "web.crl"), "rb").read())
        assert crl.issuer.rfc4514_string() == "CN=LAB-CA,DC=lab,DC=adcs,DC=test"
    assert not [name for name in set(os.listdir(tempfile.gettempdir())) - before if name.startswith("adcs-crl-")]
    rc, out = fleet.run()
    assert rc == 0, out
    # the lab CA publishes a new CRL whenever a test anywhere revokes a certificate: only the CRL may change
    assert all("CRL" in name for name in changed_tasks(out)), changed_tasks(out)


def test_ca_altering_names_is_asked_once_per_host(lab, ansible, tmp_path, private_ca, faults):
    """A CA that issues other names (alter_subject on the private lab CA): three runs of the role, one request per
    host (host1 on the host, host2 from the controller: the refusal record travels with the certificate files).
    Needs the private CA of test_wcce_request_faults: run under `flock /tmp/adcs-private-ca.lock`."""
    from test_roles import connection
    from test_wcce_request_faults import ADDRESS
    from test_wcce_request_names import requests_in_db

    faults(alter_subject="CN=victim.lab.adcs.test")
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(run_after=None, notify=[])], conn=connection(lab, ca_host=ADDRESS, ca_name="LAB-CA"))
    before = requests_in_db(private_ca)
    messages = {}
    for run in range(3):
        rc, out = fleet.run()
        assert rc == 0, out
        for host in HOSTS:
            r = results(out)[host]["web"]
            assert r["status"] == "failed", r
            assert not os.path.exists(fleet.path(host)), "no certificate installed"
            messages.setdefault(host, []).append(r["message"])
    assert requests_in_db(private_ca) - before == 2, "one request per host in three runs"
    for host in HOSTS:
        first, second, third = messages[host]
        assert "; subject: asked CN=%s.lab.adcs.test, issued CN=victim.lab.adcs.test" % host in first, first
        assert second.startswith("Request ") and "was refused on an earlier run" in second, second
        assert third == second
        assert os.path.exists(fleet.path(host) + ".refused")


SLURP_LIAR = r'''#!{python}
"""Runs a module with the real interpreter; a slurp result of web.crt names another file (source)."""
import base64
import json
import os
import subprocess
import sys

proc = subprocess.run([{python!r}] + sys.argv[1:], input=sys.stdin.buffer.read(), stdout=subprocess.PIPE)
out = proc.stdout
try:
    data = json.loads(out[out.index(b"{{"):])
except ValueError:
    data = None
if isinstance(data, dict) and {{"content", "source", "encoding"}} <= set(data) and data["source"].endswith("/web.crt"):
    data["source"] = os.path.join(os.path.dirname(data["source"]), {planted!r})
    data["content"] = base64.b64encode(b"planted by the managed host\n").decode()
    out = json.dumps(data).encode()
sys.stdout.buffer.write(out)
sys.exit(proc.returncode)
'''

SCRATCH_SPY = r'''#!{python}
"""The controller's interpreter: records what is in the controller's TMPDIR whenever a module starts there."""
import json
import os
import sys

with open({log!r}, "a") as handle:
    handle.write(json.dumps(sorted(os.listdir({tmpdir!r}))) + "\n")
os.execv({python!r}, [{python!r}] + sys.argv[1:])
'''


@pytest.fixture()
def short_tmp():
    path = tempfile.mkdtemp(prefix="adcs-ctl-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_host_cannot_name_files_on_the_controller(lab, ansible, tmp_path, short_tmp):
    """A compromised host's slurp result names another file (source: .web.crt.adcs-journal, the journal name a
    wcce_request writing files would recover from): the controller enrolls in pipe mode, on contents, so no name from
    the host is ever a path there; no scratch directory is made on the controller and nothing is left in its TMPDIR."""
    from test_roles import SITE

    fleet = Fleet(lab, ansible, tmp_path)
    request = web_request(run_after=None, notify=[])
    fleet.write([request])
    rc, out = fleet.run()
    assert rc == 0 and results(out)["host2"]["web"]["status"] == "issued", out
    planted = ".web.crt.adcs-journal"
    liar = os.path.join(str(tmp_path), "slurp-liar-python")
    with open(liar, "w") as handle:
        handle.write(SLURP_LIAR.format(python=fleet.ansible.python, planted=planted))
    os.chmod(liar, 0o755)
    # TMPDIR of the controller: short, as ansible-core keeps its local RPC socket there (AF_UNIX path limit)
    ctl_tmp = short_tmp
    log = str(tmp_path / "scratch.log")
    spy = os.path.join(str(tmp_path), "controller-python")
    with open(spy, "w") as handle:
        handle.write(SCRATCH_SPY.format(python=fleet.ansible.python, log=log, tmpdir=str(ctl_tmp)))
    os.chmod(spy, 0o755)
    fleet.write([request], certificate_controller_python=spy)
    with open(fleet.inventory) as handle:
        inventory = json.load(handle)
    inventory["all"]["hosts"]["host2"]["ansible_python_interpreter"] = liar
    with open(fleet.inventory, "w") as handle:
        json.dump(inventory, handle)

    rc, out = ansible.playbook(SITE, inventory=fleet.inventory, extra_env={"TMPDIR": str(ctl_tmp)})
    assert rc == 0, out
    with open(log) as handle:
        listings = [json.loads(line) for line in handle]
    assert listings, "wcce_request ran on the controller"
    for names in listings:
        assert not [n for n in names if n.startswith(("adcs-cert-", "adcs-pipe-")) or planted in n], names
    # the host's (planted) content went in as the certificate: wcce_request saw a broken certificate and enrolled
    r = results(out)["host2"]["web"]
    assert r["status"] == "issued", r
    assert cert_public(load_cert(fleet.path("host2"))) == key_public(fleet.path("host2", kind="key"))
    assert not [n for n in os.listdir(str(ctl_tmp)) if n.startswith(("adcs-cert-", "adcs-pipe-"))], \
        "no scratch directory is left on the controller"
