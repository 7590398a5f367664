"""Wire-level checks of the lab RPC engine: server signatures/sealing verified independently,
tampered PDUs, malformed input, timeouts, NTLM CHALLENGE contents."""

import os
import socket
import uuid
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.abspath(os.path.dirname(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from impacket import ntlm  # noqa: E402

from adcslab import seed  # noqa: E402
from adcslab.rpc import constants as C  # noqa: E402
from adcslab.rpc.client import (NDR20, BindNakError, ClientError, FaultError, SignatureError,  # noqa: E402
                                StrictClient, _NtlmState, authenticate_with_mic)
from test_rpc_engine import PASSWORD, PRIV, TOY, accounts_file, make_server, server_alive  # noqa: E402,F401


def strict(srv, level=6, **kw):
    c = StrictClient(srv.address, srv.port)
    c.bind([(0, TOY, (1, 0)), (1, PRIV, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=level, **kw)
    return c


@pytest.mark.parametrize("level", [C.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY])
def test_server_replies_verified_and_unsealed(make_server, level):
    srv = make_server("127.0.0.26")
    c = strict(srv, level)
    try:
        for i in range(5):
            stub = os.urandom(13 + i * 50)
            reply = c.request(0, 0, stub)
            assert reply[:len(stub)] == stub[::-1]
            assert reply[len(stub):].split(b"|")[2] == str(level).encode()
        state, _ = c.auth[1]
        assert state.in_seq == 5 and state.out_seq == 5
    finally:
        c.close()


def test_sealed_reply_is_not_plaintext(make_server):
    srv = make_server("127.0.0.26")
    c = strict(srv, 6)
    try:
        marker = b"PLAINTEXT-MARKER-" * 4
        call_id = c.call_id
        # send by hand so that we can look at the raw reply
        state, _ = c.auth[1]
        data = marker[::-1]
        pad = (16 - len(data) % 16) % 16
        data += b"\x00" * pad
        extra = struct.pack("<IHH", len(marker), 0, 0)
        head = c.header(0, 3, 16 + len(extra) + len(data) + 8 + 16, 16, call_id) + extra
        trailer = struct.pack("<BBBBI", 10, 6, pad, 0, 1)
        sealed = state.out_seal(data)
        sig = state.out_sign(head + data + trailer)
        c.call_id += 1
        c.send_raw(head + sealed + trailer + sig)
        raw = c.recv_pdu()
        assert raw[2] == C.PTYPE_RESPONSE
        assert marker not in raw and marker[:16] not in raw
        frag_len, auth_len = struct.unpack_from("<HH", raw, 8)
        toff = frag_len - auth_len - 8
        assert toff % 4 == 0
        a_type, a_level, a_pad, _r, a_ctx = struct.unpack_from("<BBBBI", raw, toff)
        assert (a_type, a_level, a_ctx) == (10, 6, 1)
        plain = state.in_unseal(raw[24:toff])
        state.in_verify(raw[:24] + plain + raw[toff:toff + 8], raw[toff + 8:])
        assert plain.startswith(marker)
    finally:
        c.close()


def test_wrong_server_key_detected(make_server):
    """Sanity check of the verifier itself: with a corrupted server signing key it must fail."""
    srv = make_server("127.0.0.26")
    c = strict(srv, 5)
    try:
        state, _ = c.auth[1]
        state.s_sign = bytes(16)
        with pytest.raises(SignatureError):
            c.request(0, 0, b"x")
    finally:
        c.close()


@pytest.mark.parametrize("level", [5, 6])
def test_tampered_client_signature_rejected(make_server, level):
    srv = make_server("127.0.0.26")
    c = strict(srv, level)
    try:
        assert c.request(0, 0, b"ok")[:2] == b"ko"
        c.tamper_next = True
        with pytest.raises(FaultError) as exc:
            c.request(0, 0, b"evil")
        assert exc.value.status == C.RPC_S_SEC_PKG_ERROR
        with pytest.raises((ClientError, OSError)):      # the server closed the connection
            c.request(0, 0, b"again")
    finally:
        c.close()
    server_alive(srv)


def test_tampered_stub_rejected(make_server):
    srv = make_server("127.0.0.26")
    c = strict(srv, 5)
    try:
        state, _ = c.auth[1]
        data = b"0123456789abcdef"
        extra = struct.pack("<IHH", 16, 0, 0)
        head = c.header(0, 3, 16 + len(extra) + 16 + 8 + 16, 16, c.call_id) + extra
        trailer = struct.pack("<BBBBI", 10, 5, 0, 0, 1)
        sig = state.out_sign(head + data + trailer)
        c.send_raw(head + b"X" + data[1:] + trailer + sig)       # stub modified after signing
        raw = c.recv_pdu()
        assert raw[2] == C.PTYPE_FAULT
        assert struct.unpack_from("<I", raw, 24)[0] == C.RPC_S_SEC_PKG_ERROR
    finally:
        c.close()


def test_downgrade_to_no_verifier_refused(make_server):
    """A request without verifier on a privacy-protected interface must not run."""
    srv = make_server("127.0.0.26")
    c = strict(srv, 6)
    try:
        with pytest.raises(FaultError) as exc:
            c.request(1, 0, b"x", auth_ctx_id=99)      # unknown auth context -> no trailer sent
        assert exc.value.status == C.RPC_S_ACCESS_DENIED
    finally:
        c.close()


def test_challenge_carries_target_info(make_server):
    srv = make_server("127.0.0.26")
    c = StrictClient(srv.address, srv.port)
    try:
        ack = c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=6)
        chal = ntlm.NTLMAuthChallenge(ack["challenge"])
        av = ntlm.AV_PAIRS(chal["TargetInfoFields"])
        assert av[ntlm.NTLMSSP_AV_DNS_HOSTNAME][1].decode("utf-16le") == seed.CA_HOST
        assert av[ntlm.NTLMSSP_AV_DNS_DOMAINNAME][1].decode("utf-16le") == "lab.adcs.test"
        assert av[ntlm.NTLMSSP_AV_HOSTNAME][1].decode("utf-16le") == seed.CA_NETBIOS
        assert av[ntlm.NTLMSSP_AV_DOMAINNAME][1].decode("utf-16le") == "LAB"
        assert av[ntlm.NTLMSSP_AV_TIME] is not None
        assert chal["flags"] & ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY
        assert chal["flags"] & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH
        assert chal["flags"] & ntlm.NTLMSSP_NEGOTIATE_SEAL
    finally:
        c.close()


def test_ntlm_mic_verified(make_server):
    """An AUTHENTICATE with MsvAvFlags MIC-present and a wrong MIC is refused; a right one accepted."""
    from adcslab.rpc import AccountStore, ServerIdentity
    from adcslab.rpc.ntlmssp import NtlmProvider
    from adcslab.rpc.security import AuthError
    from adcslab.rpc.accounts import Account
    acc = AccountStore([Account("enroller", "LAB", ntlm.compute_nthash(PASSWORD), "S-1-5-21-9")])
    prov = NtlmProvider(ServerIdentity("LAB", "lab.adcs.test", seed.CA_NETBIOS, seed.CA_HOST, acc))

    def run(good_mic):
        ctx = prov.new_context()
        raw, _key, _flags = authenticate_with_mic(lambda neg: ctx.accept(neg).reply_token, "enroller", PASSWORD,
                                                  "LAB", good_mic=good_mic)
        return ctx.accept(raw)

    assert run(True).done
    with pytest.raises(AuthError):
        run(False)


# ----------------------------------------------------------------------------------------------
# malformed input
# ----------------------------------------------------------------------------------------------
def _raw_conn(srv):
    s = socket.create_connection((srv.address, srv.port), timeout=5)
    return s


def _read_reply_or_close(s):
    try:
        data = s.recv(4096)
    except socket.timeout:
        pytest.fail("server neither answered nor closed")
    return data


def _bind_pdu(vers=5, minor=0, drep=b"\x10\x00\x00\x00", n_ctx=1, frag_len=None, trailing=b""):
    body = struct.pack("<HHIBBH", 4280, 4280, 0, n_ctx, 0, 0)
    body += struct.pack("<HBB", 0, 1, 0)
    body += uuid.UUID(TOY).bytes_le + struct.pack("<HH", 1, 0) + uuid.UUID(NDR20[0]).bytes_le + struct.pack("<HH", 2, 0)
    body += trailing
    fl = frag_len if frag_len is not None else 16 + len(body)
    return struct.pack("<BBBB4sHHI", vers, minor, 11, 3, drep, fl, 0, 1) + body


@pytest.mark.parametrize("payload,expect", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "close"),
    (os.urandom(64), "close"),
    (b"\x05\x00\x0b\x03\x10\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00", "close"),           # frag_len 8 < 16
    (_bind_pdu(vers=4), "nak"),
    (_bind_pdu(minor=7), "nak"),
    (_bind_pdu(drep=b"\x00\x00\x00\x00"), "nak"),
    (_bind_pdu(n_ctx=200), "nak"),                                                           # truncated ctx list
    (struct.pack("<BBBB4sHHI", 5, 0, 0, 3, b"\x10\x00\x00\x00", 24, 0, 9) + struct.pack("<IHH", 0, 0, 0), "fault"),
    (struct.pack("<BBBB4sHHI", 5, 0, 0, 3, b"\x10\x00\x00\x00", 20, 0, 9) + b"\x00" * 4, "fault"),  # short request
    (struct.pack("<BBBB4sHHI", 5, 0, 0, 3, b"\x10\x00\x00\x00", 40, 30, 9) + b"\x00" * 24, "close"),  # auth_len > frag
    (struct.pack("<BBBB4sHHI", 5, 0, 0x14, 3, b"\x10\x00\x00\x00", 20, 0, 9) + b"\x00" * 4, "close"),  # RTS
    (struct.pack("<BBBB4sHHI", 5, 0, 0x0C, 3, b"\x10\x00\x00\x00", 16, 0, 9), "close"),   # bind_ack from a client
])
def test_malformed_pdus(make_server, payload, expect):
    srv = make_server("127.0.0.27")
    s = _raw_conn(srv)
    try:
        s.sendall(payload)
        data = _read_reply_or_close(s)
        if expect == "close":
            assert data == b"" or data[2] in (C.PTYPE_FAULT, C.PTYPE_BIND_NAK)
        elif expect == "nak":
            assert data[2] == C.PTYPE_BIND_NAK
        elif expect == "fault":
            assert data[2] == C.PTYPE_FAULT
            assert struct.unpack_from("<I", data, 24)[0] in (C.NCA_S_UNK_IF, C.NCA_S_PROTO_ERROR)
    finally:
        s.close()
    server_alive(srv)


def test_unauthenticated_request_before_bind(make_server):
    srv = make_server("127.0.0.27")
    s = _raw_conn(srv)
    try:
        s.sendall(struct.pack("<BBBB4sHHI", 5, 0, 0, 3, b"\x10\x00\x00\x00", 28, 0, 4) +
                  struct.pack("<IHH", 4, 0, 0) + b"abcd")
        data = s.recv(4096)
        assert data[2] == C.PTYPE_FAULT and struct.unpack_from("<I", data, 24)[0] == C.NCA_S_UNK_IF
        assert data[3] & C.PFC_DID_NOT_EXECUTE
    finally:
        s.close()


def test_garbage_auth_tokens(make_server):
    srv = make_server("127.0.0.27")
    c = StrictClient(srv.address, srv.port)
    try:
        body = struct.pack("<HHIBBH", 4280, 4280, 0, 1, 0, 0) + struct.pack("<HBB", 0, 1, 0)
        body += uuid.UUID(TOY).bytes_le + struct.pack("<HH", 1, 0) + uuid.UUID(NDR20[0]).bytes_le + \
            struct.pack("<HH", 2, 0)
        for token in (b"NTLMSSP\x00\x01\x00", b"NTLMSSP\x00\x03\x00\x00\x00" + b"\xff" * 60, os.urandom(40)):
            trailer = struct.pack("<BBBBI", 10, 6, 0, 0, 1)
            c2 = StrictClient(srv.address, srv.port)
            c2.send_raw(c2.header(11, 3, 16 + len(body) + 8 + len(token), len(token), 1) + body + trailer + token)
            reply = c2.recv_pdu()
            assert reply[2] == C.PTYPE_BIND_NAK
            assert struct.unpack_from("<H", reply, 16)[0] == C.BIND_NAK_INVALID_CHECKSUM
            c2.close()
        # a garbage AUTHENTICATE in auth3 -> later requests denied
        c.bind([(0, TOY, (1, 0))], auth=None)
        state = _NtlmState("enroller", PASSWORD, "LAB")
        import adcslab.rpc.client as CL
        body2 = struct.pack("<HHIBBH", 4280, 4280, 0, 1, 0, 0) + struct.pack("<HBB", 1, 1, 0)
        body2 += uuid.UUID(TOY).bytes_le + struct.pack("<HH", 1, 0) + uuid.UUID(NDR20[0]).bytes_le + \
            struct.pack("<HH", 2, 0)
        tok = state.negotiate()
        c.send_raw(c.header(CL.ALTER, 3, 16 + len(body2) + 8 + len(tok), len(tok), 50) + body2 +
                   struct.pack("<BBBBI", 10, 6, 0, 0, 3) + tok)
        assert c.recv_pdu()[2] == C.PTYPE_ALTER_CONTEXT_RESP
        bad = b"NTLMSSP\x00\x03\x00\x00\x00" + b"\x00" * 52 + b"\xff" * 40
        c.send_raw(c.header(CL.AUTH3, 3, 16 + 4 + 8 + len(bad), len(bad), 50) + b"    " +
                   struct.pack("<BBBBI", 10, 6, 0, 0, 3) + bad)
        c.auth[3] = (state, 6)
        state.flags = ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY
        state.c_sign = state.s_sign = bytes(16)
        from Cryptodome.Cipher import ARC4
        state.c_rc4 = ARC4.new(bytes(16))
        state.s_rc4 = ARC4.new(bytes(16))
        with pytest.raises(FaultError) as exc:
            c.request(1, 0, b"x", auth_ctx_id=3)
        assert exc.value.status == C.RPC_S_ACCESS_DENIED
    finally:
        c.close()
    server_alive(srv)


def test_partial_pdu_times_out(make_server):
    srv = make_server("127.0.0.28", idle_timeout=1.0)
    s = _raw_conn(srv)
    try:
        s.sendall(_bind_pdu()[:30])      # header announces more than we send
        start = time.monotonic()
        s.settimeout(10)
        assert s.recv(100) == b""        # closed by the server
        assert time.monotonic() - start < 5
    finally:
        s.close()
    # idle connections are closed too and the count goes back to zero
    time.sleep(0.2)
    deadline = time.monotonic() + 3
    while srv.connection_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.connection_count == 0
    server_alive(srv)


def test_oversized_call_refused(make_server):
    srv = make_server("127.0.0.28", max_call_size=10000)
    c = strict(srv, 6)
    try:
        with pytest.raises(FaultError) as exc:
            c.request(0, 0, os.urandom(30000), frag_size=2000)
        assert exc.value.status == C.NCA_S_PROTO_ERROR
    finally:
        c.close()
    server_alive(srv)


def test_too_small_fragment_sizes_nak(make_server):
    srv = make_server("127.0.0.28")
    c = StrictClient(srv.address, srv.port)
    try:
        from adcslab.rpc.client import BindNakError
        with pytest.raises(BindNakError) as exc:
            c.bind([(0, TOY, (1, 0))], max_recv=64, max_xmit=64)
        assert exc.value.reason == C.BIND_NAK_LOCAL_LIMIT_EXCEEDED
    finally:
        c.close()


def test_orphaned_and_cancel_tolerated(make_server):
    srv = make_server("127.0.0.28")
    c = strict(srv, 6)
    try:
        for ptype in (C.PTYPE_CO_CANCEL, C.PTYPE_ORPHANED, C.PTYPE_SHUTDOWN):
            c.send_raw(c.header(ptype, 3, 16, 0, 77))
        assert c.request(0, 0, b"fine")[:4] == b"enif"
    finally:
        c.close()


def test_fuzzed_pdus_do_not_kill_the_server(make_server):
    """Random byte mutations of a valid bind / auth3 / sealed request sequence."""
    import random
    rnd = random.Random(1234)
    srv = make_server("127.0.0.28", idle_timeout=2.0)
    # record a valid conversation
    sent = []
    c = StrictClient(srv.address, srv.port)
    orig_send = c.send_raw

    def recording_send(data):
        sent.append(data)
        orig_send(data)

    c.send_raw = recording_send
    c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=6)
    c.request(0, 0, b"fuzz me please" * 3)
    c.close()
    assert len(sent) == 3
    for i in range(150):
        msgs = [bytearray(m) for m in sent]
        victim = msgs[rnd.randrange(len(msgs))]
        for _ in range(rnd.randint(1, 4)):
            pos = rnd.randrange(len(victim))
            victim[pos] = rnd.randrange(256)
        if rnd.random() < 0.2:
            del victim[rnd.randrange(len(victim)):]
        s = socket.create_connection((srv.address, srv.port), timeout=3)
        try:
            try:
                for m in msgs:
                    s.sendall(bytes(m))
                s.shutdown(socket.SHUT_WR)      # EOF: the server must finish and close, not hang
            except OSError:
                pass                            # the server already closed (e.g. bad version): fine
            s.settimeout(3)
            try:
                while s.recv(65536):
                    pass
            except socket.timeout:
                pytest.fail("server did not close after EOF (mutation %d)" % i)
            except OSError:
                pass
        finally:
            s.close()
    server_alive(srv)


