"""The lab CA's policy over the wire with independent clients: Certipy 5.1 over DCOM (-dcom) and MS-ICPR (RPC,
dynamic endpoint through the EPM) and impacket's DCOM client, against a private lab CA server on 127.0.0.51 that
reads the shared running lab AD (templates, enrollment service, accounts, tokenGroups, DACLs) at request time.

Certipy gets -dc-ip/-ns 127.0.0.11 (the lab DC) so that it never asks a DNS server outside the machine.
"""

import os
import re
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from impacket.dcerpc.v5 import dcomrt
from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY
from impacket.uuid import uuidtup_to_bin

import wcce_helpers as H
from adcslab import seed
from adcslab.ca import errors
from adcslab.ca import extensions as ext
from adcslab.ca.directory import DirectoryConfig, LabDirectory

ADDRESS = "127.0.0.51"
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")

pytestmark = [pytest.mark.lab, pytest.mark.certipy]
if not os.path.exists(H.CERTIPY):
    pytestmark.append(pytest.mark.skip(reason="!!! Certipy tests SKIPPED: %s is missing (make venv) !!!" % H.CERTIPY))


@pytest.fixture(scope="module")
def server(lab, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab CA listens on port 135, which needs root")
    assert H.address_free(ADDRESS), "port 135 on %s is already in use" % ADDRESS
    state = str(tmp_path_factory.mktemp("policy-wire"))
    for name in ("lab.json", "accounts.json"):
        shutil.copy(os.path.join(lab["state_dir"], name), os.path.join(state, name))
    shutil.copytree(os.path.join(lab["state_dir"], "pki"), os.path.join(state, "pki"))
    proc = H.ServerProcess(state, ADDRESS).start()
    yield proc
    assert proc.stop() == 0, proc.log()
    restore_lab_cdp(lab)


def restore_lab_cdp(lab):
    """This private CA (same key as the lab CA) wrote its CRLs to the shared CDP object: put the lab CA's back."""
    enroll = os.path.join(lab["state_dir"], "ca", "CertEnroll")
    paths = [os.path.join(enroll, "LAB-CA.crl"), os.path.join(enroll, "LAB-CA+.crl")]
    if not all(os.path.exists(p) for p in paths):
        return
    crls = []
    for path in paths:
        with open(path, "rb") as handle:
            crls.append(handle.read())
    directory = LabDirectory(DirectoryConfig.discover(lab["state_dir"]))
    try:
        directory.publish_crl("LAB-CA", seed.CA_NETBIOS, crls[0], crls[1])
    finally:
        directory.close()


def account(lab, name):
    return lab["accounts"][name]


def certipy(lab, tmp_path, name, *args, stdin=None, timeout=120):
    acct = account(lab, name)
    cmd = [H.CERTIPY, "req", "-u", "%s@lab.adcs.test" % acct["username"], "-p", acct["password"],
           "-target-ip", ADDRESS, "-dc-ip", lab["dc"]["address"], "-ns", lab["dc"]["address"], "-ca", "LAB-CA",
           "-timeout", "10"] + list(args)
    kwargs = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    result = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=timeout, **kwargs)
    return result, result.stdout + result.stderr


def load_pfx(path):
    with open(path, "rb") as handle:
        key, cert, _ = pkcs12.load_key_and_certificates(handle.read(), None)
    return key, cert


def sans_of(cert):
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def request_id_of(out):
    found = re.findall(r"Request ID is (\d+)", out)
    assert found, out
    return found[-1]


