"""Tests of the lab CA backend (adcslab.ca): issuance from PKCS#10/CMS/CMC, policy errors, the request database,
pending/approve/deny/revoke, CRLs and CA properties. No network."""

import datetime
import hashlib
import os
import struct
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char
from pyasn1_modules import rfc5652, rfc6402

from adcslab import seed
from adcslab.ca import CAError, CertificationAuthority, Requester, parse_attributes
from adcslab.ca import errors
from adcslab.ca import extensions as ext
from adcslab.ca import testing as T
from adcslab.ca.db import DB_DISP_DENIED, DB_DISP_ERROR, DB_DISP_ISSUED, DB_DISP_PENDING

ENROLLER = Requester(user="enroller", domain="LAB", sid="S-1-5-21-1111-2222-3333-1104",
                     group_sids=["S-1-5-21-1111-2222-3333-513"], authn_type=10, transport="dcom")
MACHINE = Requester(user="LABHOST01$", domain="LAB", sid="S-1-5-21-1111-2222-3333-1105", group_sids=[],
                    authn_type=10, transport="icpr")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    authority = CertificationAuthority.open(str(tmp_path_factory.mktemp("castate")))
    yield authority
    authority.close()


@pytest.fixture(scope="module")
def key():
    return T.rsa_key(2048)


@pytest.fixture(scope="module")
def other_key():
    return T.rsa_key(2048)


def _cert(response):
    assert response.cert_der, response.disposition_message
    return x509.load_der_x509_certificate(response.cert_der)


def _verify_issued_by(cert, ca_cert):
    ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                cert.signature_hash_algorithm)


def _ext(cert, oid):
    return cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))


# ---- issuance -------------------------------------------------------------------------------------------------

def test_ca_identity(ca):
    assert ca.name == "LAB-CA"
    assert ca.dns_name == seed.CA_HOST
    assert ca.server_short_name == seed.CA_NETBIOS  # the CDP container's CN=%2: the NetBIOS name


def test_pkcs10_issues_ad_cs_shaped_certificate(ca, key):
    csr = T.make_csr(key, "web1.lab.adcs.test", dns_names=["web1.lab.adcs.test", "www.lab.adcs.test"])
    response = ca.submit(0x100, "CertificateTemplate:WebServer", csr, ENROLLER)
    assert response.disposition == 3
    assert response.status_hresult == 0
    assert response.disposition_message == "Issued"
    assert response.request_id > 0
    cert = _cert(response)
    _verify_issued_by(cert, ca.ca_cert)
    assert cert.issuer == ca.ca_cert.subject
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "web1.lab.adcs.test"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["web1.lab.adcs.test", "www.lab.adcs.test"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [oid.dotted_string for oid in eku] == ["1.3.6.1.5.5.7.3.1"]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    # V1 template: template-name extension, BMPString "WebServer"
    name, _ = der_decoder.decode(_ext(cert, ext.OID_TEMPLATE_NAME).value.value, asn1Spec=char.BMPString())
    assert str(name) == "WebServer"
    # enrollee-supplied subject ("offline" template): no SID extension
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, ext.OID_NTDS_CA_SECURITY_EXT)
    ca_ski = ca.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == \
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    urls = [name.value for point in cdp for name in point.full_name]
    assert "http://%s/CertEnroll/LAB-CA.crl" % seed.CA_HOST in urls
    assert any(url.startswith("ldap:///CN=LAB-CA,%s?" % seed.CA_CDP_CONTAINER) for url in urls)
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    aia_urls = [item.access_location.value for item in aia]
    assert "http://%s/CertEnroll/%s" % (seed.CA_HOST, seed.CA_AIA_FILE) in aia_urls
    assert cert.not_valid_after_utc <= ca.ca_cert.not_valid_after_utc
    assert 700 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 731


def test_serial_number_layout(ca, key):
    """MS-WCCE 3.2.1.4.2.1.4.6.2: 19 bytes; request ID little-endian in bytes 0-3 and 14-17."""
    response = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "serial"), ENROLLER)
    serial = _cert(response).serial_number
    raw = serial.to_bytes(19, "little")
    assert len("%x" % serial) == 38
    assert struct.unpack("<I", raw[0:4])[0] == response.request_id
    assert struct.unpack("<I", raw[14:18])[0] == response.request_id
    assert raw[4:6] == b"\x00\x00"
    assert 0x10 <= raw[18] <= 0x7F
    assert ca.get_request(response.request_id)["serial"] == "%x" % serial


