"""End-to-end tests of the lab CA server process (adcslab.wcce.server) with impacket's DCOM and MS-ICPR clients.

Each module starts its own server on 127.0.0.32 (port 135, needs root like the lab itself) with a temporary
state dir and accounts file."""

import os
import struct
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from impacket.dcerpc.v5 import dcomrt, epm, transport
from impacket.dcerpc.v5.rpcrt import (DCERPCException, RPC_C_AUTHN_LEVEL_CONNECT, RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,
                                      RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
from impacket.uuid import string_to_bin, uuidtup_to_bin

import wcce_helpers as H
from adcslab import seed
from adcslab.wcce import constants as C

ADDRESS = "127.0.0.32"
PASSWORD = "Enr0ll-me!"
CLSID = string_to_bin(C.CLSID_CCERTREQUESTD)
IID_D = uuidtup_to_bin((C.IID_ICERTREQUESTD, "0.0"))
IID_D2 = uuidtup_to_bin((C.IID_ICERTREQUESTD2, "0.0"))
IID_ICPR = uuidtup_to_bin((C.IID_ICERTPASSAGE, "0.0"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab CA listens on port 135, which needs root (the lab runs as root)")
    assert H.address_free(ADDRESS), "port 135 on %s is already in use" % ADDRESS
    state = str(tmp_path_factory.mktemp("labca-state"))
    H.write_accounts(state, {"enroller": PASSWORD, "other": "0ther-pass!"})
    proc = H.ServerProcess(state, ADDRESS).start()
    yield proc
    rc = proc.stop()
    assert rc == 0, "lab CA did not exit cleanly on SIGTERM (rc %r)\n%s" % (rc, proc.log())
    assert not os.path.exists(os.path.join(state, "ca-endpoints.json"))


def make_csr(cn="enroller"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.DER)


def openssl_verify(state_dir, cert_der, tmp_path):
    from adcslab.pki import ensure_pki

    pki = ensure_pki(state_dir)
    cert_path = tmp_path / "leaf.pem"
    cert_path.write_bytes(x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM))
    return subprocess.run(["openssl", "verify", "-CAfile", pki.root_cert_path, "-untrusted", pki.ca_cert_path,
                           str(cert_path)], capture_output=True, text=True)


class CertIface(dcomrt.IRemUnknown2):
    """impacket INTERFACE wrapper that sends our MS-WCCE calls to the object's IPID."""

    def __init__(self, interface, iid):
        dcomrt.IRemUnknown2.__init__(self, interface)
        self._cert_iid = iid

    def call(self, req, check=True, ipid=None):
        req["ORPCthis"] = self.get_cinstance().get_ORPCthis()
        req["ORPCthis"]["flags"] = 0
        self.connect(self._cert_iid)
        return self.get_dce_rpc().request(req, ipid or self.get_iPid(), checkError=check)


@pytest.fixture()
def dcom_conn(server):
    conns = []

    def connect(user="enroller", password=PASSWORD, level=RPC_C_AUTHN_LEVEL_PKT_PRIVACY):
        conn = dcomrt.DCOMConnection(ADDRESS, user, password, "LAB", oxidResolver=True, authLevel=level)
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        try:
            conn.disconnect()
        except Exception:
            pass


def request(iface, csr_der, attributes="CertificateTemplate:User", authority="LAB-CA", request_id=0, check=True):
    req = H.Request()
    req["dwFlags"] = 0
    req["pwszAuthority"] = H.wstr(authority)
    req["pdwRequestId"] = request_id
    req["pwszAttributes"] = H.wstr(attributes) if attributes is not None else H.NULL
    req["pctbRequest"] = H.blob(csr_der)
    return iface.call(req, check=check)


def test_dcom_request_issues_certificate_that_verifies(server, dcom_conn, tmp_path):
    conn = dcom_conn()
    iface = CertIface(conn.CoCreateInstanceEx(CLSID, IID_D), IID_D)
    key, csr = make_csr()
    resp = request(iface, csr)
    assert resp["ErrorCode"] == 0
    assert resp["pdwDisposition"] == C.DISPOSITION_ISSUED, H.blob_bytes(resp["pctbDispositionMessage"])
    assert resp["pdwRequestId"] > 0
    cert_der = H.blob_bytes(resp["pctbEncodedCert"])
    cert = x509.load_der_x509_certificate(cert_der)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    chain = pkcs7.load_der_pkcs7_certificates(H.blob_bytes(resp["pctbCertChain"]))
    assert cert in chain
    result = openssl_verify(server.state_dir, cert_der, tmp_path)
    assert result.returncode == 0 and ": OK" in result.stdout, result.stdout + result.stderr
    message = H.blob_bytes(resp["pctbDispositionMessage"]).decode("utf-16-le")
    assert message.endswith("\x00") and len(message) > 1


def test_dcom_query_interface_d2_properties_and_release(server, dcom_conn):
    conn = dcom_conn()
    unk = conn.CoCreateInstanceEx(CLSID, IID_D)
    d2 = CertIface(unk.RemQueryInterface(1, [IID_D2[:16]]), IID_D2)

    def prop(prop_id, prop_type, index=0):
        r = H.GetCAProperty()
        r["pwszAuthority"] = H.wstr("LAB-CA")
        r["PropID"] = prop_id
        r["PropIndex"] = index
        r["PropType"] = prop_type
        resp = d2.call(r)
        return H.blob_bytes(resp["pctbPropertyValue"])

    assert prop(6, C.PROPTYPE_STRING).decode("utf-16-le") == "LAB-CA\x00"
    assert prop(0x16, C.PROPTYPE_STRING).decode("utf-16-le").rstrip("\x00").lower() == seed.CA_HOST
    count = struct.unpack("<i", prop(0xB, C.PROPTYPE_LONG))[0]
    assert count >= 1
    signing = x509.load_der_x509_certificate(prop(0xC, C.PROPTYPE_BINARY, count - 1))
    assert "LAB-CA" in signing.subject.rfc4514_string()

    info = H.GetCAPropertyInfo()
    info["pwszAuthority"] = H.wstr("LAB-CA")
    resp = d2.call(info)
    blob = H.blob_bytes(resp["pctbPropInfo"])
    n = resp["pcProperty"]
    ids = [struct.unpack_from("<i", blob, 12 * i)[0] for i in range(n)]
    assert n >= 5 and 6 in ids and 0xC in ids

    cacert = H.GetCACert()
    cacert["fchain"] = 0
    cacert["pwszAuthority"] = H.wstr("LAB-CA")
    got = x509.load_der_x509_certificate(H.blob_bytes(d2.call(cacert)["pctbOut"]))
    assert got == signing

    ping = H.Ping()
    ping["pwszAuthority"] = H.wstr("LAB-CA")
    assert d2.call(ping)["ErrorCode"] == 0

    # release the D2 pointer: its IPID stops answering, with RPC_E_INVALID_IPID
    d2.RemRelease()
    with pytest.raises(DCERPCException) as exc:
        d2.call(ping)
    assert "RPC_E_INVALID_IPID" in str(exc.value), str(exc.value)


def test_dcom_unknown_ca_name_and_unknown_ipid(server, dcom_conn):
    conn = dcom_conn()
    iface = CertIface(conn.CoCreateInstanceEx(CLSID, IID_D), IID_D)
    _, csr = make_csr()
    resp = request(iface, csr, authority="NOT-THE-CA", check=False)
    assert resp["ErrorCode"] == C.E_INVALIDARG
    ping = H.Ping()
    ping["pwszAuthority"] = H.wstr("LAB-CA")
    with pytest.raises(DCERPCException) as exc:
        iface.call(ping, ipid=string_to_bin("01234567-89ab-cdef-0123-456789abcdef"))
    assert "RPC_E_INVALID_IPID" in str(exc.value), str(exc.value)
    # the server survived both and still serves the object
    assert iface.call(ping)["ErrorCode"] == 0


def test_dcom_pending_retrieve_roundtrip(server, dcom_conn):
    conn = dcom_conn()
    iface = CertIface(conn.CoCreateInstanceEx(CLSID, IID_D), IID_D)
    _, csr = make_csr()
    issued = request(iface, csr)
    rid = issued["pdwRequestId"]
    again = request(iface, b"", attributes=None, request_id=rid)
    assert again["pdwDisposition"] == C.DISPOSITION_ISSUED
    assert H.blob_bytes(again["pctbEncodedCert"]) == H.blob_bytes(issued["pctbEncodedCert"])


def test_legacy_iactivation_then_request(server, dcom_conn):
    conn = dcom_conn()
    unk = dcomrt.IActivation(conn.get_dce_rpc()).RemoteActivation(CLSID, IID_D)
    iface = CertIface(unk, IID_D)
    _, csr = make_csr()
    assert request(iface, csr)["pdwDisposition"] == C.DISPOSITION_ISSUED


def test_activation_below_integrity_is_denied(server, dcom_conn):
    conn = dcom_conn(level=RPC_C_AUTHN_LEVEL_CONNECT)
    with pytest.raises(DCERPCException) as exc:
        conn.CoCreateInstanceEx(CLSID, IID_D)
    assert "access_denied" in str(exc.value)


def test_ca_interface_needs_privacy(server, dcom_conn):
    conn = dcom_conn(level=RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
    unk = conn.CoCreateInstanceEx(CLSID, IID_D)  # activation at integrity is fine
    unk.get_cinstance().set_auth_level(RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
    iface = CertIface(unk, IID_D)
    _, csr = make_csr()
    with pytest.raises(DCERPCException) as exc:
        request(iface, csr)
    assert "access_denied" in str(exc.value)


def test_wrong_password_is_denied(server, dcom_conn):
    with pytest.raises(Exception) as exc:
        conn = dcom_conn(password="not-the-password")
        conn.CoCreateInstanceEx(CLSID, IID_D)
    assert "access_denied" in str(exc.value) or "ACCESS_DENIED" in str(exc.value).upper()


def test_server_alive2_resolve_oxid2_and_ping(server, dcom_conn):
    unk = dcom_conn().CoCreateInstanceEx(CLSID, IID_D)
    rpctransport = transport.DCERPCTransportFactory("ncacn_ip_tcp:%s[135]" % ADDRESS)
    dce = rpctransport.get_dce_rpc()
    dce.connect()
    try:
        exporter = dcomrt.IObjectExporter(dce)
        bindings = [b["aNetworkAddr"].rstrip("\x00") for b in exporter.ServerAlive2()]
        assert bindings[0] == seed.CA_NETBIOS and ADDRESS in bindings   # NetBIOS name first, then addresses
        assert not any(seed.DNS_DOMAIN in b for b in bindings)          # never the DNS name
        resolved = [b["aNetworkAddr"].rstrip("\x00") for b in exporter.ResolveOxid2(unk.get_oxid(), [7])]
        assert resolved[-1] == "%s[%d]" % (ADDRESS, server.endpoints["object_exporter_port"])
        setid = exporter.ComplexPing(0, 0, [unk.get_oid()], [])["pSetId"]
        assert exporter.SimplePing(setid)["ErrorCode"] == 0
    finally:
        dce.disconnect()


def _icpr_dce(level=RPC_C_AUTHN_LEVEL_PKT_PRIVACY, password=PASSWORD):
    binding = epm.hept_map(ADDRESS, IID_ICPR, protocol="ncacn_ip_tcp")
    rpctransport = transport.DCERPCTransportFactory(binding)
    rpctransport.set_credentials("enroller", password, "LAB")
    dce = rpctransport.get_dce_rpc()
    dce.set_auth_level(level)
    dce.connect()
    dce.bind(IID_ICPR)
    return binding, dce


def test_ept_lookup_lists_icertpassage(server):
    """rpcdump-style enumeration of port 135 (ept_lookup, as Windows answers it) shows MS-ICPR's endpoint."""
    entries = epm.hept_lookup(ADDRESS)
    bindings = [(str(e["tower"]["Floors"][0]), epm.PrintStringBinding(e["tower"]["Floors"])) for e in entries]
    assert ("91AE6020-9E3C-11CF-8D7C-00AA00C091BE v0.0",
            "ncacn_ip_tcp:%s[%d]" % (ADDRESS, server.endpoints["icpr_port"])) in bindings


def test_icpr_via_endpoint_mapper(server, tmp_path):
    binding, dce = _icpr_dce()
    try:
        assert binding == "ncacn_ip_tcp:%s[%d]" % (ADDRESS, server.endpoints["icpr_port"])
        _, csr = make_csr()
        req = H.CertServerRequest()
        req["dwFlags"] = 0
        req["pwszAuthority"] = H.wstr("LAB-CA")
        req["pdwRequestId"] = 0
        req["pctbAttribs"] = H.blob("CertificateTemplate:User\x00".encode("utf-16-le"))
        req["pctbRequest"] = H.blob(csr)
        resp = dce.request(req, checkError=False)
        assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == C.DISPOSITION_ISSUED
        cert_der = H.blob_bytes(resp["pctbEncodedCert"])
        result = openssl_verify(server.state_dir, cert_der, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        req["pwszAuthority"] = H.wstr("WRONG-CA")
        assert dce.request(req, checkError=False)["ErrorCode"] == C.E_INVALIDARG
    finally:
        dce.disconnect()


def test_icpr_needs_privacy(server):
    _, dce = _icpr_dce(level=RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
    try:
        req = H.CertServerRequest()
        req["dwFlags"] = 0
        req["pwszAuthority"] = H.wstr("LAB-CA")
        req["pdwRequestId"] = 1
        req["pctbAttribs"] = H.blob(b"")
        req["pctbRequest"] = H.blob(b"")
        with pytest.raises(DCERPCException) as exc:
            dce.request(req, checkError=False)
        assert "access_denied" in str(exc.value)
    finally:
        dce.disconnect()


def test_endpoints_file(server):
    ep = server.endpoints
    assert ep["address"] == ADDRESS and ep["rpc_port"] == 135 and ep["pid"] == server.proc.pid
    assert ep["object_exporter_port"] > 0 and ep["icpr_port"] > 0
    assert ep["object_exporter_port"] != ep["icpr_port"]


def test_startup_errors_are_clean(server, tmp_path):
    """A second instance on the same address, or a missing accounts file: exit 1, one line, no traceback."""
    env = dict(os.environ, PYTHONPATH=H.LAB_DIR)
    state = str(tmp_path / "second")
    os.makedirs(state)
    H.write_accounts(state, {"enroller": PASSWORD})
    cmd = [os.sys.executable, "-m", "adcslab.wcce.server", "--state-dir", state, "--address", ADDRESS]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 1
    assert "labca:" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not os.path.exists(os.path.join(state, "ca-endpoints.json"))
    os.unlink(os.path.join(state, "accounts.json"))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 1 and "accounts file" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_dcom_pending_then_approved_then_retrieved(server, dcom_conn):
    """A CA-manager-approval template pends; after approval (the CA's admin API on the same state dir) a
    retrieve by request id with an empty request blob returns the certificate."""
    from adcslab.ca import CertificationAuthority

    conn = dcom_conn()
    iface = CertIface(conn.CoCreateInstanceEx(CLSID, IID_D), IID_D)
    key, csr = make_csr("pending.lab.adcs.test")
    resp = request(iface, csr, attributes="CertificateTemplate:WebServerApproval")
    assert resp["pdwDisposition"] == C.DISPOSITION_UNDER_SUBMISSION, \
        H.blob_bytes(resp["pctbDispositionMessage"]).decode("utf-16-le", "replace")
    assert H.blob_bytes(resp["pctbEncodedCert"]) == b""
    rid = resp["pdwRequestId"]
    still = request(iface, b"", attributes=None, request_id=rid)
    assert still["pdwDisposition"] == C.DISPOSITION_UNDER_SUBMISSION
    ca = CertificationAuthority.open(server.state_dir)
    try:
        ca.approve(rid)
    finally:
        ca.close()
    done = request(iface, b"", attributes=None, request_id=rid)
    assert done["pdwDisposition"] == C.DISPOSITION_ISSUED
    cert = x509.load_der_x509_certificate(H.blob_bytes(done["pctbEncodedCert"]))
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
