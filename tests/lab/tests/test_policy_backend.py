"""The lab CA's policy module against the running lab AD, in process (no wire): templates, the enrollment service,
accounts and tokenGroups read over LDAPS at request time; Enroll rights from the template DACLs; subject/SAN by
msPKI-Certificate-Name-Flag; validity, key usage, EKUs, application policies, minimum key size; renewal checks;
CRLs published to the CDP object in AD.

The CA runs on a private copy of the lab state (lab.json, accounts.json, pki/): same CA key and the same lab AD,
its own request database. Tests that change the directory restore it.
"""

import datetime
import json
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adcslab import seed
from adcslab.ca import CertificationAuthority, Requester
from adcslab.ca import errors
from adcslab.ca import extensions as ext
from adcslab.ca import testing as T
from adcslab.ca.directory import DirectoryConfig, LabDirectory

pytestmark = pytest.mark.lab

UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
DENIED_MESSAGE = ("Denied by Policy Module  0x80094012, The permissions on the certificate template do not allow the "
                  "current user to enroll for this type of certificate.")


def copy_state(lab, dst):
    src = lab["state_dir"]
    os.makedirs(dst, exist_ok=True)
    for name in ("lab.json", "accounts.json"):
        shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    shutil.copytree(os.path.join(src, "pki"), os.path.join(dst, "pki"), dirs_exist_ok=True)
    return dst


@pytest.fixture(scope="module")
def state(lab, tmp_path_factory):
    return copy_state(lab, str(tmp_path_factory.mktemp("policy-state")))


@pytest.fixture(scope="module")
def ca(lab, state):
    authority = CertificationAuthority.open(state)
    assert authority.template_source_kind == "ldap"
    yield authority
    authority.close()
    from test_policy_wire import restore_lab_cdp
    restore_lab_cdp(lab)  # this CA shares the lab CA's key and CDP object: put the lab CA's CRLs back


@pytest.fixture(scope="module")
def ad(state):
    directory = LabDirectory(DirectoryConfig.discover(state))
    yield directory
    directory.close()


@pytest.fixture(scope="module")
def key():
    return T.rsa_key()


def who(lab, name):
    account = lab["accounts"][name]
    # The wire layer fills sid/group_sids from accounts.json; the CA reads tokenGroups from AD itself.
    return Requester(user=account["username"], domain="LAB", sid=account["sid"], group_sids=[])


def cert_of(response):
    assert response.disposition == 3, "0x%08x %s" % (response.disposition, response.disposition_message)
    return x509.load_der_x509_certificate(response.cert_der)


def submit(ca, lab, name, template, csr):
    return ca.submit(0, "CertificateTemplate:%s" % template, csr, who(lab, name))


def sans_of(cert):
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def ext_value(cert, oid):
    for extension in cert.extensions:
        if extension.oid.dotted_string == oid:
            return extension.value.value
    return None


# -- issuance by template --------------------------------------------------------------------------------------

def test_user_subject_and_sans_come_from_ad(ca, lab, key):
    cert = cert_of(submit(ca, lab, "enroller", "User", T.make_csr(key, "ignored-subject")))
    account = lab["accounts"]["enroller"]
    # SUBJECT_REQUIRE_DIRECTORY_PATH | SUBJECT_REQUIRE_EMAIL: the account's DN, then E=mail.
    assert cert.subject.rfc4514_string() == \
        "1.2.840.113549.1.9.1=enroller@lab.adcs.test,CN=enroller,CN=Users,DC=lab,DC=adcs,DC=test"
    assert cert.subject.rdns[0].rfc4514_string() == "DC=test"
    names = sans_of(cert)
    upn = [n for n in names if isinstance(n, x509.OtherName) and n.type_id == UPN_OID]
    assert upn and upn[0].value[2:].decode() == account["upn"]
    assert x509.RFC822Name(account["mail"]) in names
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.ObjectIdentifier(seed.EKU_EFS), ExtendedKeyUsageOID.EMAIL_PROTECTION,
                         ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext.parse_ntds_security_ext(ext_value(cert, ext.OID_NTDS_CA_SECURITY_EXT)) == account["sid"]
    assert ext_value(cert, ext.OID_TEMPLATE_NAME) == "User".encode("utf-16-be").join([b"\x1e\x08", b""])
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 365 <= days <= 366  # pKIExpirationPeriod 1 year (+ the clock-skew back-dating)


