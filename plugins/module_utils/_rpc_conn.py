# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Our connection-oriented DCE/RPC client (ncacn_ip_tcp): one job, speak MS-RPCE on one TCP connection the way a
Windows client does, with every reply verified.

* one security context per connection (``_rpc_auth``: SPNEGO by default, raw NTLM or Kerberos as fallbacks),
  established with the first bind; further interfaces are added with an alter_context that carries no new
  handshake (MS-RPCE: several presentation contexts under one security context), and an interface already bound
  on the connection needs no PDU at all;
* PFC_SUPPORT_HEADER_SIGN offered in bind and alter_context, taken as negotiated when the bind_ack OR an
  alter_context_resp echoes it (MS-RPCE 2.2.2.3); then the verifiers cover the PDU header and sec_trailer;
* the MS-RPCE 2.2.2.13 verification trailer (rpc_sec_verification_trailer: bitmask when header signing is in
  force, pcontext, header2) after the NDR data of every request, inside the protected stub;
* replies: every fragment a response of the call just sent, in order, with our auth type, level and context id, a
  verifier that checks (sequence numbers per direction), bounded reassembly; a failure poisons the connection;
* TCP_NODELAY and the caller's timeout on the socket, IPv4 or IPv6 (getaddrinfo).

``RpcConnection.request`` sends a call declared as NDR data (``_orpc``, ``_activation``, ``_ndr``) and decodes its
reply; faults, refused binds and nonzero reply statuses raise ``_errors.RpcFault`` with the status code. PDU
structures are ``struct`` formats below.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import struct
import sys
import uuid as _uuid

from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_auth
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_verify
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, RpcFault
from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import WIRE_STATS

HEADER = '<BBBB4sHHL'                 # rpcconn_common_hdr_t
DREP = b'\x10\x00\x00\x00'            # little-endian, ASCII, IEEE
BIND_BODY = '<HHLB3x'                 # max_xmit_frag, max_recv_frag, assoc_group_id, n_context_elem
CTX_ITEM = '<HBx'                     # p_cont_id, n_transfer_syn
SEC_TRAILER = '<BBBBL'                # auth_type, auth_level, auth_pad_length, reserved, auth_context_id
REQUEST_BODY = '<LHH'                 # alloc_hint, p_cont_id, opnum
PTYPE = {'request': 0, 'response': 2, 'fault': 3, 'bind': 11, 'bind_ack': 12, 'bind_nak': 13, 'alter': 14,
         'alter_resp': 15, 'auth3': 16}
PFC_FIRST, PFC_LAST, PFC_SUPPORT_HEADER_SIGN, PFC_OBJECT_UUID = 0x01, 0x02, 0x04, 0x80
NDR20 = _uuid.UUID('8a885d04-1ceb-11c9-9fe8-08002b104860').bytes_le + struct.pack('<HH', 2, 0)
MAX_FRAG = 5840
AUTH_CONTEXT_ID = 0

VT_SIGNATURE = b'\x8a\xe3\x13\x71\x02\xf4\x36\x71'
VT_BITMASK, VT_PCONTEXT, VT_HEADER2 = 0x0001, 0x0002, 0x0003
VT_END, VT_MUST_PROCESS = 0x4000, 0x8000
VT_CLIENT_SUPPORT_HEADER_SIGNING = 0x1


def header(ptype, flags, frag_len, auth_len, call_id):
    return struct.pack(HEADER, 5, 0, PTYPE[ptype], flags, DREP, frag_len, auth_len, call_id)


def bind_body(contexts, max_frag=None, assoc_group=0):
    """contexts: [(context id, 20-byte abstract syntax)], each with NDR 2.0; fragments up to MAX_FRAG both ways."""
    max_frag = max_frag or MAX_FRAG
    body = struct.pack(BIND_BODY, max_frag, max_frag, assoc_group, len(contexts))
    for ctx_id, abstract in contexts:
        body += struct.pack(CTX_ITEM, ctx_id, 1) + abstract + NDR20
    return body


