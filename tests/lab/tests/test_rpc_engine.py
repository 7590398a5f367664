"""Tests of the lab DCE/RPC engine (adcslab.rpc) with impacket's client and a strict verifying client.

No running lab needed: each test starts its own server on 127.0.0.21-29 with a dynamic port.
"""

import json
import os
import struct
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from impacket import ntlm  # noqa: E402
from impacket.dcerpc.v5 import transport  # noqa: E402
from impacket.dcerpc.v5.rpcrt import DCERPCException  # noqa: E402
from impacket.uuid import uuidtup_to_bin  # noqa: E402

from adcslab.rpc import AccountStore, Interface, RpcFault, RpcServer, constants as C  # noqa: E402
from adcslab.rpc.client import BTFN, NDR20, NDR64, FaultError, StrictClient  # noqa: E402

TOY = "12345678-1234-abcd-ef00-0123456789ab"
PRIV = "87654321-4321-dcba-00fe-ba9876543210"
PASSWORD = "Enr0ll-me!"


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def accounts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rpc") / "accounts.json"
    accounts = [
        {"sam": "enroller", "domain": "LAB", "upn": "enroller@lab.adcs.test", "password": PASSWORD,
         "nt_hash": ntlm.compute_nthash(PASSWORD).hex(), "sid": "S-1-5-21-1-2-3-1105",
         "group_sids": ["S-1-5-21-1-2-3-513"], "kind": "user"},
        {"sam": "disabled", "domain": "LAB", "upn": "disabled@lab.adcs.test", "password": PASSWORD,
         "nt_hash": ntlm.compute_nthash(PASSWORD).hex(), "sid": "S-1-5-21-1-2-3-1106", "group_sids": [],
         "kind": "user", "enabled": False},
        {"sam": "LABHOST01$", "domain": "LAB", "upn": "", "password": "Machine-Pw-1",
         "nt_hash": ntlm.compute_nthash("Machine-Pw-1").hex(), "sid": "S-1-5-21-1-2-3-1107", "group_sids": [],
         "kind": "computer", "dns_host_name": "labhost01.lab.adcs.test"},
    ]
    path.write_text(json.dumps(accounts))
    return path


def _echo(ctx, stub):
    who = "%s\\%s" % (ctx.auth.domain, ctx.auth.user) if ctx.auth else "-"
    tail = ("|%s|%d|%d|%s" % (who, ctx.authn_level, ctx.auth.auth_context_id if ctx.auth else 0,
                              ctx.object_uuid or "")).encode()
    return stub[::-1] + tail


def _big(ctx, stub):
    n = struct.unpack("<I", stub[:4])[0]
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def _fault(ctx, stub):
    raise RpcFault(0x80070057, "bad argument")


def _crash(ctx, stub):
    return struct.unpack("<Q", stub[:8])[0]  # struct.error on short stubs, and not bytes otherwise


def _slow(ctx, stub):
    time.sleep(0.3)
    return struct.pack("<I", threading.get_ident() & 0xFFFFFFFF)


def _sid(ctx, stub):
    return ctx.auth.account.sid.encode() if ctx.auth else b""


def toy_interfaces():
    return [
        Interface(TOY, (1, 0), {0: _echo, 1: _big, 2: _fault, 3: _crash, 4: _slow, 5: _sid}, name="toy"),
        Interface(PRIV, (1, 0), {0: _echo}, min_authn_level=C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY, name="private"),
    ]


@pytest.fixture
def make_server(accounts_file):
    servers = []

    def factory(address="127.0.0.21", **kw):
        srv = RpcServer(address, 0, toy_interfaces(), AccountStore.from_file(accounts_file), **kw)
        srv.start()
        servers.append(srv)
        return srv

    yield factory
    for s in servers:
        s.stop()


def impacket_dce(srv, level=C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY, user="enroller", password=PASSWORD, domain="LAB",
                 iface=TOY, bind=True):
    t = transport.DCERPCTransportFactory("ncacn_ip_tcp:%s[%d]" % (srv.address, srv.port))
    if level > C.RPC_C_AUTHN_LEVEL_NONE:
        t.set_credentials(user, password, domain)
    dce = t.get_dce_rpc()
    dce.set_auth_level(level)
    dce.connect()
    if bind:
        dce.bind(uuidtup_to_bin((iface, "1.0")))
    return dce


def call(dce, opnum, stub, uuid=None):
    dce.call(opnum, stub, uuid)
    return dce.recv()