def test_machine_subject_is_dns_host_name(ca, lab, key):
    cert = cert_of(submit(ca, lab, "computer", "Machine", T.make_csr(key, "whatever")))
    assert cert.subject.rfc4514_string() == "CN=labhost01.lab.adcs.test"
    assert sans_of(cert) == [x509.DNSName("labhost01.lab.adcs.test")]
    assert ext.parse_ntds_security_ext(ext_value(cert, ext.OID_NTDS_CA_SECURITY_EXT)) == \
        lab["accounts"]["computer"]["sid"]


def test_webserver_enrollee_supplies_subject(ca, lab, key):
    csr = T.make_csr(key, "www.lab.adcs.test", dns_names=["www.lab.adcs.test", "alt.lab.adcs.test"])
    cert = cert_of(submit(ca, lab, "enroller", "WebServer", csr))
    assert cert.subject.rfc4514_string() == "CN=www.lab.adcs.test"
    assert sans_of(cert) == [x509.DNSName("www.lab.adcs.test"), x509.DNSName("alt.lab.adcs.test")]
    assert ext_value(cert, ext.OID_NTDS_CA_SECURITY_EXT) is None  # offline template: no SID extension
    assert 730 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 731
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name
    assert [n.value for n in cdp] == [
        "ldap:///CN=LAB-CA,%s?certificateRevocationList?base?objectClass=cRLDistributionPoint" % seed.CA_CDP_CONTAINER,
        "http://%s/CertEnroll/LAB-CA.crl" % seed.CA_HOST]
    aia = [d.access_location.value for d in cert.extensions.get_extension_for_class(
        x509.AuthorityInformationAccess).value]
    assert aia == ["ldap:///CN=LAB-CA,CN=AIA,CN=Public Key Services,CN=Services,CN=Configuration,DC=lab,DC=adcs,"
                   "DC=test?cACertificate?base?objectClass=certificationAuthority",
                   "http://%s/CertEnroll/%s" % (seed.CA_HOST, seed.CA_AIA_FILE)]
    serial = cert.serial_number.to_bytes(19, "big")[::-1]
    request_id = int.from_bytes(serial[0:4], "little")
    assert request_id == int.from_bytes(serial[14:18], "little") and request_id > 0


def test_v2_template_info_and_application_policies(ca, lab, key):
    cert = cert_of(submit(ca, lab, "groupmember", "ShortLived", T.make_csr(key, "short.lab.adcs.test")))
    template = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(ext.OID_TEMPLATE_INFO)).value
    assert template.template_id.dotted_string.startswith(seed.FOREST_OID)
    assert (template.major_version, template.minor_version) == (100, 2)
    assert ext_value(cert, ext.OID_APPLICATION_POLICIES) is not None
    assert 2 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 2.01


def test_template_named_by_request_extensions(ca, lab, key):
    v1 = ca.submit(0, "", T.make_csr(key, "v1.lab.adcs.test", template="WebServer"), who(lab, "enroller"))
    assert cert_of(v1).subject.rfc4514_string() == "CN=v1.lab.adcs.test"
    oid = seed.FOREST_OID + ".7719301.2284467"  # ShortLived
    v2 = ca.submit(0, "", T.make_csr(key, "v2.lab.adcs.test", template_info=(oid, 100, 2)), who(lab, "enroller"))
    assert cert_of(v2).extensions.get_extension_for_oid(
        x509.ObjectIdentifier(ext.OID_TEMPLATE_INFO)).value.template_id.dotted_string == oid
    none = ca.submit(0, "", T.make_csr(key, "none"), who(lab, "enroller"))
    assert none.disposition == errors.CERTSRV_E_NO_CERT_TYPE


