"""Handler-level tests of the lab CA's DCOM / MS-WCCE / MS-ICPR code: stubs built and parsed with impacket's
client-side NDR classes, a fake CA backend, no network."""

import struct
import sys
from types import SimpleNamespace as NS

import pytest
from impacket.dcerpc.v5 import dcomrt
from impacket.uuid import bin_to_string, string_to_bin, uuidtup_to_bin

import wcce_helpers as H
from adcslab import seed
from adcslab.wcce import constants as C
from adcslab.wcce import dcom
from adcslab.wcce.certsrv import CertService, decode_attributes_blob, encode_property_info
from adcslab.wcce.ndr import NdrError, NdrReader


def make_ctx(level=6, address="127.0.0.31", user="enroller"):
    account = NS(sam=user, domain="LAB", sid="S-1-5-21-1-2-3-1105", group_sids=["S-1-5-21-1-2-3-513"])
    auth = NS(user=user, domain="LAB", authn_type=10, authn_level=level, account=account) if user else None
    return NS(connection=NS(local_address=address, local_port=135, peer=("127.0.0.1", 50000), state={}),
              auth=auth, object_uuid=None, interface_uuid=None, interface_version=(0, 0), opnum=0, context_id=0,
              server=None)


def fake_requester(ctx, transport):
    return NS(user=ctx.auth.user, domain=ctx.auth.domain, transport=transport)


class World:
    def __init__(self, address="127.0.0.31"):
        self.exp = dcom.ObjectExporter(dns_name=seed.CA_HOST, netbios_name=seed.CA_NETBIOS,
                                       principal="LAB\\" + seed.CA_ACCOUNT)
        self.exp.port = 49777
        self.exp.register_class(dcom.ComClass(C.CLSID_CCERTREQUESTD, [C.IID_ICERTREQUESTD, C.IID_ICERTREQUESTD2]))
        self.ca = H.FakeCA()
        self.svc = CertService(self.ca, self.exp, requester_factory=fake_requester)
        self.tables = {
            C.IID_IREMOTESCMACTIVATOR: dcom.ScmActivator(self.exp).handlers(),
            C.IID_IACTIVATION: dcom.ScmActivator(self.exp).activation_handlers(),
            C.IID_IOBJECTEXPORTER: dcom.OxidResolver([self.exp]).handlers(),
            C.IID_IREMUNKNOWN: dcom.RemUnknown(self.exp).handlers(),
            C.IID_IREMUNKNOWN2: dcom.RemUnknown(self.exp).handlers(),
            C.IID_ICERTREQUESTD: self.svc.dcom_handlers(False),
            C.IID_ICERTREQUESTD2: self.svc.dcom_handlers(True),
            C.IID_ICERTPASSAGE: self.svc.icpr_handlers(),
        }
        self.address = address

    def call(self, iid, req, ipid=None, level=6, resp_cls=None):
        ctx = make_ctx(level, self.address)
        ctx.interface_uuid = iid
        ctx.object_uuid = ipid
        ctx.opnum = req.opnum
        answer = self.tables[iid][req.opnum](ctx, req.getData())
        if resp_cls is None:
            resp_cls = getattr(sys.modules[req.__module__], req.__class__.__name__ + "Response")
        return resp_cls(answer)


class FakeDce:
    """Enough of impacket's DCERPC_v5 for IRemoteSCMActivator / IObjectExporter client code."""

    def __init__(self, world, level=6):
        self.world = world
        self.level = level
        self.iid = None

    def bind(self, iid, *args, **kwargs):
        self.iid = bin_to_string(iid[:16]).lower()

    def connect(self):
        pass

    def get_rpc_transport(self):
        return NS(getRemoteName=lambda: self.world.address)

    def get_auth_type(self):
        return 10

    def request(self, req, uuid=None, checkError=True):
        resp = self.world.call(self.iid, req, level=self.level)
        if checkError and resp["ErrorCode"] != 0:
            raise dcomrt.DCERPCSessionError(error_code=resp["ErrorCode"])
        return resp


def orpcthis():
    o = dcomrt.ORPCTHIS()
    o["cid"] = b"\x42" * 16
    o["extensions"] = dcomrt.NULL
    o["flags"] = 0
    return o


def activate(world, iid=C.IID_ICERTREQUESTD, level=6):
    return dcomrt.IRemoteSCMActivator(FakeDce(world, level)).RemoteCreateInstance(
        string_to_bin(C.CLSID_CCERTREQUESTD), uuidtup_to_bin((iid, "0.0")))


