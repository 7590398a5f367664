"""Connection-oriented DCE/RPC server (ncacn_ip_tcp) for the lab CA.

C706 chapter 12 plus the MS-RPCE extensions a Windows client or impacket relies on: several
presentation contexts and several security contexts (per auth_context_id) per connection,
bind time feature negotiation, fragment reassembly in both directions honouring the negotiated
fragment sizes, NTLM (pluggable providers) with packet integrity and packet privacy.

One thread per connection; every socket has a timeout, malformed input leads to a fault or to
closing that connection, never to the server going down.
"""

import logging
import socket
import struct
import threading
import itertools
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .. import seed
from . import constants as C
from . import vtrailer
from .pdu import (COMMON_HEADER_LEN, RESPONSE_HEADER_LEN, SEC_TRAILER_LEN, BindBody, ContextResult, Header, Pdu,
                  PduError, RequestBody, SecTrailer, build_bind_ack, build_bind_nak, build_fault, build_header,
                  syntax_to_bin, uuid_to_bin)
from .security import AuthError, IntegrityError, SecurityContext, ServerIdentity, default_providers

LOG = logging.getLogger("adcslab.rpc")

_NDR20_BIN = syntax_to_bin(C.NDR20_UUID, C.NDR20_VERSION)
_BAD_STUB_EXCEPTIONS = (struct.error, ValueError, IndexError, KeyError, TypeError, UnicodeError, EOFError)


