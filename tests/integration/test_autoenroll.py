"""The autoenroll role with `ansible-playbook` against the lab, as the lab computer LABHOST01$ with its keytab.

The lab's templates for it (tests/lab/adcslab/seed.py AUTOENROLL_TEMPLATES): AutoLinuxServer superseded by
AutoLinuxServerV2, AutoApproval (CA manager approval), AutoRASigned (one RA signature), AutoDenied (AutoEnroll denied
to LABHOST01$) and AutoGrant (Enroll only; the grant test adds AutoEnroll and takes it back); Machine is
autoenrollable for Domain Computers as AD CS ships it. Only these templates are included, so templates other
checkouts add to the shared lab do not change the results. The ACL changes are made and undone here, on AutoGrant
only.
"""

import json
import os

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "tests", "integration", "playbooks", "autoenroll-site.yml")
PLAYBOOK = os.path.join(ROOT, "playbooks", "autoenroll.yml")
INCLUDE = ["Machine", "Auto*"]
OURS = ("AutoLinuxServer", "AutoLinuxServerV2", "AutoApproval", "AutoRASigned", "AutoDenied", "AutoGrant")


@pytest.fixture
def lab_ca(lab):
    """The lab CA's request database, to count and approve requests."""
    from adcslab.ca import CertificationAuthority
    authority = CertificationAuthority.open(lab["state_dir"])
    try:
        yield authority
    finally:
        authority.close()


def _admin_ldap(lab):
    import ssl
    import ldap3
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=lab["ca_bundle"], valid_names=[lab["dc"]["hostname"]])
    server = ldap3.Server(lab["dc"]["address"], port=636, use_ssl=True, tls=tls, connect_timeout=5)
    admin = lab["accounts"]["admin"]
    return ldap3.Connection(server, user=admin["upn"], password=admin["password"], auto_bind=True,
                            raise_exceptions=True, receive_timeout=30)


@pytest.fixture(scope="module", autouse=True)
def autoenroll_templates(lab):
    """The lab's autoenrollment templates are in AD and published (what `adcslab seed-templates` does, for these
    templates only: a shared lab DC may have been seeded from a checkout without them)."""
    from adcslab import seed, seeder
    conn = _admin_ldap(lab)
    try:
        loader = seeder.Seeder(None, None)
        loader.conn = conn
        loader.domain_sid = lab["accounts"]["computer"]["sid"].rsplit("-", 1)[0]
        loader.sids = {"labhost01$": lab["accounts"]["computer"]["sid"]}
        owner = loader.resolve("rid:%d" % seed.RID_ENTERPRISE_ADMINS)
        for template in [t for t in seed.TEMPLATES if t["cn"] in OURS]:
            attrs = seed.template_attributes(template)
            attrs["nTSecurityDescriptor"] = seeder.security_descriptor(template["acl"], loader.resolve, owner)
            loader._upsert("CN=%s,%s" % (template["cn"], seed.TEMPLATES_DN), attrs, controls=seeder._sd_control())
            oid = seed.oid_object(template)
            loader._upsert("CN=%s,%s" % (oid["cn"], seed.OID_DN), oid["attrs"])
        loader._publish_more(list(OURS))
    finally:
        conn.unbind()


