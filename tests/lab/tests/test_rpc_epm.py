"""Endpoint mapper (adcslab.rpc.epm) and AccountStore tests."""

import errno
import json
import os
import socket
import struct
import sys

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from impacket import ntlm  # noqa: E402
from impacket.dcerpc.v5 import epm as iepm, transport  # noqa: E402
from impacket.dcerpc.v5.rpcrt import DCERPCException  # noqa: E402
from impacket.uuid import uuidtup_to_bin  # noqa: E402

from adcslab.rpc import AccountStore, Interface, RpcServer  # noqa: E402
from adcslab.rpc.epm import EPT_S_NOT_REGISTERED, EndpointMapper, decode_tower, encode_tower  # noqa: E402

ICPR = "91ae6020-9e3c-11cf-8d7c-00aa00c091be"


@pytest.fixture
def servers():
    started = []

    def start(address, port, ifaces):
        srv = RpcServer(address, port, ifaces, AccountStore())
        srv.start()
        started.append(srv)
        return srv

    yield start
    for s in started:
        s.stop()


def _dce(srv):
    t = transport.DCERPCTransportFactory("ncacn_ip_tcp:%s[%d]" % (srv.address, srv.port))
    dce = t.get_dce_rpc()
    dce.connect()
    return dce


def test_tower_roundtrip_and_impacket_parse():
    tower = encode_tower(ICPR, (0, 0), "ncacn_ip_tcp", "127.0.0.12", 49701)
    info = decode_tower(tower)
    assert (info.interface_uuid, info.interface_version) == (ICPR, (0, 0))
    assert (info.protocol, info.port, info.address) == ("ncacn_ip_tcp", 49701, "127.0.0.12")
    parsed = iepm.EPMTower(tower)
    assert str(parsed["Floors"][0]) == "%s v0.0" % ICPR.upper()
    assert iepm.PrintStringBinding(parsed["Floors"]) == "ncacn_ip_tcp:127.0.0.12[49701]"


def test_decode_tower_rejects_garbage():
    for bad in (b"", b"\x05\x00", b"\x03\x00\x13\x00" + b"\x0d" * 10, os.urandom(7)):
        with pytest.raises(ValueError):
            decode_tower(bad)


def test_hept_map_returns_registered_port(servers):
    mapper = EndpointMapper()
    icpr_srv = servers("127.0.0.29", 0, [Interface(ICPR, (0, 0), {0: lambda ctx, stub: b"\x00" * 4})])
    mapper.register(ICPR, (0, 0), protocol="ncacn_ip_tcp", address="0.0.0.0", port=icpr_srv.port)
    epm_srv = servers("127.0.0.29", 0, [mapper.interface()])
    dce = _dce(epm_srv)
    try:
        binding = iepm.hept_map("127.0.0.29", uuidtup_to_bin((ICPR, "0.0")), protocol="ncacn_ip_tcp", dce=dce)
        assert binding == "ncacn_ip_tcp:127.0.0.29[%d]" % icpr_srv.port
        # a second look-up on the same connection (impacket binds again) also works
        binding2 = iepm.hept_map("127.0.0.29", uuidtup_to_bin((ICPR, "0.0")), protocol="ncacn_ip_tcp", dce=dce)
        assert binding2 == binding
        with pytest.raises(DCERPCException) as exc:
            iepm.hept_map("127.0.0.29", uuidtup_to_bin(("11111111-2222-3333-4444-555555555555", "1.0")),
                          protocol="ncacn_ip_tcp", dce=dce)
        assert "ept_s_not_registered" in str(exc.value)
    finally:
        dce.disconnect()
    # the returned binding really reaches the ICPR server
    t = transport.DCERPCTransportFactory(binding)
    d2 = t.get_dce_rpc()
    d2.connect()
    d2.bind(uuidtup_to_bin((ICPR, "0.0")))
    d2.call(0, b"")
    assert d2.recv() == b"\x00" * 4
    d2.disconnect()


