"""A small, strict connection-oriented DCE/RPC client for testing the lab servers.

Unlike impacket's client it VERIFIES the server's packet signatures and sealing (server-direction
NTLM keys, one RC4 stream per direction, per-direction sequence numbers) and fails loudly when
they are wrong. It is deliberately independent of the server code: PDUs are built with ``struct``
here and NTLM messages / keys come from impacket's ``ntlm`` primitives only.

Usage::

    c = StrictClient("127.0.0.21", port)
    c.bind([(0, IFACE_UUID, (1, 0))], auth=("enroller", "pw", "LAB"), level=6)
    reply = c.request(0, opnum=0, stub=b"...")
"""

import hmac
import socket
import struct
import uuid as _uuid
from typing import Dict, Optional, Sequence, Tuple

from Cryptodome.Cipher import ARC4
from impacket import ntlm
from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech

NDR20 = ("8a885d04-1ceb-11c9-9fe8-08002b104860", (2, 0))
NDR64 = ("71710533-beba-4937-8319-b5dbef9ccc36", (1, 0))
BTFN = ("6cb71c2c-9812-4540-0300-000000000000", (1, 0))

BIND, BIND_ACK, BIND_NAK, ALTER, ALTER_RESP, AUTH3, REQUEST, RESPONSE, FAULT = 11, 12, 13, 14, 15, 16, 0, 2, 3


class ClientError(Exception):
    pass


class FaultError(ClientError):
    def __init__(self, status: int, flags: int = 0):
        super().__init__("fault 0x%08x" % status)
        self.status = status
        self.flags = flags


class BindNakError(ClientError):
    def __init__(self, reason: int):
        super().__init__("bind_nak reason %d" % reason)
        self.reason = reason


class SignatureError(ClientError):
    pass


def _neg_token_resp_mic(token: bytes) -> Optional[bytes]:
    """The mechListMIC ([3] OCTET STRING) of a DER NegTokenResp, or None (impacket's parser drops it)."""
    def tlv(data, off):
        tag, length = data[off], data[off + 1]
        off += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[off:off + n], "big")
            off += n
        return tag, off, length
    _t, off, _l = tlv(token, 0)            # [1] NegTokenResp
    _t, off, length = tlv(token, off)      # SEQUENCE
    end = off + length
    while off < end:
        tag, voff, vlen = tlv(token, off)
        if tag == 0xA3:
            _t, o2, l2 = tlv(token, voff)
            return token[o2:o2 + l2]
        off = voff + vlen
    return None


def _syntax(uuid_str: str, ver) -> bytes:
    return _uuid.UUID(uuid_str).bytes_le + struct.pack("<HH", ver[0], ver[1])


class _NtlmState:
    def __init__(self, user, password, domain, nthash=""):
        self.user, self.password, self.domain, self.nthash = user, password, domain, nthash
        self.type1 = ntlm.getNTLMSSPType1("", "", signingRequired=True, use_ntlmv2=True)
        self.flags = 0
        self.session_key = b""
        self.out_seq = 0
        self.in_seq = 0

    def negotiate(self) -> bytes:
        return self.type1.getData()

    def authenticate(self, challenge: bytes) -> bytes:
        resp, key = ntlm.getNTLMSSPType3(self.type1, challenge, self.user, self.password, self.domain,
                                         nthash=self.nthash, use_ntlmv2=True)
        self.flags = resp["flags"]
        self.session_key = key
        self.c_sign = ntlm.SIGNKEY(self.flags, key, "Client")
        self.s_sign = ntlm.SIGNKEY(self.flags, key, "Server")
        self.c_seal = ntlm.SEALKEY(self.flags, key, "Client")
        self.s_seal = ntlm.SEALKEY(self.flags, key, "Server")
        self.c_rc4 = ARC4.new(self.c_seal)
        self.s_rc4 = ARC4.new(self.s_seal)
        return resp.getData()

    def _mac(self, key, rc4, seq, msg) -> bytes:
        cks = ntlm.hmac_md5(key, struct.pack("<I", seq) + msg)[:8]
        if self.flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH:
            cks = rc4.encrypt(cks)
        return struct.pack("<I", 1) + cks + struct.pack("<I", seq)

    def out_sign(self, msg) -> bytes:
        sig = self._mac(self.c_sign, self.c_rc4, self.out_seq, msg)
        self.out_seq += 1
        return sig

    def out_seal(self, plain) -> bytes:
        return self.c_rc4.encrypt(plain)

    def in_unseal(self, sealed) -> bytes:
        return self.s_rc4.decrypt(sealed)

    def in_verify(self, msg, sig) -> None:
        expected = self._mac(self.s_sign, self.s_rc4, self.in_seq, msg)
        self.in_seq += 1
        if not hmac.compare_digest(expected, sig):
            raise SignatureError("server signature mismatch (seq %d)" % (self.in_seq - 1))