@pytest.mark.parametrize("fmt,flags", [("pkcs10", 0), ("cms", 0), ("cmc", 0), ("pkcs10", 0x100),
                                       ("cms", 0x300), ("cmc", 0x400)])
def test_formats_and_sniffing(ca, key, fmt, flags):
    csr = T.make_csr(key, "fmt-%s-%x" % (fmt, flags))
    blob = {"pkcs10": lambda: csr, "cms": lambda: T.make_cms(csr, key), "cmc": lambda: T.make_cmc(csr, key)}[fmt]()
    response = ca.submit(flags, "CertificateTemplate:WebServer", blob, ENROLLER)
    assert response.disposition == 3, response.disposition_message
    assert _cert(response).subject.rfc4514_string() == "CN=fmt-%s-%x" % (fmt, flags)
    assert ca.get_request(response.request_id)["request_type"] == fmt


def test_base64_request_is_accepted(ca, key):
    csr = x509.load_der_x509_csr(T.make_csr(key, "b64"))
    pem = csr.public_bytes(serialization.Encoding.PEM)
    response = ca.submit(0, "CertificateTemplate:WebServer", pem, ENROLLER)
    assert response.disposition == 3, response.disposition_message


def test_cms_signed_with_certificate(ca, key, other_key):
    """Renewal-style CMS: PKCS#10 for a new key, signed by the old certificate's key (issuerAndSerialNumber)."""
    old = _cert(ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "old"), ENROLLER))
    cms = T.make_cms(T.make_csr(other_key, "renewed"), key, signer_cert=old)
    response = ca.submit(0x300, "CertificateTemplate:WebServer", cms, ENROLLER)
    assert response.disposition == 3, response.disposition_message
    assert _cert(response).public_key().public_numbers() == other_key.public_key().public_numbers()


def test_null_signature_only_inside_cms_and_cmc(ca, key):
    null_csr = T.null_signed_csr(key)
    bare = ca.submit(0, "CertificateTemplate:WebServer", null_csr, ENROLLER)
    assert bare.disposition == errors.NTE_BAD_SIGNATURE
    wrapped = ca.submit(0x400, "CertificateTemplate:WebServer", T.make_cmc(null_csr, key), ENROLLER)
    assert wrapped.disposition == 3, wrapped.disposition_message


def test_cmc_full_response(ca, key):
    response = ca.submit(0x400 | 0x40000, "CertificateTemplate:WebServer",
                         T.make_cmc(T.make_csr(key, "full"), key, body_part_id=7), ENROLLER)
    assert response.disposition == 3
    info, _ = der_decoder.decode(response.full_response, asn1Spec=rfc5652.ContentInfo())
    assert info["contentType"] == rfc5652.id_signedData
    signed, _ = der_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
    assert signed["encapContentInfo"]["eContentType"] == rfc6402.id_cct_PKIResponse
    content = bytes(signed["encapContentInfo"]["eContent"])
    pki_response, _ = der_decoder.decode(content, asn1Spec=rfc6402.PKIResponse())
    control = pki_response["controlSequence"][0]
    assert control["attrType"] == rfc6402.id_cmc_statusInfo
    status, _ = der_decoder.decode(bytes(control["attrValues"][0]), asn1Spec=rfc6402.CMCStatusInfo())
    assert int(status["cMCStatus"]) == 0
    assert [int(x) for x in status["bodyList"]] == [7]
    certs = [x509.load_der_x509_certificate(der_encoder.encode(c["certificate"])) for c in signed["certificates"]]
    assert x509.load_der_x509_certificate(response.cert_der) in certs  # SET OF: DER order, not chain order
    assert ca.ca_cert in certs
    # the CA's signature over the signed attributes, and the message digest of the content
    signer = signed["signerInfos"][0]
    attrs = bytearray(der_encoder.encode(signer["signedAttrs"]))
    attrs[0] = 0x31
    ca.ca_cert.public_key().verify(bytes(signer["signature"]), bytes(attrs), padding.PKCS1v15(), hashes.SHA256())
    digests = [bytes(der_decoder.decode(bytes(a["attrValues"][0]))[0]) for a in signer["signedAttrs"]
               if a["attrType"] == rfc5652.id_messageDigest]
    assert digests == [hashlib.sha256(content).digest()]
    # without the flag, full_response is the PKCS#7 chain
    plain = ca.submit(0x400, "CertificateTemplate:WebServer", T.make_cmc(T.make_csr(key, "plain"), key), ENROLLER)
    assert plain.full_response == plain.chain_pkcs7