def ipid_of(iface):
    return bin_to_string(iface.get_iPid()).lower()


# ---- activation / resolver ---------------------------------------------------------------------------
def test_activation_returns_objref_and_bindings_with_connected_address():
    w = World("127.0.0.33")
    iface = activate(w)
    bindings = [b["aNetworkAddr"].rstrip("\x00") for b in iface.get_cinstance().get_string_bindings()]
    # as Windows: the NetBIOS name first, then the IP addresses (one the client cannot use, the one it reached);
    # never the DNS name
    assert bindings == [seed.CA_NETBIOS + "[49777]", "192.0.2.12[49777]", "127.0.0.33[49777]"]
    assert not any("lab.adcs.test" in b for b in bindings)
    assert iface.get_oxid() == w.exp.oxid
    assert bin_to_string(iface.get_ipidRemUnknown()).lower() == w.exp.ipid_rem_unknown
    entry, obj = w.exp.lookup(ipid_of(iface))
    assert entry.iid == C.IID_ICERTREQUESTD and obj.oid == iface.get_oid()
    assert entry.public_refs == dcom.DEFAULT_PUBLIC_REFS
    assert iface.get_cinstance().get_auth_level() == C.AUTHN_LEVEL_PKT_PRIVACY


def test_bindings_truncate_the_netbios_name_to_15_characters():
    exp = dcom.ObjectExporter(dns_name="pki-issuing-ca01.lab.adcs.test", netbios_name="pki-issuing-ca01",
                              other_addresses=())
    exp.port = 50000
    assert [b for _t, b in exp.exporter_bindings("10.1.2.3")] == ["PKI-ISSUING-CA0[50000]", "10.1.2.3[50000]"]
    assert [b for _t, b in exp.resolver_bindings("10.1.2.3")] == ["PKI-ISSUING-CA0", "10.1.2.3"]


@pytest.mark.parametrize("level", [1, 2])
def test_activation_below_integrity_is_access_denied(level):
    w = World()
    with pytest.raises(dcom.DcomFault) as exc:
        activate(w, level=level)
    assert exc.value.status == C.ERROR_ACCESS_DENIED
    assert not w.exp.objects


def test_activation_unknown_clsid_and_interface():
    w = World()
    with pytest.raises(dcomrt.DCERPCSessionError) as exc:
        dcomrt.IRemoteSCMActivator(FakeDce(w)).RemoteCreateInstance(
            string_to_bin("11111111-2222-3333-4444-555555555555"), uuidtup_to_bin((C.IID_ICERTREQUESTD, "0.0")))
    assert exc.value.error_code == C.REGDB_E_CLASSNOTREG
    with pytest.raises(dcomrt.DCERPCSessionError) as exc:
        activate(w, iid="11111111-2222-3333-4444-555555555555")
    assert exc.value.error_code == C.E_NOINTERFACE
    assert not w.exp.objects


def test_remote_get_class_object_is_refused_cleanly():
    w = World()
    with pytest.raises(dcomrt.DCERPCSessionError) as exc:
        dcomrt.IRemoteSCMActivator(FakeDce(w)).RemoteGetClassObject(
            string_to_bin(C.CLSID_CCERTREQUESTD), uuidtup_to_bin(("00000001-0000-0000-c000-000000000046", "0.0")))
    assert exc.value.error_code == C.E_NOTIMPL


def test_oxid_resolver_calls():
    w = World("127.0.0.34")
    iface = activate(w)
    exporter = dcomrt.IObjectExporter(FakeDce(w))
    alive = [b["aNetworkAddr"].rstrip("\x00") for b in exporter.ServerAlive2()]
    assert alive == [seed.CA_NETBIOS, "192.0.2.12", "127.0.0.34"]
    resolved = [b["aNetworkAddr"].rstrip("\x00") for b in exporter.ResolveOxid2(w.exp.oxid, [7])]
    assert resolved[-1] == "127.0.0.34[49777]" and resolved[0] == seed.CA_NETBIOS + "[49777]"
    resp = exporter.ResolveOxid(w.exp.oxid, [7])
    assert resp[-1]["aNetworkAddr"].rstrip("\x00") == "127.0.0.34[49777]"
    with pytest.raises(dcomrt.DCERPCSessionError) as exc:
        exporter.ResolveOxid2(w.exp.oxid ^ 1, [7])
    assert exc.value.error_code == C.OR_INVALID_OXID
    assert exporter.ServerAlive()["ErrorCode"] == 0
    ping = exporter.ComplexPing(0, 0, [iface.get_oid()], [])
    setid = ping["pSetId"]
    assert setid and iface.get_oid() in w.exp.ping_sets[setid]["oids"]
    assert exporter.SimplePing(setid)["ErrorCode"] == 0
    with pytest.raises(dcomrt.DCERPCSessionError) as exc:
        exporter.SimplePing(setid ^ 1)
    assert exc.value.error_code == C.OR_INVALID_SET
    exporter.ComplexPing(setid, 1, [], [iface.get_oid()])
    assert not w.exp.ping_sets[setid]["oids"]