def test_interface_minor_version_rules_and_alter_reuse(make_server):
    srv = make_server("127.0.0.29")
    srv.add_interface(__import__("adcslab.rpc", fromlist=["Interface"]).Interface(
        "abcdefab-0000-1111-2222-333344445555", (1, 2), {0: lambda ctx, stub: b"v12"}, name="minor"))
    c = StrictClient(srv.address, srv.port)
    try:
        ack = c.bind([(0, "abcdefab-0000-1111-2222-333344445555", (1, 0)),
                      (1, "abcdefab-0000-1111-2222-333344445555", (1, 3)),
                      (2, "abcdefab-0000-1111-2222-333344445555", (2, 0))],
                     auth=("enroller", PASSWORD, "LAB"), level=6, auth_ctx_id=5)
        assert [r[0] for r in ack["results"]] == [0, 2, 2]
        assert c.request(0, 0, b"") == b"v12"
        # alter_context adding a presentation context under the established security context:
        # the auth verifier carries the same auth_context_id; no new token is exchanged
        import uuid as _u
        body = struct.pack("<HHIBBH", 4280, 4280, 0, 1, 0, 0) + struct.pack("<HBB", 3, 1, 0)
        body += _u.UUID(TOY).bytes_le + struct.pack("<HH", 1, 0) + _u.UUID(NDR20[0]).bytes_le + struct.pack("<HH", 2, 0)
        state, _ = c.auth[5]
        tok = b"\x00" * 16
        c.send_raw(c.header(14, 3, 16 + len(body) + 8 + len(tok), len(tok), 90) + body +
                   struct.pack("<BBBBI", 10, 6, 0, 0, 5) + tok)
        resp = c.recv_pdu()
        assert resp[2] == C.PTYPE_ALTER_CONTEXT_RESP
        assert struct.unpack_from("<H", resp, 10)[0] == 0          # no auth_value in the answer
        c.ctx_auth[3] = 5
        assert c.request(3, 0, b"abc")[:3] == b"cba"
    finally:
        c.close()


