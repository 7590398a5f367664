"""The lab CA's names, all derived from one DNS label (seed.CA_HOST_SHORT) the way Windows derives them: the NetBIOS
computer name (upper case, first 15 characters), the computer account, its SPNs, keytab, CDP container, AIA file,
DNS record; and what the lab CA announces (DCOM string bindings, NTLM target info, Kerberos service names).

No running lab needed: seeding is checked against a recording directory, the CA service is built without listening.
The run under another name (``ADCS_LAB_CA_HOST=pki-issuing-ca01``) is a subprocess, so this process keeps its seed."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace as NS

import pytest

from adcslab import seed
from adcslab.ad import LabError
from adcslab.lab import Lab

LAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = "pki-issuing-ca01"


@pytest.mark.parametrize("label, netbios", [
    ("ca1", "CA1"),
    (LONG, "PKI-ISSUING-CA0"),                        # the example: 16 characters, the 16th dropped
    ("corporate-mail-server", "CORPORATE-MAIL-"),     # Microsoft's example (COMPUTER_NAME_FORMAT, ComputerNameNetBIOS)
    ("exactly15chars1", "EXACTLY15CHARS1"),
    ("web.lab.adcs.test", "WEB"),                     # a DNS name: its host label
])
def test_netbios_name_is_the_host_label_upper_case_at_most_15_characters(label, netbios):
    assert seed.netbios_name(label) == netbios


def test_names_derive_from_the_host_label():
    assert seed.CA_NETBIOS == seed.netbios_name(seed.CA_HOST_SHORT)
    assert seed.CA_HOST == "%s.%s" % (seed.CA_HOST_SHORT, seed.DNS_DOMAIN)
    assert seed.CA_ACCOUNT == seed.CA_NETBIOS + "$"
    assert seed.CA_KEYTAB == seed.CA_HOST_SHORT + ".keytab"
    assert seed.CA_CDP_CONTAINER == "CN=%s,CN=CDP,%s" % (seed.CA_NETBIOS, seed.PKS_DN)
    assert seed.CA_AIA_FILE == "%s_%s.crt" % (seed.CA_HOST, seed.CA_NAME)
    assert seed.CA_DNS_RECORD == "DC=" + seed.CA_HOST_SHORT
    ca = [a for a in seed.ACCOUNTS if a["sam"] == seed.CA_ACCOUNT]
    assert len(ca) == 1 and ca[0]["host"] == seed.CA_HOST_SHORT and "Cert Publishers" in ca[0]["groups"]


def _seed_under(label):
    code = ("import json; from adcslab import seed; print(json.dumps({k: getattr(seed, k) for k in ("
            "'CA_HOST_SHORT', 'CA_NETBIOS', 'CA_HOST', 'CA_ACCOUNT', 'CA_KEYTAB', 'CA_CDP_CONTAINER', 'CA_AIA_FILE',"
            "'CA_DNS_RECORD')} | {'accounts': [a['sam'] for a in seed.ACCOUNTS]}))")
    env = dict(os.environ, ADCS_LAB_CA_HOST=label, PYTHONPATH=LAB_DIR)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_env_override_renames_the_whole_lab_ca():
    names = _seed_under(LONG)
    assert names == {
        "CA_HOST_SHORT": LONG, "CA_NETBIOS": "PKI-ISSUING-CA0", "CA_HOST": LONG + ".lab.adcs.test",
        "CA_ACCOUNT": "PKI-ISSUING-CA0$", "CA_KEYTAB": LONG + ".keytab",
        "CA_CDP_CONTAINER": "CN=PKI-ISSUING-CA0,CN=CDP,CN=Public Key Services,CN=Services,CN=Configuration,"
                            "DC=lab,DC=adcs,DC=test",
        "CA_AIA_FILE": LONG + ".lab.adcs.test_LAB-CA.crt", "CA_DNS_RECORD": "DC=" + LONG,
        "accounts": ["enroller", "denied", "groupmember", "LABHOST01$", "PKI-ISSUING-CA0$"]
        + names["accounts"][5:],                        # entries other checkouts append
    }


@pytest.mark.parametrize("label", ["ca1.other", "-ca", "ca_1", "x" * 64])
def test_env_override_must_be_one_dns_label(label):
    env = dict(os.environ, ADCS_LAB_CA_HOST=label, PYTHONPATH=LAB_DIR)
    out = subprocess.run([sys.executable, "-c", "import adcslab.seed"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert ("ValueError: the lab CA host name must be one DNS label (letters, digits, inner hyphens), not %r"
            % label) in out.stderr


# ---- what the seeder writes into AD ----------------------------------------------------------------------------
class RecordingSeeder:
    """adcslab.seeder.Seeder with a directory that records adds/upserts instead of talking LDAP."""

    def __new__(cls, pki=None):
        from adcslab.seeder import Seeder

        class _Seeder(Seeder):
            def __init__(self):
                super().__init__(NS(state_dir="/nonexistent"), pki)
                self.written = {}
                self.conn = NS(add=lambda dn, attributes=None, controls=None: self.written.__setitem__(dn, attributes),
                               modify=lambda *a, **k: None)

            def _exists(self, dn):
                return dn in self.written

            def _upsert(self, dn, attrs, controls=None):
                self.written[dn] = attrs
                return "added"

            def _read_sid(self, dn):
                return "S-1-5-21-1-2-3-%d" % (1000 + len(self.written))

            def _add_to_builtin_groups(self):
                pass

        return _Seeder()


def test_seeded_computer_account_has_netbios_cn_sam_and_spns(monkeypatch):
    monkeypatch.setattr(seed, "ACCOUNTS", [
        {"sam": seed.netbios_name(LONG) + "$", "password": "x", "kind": "computer", "host": LONG, "groups": [],
         "spn_services": ["HOST", "RPCSS"], "description": "a CA host with a long name"}])
    seeder = RecordingSeeder()
    seeder.seed_accounts()
    dn = "CN=PKI-ISSUING-CA0,CN=Computers," + seed.BASE_DN
    attrs = seeder.written[dn]
    assert attrs["sAMAccountName"] == "PKI-ISSUING-CA0$"
    assert attrs["dNSHostName"] == LONG + ".lab.adcs.test"
    # as Windows registers them for a computer: HOST/<fqdn> and HOST/<NetBIOS name> (never the untruncated label)
    assert attrs["servicePrincipalName"] == ["HOST/%s.lab.adcs.test" % LONG, "HOST/PKI-ISSUING-CA0",
                                             "RPCSS/%s.lab.adcs.test" % LONG, "RPCSS/PKI-ISSUING-CA0"]
    assert seeder.keytab_path(seed.ACCOUNTS[0]) == "/nonexistent/%s.keytab" % LONG


def test_seeded_ca_objects_and_dns_record_use_the_constants(monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    seeder = RecordingSeeder(pki=NS(ca_cert=cert, root_cert=cert))
    seeder.seed_ca_objects()
    seeder.seed_dns()
    assert seeder.written[seed.CA_CDP_CONTAINER] == {"objectClass": ["top", "container"]}
    service = seeder.written["CN=%s,%s" % (seed.CA_NAME, seed.ENROLLMENT_SERVICES_DN)]
    assert service["dNSHostName"] == seed.CA_HOST
    zone = "DC=%s,CN=MicrosoftDNS,DC=DomainDnsZones,%s" % (seed.DNS_DOMAIN, seed.BASE_DN)
    assert "%s,%s" % (seed.CA_DNS_RECORD, zone) in seeder.written


# ---- what the lab CA announces -----------------------------------------------------------------------------------
def test_ca_service_identity_uses_the_truncated_netbios_name():
    from adcslab.wcce.service import LabCaService

    ca = NS(dns_name=LONG + ".lab.adcs.test", name="LAB-CA")     # no server_short_name: derived from the DNS name
    svc = LabCaService(ca, accounts=None, address="127.0.0.98")
    assert svc.exporter.netbios_name == "PKI-ISSUING-CA0"
    assert svc.exporter.principal == "LAB\\PKI-ISSUING-CA0$"
    assert svc.server_options["netbios_computer"] == "PKI-ISSUING-CA0"
    assert svc.server_options["dns_computer"] == LONG + ".lab.adcs.test"
    svc.exporter.port = 49800
    bindings = [b for _tower, b in svc.exporter.exporter_bindings("127.0.0.98")]
    assert bindings[0] == "PKI-ISSUING-CA0[49800]" and bindings[-1] == "127.0.0.98[49800]"
    assert not any("." in b.split("[")[0] and not b[0].isdigit() for b in bindings)   # never a DNS name
    assert [b for _tower, b in svc.exporter.resolver_bindings("127.0.0.98")][0] == "PKI-ISSUING-CA0"


def test_ca_service_identity_follows_the_authority_short_name(tmp_path):
    from adcslab.ca import CertificationAuthority
    from adcslab.wcce.service import LabCaService

    authority = CertificationAuthority.open(str(tmp_path / "ca"))
    try:
        assert authority.server_short_name == seed.CA_NETBIOS and authority.dns_name == seed.CA_HOST
        svc = LabCaService(authority, accounts=None, address="127.0.0.98")
        assert svc.exporter.netbios_name == seed.CA_NETBIOS
        assert svc.exporter.principal == "%s\\%s" % (seed.NETBIOS_DOMAIN, seed.CA_ACCOUNT)
    finally:
        authority.close()


def test_kerberos_service_names_are_fqdn_and_netbios():
    from adcslab.rpc import AccountStore, ServerIdentity
    from adcslab.rpc.kerberos import KerberosProvider, ServiceKeys

    ident = ServerIdentity("LAB", "lab.adcs.test", "PKI-ISSUING-CA0", LONG + ".lab.adcs.test", AccountStore())
    prov = KerberosProvider(ident, keys=ServiceKeys({18: [(2, b"k" * 32)]}, "PKI-ISSUING-CA0$", "LAB.ADCS.TEST"))
    for service in ("HOST", "RPCSS"):
        assert "%s/%s.LAB.ADCS.TEST" % (service, LONG.upper()) in prov.service_names
        assert "%s/PKI-ISSUING-CA0" % service in prov.service_names
        assert "%s/PKI-ISSUING-CA01" % service not in prov.service_names   # Windows has no SPN for it
    assert "PKI-ISSUING-CA0$" in prov.service_names


def test_rpc_server_default_identity_is_the_lab_ca():
    from adcslab.rpc import RpcServer

    srv = RpcServer("127.0.0.98", 0, [], None, security_providers={})
    assert srv.identity.netbios_computer == seed.CA_NETBIOS and srv.identity.dns_computer == seed.CA_HOST


# ---- lab.json and a state made for another name --------------------------------------------------------------------
def _state(tmp_path, hostname=None):
    records = [{"sam": sam, "password": "p", "nt_hash": "00", "upn": sam + "@lab.adcs.test", "sid": "S-1-5-21-9",
                "dn": "CN=x", "group_sids": [], "keytab": str(tmp_path / (host + ".keytab")) if host else None}
               for sam, host in (("Administrator", None), ("enroller", None), ("denied", None),
                                 ("groupmember", None), ("LABHOST01$", "labhost01"),
                                 (seed.CA_ACCOUNT, seed.CA_HOST_SHORT))]
    (tmp_path / "accounts.json").write_text(json.dumps(records))
    if hostname:
        (tmp_path / "lab.json").write_text(json.dumps({"ca": {"hostname": hostname}}))
    return Lab(str(tmp_path))


def test_lab_json_carries_the_ca_names(tmp_path):
    pki = NS(ca_cert_path="ca.pem", root_cert_path="root.pem", bundle_path="bundle.pem")
    ca = _state(tmp_path).details(pki)["ca"]
    assert ca["hostname"] == seed.CA_HOST and ca["netbios_name"] == seed.CA_NETBIOS
    assert ca["computer_account"] == seed.CA_ACCOUNT
    assert ca["keytab"] == str(tmp_path / seed.CA_KEYTAB)
    assert ca["cdp_container"] == seed.CA_CDP_CONTAINER and ca["aia_file"] == seed.CA_AIA_FILE
    assert ca["service_principal"] == "HOST/" + seed.CA_HOST
    assert ca["service_principals"] == ["HOST/" + seed.CA_HOST, "HOST/" + seed.CA_NETBIOS,
                                        "RPCSS/" + seed.CA_HOST, "RPCSS/" + seed.CA_NETBIOS]


def test_a_state_made_for_another_ca_host_is_refused(tmp_path):
    lab = _state(tmp_path, hostname="old-ca.lab.adcs.test")
    for action in (lab.up, lab.seed_templates):
        with pytest.raises(LabError) as err:
            action()
        assert str(err.value) == (
            "the lab state in %s was made for the CA host old-ca.lab.adcs.test, this checkout names it %s: stop the "
            "lab (`make lab-down`), remove that directory and run `make lab-up`" % (tmp_path, seed.CA_HOST))
    assert not (tmp_path / "log").exists() and not (tmp_path / "pki").exists()   # refused before touching anything


# ---- over the wire: a lab CA process under the long name --------------------------------------------------------
WIRE_ADDRESS = "127.0.0.98"


@pytest.fixture(scope="module")
def long_named_ca(tmp_path_factory):
    import wcce_helpers as H

    if os.geteuid() != 0:
        pytest.skip("the lab CA listens on port 135, which needs root (the lab runs as root)")
    assert H.address_free(WIRE_ADDRESS), "port 135 on %s is already in use" % WIRE_ADDRESS
    state = str(tmp_path_factory.mktemp("long-name-ca"))
    H.write_accounts(state, {"enroller": "Enr0ll-me!"})
    old = os.environ.get("ADCS_LAB_CA_HOST")
    os.environ["ADCS_LAB_CA_HOST"] = LONG           # the CA process derives every name from it
    try:
        proc = H.ServerProcess(state, WIRE_ADDRESS).start()
    finally:
        if old is None:
            del os.environ["ADCS_LAB_CA_HOST"]
        else:
            os.environ["ADCS_LAB_CA_HOST"] = old
    yield proc
    assert proc.stop() == 0, proc.log()


def test_long_named_ca_announces_the_truncated_netbios_name_and_addresses(long_named_ca):
    from impacket.dcerpc.v5 import dcomrt, transport
    from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY
    import wcce_helpers as H

    fqdn = LONG + ".lab.adcs.test"
    dcom = dcomrt.DCOMConnection(fqdn, "enroller", "Enr0ll-me!", "LAB", remoteHost=WIRE_ADDRESS,
                                 authLevel=RPC_C_AUTHN_LEVEL_PKT_PRIVACY, oxidResolver=False)
    try:
        iface = dcom.CoCreateInstanceEx(bytes.fromhex("746e9ed988fcd011b49800a0c90312f3"),
                                        bytes.fromhex("706e9ed988fcd011b49800a0c90312f3"))
        port = long_named_ca.endpoints["object_exporter_port"]
        bindings = [b["aNetworkAddr"].rstrip("\x00") for b in iface.get_cinstance().get_string_bindings()
                    if b["wTowerId"] == 7]
        assert bindings[0] == "PKI-ISSUING-CA0[%d]" % port and bindings[-1] == "%s[%d]" % (WIRE_ADDRESS, port)
        assert not any(LONG.upper() in b.upper() or "LAB.ADCS.TEST" in b.upper() for b in bindings)
        # impacket looks for the target's host label among the bindings (impacket #602) and finds none
        with pytest.raises(Exception, match="Can't find a valid stringBinding to connect"):
            iface.RemRelease()
    finally:
        H.disconnect_dcom(dcom)
    dce = transport.DCERPCTransportFactory("ncacn_ip_tcp:%s[135]" % WIRE_ADDRESS).get_dce_rpc()
    dce.connect()
    try:
        alive = [b["aNetworkAddr"].rstrip("\x00") for b in dcomrt.IObjectExporter(dce).ServerAlive2()]
    finally:
        dce.disconnect()
    assert alive[0] == "PKI-ISSUING-CA0" and WIRE_ADDRESS in alive


def test_certipy_enrolls_from_a_long_named_ca_over_dcom(long_named_ca, tmp_path):
    """Certipy 5.1 takes the object exporter's port, not a binding matched by name: it keeps enrolling."""
    import wcce_helpers as H

    if not os.path.exists(H.CERTIPY):
        pytest.skip("no .venv-certipy")
    proc = subprocess.run([H.CERTIPY, "req", "-u", "enroller@lab.adcs.test", "-p", "Enr0ll-me!", "-target",
                           LONG + ".lab.adcs.test", "-target-ip", WIRE_ADDRESS, "-ca", "LAB-CA", "-template", "User",
                           "-dcom", "-out", str(tmp_path / "out")], capture_output=True, text=True, timeout=180,
                          cwd=str(tmp_path))
    out = proc.stdout + proc.stderr
    assert "Successfully requested certificate" in out, out