# -- refusals --------------------------------------------------------------------------------------------------

def test_rights_from_template_dacl(ca, lab, key):
    csr = T.make_csr(key, "rights.lab.adcs.test")
    for name, template in (("denied", "WebServer"), ("denied", "User"), ("denied", "EFS"), ("enroller", "Machine"),
                           ("computer", "WebServer")):
        response = submit(ca, lab, name, template, csr)
        assert response.disposition == errors.CERTSRV_E_TEMPLATE_DENIED, (name, template)
        assert response.disposition_message == DENIED_MESSAGE
    for name, template in (("groupmember", "WebServer"), ("enroller", "WebServer"), ("admin", "WebServer"),
                           ("admin", "WebServer4096"), ("computer", "ShortLived")):
        if template == "WebServer4096":
            csr = T.make_csr(T.rsa_key(4096), "rights.lab.adcs.test")
        assert submit(ca, lab, name, template, csr).disposition == 3, (name, template)


def test_unsupported_and_unpublished_templates(ca, lab, ad, key):
    response = submit(ca, lab, "enroller", "NoSuchTemplate", T.make_csr(key, "x"))
    assert response.disposition == errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE
    # A template that exists in AD but is not in the enrollment service's certificateTemplates.
    template = dict(seed.TEMPLATES[0], cn="PolicyTestUnpublished", oid_suffix="1.99.4242")
    dn = "CN=%s,%s" % (template["cn"], seed.TEMPLATES_DN)
    attrs = {k: v for k, v in seed.template_attributes(template).items() if v != []}
    ad._call(lambda conn: conn.delete(dn))
    assert ad._call(lambda conn: conn.add(dn, attributes=attrs)), "could not create the test template"
    try:
        assert ca.templates.get("PolicyTestUnpublished") is not None
        response = submit(ca, lab, "admin", "PolicyTestUnpublished", T.make_csr(key, "x"))
        assert response.disposition == errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE, response.disposition_message
        names = ca.get_property(0x1D, 0, 4)[1].split("\n")
        assert "PolicyTestUnpublished" not in names and "WebServer" in names
    finally:
        ad._call(lambda conn: conn.delete(dn))


def test_key_too_short_and_missing_directory_attributes(ca, lab, key):
    response = submit(ca, lab, "enroller", "WebServer4096", T.make_csr(key, "big.lab.adcs.test"))
    assert response.disposition == errors.CERTSRV_E_KEY_LENGTH
    assert response.disposition_message.startswith("Denied by Policy Module  0x80094811")
    # Administrator has no mail attribute: the User template needs it for the subject and the SAN.
    response = submit(ca, lab, "admin", "User", T.make_csr(key, "admin"))
    assert response.disposition == errors.CERTSRV_E_SUBJECT_EMAIL_REQUIRED
    # ... and no dNSHostName: Administrator may enroll on Machine but the subject cannot be built.
    response = submit(ca, lab, "admin", "Machine", T.make_csr(key, "admin"))
    assert response.disposition == errors.CERTSRV_E_SUBJECT_DNS_REQUIRED


def test_changed_template_takes_effect_without_restart(ca, lab, ad, key):
    dn = "CN=WebServer4096," + seed.TEMPLATES_DN
    csr = T.make_csr(key, "changed.lab.adcs.test")
    assert submit(ca, lab, "enroller", "WebServer4096", csr).disposition == errors.CERTSRV_E_KEY_LENGTH

    def set_min(value):
        from ldap3 import MODIFY_REPLACE
        assert ad._call(lambda conn: conn.modify(dn, {"msPKI-Minimal-Key-Size": [(MODIFY_REPLACE, [str(value)])]}))

    set_min(2048)
    try:
        assert submit(ca, lab, "enroller", "WebServer4096", csr).disposition == 3
    finally:
        set_min(4096)
    assert submit(ca, lab, "enroller", "WebServer4096", csr).disposition == errors.CERTSRV_E_KEY_LENGTH