def test_unpinged_objects_expire_pinged_ones_stay():
    w = World()
    a, b = activate(w), activate(w)
    exporter = dcomrt.IObjectExporter(FakeDce(w))
    setid = exporter.ComplexPing(0, 0, [a.get_oid()], [])["pSetId"]
    import time
    now = time.monotonic() + dcom.PING_PERIOD * dcom.PING_MISSES + 1
    w.exp.ping_sets[setid]["last"] = now
    w.exp.expire(now)
    assert a.get_oid() in w.exp.objects and b.get_oid() not in w.exp.objects
    assert w.exp.lookup(ipid_of(b)) == (None, None)


# ---- IRemUnknown ---------------------------------------------------------------------------------------
def rem_query(w, ipid, iids, refs=1):
    req = dcomrt.RemQueryInterface()
    req["ORPCthis"] = orpcthis()
    req["ripid"] = string_to_bin(ipid)
    req["cRefs"] = refs
    req["cIids"] = len(iids)
    for iid in iids:
        x = dcomrt.IID()
        x["Data"] = string_to_bin(iid)
        req["iids"].append(x)
    return w.call(C.IID_IREMUNKNOWN2, req, ipid=w.exp.ipid_rem_unknown)


def rem_release(w, ipid, count):
    req = dcomrt.RemRelease()
    req["ORPCthis"] = orpcthis()
    req["cInterfaceRefs"] = 1
    ref = dcomrt.REMINTERFACEREF()
    ref["ipid"] = string_to_bin(ipid)
    ref["cPublicRefs"] = count
    ref["cPrivateRefs"] = 0
    req["InterfaceRefs"].append(ref)
    return w.call(C.IID_IREMUNKNOWN2, req, ipid=w.exp.ipid_rem_unknown)


def ping_ca(w, ipid, iid=C.IID_ICERTREQUESTD):
    req = H.Ping()
    req["ORPCthis"] = orpcthis()
    req["pwszAuthority"] = H.wstr("LAB-CA")
    return w.call(iid, req, ipid=ipid, resp_cls=H.PingResponse)


def test_rem_query_interface_and_release_lifecycle():
    w = World()
    iface = activate(w)
    d_ipid = ipid_of(iface)
    resp = rem_query(w, d_ipid, [C.IID_ICERTREQUESTD2])
    assert resp["ErrorCode"] == 0 and resp["ppQIResults"]["hResult"] == 0
    std = resp["ppQIResults"]["std"]
    d2_ipid = bin_to_string(std["ipid"]).lower()
    assert std["oxid"] == w.exp.oxid and std["oid"] == iface.get_oid() and std["cPublicRefs"] == 1
    assert ping_ca(w, d2_ipid, C.IID_ICERTREQUESTD2)["ErrorCode"] == 0
    # the D interface IPID does not answer as D2; a D2 IPID also serves D calls (D2 derives from D)
    with pytest.raises(dcom.DcomFault) as exc:
        ping_ca(w, d_ipid, C.IID_ICERTREQUESTD2)
    assert exc.value.status == C.RPC_E_INVALID_IPID
    assert ping_ca(w, d2_ipid, C.IID_ICERTREQUESTD)["ErrorCode"] == 0
    # release the D2 reference -> its IPID is gone, the object lives on through the D IPID
    assert rem_release(w, d2_ipid, 1)["ErrorCode"] == 0
    with pytest.raises(dcom.DcomFault) as exc:
        ping_ca(w, d2_ipid, C.IID_ICERTREQUESTD2)
    assert exc.value.status == C.RPC_E_INVALID_IPID
    # partial release keeps the IPID, full release drops the object
    assert rem_release(w, d_ipid, dcom.DEFAULT_PUBLIC_REFS - 1)["ErrorCode"] == 0
    assert ping_ca(w, d_ipid)["ErrorCode"] == 0
    assert rem_release(w, d_ipid, 1)["ErrorCode"] == 0
    assert iface.get_oid() not in w.exp.objects
    with pytest.raises(dcom.DcomFault):
        ping_ca(w, d_ipid)
    assert rem_release(w, d_ipid, 1)["ErrorCode"] == C.E_INVALIDARG