def verify_chain(server, cert, tmp_path):
    result = H.openssl_verify(server.state_dir, cert.public_bytes(serialization.Encoding.DER), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- issued per template ---------------------------------------------------------------------------------------

def test_certipy_dcom_user_from_ad(server, lab, tmp_path):
    result, out = certipy(lab, tmp_path, "enroller", "-template", "User", "-dcom", "-out", "user")
    assert "Successfully requested certificate" in out, out + server.log()
    key, cert = load_pfx(tmp_path / "user.pfx")
    acct = account(lab, "enroller")
    assert cert.subject.rfc4514_string() == \
        "1.2.840.113549.1.9.1=enroller@lab.adcs.test,CN=enroller,CN=Users,DC=lab,DC=adcs,DC=test"
    names = sans_of(cert)
    assert any(isinstance(n, x509.OtherName) and n.type_id == UPN_OID and n.value[2:].decode() == acct["upn"]
               for n in names)
    assert x509.RFC822Name(acct["mail"]) in names
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    sid_ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(ext.OID_NTDS_CA_SECURITY_EXT)).value
    assert ext.parse_ntds_security_ext(sid_ext.value) == acct["sid"]
    assert 365 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 366
    verify_chain(server, cert, tmp_path)


def test_certipy_rpc_machine_as_computer_account(server, lab, tmp_path):
    result, out = certipy(lab, tmp_path, "computer", "-template", "Machine", "-dynamic-endpoint", "-out", "machine")
    assert "Successfully requested certificate" in out, out + server.log()
    _, cert = load_pfx(tmp_path / "machine.pfx")
    assert cert.subject.rfc4514_string() == "CN=labhost01.lab.adcs.test"
    assert sans_of(cert) == [x509.DNSName("labhost01.lab.adcs.test")]
    ekus = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    verify_chain(server, cert, tmp_path)


def test_certipy_webserver_supplied_subject_via_group(server, lab, tmp_path):
    result, out = certipy(lab, tmp_path, "groupmember", "-template", "WebServer", "-dcom", "-subject",
                          "CN=web.lab.adcs.test", "-dns", "web.lab.adcs.test", "-out", "web")
    assert "Successfully requested certificate" in out, out + server.log()
    _, cert = load_pfx(tmp_path / "web.pfx")
    assert cert.subject.rfc4514_string() == "CN=web.lab.adcs.test"
    assert x509.DNSName("web.lab.adcs.test") in sans_of(cert)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.SERVER_AUTH]
    assert 730 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 731


# -- refusals --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", [["-dcom"], ["-dynamic-endpoint"]], ids=["dcom", "rpc"])
def test_certipy_refusals(server, lab, tmp_path, transport):
    result, out = certipy(lab, tmp_path, "denied", "-template", "WebServer", "-subject", "CN=x", *transport)
    assert "CERTSRV_E_TEMPLATE_DENIED" in out or "0x80094012" in out, out
    assert "Successfully requested" not in out
    result, out = certipy(lab, tmp_path, "enroller", "-template", "NotATemplate", *transport)
    assert "CERTSRV_E_UNSUPPORTED_CERT_TYPE" in out or "0x80094800" in out, out
    result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServer4096", "-subject", "CN=x",
                          "-key-size", "2048", *transport)
    assert "CERTSRV_E_KEY_LENGTH" in out or "0x80094811" in out, out