def test_san_attribute_only_with_editf(ca, lab, key):
    attrs = "CertificateTemplate:WebServer\nSAN:dns=evil.lab.adcs.test&upn=Administrator@lab.adcs.test"
    csr = T.make_csr(key, "san.lab.adcs.test", dns_names=["san.lab.adcs.test"])
    cert = cert_of(ca.submit(0, attrs, csr, who(lab, "enroller")))
    assert sans_of(cert) == [x509.DNSName("san.lab.adcs.test")]
    ca.config["editf_attributesubjectaltname2"] = True
    try:
        cert = cert_of(ca.submit(0, attrs, csr, who(lab, "enroller")))
        assert x509.DNSName("evil.lab.adcs.test") in sans_of(cert)
    finally:
        ca.config["editf_attributesubjectaltname2"] = False


def test_san_attribute_names_are_the_ms_wcce_ones(ca, lab, key):
    """MS-WCCE 3.2.1.4.2.1.2: dns, email, upn, dn, url, ipaddress, guid; ``ip=``/``uri=``/``rfc822name=`` make
    no name (a client using them gets a certificate without those names, as from Windows)."""
    csr = T.make_csr(key, "names.lab.adcs.test", dns_names=["names.lab.adcs.test"])
    ca.config["editf_attributesubjectaltname2"] = True
    try:
        wrong = "CertificateTemplate:WebServer\nSAN:ip=192.0.2.7&uri=https://x.lab.adcs.test/&rfc822name=a@b.test"
        assert sans_of(cert_of(ca.submit(0, wrong, csr, who(lab, "enroller")))) == [
            x509.DNSName("names.lab.adcs.test")]
        right = "CertificateTemplate:WebServer\nSAN:ipaddress=192.0.2.7&url=https://x.lab.adcs.test/&email=a@b.test"
        got = sans_of(cert_of(ca.submit(0, right, csr, who(lab, "enroller"))))
        import ipaddress
        assert x509.IPAddress(ipaddress.ip_address("192.0.2.7")) in got
        assert x509.UniformResourceIdentifier("https://x.lab.adcs.test/") in got
        assert x509.RFC822Name("a@b.test") in got
    finally:
        ca.config["editf_attributesubjectaltname2"] = False


# -- pending, retrieval by someone else --------------------------------------------------------------------------

def test_pending_request_retrieved_only_by_its_requester(ca, lab, key):
    response = submit(ca, lab, "enroller", "WebServerApproval", T.make_csr(key, "pend.lab.adcs.test"))
    assert response.disposition == 5 and response.request_id
    ca.approve(response.request_id)
    other = ca.retrieve(response.request_id, who(lab, "groupmember"))
    assert other.disposition == errors.E_ACCESSDENIED and other.cert_der is None
    mine = ca.retrieve(response.request_id, who(lab, "enroller"))
    assert cert_of(mine).subject.rfc4514_string() == "CN=pend.lab.adcs.test"
    admin = lab["accounts"]["admin"]
    administrator = Requester(user="Administrator", domain="LAB", sid=admin["sid"], group_sids=admin["group_sids"])
    assert cert_of(ca.retrieve(response.request_id, administrator)).serial_number == \
        cert_of(mine).serial_number
    assert ca.retrieve(987654, who(lab, "enroller")).disposition == errors.CERTSRV_E_PROPERTY_EMPTY


# -- renewal ---------------------------------------------------------------------------------------------------

def _requests_module():
    import types
    from ansible_collections.adcs.enrollment.plugins.module_utils import _csr, _renewal_request
    return types.SimpleNamespace(build_csr=_csr.build_csr, build_renewal_request=_renewal_request.build_renewal_request)