class RpcFault(Exception):
    """Raise from a handler: the call is answered with a fault PDU carrying ``status``."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(message or "RPC fault 0x%08x" % status)
        self.status = status & 0xFFFFFFFF
        self.message = message


@dataclass
class AuthInfo:
    user: str
    domain: str
    authn_type: int
    authn_level: int
    account: object
    auth_context_id: int = 0


@dataclass
class Interface:
    uuid: str
    version: tuple
    handlers: Dict[int, Callable]
    min_authn_level: int = C.RPC_C_AUTHN_LEVEL_NONE
    requires_object_uuid: bool = False
    name: str = ""

    def __post_init__(self):
        self.uuid = self.uuid.lower()
        self.version = tuple(self.version)


@dataclass
class CallContext:
    connection: "Connection"
    auth: Optional[AuthInfo]
    object_uuid: Optional[str]
    interface_uuid: str
    interface_version: tuple
    opnum: int
    context_id: int
    server: "RpcServer"
    call_id: int = 0
    authn_level: int = C.RPC_C_AUTHN_LEVEL_NONE      # effective protection of this call (1 when unauthenticated)
    interface: Optional[Interface] = None


class ServerHooks:
    """Fault-injection hook point.

    ``before_call``: ``None`` or ``callable(ctx: CallContext)`` run before each handler. It may sleep
    (delay), raise :class:`RpcFault` (answer with that fault), or return ``"drop"`` (close the
    connection without answering) / ``"ignore"`` (send no answer, keep the connection).
    """

    def __init__(self):
        self.before_call: Optional[Callable[[CallContext], Optional[str]]] = None


class _Deny(Exception):
    def __init__(self, status: int, close: bool = False, reason: str = ""):
        super().__init__(reason or "0x%08x" % status)
        self.status = status
        self.close = close


class _BindRefused(Exception):
    def __init__(self, nak_reason: int, fault_status: int, message: str):
        super().__init__(message)
        self.nak_reason = nak_reason
        self.fault_status = fault_status


class _Close(Exception):
    pass


@dataclass
class _SecEntry:
    ctx: SecurityContext
    auth_type: int
    auth_level: int
    auth_context_id: int


@dataclass
class _PresContext:
    context_id: int
    interface: Interface
    transfer_syntax: bytes
    abstract_syntax: bytes = b""      # as the client asked for it (RPC_SYNTAX_IDENTIFIER), for the verification trailer


@dataclass
class _PendingCall:
    call_id: int
    context_id: int
    opnum: int
    object_uuid: Optional[str]
    entry: Optional[_SecEntry]
    level: int
    chunks: List[bytes] = field(default_factory=list)
    size: int = 0
    drep: bytes = b"\x10\x00\x00\x00"


class Connection:
    def __init__(self, server: "RpcServer", sock: socket.socket, peer):
        self.server = server
        self.sock = sock
        self.peer = peer
        try:
            self.local_address, self.local_port = sock.getsockname()[:2]
        except OSError:
            self.local_address, self.local_port = server.address, server.port
        self.state: dict = {}
        self.bound = False
        self.max_xmit_frag = C.MUST_RECV_FRAG_SIZE
        self.max_recv_frag = server.max_frag
        self.assoc_group_id = 0
        self.features = 0
        self.header_signing = False      # client offered PFC_SUPPORT_HEADER_SIGN in its bind (MS-RPCE 2.2.2.3)
        self.trailers_checked = 0        # requests whose MS-RPCE 2.2.2.13 verification trailer was checked
        self.contexts: Dict[int, _PresContext] = {}
        self.sec_contexts: Dict[int, _SecEntry] = {}
        self.pending: Dict[int, _PendingCall] = {}
        self.log = server.log
        self.closed = False

    # ---------------------------------------------------------------------------------------
    def __repr__(self):
        return "<Connection %s:%s -> %s:%s>" % (self.peer[0], self.peer[1], self.local_address, self.local_port)

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_exact(self, n: int, allow_eof: bool = False) -> Optional[bytes]:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                if allow_eof and not buf:
                    return None
                raise _Close("connection closed in the middle of a PDU")
            buf += chunk
        return bytes(buf)

    def _send(self, data: bytes):
        self.sock.sendall(data)

    def run(self):
        self.log.debug("connection from %s:%s on %s:%s", self.peer[0], self.peer[1], self.local_address,
                       self.local_port)
        try:
            while not self.server._stopping.is_set():
                head = self._recv_exact(COMMON_HEADER_LEN, allow_eof=True)
                if head is None:
                    break
                hdr = Header.parse(head)
                if not self._check_header(hdr):
                    break
                rest = self._recv_exact(hdr.frag_length - COMMON_HEADER_LEN)
                if not self._handle(head + rest):
                    break
        except socket.timeout:
            self.log.debug("%r: idle timeout", self)
        except _Close as exc:
            self.log.debug("%r: %s", self, exc)
        except OSError as exc:
            if not self.closed:
                self.log.debug("%r: socket error %s", self, exc)
        except Exception:  # never let a connection take the server down
            self.log.exception("%r: internal error, closing the connection", self)
        finally:
            self.close()
            self.server._forget(self)

    # ---------------------------------------------------------------------------------------
    def _check_header(self, hdr: Header) -> bool:
        """Checks done before reading the body. False -> close (after a nak/fault if possible)."""
        if hdr.rpc_vers != 5 or hdr.rpc_vers_minor not in (0, 1):
            self.log.info("%r: unsupported RPC version %d.%d", self, hdr.rpc_vers, hdr.rpc_vers_minor)
            if hdr.ptype == C.PTYPE_BIND:
                self._send(build_bind_nak(hdr.call_id, C.BIND_NAK_PROTOCOL_VERSION_NOT_SUPPORTED))
            return False
        if not hdr.little_endian:
            self.log.info("%r: big-endian data representation not supported", self)
            if hdr.ptype == C.PTYPE_BIND:
                self._send(build_bind_nak(hdr.call_id, C.BIND_NAK_PROTOCOL_VERSION_NOT_SUPPORTED))
            return False
        if hdr.frag_length < COMMON_HEADER_LEN or hdr.frag_length < COMMON_HEADER_LEN + hdr.auth_length:
            self.log.info("%r: bad frag_length %d", self, hdr.frag_length)
            return False
        limit = max(self.max_recv_frag, self.server.max_frag) if self.bound else 0xFFFF
        if hdr.frag_length > limit and hdr.ptype not in (C.PTYPE_BIND, C.PTYPE_ALTER_CONTEXT, C.PTYPE_AUTH3):
            self.log.info("%r: fragment of %d bytes exceeds the negotiated %d", self, hdr.frag_length, limit)
            if hdr.ptype == C.PTYPE_REQUEST:
                self._send(build_fault(hdr.call_id, C.NCA_S_PROTO_ERROR, did_not_execute=True))
            return False
        return True

    def _handle(self, raw: bytes) -> bool:
        ptype = raw[2]
        try:
            pdu = Pdu.parse(raw)
        except PduError as exc:
            self.log.info("%r: malformed PDU type %d: %s", self, ptype, exc)
            call_id = struct.unpack_from("<I", raw, 12)[0]
            if ptype == C.PTYPE_BIND:
                self._send(build_bind_nak(call_id, C.BIND_NAK_REASON_NOT_SPECIFIED))
            elif ptype in (C.PTYPE_REQUEST, C.PTYPE_ALTER_CONTEXT):
                self._send(build_fault(call_id, C.NCA_S_PROTO_ERROR, did_not_execute=True))
            return False
        if ptype == C.PTYPE_BIND:
            return self._on_bind(pdu, alter=False)
        if ptype == C.PTYPE_ALTER_CONTEXT:
            return self._on_bind(pdu, alter=True)
        if ptype == C.PTYPE_AUTH3:
            return self._on_auth3(pdu)
        if ptype == C.PTYPE_REQUEST:
            return self._on_request(pdu)
        if ptype == C.PTYPE_ORPHANED:
            dropped = self.pending.pop(pdu.header.call_id, None)
            self.log.debug("%r: orphaned call %d%s", self, pdu.header.call_id, " (dropped)" if dropped else "")
            return True
        if ptype in (C.PTYPE_CO_CANCEL, C.PTYPE_SHUTDOWN):
            self.log.debug("%r: ignoring PDU type %d", self, ptype)
            return True
        self.log.info("%r: unexpected PDU type %d from client, closing", self, ptype)
        return False

    # ---------------------------------------------------------------------------------------
    # bind / alter_context / auth3
    # ---------------------------------------------------------------------------------------
    def _refuse_bind(self, pdu: Pdu, alter: bool, nak_reason: int, fault_status: int) -> None:
        if alter:
            self._send(build_fault(pdu.header.call_id, fault_status, did_not_execute=True))
        else:
            self._send(build_bind_nak(pdu.header.call_id, nak_reason))

    def _on_bind(self, pdu: Pdu, alter: bool) -> bool:
        hdr = pdu.header
        rebind = not alter and self.bound
        if rebind:
            # C706 calls this a protocol error; impacket does it (hept_map with a reused dce), so we
            # treat it like an alter_context answered with a bind_ack.
            self.log.debug("%r: second bind on an established association", self)
        if alter and not self.bound:
            self.log.info("%r: alter_context before bind", self)
            self._send(build_fault(hdr.call_id, C.NCA_S_PROTO_ERROR, did_not_execute=True))
            return False
        try:
            body = BindBody.parse(pdu.body)
        except PduError as exc:
            self.log.info("%r: malformed %s: %s", self, "alter_context" if alter else "bind", exc)
            self._refuse_bind(pdu, alter, C.BIND_NAK_REASON_NOT_SPECIFIED, C.NCA_S_PROTO_ERROR)
            return False
        if not alter and not rebind:
            if body.max_recv_frag < C.MIN_ACCEPTED_FRAG or body.max_xmit_frag < C.MIN_ACCEPTED_FRAG:
                self.log.info("%r: fragment sizes %d/%d too small", self, body.max_xmit_frag, body.max_recv_frag)
                self._refuse_bind(pdu, False, C.BIND_NAK_LOCAL_LIMIT_EXCEEDED, 0)
                return True
        auth_reply = None
        if pdu.trailer is not None:
            try:
                auth_reply = self._auth_leg(pdu.trailer, pdu.auth_value)
            except _BindRefused as exc:
                self.log.info("%r: %s refused: %s", self, "alter_context" if alter else "bind", exc)
                self._refuse_bind(pdu, alter, exc.nak_reason, exc.fault_status)
                return True
        if not alter and not rebind:
            self.max_xmit_frag = min(body.max_recv_frag, self.server.max_frag)
            self.max_recv_frag = min(body.max_xmit_frag, self.server.max_frag)
            self.assoc_group_id = self.server._assoc_group(body.assoc_group_id)
            self.bound = True
        results = [self._bind_context(elem) for elem in body.contexts]
        sec_addr = b"" if alter else str(self.local_port).encode() + b"\x00"
        ptype = C.PTYPE_ALTER_CONTEXT_RESP if alter else C.PTYPE_BIND_ACK
        flags = C.PFC_FIRST_FRAG | C.PFC_LAST_FRAG
        if hdr.pfc_flags & C.PFC_SUPPORT_HEADER_SIGN:
            # MS-RPCE 2.2.2.3 / 3.3.1.5.2.2: echoed in bind_ack AND alter_context_resp (a client may take the
            # negotiated state from either); once negotiated it holds for the connection.
            flags |= C.PFC_SUPPORT_HEADER_SIGN
            self.header_signing = True
        self._send(build_bind_ack(ptype, hdr.call_id, self.max_xmit_frag, self.max_recv_frag, self.assoc_group_id,
                                  sec_addr, results, flags=flags, auth=auth_reply))
        return True

    def _bind_context(self, elem) -> ContextResult:
        uuid_str, version = elem.abstract_syntax
        # bind time feature negotiation: the prefix is in the transfer syntax
        # (like Samba: only the first transfer syntax is looked at)
        ts_uuid, ts_ver = elem.transfer_syntaxes[0]
        if ts_uuid.startswith(C.BTFN_UUID_PREFIX) and tuple(ts_ver) == (1, 0):
            bitmask = uuid_to_bin(ts_uuid)[8]
            self.features = bitmask & C.BTFN_SERVER_SUPPORTED
            self.log.debug("%r: bind time features 0x%x -> 0x%x", self, bitmask, self.features)
            return ContextResult(C.RESULT_NEGOTIATE_ACK, self.features)
        iface = self.server._find_interface(uuid_str, version)
        if iface is None:
            self.log.info("%r: context %d: interface %s v%d.%d not supported", self, elem.context_id, uuid_str,
                          version[0], version[1])
            return ContextResult(C.RESULT_PROVIDER_REJECTION, C.REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED)
        existing = self.contexts.get(elem.context_id)
        if existing is not None and existing.interface is not iface:
            self.log.info("%r: context %d already bound to another interface", self, elem.context_id)
            return ContextResult(C.RESULT_PROVIDER_REJECTION, C.REASON_NOT_SPECIFIED)
        for raw_ts in elem.raw_transfer_syntaxes:
            if raw_ts == _NDR20_BIN:
                self.contexts[elem.context_id] = _PresContext(
                    elem.context_id, iface, raw_ts, vtrailer.syntax_id(uuid_to_bin(uuid_str), version))
                self.log.debug("%r: context %d -> %s v%d.%d (NDR20)", self, elem.context_id, iface.name or iface.uuid,
                               iface.version[0], iface.version[1])
                return ContextResult(C.RESULT_ACCEPTANCE, 0, raw_ts)
        self.log.info("%r: context %d: no supported transfer syntax among %s", self, elem.context_id,
                      ", ".join(u for u, _ in elem.transfer_syntaxes))
        return ContextResult(C.RESULT_PROVIDER_REJECTION, C.REASON_PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED)

    def _auth_leg(self, trailer: SecTrailer, token: bytes) -> Optional[Tuple[SecTrailer, bytes]]:
        provider = self.server._providers.get(trailer.auth_type)
        if provider is None:
            raise _BindRefused(C.BIND_NAK_AUTHENTICATION_TYPE_NOT_RECOGNIZED, C.RPC_S_UNKNOWN_AUTHN_SERVICE,
                               "authentication type %d not supported" % trailer.auth_type)
        if not C.RPC_C_AUTHN_LEVEL_CONNECT <= trailer.auth_level <= C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY:
            raise _BindRefused(C.BIND_NAK_REASON_NOT_SPECIFIED, C.RPC_S_UNKNOWN_AUTHN_LEVEL,
                               "authentication level %d not supported" % trailer.auth_level)
        cid = trailer.auth_context_id
        entry = self.sec_contexts.get(cid)
        if entry is not None:
            if entry.auth_type != trailer.auth_type:
                raise _BindRefused(C.BIND_NAK_REASON_NOT_SPECIFIED, C.NCA_S_PROTO_ERROR,
                                   "auth_context_id %d reused with another authentication type" % cid)
            if entry.ctx.failed:
                raise _BindRefused(C.BIND_NAK_INVALID_CHECKSUM, C.RPC_S_ACCESS_DENIED,
                                   "security context %d failed earlier" % cid)
            if entry.ctx.complete:
                return None  # presentation context added under an established security context
        else:
            if len(self.sec_contexts) >= self.server.max_security_contexts:
                raise _BindRefused(C.BIND_NAK_LOCAL_LIMIT_EXCEEDED, C.RPC_S_ACCESS_DENIED,
                                   "too many security contexts on this connection")
            sc = provider.new_context()
            sc.connection = self         # lets a provider see e.g. connection.header_signing
            entry = _SecEntry(sc, trailer.auth_type, trailer.auth_level, cid)
            self.sec_contexts[cid] = entry
        try:
            result = entry.ctx.accept(token)
        except AuthError as exc:
            self.sec_contexts.pop(cid, None)
            self.log.warning("%r: authentication failed (%s): %s", self, provider.name or trailer.auth_type, exc)
            raise _BindRefused(C.BIND_NAK_INVALID_CHECKSUM, exc.status, str(exc))
        except Exception as exc:  # a provider bug or garbage token: refuse, do not crash
            self.sec_contexts.pop(cid, None)
            self.log.warning("%r: security provider error: %s", self, exc.__class__.__name__)
            raise _BindRefused(C.BIND_NAK_INVALID_CHECKSUM, C.RPC_S_SEC_PKG_ERROR, "security provider error")
        if result.done:
            self._log_authenticated(entry)
        if result.reply_token:
            return SecTrailer(trailer.auth_type, trailer.auth_level, 0, 0, cid), result.reply_token
        return None

    def _log_authenticated(self, entry: _SecEntry):
        self.log.info("%r: authenticated %s\\%s (type %d, level %s, auth_context_id %d, header signing %s)", self,
                      entry.ctx.domain, entry.ctx.user, entry.auth_type,
                      C.AUTHN_LEVEL_NAMES.get(entry.auth_level, entry.auth_level), entry.auth_context_id,
                      "on" if self.header_signing else "off")

    def _on_auth3(self, pdu: Pdu) -> bool:
        if pdu.trailer is None:
            self.log.info("%r: auth3 without auth verifier ignored", self)
            return True
        entry = self.sec_contexts.get(pdu.trailer.auth_context_id)
        if entry is None or entry.ctx.complete or entry.ctx.failed:
            self.log.info("%r: auth3 for unknown/finished security context %d ignored", self,
                          pdu.trailer.auth_context_id)
            return True
        if pdu.trailer.auth_type != entry.auth_type:
            entry.ctx.failed = "auth3 with another authentication type"
            return True
        try:
            result = entry.ctx.accept(pdu.auth_value)
        except AuthError as exc:
            entry.ctx.failed = entry.ctx.failed or str(exc)
            self.log.warning("%r: authentication failed: %s", self, exc)
            return True
        except Exception as exc:
            entry.ctx.failed = "security provider error"
            self.log.warning("%r: security provider error in auth3: %s", self, exc.__class__.__name__)
            return True
        if result.done:
            self._log_authenticated(entry)
        return True

    # ---------------------------------------------------------------------------------------
    # requests
    # ---------------------------------------------------------------------------------------
    def _unprotect(self, pdu: Pdu, rb: RequestBody) -> Tuple[bytes, Optional[_SecEntry], int]:
        raw = pdu.raw
        if pdu.trailer is None:
            stub = raw[rb.stub_offset:]
            if len(self.sec_contexts) == 1:
                only = next(iter(self.sec_contexts.values()))
                if only.auth_level == C.RPC_C_AUTHN_LEVEL_CONNECT:
                    # MS-RPCE 3.3.1.5.4: a lone connect-level context may omit the verifier on requests
                    if only.ctx.failed or not only.ctx.complete:
                        raise _Deny(C.RPC_S_ACCESS_DENIED, False, "connect-level security context not established")
                    return stub, only, C.RPC_C_AUTHN_LEVEL_CONNECT
            return stub, None, C.RPC_C_AUTHN_LEVEL_NONE
        tr = pdu.trailer
        entry = self.sec_contexts.get(tr.auth_context_id)
        if entry is None or entry.ctx.failed or not entry.ctx.complete:
            why = "unknown" if entry is None else ("failed" if entry.ctx.failed else "incomplete")
            raise _Deny(C.RPC_S_ACCESS_DENIED, False, "%s security context %d" % (why, tr.auth_context_id))
        if tr.auth_type != entry.auth_type:
            raise _Deny(C.NCA_S_PROTO_ERROR, True, "authentication type changed")
        level = tr.auth_level
        if level < entry.auth_level:
            raise _Deny(C.RPC_S_ACCESS_DENIED, True, "request protection below the security context level")
        toff = pdu.trailer_offset
        stub_pad = raw[rb.stub_offset:toff]
        if tr.auth_pad_length > len(stub_pad):
            raise _Deny(C.NCA_S_PROTO_ERROR, True, "auth_pad_length larger than the stub")
        try:
            if level == C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY:
                plain = entry.ctx.unseal(raw[:rb.stub_offset], stub_pad, raw[toff:toff + SEC_TRAILER_LEN],
                                         pdu.auth_value)
            elif level in (C.RPC_C_AUTHN_LEVEL_CALL, C.RPC_C_AUTHN_LEVEL_PKT, C.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY):
                entry.ctx.verify(raw[:toff + SEC_TRAILER_LEN], pdu.auth_value)
                plain = stub_pad
            elif level == C.RPC_C_AUTHN_LEVEL_CONNECT:
                plain = stub_pad
            else:
                raise _Deny(C.NCA_S_PROTO_ERROR, True, "invalid authentication level %d" % level)
        except IntegrityError as exc:
            raise _Deny(C.RPC_S_SEC_PKG_ERROR, True, str(exc))
        except AuthError as exc:
            raise _Deny(exc.status, True, str(exc))
        return plain[:len(plain) - tr.auth_pad_length], entry, level

    def _on_request(self, pdu: Pdu) -> bool:
        hdr = pdu.header
        try:
            rb = RequestBody.parse(pdu)
        except PduError as exc:
            self.log.info("%r: malformed request: %s", self, exc)
            self._send(build_fault(hdr.call_id, C.NCA_S_PROTO_ERROR, did_not_execute=True))
            return False
        first = bool(hdr.pfc_flags & C.PFC_FIRST_FRAG)
        last = bool(hdr.pfc_flags & C.PFC_LAST_FRAG)
        call = self.pending.get(hdr.call_id)
        if first:
            if call is not None:
                self.log.info("%r: call %d restarted", self, hdr.call_id)
            call = None
        elif call is None:
            self.log.info("%r: continuation fragment for unknown call %d", self, hdr.call_id)
            self._send(build_fault(hdr.call_id, C.NCA_S_PROTO_ERROR, rb.context_id, did_not_execute=True))
            return False
        try:
            stub, entry, level = self._unprotect(pdu, rb)
        except _Deny as exc:
            self.log.warning("%r: call %d refused: %s", self, hdr.call_id, exc)
            self.pending.pop(hdr.call_id, None)
            self._send(build_fault(hdr.call_id, exc.status, rb.context_id, did_not_execute=True))
            return not exc.close
        if call is None:
            if len(self.pending) >= 16:
                self._send(build_fault(hdr.call_id, C.NCA_S_SERVER_TOO_BUSY, rb.context_id, did_not_execute=True))
                return False
            call = _PendingCall(hdr.call_id, rb.context_id, rb.opnum, rb.object_uuid, entry, level)
            self.pending[hdr.call_id] = call
        elif (call.context_id != rb.context_id or call.opnum != rb.opnum or call.entry is not entry
              or call.level != level):
            self.log.info("%r: fragments of call %d disagree", self, hdr.call_id)
            self.pending.pop(hdr.call_id, None)
            self._send(build_fault(hdr.call_id, C.NCA_S_PROTO_ERROR, rb.context_id, did_not_execute=True))
            return False
        call.chunks.append(stub)
        call.size += len(stub)
        if call.size > self.server.max_call_size:
            self.log.info("%r: call %d larger than %d bytes", self, hdr.call_id, self.server.max_call_size)
            self.pending.pop(hdr.call_id, None)
            self._send(build_fault(hdr.call_id, C.NCA_S_PROTO_ERROR, rb.context_id, did_not_execute=True))
            return False
        if not last:
            return True
        del self.pending[hdr.call_id]
        call.drep = hdr.drep
        return self._dispatch(call, b"".join(call.chunks))

    def _dispatch(self, call: _PendingCall, stub: bytes) -> bool:
        pres = self.contexts.get(call.context_id)
        if pres is None:
            self.log.info("%r: call %d on unbound presentation context %d", self, call.call_id, call.context_id)
            self._send(build_fault(call.call_id, C.NCA_S_UNK_IF, call.context_id, did_not_execute=True))
            return True
        iface = pres.interface
        auth = None
        if call.entry is not None:
            sc = call.entry.ctx
            auth = AuthInfo(sc.user, sc.domain, call.entry.auth_type, call.level, sc.account,
                            call.entry.auth_context_id)
        if call.level < iface.min_authn_level:
            self.log.warning("%r: %s opnum %d at level %s < required %s: access denied", self,
                             iface.name or iface.uuid, call.opnum, C.AUTHN_LEVEL_NAMES.get(call.level, call.level),
                             C.AUTHN_LEVEL_NAMES.get(iface.min_authn_level, iface.min_authn_level))
            self._send(build_fault(call.call_id, C.RPC_S_ACCESS_DENIED, call.context_id, did_not_execute=True))
            return True
        if iface.requires_object_uuid and call.object_uuid is None:
            self.log.info("%r: %s opnum %d without object uuid", self, iface.name or iface.uuid, call.opnum)
            self._send(build_fault(call.call_id, C.NCA_S_UNK_IF, call.context_id, did_not_execute=True))
            return True
        stub, commands = vtrailer.split(stub)
        if commands is not None:
            try:
                vtrailer.check(commands, C.PTYPE_REQUEST, call.drep, call.call_id, call.context_id, call.opnum,
                               pres.abstract_syntax, pres.transfer_syntax, self.header_signing)
            except vtrailer.TrailerRejected as exc:
                self.log.warning("%r: call %d refused: verification trailer: %s", self, call.call_id, exc)
                self._send(build_fault(call.call_id, C.RPC_S_ACCESS_DENIED, call.context_id, did_not_execute=True))
                return True
            self.trailers_checked += 1
            if self.trailers_checked == 1:
                self.log.info("%r: verification trailer checked (%s)", self,
                              ", ".join(vtrailer.COMMAND_NAMES.get(cmd.kind, hex(cmd.kind)) for cmd in commands))
        handler = iface.handlers.get(call.opnum)
        if handler is None:
            self.log.info("%r: %s opnum %d not implemented", self, iface.name or iface.uuid, call.opnum)
            self._send(build_fault(call.call_id, C.NCA_S_OP_RNG_ERROR, call.context_id, did_not_execute=True))
            return True
        ctx = CallContext(self, auth, call.object_uuid, iface.uuid, iface.version, call.opnum, call.context_id,
                          self.server, call.call_id, call.level, iface)
        hook = self.server.hooks.before_call
        try:
            if hook is not None:
                verdict = hook(ctx)
                if verdict == "drop":
                    self.log.info("%r: hook dropped call %d", self, call.call_id)
                    return False
                if verdict == "ignore":
                    return True
            self.log.debug("%r: call %d %s opnum %d (%d bytes, user %s)", self, call.call_id,
                           iface.name or iface.uuid, call.opnum, len(stub),
                           "%s\\%s" % (auth.domain, auth.user) if auth else "-")
            reply = handler(ctx, stub)
            if not isinstance(reply, (bytes, bytearray)):
                raise TypeError("handler returned %s instead of bytes" % type(reply).__name__)
        except RpcFault as exc:
            self.log.info("%r: call %d fault 0x%08x %s", self, call.call_id, exc.status, exc.message)
            self._send(build_fault(call.call_id, exc.status, call.context_id))
            return True
        except _BAD_STUB_EXCEPTIONS as exc:
            self.log.warning("%r: call %d: bad stub data (%s: %s)", self, call.call_id, exc.__class__.__name__, exc)
            self.log.debug("handler traceback", exc_info=True)
            self._send(build_fault(call.call_id, C.RPC_X_BAD_STUB_DATA, call.context_id))
            return True
        except Exception as exc:
            self.log.error("%r: call %d: handler error %s: %s", self, call.call_id, exc.__class__.__name__, exc,
                           exc_info=True)
            self._send(build_fault(call.call_id, C.NCA_S_FAULT_UNSPEC, call.context_id))
            return True
        self._send_response(call, bytes(reply))
        return True

    def _send_response(self, call: _PendingCall, stub: bytes) -> None:
        entry, level = call.entry, call.level
        protected = entry is not None and level >= C.RPC_C_AUTHN_LEVEL_CALL
        vsize = entry.ctx.verifier_size(level) if protected else 0
        overhead = RESPONSE_HEADER_LEN + ((SEC_TRAILER_LEN + vsize) if protected else 0)
        room = self.max_xmit_frag - overhead
        if protected:
            room -= 15
            chunk = room - room % 16
        else:
            chunk = room - room % 8
        chunk = max(chunk, 16)
        off = 0
        total = len(stub)
        while True:
            data = stub[off:off + chunk]
            flags = (C.PFC_FIRST_FRAG if off == 0 else 0)
            last = off + len(data) >= total
            if last:
                flags |= C.PFC_LAST_FRAG
            alloc_hint = total - off
            if protected:
                pad = (16 - len(data) % 16) % 16
                data_p = data + b"\x00" * pad
                trailer = SecTrailer(entry.auth_type, level, pad, 0, entry.auth_context_id).pack()
                frag_len = RESPONSE_HEADER_LEN + len(data_p) + SEC_TRAILER_LEN + vsize
                head = build_header(C.PTYPE_RESPONSE, flags, frag_len, vsize, call.call_id) + \
                    struct.pack("<IHBB", alloc_hint, call.context_id, 0, 0)
                if level == C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY:
                    body, verifier = entry.ctx.seal(head, data_p, trailer)
                else:
                    body, verifier = data_p, entry.ctx.sign(head + data_p + trailer)
                if len(verifier) != vsize:
                    raise RuntimeError("security provider returned a verifier of unexpected size")
                self._send(head + body + trailer + verifier)
            else:
                frag_len = RESPONSE_HEADER_LEN + len(data)
                head = build_header(C.PTYPE_RESPONSE, flags, frag_len, 0, call.call_id) + \
                    struct.pack("<IHBB", alloc_hint, call.context_id, 0, 0)
                self._send(head + data)
            off += len(data)
            if last:
                break


class RpcServer:
    """Threaded ncacn_ip_tcp server. ``port=0`` picks a free port (see ``.port`` after ``start()``)."""

    def __init__(self, address: str, port: int, interfaces: List[Interface], accounts, security_providers=None,
                 netbios_domain="LAB", dns_domain="lab.adcs.test", netbios_computer=seed.CA_NETBIOS,
                 dns_computer=seed.CA_HOST, logger=None, max_frag: int = C.DEFAULT_MAX_FRAG,
                 idle_timeout: float = 300.0, max_call_size: int = 16 * 1024 * 1024,
                 max_security_contexts: int = 64, max_connections: int = 256, kerberos_keytab=None,
                 disable_ntlm=None):
        self.address = address
        self.port = port
        self.accounts = accounts
        self.log = logger or LOG
        self.max_frag = max(C.MUST_RECV_FRAG_SIZE, min(int(max_frag), 0xFFFF))
        self.idle_timeout = idle_timeout
        self.max_call_size = max_call_size
        self.max_security_contexts = max_security_contexts
        self.max_connections = max_connections
        self.hooks = ServerHooks()
        self.identity = ServerIdentity(netbios_domain, dns_domain, netbios_computer, dns_computer, accounts,
                                       self.log)
        if accounts is not None and hasattr(accounts, "add_domain_alias"):
            accounts.add_domain_alias(dns_domain, netbios_domain)
            accounts.add_domain_alias(netbios_domain, netbios_domain)
        self._interfaces: Dict[Tuple[str, int], List[Interface]] = {}
        self._lock = threading.Lock()
        for iface in interfaces or []:
            self.add_interface(iface)
        if security_providers is None:
            providers = default_providers(accounts, kerberos_keytab, disable_ntlm)
        else:
            providers = dict(security_providers)
        self._providers = {}
        for auth_type, prov in providers.items():
            self._providers[int(auth_type)] = self._make_provider(prov)
        self._assoc_ids = itertools.count(0x1A2B0001)
        self._known_assoc: set = set()
        self._connections: set = set()
        self._threads: List[threading.Thread] = []
        self._stopping = threading.Event()
        self._sock: Optional[socket.socket] = None
        self._accept_thread: Optional[threading.Thread] = None

    # -- interfaces -----------------------------------------------------------------------
    def add_interface(self, iface: Interface) -> None:
        key = (iface.uuid.lower(), int(iface.version[0]))
        with self._lock:
            lst = [i for i in self._interfaces.get(key, []) if tuple(i.version) != tuple(iface.version)]
            lst.append(iface)
            lst.sort(key=lambda i: i.version[1], reverse=True)
            self._interfaces[key] = lst

    def remove_interface(self, uuid: str, version: tuple) -> None:
        with self._lock:
            key = (uuid.lower(), int(version[0]))
            self._interfaces[key] = [i for i in self._interfaces.get(key, []) if tuple(i.version) != tuple(version)]

    def _find_interface(self, uuid: str, version: tuple) -> Optional[Interface]:
        with self._lock:
            for iface in self._interfaces.get((uuid.lower(), version[0]), []):
                if iface.version[1] >= version[1]:
                    return iface
        return None

    @property
    def interfaces(self) -> List[Interface]:
        with self._lock:
            return [i for lst in self._interfaces.values() for i in lst]

    def _make_provider(self, prov):
        """A provider instance from an instance, a class or a factory ``f(identity)``."""
        if isinstance(prov, type) or (callable(prov) and not hasattr(prov, "new_context")):
            return prov(self.identity)
        return prov

    def add_security_provider(self, auth_type: int, provider) -> None:
        self._providers[int(auth_type)] = self._make_provider(provider)

    @property
    def security_providers(self) -> Dict[int, object]:
        """The active providers by authn_type (e.g. {10: NtlmProvider, 16: KerberosProvider, 9: SpnegoProvider})."""
        return dict(self._providers)

    def _assoc_group(self, requested: int) -> int:
        with self._lock:
            if requested and requested in self._known_assoc:
                return requested
            new = next(self._assoc_ids) & 0xFFFFFFFF
            self._known_assoc.add(new)
            return new

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "RpcServer":
        if self._sock is not None:
            return self
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, self.port))
        sock.listen(64)
        sock.settimeout(0.25)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="rpc-accept-%s:%d" % (self.address,
                                               self.port), daemon=True)
        self._accept_thread.start()
        self.log.info("RPC server listening on %s:%d", self.address, self.port)
        return self

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                conn_sock, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    break
                continue
            with self._lock:
                too_many = len(self._connections) >= self.max_connections
            if too_many:
                self.log.warning("too many connections, refusing %s", peer)
                conn_sock.close()
                continue
            conn_sock.settimeout(self.idle_timeout)
            conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, conn_sock, peer)
            t = threading.Thread(target=conn.run, name="rpc-conn-%s:%s" % peer[:2], daemon=True)
            with self._lock:
                self._connections.add(conn)
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    def _forget(self, conn: Connection):
        with self._lock:
            self._connections.discard(conn)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        with self._lock:
            conns = list(self._connections)
            threads = list(self._threads)
        for c in conns:
            c.close()
        for t in threads:
            t.join(timeout)
        self._sock = None
        self.log.info("RPC server on %s:%d stopped", self.address, self.port)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