def test_impacket_dcom_request_and_denial(server, lab, tmp_path):
    acct = account(lab, "enroller")
    conn = dcomrt.DCOMConnection(ADDRESS, acct["username"], acct["password"], "LAB", oxidResolver=True,
                                 authLevel=RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    try:
        iface = H.dcom_cert_iface(conn, uuidtup_to_bin(("d99e6e70-fc88-11d0-b498-00a0c90312f3", "0.0")))
        _, csr = H.make_csr("impacket.lab.adcs.test")
        resp = H.wcce_request(iface, csr, "CertificateTemplate:WebServer")
        assert resp["pdwDisposition"] == 3, H.text_of(resp["pctbDispositionMessage"])
        cert = x509.load_der_x509_certificate(H.blob_bytes(resp["pctbEncodedCert"]))
        assert cert.subject.rfc4514_string() == "CN=impacket.lab.adcs.test"
        resp = H.wcce_request(iface, csr, "CertificateTemplate:Machine")
        assert resp["pdwDisposition"] == errors.CERTSRV_E_TEMPLATE_DENIED
        assert H.text_of(resp["pctbDispositionMessage"]) == (
            "Denied by Policy Module  0x80094012, The permissions on the certificate template do not allow the "
            "current user to enroll for this type of certificate.")
    finally:
        conn.disconnect()


# -- pending -> approved / denied --------------------------------------------------------------------------------

def test_certipy_pending_approved_then_retrieved(server, lab, tmp_path):
    result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServerApproval", "-subject",
                          "CN=approve.lab.adcs.test", "-dynamic-endpoint", stdin="y\n")
    assert "pending" in out.lower(), out + server.log()
    request_id = request_id_of(out)
    approved = H.ca_cli(server.state_dir, "approve", request_id)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    result, out = certipy(lab, tmp_path, "enroller", "-retrieve", request_id, "-dynamic-endpoint", "-out", "approved")
    assert "Successfully retrieved certificate" in out, out + server.log()
    cert = x509.load_pem_x509_certificate((tmp_path / "approved.crt").read_bytes()) \
        if (tmp_path / "approved.crt").exists() else load_pfx(tmp_path / "approved.pfx")[1]
    assert cert.subject.rfc4514_string() == "CN=approve.lab.adcs.test"
    # Someone else cannot retrieve it.
    result, out = certipy(lab, tmp_path, "groupmember", "-retrieve", request_id, "-dynamic-endpoint", "-out", "x")
    assert "Successfully retrieved" not in out and ("0x80070005" in out or "ACCESS" in out.upper()), out


def test_certipy_pending_then_denied(server, lab, tmp_path):
    result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServerApproval", "-subject",
                          "CN=deny.lab.adcs.test", "-dynamic-endpoint", stdin="n\n")
    request_id = request_id_of(out)
    denied = H.ca_cli(server.state_dir, "deny", request_id)
    assert denied.returncode == 0, denied.stdout + denied.stderr
    result, out = certipy(lab, tmp_path, "enroller", "-retrieve", request_id, "-dynamic-endpoint")
    assert "CERTSRV_E_ADMIN_DENIED_REQUEST" in out or "0x80094014" in out, out


def test_impacket_icpr_pending_approved_and_denied(server, lab):
    acct = account(lab, "groupmember")
    dce = H.icpr_connect(ADDRESS, server.endpoints["icpr_port"], acct["username"], acct["password"])
    try:
        _, csr = H.make_csr("icpr-pend.lab.adcs.test")
        resp = H.icpr_request(dce, csr, "CertificateTemplate:WebServerApproval")
        assert resp["pdwDisposition"] == 5, H.text_of(resp["pctbDispositionMessage"])
        first = resp["pdwRequestId"]
        resp = H.icpr_request(dce, csr, "CertificateTemplate:WebServerApproval")
        second = resp["pdwRequestId"]
        assert resp["pdwDisposition"] == 5 and second != first
        assert H.ca_cli(server.state_dir, "approve", str(first)).returncode == 0
        assert H.ca_cli(server.state_dir, "deny", str(second)).returncode == 0
        resp = H.icpr_request(dce, b"", "", request_id=first)
        assert resp["pdwDisposition"] == 3, H.text_of(resp["pctbDispositionMessage"])
        cert = x509.load_der_x509_certificate(H.blob_bytes(resp["pctbEncodedCert"]))
        assert cert.subject.rfc4514_string() == "CN=icpr-pend.lab.adcs.test"
        resp = H.icpr_request(dce, b"", "", request_id=second)
        assert resp["pdwDisposition"] == errors.CERTSRV_E_ADMIN_DENIED_REQUEST
        assert H.text_of(resp["pctbDispositionMessage"]).startswith("Denied by ")
    finally:
        dce.disconnect()


# -- renewal ---------------------------------------------------------------------------------------------------