def test_user_template_builds_subject_from_requester(ca, key):
    response = ca.submit(0, "CertificateTemplate:User", T.make_csr(key, "ignored"), ENROLLER)
    assert response.disposition == 3, response.disposition_message
    cert = _cert(response)
    assert cert.subject.rfc4514_string() == "CN=enroller"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    upns = [name for name in sans if isinstance(name, x509.OtherName) and
            name.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"]
    assert len(upns) == 1 and upns[0].value[2:] == b"enroller@lab.adcs.test"
    assert ext.parse_ntds_security_ext(_ext(cert, ext.OID_NTDS_CA_SECURITY_EXT).value.value) == ENROLLER.sid
    eku = [oid.dotted_string for oid in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    assert "1.3.6.1.5.5.7.3.2" in eku


def test_machine_template_uses_dns_name(ca, key):
    response = ca.submit(0x100000, "CertificateTemplate:Machine", T.make_csr(key, "whatever"), MACHINE)
    cert = _cert(response)
    assert cert.subject.rfc4514_string() == "CN=labhost01.lab.adcs.test"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["labhost01.lab.adcs.test"]
    assert ext.parse_ntds_security_ext(_ext(cert, ext.OID_NTDS_CA_SECURITY_EXT).value.value) == MACHINE.sid


def test_v2_template_gets_template_info_extension(ca, key):
    response = ca.submit(0, "CertificateTemplate:WebServer4096", T.make_csr(T.rsa_key(4096), "big"), ENROLLER)
    cert = _cert(response)
    template = ca.templates.get("WebServer4096")
    info = _ext(cert, ext.OID_TEMPLATE_INFO).value  # cryptography decodes 1.3.6.1.4.1.311.21.7 itself
    assert info.template_id.dotted_string == template.oid
    assert (info.major_version, info.minor_version) == (template.major_version, template.minor_version)
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, ext.OID_TEMPLATE_NAME)
    _ext(cert, ext.OID_APPLICATION_POLICIES)


def test_template_from_name_value_pair_and_extension(ca, key):
    pair_csr = T.make_csr_with_pairs(key, "nvp", [("CertificateTemplate", "WebServer")])
    assert ca.submit(0, "", pair_csr, ENROLLER).disposition == 3
    ext_csr = T.make_csr(key, "extname", template="WebServer")
    response = ca.submit(0, "", ext_csr, ENROLLER)
    assert response.disposition == 3
    assert ca.get_request(response.request_id)["template"] == "WebServer"
    v2 = ca.templates.get("WebServerApproval")
    info_csr = T.make_csr(key, "extinfo", template_info=(v2.oid, v2.major_version, v2.minor_version))
    response = ca.submit(0, "", info_csr, ENROLLER)
    assert response.disposition == 5, response.disposition_message
    assert ca.get_request(response.request_id)["template"] == "WebServerApproval"


def test_san_attribute_needs_editf_attributesubjectaltname2(ca, key):
    attributes = "CertificateTemplate:WebServer\r\nSAN:upn=administrator@lab.adcs.test&dns=evil.lab.adcs.test"
    csr = T.make_csr(key, "sanattr", dns_names=["sanattr.lab.adcs.test"])
    ignored = _cert(ca.submit(0, attributes, csr, ENROLLER))
    sans = ignored.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["sanattr.lab.adcs.test"]
    assert ca.config["editf_attributesubjectaltname2"] is False
    ca.config["editf_attributesubjectaltname2"] = True
    try:
        honoured = _cert(ca.submit(0, attributes, csr, ENROLLER))
    finally:
        ca.config["editf_attributesubjectaltname2"] = False
    sans = honoured.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["evil.lab.adcs.test"]
    upn = [n for n in sans if isinstance(n, x509.OtherName)][0]
    assert upn.value[2:] == b"administrator@lab.adcs.test"


def test_attributes_are_recorded(ca, key):
    attributes = "CertificateTemplate:WebServer\r\nccm:client.lab.adcs.test\nrmd:LABHOST01"
    response = ca.submit(0, attributes, T.make_csr(key, "attrs"), ENROLLER)
    row = ca.get_request(response.request_id)
    assert row["attributes"] == attributes
    assert row["requester_name"] == "LAB\\enroller" and row["requester_sid"] == ENROLLER.sid
    assert parse_attributes(attributes) == [("CertificateTemplate", "WebServer"), ("ccm", "client.lab.adcs.test"),
                                            ("rmd", "LABHOST01")]


# ---- errors ---------------------------------------------------------------------------------------------------

def _error_cases(key, other_key):
    csr = T.make_csr(key, "err")
    cms = T.make_cms(csr, key)
    return {
        "bad_pkcs10_signature": (0, "CertificateTemplate:WebServer", T.tamper_signature(csr),
                                 errors.NTE_BAD_SIGNATURE, DB_DISP_ERROR),
        "bad_cms_signature": (0x300, "CertificateTemplate:WebServer", T.make_cms(csr, key, tamper=True),
                              errors.NTE_BAD_SIGNATURE, DB_DISP_ERROR),
        "bad_cmc_signature": (0x400, "CertificateTemplate:WebServer", T.make_cmc(csr, key, tamper=True),
                              errors.NTE_BAD_SIGNATURE, DB_DISP_ERROR),
        "cms_signer_unknown": (0x300, "CertificateTemplate:WebServer", T.make_cms(csr, other_key),
                               errors.CRYPT_E_NO_SIGNER, DB_DISP_ERROR),
        "garbage": (0, "CertificateTemplate:WebServer", b"\x04\x03abc", errors.CRYPT_E_ASN1_BADTAG, DB_DISP_ERROR),
        "not_base64": (0, "CertificateTemplate:WebServer", b"hello world!", errors.CRYPT_E_ASN1_BADTAG,
                       DB_DISP_ERROR),
        "truncated": (0, "CertificateTemplate:WebServer", csr[:40], errors.CRYPT_E_ASN1_EOD, DB_DISP_ERROR),
        "pkcs10_flagged_as_cms": (0x300, "CertificateTemplate:WebServer", csr, errors.CRYPT_E_ASN1_BADTAG,
                                  DB_DISP_ERROR),
        "cms_flagged_as_pkcs10": (0x100, "CertificateTemplate:WebServer", cms, errors.CRYPT_E_ASN1_BADTAG,
                                  DB_DISP_ERROR),
        "unknown_template": (0, "CertificateTemplate:NoSuchTemplate", csr, errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE,
                             DB_DISP_DENIED),
        "no_template": (0, "", csr, errors.CERTSRV_E_NO_CERT_TYPE, DB_DISP_DENIED),
        "key_too_short_for_4096": (0, "CertificateTemplate:WebServer4096", csr, errors.CERTSRV_E_KEY_LENGTH,
                                   DB_DISP_DENIED),
    }


@pytest.mark.parametrize("case", ["bad_pkcs10_signature", "bad_cms_signature", "bad_cmc_signature",
                                  "cms_signer_unknown", "garbage", "not_base64", "truncated",
                                  "pkcs10_flagged_as_cms", "cms_flagged_as_pkcs10", "unknown_template",
                                  "no_template", "key_too_short_for_4096"])
def test_error_hresults(ca, key, other_key, case):
    flags, attributes, blob, hresult, db_disposition = _error_cases(key, other_key)[case]
    response = ca.submit(flags, attributes, blob, ENROLLER)
    assert response.disposition == hresult, response.disposition_message
    assert response.status_hresult == hresult
    assert response.cert_der is None and response.chain_pkcs7 is None
    assert ("0x%08x" % hresult) in response.disposition_message
    if db_disposition == DB_DISP_DENIED:
        assert response.disposition_message.startswith("Denied by Policy Module  0x%08x, " % hresult)
    assert response.request_id > 0
    row = ca.get_request(response.request_id)
    assert row["disposition"] == db_disposition and row["status_hresult"] == hresult
    assert row["request_blob"] == blob


def test_short_rsa_key_for_webserver(ca):
    response = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(T.rsa_key(1024), "short"), ENROLLER)
    assert response.disposition == errors.CERTSRV_E_KEY_LENGTH


