"""The certificate and trust roles and the playbooks, with `ansible-playbook` (and ansible-runner) against the lab.

Every test builds an inventory of two hosts with a local connection and a file root of their own: host1 enrolls on
the managed host, host2 from the controller (CSR on the host, enrollment delegated, certificate copied back).
"""

import json
import os
import stat

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "tests", "integration", "playbooks", "roles-site.yml")
CERTIFICATES = os.path.join(ROOT, "playbooks", "certificates.yml")
EXPIRING = os.path.join(ROOT, "playbooks", "expiring.yml")
HOSTS = ("host1", "host2")
MODES = {"host1": "host", "host2": "controller"}


@pytest.fixture
def ca_admin(lab):
    from adcslab.ca import CertificationAuthority
    ca = CertificationAuthority.open(lab["state_dir"])
    yield ca
    close = getattr(ca, "close", None)
    if close:
        close()


def connection(lab, who="enroller", **extra):
    acct = lab["accounts"][who]
    conn = {"domain": lab["domain"], "domain_controller": lab["dc"]["address"], "ca_bundle": lab["ca_bundle"],
            "username": "%s@%s" % (acct["username"], lab["domain"]), "password": acct["password"]}
    conn.update(extra)
    return conn


def web_request(name="web", template="WebServer", **extra):
    req = {"name": name, "template": template,
           "common_name": "{{ inventory_hostname }}.lab.adcs.test",
           "dns": ["{{ inventory_hostname }}.lab.adcs.test", "www.{{ inventory_hostname }}.lab.adcs.test"],
           "ip": ["192.0.2.10"],
           "notify": ["certificate changed"],
           "run_after": "echo after >> {{ adcs_test_root }}/run_after.log"}
    req.update(extra)
    return req


class Fleet(object):
    """An inventory of host1/host2 under tmp_path, and runs of playbooks against it."""

    def __init__(self, lab, ansible, tmp_path):
        self.lab, self.ansible, self.tmp = lab, ansible, tmp_path
        self.inventory = str(tmp_path / "inventory.json")

    def root(self, host):
        return str(self.tmp / host)

    def path(self, host, name="web", kind="crt"):
        base = os.path.join(self.root(host), "certs" if kind != "key" else "private")
        return os.path.join(base, "%s.%s" % (name, kind)) if kind in ("crt", "key") else \
            os.path.join(base, "%s%s" % (name, kind))

    def write(self, requests, conn=None, modes=None, **group_vars):
        modes = modes or MODES
        hosts = {}
        for host in HOSTS:
            os.makedirs(self.root(host), exist_ok=True)
            hosts[host] = {"ansible_connection": "local", "certificate_directory": self.root(host),
                           "adcs_test_root": self.root(host), "certificate_enroll_on": modes[host]}
        all_vars = {"ansible_python_interpreter": self.ansible.python,
                    "certificate_connection": conn if conn is not None else connection(self.lab),
                    "certificate_requests": requests,
                    "certificate_fail_on_error": False}
        all_vars.update(group_vars)
        with open(self.inventory, "w") as handle:
            json.dump({"all": {"hosts": hosts, "vars": all_vars}}, handle)

    def run(self, playbook=SITE, check=False, extra_vars=None):
        rc, out = self.ansible.playbook(playbook, inventory=self.inventory, check=check, extra_vars=extra_vars)
        return rc, out

    def handler_runs(self, host):
        try:
            with open(os.path.join(self.root(host), "handler.log")) as handle:
                return handle.read().split()
        except FileNotFoundError:
            return []


def results(out):
    """certificate_results per host, from the site playbook's last task."""
    for task in reversed(out["plays"][0]["tasks"]):
        if task["task"]["name"] == "Publish the results":
            return {host: {r["name"]: r for r in res["certificate_results"]}
                    for host, res in task["hosts"].items()}
    raise AssertionError("the results were not published: %s" % json.dumps(out)[:3000])


def changed(out):
    return {host: s["changed"] for host, s in out["stats"].items()}