def test_rem_query_interface_errors():
    w = World()
    iface = activate(w)
    resp = rem_query(w, ipid_of(iface), ["11111111-2222-3333-4444-555555555555"])
    assert resp["ErrorCode"] == C.E_NOINTERFACE and resp["ppQIResults"]["hResult"] & 0xFFFFFFFF == C.E_NOINTERFACE
    resp = rem_query(w, "11111111-2222-3333-4444-555555555555", [C.IID_ICERTREQUESTD2])
    assert resp["ErrorCode"] == C.RPC_E_INVALID_IPID
    req = dcomrt.RemQueryInterface()
    req["ORPCthis"] = orpcthis()
    req["ripid"] = iface.get_iPid()
    req["cRefs"] = 1
    req["cIids"] = 0
    with pytest.raises(NdrError):
        w.call(C.IID_IREMUNKNOWN2, req, ipid=w.exp.ipid_rem_unknown)
    with pytest.raises(dcom.DcomFault) as exc:  # IRemUnknown must be called on the exporter's IRemUnknown IPID
        rem_query_with_ipid = dcomrt.RemQueryInterface()
        rem_query_with_ipid["ORPCthis"] = orpcthis()
        rem_query_with_ipid["ripid"] = iface.get_iPid()
        rem_query_with_ipid["cRefs"] = 1
        rem_query_with_ipid["cIids"] = 1
        x = dcomrt.IID()
        x["Data"] = string_to_bin(C.IID_ICERTREQUESTD2)
        rem_query_with_ipid["iids"].append(x)
        w.call(C.IID_IREMUNKNOWN2, rem_query_with_ipid, ipid=ipid_of(iface))
    assert exc.value.status == C.RPC_E_INVALID_IPID


def test_rem_add_ref():
    w = World()
    iface = activate(w)
    req = dcomrt.RemAddRef()
    req["ORPCthis"] = orpcthis()
    req["cInterfaceRefs"] = 1
    ref = dcomrt.REMINTERFACEREF()
    ref["ipid"] = iface.get_iPid()
    ref["cPublicRefs"] = 2
    ref["cPrivateRefs"] = 0
    req["InterfaceRefs"].append(ref)
    resp = w.call(C.IID_IREMUNKNOWN2, req, ipid=w.exp.ipid_rem_unknown)
    assert resp["ErrorCode"] == 0 and [x["Data"] for x in resp["pResults"]] == [0]
    assert w.exp.lookup(ipid_of(iface))[0].public_refs == dcom.DEFAULT_PUBLIC_REFS + 2


# ---- ICertRequestD / D2 ----------------------------------------------------------------------------------
def d_request(w, ipid, attributes, data, authority="LAB-CA", request_id=0, level=6):
    req = H.Request()
    req["ORPCthis"] = orpcthis()
    req["dwFlags"] = 0
    req["pwszAuthority"] = H.wstr(authority)
    req["pdwRequestId"] = request_id
    req["pwszAttributes"] = H.wstr(attributes) if attributes is not None else H.NULL
    req["pctbRequest"] = H.blob(data)
    return w.call(C.IID_ICERTREQUESTD, req, ipid=ipid, level=level)