def test_disabled_template_is_unsupported(ca, key):
    ca.config["templates"] = ["User", "Machine"]
    try:
        response = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "disabled"), ENROLLER)
    finally:
        ca.config["templates"] = None
    assert response.disposition == errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE


def test_empty_request_without_serial(ca):
    response = ca.submit(0, "CertificateTemplate:WebServer", b"", ENROLLER)
    assert response.disposition == errors.E_INVALIDARG and response.disposition_message


def test_failure_full_response_is_cmc_failed(ca, key):
    response = ca.submit(0x40000, "CertificateTemplate:NoSuch", T.make_csr(key, "f"), ENROLLER)
    info, _ = der_decoder.decode(response.full_response, asn1Spec=rfc5652.ContentInfo())
    signed, _ = der_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
    pki_response, _ = der_decoder.decode(bytes(signed["encapContentInfo"]["eContent"]),
                                         asn1Spec=rfc6402.PKIResponse())
    status, _ = der_decoder.decode(bytes(pki_response["controlSequence"][0]["attrValues"][0]),
                                   asn1Spec=rfc6402.CMCStatusInfo())
    assert int(status["cMCStatus"]) == 2


# ---- pending / approve / deny / retrieve ------------------------------------------------------------------------

def test_pending_then_approve_then_retrieve(ca, key):
    response = ca.submit(0, "CertificateTemplate:WebServerApproval", T.make_csr(key, "pend"), ENROLLER)
    assert response.disposition == 5
    assert response.disposition_message == "Taken Under Submission"
    assert response.cert_der is None
    request_id = response.request_id
    assert ca.get_request(request_id)["disposition"] == DB_DISP_PENDING
    again = ca.retrieve(request_id, ENROLLER)
    assert again.disposition == 5 and again.request_id == request_id
    approved = ca.approve(request_id)
    assert approved.disposition == 3
    fetched = ca.retrieve(request_id, ENROLLER)
    assert fetched.disposition == 3 and fetched.disposition_message == "Issued"
    assert fetched.cert_der == approved.cert_der
    assert ca.get_request(request_id)["disposition"] == DB_DISP_ISSUED
    with pytest.raises(CAError) as info:
        ca.approve(request_id)
    assert info.value.hresult == errors.CERTSRV_E_BAD_REQUESTSTATUS