def server_alive(srv):
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    try:
        assert call(dce, 0, b"ping")[:4] == b"gnip"
    finally:
        dce.disconnect()


# ----------------------------------------------------------------------------------------------
# impacket client at every level
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [C.RPC_C_AUTHN_LEVEL_NONE, C.RPC_C_AUTHN_LEVEL_CONNECT,
                                   C.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY])
def test_impacket_echo_at_each_level(make_server, level):
    srv = make_server("127.0.0.21")
    dce = impacket_dce(srv, level)
    try:
        for i in range(3):  # several PDUs: RC4 streams and sequence numbers must stay in step
            reply = call(dce, 0, b"hello %d" % i)
            body, who, lvl, _cid, _obj = reply.split(b"|")
            assert body == (b"hello %d" % i)[::-1]
            assert int(lvl) == level
            assert who == (b"-" if level == C.RPC_C_AUTHN_LEVEL_NONE else b"LAB\\enroller")
    finally:
        dce.disconnect()


def test_handler_sees_account(make_server):
    srv = make_server("127.0.0.21")
    dce = impacket_dce(srv)
    try:
        assert call(dce, 5, b"") == b"S-1-5-21-1-2-3-1105"
    finally:
        dce.disconnect()


def test_dns_domain_and_machine_account(make_server):
    srv = make_server("127.0.0.21")
    for user, pw, dom in (("enroller", PASSWORD, "lab.adcs.test"), ("LABHOST01$", "Machine-Pw-1", "LAB")):
        dce = impacket_dce(srv, user=user, password=pw, domain=dom)
        try:
            assert call(dce, 0, b"x").split(b"|")[1].lower() == ("%s\\%s" % (dom, user)).lower().encode()
        finally:
            dce.disconnect()


def test_object_uuid_reaches_handler(make_server):
    srv = make_server("127.0.0.21")
    dce = impacket_dce(srv)
    obj = "0102a0b0-0304-0506-0708-090a0b0c0d0e"
    try:
        reply = call(dce, 0, b"o", uuid=uuidtup_to_bin((obj, "0.0"))[:16])
        assert reply.split(b"|")[4].decode() == obj
    finally:
        dce.disconnect()


# ----------------------------------------------------------------------------------------------
# access control
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("user,password,domain", [
    ("enroller", "wrong-password", "LAB"),
    ("nobody", PASSWORD, "LAB"),
    ("enroller", PASSWORD, "OTHERDOM"),
    ("disabled", PASSWORD, "LAB"),
])
def test_bad_credentials_access_denied(make_server, user, password, domain):
    srv = make_server("127.0.0.22")
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY, user=user, password=password, domain=domain)
    try:
        with pytest.raises(DCERPCException) as exc:
            call(dce, 0, b"x")
        assert "access_denied" in str(exc.value)
    finally:
        dce.disconnect()
    server_alive(srv)


def test_anonymous_ntlm_refused(make_server):
    srv = make_server("127.0.0.22")
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_CONNECT, user="", password="", domain="")
    try:
        with pytest.raises(DCERPCException) as exc:
            call(dce, 0, b"x")
        assert "access_denied" in str(exc.value)
    finally:
        dce.disconnect()


@pytest.mark.parametrize("level", [C.RPC_C_AUTHN_LEVEL_NONE, C.RPC_C_AUTHN_LEVEL_CONNECT,
                                   C.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY])
def test_auth_level_too_low(make_server, level):
    srv = make_server("127.0.0.22")
    dce = impacket_dce(srv, level, iface=PRIV)
    try:
        with pytest.raises(DCERPCException) as exc:
            call(dce, 0, b"x")
        assert "access_denied" in str(exc.value)
    finally:
        dce.disconnect()
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY, iface=PRIV)
    try:
        assert call(dce, 0, b"ok")[:2] == b"ko"
    finally:
        dce.disconnect()


def test_unsupported_auth_type_bind_nak(make_server):
    srv = make_server("127.0.0.22")
    c = StrictClient(srv.address, srv.port)
    try:
        body = struct.pack("<HHIBBH", 4280, 4280, 0, 1, 0, 0) + struct.pack("<HBB", 0, 1, 0)
        body += uuidtup_to_bin((TOY, "1.0")) + uuidtup_to_bin(("8a885d04-1ceb-11c9-9fe8-08002b104860", "2.0"))
        token = b"\x60\x10" + b"\x00" * 16
        trailer = struct.pack("<BBBBI", C.RPC_C_AUTHN_GSS_KERBEROS, 6, 0, 0, 1)
        c.send_raw(c.header(11, 3, 16 + len(body) + 8 + len(token), len(token), 1) + body + trailer + token)
        reply = c.recv_pdu()
        assert reply[2] == C.PTYPE_BIND_NAK
        assert struct.unpack_from("<H", reply, 16)[0] == C.BIND_NAK_AUTHENTICATION_TYPE_NOT_RECOGNIZED
    finally:
        c.close()