def test_header_sign_flag_echoed_in_bind_ack_and_alter_context_resp(make_server):
    """MS-RPCE 2.2.2.3: PFC_SUPPORT_HEADER_SIGN is answered in bind_ack and in alter_context_resp alike (a client
    taking the negotiated state from the alter_context_resp must see it); not offered, not echoed."""
    srv = make_server("127.0.0.29")
    c = StrictClient(srv.address, srv.port)
    try:
        ack = c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=6, header_sign=True)
        assert ack["header_sign"]
        alter = c.bind([(1, PRIV, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=6, auth_ctx_id=2,
                       alter=True, header_sign=True)
        assert alter["header_sign"] and alter["results"][0][0] == 0
        assert c.request(1, 0, b"abc")[:3] == b"cba" and c.request(0, 0, b"xyz")[:3] == b"zyx"
    finally:
        c.close()
    c = StrictClient(srv.address, srv.port)
    try:
        assert not c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=6)["header_sign"]
    finally:
        c.close()


def _vt(c, iface=TOY, version=(1, 0), **override):
    """The verification trailer for c's next call on presentation context 0, opnum 0 (``override``: fields)."""
    from adcslab.rpc import vtrailer
    args = dict(ptype=C.PTYPE_REQUEST, drep=b"\x10\x00\x00\x00", call_id=c.call_id, context_id=0, opnum=0,
                abstract_syntax=vtrailer.syntax_id(uuid.UUID(iface).bytes_le, version),
                transfer_syntax=vtrailer.syntax_id(uuid.UUID(NDR20[0]).bytes_le, NDR20[1]),
                header_signing=False)
    args.update(override)
    return vtrailer.build(**args)


@pytest.mark.parametrize("level", [C.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY])
def test_verification_trailer_found_checked_and_stripped(make_server, level):
    """MS-RPCE 2.2.2.13: a request carrying the verification trailer (as Windows clients send it) is served, the
    handler sees the stub without it; a trailer that disagrees with the PDU, the presentation context or the
    header-signing state is refused with access denied, as is an unknown must-process command."""
    from adcslab.rpc import vtrailer
    srv = make_server("127.0.0.29")
    c = strict(srv, level=level)
    try:
        echo = lambda stub: c.request(0, 0, stub).split(b"|")[0]  # noqa: E731  (_echo: reversed stub|user|...)
        assert echo(b"abcd" + _vt(c)) == b"dcba"
        assert echo(b"wxyz" + b"\x00" * 4 + _vt(c)) == b"\x00" * 4 + b"zyxw"   # stub padding before it
        for bad in (dict(opnum=1), dict(call_id=999), dict(context_id=1), dict(drep=b"\x00\x00\x00\x00"),
                    dict(abstract_syntax=vtrailer.syntax_id(uuid.UUID(PRIV).bytes_le, (1, 0))),
                    dict(header_signing=True)):
            with pytest.raises(FaultError) as exc:
                c.request(0, 0, b"abcd" + _vt(c, **bad))
            assert exc.value.status == C.RPC_S_ACCESS_DENIED, bad
        unknown = vtrailer.SIGNATURE + struct.pack("<HH", 0x0009 | 0x4000 | 0x8000, 4) + b"\x00" * 4
        with pytest.raises(FaultError) as exc:
            c.request(0, 0, b"abcd" + unknown)
        assert exc.value.status == C.RPC_S_ACCESS_DENIED
        optional = vtrailer.SIGNATURE + struct.pack("<HH", 0x0009 | 0x4000, 4) + b"\x00" * 4
        assert echo(b"abcd" + optional) == b"dcba"
        # the signature inside stub data without a well-formed command list is just data
        assert echo(vtrailer.SIGNATURE) == vtrailer.SIGNATURE[::-1]
    finally:
        c.close()
    c = StrictClient(srv.address, srv.port)
    try:
        c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=level, header_sign=True)
        assert c.request(0, 0, b"abcd" + _vt(c, header_signing=True)).split(b"|")[0] == b"dcba"
    finally:
        c.close()