def authenticate_with_mic(accept_negotiate, user, password, domain, good_mic=True):
    """An NTLM AUTHENTICATE as Windows builds it (MsvAvFlags MIC-present, the MIC over the three messages), after
    ``accept_negotiate(NEGOTIATE bytes) -> CHALLENGE bytes``; ``good_mic=False`` puts a wrong MIC in.
    Returns (AUTHENTICATE bytes, exported session key, negotiated flags)."""
    t1 = ntlm.getNTLMSSPType1("", "", signingRequired=True, use_ntlmv2=True)
    t1["flags"] |= ntlm.NTLMSSP_NEGOTIATE_VERSION
    t1["os_version"] = b"\x0a\x00\x63\x45\x00\x00\x00\x0f"
    neg = t1.getData()
    chal = accept_negotiate(neg)
    # add MsvAvFlags (MIC present) to the target info the client echoes back
    c = ntlm.NTLMAuthChallenge(chal)
    av = ntlm.AV_PAIRS(c["TargetInfoFields"])
    av[ntlm.NTLMSSP_AV_FLAGS] = struct.pack("<I", 2)
    c2 = ntlm.NTLMAuthChallenge(chal)
    c2["TargetInfoFields"] = av.getData()
    c2["TargetInfoFields_len"] = c2["TargetInfoFields_max_len"] = len(c2["TargetInfoFields"])
    t3, key = ntlm.getNTLMSSPType3(t1, c2.getData(), user, password, domain, use_ntlmv2=True)
    t3["Version"] = b"\x0a\x00\x63\x45\x00\x00\x00\x0f"
    t3["MIC"] = b"\x00" * 16
    raw = t3.getData()
    mic = ntlm.hmac_md5(key, neg + chal + raw) if good_mic else b"\x11" * 16
    return raw[:72] + mic + raw[88:], key, t3["flags"]


