"""The wire layer in front of the real CA backend with the lab's own accounts (a copy of accounts.json and the lab
PKI, built-in templates), on 127.0.0.63: requester names as AD CS records them, CA state properties, Request2
retrieval with a full response, and manager approval retrieved over MS-ICPR."""

import json
import os

import pytest
from cryptography import x509
from impacket.dcerpc.v5 import dcomrt
from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY
from impacket.uuid import uuidtup_to_bin

import wcce_helpers as H
from adcslab.wcce import constants as C

ADDRESS = "127.0.0.63"
IID_D2 = uuidtup_to_bin((C.IID_ICERTREQUESTD2, "0.0"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab CA listens on port 135, which needs root (the lab runs as root)")
    assert H.address_free(ADDRESS), "port 135 on %s is already in use" % ADDRESS
    state = H.copy_lab_state(str(tmp_path_factory.mktemp("wcce-lab-accounts")))
    if state is None:
        pytest.skip("the lab has not been set up (no %s/accounts.json or pki/): run make lab-up" % H.LAB_STATE)
    proc = H.ServerProcess(state, ADDRESS).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture()
def d2(server):
    conns = []

    def _open(user, domain):
        account = H.lab_account("enroller")
        dcomrt.INTERFACE.CONNECTIONS.pop(ADDRESS, None)
        conn = dcomrt.DCOMConnection(ADDRESS, user, account["password"], domain, oxidResolver=True,
                                     authLevel=RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        conns.append(conn)
        return H.dcom_cert_iface(conn, IID_D2)

    yield _open
    for conn in conns:
        try:
            conn.disconnect()
        except Exception:
            pass


def show(server, request_id):
    res = H.ca_cli(server.state_dir, "show", str(request_id))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def request2(iface, csr=b"", request_id=0, flags=0, attributes="CertificateTemplate:User"):
    req = H.Request2()
    req["pwszAuthority"] = H.wstr("LAB-CA")
    req["dwFlags"] = flags
    req["pwszSerialNumber"] = H.NULL
    req["pdwRequestId"] = request_id
    req["pwszAttributes"] = H.wstr(attributes) if attributes is not None else H.NULL
    req["pctbRequest"] = H.blob(csr)
    return iface.call(req, check=False)


@pytest.mark.parametrize("user,domain", [("ENROLLER", "lab.adcs.test"), ("Enroller", "LAB"),
                                         ("enroller@lab.adcs.test", "")])
def test_requester_is_canonical_sam_and_netbios_domain(server, d2, user, domain):
    iface = d2(user, domain)
    _, csr = H.make_csr()
    resp = request2(iface, csr)
    assert resp["pdwDisposition"] == C.DISPOSITION_ISSUED, H.text_of(resp["pctbDispositionMessage"])
    assert show(server, resp["pdwRequestId"])["requester"] == "LAB\\enroller"


def test_requester_carries_sid_and_groups(server):
    """The Requester built for the CA: account SID and token groups from accounts.json."""
    from types import SimpleNamespace as NS

    from adcslab.rpc import AccountStore
    from adcslab.wcce.certsrv import _default_requester

    store = AccountStore.from_file(os.path.join(server.state_dir, "accounts.json"))
    account = store.lookup("lab.adcs.test", "ENROLLER")
    ctx = NS(auth=NS(user="ENROLLER", domain="LAB.ADCS.TEST", authn_type=10, account=account))
    requester = _default_requester(ctx, "icpr")
    lab = H.lab_account("enroller")
    assert (requester.user, requester.domain, requester.display) == ("enroller", "LAB", "LAB\\enroller")
    assert requester.sid == lab["sid"] and requester.group_sids == lab["group_sids"]
    assert requester.transport == "icpr"


@pytest.mark.parametrize("prop_id", [0x13, 0x14], ids=["CACERTSTATE", "CRLSTATE"])
def test_ca_state_properties_are_byte_arrays(server, d2, prop_id):
    iface = d2("enroller", "LAB")
    req = H.GetCAProperty()
    req["pwszAuthority"] = H.wstr("LAB-CA")
    req["PropID"], req["PropIndex"], req["PropType"] = prop_id, 0, C.PROPTYPE_LONG
    resp = iface.call(req, check=False)
    assert resp["ErrorCode"] == 0
    assert H.blob_bytes(resp["pctbPropertyValue"]) == b"\x03"   # one CA certificate, CA_DISP_VALID
    assert "handler failed" not in server.log()


def test_request2_retrieve_honours_full_response_flag(server, d2):
    iface = d2("enroller", "LAB")
    _, csr = H.make_csr()
    resp = request2(iface, csr)
    rid = resp["pdwRequestId"]
    cert = H.blob_bytes(resp["pctbEncodedCert"])
    plain = request2(iface, b"", rid, flags=0, attributes=None)
    full = request2(iface, b"", rid, flags=C.CR_IN_FULLRESPONSE, attributes=None)
    assert plain["pdwDisposition"] == full["pdwDisposition"] == C.DISPOSITION_ISSUED
    assert H.blob_bytes(plain["pctbEncodedCert"]) == H.blob_bytes(full["pctbEncodedCert"]) == cert
    from cryptography.hazmat.primitives.serialization import pkcs7

    chain = pkcs7.load_der_pkcs7_certificates(H.blob_bytes(plain["pctbFullResponse"]))
    assert x509.load_der_x509_certificate(cert) in chain
    full_blob = H.blob_bytes(full["pctbFullResponse"])
    assert full_blob != H.blob_bytes(plain["pctbFullResponse"])
    # a CMC PKIResponse: a signedData ContentInfo whose eContentType is id-cct-PKIResponse (1.3.6.1.5.5.7.12.3)
    assert bytes.fromhex("06082b06010505070c03") in full_blob


def test_pending_approved_then_retrieved_over_icpr(server):
    enroller = H.lab_account("enroller")
    dce = H.icpr_connect(ADDRESS, server.endpoints["icpr_port"], enroller["sam"], enroller["password"])
    key, csr = H.make_csr("approval.lab.adcs.test")
    resp = H.icpr_request(dce, csr, attributes="CertificateTemplate:WebServerApproval")
    assert resp["ErrorCode"] == 0
    assert resp["pdwDisposition"] == C.DISPOSITION_UNDER_SUBMISSION, H.text_of(resp["pctbDispositionMessage"])
    rid = resp["pdwRequestId"]
    assert rid > 0 and H.blob_bytes(resp["pctbEncodedCert"]) == b""
    # still pending when asked again
    resp = H.icpr_request(dce, b"", attributes="", request_id=rid)
    assert resp["pdwDisposition"] == C.DISPOSITION_UNDER_SUBMISSION
    approved = H.ca_cli(server.state_dir, "approve", str(rid))
    assert approved.returncode == 0, approved.stdout + approved.stderr
    resp = H.icpr_request(dce, b"", attributes="", request_id=rid)
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == C.DISPOSITION_ISSUED, \
        H.text_of(resp["pctbDispositionMessage"])
    assert resp["pdwRequestId"] == rid
    cert = x509.load_der_x509_certificate(H.blob_bytes(resp["pctbEncodedCert"]))
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert show(server, rid)["requester"] == "LAB\\enroller"
    dce.disconnect()


def test_pending_denied_then_retrieved_over_icpr(server):
    enroller = H.lab_account("enroller")
    dce = H.icpr_connect(ADDRESS, server.endpoints["icpr_port"], enroller["sam"], enroller["password"])
    _, csr = H.make_csr("denied.lab.adcs.test")
    rid = H.icpr_request(dce, csr, attributes="CertificateTemplate:WebServerApproval")["pdwRequestId"]
    assert H.ca_cli(server.state_dir, "deny", str(rid)).returncode == 0
    resp = H.icpr_request(dce, b"", attributes="", request_id=rid)
    assert resp["pdwDisposition"] == 0x80094014  # CERTSRV_E_ADMIN_DENIED_REQUEST
    assert H.blob_bytes(resp["pctbEncodedCert"]) == b""
    assert "denied" in H.text_of(resp["pctbDispositionMessage"]).lower()
    dce.disconnect()