def test_ept_map_tower_address_and_versions(servers):
    mapper = EndpointMapper()
    mapper.register("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", (1, 2), port=50001)
    mapper.register(ICPR, (0, 0), address="127.0.0.99", port=50002)
    epm_srv = servers("127.0.0.29", 0, [mapper.interface()])
    dce = _dce(epm_srv)
    try:
        dce.bind(iepm.MSRPC_UUID_PORTMAP)

        def ept_map(uuid, ver):
            tower = encode_tower(uuid, ver, "ncacn_ip_tcp", "0.0.0.0", 0)
            req = iepm.ept_map()
            req["max_towers"] = 4
            req["map_tower"]["tower_length"] = len(tower)
            req["map_tower"]["tower_octet_string"] = tower
            dce.call(3, req)
            answer = dce.recv()
            resp = iepm.ept_mapResponse(answer)
            return resp, struct.unpack("<I", answer[-4:])[0]

        resp, status = ept_map("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", (1, 1))
        assert status == 0 and resp["num_towers"] == 1
        info = decode_tower(b"".join(resp["ITowers"][0]["Data"]["tower_octet_string"]))
        assert info.port == 50001 and info.address == "127.0.0.29"   # 0.0.0.0 -> the address reached
        resp, status = ept_map("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", (1, 3))
        assert status == EPT_S_NOT_REGISTERED and resp["num_towers"] == 0
        resp, status = ept_map("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", (2, 0))
        assert status == EPT_S_NOT_REGISTERED
        resp, status = ept_map(ICPR, (0, 0))
        info = decode_tower(b"".join(resp["ITowers"][0]["Data"]["tower_octet_string"]))
        assert (info.address, info.port) == ("127.0.0.99", 50002)
    finally:
        dce.disconnect()


def _lookup_page(dce, handle=None, max_ents=500, ifid=None, vers_option=iepm.RPC_C_VERS_ALL):
    req = iepm.ept_lookup()
    req["inquiry_type"] = iepm.RPC_C_EP_MATCH_BY_IF if ifid else iepm.RPC_C_EP_ALL_ELTS
    req["object"] = iepm.NULL
    if ifid:
        req["Ifid"]["Uuid"] = ifid[:16]
        req["Ifid"]["VersMajor"] = struct.unpack("<H", ifid[16:18])[0]   # (impacket's hept_lookup sends bytes: 0)
        req["Ifid"]["VersMinor"] = struct.unpack("<H", ifid[18:])[0]
    else:
        req["Ifid"] = iepm.NULL
    req["vers_option"] = vers_option
    if handle is not None:
        req["entry_handle"] = handle
    req["max_ents"] = max_ents
    dce.call(2, req)
    answer = dce.recv()
    return iepm.ept_lookupResponse(answer), struct.unpack("<I", answer[-4:])[0]


def test_ept_lookup_enumerates_like_windows(servers):
    """rpcdump-style enumeration (impacket hept_lookup) lists every registration; paging continues through the
    context handle until it comes back NULL; by-interface lookups honour the version option; nothing registered
    is EPT_S_NOT_REGISTERED."""
    mapper = EndpointMapper()
    other = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    mapper.register(other, (1, 2), port=50001, annotation="other service")
    mapper.register(ICPR, (0, 0), address="127.0.0.99", port=50002)
    mapper.register("bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee", (3, 0), port=50003)
    epm_srv = servers("127.0.0.29", 0, [mapper.interface()])
    dce = _dce(epm_srv)
    try:
        dce.bind(iepm.MSRPC_UUID_PORTMAP)
        entries = iepm.hept_lookup(None, dce=dce)
        bindings = sorted(iepm.PrintStringBinding(e["tower"]["Floors"]) for e in entries)
        assert bindings == ["ncacn_ip_tcp:127.0.0.29[50001]", "ncacn_ip_tcp:127.0.0.29[50003]",
                            "ncacn_ip_tcp:127.0.0.99[50002]"]
        assert sorted(e["annotation"] for e in entries)[-1] == b"other service\x00"
        # paging: one entry per call, handle non-NULL until the last page
        resp, status = _lookup_page(dce, max_ents=1)
        seen = [resp["num_ents"]]
        while not resp["entry_handle"].isNull():
            assert status == 0
            resp, status = _lookup_page(dce, handle=resp["entry_handle"], max_ents=1)
            seen.append(resp["num_ents"])
        assert seen == [1, 1, 1] and status == 0
        # the finished handle is gone: reusing it is a context mismatch fault
        first, _ = _lookup_page(dce, max_ents=1)
        _lookup_page(dce, handle=first["entry_handle"], max_ents=5)
        with pytest.raises(DCERPCException) as exc:
            _lookup_page(dce, handle=first["entry_handle"], max_ents=5)
        assert "nca_s_fault_context_mismatch" in str(exc.value).lower()
        # by interface, with version options
        ifid = uuidtup_to_bin((other, "1.1"))
        resp, status = _lookup_page(dce, ifid=ifid, vers_option=iepm.RPC_C_VERS_COMPATIBLE)
        assert status == 0 and resp["num_ents"] == 1
        resp, status = _lookup_page(dce, ifid=ifid, vers_option=iepm.RPC_C_VERS_EXACT)
        assert status == EPT_S_NOT_REGISTERED and resp["num_ents"] == 0
        # ept_lookup_handle_free (opnum 4) drops an unfinished enumeration
        first, _ = _lookup_page(dce, max_ents=1)
        dce.call(4, first["entry_handle"].getData())
        answer = dce.recv()
        assert answer == b"\x00" * 24
        with pytest.raises(DCERPCException):
            _lookup_page(dce, handle=first["entry_handle"], max_ents=5)
    finally:
        dce.disconnect()
    empty = servers("127.0.0.29", 0, [EndpointMapper().interface()])
    dce = _dce(empty)
    try:
        dce.bind(iepm.MSRPC_UUID_PORTMAP)
        resp, status = _lookup_page(dce)
        assert status == EPT_S_NOT_REGISTERED and resp["num_ents"] == 0 and resp["entry_handle"].isNull()
    finally:
        dce.disconnect()