def changed_tasks(out):
    return sorted({t["task"]["name"] for p in out["plays"] for t in p["tasks"]
                   for r in t["hosts"].values() if r.get("changed")})


def load_cert(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def key_public(path):
    with open(path, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_public(cert):
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def snapshot(fleet, host):
    files = {}
    for dirpath, _dirs, names in os.walk(fleet.root(host)):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as handle:
                files[os.path.join(dirpath, name)] = handle.read()
    return files


def state(fleet, host, name="web"):
    with open(fleet.path(host, name, ".crt.adcs.json")) as handle:
        return json.load(handle)


# A self-signed CA certificate named like the lab root, with another key (what an attacker appends to a chain file).
ROGUE_ROOT_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBtDCCAVmgAwIBAgICEJIwCgYIKoZIzj0EAwIwVzEUMBIGCgmSJomT8ixkARkW
BHRlc3QxFDASBgoJkiaJk/IsZAEZFgRhZGNzMRMwEQYKCZImiZPyLGQBGRYDbGFi
MRQwEgYDVQQDDAtMQUIgUm9vdCBDQTAgFw0yNjAxMDEwMDAwMDBaGA8yMDU1MTIy
NTAwMDAwMFowVzEUMBIGCgmSJomT8ixkARkWBHRlc3QxFDASBgoJkiaJk/IsZAEZ
FgRhZGNzMRMwEQYKCZImiZPyLGQBGRYDbGFiMRQwEgYDVQQDDAtMQUIgUm9vdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPlWU76SegU2/6rDOryjaGWjMv6V
0B2HStxctHBAQM8rsB4V6XUBk2Qkci4k+vCSny8ojXbzaW1H4UjgpVnlwZqjEzAR
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAIkORjn1pOrgwMJE
fYsCzq6q41KStJ4sC59uAMiVgSJCAiEAumtPyVBLj6TMSYwHjZCwl8hU7qP0L4za
rzz7UZErB2s=
-----END CERTIFICATE-----
"""


# ---------------------------------------------------------------------------------------------------------------
def test_first_run_issues_second_run_unchanged(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request()])
    rc, out = fleet.run(check=True)
    assert rc == 0, out
    res = results(out)
    for host in HOSTS:
        assert res[host]["web"]["status"] == "would_enroll", res[host]
        assert not os.path.exists(fleet.path(host)), "check mode wrote a certificate"
        assert not os.path.exists(fleet.path(host, kind="key")), "check mode wrote a key"

    rc, out = fleet.run()
    assert rc == 0, out
    res = results(out)
    text = json.dumps(out)
    for host in HOSTS:
        r = res[host]["web"]
        assert r["status"] == "issued", r
        assert r["enroll_on"] == MODES[host]
        assert r["subject"] == "CN=%s.lab.adcs.test" % host
        assert "LAB-CA" in r["issuer"]
        cert = load_cert(fleet.path(host))
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(sans.get_values_for_type(x509.DNSName)) == {"%s.lab.adcs.test" % host,
                                                               "www.%s.lab.adcs.test" % host}
        assert cert_public(cert) == key_public(fleet.path(host, kind="key"))
        assert stat.S_IMODE(os.stat(fleet.path(host, kind="key")).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(fleet.path(host)).st_mode) == 0o644
        # the directories: created by wcce_request (host) or ansible.builtin.file (controller), same modes
        assert stat.S_IMODE(os.stat(os.path.dirname(fleet.path(host, kind="key"))).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(os.path.dirname(fleet.path(host))).st_mode) == 0o755
        chain = open(fleet.path(host, kind="-chain.crt")).read()
        assert chain.count("BEGIN CERTIFICATE") == 2
        full = open(fleet.path(host, kind="-fullchain.crt")).read()
        assert full.count("BEGIN CERTIFICATE") == 3
        # the private key never appears in the output
        key_body = open(fleet.path(host, kind="key")).read().splitlines()[1]
        assert key_body not in text
        assert fleet.handler_runs(host) == [host]
        assert open(os.path.join(fleet.root(host), "run_after.log")).read().split() == ["after"]
        assert state(fleet, host)["status"] == "issued"
    assert not os.path.exists(fleet.path("host1", kind=".crt.csr")), "host enrollment needs no CSR file"
    assert os.path.exists(fleet.path("host2", kind=".crt.csr"))

    before = {host: snapshot(fleet, host) for host in HOSTS}
    rc, out = fleet.run()
    assert rc == 0, out
    assert changed(out) == {"host1": 0, "host2": 0}, out["stats"]
    for host in HOSTS:
        assert results(out)[host]["web"]["status"] == "unchanged"
        assert snapshot(fleet, host) == before[host]
        assert fleet.handler_runs(host) == [host]

    # check mode with a new SAN: reported, nothing written
    fleet.write([web_request(dns=["{{ inventory_hostname }}.lab.adcs.test", "api.{{ inventory_hostname }}.lab.adcs.test"])])
    rc, out = fleet.run(check=True)
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "would_enroll", r
        assert r["reason_code"] == "sans_changed", r
        assert snapshot(fleet, host) == before[host]


def test_renewal_window_short_lived(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    # host1 keeps its key on renewal, host2 (controller) gets a new one
    requests = [web_request(template="ShortLived", reuse_key="{{ inventory_hostname == 'host1' }}")]
    fleet.write(requests)
    rc, out = fleet.run()
    assert rc == 0, out
    first = {}
    for host in HOSTS:
        assert results(out)[host]["web"]["status"] == "issued", results(out)[host]
        first[host] = (load_cert(fleet.path(host)), key_public(fleet.path(host, kind="key")))

    # the template's renewal period (1 day) is not reached by a 2-day certificate: nothing to do
    rc, out = fleet.run()
    assert rc == 0, out
    assert changed(out) == {"host1": 0, "host2": 0}, out["stats"]

    # a renewal window of 3 days covers the whole lifetime: renewed
    fleet.write([dict(requests[0], renew_before=3)])
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "renewed", r
        assert r["reason_code"] == "renew_window", r
        cert = load_cert(fleet.path(host))
        assert cert.serial_number != first[host][0].serial_number
        assert cert_public(cert) == key_public(fleet.path(host, kind="key"))
        assert fleet.handler_runs(host) == [host, host]
    assert key_public(fleet.path("host1", kind="key")) == first["host1"][1], "reuse_key=true kept the key"
    assert key_public(fleet.path("host2", kind="key")) != first["host2"][1], "reuse_key=false made a new key"
    assert not os.path.exists(fleet.path("host2", kind="key") + ".new")


def test_template_change_reissues(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request()])
    rc, out = fleet.run()
    assert rc == 0, out
    serials = {host: load_cert(fleet.path(host)).serial_number for host in HOSTS}
    fleet.write([web_request(template="ShortLived")])
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "renewed", r
        assert r["reason_code"] == "template_changed", r
        assert load_cert(fleet.path(host)).serial_number != serials[host]
    rc, out = fleet.run()
    assert changed(out) == {"host1": 0, "host2": 0}, out["stats"]


def test_key_mismatch_reissues(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(run_after=None, notify=[])])
    rc, out = fleet.run()
    assert rc == 0, out
    # another certificate's key replaces the key on host1 and host2
    other = Fleet(lab, ansible, tmp_path / "other")
    other.write([web_request(name="other", run_after=None, notify=[])])
    rc, out = other.run()
    assert rc == 0, out
    for host in HOSTS:
        os.replace(other.path(host, "other", "key"), fleet.path(host, kind="key"))
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["reason_code"] == "key_mismatch", r
        assert cert_public(load_cert(fleet.path(host))) == key_public(fleet.path(host, kind="key"))


def test_pending_then_approved_on_a_later_run(lab, ansible, tmp_path, ca_admin):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(template="WebServerApproval")])
    rc, out = fleet.run()
    assert rc == 0, out
    ids = {}
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "pending", r
        assert "waits for a certificate manager" in r["summary"]
        ids[host] = r["request_id"]
        assert isinstance(ids[host], int) and ids[host] > 0
        assert state(fleet, host)["status"] == "pending"
        assert state(fleet, host)["request_id"] == ids[host]
        assert not os.path.exists(fleet.path(host))
        assert fleet.handler_runs(host) == []

    # still pending: reported, nothing new submitted, nothing changed
    rc, out = fleet.run()
    assert rc == 0, out
    assert changed(out) == {"host1": 0, "host2": 0}, out["stats"]
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert (r["status"], r["request_id"]) == ("pending", ids[host])

    for host in HOSTS:
        ca_admin.approve(ids[host])
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "issued", r
        assert state(fleet, host)["status"] == "issued"
        cert = load_cert(fleet.path(host))
        assert cert_public(cert) == key_public(fleet.path(host, kind="key"))
        assert fleet.handler_runs(host) == [host]
    rc, out = fleet.run()
    assert changed(out) == {"host1": 0, "host2": 0}, out["stats"]


def test_pending_then_denied_by_the_ca_manager(lab, ansible, tmp_path, ca_admin):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(template="WebServerApproval")])
    rc, out = fleet.run()
    assert rc == 0, out
    ids = {host: results(out)[host]["web"]["request_id"] for host in HOSTS}
    for host in HOSTS:
        ca_admin.deny(ids[host])
    rc, out = fleet.run()
    assert rc == 0, out   # certificate_fail_on_error=false in these inventories
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "denied", r
        assert r["request_id"] == ids[host]
        assert "denied" in r["summary"].lower()
        assert state(fleet, host)["status"] == "denied"
        assert not os.path.exists(fleet.path(host))


def test_denied_account_is_reported_and_fails(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request()], conn=connection(lab, "denied"), certificate_fail_on_error=True)
    rc, out = fleet.run()
    assert rc != 0
    for host in HOSTS:
        assert out["stats"][host]["failures"] == 1, out["stats"]
        assert not os.path.exists(fleet.path(host))
    text = json.dumps(out)
    assert "CERTSRV_E_TEMPLATE_DENIED" in text
    fails = [t["hosts"][h] for t in out["plays"][0]["tasks"] for h in t["hosts"]
             if t["task"]["name"].endswith("fail when a certificate could not be issued") and t["hosts"][h].get("failed")]
    assert len(fails) == 2 and all("web: denied:" in f["msg"] for f in fails), fails


def test_ca_down_leaves_everything_in_place(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request()])
    rc, out = fleet.run()
    assert rc == 0, out
    before = {host: snapshot(fleet, host) for host in HOSTS}
    # force a renewal against a CA that does not answer
    down = connection(lab, ca_host="127.0.0.199", ca_name=lab["ca"]["name"], timeout=5)
    fleet.write([web_request(renew_before=10000)], conn=down)
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]["web"]
        assert r["status"] == "failed", r
        assert "127.0.0.199" in r["message"], r
        assert snapshot(fleet, host) == before[host]
        assert fleet.handler_runs(host) == [host]
    fleet.write([web_request(renew_before=10000)], conn=down, certificate_fail_on_error=True)
    rc, out = fleet.run()
    assert rc != 0
    for host in HOSTS:
        assert snapshot(fleet, host) == before[host]


def test_crl_and_trust_store(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(crl_path="{{ adcs_test_root }}/certs/web.crl", install_ca_trust=True)],
                certificate_crl_options={"urls": [lab["ca"]["crl_url"]],
                                         "host_addresses": {lab["ca"]["hostname"]: lab["ca"]["address"]}},
                trust_store_dir="{{ adcs_test_root }}/trust",
                trust_update_command="sh -c 'echo updated >> {{ adcs_test_root }}/trust.log'")
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        assert results(out)[host]["web"]["status"] == "issued"
        crl = x509.load_pem_x509_crl(open(os.path.join(fleet.root(host), "certs", "web.crl"), "rb").read())
        assert "LAB-CA" in crl.issuer.rfc4514_string()
        # only the root is an anchor (the issuing CA is never one, and no intermediate store is set)
        anchors = sorted(os.listdir(os.path.join(fleet.root(host), "trust")))
        assert len(anchors) == 1 and anchors[0].startswith("adcs-web-") and anchors[0].endswith(".crt"), anchors
        anchor = load_cert(os.path.join(fleet.root(host), "trust", anchors[0]))
        assert anchor == load_cert(lab["ca"]["root_cert"])
        assert open(os.path.join(fleet.root(host), "trust.log")).read().split() == ["updated"]
    rc, out = fleet.run()
    assert rc == 0, out
    # the lab CA publishes a new CRL whenever a test anywhere revokes a certificate: only the CRL may change
    assert all("CRL" in name for name in changed_tasks(out)), changed_tasks(out)
    # a root appended to the chain file on the host (by its service user, say) is not installed
    rogue = x509.load_pem_x509_certificate(ROGUE_ROOT_PEM)
    for host in HOSTS:
        with open(fleet.path(host, kind="-chain.crt"), "ab") as handle:
            handle.write(ROGUE_ROOT_PEM)
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        anchors = sorted(os.listdir(os.path.join(fleet.root(host), "trust")))
        assert [load_cert(os.path.join(fleet.root(host), "trust", a)) for a in anchors] == \
            [load_cert(lab["ca"]["root_cert"])]
    sort_task = "Sort the CA certificates on the controller"
    refused = [r for t in out["plays"][0]["tasks"] if t["task"]["name"].endswith(sort_task)
               for r in t["hosts"].values() if r.get("warnings")]
    wanted = (rogue.subject.rfc4514_string(), "not among the independently verified anchors")
    assert refused and all(any(all(w in text for w in wanted) for text in r["warnings"]) for r in refused), refused


def test_trust_role_from_ad_and_files(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([], trust_from_ad=True, trust_connection=connection(lab),
                trust_certificates=[{"name": "lab-root", "src": lab["ca"]["root_cert"]}],
                trust_store_dir="{{ adcs_test_root }}/anchors",
                trust_update_command="sh -c 'echo updated >> {{ adcs_test_root }}/trust.log'")
    for run in (1, 2):
        rc, out = fleet.run(CERTIFICATES)
        assert rc == 0, out
        for host in HOSTS:
            # the root from the file and the root of CN=Certification Authorities are the same certificate;
            # the enterprise (issuing) CA is never an anchor
            anchors = sorted(os.listdir(os.path.join(fleet.root(host), "anchors")))
            assert len(anchors) == 1 and anchors[0].startswith("adcs-lab-root-"), anchors
            assert open(os.path.join(fleet.root(host), "trust.log")).read().split() == ["updated"]
    assert changed(out) == {"host1": 0, "host2": 0}, out["stats"]


def test_certificates_and_expiring_playbooks(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(notify=[], run_after=None),
                 web_request(name="short", template="ShortLived", notify=[], run_after=None)])
    rc, out = fleet.run(CERTIFICATES)
    assert rc == 0, out
    for host in HOSTS:
        assert os.path.exists(fleet.path(host)) and os.path.exists(fleet.path(host, "short"))
    rc, out = fleet.run(CERTIFICATES)
    assert changed(out) == {"host1": 0, "host2": 0}, out["stats"]

    rc, out = fleet.run(EXPIRING, extra_vars={"adcs_expiring_days": 10,
                                              "adcs_expiring_paths": [str(tmp_path)]})
    assert rc == 0, out
    report = [t for t in out["plays"][-1]["tasks"] if t["task"]["name"] == "Report expiring certificates"][0]
    assert len(report["hosts"]) == 1, report   # run once for the whole play
    lines = list(report["hosts"].values())[0]["msg"]
    assert any("host1" in line and "short" in line for line in lines), lines
    assert any("host2" in line and "short" in line for line in lines), lines
    assert not any("/web.crt" in line for line in lines), lines


def test_certificates_playbook_through_ansible_runner(lab, ansible, tmp_path):
    runner = pytest.importorskip("ansible_runner")
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(notify=[], run_after=None)])
    env = {k: v for k, v in ansible.env().items() if k.startswith("ANSIBLE_") and k != "ANSIBLE_STDOUT_CALLBACK"}
    env["PATH"] = os.path.dirname(ansible.python) + os.pathsep + os.environ.get("PATH", "")

    def run(n):
        private = tmp_path / ("runner%d" % n)
        private.mkdir()
        return runner.run(private_data_dir=str(private), playbook=CERTIFICATES, inventory=fleet.inventory,
                          envvars=env, quiet=True)

    first = run(1)
    assert first.status == "successful", first.stdout.read()
    assert first.stats["changed"].get("host1") and first.stats["changed"].get("host2"), first.stats
    for host in HOSTS:
        assert os.path.exists(fleet.path(host))
    second = run(2)
    assert second.status == "successful", second.stdout.read()
    assert not second.stats["changed"], second.stats


def test_bad_variables_are_rejected_before_any_task(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([{"name": "web", "key_type": "dsa"}], modes={"host1": "elsewhere", "host2": "elsewhere"})
    rc, out = fleet.run()
    assert rc != 0
    tasks = out["plays"][0]["tasks"]
    first = tasks[0]
    assert "Validating arguments against arg spec" in first["task"]["name"], first["task"]
    msg = first["hosts"]["host1"]["msg"]
    assert "certificate_enroll_on must be one of: host, controller, got: elsewhere" in msg
    assert "key_type must be one of: rsa, ecdsa, got: dsa" in msg
    assert len(tasks) == 1
    assert not os.listdir(fleet.root("host1"))


def test_machine_identity_with_kerberos_keytab(lab, ansible, tmp_path):
    """Like Windows autoenrollment: the computer account enrolls for Machine with its keytab (Kerberos, no password),
    on the host and from the controller; the CA builds subject and DNS SAN from the computer account."""
    computer = lab["accounts"]["computer"]
    fleet = Fleet(lab, ansible, tmp_path)
    conn = {"domain": lab["domain"], "domain_controller": lab["dc"]["address"], "ca_bundle": lab["ca_bundle"],
            "auth": "kerberos", "username": computer["username"], "kerberos_keytab": computer["keytab"],
            "ca_host": lab["ca"]["hostname"], "ca_name": lab["ca"]["name"]}
    fleet.write([{"name": "machine", "template": "Machine", "common_name": computer["dns_host_name"]}], conn=conn)
    rc, out = fleet.run()
    assert rc == 0, out
    res = results(out)
    for host in HOSTS:
        assert res[host]["machine"]["status"] == "issued", res[host]
        with open(fleet.path(host, name="machine"), "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [computer["dns_host_name"]]
    rc, out = fleet.run()
    assert rc == 0 and not any(changed(out).values()), changed(out)


def test_run_before_only_when_replaced_and_a_failing_command_fails_its_certificate(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    before = "echo before >> {{ adcs_test_root }}/run_before.log"
    fleet.write([web_request(run_before=before), web_request(name="other", run_after=None, notify=[])])
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        assert {r["status"] for r in results(out)[host].values()} == {"issued"}, results(out)[host]
        assert open(os.path.join(fleet.root(host), "run_before.log")).read().split() == ["before"]
    rc, out = fleet.run()   # nothing to replace: the command does not run
    assert rc == 0 and changed(out) == {"host1": 0, "host2": 0}, out["stats"]
    for host in HOSTS:
        assert open(os.path.join(fleet.root(host), "run_before.log")).read().split() == ["before"]
    snap = {host: snapshot(fleet, host) for host in HOSTS}
    fleet.write([web_request(run_before="exit 3", renew_before=10000), web_request(name="other", run_after=None,
                                                                                   notify=[])])
    rc, out = fleet.run()
    assert rc == 0, out   # certificate_fail_on_error=false in these inventories
    for host in HOSTS:
        r = results(out)[host]
        assert r["web"]["status"] == "failed" and r["other"]["status"] == "unchanged", r
        assert snapshot(fleet, host) == snap[host]
        assert fleet.handler_runs(host) == [host]
    assert "run_before failed (rc=3)" in results(out)["host1"]["web"]["message"]