def test_renewal_with_collection_builder(ca, lab, key):
    R = _requests_module()
    old = cert_of(submit(ca, lab, "enroller", "WebServer",
                         T.make_csr(key, "renew.lab.adcs.test", dns_names=["renew.lab.adcs.test"])))
    new_key = T.rsa_key()
    csr = R.build_csr(new_key, subject="CN=something-else", renewal_certificate=old)
    cms = R.build_renewal_request(csr, old, key)
    # No template named: the renewed certificate's template extension names it.
    renewed = cert_of(ca.submit(0x300, "", cms, who(lab, "enroller")))
    # WebServer lacks CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME: as Windows, the names come from the request.
    assert renewed.subject.rfc4514_string() == "CN=something-else"
    assert sans_of(renewed) == []
    assert renewed.public_key().public_numbers() == new_key.public_key().public_numbers()
    assert ext_value(renewed, ext.OID_TEMPLATE_NAME) == ext_value(old, ext.OID_TEMPLATE_NAME)
    assert renewed.serial_number != old.serial_number
    assert ca.get_request(ca.list_requests()[-1]["request_id"])["old_certificate"] == \
        old.public_bytes(serialization.Encoding.DER)

    # A bad signature over the renewal request.
    tampered = bytearray(cms)
    tampered[-1] ^= 0x01
    response = ca.submit(0x300, "", bytes(tampered), who(lab, "enroller"))
    assert response.disposition == errors.NTE_BAD_SIGNATURE, hex(response.disposition)


def test_renewal_of_foreign_or_revoked_certificate_is_refused(ca, lab, key):
    R = _requests_module()
    foreign_key = T.rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LAB-CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    foreign = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "f")]))
               .issuer_name(name).public_key(foreign_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
               .sign(foreign_key, hashes.SHA256()))
    csr = R.build_csr(T.rsa_key(), subject="CN=f", renewal_certificate=foreign)
    response = ca.submit(0x300, "CertificateTemplate:WebServer", R.build_renewal_request(csr, foreign, foreign_key),
                         who(lab, "enroller"))
    # as Windows: a certificate the CA cannot chain is CERT_E_CHAINING (the client then asks anew)
    assert response.disposition == errors.CERT_E_CHAINING, response.disposition_message

    old = cert_of(submit(ca, lab, "enroller", "WebServer", T.make_csr(key, "revoked-renew.lab.adcs.test")))
    ca.revoke(old.serial_number, 1)
    csr = R.build_csr(T.rsa_key(), subject="CN=x", renewal_certificate=old)
    response = ca.submit(0x300, "", R.build_renewal_request(csr, old, key), who(lab, "enroller"))
    assert response.disposition == errors.CRYPT_E_REVOKED, response.disposition_message

    # Signed by the old key, but the renewal attribute names another certificate of this CA.
    other = cert_of(submit(ca, lab, "enroller", "WebServer", T.make_csr(T.rsa_key(), "other.lab.adcs.test")))
    mine = cert_of(submit(ca, lab, "enroller", "WebServer", T.make_csr(key, "mine.lab.adcs.test")))
    csr = R.build_csr(T.rsa_key(), subject="CN=x", renewal_certificate=other)
    cms = T.make_cms(csr, key, signer_cert=mine)
    response = ca.submit(0x300, "", cms, who(lab, "enroller"))
    assert response.disposition == errors.CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE, response.disposition_message


def _old_and_renewal(ca, lab, key, template, new_key, subject="CN=renamed.lab.adcs.test", user="enroller"):
    """An issued certificate of ``template`` for ``key`` and a renewal request for it with ``new_key``."""
    R = _requests_module()
    old = cert_of(submit(ca, lab, user, template, T.make_csr(key, "%s.lab.adcs.test" % template.lower(),
                                                               dns_names=["%s.lab.adcs.test" % template.lower()])))
    csr = R.build_csr(new_key, subject=subject, sans=["dns:renamed.lab.adcs.test"], renewal_certificate=old)
    return old, R.build_renewal_request(csr, old, key)


