"""The lab AD holds what an AD CS forest holds: templates, their rights, the CA objects, accounts, DNS and a KDC."""

import os
import re
import ssl
import uuid

import pytest

pytestmark = pytest.mark.lab

ENROLL = "0e10c968-78fb-11d2-90d4-00c04f79dc55"
AUTOENROLL = "a05b8cc2-17bc-4802-a710-e7c15ab866a2"


def _connect(lab, account="admin"):
    import ldap3
    creds = lab["accounts"][account]
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=lab["ca_bundle"], valid_names=[lab["dc"]["tls_name"]])
    server = ldap3.Server(lab["dc"]["address"], port=lab["dc"]["ldaps_port"], use_ssl=True, tls=tls)
    return ldap3.Connection(server, user=creds["upn"], password=creds["password"], auto_bind=True)


def _template(conn, lab, name, attrs=("*",), controls=None):
    conn.search(lab["templates_dn"], "(cn=%s)" % name, attributes=list(attrs), controls=controls)
    assert len(conn.entries) == 1, name
    return conn.entries[0]


def test_every_account_binds_over_ldaps(lab):
    for name in ("admin", "enroller", "denied", "groupmember"):
        conn = _connect(lab, name)
        assert conn.bound
        conn.unbind()


def test_wrong_password_is_refused(lab):
    import ldap3
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=lab["ca_bundle"], valid_names=[lab["dc"]["tls_name"]])
    server = ldap3.Server(lab["dc"]["address"], port=lab["dc"]["ldaps_port"], use_ssl=True, tls=tls)
    conn = ldap3.Connection(server, user=lab["accounts"]["enroller"]["upn"], password="wrong")
    assert not conn.bind()
    assert conn.result["result"] == 49  # invalidCredentials


def test_simple_bind_in_clear_text_is_refused(lab):
    """As a Windows Server 2025 DC (LDAP signing required by default): a simple bind over plain LDAP is refused
    with strongerAuthRequired even with the right password (``ldap server require strong auth =
    allow_sasl_over_tls``: any bind over TLS, only signed or sealed SASL binds in clear)."""
    import ldap3
    server = ldap3.Server(lab["dc"]["address"], port=lab["dc"]["ldap_port"])
    conn = ldap3.Connection(server, user=lab["accounts"]["enroller"]["upn"],
                            password=lab["accounts"]["enroller"]["password"])
    assert not conn.bind()
    assert conn.result["result"] == 8  # strongerAuthRequired


def test_templates_carry_the_full_attribute_set(lab):
    conn = _connect(lab)
    required = ["flags", "revision", "pKIDefaultKeySpec", "pKIKeyUsage", "pKIMaxIssuingDepth", "pKICriticalExtensions",
                "pKIExpirationPeriod", "pKIOverlapPeriod", "pKIExtendedKeyUsage", "pKIDefaultCSPs",
                "msPKI-RA-Signature", "msPKI-Enrollment-Flag", "msPKI-Private-Key-Flag", "msPKI-Certificate-Name-Flag",
                "msPKI-Minimal-Key-Size", "msPKI-Template-Schema-Version", "msPKI-Template-Minor-Revision",
                "msPKI-Cert-Template-OID", "displayName"]
    for name in lab["templates"]:
        entry = _template(conn, lab, name)
        for attribute in required:
            assert entry[attribute].raw_values, "%s lacks %s" % (name, attribute)
    web = _template(conn, lab, "WebServer")
    # Two years, as a negative FILETIME interval; 6 weeks of overlap.
    assert web["pKIExpirationPeriod"].raw_values[0] == bytes.fromhex("0080720e5dc2fdff")
    assert web["pKIOverlapPeriod"].raw_values[0] == bytes.fromhex("0080a60affdeffff")
    assert int(web["msPKI-Certificate-Name-Flag"].value) == 1
    approval = _template(conn, lab, "WebServerApproval")
    assert int(approval["msPKI-Enrollment-Flag"].value) & 0x2
    assert int(_template(conn, lab, "WebServer4096")["msPKI-Minimal-Key-Size"].value) == 4096
    user = _template(conn, lab, "User")
    assert int(user["msPKI-Certificate-Name-Flag"].raw_values[0]) == -1509949440  # 0xA6000000 as INTEGER
    # Every template's OID is registered under CN=OID.
    conn.search("CN=OID,CN=Public Key Services,CN=Services," + lab["config_dn"], "(objectClass=msPKI-Enterprise-Oid)",
                attributes=["msPKI-Cert-Template-OID"])
    registered = {str(e["msPKI-Cert-Template-OID"].value) for e in conn.entries}
    for name in lab["templates"]:
        assert str(_template(conn, lab, name)["msPKI-Cert-Template-OID"].value) in registered


def _aces(conn, lab, name):
    from impacket.ldap import ldaptypes
    from ldap3.protocol.microsoft import security_descriptor_control
    entry = _template(conn, lab, name, ["nTSecurityDescriptor"], security_descriptor_control(sdflags=0x04))
    sd = ldaptypes.SR_SECURITY_DESCRIPTOR(data=entry["nTSecurityDescriptor"].raw_values[0])
    out = []
    for ace in sd["Dacl"].aces:
        body = ace["Ace"]
        object_type = None
        if ace["AceType"] in (0x05, 0x06) and body["Flags"] & 1:
            object_type = str(uuid.UUID(bytes_le=bytes(body["ObjectType"])))
        out.append((ace["AceType"], object_type, body["Sid"].formatCanonical()))
    return out