class Host(object):
    """One inventory host (LABHOST01, local connection) with its autoenrollment directory under tmp_path."""

    def __init__(self, lab, ansible, tmp_path):
        self.lab, self.ansible, self.tmp = lab, ansible, tmp_path
        self.dir = str(tmp_path / "pki")
        self.inventory = str(tmp_path / "inventory.json")
        self.write()

    def write(self, **extra):
        comp = self.lab["accounts"]["computer"]
        host_vars = {"ansible_connection": "local", "ansible_python_interpreter": self.ansible.python,
                     "adcs_test_root": str(self.tmp), "autoenroll_directory": self.dir,
                     "autoenroll_include": INCLUDE,
                     "autoenroll_templates": {"*": {"notify": ["autoenroll changed"],
                                                    "run_after": "echo after >> %s/run_after.log" % self.tmp}},
                     "autoenroll_connection": {"auth": "kerberos", "username": comp["username"],
                                               "kerberos_keytab": comp["keytab"], "domain": self.lab["domain"],
                                               "domain_controller": self.lab["dc"]["address"],
                                               "ca_bundle": self.lab["ca_bundle"]}}
        host_vars.update(extra)
        with open(self.inventory, "w") as handle:
            json.dump({"all": {"hosts": {"labhost01": host_vars}}}, handle)

    def run(self, playbook=SITE, check=False):
        return self.ansible.playbook(playbook, inventory=self.inventory, check=check,
                                     extra_env={"KRB5_CONFIG": self.lab["dc"]["krb5_conf"]})

    def path(self, name, kind=".crt"):
        return os.path.join(self.dir, "private" if kind == ".key" else "certs", name + kind)

    def log(self, name):
        """The words the handler or run_after wrote into ``name`` (none when they never ran)."""
        path = self.tmp / name
        return path.read_text().split() if path.exists() else []


def results(out):
    """autoenroll_results by template name, from the site playbook's "Publish the results"."""
    published = [t["hosts"]["labhost01"] for t in out["plays"][0]["tasks"]
                 if t["task"]["name"] == "Publish the results"]
    assert published, "the results were not published: %s" % json.dumps(out)[:3000]
    return dict((r["name"], r) for r in published[-1]["autoenroll_results"])


def changed(out):
    return out["stats"]["labhost01"]["changed"]


def requests_of(lab_ca, templates):
    """The lab CA's requests for ``templates`` (every requester: the tests are the only users of ours)."""
    return [row for row in lab_ca.list_requests() if row["template"] in templates]


def pruned(host, name):
    """Runs with prune: check mode says the certificate of ``name`` would go and leaves it, the run removes it;
    returns the results of the run."""
    rc, out = host.run(check=True)
    assert rc == 0, out
    assert results(out)[name]["status"] == "would_remove"
    assert os.path.exists(host.path(name))
    rc, out = host.run()
    assert rc == 0, out
    r = results(out)
    assert (r[name]["action"], r[name]["status"]) == ("remove", "removed"), r[name]
    return r