def test_renewal_keeps_the_old_names_only_with_the_old_cert_supplies_flag(ca, lab, key):
    """CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME (0x8, MS-CRTD 2.28): WebServerSameKey renews with the old
    certificate's subject and SANs whatever the request says; WebServer (no flag) takes the request's; User (names
    from AD, no flag) takes them from the account, not from the old certificate."""
    old, cms = _old_and_renewal(ca, lab, key, "WebServerSameKey", key)
    renewed = cert_of(ca.submit(0x300, "", cms, who(lab, "enroller")))
    assert renewed.subject == old.subject and sans_of(renewed) == sans_of(old)
    old, cms = _old_and_renewal(ca, lab, key, "WebServer", T.rsa_key())
    renewed = cert_of(ca.submit(0x300, "", cms, who(lab, "enroller")))
    assert renewed.subject.rfc4514_string() == "CN=renamed.lab.adcs.test"
    assert sans_of(renewed) == [x509.DNSName("renamed.lab.adcs.test")] != sans_of(old)
    R = _requests_module()
    user_key = T.rsa_key()
    old = cert_of(submit(ca, lab, "enroller", "User", T.make_csr(user_key, "")))
    csr = R.build_csr(T.rsa_key(), subject="CN=someone-else", sans=["dns:x.lab.adcs.test"], renewal_certificate=old)
    renewed = cert_of(ca.submit(0x300, "", R.build_renewal_request(csr, old, user_key), who(lab, "enroller")))
    assert renewed.subject == old.subject and "someone-else" not in renewed.subject.rfc4514_string()
    assert x509.DNSName("x.lab.adcs.test") not in sans_of(renewed)


def test_same_key_renewal_template_refuses_a_new_key(ca, lab, key):
    """CT_FLAG_REQUIRE_SAME_KEY_RENEWAL (msPKI-Private-Key-Flag 0x80, MS-WCCE 3.2.2.6.2.1.4.5.7): a renewal with a
    new key is denied with CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY; with the old key it is issued; a new PKCS#10 request
    with a new key is not a renewal and is issued."""
    old, cms = _old_and_renewal(ca, lab, key, "WebServerSameKey", T.rsa_key())
    response = ca.submit(0x300, "", cms, who(lab, "enroller"))
    assert response.disposition == errors.CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY == 0x80094816
    assert response.disposition_message == (
        "Denied by Policy Module  0x80094816, The key used in a renewal request does not match one of the "
        "certificates being renewed.")
    assert ca.get_request(response.request_id)["disposition"] == 31   # denied, kept in the database
    old, cms = _old_and_renewal(ca, lab, key, "WebServerSameKey", key)
    renewed = cert_of(ca.submit(0x300, "", cms, who(lab, "enroller")))
    assert renewed.public_key().public_numbers() == old.public_key().public_numbers()
    cert_of(submit(ca, lab, "enroller", "WebServerSameKey", T.make_csr(T.rsa_key(), "fresh.lab.adcs.test")))
    # WebServer does not require the same key: a new key renews.
    old, cms = _old_and_renewal(ca, lab, key, "WebServer", T.rsa_key())
    cert_of(ca.submit(0x300, "", cms, who(lab, "enroller")))


# -- CRLs in the CDP object ------------------------------------------------------------------------------------