def test_enroll_rights_are_granted_and_denied_as_seeded(lab):
    conn = _connect(lab)
    domain_sid = lab["accounts"]["enroller"]["sid"].rsplit("-", 1)[0]
    web = _aces(conn, lab, "WebServer")
    assert (0x06, ENROLL, lab["accounts"]["denied"]["sid"]) in web  # explicit deny
    assert (0x05, ENROLL, lab["accounts"]["enroller"]["sid"]) in web
    group_sid = [s for s in lab["accounts"]["groupmember"]["group_sids"] if s.startswith(domain_sid)
                 and not s.endswith("-513")][0]
    assert (0x05, ENROLL, group_sid) in web
    machine = _aces(conn, lab, "Machine")
    assert (0x05, ENROLL, domain_sid + "-515") in machine
    assert (0x05, AUTOENROLL, domain_sid + "-515") in machine
    user = _aces(conn, lab, "User")
    assert (0x05, ENROLL, domain_sid + "-513") in user
    assert (0x05, AUTOENROLL, domain_sid + "-513") in user


def test_group_membership_shows_in_token_groups(lab):
    member = lab["accounts"]["groupmember"]
    domain_sid = member["sid"].rsplit("-", 1)[0]
    assert domain_sid + "-513" in member["group_sids"]
    assert len([s for s in member["group_sids"] if s.startswith(domain_sid)]) == 2
    assert lab["accounts"]["computer"]["group_sids"] == [domain_sid + "-515"]


def test_enrollment_service_and_ca_certificates(lab):
    from cryptography import x509
    conn = _connect(lab)
    conn.search(lab["enrollment_services_dn"], "(objectClass=pKIEnrollmentService)",
                attributes=["cn", "dNSHostName", "certificateTemplates", "cACertificate", "cACertificateDN"])
    assert len(conn.entries) == 1
    svc = conn.entries[0]
    assert str(svc["cn"].value) == lab["ca"]["name"]
    assert str(svc["dNSHostName"].value) == lab["ca"]["hostname"]
    assert sorted(svc["certificateTemplates"].values) == sorted(lab["published_templates"])
    cert = x509.load_der_x509_certificate(svc["cACertificate"].raw_values[0])
    with open(lab["ca"]["cert"], "rb") as handle:
        assert cert == x509.load_pem_x509_certificate(handle.read())
    base = "CN=Public Key Services,CN=Services," + lab["config_dn"]
    for dn in ("CN=LAB Root CA,CN=Certification Authorities," + base, "CN=LAB-CA,CN=AIA," + base,
               "CN=NTAuthCertificates," + base):
        assert conn.search(dn, "(objectClass=certificationAuthority)", search_scope="BASE",
                           attributes=["cACertificate"]), dn


def test_dns_serves_the_dc_and_ca_records(lab):
    import dns.resolver
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab["dc"]["address"]]
    srv = resolver.resolve("_ldap._tcp.dc._msdcs." + lab["domain"], "SRV")
    assert {str(r.target).rstrip(".").lower() for r in srv} == {lab["dc"]["hostname"]}
    assert [r.address for r in resolver.resolve(lab["ca"]["hostname"], "A")] == [lab["ca"]["address"]]
    assert [r.address for r in resolver.resolve(lab["dc"]["hostname"], "A")] == [lab["dc"]["address"]]
    kdc = resolver.resolve("_kerberos._tcp." + lab["domain"], "SRV")
    assert all(r.port == 88 for r in kdc)


def test_kdc_issues_a_tgt_and_the_computer_keytab_exists(lab):
    from impacket.krb5.kerberosv5 import getKerberosTGT
    from impacket.krb5.types import Principal
    from impacket.krb5 import constants
    enroller = lab["accounts"]["enroller"]
    principal = Principal(enroller["username"], type=constants.PrincipalNameType.NT_PRINCIPAL.value)
    tgt, _cipher, _old, session_key = getKerberosTGT(principal, enroller["password"], lab["realm"], "", "", "",
                                                     kdcHost=lab["dc"]["address"])
    assert tgt and session_key
    keytab = lab["accounts"]["computer"]["keytab"]
    assert os.stat(keytab).st_mode & 0o777 == 0o600
    from impacket.krb5.keytab import Keytab
    names = {"/".join(bytes(c["data"]).decode() for c in e.main_part["principal"].components)
             for e in Keytab.loadFile(keytab).entries}
    assert "LABHOST01$" in names


def test_lab_json_keys_are_documented(lab):
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as handle:
        readme = handle.read()
    documented = set(re.findall(r"`([a-z_][a-z0-9_.]*)`", readme))

    def keys(prefix, value):
        for key, sub in value.items():
            path = prefix + key
            yield path
            if isinstance(sub, dict) and prefix.count(".") < 1 and key != "accounts":
                yield from keys(path + ".", sub)

    missing = [k for k in keys("", lab) if k not in documented]
    assert not missing, "lab.json keys missing from tests/lab/README.md: %s" % missing