@pytest.mark.parametrize("level", [C.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY])
def test_ntlm_inside_spnego_as_windows_sends_it(make_server, level):
    """Auth type 9 (Negotiate) carrying NTLM, as a Windows client falls back to when it names the CA by IP: bind
    with NegTokenInit(NTLM), AUTHENTICATE + mechListMIC in an alter_context, the server's mechListMIC in the
    alter_context_resp (checked by the client), then signed/sealed calls with the sequence numbers after the
    MICs (the strict client verifies every reply)."""
    srv = make_server("127.0.0.29")
    c = StrictClient(srv.address, srv.port)
    try:
        c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=level, spnego=True)
        assert c.request(0, 0, b"abcd").split(b"|")[:2] == [b"dcba", b"LAB\\enroller"]
        assert c.request(0, 0, b"efgh").split(b"|")[0] == b"hgfe"
    finally:
        c.close()
    c = StrictClient(srv.address, srv.port)
    try:
        with pytest.raises((FaultError, BindNakError, ClientError)):
            c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=level, spnego=True,
                   bad_mech_list_mic=True)
            c.request(0, 0, b"abcd")
    finally:
        c.close()


def test_alter_context_before_bind_and_connection_state(make_server):
    srv = make_server("127.0.0.29")
    s = _raw_conn(srv)
    try:
        alter = bytearray(_bind_pdu())
        alter[2] = C.PTYPE_ALTER_CONTEXT
        s.sendall(bytes(alter))
        data = s.recv(4096)
        assert data[2] == C.PTYPE_FAULT and struct.unpack_from("<I", data, 24)[0] == C.NCA_S_PROTO_ERROR
    finally:
        s.close()

    calls = []

    def counting(ctx, stub):
        ctx.connection.state["n"] = ctx.connection.state.get("n", 0) + 1
        calls.append(ctx.connection.state["n"])
        return b""

    srv.add_interface(__import__("adcslab.rpc", fromlist=["Interface"]).Interface(
        "abcdefab-0000-1111-2222-333344445556", (1, 0), {0: counting}))
    for _ in range(2):
        c = StrictClient(srv.address, srv.port)
        c.bind([(0, "abcdefab-0000-1111-2222-333344445556", (1, 0))])
        c.request(0, 0, b"")
        c.request(0, 0, b"")
        c.close()
    assert calls == [1, 2, 1, 2]          # per-connection state


@pytest.mark.parametrize("level", [5, 6])
@pytest.mark.parametrize("clear", [ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH,
                                   ntlm.NTLMSSP_NEGOTIATE_128 | ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH])
def test_ntlm_without_key_exchange_or_128(make_server, level, clear):
    srv = make_server("127.0.0.26")
    c = StrictClient(srv.address, srv.port)
    try:
        c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=level, clear_ntlm_flags=clear)
        state, _ = c.auth[1]
        assert not state.flags & clear
        for i in range(3):
            assert c.request(0, 0, b"k%d" % i)[:2] == (b"k%d" % i)[::-1]
    finally:
        c.close()


def test_ntlm_without_extended_session_security_refused(make_server):
    srv = make_server("127.0.0.26")
    c = StrictClient(srv.address, srv.port)
    try:
        from adcslab.rpc.client import BindNakError
        with pytest.raises(BindNakError) as exc:
            c.bind([(0, TOY, (1, 0))], auth=("enroller", PASSWORD, "LAB"), level=6,
                   clear_ntlm_flags=ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY)
        assert exc.value.reason == C.BIND_NAK_INVALID_CHECKSUM
    finally:
        c.close()
