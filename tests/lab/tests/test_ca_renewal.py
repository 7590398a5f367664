"""CA renewal of the lab CA (``python -m adcslab.ca renew-ca [--new-key]``), numbered as AD CS numbers it: certificate
indexes, key indexes, one CRL per key (``LAB-CA(n).crl``), CR_PROP_CASIGCERTCOUNT, CR_PROP_CACERTSTATE /
CR_PROP_CRLSTATE byte arrays, CRLs by CRL name ID; then Certipy still enrolls from the renewed CA over the wire.

Every CA here has its own temporary state dir (a new lab PKI, no directory): the shared lab CA is never renewed."""

import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.type import univ

import wcce_helpers as H
from adcslab.seed import CA_HOST, CA_NETBIOS
from adcslab.ca import CAError, CertificationAuthority, Requester
from adcslab.ca import authority as A
from adcslab.ca import castore
from adcslab.ca import errors
from adcslab.ca import testing as T

ENROLLER = Requester(user="enroller", domain="LAB", sid="S-1-5-21-1111-2222-3333-1104",
                     group_sids=["S-1-5-21-1111-2222-3333-513"], authn_type=10, transport="dcom")
ADDRESS = "127.0.0.38"
PASSWORD = "Renew-Pa55!"


def _open(state):
    return CertificationAuthority.open(state, "builtin")


def _spki(cert):
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _ext_value(cert, oid):
    return cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value


def _ca_version(obj):
    return int(der_decoder.decode(_ext_value(obj, "1.3.6.1.4.1.311.21.1"), asn1Spec=univ.Integer())[0])


def _prop(ca, prop_id, index=0, prop_type=A.PROPTYPE_BINARY):
    return ca.get_property(prop_id, index, prop_type)[1]


def _issue(ca, cn="web.lab.adcs.test"):
    response = ca.submit(0x100, "CertificateTemplate:WebServer", T.make_csr(T.rsa_key(2048), cn, dns_names=[cn]),
                         ENROLLER)
    assert response.disposition == A.CR_DISP_ISSUED, response.disposition_message
    return x509.load_der_x509_certificate(response.cert_der)