# ----------------------------------------------------------------------------------------------
# presentation contexts, feature negotiation, alter_context
# ----------------------------------------------------------------------------------------------
def test_bind_two_contexts_ndr64_refused_ndr20_accepted(make_server):
    srv = make_server("127.0.0.23")
    c = StrictClient(srv.address, srv.port)
    try:
        ack = c.bind([(0, TOY, (1, 0), [NDR64]), (1, TOY, (1, 0), [NDR20]), (2, TOY, (1, 0), [BTFN]),
                      (3, "11111111-2222-3333-4444-555555555555", (1, 0), [NDR20])],
                     auth=("enroller", PASSWORD, "LAB"), level=6)
        res = ack["results"]
        assert res[0][:2] == (C.RESULT_PROVIDER_REJECTION, C.REASON_PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED)
        assert res[0][2] == b"\x00" * 20
        assert res[1][:2] == (C.RESULT_ACCEPTANCE, 0)
        assert res[1][2] == uuidtup_to_bin(("8a885d04-1ceb-11c9-9fe8-08002b104860", "2.0"))
        assert res[2][:2] == (C.RESULT_NEGOTIATE_ACK, 0x03)
        assert res[3][:2] == (C.RESULT_PROVIDER_REJECTION, C.REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED)
        assert ack["sec_addr"] == b"%d\x00" % srv.port
        assert c.request(1, 0, b"abc")[:3] == b"cba"
        with pytest.raises(FaultError) as exc:
            c.request(0, 0, b"abc", auth_ctx_id=1)
        assert exc.value.status == C.NCA_S_UNK_IF
        # the connection stays usable after a fault
        assert c.request(1, 0, b"xyz")[:3] == b"zyx"
    finally:
        c.close()


def test_several_transfer_syntaxes_in_one_element(make_server):
    srv = make_server("127.0.0.23")
    c = StrictClient(srv.address, srv.port)
    try:
        ack = c.bind([(5, TOY, (1, 0), [NDR64, NDR20])])
        assert ack["results"][0][:2] == (0, 0)
        assert c.request(5, 0, b"12")[:2] == b"21"
    finally:
        c.close()


def test_impacket_ndr64_bind_refused(make_server):
    srv = make_server("127.0.0.23")
    dce = impacket_dce(srv, bind=False)
    try:
        with pytest.raises(DCERPCException) as exc:
            dce.bind(uuidtup_to_bin((TOY, "1.0")), transfer_syntax=NDR64[0:1] + ("1.0",))
        assert "proposed_transfer_syntaxes_not_supported" in str(exc.value)
    finally:
        dce.disconnect()


def test_alter_context_new_auth_context_same_socket_impacket(make_server):
    srv = make_server("127.0.0.23")
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    try:
        first = call(dce, 0, b"one").split(b"|")
        dce2 = dce.alter_ctx(uuidtup_to_bin((PRIV, "1.0")))
        second = call(dce2, 0, b"two").split(b"|")
        assert second[0] == b"owt" and second[1] == b"LAB\\enroller"
        assert first[3] != second[3]          # two security contexts, distinct auth_context_id
        # both contexts keep working, interleaved
        assert call(dce, 0, b"three").split(b"|")[0] == b"eerht"
        assert call(dce2, 0, b"four").split(b"|")[0] == b"ruof"
    finally:
        dce.disconnect()


def test_two_security_contexts_verified(make_server):
    srv = make_server("127.0.0.23")
    c = StrictClient(srv.address, srv.port)
    try:
        c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=6, auth_ctx_id=7)
        c.bind([(1, PRIV, (1, 0))], auth=("LABHOST01$", "Machine-Pw-1", "LAB"), level=6, auth_ctx_id=8, alter=True)
        for i in range(3):
            assert c.request(0, 0, b"a%d" % i).split(b"|")[1] == b"LAB\\enroller"
            assert c.request(1, 0, b"b%d" % i).split(b"|")[1] == b"LAB\\LABHOST01$"
        # using the other security context on a presentation context is allowed (MS-RPCE multiplexing)
        assert c.request(0, 0, b"c", auth_ctx_id=8).split(b"|")[1] == b"LAB\\LABHOST01$"
    finally:
        c.close()