class StrictClient:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.call_id = 1
        self.max_xmit = 4280
        self.max_recv = 4280
        self.auth: Dict[int, Tuple[_NtlmState, int]] = {}   # auth_ctx_id -> (state, level)
        self.ctx_auth: Dict[int, int] = {}                  # presentation ctx -> auth_ctx_id
        self.auth_types: Dict[int, int] = {}                # auth_ctx_id -> auth type (10 NTLM, 9 SPNEGO)
        self.last_ack: dict = {}
        self.response_fragments = 0
        self.tamper_next = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- raw I/O -------------------------------------------------------------------------
    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def recv_pdu(self) -> bytes:
        head = self._recv(16)
        frag_len = struct.unpack_from("<H", head, 8)[0]
        return head + self._recv(frag_len - 16)

    def _recv(self, n) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ClientError("connection closed by server")
            buf += chunk
        return buf

    @staticmethod
    def header(ptype, flags, frag_len, auth_len, call_id) -> bytes:
        return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, b"\x10\x00\x00\x00", frag_len, auth_len, call_id)

    # -- bind ----------------------------------------------------------------------------
    def bind(self, contexts: Sequence, auth: Optional[tuple] = None, level: int = 6, auth_ctx_id: int = 1,
             alter: bool = False, max_xmit: int = 4280, max_recv: int = 4280, clear_ntlm_flags: int = 0,
             header_sign: bool = False, spnego: bool = False, bad_mech_list_mic: bool = False) -> dict:
        """contexts: (ctx_id, uuid, version[, [transfer syntaxes]]). auth: (user, password, domain[, nthash]).
        clear_ntlm_flags: NTLM NEGOTIATE flags to remove (e.g. KEY_EXCH) to exercise other key derivations.
        spnego: NTLM inside SPNEGO (auth type 9) as Windows sends it: the AUTHENTICATE goes with a mechListMIC in an
        alter_context, whose answer must carry the server's mechListMIC (both checked; RC4 restarts after each,
        MS-SPNG 3.3.5.1)."""
        body = struct.pack("<HHIBBH", max_xmit, max_recv, 0, len(contexts), 0, 0)
        for item in contexts:
            ctx_id, if_uuid, if_ver = item[:3]
            syntaxes = item[3] if len(item) > 3 else [NDR20]
            body += struct.pack("<HBB", ctx_id, len(syntaxes), 0) + _syntax(if_uuid, if_ver)
            for s in syntaxes:
                body += _syntax(*s)
        state = None
        tail = b""
        auth_len = 0
        if auth is not None:
            state = _NtlmState(*auth)
            state.type1["flags"] &= ~clear_ntlm_flags & 0xFFFFFFFF
            token = state.negotiate()
            auth_type = 10
            if spnego:
                init = SPNEGO_NegTokenInit()
                init["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
                init["MechToken"] = token
                token = init.getData()
                auth_type = 9
                mech_list = b"".join(b"\x06" + bytes([len(m)]) + m for m in init["MechTypes"])
                mech_list = b"\x30" + bytes([len(mech_list)]) + mech_list
            pad = (4 - (16 + len(body)) % 4) % 4
            contexts_body = body
            body += b"\x00" * pad
            tail = struct.pack("<BBBBI", auth_type, level, pad, 0, auth_ctx_id) + token
            auth_len = len(token)
        call_id = self.call_id
        self.call_id += 1
        flags = 3 | (4 if header_sign else 0)      # PFC_SUPPORT_HEADER_SIGN (MS-RPCE 2.2.2.3)
        pdu = self.header(ALTER if alter else BIND, flags, 16 + len(body) + len(tail), auth_len, call_id) + body + tail
        self.send_raw(pdu)
        reply = self.recv_pdu()
        ptype = reply[2]
        if ptype == BIND_NAK:
            raise BindNakError(struct.unpack_from("<H", reply, 16)[0])
        if ptype == FAULT:
            raise FaultError(struct.unpack_from("<I", reply, 24)[0], reply[3])
        if ptype != (ALTER_RESP if alter else BIND_ACK):
            raise ClientError("unexpected PDU type %d in reply to bind" % ptype)
        ack = self._parse_ack(reply)
        ack["header_sign"] = bool(reply[3] & 4)
        if not alter:
            self.max_xmit = ack["max_recv"]
            self.max_recv = ack["max_xmit"]
        if state is not None and spnego:
            challenge = SPNEGO_NegTokenResp(ack["auth_value"])["ResponseToken"]
            ack["challenge"] = challenge
            final = SPNEGO_NegTokenResp()
            final["ResponseToken"] = state.authenticate(challenge)
            mic = state.out_sign(mech_list)
            final["mechListMIC"] = (mic[:4] + bytes([mic[4] ^ 1]) + mic[5:]) if bad_mech_list_mic else mic
            state.c_rc4 = ARC4.new(state.c_seal)
            token = final.getData()
            body = contexts_body + b"\x00" * pad
            trailer = struct.pack("<BBBBI", 9, level, pad, 0, auth_ctx_id)
            self.send_raw(self.header(ALTER, 3 | (4 if header_sign else 0), 16 + len(body) + 8 + len(token),
                                      len(token), call_id) + body + trailer + token)
            reply = self.recv_pdu()
            if reply[2] == FAULT:
                raise FaultError(struct.unpack_from("<I", reply, 24)[0], reply[3])
            if reply[2] != ALTER_RESP:
                raise ClientError("unexpected PDU type %d in reply to the SPNEGO alter_context" % reply[2])
            server_mic = _neg_token_resp_mic(self._parse_ack(reply)["auth_value"])
            if server_mic is None:
                raise ClientError("alter_context_resp without the server's mechListMIC")
            state.in_verify(mech_list, server_mic)
            state.s_rc4 = ARC4.new(state.s_seal)
            self.auth[auth_ctx_id] = (state, level)
            self.auth_types[auth_ctx_id] = 9
        elif state is not None:
            if not ack["auth_value"]:
                raise ClientError("bind_ack without NTLM CHALLENGE")
            ack["challenge"] = ack["auth_value"]
            token = state.authenticate(ack["auth_value"])
            body = b"    "
            trailer = struct.pack("<BBBBI", 10, level, 0, 0, auth_ctx_id)
            self.send_raw(self.header(AUTH3, 3, 16 + len(body) + 8 + len(token), len(token), call_id) + body +
                          trailer + token)
            self.auth[auth_ctx_id] = (state, level)
        for item, res in zip(contexts, ack["results"]):
            if res[0] == 0:
                self.ctx_auth[item[0]] = auth_ctx_id if state is not None else self.ctx_auth.get(item[0], 0)
        self.last_ack = ack
        return ack

    @staticmethod
    def _parse_ack(pdu: bytes) -> dict:
        frag_len, auth_len = struct.unpack_from("<HH", pdu, 8)
        max_xmit, max_recv, assoc, addr_len = struct.unpack_from("<HHIH", pdu, 16)
        off = 26
        sec_addr = pdu[off:off + addr_len]
        off += addr_len
        off += (4 - off % 4) % 4
        n = pdu[off]
        off += 4
        results = []
        for _ in range(n):
            r, reason = struct.unpack_from("<HH", pdu, off)
            results.append((r, reason, pdu[off + 4:off + 24]))
            off += 24
        auth_value = pdu[frag_len - auth_len:] if auth_len else b""
        return {"max_xmit": max_xmit, "max_recv": max_recv, "assoc_group": assoc, "sec_addr": sec_addr,
                "results": results, "auth_value": auth_value}

    # -- request -------------------------------------------------------------------------
    def request(self, ctx_id: int, opnum: int, stub: bytes, object_uuid: Optional[str] = None,
                auth_ctx_id: Optional[int] = None, frag_size: Optional[int] = None,
                level: Optional[int] = None) -> bytes:
        if auth_ctx_id is None:
            auth_ctx_id = self.ctx_auth.get(ctx_id, 0)
        state, ctx_level = self.auth.get(auth_ctx_id, (None, 1))
        if level is None:
            level = ctx_level
        protect = state is not None and level >= 5
        call_id = self.call_id
        self.call_id += 1
        hdr_len = 24 + (16 if object_uuid else 0)
        limit = frag_size or self.max_xmit
        room = limit - hdr_len - (24 if protect else 0)
        room -= room % 16 if protect else room % 4
        room = max(room, 16)
        off = 0
        while True:
            chunk = stub[off:off + room]
            last = off + len(chunk) >= len(stub)
            flags = (1 if off == 0 else 0) | (2 if last else 0) | (0x80 if object_uuid else 0)
            extra = struct.pack("<IHH", len(stub) - off, ctx_id, opnum)
            if object_uuid:
                extra += _uuid.UUID(object_uuid).bytes_le
            if protect:
                pad = (16 - len(chunk) % 16) % 16
                data = chunk + b"\xAB" * pad
                trailer = struct.pack("<BBBBI", self.auth_types.get(auth_ctx_id, 10), level, pad, 0, auth_ctx_id)
                frag_len = 16 + len(extra) + len(data) + 8 + 16
                head = self.header(REQUEST, flags, frag_len, 16, call_id) + extra
                signed = head + data + trailer
                if level == 6:
                    body = state.out_seal(data)
                else:
                    body = data
                sig = state.out_sign(signed)
                if self.tamper_next:
                    sig = sig[:4] + bytes([sig[4] ^ 0xFF]) + sig[5:]
                    self.tamper_next = False
                pdu = head + body + trailer + sig
            else:
                pdu = self.header(REQUEST, flags, 16 + len(extra) + len(chunk), 0, call_id) + extra + chunk
            self.send_raw(pdu)
            off += len(chunk)
            if last:
                break
        return self.read_response(call_id)

    def read_response(self, call_id: int) -> bytes:
        out = b""
        self.response_fragments = 0
        while True:
            pdu = self.recv_pdu()
            ptype, flags = pdu[2], pdu[3]
            frag_len, auth_len, rcall = struct.unpack_from("<HHI", pdu, 8)
            if len(pdu) > self.max_recv:
                raise ClientError("server fragment of %d bytes exceeds max_recv_frag %d" % (len(pdu), self.max_recv))
            if rcall != call_id:
                raise ClientError("reply for call %d while waiting for %d" % (rcall, call_id))
            if ptype == FAULT:
                raise FaultError(struct.unpack_from("<I", pdu, 24)[0], flags)
            if ptype != RESPONSE:
                raise ClientError("unexpected PDU type %d" % ptype)
            self.response_fragments += 1
            if auth_len:
                toff = frag_len - auth_len - 8
                a_type, a_level, a_pad, _r, a_ctx = struct.unpack_from("<BBBBI", pdu, toff)
                state, _lvl = self.auth[a_ctx]
                if toff % 4:
                    raise ClientError("sec_trailer not 4-byte aligned")
                body = pdu[24:toff]
                sig = pdu[toff + 8:]
                if a_level == 6:
                    plain = state.in_unseal(body)
                    state.in_verify(pdu[:24] + plain + pdu[toff:toff + 8], sig)
                else:
                    plain = body
                    state.in_verify(pdu[:toff + 8], sig)
                out += plain[:len(plain) - a_pad]
            else:
                out += pdu[24:]
            if flags & 2:
                return out