def test_request_issue_pending_retrieve_deny():
    w = World()
    ipid = ipid_of(activate(w))
    resp = d_request(w, ipid, "CertificateTemplate:User", b"CSR1")
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == 3
    assert H.blob_bytes(resp["pctbEncodedCert"]) == b"CERT:CSR1"
    assert H.blob_bytes(resp["pctbCertChain"]) == b"P7:CSR1"
    assert H.blob_bytes(resp["pctbDispositionMessage"]).decode("utf-16-le") == "Issued\x00"
    call = w.ca.calls[-1]
    assert call[:4] == ("submit", 0, "CertificateTemplate:User", b"CSR1") and call[4].transport == "dcom"
    resp = d_request(w, ipid, "CertificateTemplate:User\npend:1", b"CSR2")
    assert resp["pdwDisposition"] == 5 and H.blob_bytes(resp["pctbEncodedCert"]) == b""
    rid = resp["pdwRequestId"]
    resp = d_request(w, ipid, None, b"", request_id=rid)
    assert resp["pdwDisposition"] == 3 and H.blob_bytes(resp["pctbEncodedCert"]) == b"RETRIEVED"
    resp = d_request(w, ipid, None, b"", request_id=999)
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == 0x80094002
    assert "No such request" in H.blob_bytes(resp["pctbDispositionMessage"]).decode("utf-16-le")
    resp = d_request(w, ipid, "deny:1", b"CSR3")
    assert resp["pdwDisposition"] == 0x80094012
    assert H.blob_bytes(resp["pctbDispositionMessage"]).decode("utf-16-le").startswith("Denied by Policy Module")


def test_request_unknown_ca_name_is_invalidarg():
    w = World()
    ipid = ipid_of(activate(w))
    resp = d_request(w, ipid, "CertificateTemplate:User", b"CSR", authority="OTHER-CA")
    assert resp["ErrorCode"] == C.E_INVALIDARG
    assert not w.ca.calls


def test_request_needs_privacy_and_valid_ipid():
    w = World()
    ipid = ipid_of(activate(w))
    with pytest.raises(dcom.DcomFault) as exc:
        d_request(w, ipid, "a:b", b"CSR", level=5)
    assert exc.value.status == C.ERROR_ACCESS_DENIED
    with pytest.raises(dcom.DcomFault) as exc:
        d_request(w, "11111111-2222-3333-4444-555555555555", "a:b", b"CSR")
    assert exc.value.status == C.RPC_E_INVALID_IPID
    with pytest.raises(dcom.DcomFault):
        d_request(w, None, "a:b", b"CSR")
    assert not w.ca.calls


def test_certipy_style_retrieve_is_rejected_as_bad_stub():
    w = World()
    ipid = ipid_of(activate(w))
    req = H.RequestCertipyRetrieve()
    req["ORPCthis"] = orpcthis()
    req["dwFlags"] = 0
    req["pwszAuthority"] = H.wstr("LAB-CA")
    req["pdwRequestId"] = 7
    req["pwszAttributes"] = H.blob(b"")
    req["pctbRequest"] = H.blob(b"")
    with pytest.raises(NdrError):
        w.call(C.IID_ICERTREQUESTD, req, ipid=ipid)
    assert not w.ca.calls


def test_request2_full_response_and_serial():
    w = World()
    ipid = ipid_of(activate(w, C.IID_ICERTREQUESTD2))
    req = H.Request2()
    req["ORPCthis"] = orpcthis()
    req["pwszAuthority"] = H.wstr("lab-ca")
    req["dwFlags"] = C.CR_IN_FULLRESPONSE
    req["pwszSerialNumber"] = H.wstr("1A2B")
    req["pdwRequestId"] = 0
    req["pwszAttributes"] = H.wstr("CertificateTemplate:User")
    req["pctbRequest"] = H.blob(b"CSR")
    resp = w.call(C.IID_ICERTREQUESTD2, req, ipid=ipid)
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == 3
    assert H.blob_bytes(resp["pctbFullResponse"]) == b"CMC:CSR"
    assert w.ca.calls[-1][5] == "1A2B"
    req["dwFlags"] = 0
    resp = w.call(C.IID_ICERTREQUESTD2, req, ipid=ipid)
    assert H.blob_bytes(resp["pctbFullResponse"]) == b"P7:CSR"