def _renew(state, *args):
    result = H.ca_cli(state, "renew-ca", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture()
def state(tmp_path):
    path = str(tmp_path / "state")
    _open(path).close()  # a fresh lab PKI and CA (certificate 0, key 0)
    return path


def test_same_key_renewal(state):
    before = _open(state)
    old_cert = before.ca_cert
    issued_before = _issue(before, "before.lab.adcs.test")
    before.close()
    out = _renew(state)
    out.pop("not_after")
    assert out == {
        "cert_index": 1, "key_index": 0, "certificate": CA_HOST + "_LAB-CA(1).crt", "crl": "LAB-CA.crl",
        "subject": "CN=LAB-CA,DC=lab,DC=adcs,DC=test",
        "note": "restart the CA server to issue from the new certificate"}

    ca = _open(state)
    try:
        assert _prop(ca, A.CR_PROP_CASIGCERTCOUNT, 0, A.PROPTYPE_LONG) == 2
        certs = [x509.load_der_x509_certificate(_prop(ca, A.CR_PROP_CASIGCERT, i)) for i in (0, 1)]
        assert certs[0] == old_cert and certs[1] == ca.ca_cert and certs[1] != old_cert
        assert _spki(certs[0]) == _spki(certs[1]), "a same-key renewal keeps the key"
        assert _ca_version(certs[1]) == 0x00000001  # key index 0, certificate index 1
        assert _ext_value(certs[1], castore.OID_PREVIOUS_CA_CERT_HASH)[2:] == old_cert.fingerprint(hashes.SHA1())
        assert _prop(ca, A.CR_PROP_CACERTVERSION, 1, A.PROPTYPE_LONG) == 1
        # one key: one CRL, still under name ID 0; certificate index 1 names no CRL of its own
        assert _prop(ca, A.CR_PROP_CACERTSTATE, 0, A.PROPTYPE_LONG) == bytes([3, 3])
        assert _prop(ca, A.CR_PROP_CRLSTATE, 0, A.PROPTYPE_LONG) == bytes([3, 1])
        crl = x509.load_der_x509_crl(_prop(ca, A.CR_PROP_BASECRL, 0))
        assert crl.is_signature_valid(certs[1].public_key())
        assert _ca_version(crl) == 0x00000001  # signed by the newest certificate of key 0
        with pytest.raises(CAError) as info:
            _prop(ca, A.CR_PROP_BASECRL, 1)
        assert info.value.hresult == errors.CERTSRV_E_PROPERTY_EMPTY
        assert sorted(os.listdir(ca.cert_enroll_dir)) == [
            "LAB-CA+.crl", "LAB-CA.crl", CA_HOST + "_LAB-CA(1).crt", CA_HOST + "_LAB-CA.crt"]
        # new certificates come from the current CA certificate; one issued before still renews (it chains)
        issued = _issue(ca)
        issued.verify_directly_issued_by(certs[1])
        assert issued.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value[1] \
            .access_location.value == "http://%s/CertEnroll/%s_LAB-CA(1).crt" % (CA_HOST, CA_HOST)
        assert ca.store.issuer_of(issued_before).cert_index == 1  # same key: the newest certificate of it
    finally:
        ca.close()


def test_new_key_renewal(state):
    before = _open(state)
    old_cert = before.ca_cert
    issued_before = _issue(before, "old.lab.adcs.test")
    before.revoke(issued_before.serial_number, 1)
    before.close()
    out = _renew(state, "--new-key")
    assert (out["cert_index"], out["key_index"], out["crl"]) == (1, 1, "LAB-CA(1).crl")

    ca = _open(state)
    try:
        assert _prop(ca, A.CR_PROP_CASIGCERTCOUNT, 0, A.PROPTYPE_LONG) == 2
        new_cert = x509.load_der_x509_certificate(_prop(ca, A.CR_PROP_CASIGCERT, 1))
        assert new_cert == ca.ca_cert and _spki(new_cert) != _spki(old_cert)
        assert _ca_version(new_cert) == 0x00010001
        assert x509.load_der_x509_certificate(_prop(ca, A.CR_PROP_CASIGCERT, -1)) == new_cert
        chain = pkcs7.load_der_pkcs7_certificates(_prop(ca, A.CR_PROP_CASIGCERTCHAIN, 0))
        assert old_cert in chain and new_cert not in chain
        assert _prop(ca, A.CR_PROP_CACERTSTATE, 0, A.PROPTYPE_LONG) == bytes([3, 3])
        assert _prop(ca, A.CR_PROP_CRLSTATE, 0, A.PROPTYPE_LONG) == bytes([3, 3])
        # one CRL per key: key 0's CRL still lists what key 0 issued and revoked; key 1's CRL is its own
        crl0 = x509.load_der_x509_crl(_prop(ca, A.CR_PROP_BASECRL, 0))
        crl1 = x509.load_der_x509_crl(_prop(ca, A.CR_PROP_BASECRL, 1))
        assert crl0.is_signature_valid(old_cert.public_key()) and crl1.is_signature_valid(new_cert.public_key())
        assert crl0.get_revoked_certificate_by_serial_number(issued_before.serial_number) is not None
        assert crl1.get_revoked_certificate_by_serial_number(issued_before.serial_number) is None
        assert _ca_version(crl1) == 0x00010001
        delta1 = x509.load_der_x509_crl(_prop(ca, A.CR_PROP_DELTACRL, 1))
        assert delta1.is_signature_valid(new_cert.public_key())
        assert x509.load_der_x509_crl(ca.get_ca_cert(A.GETCERT_CURRENTCRL)) == crl1
        assert x509.load_der_x509_crl(ca.get_ca_cert((A.GETCERT_CRLBYINDEX << 16) | 0)) == crl0
        assert sorted(os.listdir(ca.cert_enroll_dir)) == [
            "LAB-CA(1)+.crl", "LAB-CA(1).crl", "LAB-CA+.crl", "LAB-CA.crl", CA_HOST + "_LAB-CA(1).crt",
            CA_HOST + "_LAB-CA.crt"]
        # the issued certificate names the new key's CDP and its AIA the new certificate's file
        issued = _issue(ca)
        issued.verify_directly_issued_by(new_cert)
        cdp = [n.value for n in issued.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0]
               .full_name]
        assert cdp[0].startswith("ldap:///CN=LAB-CA(1),CN=%s,CN=CDP," % CA_NETBIOS)
        assert cdp[1].endswith("/LAB-CA(1).crl")
        urls = _prop(ca, A.CR_PROP_CERTCDPURLS, 0, A.PROPTYPE_STRING)
        assert "/CertEnroll/LAB-CA.crl\n" in urls
        with pytest.raises(CAError) as info:
            _prop(ca, A.CR_PROP_CASIGCERT, 2)
        assert info.value.hresult == errors.E_INVALIDARG
        with pytest.raises(CAError) as info:
            _prop(ca, A.CR_PROP_BASECRL, 0x10000)
        assert info.value.message == "CRL partitions are not enabled on this CA."
        # a certificate issued by the old key is still renewable (it chains through the old CA certificate)
        assert ca.store.issuer_of(issued_before).cert_index == 0
    finally:
        ca.close()


def test_key_index_follows_the_certificate_index(state):
    """AD CS: new key at 1 -> key 1; same key at 2 -> key 1; new key at 3 -> key 3."""
    seen = [(out["cert_index"], out["key_index"], out["crl"]) for out in
            (_renew(state, "--new-key"), _renew(state), _renew(state, "--new-key"))]
    assert seen == [(1, 1, "LAB-CA(1).crl"), (2, 1, "LAB-CA(1).crl"), (3, 3, "LAB-CA(3).crl")]
    ca = _open(state)
    try:
        assert _prop(ca, A.CR_PROP_CRLSTATE, 0, A.PROPTYPE_LONG) == bytes([3, 3, 1, 3])
        assert ca.store.key_indexes() == [0, 1, 3]
        assert struct_cainfo(ca)[2] == 4  # CAINFO.cCASignatureCerts
    finally:
        ca.close()