def test_crls_published_to_cdp_object(ca, lab, ad, key, tmp_path):
    cert = cert_of(submit(ca, lab, "enroller", "WebServer", T.make_csr(key, "crl.lab.adcs.test")))
    ca.revoke(cert.serial_number, 1)
    base_der, delta_der = ad.read_cdp("LAB-CA", seed.CA_NETBIOS)
    assert delta_der == ca.delta_crl()
    delta = x509.load_der_x509_crl(delta_der)
    assert delta.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    ca.publish_crls()
    base_der, delta_der = ad.read_cdp("LAB-CA", seed.CA_NETBIOS)
    assert base_der == ca.base_crl() and delta_der == ca.delta_crl()
    base = x509.load_der_x509_crl(base_der)
    assert base.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    # openssl: the base CRL from AD lists the serial and makes the certificate fail -crl_check.
    crl_pem = tmp_path / "ad-base.pem"
    crl_pem.write_bytes(base.public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(["openssl", "crl", "-in", str(crl_pem), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert ("%X" % cert.serial_number) in text.replace(":", "").upper()
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.root_cert.public_bytes(serialization.Encoding.PEM)
                       + ca.ca_cert.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(bundle), "-CRLfile", str(crl_pem),
                             str(leaf)], capture_output=True, text=True)
    assert verify.returncode != 0 and "revoked" in (verify.stdout + verify.stderr)


def test_unreachable_directory_refuses_cleanly(lab, tmp_path, key):
    from adcslab.ca.templates import LdapTemplateSource

    config = DirectoryConfig.discover(lab["state_dir"])
    config.address, config.port = "127.0.0.59", 6360  # nothing listens there
    directory = LabDirectory(config, timeout=2)
    authority = CertificationAuthority.open(copy_state(lab, str(tmp_path / "st")),
                                            template_source=LdapTemplateSource(directory))
    try:
        response = authority.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "x"), who(lab, "enroller"))
        assert response.disposition == errors.ERROR_DS_SERVER_DOWN
        assert response.disposition_message.startswith("Denied by Policy Module  0x8007203a")
    finally:
        authority.close()


def test_open_without_directory_is_builtin(tmp_path):
    authority = CertificationAuthority.open(str(tmp_path))
    try:
        assert authority.template_source_kind == "builtin" and authority.ad is None
    finally:
        authority.close()
    with open(os.path.join(str(tmp_path), "lab.json"), "w") as handle:
        json.dump({"accounts": {}}, handle)  # no admin credentials: still no directory
    authority = CertificationAuthority.open(str(tmp_path))
    try:
        assert authority.template_source_kind == "builtin"
    finally:
        authority.close()
    with pytest.raises(errors.CAError):
        CertificationAuthority.open(str(tmp_path), template_source="ldap")


def test_ra_signature_and_issuance_policies_without_directory(tmp_path, key):
    import dataclasses

    from adcslab.ca import BuiltinTemplateSource
    from adcslab.ca.templates import BUILTIN_TEMPLATES

    web = BUILTIN_TEMPLATES[2]
    agent = dataclasses.replace(web, name="NeedsAgent", oid="1.3.6.1.4.1.311.21.8.9.1", ra_signature=1)
    policy = dataclasses.replace(web, name="WithPolicy", oid="1.3.6.1.4.1.311.21.8.9.2",
                                 issuance_policies=["1.3.6.1.4.1.311.21.8.9.100"])
    authority = CertificationAuthority.open(str(tmp_path), template_source=BuiltinTemplateSource([agent, policy]))
    enroller = Requester(user="enroller", domain="LAB", sid="S-1-5-21-1-2-3-1103")
    try:
        response = authority.submit(0, "CertificateTemplate:NeedsAgent", T.make_csr(key, "a"), enroller)
        assert response.disposition == errors.CERTSRV_E_SIGNATURE_COUNT
        cert = cert_of(authority.submit(0, "CertificateTemplate:WithPolicy", T.make_csr(key, "p"), enroller))
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in policies] == ["1.3.6.1.4.1.311.21.8.9.100"]
    finally:
        authority.close()


def test_first_start_uses_the_seeded_directory_without_lab_json(lab, tmp_path, key):
    """`lab up` starts the CA before it writes lab.json: a seeded state dir (seed-version + accounts.json) is
    enough for the CA to use the lab AD."""
    state = str(tmp_path / "first")
    os.makedirs(state)
    shutil.copy(os.path.join(lab["state_dir"], "accounts.json"), os.path.join(state, "accounts.json"))
    shutil.copytree(os.path.join(lab["state_dir"], "pki"), os.path.join(state, "pki"))
    authority = CertificationAuthority.open(state)
    try:
        assert authority.template_source_kind == "builtin"
    finally:
        authority.close()
    with open(os.path.join(state, "seed-version"), "w") as handle:
        handle.write("1\n")
    authority = CertificationAuthority.open(state)
    try:
        assert authority.template_source_kind == "ldap"
        response = authority.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "x"), who(lab, "denied"))
        assert response.disposition == errors.CERTSRV_E_TEMPLATE_DENIED
    finally:
        authority.close()
    from test_policy_wire import restore_lab_cdp
    restore_lab_cdp(lab)


