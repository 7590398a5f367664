# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_rpc_conn: PDU structures, the verification trailer policy, reply checks against a scripted peer, IPv6 and
TCP_NODELAY on the socket (the whole client against the lab engine: tests/lab/tests/test_rpc_collection_client.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import struct

import pytest
from impacket.uuid import uuidtup_to_bin

from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_conn as c

IFACE = uuidtup_to_bin(('d99e6e70-fc88-11d0-b498-00a0c90312f3', '0.0'))


def test_bind_body_and_ack_parse():
    body = c.bind_body([(0, IFACE), (1, IFACE)])
    assert struct.unpack_from('<HHLB', body) == (c.MAX_FRAG, c.MAX_FRAG, 0, 2)
    assert body[12:16] == b'\x00\x00\x01\x00' and body[16:36] == IFACE and body[36:56] == c.NDR20
    ack = (c.header('bind_ack', 7, 0, 0, 1) + struct.pack('<HHLH', 4280, 4280, 0x1234, 4) + b'135\x00' +
           b'\x00\x00' + struct.pack('<B3x', 1) + struct.pack('<HH', 0, 0) + c.NDR20)
    ack = ack[:8] + struct.pack('<HH', len(ack), 0) + ack[12:]
    assert c.parse_bind_ack(ack) == {'max_xmit': 4280, 'max_recv': 4280, 'results': [(0, 0)], 'auth': b''}


def test_verification_trailer_layout():
    vt = c.verification_trailer(7, 1, 3, IFACE, bitmask=1, pcontext=True, header2=True)
    assert vt[:8] == c.VT_SIGNATURE
    off, kinds = 8, []
    while off < len(vt):
        kind, length = struct.unpack_from('<HH', vt, off)
        kinds.append(kind)
        data = vt[off + 4:off + 4 + length]
        if kind & 0x3FFF == c.VT_PCONTEXT:
            assert data == IFACE + c.NDR20
        if kind & 0x3FFF == c.VT_HEADER2:
            assert data == b'\x00\x00\x00\x00' + c.DREP + struct.pack('<LHH', 7, 1, 3)
        off += 4 + length
    assert kinds == [0x8001, 0x8002, 0xC003]
    assert c.verification_trailer(7, 1, 3, IFACE, pcontext=False, header2=False) == b''


class _Security(object):
    auth_type = 9
    kerberos = False

    def verifier_size(self, level):
        return 16

    def protect(self, prefix, data, suffix, level, header_sign):
        return data, b'\x00' * 16

    def unprotect(self, prefix, body, suffix, verifier, level, header_sign):
        if verifier != b'\x11' * 16:
            raise c._rpc_auth.BadVerifier('NTLM signature mismatch, sequence 0')
        return body


class _Peer(object):
    """A socket stand-in: records what is sent, answers with scripted bytes."""

    def __init__(self, replies=b''):
        self.sent, self.data = [], replies

    def sendall(self, data):
        self.sent.append(data)

    def recv(self, count):
        out, self.data = self.data[:count], self.data[count:]
        return out

    def close(self):
        pass


def _connected(replies=b'', header_sign=True):
    conn = c.RpcConnection('192.0.2.1', 1024, {}, 'negotiate')
    conn.sock = _Peer(replies)
    conn.security = _Security()
    conn.header_sign = header_sign
    conn.contexts = {IFACE: 0}
    conn.current = IFACE
    return conn


def _response(call_id, stub, flags=3, verifier=b'\x11' * 16, auth_type=9, level=6, ctx=0, pad=0):
    body = stub + b'\x00' * pad
    trailer = struct.pack('<BBBBL', auth_type, level, pad, 0, ctx)
    pdu = c.header('response', flags, 24 + len(body) + 8 + len(verifier), len(verifier), call_id)
    return pdu + struct.pack('<LHBx', len(stub), 0, 0) + body + trailer + verifier


def test_trailer_policy_with_and_without_header_signing():
    conn = _connected(_response(1, b'A' * 16) + _response(2, b'B' * 16))
    assert conn.call(3, b'\x01\x02') == b'A' * 16
    first = conn.sock.sent[0]
    assert c.VT_SIGNATURE in first and first.index(c.VT_SIGNATURE) == 24 + 4      # after 2 bytes of padding
    assert conn.call(3, b'\x01\x02') == b'B' * 16
    assert c.VT_SIGNATURE not in conn.sock.sent[1]        # bitmask and pcontext verified, header signed
    conn = _connected(_response(1, b'A' * 16) + _response(2, b'B' * 16), header_sign=False)
    conn.call(3, b'\x01\x02\x03\x04')
    conn.call(3, b'\x01\x02\x03\x04')
    assert struct.pack('<HH', 0xC003, 16) in conn.sock.sent[1]       # header2 on every request
    assert struct.pack('<HH', 0x8001, 4) not in conn.sock.sent[1]


@pytest.mark.parametrize('reply, cause', [
    (_response(1, b'A' * 16, verifier=b'\x22' * 16), 'NTLM signature mismatch, sequence 0'),
    (_response(9, b'A' * 16), 'a reply to call 9 while call 1 is outstanding: out of sequence or replayed'),
    (_response(1, b'A' * 16, auth_type=10), 'authentication type 10 instead of 9'),
    (_response(1, b'A' * 16, level=5), 'protection level packet integrity instead of packet privacy'),
    (_response(1, b'A' * 16, ctx=79231), 'a reply of security context 79231 where 0 was expected: replayed or '
                                         'misdirected'),
    (_response(1, b'A' * 15), 'stub and authentication pad of 15 bytes, not a multiple of 16'),
    (_response(1, b'A' * 16, flags=2), 'fragment 1 of the reply lacks the first-fragment flag: fragments out of '
                                       'order'),
    (c.header('response', 3, 40, 0, 1) + b'\x00' * 24,
     'the reply carries no authentication trailer (a plaintext reply in a packet privacy session)'),
    (b'\x04' + b'\x00' * 15, 'not a DCE/RPC version 5.0 little-endian PDU'),
])
def test_reply_checks_poison_the_connection(reply, cause):
    conn = _connected(reply)
    with pytest.raises(_errors.ReplyVerificationError) as info:
        conn.call(3, b'\x00' * 4)
    assert info.value.to_message().startswith('The reply from the CA at 192.0.2.1 failed integrity verification '
                                              '(%s); it was discarded' % cause)
    with pytest.raises(_errors.ReplyVerificationError, match='an earlier reply on this connection failed'):
        conn._recv_pdu()


def test_fault_bind_nak_and_refused_context_raise_rpc_faults_with_the_status():
    fault = c.header('fault', 3, 32, 0, 1) + struct.pack('<LHBxL4x', 0, 0, 0, 0x1C010002)
    conn = _connected(fault)
    with pytest.raises(_errors.RpcFault) as info:
        conn.call(3, b'\x00' * 4)
    assert info.value.get_error_code() == info.value.error_code == 0x1C010002
    assert str(info.value) == 'DCE/RPC fault NCA_S_OP_RNG_ERROR (0x1C010002)'
    assert isinstance(info.value, _errors.AdcsError)
    for reason, status in ((9, 5), (2, 5), (8, 5), (4, 0x1C010003)):
        conn = _connected(c.header('bind_nak', 3, 18, 0, 1) + struct.pack('<H', reason))
        with pytest.raises(_errors.RpcFault) as info:
            conn._exchange('alter', [(1, IFACE)])
        assert info.value.error_code == status
    with pytest.raises(_errors.RpcFault) as info:
        c.check_result({'results': [(2, 1)]})
    assert info.value.error_code == 0x1C010003


def test_a_peer_that_closes_midway():
    conn = _connected(_response(1, b'A' * 16)[:30])
    with pytest.raises(c.ConnectionClosed, match='Connection closed by remote host'):
        conn.call(3, b'\x00' * 4)


def test_a_nonzero_reply_status_raises_with_the_decoded_reply():
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr, _orpc
    reply = b'\x00' * 8 + struct.pack('<L', 0x80094012)        # ORPCTHAT, ErrorCode
    conn = _connected(_response(1, reply, pad=4))
    req = _ndr.Ping()
    req['ORPCthis'] = _orpc.new_orpcthis()
    req['pwszAuthority'] = _ndr.wstr('LAB-CA')
    with pytest.raises(_errors.RpcFault) as info:
        conn.request(req, check_status=True)
    assert info.value.error_code == 0x80094012 and info.value.packet['ErrorCode'] == 0x80094012


def test_undecodable_reply_is_a_verification_error():
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
    conn = _connected(_response(1, b'\x01' * 16))
    req = _ndr.Ping()
    req['pwszAuthority'] = 'LAB-CA\x00'
    with pytest.raises(_errors.ReplyVerificationError, match='could not be decoded'):
        conn.request(req)


def _listener(family, address):
    try:
        srv = socket.socket(family, socket.SOCK_STREAM)
        srv.bind((address, 0))
    except OSError:
        pytest.skip('no %s loopback here' % address)
    srv.listen(1)
    return srv


@pytest.mark.parametrize('family, address', [(socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')])
def test_connect_ipv4_ipv6_nodelay_and_timeout(family, address):
    srv = _listener(family, address)
    try:
        conn = c.RpcConnection(address, srv.getsockname()[1], {}, timeout=3)
        conn.connect()
        assert conn.sock.family == family and conn.sock.gettimeout() == 3
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert conn.connect() is conn                            # idempotent
        conn.disconnect()
        assert conn.sock is None
    finally:
        srv.close()


def test_connect_refused():
    srv = _listener(socket.AF_INET, '127.0.0.1')
    port = srv.getsockname()[1]
    srv.close()
    with pytest.raises(ConnectionRefusedError):
        c.RpcConnection('127.0.0.1', port, {}, timeout=3).connect()


def test_reply_bounds_and_truncation(monkeypatch):
    first = _response(1, b'A' * 16, flags=1)
    conn = _connected(first + _response(1, b'B' * 16, flags=0) + _response(1, b'C' * 16, flags=0))
    monkeypatch.setattr(c._rpc_verify, 'MAX_FRAGMENTS', 2)
    with pytest.raises(_errors.ReplyVerificationError, match='the reply exceeds 2 fragments'):
        conn.call(3, b'\x00' * 4)
    monkeypatch.setattr(c._rpc_verify, 'MAX_FRAGMENTS', 16384)
    monkeypatch.setattr(c._rpc_verify, 'MAX_REPLY_BYTES', 100)
    with pytest.raises(_errors.ReplyVerificationError, match='exceeds 16384 fragments or 100 bytes'):
        _connected(first + _response(1, b'B' * 16, flags=0)).call(3, b'\x00' * 4)
    monkeypatch.setattr(c._rpc_verify, 'MAX_REPLY_BYTES', 1 << 20)
    short = _response(1, b'A' * 16)
    short = short[:16] + struct.pack('<L', 200) + short[20:]         # alloc_hint announces 200 bytes
    with pytest.raises(_errors.ReplyVerificationError, match='the reply ended after 16 of the 200 bytes'):
        _connected(short).call(3, b'\x00' * 4)
    with pytest.raises(_errors.ReplyVerificationError, match='an authentication pad of 17 bytes'):
        _connected(_padded(17)).call(3, b'\x00' * 4)


def _padded(pad):
    pdu = _response(1, b'A' * 32)
    at = len(pdu) - 16 - 8
    return pdu[:at + 2] + bytes([pad]) + pdu[at + 3:]


def test_a_silent_peer_times_out_after_the_task_timeout():
    """The reads use the caller's timeout (impacket's fixed one is gone); _dcom names it in the message."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _dcom
    srv = _listener(socket.AF_INET, '127.0.0.1')
    try:
        conn = c.RpcConnection('127.0.0.1', srv.getsockname()[1], {'username': 'u', 'password': 'p', 'domain': 'D'},
                               timeout=1)
        with pytest.raises(socket.timeout) as info:
            conn.alter_ctx(IFACE)
        conn.disconnect()
    finally:
        srv.close()
    err = _dcom.translate_exception(info.value, 'Activating CCertRequestD on the CA', '127.0.0.1', 1)
    assert err.to_message().startswith('Activating CCertRequestD on the CA timed out after 1 s (127.0.0.1)')