def test_certipy_renewal(server, lab, tmp_path):
    result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServer", "-subject",
                          "CN=renew.lab.adcs.test", "-dns", "renew.lab.adcs.test", "-dynamic-endpoint", "-out", "old")
    assert "Successfully requested certificate" in out, out
    _, old = load_pfx(tmp_path / "old.pfx")
    result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServer", "-renew", "-pfx", "old.pfx",
                          "-subject", "CN=changed.lab.adcs.test", "-dynamic-endpoint", "-out", "new")
    assert "Successfully requested certificate" in out, out + server.log()
    _, new = load_pfx(tmp_path / "new.pfx")
    # WebServer lacks CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME: as Windows, the renewal takes the request's
    # names, not the old certificate's (adcslab/ca/renewal.py).
    assert new.subject.rfc4514_string() == "CN=changed.lab.adcs.test" != old.subject.rfc4514_string()
    assert x509.DNSName("renew.lab.adcs.test") not in sans_of(new)
    # The CA took it as a renewal of the old certificate (Request.RawOldCertificate).
    from adcslab.ca import CertificationAuthority
    ca = CertificationAuthority.open(server.state_dir)
    try:
        row = ca.get_request(int(request_id_of(out)))
    finally:
        ca.close()
    assert row["old_certificate"] == old.public_bytes(serialization.Encoding.DER)
    assert row["request_type"] in ("cms", "cmc")
    assert new.serial_number != old.serial_number
    verify_chain(server, new, tmp_path)


# -- revocation and CRLs ---------------------------------------------------------------------------------------

def test_revoked_certificate_in_next_crl(server, lab, tmp_path):
    result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServer", "-subject", "CN=revoke.lab.adcs.test",
                          "-dcom", "-out", "revoke")
    assert "Successfully requested certificate" in out, out
    _, cert = load_pfx(tmp_path / "revoke.pfx")
    serial = "%x" % cert.serial_number
    revoked = H.ca_cli(server.state_dir, "revoke", serial, "--reason", "1")
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    published = H.ca_cli(server.state_dir, "publish-crl")
    assert published.returncode == 0, published.stdout + published.stderr

    enroll = os.path.join(server.state_dir, "ca", "CertEnroll")
    crl_pem = tmp_path / "base.pem"
    subprocess.run(["openssl", "crl", "-inform", "DER", "-in", os.path.join(enroll, "LAB-CA.crl"), "-out",
                    str(crl_pem)], check=True, capture_output=True)
    text = subprocess.run(["openssl", "crl", "-in", str(crl_pem), "-noout", "-text"], check=True,
                          capture_output=True, text=True).stdout
    assert serial.upper() in text.replace(":", "").upper() and "Key Compromise" in text, text
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", lab["ca_bundle"], "-CRLfile",
                             str(crl_pem), str(leaf)], capture_output=True, text=True)
    assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr
    # The same CRL is in the CDP object of the lab AD.
    directory = LabDirectory(DirectoryConfig.discover(server.state_dir))
    try:
        base_der, _ = directory.read_cdp("LAB-CA", seed.CA_NETBIOS)
    finally:
        directory.close()
    with open(os.path.join(enroll, "LAB-CA.crl"), "rb") as handle:
        assert base_der == handle.read()


# -- a changed template takes effect without restarting the CA ---------------------------------------------------

def test_changed_template_takes_effect_without_restart(server, lab, tmp_path):
    from ldap3 import MODIFY_REPLACE

    directory = LabDirectory(DirectoryConfig.discover(server.state_dir))
    dn = "CN=WebServer4096,CN=Certificate Templates,CN=Public Key Services,CN=Services," + lab["config_dn"]

    def set_min(value):
        assert directory._call(lambda conn: conn.modify(
            dn, {"msPKI-Minimal-Key-Size": [(MODIFY_REPLACE, [str(value)])]}))

    try:
        set_min(2048)
        result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServer4096", "-subject", "CN=w.lab.adcs.test",
                              "-key-size", "2048", "-dcom", "-out", "w")
        assert "Successfully requested certificate" in out, out + server.log()
    finally:
        set_min(4096)
        directory.close()
    result, out = certipy(lab, tmp_path, "enroller", "-template", "WebServer4096", "-subject", "CN=w.lab.adcs.test",
                          "-key-size", "2048", "-dcom")
    assert "0x80094811" in out or "CERTSRV_E_KEY_LENGTH" in out, out