# -- the CA's own security (Request Certificates) ----------------------------------------------------------------

def test_ca_security_denies_request_certificates(lab, tmp_path):
    """A principal the CA security denies Request Certificates (CA_ACCESS_ENROLL 0x200, MS-CSRA 3.1.1.7) gets
    CERTSRV_E_ENROLL_DENIED for the call, before the policy module: no request row, whatever the template says
    (groupmember may enroll on WebServer); the default security (seed.CA_SECURITY: Authenticated Users) admits the
    others. The security lives in the CA configuration, as in Windows' registry."""
    state = copy_state(lab, str(tmp_path / "ca-security"))
    os.makedirs(os.path.join(state, "ca"), exist_ok=True)
    with open(os.path.join(state, "ca", "config.json"), "w") as handle:
        json.dump({"ca_security": [list(e) for e in seed.CA_SECURITY] + [["deny", "enroll", "name:groupmember"]]},
                  handle)
    authority = CertificationAuthority.open(state)
    try:
        before = len(authority.list_requests())
        response = submit(authority, lab, "groupmember", "WebServer", T.make_csr(T.rsa_key(), "gm.lab.adcs.test"))
        assert (response.disposition, response.call_status, response.request_id) == (0x80094011, 0x80094011, 0)
        assert response.disposition_message == (
            "The permissions on this certification authority do not allow the current user to enroll for "
            "certificates. 0x80094011 (-2146877423 CERTSRV_E_ENROLL_DENIED)")
        assert len(authority.list_requests()) == before, "refused before a request row exists"
        # the CA's read calls (GetCACert, GetCAProperty, GetCAPropertyInfo) check the same permission
        assert authority.ca_access_status(who(lab, "groupmember")) == 0x80094011
        assert authority.ca_access_status(who(lab, "enroller")) == 0
        cert_of(submit(authority, lab, "enroller", "WebServer", T.make_csr(T.rsa_key(), "ok.lab.adcs.test")))
        # Kept in canonical order (deny first, as in the AD copy): a deny for a group of the token wins over an
        # allow for the account itself.
        authority.config["ca_security"] = [["allow", "enroll", "name:enroller"], ["deny", "enroll", "sid:S-1-5-11"]]
        response = submit(authority, lab, "enroller", "WebServer", T.make_csr(T.rsa_key(), "x.lab.adcs.test"))
        assert response.disposition == 0x80094011
    finally:
        authority.close()
    from test_policy_wire import restore_lab_cdp
    restore_lab_cdp(lab)


def test_enrollment_service_carries_the_ca_security(ad, lab):
    """The seeder mirrors the CA security into the enrollment service object (Enroll extended right for
    Authenticated Users), as Windows keeps them in sync; clients read it there."""
    from adcslab.ca import access
    control = [("1.2.840.113556.1.4.801", True, bytes([0x30, 0x03, 0x02, 0x01, 0x04]))]   # SD flags: DACL
    sd = ad._search("CN=LAB-CA," + seed.ENROLLMENT_SERVICES_DN, "(objectClass=*)", ["nTSecurityDescriptor"],
                    scope="BASE", controls=control)
    raw = ad._raw(sd[0], "nTSecurityDescriptor")[0]
    assert access.check_extended_right(raw, [lab["accounts"]["enroller"]["sid"]] + access.WELL_KNOWN_TOKEN_SIDS)
    assert not access.check_extended_right(raw, ["S-1-5-7"])   # anonymous: not in the token of a network logon