def load_cert(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def test_first_run_enrolls_second_run_changes_nothing(lab, ansible, tmp_path, lab_ca):
    host = Host(lab, ansible, tmp_path)
    comp = lab["accounts"]["computer"]
    before = len(requests_of(lab_ca, OURS))

    rc, out = host.run(check=True)
    assert rc == 0, out
    r = results(out)
    assert (r["Machine"]["action"], r["Machine"]["status"]) == ("enroll", "would_enroll"), r["Machine"]
    assert r["AutoLinuxServerV2"]["status"] == "would_enroll"
    assert not os.path.exists(host.path("Machine"))
    assert len(requests_of(lab_ca, OURS)) == before

    rc, out = host.run()
    assert rc == 0, out
    r = results(out)
    assert r["Machine"]["status"] == "issued" and r["Machine"]["action"] == "enroll", r["Machine"]
    assert r["AutoLinuxServerV2"]["status"] == "issued", r["AutoLinuxServerV2"]
    assert (r["AutoLinuxServer"]["action"], r["AutoLinuxServer"]["reason_code"]) == ("skip", "superseded")
    assert r["AutoLinuxServer"]["superseded_by"] == "AutoLinuxServerV2"
    assert r["AutoApproval"]["status"] == "pending" and r["AutoApproval"]["manager_approval"] is True
    pending_id = r["AutoApproval"]["request_id"]
    assert isinstance(pending_id, int) and pending_id > 0
    assert (r["AutoRASigned"]["status"], r["AutoRASigned"]["reason_code"]) == ("skipped", "ra_signatures")
    assert "enrollment agent signature" in r["AutoRASigned"]["reason"]
    assert (r["AutoDenied"]["status"], r["AutoDenied"]["reason_code"]) == ("skipped", "no_autoenroll_right")
    assert r["AutoDenied"]["reason"].startswith("denied: ACE #")
    assert r["AutoGrant"]["reason_code"] == "no_autoenroll_right"
    # the CA built the names from the computer object
    for name in ("Machine", "AutoLinuxServerV2"):
        cert = load_cert(host.path(name))
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn.lower() == comp["dns_host_name"].lower()
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert comp["dns_host_name"].lower() in [n.lower() for n in sans.get_values_for_type(x509.DNSName)]
        assert oct(os.stat(host.path(name, ".key")).st_mode & 0o777) == "0o600"
    assert host.log("run_after.log") == ["after", "after"]       # once per new certificate
    assert host.log("handler.log") == ["labhost01"]
    after_first = requests_of(lab_ca, OURS)       # Machine is shared with other tests: counted by its result
    assert len(after_first) == before + 2
    assert not requests_of(lab_ca, ("AutoDenied", "AutoRASigned"))     # never requested, by any run

    # the second run: nothing changes, no request reaches the CA (the pending one is only looked up)
    rc, out = host.run()
    assert rc == 0, out
    assert changed(out) == 0, out["stats"]
    r = results(out)
    assert (r["Machine"]["action"], r["Machine"]["status"]) == ("keep", "unchanged")
    assert r["Machine"]["request_id"] is None and r["AutoLinuxServerV2"]["request_id"] is None   # no CA contact
    assert r["AutoLinuxServerV2"]["status"] == "unchanged"
    assert (r["AutoApproval"]["action"], r["AutoApproval"]["status"]) == ("pending", "pending")
    assert r["AutoApproval"]["request_id"] == pending_id
    assert len(requests_of(lab_ca, OURS)) == len(after_first)
    assert host.log("run_after.log") == ["after", "after"]

    # approved: the next run retrieves it
    lab_ca.approve(pending_id)
    rc, out = host.run()
    assert rc == 0, out
    assert results(out)["AutoApproval"]["status"] == "issued"
    assert load_cert(host.path("AutoApproval"))


def test_renewal_keeps_the_key_unless_a_new_key_is_asked(lab, ansible, tmp_path):
    """A renewal window longer than the certificate's life (renew_before in autoenroll_templates) renews at once."""
    host = Host(lab, ansible, tmp_path)
    host.write(autoenroll_include=["AutoLinuxServerV2"], autoenroll_templates={})
    rc, out = host.run()
    assert rc == 0 and results(out)["AutoLinuxServerV2"]["status"] == "issued", out
    first = load_cert(host.path("AutoLinuxServerV2"))
    host.write(autoenroll_include=["AutoLinuxServerV2"],
               autoenroll_templates={"AutoLinuxServerV2": {"renew_before": 400}})
    rc, out = host.run()
    r = results(out)["AutoLinuxServerV2"]
    assert rc == 0 and (r["action"], r["reason_code"], r["status"]) == ("renew", "renew_window", "renewed"), r
    second = load_cert(host.path("AutoLinuxServerV2"))
    assert second.serial_number != first.serial_number and public(second) == public(first)   # the same key
    host.write(autoenroll_include=["AutoLinuxServerV2"], autoenroll_reuse_key=False,
               autoenroll_templates={"AutoLinuxServerV2": {"renew_before": 400}})
    rc, out = host.run()
    assert rc == 0 and results(out)["AutoLinuxServerV2"]["status"] == "renewed", out
    third = load_cert(host.path("AutoLinuxServerV2"))
    assert public(third) != public(second)                                                    # a new key


def public(cert):
    from cryptography.hazmat.primitives import serialization
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_superseding_template_replaces_the_superseded_certificate(lab, ansible, tmp_path):
    host = Host(lab, ansible, tmp_path)
    host.write(autoenroll_include=["AutoLinuxServer*"], autoenroll_exclude=["AutoLinuxServerV2"])
    rc, out = host.run()
    assert rc == 0, out
    assert results(out)["AutoLinuxServer"]["status"] == "issued"
    old = load_cert(host.path("AutoLinuxServer"))

    # V2 comes into scope: it is enrolled; the superseded certificate is kept without prune
    host.write(autoenroll_include=["AutoLinuxServer*"])
    rc, out = host.run()
    assert rc == 0, out
    r = results(out)
    assert r["AutoLinuxServerV2"]["status"] == "issued"
    assert (r["AutoLinuxServer"]["action"], r["AutoLinuxServer"]["status"]) == ("keep", "kept")
    assert "superseded by AutoLinuxServerV2" in r["AutoLinuxServer"]["reason"]
    assert load_cert(host.path("AutoLinuxServer")).serial_number == old.serial_number

    # with prune: check mode says it, then the superseded certificate and its key go
    host.write(autoenroll_include=["AutoLinuxServer*"], autoenroll_prune=True)
    r = pruned(host, "AutoLinuxServer")
    assert r["AutoLinuxServer"]["reason_code"] == "superseded"
    for kind in (".crt", ".key", ".crt.adcs.json", "-chain.crt", "-fullchain.crt"):
        assert not os.path.exists(host.path("AutoLinuxServer", kind)), kind
    assert r["AutoLinuxServerV2"]["status"] == "unchanged"
    rc, out = host.run()
    assert rc == 0 and changed(out) == 0, out["stats"]
    assert "AutoLinuxServer" not in results(out) or results(out)["AutoLinuxServer"]["status"] == "skipped"


def _template_acl(lab, grant_sid=None):
    """The AutoGrant security descriptor of the seed, with AutoEnroll granted to ``grant_sid`` when given."""
    from adcslab import seed, seeder
    template = [t for t in seed.TEMPLATES if t["cn"] == "AutoGrant"][0]
    domain_sid = lab["accounts"]["computer"]["sid"].rsplit("-", 1)[0]
    acl = list(template["acl"]) + ([("allow", "autoenroll", "sid:" + grant_sid)] if grant_sid else [])

    def resolve(principal):
        kind, value = principal.split(":", 1)
        return "%s-%s" % (domain_sid, value) if kind == "rid" else value
    return seeder.security_descriptor(acl, resolve, resolve("rid:%d" % seed.RID_ENTERPRISE_ADMINS))


def _set_acl(lab, sd):
    import ldap3
    from adcslab import seed, seeder
    conn = _admin_ldap(lab)
    try:
        conn.modify("CN=AutoGrant,%s" % seed.TEMPLATES_DN,
                    {"nTSecurityDescriptor": [(ldap3.MODIFY_REPLACE, [sd])]}, controls=seeder._sd_control())
    finally:
        conn.unbind()


def test_granting_autoenroll_enrolls_and_revoking_it_with_prune_removes(lab, ansible, tmp_path, lab_ca):
    host = Host(lab, ansible, tmp_path)
    host.write(autoenroll_include=["AutoGrant"], autoenroll_prune=True)
    rc, out = host.run()
    assert rc == 0, out
    assert results(out)["AutoGrant"]["status"] == "skipped"
    assert not os.path.exists(host.path("AutoGrant"))
    try:
        _set_acl(lab, _template_acl(lab, grant_sid=lab["accounts"]["computer"]["sid"]))
        rc, out = host.run()
        assert rc == 0, out
        r = results(out)["AutoGrant"]
        assert (r["action"], r["status"]) == ("enroll", "issued"), r
        assert load_cert(host.path("AutoGrant"))
    finally:
        _set_acl(lab, _template_acl(lab))
    assert pruned(host, "AutoGrant")["AutoGrant"]["reason_code"] == "no_autoenroll_right"
    assert not os.path.exists(host.path("AutoGrant")) and not os.path.exists(host.path("AutoGrant", ".key"))


def test_collection_playbook_runs_the_role(lab, ansible, tmp_path):
    """playbooks/autoenroll.yml (adcs.enrollment.autoenroll) for an inventory; adcs_hosts selects the hosts."""
    host = Host(lab, ansible, tmp_path)
    host.write(autoenroll_include=["Machine"], autoenroll_templates={})
    rc, out = host.ansible.playbook(PLAYBOOK, inventory=host.inventory, extra_vars={"adcs_hosts": "labhost01"},
                                    extra_env={"KRB5_CONFIG": lab["dc"]["krb5_conf"]})
    assert rc == 0, out
    assert load_cert(host.path("Machine"))
    rc, out = host.ansible.playbook(PLAYBOOK, inventory=host.inventory,
                                    extra_env={"KRB5_CONFIG": lab["dc"]["krb5_conf"]})
    assert rc == 0 and changed(out) == 0, out["stats"]


def test_bad_settings_fail_clearly(lab, ansible, tmp_path):
    host = Host(lab, ansible, tmp_path)
    host.write(autoenroll_templates={"Machine": "not a dict"})
    rc, out = host.run()
    assert rc != 0
    text = json.dumps(out)
    assert "The settings of Machine must be a dict, not str" in text and "Traceback" not in text


def test_controller_mode(lab, ansible, tmp_path):
    """autoenroll_enroll_on=controller: the plan and the enrollment run on the controller (here with the host's
    own keytab, so the CA builds the names of LABHOST01); the key stays on the host; a second run changes nothing."""
    host = Host(lab, ansible, tmp_path)
    host.write(autoenroll_include=["Machine"], autoenroll_enroll_on="controller", autoenroll_principal="LABHOST01$")
    rc, out = host.run()
    assert rc == 0, out
    assert results(out)["Machine"]["status"] == "issued"
    cert = load_cert(host.path("Machine"))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn.lower() == lab["accounts"]["computer"]["dns_host_name"].lower()
    rc, out = host.run()
    assert rc == 0 and changed(out) == 0, out["stats"]
    assert results(out)["Machine"]["status"] == "unchanged"


def test_controller_with_another_account_skips_templates_named_from_ad(lab, ansible, tmp_path):
    """A service account on the controller would get the CA to build the names of the service account: skipped."""
    host = Host(lab, ansible, tmp_path)
    enroller = lab["accounts"]["enroller"]
    host.write(autoenroll_include=["Machine"], autoenroll_enroll_on="controller",
               autoenroll_connection={"domain": lab["domain"], "domain_controller": lab["dc"]["address"],
                                      "ca_bundle": lab["ca_bundle"], "username": enroller["upn"],
                                      "password": enroller["password"]})
    rc, out = host.run()
    assert rc == 0, out
    r = results(out)["Machine"]
    assert (r["status"], r["reason_code"]) == ("skipped", "names_of_requester"), r
    assert "authenticates as another account" in r["reason"]
    assert not os.path.exists(host.path("Machine"))


def test_argument_specs_refuse_bad_values(lab, ansible, tmp_path):
    host = Host(lab, ansible, tmp_path)
    host.write(autoenroll_enroll_on="cloud", autoenroll_prune="sometimes")
    rc, out = host.run()
    assert rc != 0
    text = json.dumps(out)
    assert "autoenroll_enroll_on" in text and "host, controller" in text
    assert "autoenroll_prune" in text


def test_defaults_are_documented_in_the_argument_specs():
    import yaml
    role = os.path.join(ROOT, "roles", "autoenroll")
    with open(os.path.join(role, "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    with open(os.path.join(role, "meta", "argument_specs.yml")) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        if value is not None:
            assert options[name]["default"] == value, name