def parse_bind_ack(pdu):
    """{'max_xmit', 'max_recv', 'results': [(result, reason)], 'auth': bytes} of a bind_ack/alter_context_resp."""
    frag_len, auth_len = struct.unpack_from('<HH', pdu, 8)
    max_xmit, max_recv, _assoc, addr_len = struct.unpack_from('<HHLH', pdu, 16)
    off = 26 + addr_len
    off += (4 - off % 4) % 4
    count = pdu[off]
    results = [struct.unpack_from('<HH', pdu, off + 4 + 24 * i) for i in range(count)]
    return {'max_xmit': max_xmit, 'max_recv': max_recv, 'results': results,
            'auth': pdu[frag_len - auth_len:frag_len] if auth_len else b''}


def verification_trailer(call_id, ctx_id, opnum, abstract, bitmask=None, pcontext=True, header2=True):
    """rpc_sec_verification_trailer (MS-RPCE 2.2.2.13) with the commands asked for: bitmask_1 (``bitmask`` = its
    value), pcontext, header2; each must-process, the last with SEC_VT_COMMAND_END; b'' when none is asked for."""
    commands = []
    if bitmask is not None:
        commands.append((VT_BITMASK, struct.pack('<L', bitmask)))
    if pcontext:
        commands.append((VT_PCONTEXT, abstract + NDR20))
    if header2:
        commands.append((VT_HEADER2, struct.pack('<BBH4sLHH', PTYPE['request'], 0, 0, DREP, call_id, ctx_id, opnum)))
    if not commands:
        return b''
    out = VT_SIGNATURE
    for i, (kind, data) in enumerate(commands):
        kind |= VT_MUST_PROCESS | (VT_END if i == len(commands) - 1 else 0)
        out += struct.pack('<HH', kind, len(data)) + data
    return out


def raise_fault(pdu):
    status = struct.unpack_from('<L', pdu, 24)[0] if len(pdu) >= 28 else 0
    raise RpcFault(status)


class ConnectionClosed(AdcsError):
    """The peer closed the TCP connection (an orderly FIN) before the PDU we wait for was complete."""


class _NdrCalls(object):
    """Calls as NDR objects (impacket ``ndr`` style: ``opnum``, ``getData()``; the reply class is the call's name +
    ``Response`` in the call's module) over ``RpcConnection.call``."""

    def bind(self, iface):
        """Add presentation context ``iface`` (20-byte abstract syntax); the first bind establishes security."""
        return self.alter_ctx(iface)

    def request(self, request, uuid=None, check_status=True):
        """The decoded, verified reply to ``request`` on the current context (object UUID ``uuid``, e.g. an IPID).

        The reply is decoded before its last four bytes are read as a status (a reply cut or extended through
        unprotected fields fails as a ReplyVerificationError); a nonzero status raises RpcFault with the reply."""
        answer = self.call(request.opnum, request.getData(), uuid)
        module = sys.modules[request.__module__]
        try:
            resp = getattr(module, type(request).__name__ + 'Response')(answer, isNDR64=False)
        except Exception as exc:
            self.failure = 'a reply that could not be decoded'
            raise _rpc_verify.decode_error(self.address, type(request).__name__, exc)
        if check_status and answer[-4:] != b'\x00\x00\x00\x00':
            raise RpcFault(struct.unpack('<L', answer[-4:])[0], packet=resp)
        return resp