def test_pending_deny(ca, key):
    response = ca.submit(0, "CertificateTemplate:WebServerApproval", T.make_csr(key, "deny"), ENROLLER)
    ca.deny(response.request_id)
    fetched = ca.retrieve(response.request_id, ENROLLER)
    assert fetched.disposition == errors.CERTSRV_E_ADMIN_DENIED_REQUEST
    assert fetched.cert_der is None and "0x80094014" in fetched.disposition_message
    with pytest.raises(CAError):
        ca.deny(response.request_id)


def test_retrieve_unknown_and_failed_requests(ca, key):
    failed = ca.submit(0, "CertificateTemplate:Nope", T.make_csr(key, "nope"), ENROLLER)
    assert ca.get_request(failed.request_id)["template"] == "Nope"
    missing = ca.retrieve(999999, ENROLLER)
    # MS-WCCE 3.2.1.4.2.1.3: a failed lookup is CERTSRV_E_PROPERTY_EMPTY.
    assert missing.disposition == errors.CERTSRV_E_PROPERTY_EMPTY and missing.disposition_message
    failed = ca.submit(0, "CertificateTemplate:Nope", T.make_csr(key, "nope"), ENROLLER)
    again = ca.retrieve(failed.request_id, ENROLLER)
    assert again.disposition == errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE
    assert again.disposition_message == failed.disposition_message


