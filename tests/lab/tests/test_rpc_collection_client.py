"""The collection's own DCE/RPC client (plugins/module_utils/_rpc_conn.py) against the lab RPC engine.

What a Windows client sends, checked by the server side: SPNEGO (auth type 9) with NTLM inside and both
mechListMICs, header signing negotiated, the MS-RPCE 2.2.2.13 verification trailer on every request (the lab logs
and counts it per connection), one security context for several presentation contexts (a second interface costs
one alter_context without a handshake, an interface bound before costs nothing), the raw NTLM fallback, fragmented
requests and replies, and a refused password."""

import logging
import os
import sys

import pytest

sys.path.insert(0, os.path.abspath(os.path.dirname(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from impacket.uuid import uuidtup_to_bin  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _rpc_conn  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import WIRE_STATS, wire_figures  # noqa
from test_rpc_engine import PASSWORD, PRIV, TOY, accounts_file, make_server  # noqa: E402,F401

TOY_IF = uuidtup_to_bin((TOY, "1.0"))
PRIV_IF = uuidtup_to_bin((PRIV, "1.0"))


def connection(srv, package="negotiate", password=PASSWORD, **kwargs):
    creds = {"username": "enroller", "password": password, "domain": "LAB", "lmhash": "", "nthash": "",
             "doKerberos": False}
    return _rpc_conn.RpcConnection(srv.address, srv.port, creds, package, timeout=5, **kwargs)


def echoed(reply, stub):
    """The toy interface answers the stub it got reversed: our stub padded to 4 bytes before the trailer."""
    padded = stub + b"\x00" * ((4 - len(stub) % 4) % 4)
    assert reply[:len(padded)] == padded[::-1]
    return reply[len(padded):].split(b"|")


def server_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name.startswith("adcslab.rpc")]


@pytest.mark.parametrize("package, auth_type, alters", [("negotiate", 9, 2), ("ntlm", 10, 1)])
def test_one_security_context_header_signing_and_trailer(make_server, caplog, package, auth_type, alters):
    srv = make_server("127.0.0.27")
    caplog.set_level(logging.INFO)
    WIRE_STATS.reset()
    conn = connection(srv, package)
    try:
        conn.bind(TOY_IF)
        stub = os.urandom(37)
        fields = echoed(conn.call(0, stub), stub)
        assert fields[1:4] == [b"LAB\\enroller", b"6", b"0"]
        conn.alter_ctx(PRIV_IF)
        fields = echoed(conn.call(0, b"private"), b"private")
        assert fields[1:4] == [b"LAB\\enroller", b"6", b"0"]          # the same security context (id 0)
        conn.alter_ctx(TOY_IF)                                         # bound before: no PDU
        echoed(conn.call(0, b"back"), b"back")
        assert conn.security.auth_type == auth_type and conn.header_sign
    finally:
        conn.disconnect()
    figures = wire_figures()
    assert figures["handshakes"] == 1 and figures["connections"] == 1 and figures["calls"] == 3
    assert figures["alter_contexts"] == alters                        # SPNEGO's third leg + PRIV; raw NTLM: PRIV
    lines = server_lines(caplog)
    assert any("authenticated LAB\\enroller (type %d, level pkt_privacy, auth_context_id 0, header signing on)"
               % auth_type in line for line in lines), lines
    assert any("verification trailer checked (bitmask, pcontext)" in line for line in lines), lines
    assert not any("refused" in line for line in lines), lines


def test_without_header_signing_the_trailer_has_no_bitmask(make_server, caplog):
    srv = make_server("127.0.0.27")
    caplog.set_level(logging.INFO)
    conn = connection(srv, header_sign=False)
    try:
        conn.bind(TOY_IF)
        echoed(conn.call(0, b"abcd"), b"abcd")
        assert not conn.header_sign
    finally:
        conn.disconnect()
    lines = server_lines(caplog)
    assert any("header signing off" in line for line in lines), lines
    assert any("verification trailer checked (bitmask, pcontext, header2)" in line for line in lines), lines


@pytest.mark.parametrize("package", ["negotiate", "ntlm"])
def test_fragmented_request_and_reply_verified(make_server, package):
    srv = make_server("127.0.0.27")
    conn = connection(srv, package)
    try:
        conn.bind(TOY_IF)
        stub = os.urandom(20000)
        echoed(conn.call(0, stub), stub)
        size = 50000
        reply = conn.call(1, size.to_bytes(4, "little"))
        assert reply == bytes((i * 7 + 3) & 0xFF for i in range(size))
    finally:
        conn.disconnect()


@pytest.mark.parametrize("package", ["negotiate", "ntlm"])
def test_wrong_password_refused(make_server, package):
    srv = make_server("127.0.0.27")
    conn = connection(srv, package, password="wrong")
    try:
        with pytest.raises(_errors.RpcFault) as info:
            conn.bind(TOY_IF)
            conn.call(0, b"abcd")       # raw NTLM: the AUTH3 has no answer, the first call is refused
        assert info.value.get_error_code() == 5
    finally:
        conn.disconnect()