def test_get_ca_cert_property_and_info():
    w = World()
    ipid = ipid_of(activate(w, C.IID_ICERTREQUESTD2))
    req = H.GetCACert()
    req["ORPCthis"] = orpcthis()
    req["fchain"] = 0
    req["pwszAuthority"] = H.wstr("LAB-CA")
    resp = w.call(C.IID_ICERTREQUESTD2, req, ipid=ipid)
    assert resp["ErrorCode"] == 0 and H.blob_bytes(resp["pctbOut"]) == b"CACERT"
    req["fchain"] = 5
    assert w.call(C.IID_ICERTREQUESTD2, req, ipid=ipid)["ErrorCode"] == C.E_INVALIDARG

    def prop(pid, ptype, authority="LAB-CA"):
        r = H.GetCAProperty()
        r["ORPCthis"] = orpcthis()
        r["pwszAuthority"] = H.wstr(authority)
        r["PropID"] = pid
        r["PropIndex"] = 0
        r["PropType"] = ptype
        return w.call(C.IID_ICERTREQUESTD2, r, ipid=ipid)

    resp = prop(6, 4)
    assert resp["ErrorCode"] == 0 and H.blob_bytes(resp["pctbPropertyValue"]) == "LAB-CA\x00".encode("utf-16-le")
    assert H.blob_bytes(prop(0xA, 1)["pctbPropertyValue"]) == struct.pack("<i", 0)
    assert H.blob_bytes(prop(0xC, 3)["pctbPropertyValue"]) == b"\x30\x82SIGNCERT"
    assert prop(0x999, 1)["ErrorCode"] == C.E_INVALIDARG
    assert prop(6, 4, authority="NOPE")["ErrorCode"] == C.E_INVALIDARG

    r = H.GetCAPropertyInfo()
    r["ORPCthis"] = orpcthis()
    r["pwszAuthority"] = H.wstr("LAB-CA")
    resp = w.call(C.IID_ICERTREQUESTD2, r, ipid=ipid)
    assert resp["ErrorCode"] == 0 and resp["pcProperty"] == 2
    info = H.blob_bytes(resp["pctbPropInfo"])
    prop_id, ptype, _, flags, off = struct.unpack_from("<iBBHI", info, 12)
    assert (prop_id, ptype, flags) == (0xC, 3, 1)
    assert info[off:].decode("utf-16-le").split("\x00")[0] == "CA Signature Certificate"


def test_property_info_encoding_offsets():
    data = encode_property_info([(6, 4, 0, "A"), (7, 1, 1, "BC")])
    assert struct.unpack_from("<I", data, 8)[0] == 24
    assert struct.unpack_from("<I", data, 20)[0] == 28
    assert data[24:].decode("utf-16-le") == "A\x00BC\x00"


# ---- MS-ICPR ------------------------------------------------------------------------------------------
def icpr(w, attributes_bytes, data, authority="LAB-CA", request_id=0, level=6):
    req = H.CertServerRequest()
    req["dwFlags"] = 0
    req["pwszAuthority"] = H.wstr(authority)
    req["pdwRequestId"] = request_id
    req["pctbAttribs"] = H.blob(attributes_bytes)
    req["pctbRequest"] = H.blob(data)
    return w.call(C.IID_ICERTPASSAGE, req, level=level)


def test_icpr_request_and_retrieve():
    w = World()
    attrs = "CertificateTemplate:User\nSAN:upn=a@b\x00".encode("utf-16-le")
    resp = icpr(w, attrs, b"CSR")
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == 3
    assert H.blob_bytes(resp["pctbEncodedCert"]) == b"CERT:CSR" and H.blob_bytes(resp["pctbCert"]) == b"P7:CSR"
    assert w.ca.calls[-1][2] == "CertificateTemplate:User\nSAN:upn=a@b"
    assert w.ca.calls[-1][4].transport == "icpr"
    resp = icpr(w, "pend:1\x00".encode("utf-16-le"), b"CSR2")
    rid = resp["pdwRequestId"]
    assert resp["pdwDisposition"] == 5
    resp = icpr(w, b"", b"", request_id=rid)
    assert resp["pdwDisposition"] == 3 and H.blob_bytes(resp["pctbEncodedCert"]) == b"RETRIEVED"
    resp = icpr(w, attrs, b"CSR", authority="X")
    assert resp["ErrorCode"] == C.E_INVALIDARG and resp["pdwDisposition"] == C.E_INVALIDARG
    assert "ERROR_INVALID_PARAMETER" in H.blob_bytes(resp["pctbDispositionMessage"]).decode("utf-16-le")
    assert icpr(w, b"abc", b"CSR")["ErrorCode"] == C.E_INVALIDARG  # odd-length UTF-16
    with pytest.raises(dcom.DcomFault):
        icpr(w, attrs, b"CSR", level=5)


def test_attribute_blob_decoding():
    assert decode_attributes_blob(b"") == ""
    assert decode_attributes_blob("a:b\x00".encode("utf-16-le")) == "a:b"
    with pytest.raises(ValueError):
        decode_attributes_blob(b"\x00")