def test_retrieve_by_serial_number(ca, key):
    issued = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "byserial"), ENROLLER)
    serial = "%X" % _cert(issued).serial_number
    response = ca.submit(0, "", b"", ENROLLER, serial_number=serial)
    assert response.disposition == 3 and response.cert_der == issued.cert_der


# ---- chain and CRLs -------------------------------------------------------------------------------------------

def _pem(path, certs):
    with open(path, "wb") as handle:
        for cert in certs:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_chain_pkcs7_verifies_with_openssl(ca, key, tmp_path):
    response = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "chain"), ENROLLER)
    certs = pkcs7.load_der_pkcs7_certificates(response.chain_pkcs7)
    assert x509.load_der_x509_certificate(response.cert_der) in certs  # SET OF: DER order, not chain order
    assert ca.ca_cert in certs and ca.root_cert in certs
    result = subprocess.run(["openssl", "verify", "-CAfile", _pem(tmp_path / "root.pem", [ca.root_cert]),
                             "-untrusted", _pem(tmp_path / "ca.pem", [ca.ca_cert]),
                             _pem(tmp_path / "leaf.pem", [certs[0]])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("OK")


def test_crls_parse_verify_and_track_revocation(ca, key, tmp_path):
    base = x509.load_der_x509_crl(ca.get_property(0x11, 0, 3)[1])
    delta = x509.load_der_x509_crl(ca.get_property(0x12, 0, 3)[1])
    for crl in (base, delta):
        assert crl.issuer == ca.ca_cert.subject
        assert crl.is_signature_valid(ca.ca_cert.public_key())
        assert crl.next_update_utc > datetime.datetime.now(datetime.timezone.utc)
    base_number = base.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number == base_number
    assert delta.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > base_number
    freshest = base.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert "http://%s/CertEnroll/LAB-CA+.crl" % seed.CA_HOST in [n.value for p in freshest for n in p.full_name]

    issued = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "revokeme"), ENROLLER)
    cert = _cert(issued)
    ca.revoke("%x" % cert.serial_number, 1)
    delta = x509.load_der_x509_crl(ca.get_property(0x12, 0, 3)[1])
    entry = delta.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert ca.retrieve(issued.request_id, ENROLLER).disposition == 6
    with open(os.path.join(ca.cert_enroll_dir, "LAB-CA+.crl"), "rb") as handle:
        assert handle.read() == delta.public_bytes(serialization.Encoding.DER)

    base_der, _ = ca.publish_crls()
    base = x509.load_der_x509_crl(base_der)
    assert base.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    crl_pem = tmp_path / "crl.pem"
    crl_pem.write_bytes(base.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(["openssl", "verify", "-crl_check", "-CRLfile", str(crl_pem),
                             "-CAfile", _pem(tmp_path / "root.pem", [ca.root_cert]),
                             "-untrusted", _pem(tmp_path / "ca.pem", [ca.ca_cert]),
                             _pem(tmp_path / "leaf.pem", [cert])], capture_output=True, text=True)
    assert result.returncode != 0 and "revoked" in (result.stdout + result.stderr)
    with pytest.raises(CAError):
        ca.revoke("%x" % cert.serial_number, 1)
    with pytest.raises(CAError):
        ca.revoke("deadbeef", 0)


# ---- properties ------------------------------------------------------------------------------------------------

def test_property_info_and_every_property(ca):
    info = ca.property_info()
    ids = [entry[0] for entry in info]
    for wanted in (0x6, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0x11, 0x12, 0x13, 0x14, 0x16, 0x1D):
        assert wanted in ids
    for prop_id, prop_type, flags, display in info:
        assert display and flags in (0, 1)
        try:
            got_type, value = ca.get_property(prop_id, 0, prop_type)
        except CAError as error:
            assert error.hresult in (errors.CERTSRV_E_PROPERTY_EMPTY, errors.E_INVALIDARG)
            continue
        assert got_type == prop_type
        expected = {1: (int, bytes), 3: (bytes,), 4: (str,)}[prop_type]
        assert isinstance(value, expected), (prop_id, value)


def test_property_values(ca):
    assert ca.get_property(0x6, 0, 4) == (4, "LAB-CA")
    assert ca.get_property(0xA, 0, 1) == (1, 1)  # ENUM_ENTERPRISE_SUBCA
    assert ca.get_property(0xB, 0, 1) == (1, 1)
    assert ca.get_property(0xC, 0, 3)[1] == ca.ca_cert.public_bytes(serialization.Encoding.DER)
    chain = pkcs7.load_der_pkcs7_certificates(ca.get_property(0xD, 0, 3)[1])
    assert ca.ca_cert in chain and ca.root_cert in chain
    assert ca.get_property(0x13, 0, 1) == (1, b"\x03")  # CA_DISP_VALID
    assert ca.get_property(0x16, 0, 4) == (4, seed.CA_HOST)
    templates = ca.get_property(0x1D, 0, 4)[1].split("\n")
    assert templates[-1] == ""
    pairs = dict(zip(templates[0:-1:2], templates[1:-1:2]))
    assert set(pairs) == {"User", "Machine", "WebServer", "WebServerApproval", "WebServer4096", "EFS"}
    assert pairs["WebServer"] == ca.templates.get("WebServer").oid


def test_exchange_certificate(ca):
    assert ca.get_property(0xE, 0, 1) == (1, 1)
    xchg = x509.load_der_x509_certificate(ca.get_property(0xF, 0, 3)[1])
    _verify_issued_by(xchg, ca.ca_cert)
    assert xchg.subject.rfc4514_string() == "CN=LAB-CA-Xchg"
    eku = [oid.dotted_string for oid in xchg.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    assert eku == ["1.3.6.1.4.1.311.21.5"]
    assert xchg.public_key().public_numbers() == ca.xchg_key.public_key().public_numbers()
    assert ca.get_ca_cert(1) == xchg.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("prop_id,index,prop_type", [(0x999, 0, 1), (0x6, 0, 1), (0xC, 0, 4), (0xC, 5, 3),
                                                     (0, 0, 1)])
def test_property_errors(ca, prop_id, index, prop_type):
    with pytest.raises(CAError) as info:
        ca.get_property(prop_id, index, prop_type)
    assert info.value.hresult == errors.E_INVALIDARG


def test_get_ca_cert(ca):
    der = serialization.Encoding.DER
    assert ca.get_ca_cert(0) == ca.ca_cert.public_bytes(der)
    assert ca.get_ca_cert(0x63740000) == ca.ca_cert.public_bytes(der)
    assert ca.ca_cert in pkcs7.load_der_pkcs7_certificates(ca.get_ca_cert(0x80000000))
    assert ca.get_ca_cert(0x6E616D65) == "LAB-CA\0".encode("utf-16-le")
    assert ca.get_ca_cert(0x74797065) == struct.pack("<i", 1)
    cainfo = ca.get_ca_cert(0x696E666F)
    assert len(cainfo) == 40 and struct.unpack("<Ii", cainfo[:8]) == (40, 1)
    assert x509.load_der_x509_crl(ca.get_ca_cert(0x636C0000)).issuer == ca.ca_cert.subject
    assert ca.get_ca_cert(0x73740000) == b"\x03"
    for bad in (0x12345678, 0x63740001, 0x6E616D65 | 0x80000000):
        with pytest.raises(CAError) as info:
            ca.get_ca_cert(bad)
        assert info.value.hresult == errors.E_INVALIDARG


# ---- database --------------------------------------------------------------------------------------------------

def test_concurrent_submissions_get_unique_ids(ca, key):
    csrs = [T.make_csr(key, "thread-%d" % i) for i in range(24)]
    results = []
    lock = threading.Lock()

    def worker(chunk):
        for csr in chunk:
            response = ca.submit(0, "CertificateTemplate:WebServer", csr, ENROLLER)
            with lock:
                results.append(response)

    threads = [threading.Thread(target=worker, args=(csrs[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 24
    assert all(r.disposition == 3 for r in results), [r.disposition_message for r in results]
    ids = [r.request_id for r in results]
    assert len(set(ids)) == 24
    serials = {_cert(r).serial_number for r in results}
    assert len(serials) == 24


def test_reopen_keeps_state_and_ids_increase(tmp_path, key):
    first = CertificationAuthority.open(str(tmp_path))
    issued = first.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "persist"), ENROLLER)
    high = first.config["high_serial"]
    first.close()
    second = CertificationAuthority.open(str(tmp_path))
    try:
        assert second.config["high_serial"] == high
        assert second.retrieve(issued.request_id, ENROLLER).cert_der == issued.cert_der
        later = second.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "later"), ENROLLER)
        assert later.request_id > issued.request_id
        assert os.path.exists(os.path.join(str(tmp_path), "ca", "requests.db"))
        assert os.path.exists(os.path.join(str(tmp_path), "ca", "config.json"))
    finally:
        second.close()


def test_admin_cli(tmp_path, key, capsys):
    from adcslab.ca.__main__ import main

    ca = CertificationAuthority.open(str(tmp_path))
    pending = ca.submit(0, "CertificateTemplate:WebServerApproval", T.make_csr(key, "cli"), ENROLLER)
    ca.close()
    assert main(["--state-dir", str(tmp_path), "list", "--pending"]) == 0
    assert '"pending"' in capsys.readouterr().out
    assert main(["--state-dir", str(tmp_path), "approve", str(pending.request_id)]) == 0
    assert main(["--state-dir", str(tmp_path), "approve", str(pending.request_id)]) == 1
    assert "0x80094003" in capsys.readouterr().err
    ca = CertificationAuthority.open(str(tmp_path))
    serial = ca.get_request(pending.request_id)["serial"]
    ca.close()
    assert main(["--state-dir", str(tmp_path), "revoke", serial, "--reason", "4"]) == 0
    assert main(["--state-dir", str(tmp_path), "set-editf-san", "on"]) == 0
    ca = CertificationAuthority.open(str(tmp_path))
    try:
        assert ca.config["editf_attributesubjectaltname2"] is True
        delta = x509.load_der_x509_crl(ca.delta_crl())
        assert delta.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    finally:
        ca.close()


def test_empty_subject_needs_a_san(ca, key):
    with_san = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "", dns_names=["nosubject.lab"]),
                         ENROLLER)
    cert = _cert(with_san)
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    without = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, ""), ENROLLER)
    assert without.disposition == errors.CERTSRV_E_BAD_REQUESTSUBJECT