def test_hept_map_on_port_135(servers):
    if os.geteuid() != 0:
        pytest.skip("port 135 needs root")
    mapper = EndpointMapper()
    mapper.register(ICPR, (0, 0), port=49777)
    try:
        servers("127.0.0.28", 135, [mapper.interface()])
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            pytest.skip("127.0.0.28:135 not available: %s" % exc)
        raise
    assert iepm.hept_map("127.0.0.28", uuidtup_to_bin((ICPR, "0.0")), protocol="ncacn_ip_tcp") == \
        "ncacn_ip_tcp:127.0.0.28[49777]"


def test_register_validation():
    mapper = EndpointMapper()
    with pytest.raises(ValueError):
        mapper.register(ICPR, (0, 0), protocol="ncacn_np", port=1)
    with pytest.raises(ValueError):
        mapper.register(ICPR, (0, 0), port=0)
    with pytest.raises(OSError):
        mapper.register(ICPR, (0, 0), address="not-an-ip", port=5)
    mapper.register(ICPR, (0, 0), port=5)
    mapper.register(ICPR, (0, 0), port=6)          # re-registration replaces
    assert [r.port for r in mapper.lookup(ICPR, (0, 0), "ncacn_ip_tcp")] == [6]
    mapper.unregister(ICPR)
    assert mapper.lookup(ICPR, (0, 0), "ncacn_ip_tcp") == []


def test_account_store_lookup(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps([
        {"sam": "enroller", "domain": "LAB", "upn": "enroller@lab.adcs.test", "password": "x",
         "nt_hash": ntlm.compute_nthash("x").hex(), "sid": "S-1-5-21-1", "group_sids": ["S-1-5-32-574"],
         "kind": "user"},
        {"sam": "LABHOST01$", "domain": "LAB", "nt_hash": ntlm.compute_nthash("y").hex(), "sid": "S-1-5-21-2",
         "group_sids": [], "kind": "computer", "dns_host_name": "labhost01.lab.adcs.test"},
    ]))
    store = AccountStore.from_file(path)
    acc = store.lookup("LAB", "ENROLLER")
    assert acc is not None and acc.sid == "S-1-5-21-1" and acc.nt_hash == ntlm.compute_nthash("x")
    assert acc.group_sids == ["S-1-5-32-574"] and acc.kind == "user" and acc.enabled
    assert store.lookup("lab.adcs.test", "enroller") is acc
    assert store.lookup("", "enroller") is acc
    assert store.lookup("", "enroller@LAB.ADCS.TEST") is acc
    assert store.lookup("lab", "labhost01$").kind == "computer"
    assert store.lookup("OTHER", "enroller") is None
    assert store.lookup("LAB", "nobody") is None
    assert store.lookup("LAB", "") is None
    assert "nt_hash" not in repr(acc) and "password" not in repr(acc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"sam": "a", "domain": "LAB", "nt_hash": "zz"}]))
    with pytest.raises(ValueError):
        AccountStore.from_file(bad)


def test_server_registers_dns_alias():
    store = AccountStore()
    from adcslab.rpc.accounts import Account
    store.add(Account("u1", "CORP", b"\x00" * 16))
    RpcServer("127.0.0.29", 0, [], store, netbios_domain="CORP", dns_domain="corp.example")
    assert store.lookup("corp.example", "u1") is not None


def test_port_in_use_raises_cleanly(servers):
    srv = servers("127.0.0.29", 0, [])
    other = RpcServer("127.0.0.29", srv.port, [], AccountStore())
    with pytest.raises(OSError):
        other.start()
    s = socket.create_connection(("127.0.0.29", srv.port), timeout=2)
    s.close()