def test_ndr_reader_rejects_truncation_and_bad_strings():
    with pytest.raises(NdrError):
        NdrReader(b"\x01\x00").u32()
    r = NdrReader(struct.pack("<IIII", 1, 0, 1, 0x41))  # string without NUL terminator
    with pytest.raises(NdrError):
        r.wstring_body()
    r = NdrReader(struct.pack("<III", 5, 0, 0))  # cb 5 with NULL pb
    with pytest.raises(NdrError):
        r.certtransblob()


# ---- encodings the impacket client cannot exercise ---------------------------------------------------------
def test_activation_output_with_several_interfaces_parses_with_impacket():
    iids = [C.IID_IUNKNOWN, C.IID_ICERTREQUESTD, "11111111-2222-3333-4444-555555555555"]
    words, sec = dcom.dualstringarray_words([(7, "127.0.0.31[1234]")], [(10, "")])
    refs = [dcom.objref_standard(iid, 0x1122, 0x3344, "aaaaaaaa-0000-0000-0000-00000000000%d" % i, 5, words, sec)
            for i, iid in enumerate(iids[:2])] + [None]
    out = dcom.build_activation_properties_out(iids, [0, 0, C.E_NOINTERFACE], refs, 0x1122, words, sec,
                                               "bbbbbbbb-0000-0000-0000-000000000000", 6)
    objref = dcomrt.OBJREF_CUSTOM(out)
    blob = dcomrt.ACTIVATION_BLOB(objref["pObjectData"])
    sizes = [s["Data"] for s in blob["CustomHeader"]["pSizes"]]
    assert blob["CustomHeader"]["totalSize"] == blob["dwSize"] == len(objref["pObjectData"]) - 8
    props = dcomrt.PropsOutInfo()
    n = props.fromString(blob["Property"][:sizes[0]])
    props.fromStringReferents(blob["Property"][n:sizes[0]])
    assert props["cIfs"] == 3
    assert [h["Data"] & 0xFFFFFFFF for h in props["phresults"]] == [0, 0, C.E_NOINTERFACE]
    second = dcomrt.OBJREF_STANDARD(b"".join(props["ppIntfData"][1]["abData"]))
    assert bin_to_string(second["iid"]).lower() == C.IID_ICERTREQUESTD
    assert second["std"]["oxid"] == 0x1122 and second["std"]["cPublicRefs"] == 5
    scm = dcomrt.ScmReplyInfoData()
    reply = blob["Property"][sizes[0]:sizes[0] + sizes[1]]
    n = scm.fromString(reply)
    scm.fromStringReferents(reply[n:])
    assert scm["remoteReply"]["Oxid"] == 0x1122 and scm["remoteReply"]["authnHint"] == 6


def test_orpcthis_extensions_are_skipped_and_version_checked():
    from adcslab.wcce.ndr import ComVersionError, NdrWriter

    w = NdrWriter()
    w.u16(5).u16(7).u32(0).u32(0).guid(b"\x01" * 16)
    w.pointer(True)  # extensions
    w.u32(1).u32(0).pointer(True)  # ORPC_EXTENT_ARRAY size 1
    w.u32(2).pointer(True).pointer(False)  # array of 2 pointers (size rounded to 2)
    w.u32(8).guid(b"\x02" * 16).u32(8).raw(b"EXTDATA!")
    w.u32(0xDEADBEEF)
    r = NdrReader(w.bytes())
    this = r.orpcthis()
    assert this["version"] == (5, 7) and this["extensions"][0][1] == b"EXTDATA!"
    assert r.u32() == 0xDEADBEEF
    bad = NdrWriter().u16(6).u16(1).u32(0).u32(0).guid(b"\x01" * 16).pointer(False).bytes()
    with pytest.raises(ComVersionError):
        NdrReader(bad).orpcthis()


def test_guard_maps_errors_to_faults():
    from adcslab.rpc import RpcFault
    from adcslab.wcce.ndr import ComVersionError
    from adcslab.wcce.service import RPC_S_CALL_FAILED, guard

    def raiser(exc):
        def fn(ctx, stub):
            raise exc
        return guard(fn, "test")

    ctx = make_ctx()
    for exc, status in [(NdrError("x"), C.RPC_X_BAD_STUB_DATA), (ComVersionError("v"), C.RPC_E_VERSION_MISMATCH),
                        (dcom.DcomFault(C.RPC_E_INVALID_IPID), C.RPC_E_INVALID_IPID),
                        (RuntimeError("boom"), RPC_S_CALL_FAILED)]:
        with pytest.raises(RpcFault) as got:
            raiser(exc)(ctx, b"")
        assert got.value.status == status