def struct_cainfo(ca):
    import struct
    return struct.unpack("<Ii8I", ca.get_ca_cert(A.GETCERT_CAINFO))


# ---- over the wire: Certipy enrolls from a renewed CA ------------------------------------------------------------
@pytest.fixture(scope="module")
def renewed_server(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab CA listens on port 135, which needs root (the lab runs as root)")
    if not os.path.exists(H.CERTIPY):
        pytest.skip("!!! Certipy test SKIPPED: %s is missing (make venv) !!!" % H.CERTIPY)
    assert H.address_free(ADDRESS), "port 135 on %s is already in use" % ADDRESS
    state = str(tmp_path_factory.mktemp("labca-renewed"))
    H.write_accounts(state, {"enroller": PASSWORD})
    _open(state).close()
    _renew(state, "--new-key")
    proc = H.ServerProcess(state, ADDRESS).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def test_certipy_enrolls_from_the_renewed_ca(renewed_server, tmp_path):
    cmd = [H.CERTIPY, "req", "-u", "enroller@lab.adcs.test", "-p", PASSWORD, "-target-ip", ADDRESS,
           "-dc-ip", ADDRESS, "-ns", ADDRESS, "-ca", "LAB-CA", "-timeout", "10", "-template", "User"]
    result = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert "Successfully requested certificate" in result.stdout + result.stderr, result.stdout + result.stderr
    from cryptography.hazmat.primitives.serialization import pkcs12
    with open(str(tmp_path / "enroller.pfx"), "rb") as handle:
        _key, cert, _ = pkcs12.load_key_and_certificates(handle.read(), None)
    ca = _open(renewed_server.state_dir)
    try:
        assert ca.store.count == 2
        cert.verify_directly_issued_by(ca.store.current.cert)
        assert ca.store.issuer_of(cert).cert_index == 1
    finally:
        ca.close()


# ---- dspublish: the directory objects of a renewed CA (a fake LDAP connection: the shared AD is never touched) ----
class _FakeConn:
    """The ldap3 Connection calls dspublish makes: search (BASE) and modify of cACertificate."""

    def __init__(self, objects):
        self.objects = objects  # dn -> list of DER values
        self.response, self.result, self.modified = [], {}, []

    def search(self, dn, _filter, search_scope=None, attributes=None):
        if dn not in self.objects:
            self.response = []
            return False
        self.response = [{"raw_attributes": {"cACertificate": list(self.objects[dn])}}]
        return True

    def modify(self, dn, changes):
        from ldap3 import MODIFY_ADD
        operation, values = changes["cACertificate"][0]
        self.modified.append((dn, operation, len(values)))
        if operation == MODIFY_ADD:
            self.objects[dn].extend(values)
        else:
            self.objects[dn] = [v for v in self.objects[dn] if v not in values]
        return True


class _FakeDirectory:
    def __init__(self, conn):
        self.conn = conn
        self.config = type("Config", (), {"pks_dn": "CN=Public Key Services,CN=Services,CN=Configuration,DC=lab"})

    def _call(self, operation):
        return operation(self.conn)


def test_dspublish_adds_the_new_ca_certificate_next_to_the_old_one(state):
    ca = _open(state)
    ca.close()
    _renew(state, "--new-key")
    ca = _open(state)
    try:
        old, new = (e.cert for e in ca.store.entries)
    finally:
        ca.close()
    der = serialization.Encoding.DER
    pks = "CN=Public Key Services,CN=Services,CN=Configuration,DC=lab"
    enrollment, aia, ntauth = ("CN=LAB-CA,CN=Enrollment Services," + pks, "CN=LAB-CA,CN=AIA," + pks,
                               "CN=NTAuthCertificates," + pks)
    conn = _FakeConn({enrollment: [old.public_bytes(der)], aia: [old.public_bytes(der)], ntauth: []})
    directory = _FakeDirectory(conn)
    assert castore.dspublish_targets(directory, "LAB-CA") == [enrollment, aia, ntauth]
    assert castore.dspublish(directory, "LAB-CA", [old, new]) == {enrollment: 1, aia: 1, ntauth: 2}
    assert conn.objects[enrollment] == [old.public_bytes(der), new.public_bytes(der)]
    assert castore.dspublish(directory, "LAB-CA", [old, new]) == {enrollment: 0, aia: 0, ntauth: 0}  # idempotent
    assert castore.dsunpublish(directory, "LAB-CA", [new]) == {enrollment: 1, aia: 1, ntauth: 1}
    assert conn.objects == {enrollment: [old.public_bytes(der)], aia: [old.public_bytes(der)],
                            ntauth: [old.public_bytes(der)]}
    del conn.objects[aia]  # an object that does not exist is skipped
    assert castore.dspublish(directory, "LAB-CA", [new]) == {enrollment: 1, ntauth: 1}