def test_custom_template_source_and_validity_cap(tmp_path, key):
    """A TemplateSource other than the built-in table (the LDAP-backed one later) plugs in; validity is capped
    at the CA certificate's notAfter."""
    import dataclasses

    from adcslab.ca import BuiltinTemplateSource, TemplateSource
    from adcslab.ca.templates import BUILTIN_TEMPLATES

    long_lived = dataclasses.replace(BUILTIN_TEMPLATES[2], name="LongLived", oid="1.3.6.1.4.1.311.21.8.9.9",
                                     validity_days=365 * 100)

    class Source(TemplateSource):
        def __init__(self):
            self.inner = BuiltinTemplateSource([long_lived])

        def get(self, name):
            return self.inner.get(name)

        def all(self):
            return self.inner.all()

    authority = CertificationAuthority.open(str(tmp_path), template_source=Source())
    try:
        # The CA's ValidityPeriod (2 years by default, as AD CS) caps first ...
        response = authority.submit(0, "CertificateTemplate:1.3.6.1.4.1.311.21.8.9.9", T.make_csr(key, "long"),
                                    ENROLLER)
        cert = _cert(response)
        assert 729 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 732
        # ... and without it the CA certificate's notAfter does.
        authority.config["validity_period_years"] = 0
        response = authority.submit(0, "CertificateTemplate:1.3.6.1.4.1.311.21.8.9.9", T.make_csr(key, "long"),
                                    ENROLLER)
        cert = _cert(response)
        assert cert.not_valid_after_utc == authority.ca_cert.not_valid_after_utc
        assert authority.get_property(0x1D, 0, 4)[1] == "LongLived\n1.3.6.1.4.1.311.21.8.9.9\n"
        assert authority.submit(0, "CertificateTemplate:WebServer", T.make_csr(key, "x"),
                                ENROLLER).disposition == errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE
    finally:
        authority.close()