def test_legacy_remote_activation():
    w = World("127.0.0.37")
    iface = dcomrt.IActivation(FakeDce(w)).RemoteActivation(string_to_bin(C.CLSID_CCERTREQUESTD),
                                                            uuidtup_to_bin((C.IID_ICERTREQUESTD, "0.0")))
    bindings = [b["aNetworkAddr"].rstrip("\x00") for b in iface.get_cinstance().get_string_bindings()]
    assert bindings[-1] == "127.0.0.37[49777]" and bindings[0] == seed.CA_NETBIOS + "[49777]"
    entry, obj = w.exp.lookup(ipid_of(iface))
    assert entry.iid == C.IID_ICERTREQUESTD and obj.oid == iface.get_oid() and iface.get_oxid() == w.exp.oxid
    with pytest.raises(dcomrt.DCERPCSessionError) as exc:
        dcomrt.IActivation(FakeDce(w)).RemoteActivation(string_to_bin("11111111-2222-3333-4444-555555555555"),
                                                        uuidtup_to_bin((C.IID_ICERTREQUESTD, "0.0")))
    assert exc.value.error_code == C.REGDB_E_CLASSNOTREG
    with pytest.raises(dcom.DcomFault):
        dcomrt.IActivation(FakeDce(w, level=2)).RemoteActivation(string_to_bin(C.CLSID_CCERTREQUESTD),
                                                                 uuidtup_to_bin((C.IID_ICERTREQUESTD, "0.0")))


def test_truncated_and_corrupted_stubs_fail_cleanly():
    """Every prefix and a bounded set of byte flips of valid stubs: a reply, NdrError or DcomFault, nothing else."""
    import random

    w = World()
    d2_ipid = ipid_of(activate(w, C.IID_ICERTREQUESTD2))
    rng = random.Random(1234)
    req = H.Request2()
    req["ORPCthis"] = orpcthis()
    req["pwszAuthority"] = H.wstr("LAB-CA")
    req["dwFlags"] = 0
    req["pwszSerialNumber"] = H.NULL
    req["pdwRequestId"] = 0
    req["pwszAttributes"] = H.wstr("CertificateTemplate:User")
    req["pctbRequest"] = H.blob(b"CSR-BYTES")
    icpr_req = H.CertServerRequest()
    icpr_req["dwFlags"] = 0
    icpr_req["pwszAuthority"] = H.wstr("LAB-CA")
    icpr_req["pdwRequestId"] = 0
    icpr_req["pctbAttribs"] = H.blob("a:b\x00".encode("utf-16-le"))
    icpr_req["pctbRequest"] = H.blob(b"CSR")
    rq = dcomrt.RemQueryInterface()
    rq["ORPCthis"] = orpcthis()
    rq["ripid"] = string_to_bin(d2_ipid)
    rq["cRefs"] = 1
    rq["cIids"] = 1
    x = dcomrt.IID()
    x["Data"] = string_to_bin(C.IID_ICERTREQUESTD)
    rq["iids"].append(x)
    cases = [(C.IID_ICERTREQUESTD2, 6, req.getData(), d2_ipid), (C.IID_ICERTPASSAGE, 0, icpr_req.getData(), None),
             (C.IID_IREMUNKNOWN2, 3, rq.getData(), w.exp.ipid_rem_unknown)]
    scm_stub = []

    class Capture(FakeDce):
        def request(self, r, uuid=None, checkError=True):
            scm_stub.append(r.getData())
            return FakeDce.request(self, r, uuid, checkError)

    dcomrt.IRemoteSCMActivator(Capture(w)).RemoteCreateInstance(string_to_bin(C.CLSID_CCERTREQUESTD),
                                                                uuidtup_to_bin((C.IID_ICERTREQUESTD, "0.0")))
    cases.append((C.IID_IREMOTESCMACTIVATOR, 4, scm_stub[0], None))
    for iid, opnum, stub, ipid in cases:
        variants = [stub[:n] for n in range(len(stub))]
        for _ in range(150):
            mutated = bytearray(stub)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            variants.append(bytes(mutated))
        for variant in variants:
            ctx = make_ctx()
            ctx.interface_uuid, ctx.object_uuid, ctx.opnum = iid, ipid, opnum
            try:
                reply = w.tables[iid][opnum](ctx, variant)
            except (NdrError, dcom.DcomFault):
                continue
            assert isinstance(reply, bytes)