class RpcConnection(_NdrCalls):
    """One authenticated DCE/RPC connection (see the module docstring)."""

    def __init__(self, address, port, creds, package='negotiate', level=_rpc_auth.LEVEL_PRIVACY, timeout=30,
                 remote_name=None, header_sign=True, trailer=True):
        self.address, self.port, self.creds, self.package = address, port, creds, package
        self.level, self.timeout, self.offer_header_sign, self.trailer = level, timeout, header_sign, trailer
        self.remote_name = remote_name or address
        self.sock = None
        self.security = None
        self.header_sign = False
        self.call_id = 1
        self.max_xmit = MAX_FRAG
        self.contexts = {}              # abstract syntax (20 bytes) -> presentation context id
        self.current = None             # abstract syntax the next request() goes to
        self.failure = None
        self.verified = set()           # 'bitmask' and the abstract syntaxes a verification trailer was accepted for

    def connect(self):
        if self.sock is not None:
            return self
        infos = socket.getaddrinfo(self.address, self.port, 0, socket.SOCK_STREAM)
        last = None
        for family, kind, proto, _name, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self.timeout)
            try:
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
            WIRE_STATS.add('connections')
            WIRE_STATS.package = self.package
            return self
        raise last or socket.error('no address for %s' % self.address)

    def disconnect(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    close = disconnect

    def alter_ctx(self, iface):
        if not isinstance(iface, bytes):
            iface = bytes(iface)
        self.connect()
        if iface not in self.contexts:
            ctx_id = len(self.contexts)
            if self.security is None:
                self._bind_with_security(ctx_id, iface)
            else:
                ack = self._exchange('alter', [(ctx_id, iface)])
                check_result(ack)
            self.contexts[iface] = ctx_id
        self.current = iface
        return self

    # -- PDUs --------------------------------------------------------------------------------------------------------
    def _next_call(self):
        call_id = self.call_id
        self.call_id = (self.call_id + 1) & 0xFFFFFFFF
        return call_id

    def _flags(self):
        return PFC_FIRST | PFC_LAST | (PFC_SUPPORT_HEADER_SIGN if self.offer_header_sign else 0)

    def _send(self, pdu):
        self.sock.sendall(pdu)
        WIRE_STATS.add('pdus_sent')
        WIRE_STATS.add('bytes_sent', len(pdu))

    def _recv_exact(self, count):
        data = b''
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionClosed('Connection closed by remote host')
            data += chunk
        return data

    def _recv_pdu(self):
        if self.failure is not None:
            raise _rpc_verify.verification_error(self.address, 'an earlier reply on this connection failed: %s'
                                                 % self.failure)
        head = self._recv_exact(16)
        vers, minor, _ptype, _flags, drep, frag_len, _auth, _call = struct.unpack(HEADER, head)
        if vers != 5 or minor != 0 or drep[0] & 0xF0 != 0x10:
            self._fail('not a DCE/RPC version 5.0 little-endian PDU')
        if frag_len < 16:
            self._fail('a PDU shorter than its header (frag_len %d)' % frag_len)
        pdu = head + self._recv_exact(frag_len - 16)
        WIRE_STATS.add('pdus_received')
        WIRE_STATS.add('bytes_received', len(pdu))
        return pdu

    def _fail(self, cause):
        self.failure = cause
        raise _rpc_verify.verification_error(self.address, cause)

    def _exchange(self, ptype, contexts, token=None, call_id=None):
        """Send a bind/alter_context (with ``token`` under our sec_trailer) and return the parsed answer."""
        call_id = self._next_call() if call_id is None else call_id
        body = bind_body(contexts)
        auth = b''
        if token is not None:
            auth = struct.pack(SEC_TRAILER, self.security.auth_type, self.level, 0, 0, AUTH_CONTEXT_ID) + token
        self._send(header(ptype, self._flags(), 16 + len(body) + len(auth), len(token or b''), call_id) + body + auth)
        if ptype == 'alter':
            WIRE_STATS.add('alter_contexts')
        pdu = self._recv_pdu()
        kind = pdu[2]
        if kind == PTYPE['bind_nak']:
            reason = struct.unpack_from('<H', pdu, 16)[0] if len(pdu) >= 18 else 0
            # 9 = invalid checksum (authentication refused), 2/8 = authentication type/level not supported
            raise RpcFault(5 if reason in (2, 8, 9) else 0x1C010003)
        if kind == PTYPE['fault']:
            raise_fault(pdu)
        expected = PTYPE['bind_ack'] if ptype == 'bind' else PTYPE['alter_resp']
        if kind != expected or struct.unpack_from('<L', pdu, 12)[0] != call_id:
            self._fail('PDU type %d where the answer to the %s was expected' % (kind, ptype))
        if self.offer_header_sign and pdu[3] & PFC_SUPPORT_HEADER_SIGN:
            self.header_sign = True       # MS-RPCE 2.2.2.3: from the bind_ack or any alter_context_resp
        ack = parse_bind_ack(pdu)
        if ptype == 'bind':
            self.max_xmit = min(ack['max_recv'], MAX_FRAG)
        return ack

    def _bind_with_security(self, ctx_id, iface):
        self.security = _rpc_auth.security_context(self.package, self.creds, self.remote_name)
        WIRE_STATS.add('handshakes')
        ack = self._exchange('bind', [(ctx_id, iface)], self.security.first_token())
        check_result(ack)
        try:
            token, how = self.security.step(ack['auth'])
            if how == 'auth3':
                trailer = struct.pack(SEC_TRAILER, self.security.auth_type, self.level, 0, 0, AUTH_CONTEXT_ID)
                self._send(header('auth3', self._flags(), 16 + 4 + 8 + len(token), len(token), self._next_call()) +
                           b'\x00' * 4 + trailer + token)
            else:
                answer = self._exchange('alter', [(ctx_id, iface)], token)
                self.security.finish(answer['auth'])
        except _rpc_auth.BadVerifier as exc:
            self._fail(str(exc))

    # -- requests ----------------------------------------------------------------------------------------------------
    def call(self, opnum, stub, object_uuid=None):
        """Send one request (fragmented as needed) on the current context; return the verified reply stub."""
        ctx_id = self.contexts[self.current]
        call_id = self._next_call()
        trailer = self._trailer(call_id, ctx_id, opnum)
        if trailer:
            stub += b'\x00' * ((4 - len(stub) % 4) % 4) + trailer     # 4-byte aligned after the NDR data
        extra_len = 8 + (16 if object_uuid else 0)
        verifier_len = self.security.verifier_size(self.level) if self.security else 0
        room = max(16, (self.max_xmit - 16 - extra_len - 8 - verifier_len) // 16 * 16)
        off = 0
        WIRE_STATS.add('calls')
        while True:
            chunk = stub[off:off + room]
            last = off + len(chunk) >= len(stub)
            flags = (PFC_FIRST if off == 0 else 0) | (PFC_LAST if last else 0)
            flags |= PFC_OBJECT_UUID if object_uuid else 0
            extra = struct.pack(REQUEST_BODY, len(stub) - off, ctx_id, opnum) + (object_uuid or b'')
            self._send(self._protect(flags, call_id, extra, chunk))
            off += len(chunk)
            if last:
                reply = read_reply(self, call_id)
                if trailer:
                    self.verified.update(('bitmask', self.current))
                return reply

    def _trailer(self, call_id, ctx_id, opnum):
        """The verification trailer this request needs, as Samba's client builds it: bitmask_1 until one request of
        the connection carried it, pcontext until one request of the presentation context carried it, header2 on
        every request while the header is not signed (MS-RPCE 2.2.2.13: for what the verifier does not protect)."""
        if not self.trailer or self.security is None:
            return b''
        bitmask = None
        if 'bitmask' not in self.verified:
            bitmask = VT_CLIENT_SUPPORT_HEADER_SIGNING if self.header_sign else 0
        return verification_trailer(call_id, ctx_id, opnum, self.current, bitmask,
                                    self.current not in self.verified, not self.header_sign)

    def _protect(self, flags, call_id, extra, chunk):
        if self.security is None:
            return header('request', flags, 16 + len(extra) + len(chunk), 0, call_id) + extra + chunk
        pad = (16 - len(chunk) % 16) % 16
        data = chunk + b'\x00' * pad
        auth_len = self.security.verifier_size(self.level)
        trailer = struct.pack(SEC_TRAILER, self.security.auth_type, self.level, pad, 0, AUTH_CONTEXT_ID)
        prefix = header('request', flags, 16 + len(extra) + len(data) + 8 + auth_len, auth_len, call_id) + extra
        body, verifier = self.security.protect(prefix, data, trailer, self.level, self.header_sign)
        return prefix + body + trailer + verifier


def check_result(ack):
    """The presentation context was accepted, else nca_s_unk_if (the interface is not offered)."""
    if not ack['results'] or ack['results'][0][0] != 0:
        raise RpcFault(0x1C010003)    # nca_s_unk_if: the interface is not offered


def read_reply(conn, call_id):
    """The verified, reassembled stub of the reply to ``call_id`` on ``conn`` (see the module docstring)."""
    parts, count, total, announced = [], 0, 0, 0
    while True:
        pdu = conn._recv_pdu()
        _v, _m, kind, flags, _d, frag_len, auth_len, reply_call = struct.unpack(HEADER, pdu[:16])
        if kind == PTYPE['fault']:
            raise_fault(pdu)
        if kind != PTYPE['response']:
            conn._fail('PDU type %d where a response was expected' % kind)
        if reply_call != call_id:
            conn._fail('a reply to call %d while call %d is outstanding: out of sequence or replayed'
                       % (reply_call, call_id))
        if bool(flags & PFC_FIRST) != (count == 0):
            conn._fail('fragment %d of the reply %s the first-fragment flag: fragments out of order'
                       % (count + 1, 'lacks' if count == 0 else 'carries'))
        if frag_len < 24:
            conn._fail('a PDU shorter than its header (frag_len %d)' % frag_len)
        count += 1
        total += frag_len
        if count > _rpc_verify.MAX_FRAGMENTS or total > _rpc_verify.MAX_REPLY_BYTES:
            conn._fail('the reply exceeds %d fragments or %d bytes'
                       % (_rpc_verify.MAX_FRAGMENTS, _rpc_verify.MAX_REPLY_BYTES))
        if count == 1:
            announced = struct.unpack_from('<L', pdu, 16)[0]
        parts.append(unprotected_stub(conn, pdu, frag_len, auth_len))
        if flags & PFC_LAST:
            reply = b''.join(parts)
            if announced > len(reply) + 15 * count:
                conn._fail('the reply ended after %d of the %d bytes its first fragment announced (a '
                           'truncated reply)' % (len(reply), announced))
            return reply


def unprotected_stub(conn, pdu, frag_len, auth_len):
    """The plain stub of one response fragment after its sec_trailer and verifier check (``conn._fail`` else)."""
    if conn.security is None:
        return pdu[24:frag_len]
    names = _rpc_verify.LEVEL_NAMES
    if not auth_len:
        conn._fail('the reply carries no authentication trailer (a plaintext reply in a %s session)'
                   % names[conn.level])
    at = frag_len - auth_len - 8
    if at < 24:
        conn._fail('an authentication trailer longer than the PDU')
    a_type, a_level, pad, _r, a_ctx = struct.unpack_from(SEC_TRAILER, pdu, at)
    if a_type != conn.security.auth_type:
        conn._fail('authentication type %d instead of %d' % (a_type, conn.security.auth_type))
    if a_level != conn.level:
        conn._fail('protection level %s instead of %s' % (names.get(a_level, a_level), names[conn.level]))
    if a_ctx != AUTH_CONTEXT_ID:
        conn._fail('a reply of security context %d where %d was expected: replayed or misdirected'
                   % (a_ctx, AUTH_CONTEXT_ID))
    body = pdu[24:at]
    if pad > 15 or pad > len(body):
        conn._fail('an authentication pad of %d bytes' % pad)
    if len(body) % 16:
        conn._fail('stub and authentication pad of %d bytes, not a multiple of 16' % len(body))
    try:
        plain = conn.security.unprotect(pdu[:24], body, pdu[at:at + 8], pdu[at + 8:frag_len], conn.level,
                                        conn.header_sign)
    except _rpc_auth.BadVerifier as exc:
        conn._fail(str(exc))
    return plain[:len(plain) - pad]