def test_unknown_opnum_and_handler_faults(make_server):
    srv = make_server("127.0.0.23")
    dce = impacket_dce(srv)
    try:
        with pytest.raises(DCERPCException) as exc:
            call(dce, 42, b"")
        assert "nca_s_op_rng_error" in str(exc.value)
        with pytest.raises(DCERPCException) as exc:
            call(dce, 2, b"")
        assert "E_INVALIDARG" in str(exc.value) or "80070057" in str(exc.value)
        with pytest.raises(DCERPCException) as exc:
            call(dce, 3, b"\x01")
        assert "bad_stub_data" in str(exc.value)
        with pytest.raises(DCERPCException):
            call(dce, 3, b"\x01" * 8)      # handler returns an int: clean fault, not a crash
        assert call(dce, 0, b"still")[:5] == b"llits"
    finally:
        dce.disconnect()


# ----------------------------------------------------------------------------------------------
# fragmentation
# ----------------------------------------------------------------------------------------------
def test_fragmented_request_impacket(make_server):
    srv = make_server("127.0.0.24")
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    try:
        dce.set_max_fragment_size(300)
        stub = os.urandom(5000)
        reply = call(dce, 0, stub)
        assert reply[:5000] == stub[::-1]
    finally:
        dce.disconnect()


def test_fragmented_request_small_server_frag(make_server):
    srv = make_server("127.0.0.24", max_frag=1432)
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
    try:
        stub = os.urandom(9000)
        assert call(dce, 0, stub)[:9000] == stub[::-1]
    finally:
        dce.disconnect()


@pytest.mark.parametrize("level", [5, 6])
def test_fragmented_both_ways_verified(make_server, level):
    srv = make_server("127.0.0.24")
    c = StrictClient(srv.address, srv.port)
    try:
        ack = c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=level, max_recv=1024)
        assert ack["max_xmit"] == 1024
        stub = os.urandom(7000)
        assert c.request(0, 0, stub, frag_size=512)[:7000] == stub[::-1]
        big = c.request(0, 1, struct.pack("<I", 20000))
        assert big == bytes((i * 7 + 3) & 0xFF for i in range(20000))
        assert c.response_fragments >= 20
        assert c.request(0, 1, struct.pack("<I", 0)) == b""
    finally:
        c.close()


def test_fragmented_response_impacket(make_server):
    srv = make_server("127.0.0.24")
    dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    try:
        assert call(dce, 1, struct.pack("<I", 50000)) == bytes((i * 7 + 3) & 0xFF for i in range(50000))
        assert call(dce, 0, b"after")[:5] == b"retfa"
    finally:
        dce.disconnect()


# ----------------------------------------------------------------------------------------------
# concurrency
# ----------------------------------------------------------------------------------------------
def test_concurrent_clients(make_server):
    srv = make_server("127.0.0.25")
    errors, results = [], []

    def worker(n):
        try:
            dce = impacket_dce(srv, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
            try:
                call(dce, 4, b"")
                for i in range(5):
                    r = call(dce, 0, b"w%d-%d" % (n, i))
                    assert r.split(b"|")[0] == (b"w%d-%d" % (n, i))[::-1]
                results.append(n)
            finally:
                dce.disconnect()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - start
    assert not errors, errors
    assert sorted(results) == list(range(10))
    assert elapsed < 10 * 0.3   # the 0.3 s calls ran in parallel


# ----------------------------------------------------------------------------------------------
# hooks
# ----------------------------------------------------------------------------------------------
def test_hooks_fault_and_drop(make_server):
    srv = make_server("127.0.0.25")
    seen = []

    def hook(ctx):
        seen.append(ctx.opnum)
        if ctx.opnum == 0 and len(seen) == 1:
            raise RpcFault(C.RPC_S_ACCESS_DENIED)
        if ctx.opnum == 5:
            return "drop"
        return None

    srv.hooks.before_call = hook
    dce = impacket_dce(srv)
    try:
        with pytest.raises(DCERPCException):
            call(dce, 0, b"a")
        assert call(dce, 0, b"ab")[:2] == b"ba"
        with pytest.raises(Exception):
            call(dce, 5, b"")
    finally:
        dce.disconnect()
    srv.hooks.before_call = None
    server_alive(srv)
