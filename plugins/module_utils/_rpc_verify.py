# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified DCE/RPC replies: one job, check the security verifier of every reply PDU before its stub is used.

impacket's ``DCERPC_v5.recv()`` unseals replies but never compares the NTLM signature it computes, accepts a reply
without an auth trailer (or at a lower level) inside a packet-privacy session, does not check the Kerberos wrap
token's header, flags or sequence number (``GSS_Unwrap``), and reassembles fragments without bounds.
``VerifyingDCERPC_v5`` (a ``DCERPC_v5`` subclass; ``alter_ctx`` keeps the class) replaces ``recv()``:

* every response fragment must be a response PDU of the call just sent (call_id), in order (first/last flags),
  carry an auth trailer of our auth type, level and context id, and a verifier that checks: NTLM (extended session
  security) signature over header + plaintext stub + padding + sec_trailer with the server's own sequence number;
  Kerberos AES wrap token (RFC 4121: acceptor flag, sealed flag, the encrypted header copy equal to the outer
  header, integrity of the ciphertext) or RC4-HMAC wrap token (RFC 4757 checksum) with the sequence number the
  server announced in its AP-REP, each reply one higher;
* a reassembled reply is bounded (``MAX_FRAGMENTS``, ``MAX_REPLY_BYTES``);
* what a Kerberos verifier does not cover: MS-RPCE's Kerberos wrap/MIC token protects the stub with its padding
  only, unless header signing (``PFC_SUPPORT_HEADER_SIGN``, MS-RPCE 2.2.2.3 / 3.3.1.5.2.2) was negotiated, which
  impacket's bind never offers (so the CA never header-signs; NTLM's signature covers header and sec_trailer
  anyway). The unprotected ``auth_pad_length``, last-fragment flag and lengths are therefore bounded: stub plus
  padding a multiple of 16 (MS-RPCE 2.2.2.11; the pad content is not checked), the reassembled reply not shorter
  than its first fragment's ``alloc_hint`` announced, and ``request()`` decodes the reply before reading its
  status, so a stub cut or extended by an altered pad length or flag fails as a ``ReplyVerificationError``
  ("could not be decoded"; the connection is poisoned), never with library text or a status read from the wrong bytes;
* after one failure the connection is poisoned: every later reply on it fails the same way.

NTLM's bind_ack carries the challenge (nothing to verify yet: the session key covers it through the NTLMv2 MIC);
Kerberos' bind_ack / alter_context_resp carry the AP-REP, which impacket decrypts (so it is authenticated); the
third-leg alter_context_resp carries no verifier. Fault PDUs are passed to impacket's error handling (a forged
fault can only make the call fail). Failures raise ``_errors.ReplyVerificationError`` (a ``ProtocolError``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import socket
import struct
import sys

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import ReplyVerificationError

if HAS_IMPACKET:
    from Cryptodome.Cipher import ARC4
    from impacket import ntlm
    from impacket.dcerpc.v5 import rpcrt
    from impacket.dcerpc.v5.rpcrt import DCERPC_v5
    from impacket.krb5 import gssapi as krb_gssapi
else:
    DCERPC_v5 = object

MAX_FRAGMENTS = 16384
MAX_REPLY_BYTES = 64 * 1024 * 1024

PTYPE_RESPONSE = 2
PTYPE_FAULT = 3
PFC_FIRST_FRAG = 0x01
PFC_LAST_FRAG = 0x02
COMMON_HEADER = 16
RESPONSE_HEADER = 24
SEC_TRAILER = 8
AUTH_CTX_BASE = 79231          # impacket's auth_ctx_id = presentation context id + 79231

LEVEL_NAMES = {1: 'none', 2: 'connect', 3: 'call', 4: 'packet', 5: 'packet integrity', 6: 'packet privacy'}
AUTHN_WINNT = 10
AUTHN_GSS_NEGOTIATE = 9
LEVEL_INTEGRITY = 5
LEVEL_PRIVACY = 6

KG_USAGE_ACCEPTOR_SEAL = 22
KG_USAGE_ACCEPTOR_SIGN = 23
KRB_FLAG_SENT_BY_ACCEPTOR = 0x01
KRB_FLAG_SEALED = 0x02
RC4_WRAP_HEADER = b'\x60\x2b\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02'

REMEDY = ('Something between this host and the CA altered, replayed or forged RPC traffic (or the CA\'s RPC '
          'security is broken): check the network path to the CA, then run the task again.')


def verification_error(peer, cause):
    return ReplyVerificationError(
        'The reply from the CA at %s failed integrity verification (%s); it was discarded and nothing was '
        'written' % (peer or 'the CA', cause), remedy=REMEDY)


def decode_error(peer, what, exc):
    # a ReplyVerificationError: a verified reply that does not decode was cut or extended through the fields its
    # verifier does not cover (or the CA is broken); like a failed verifier it is no reason to fall back
    return ReplyVerificationError(
        'The reply from the CA at %s could not be decoded (a malformed or truncated %s reply); nothing was written'
        % (peer or 'the CA', what), detail=exception_name(exc), remedy=REMEDY)


def exception_name(exc):
    """'struct.error', 'builtins.IndexError': which decoder failed, without the library's text."""
    return '%s.%s' % (type(exc).__module__, type(exc).__name__)


def parse_header(data):
    """(ptype, flags, frag_len, auth_len, call_id) of a connection-oriented PDU header (little-endian only)."""
    vers, minor, ptype, flags, drep, frag_len, auth_len, call_id = struct.unpack('<BBBB4sHHL', data[:16])
    return vers, minor, ptype, flags, drep, frag_len, auth_len, call_id


def ntlm_expected_signature(flags, sign_key, handle, seq, message):
    """The 16-byte NTLMSSP_MESSAGE_SIGNATURE (extended session security) over message; handle seals the checksum
    when key exchange was negotiated (it advances the server's RC4 stream, as the server's own signing did)."""
    checksum = hmac.new(sign_key, struct.pack('<I', seq) + message, hashlib.md5).digest()[:8]
    if flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH:
        checksum = handle(checksum)
    return struct.pack('<I', 1) + checksum + struct.pack('<I', seq)


def krb_aes_unwrap(cipher_cls, key, verifier, sealed, expected_seq):
    """Decrypt and check an RFC 4121 wrap token (DCE style: token header + rotated head in the verifier, the rest
    in the stub). Returns (plaintext, None) or (None, cause)."""
    if len(verifier) < 16:
        return None, 'Kerberos wrap token too short'
    head = verifier[:16]
    tok_id, flags, filler, ec, rrc, seq = struct.unpack('>HBBHHQ', head)
    if tok_id != 0x0504 or filler != 0xFF:
        return None, 'not a Kerberos wrap token'
    if not flags & KRB_FLAG_SENT_BY_ACCEPTOR:
        return None, 'Kerberos wrap token not sent by the CA (acceptor flag unset): a reflected request'
    if not flags & KRB_FLAG_SEALED:
        return None, 'Kerberos wrap token not sealed in a packet-privacy session'
    rotated = verifier[16:] + sealed
    if not rotated:
        return None, 'empty Kerberos wrap token'
    shift = (rrc + ec) % len(rotated)
    ciphertext = rotated[shift:] + rotated[:shift]
    try:
        plain = cipher_cls().decrypt(key, KG_USAGE_ACCEPTOR_SEAL, ciphertext)
    except Exception:
        return None, 'Kerberos wrap token checksum mismatch, sequence %d' % seq
    if len(plain) < 16 + ec:
        return None, 'Kerberos wrap token too short'
    inner = plain[-16:]
    if inner[:6] != head[:6] or inner[6:8] != b'\x00\x00' or inner[8:] != head[8:]:
        return None, 'Kerberos wrap token header does not match its encrypted copy'
    if expected_seq is not None and seq != expected_seq:
        return None, 'Kerberos sequence %d, expected %d: out of sequence or replayed' % (seq, expected_seq)
    return plain[:-(16 + ec)], None


def krb_aes_verify_mic(checksum_profile, key, verifier, data, expected_seq):
    """Check an RFC 4121 MIC token over data (packet integrity). Returns None or the cause."""
    if len(verifier) < 28:
        return 'Kerberos MIC token too short'
    head = verifier[:16]
    tok_id, flags, _f0, _f1, seq = struct.unpack('>HBBLQ', head)
    if tok_id != 0x0404:
        return 'not a Kerberos MIC token'
    if not flags & KRB_FLAG_SENT_BY_ACCEPTOR:
        return 'Kerberos MIC token not sent by the CA (acceptor flag unset): a reflected request'
    expected = checksum_profile.checksum(key, KG_USAGE_ACCEPTOR_SIGN, data + head)
    if not hmac.compare_digest(expected, verifier[16:28]):
        return 'Kerberos MIC checksum mismatch, sequence %d' % seq
    if expected_seq is not None and seq != expected_seq:
        return 'Kerberos sequence %d, expected %d: out of sequence or replayed' % (seq, expected_seq)
    return None


def krb_rc4_unwrap(key_bytes, verifier, sealed, expected_seq):
    """Decrypt and check an RFC 4757 (RC4-HMAC) wrap token. Returns (plaintext, None) or (None, cause)."""
    body = verifier[len(RC4_WRAP_HEADER):]
    if verifier[:len(RC4_WRAP_HEADER)] != RC4_WRAP_HEADER or len(body) < 32:
        return None, 'not a Kerberos RC4 wrap token'
    tok_id, sgn_alg, seal_alg, filler = struct.unpack('<HHHH', body[:8])
    if tok_id != 0x0102 or sgn_alg != 0x11 or seal_alg != 0x10 or filler != 0xFFFF:
        return None, 'Kerberos RC4 wrap token with unexpected algorithms'
    enc_seq, cksum, enc_conf = body[8:16], body[16:24], body[24:32]

    def _hmac(key, msg):
        return hmac.new(key, msg, hashlib.md5).digest()

    kseq = _hmac(_hmac(key_bytes, struct.pack('<L', 0)), cksum)
    snd_seq = ARC4.new(kseq).decrypt(enc_seq)
    if snd_seq[4:] != b'\xff' * 4:
        return None, 'Kerberos wrap token not sent by the CA (direction bytes): a reflected request'
    seq = struct.unpack('>L', snd_seq[:4])[0]
    klocal = bytes(b ^ 0xF0 for b in key_bytes)
    kcrypt = _hmac(_hmac(klocal, struct.pack('<L', 0)), snd_seq[:4])
    rc4 = ARC4.new(kcrypt)
    confounder = rc4.decrypt(enc_conf)
    plain = rc4.decrypt(sealed)
    ksign = _hmac(key_bytes, b'signaturekey\0')
    expected = _hmac(ksign, hashlib.md5(struct.pack('<L', 13) + body[:8] + confounder + plain).digest())[:8]
    if not hmac.compare_digest(expected, cksum):
        return None, 'Kerberos RC4 wrap token checksum mismatch, sequence %d' % seq
    if expected_seq is not None and seq != expected_seq:
        return None, 'Kerberos sequence %d, expected %d: out of sequence or replayed' % (seq, expected_seq)
    return plain, None


def ap_rep_sequence(bind_ack_auth, tgs):
    """The sequence number the server announced in its AP-REP (inside the bind_ack's SPNEGO token), or None."""
    from impacket.krb5.asn1 import AP_REP, EncAPRepPart
    from impacket.spnego import SPNEGO_NegTokenResp
    from pyasn1.codec.der import decoder
    try:
        token = SPNEGO_NegTokenResp(bind_ack_auth)['ResponseToken']
        ap_rep = decoder.decode(token, asn1Spec=AP_REP())[0]
        plain = tgs['cipher'].decrypt(tgs['sessionKey'], 12, ap_rep['enc-part']['cipher'].asOctets())
        part = decoder.decode(plain, asn1Spec=EncAPRepPart())[0]
        return int(part['seq-number']) if part['seq-number'].isValue else 0
    except Exception:
        return None


def set_nodelay(rpc_transport):
    """TCP_NODELAY on the transport's socket (best effort: a transport without a TCP socket is left alone)."""
    try:
        sock = rpc_transport.get_socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return True
    except (AttributeError, OSError):
        pass
    return False


class VerifyingDCERPC_v5(DCERPC_v5):
    """impacket ``DCERPC_v5`` whose ``recv()`` verifies every reply PDU (see the module docstring)."""

    max_fragments = MAX_FRAGMENTS
    max_reply_bytes = MAX_REPLY_BYTES

    def __init__(self, transport):
        DCERPC_v5.__init__(self, transport)
        self._adcs_in_seq = 0
        self._adcs_handshake = False
        self._adcs_answer = None

    def connect(self):
        """Connect, then turn Nagle off: a request sent right after an NTLM AUTH3 (which has no reply) would
        otherwise wait for the server's delayed ACK (up to 200 ms on Windows) on every handshake."""
        result = DCERPC_v5.connect(self)
        set_nodelay(self._transport)
        return result

    # -- private state of DCERPC_v5 (name-mangled there) ----------------------------------------------------------
    def _p(self, name, default=None):
        return getattr(self, '_DCERPC_v5__' + name, default)

    @property
    def peer(self):
        try:
            return self._transport.getRemoteHost() or self._transport.getRemoteName()
        except Exception:
            return None

    def bind(self, iface_uuid, alter=0, bogus_binds=0,
             transfer_syntax=('8a885d04-1ceb-11c9-9fe8-08002b104860', '2.0')):
        self._adcs_handshake = True
        try:
            resp = DCERPC_v5.bind(self, iface_uuid, alter=alter, bogus_binds=bogus_binds,
                                  transfer_syntax=transfer_syntax)
        finally:
            self._adcs_handshake = False
        self._adcs_in_seq = 0
        level = self._p('auth_level')
        if level in (LEVEL_INTEGRITY, LEVEL_PRIVACY) and self._p('auth_type') == AUTHN_GSS_NEGOTIATE:
            tgs = self._p('TGS')
            seq = None
            if tgs and resp not in (0, None):
                seq = ap_rep_sequence(resp['auth_data'], tgs)
            self._adcs_in_seq = seq     # None (no ticket of ours to read the AP-REP): replies are refused
        return resp

    def _fail(self, cause):
        # poison the connection (alter_ctx makes new DCERPC_v5 objects on the same transport)
        try:
            self._transport._adcs_failure = cause
        except Exception:
            pass
        raise verification_error(self.peer, cause)

    def _read_fragment(self, force_recv):
        data = self._transport.recv(force_recv, count=RESPONSE_HEADER)
        if len(data) < COMMON_HEADER:
            self._fail('a truncated PDU header')
        vers, minor, _ptype, _flags, drep, frag_len, _auth_len, _call_id = parse_header(data)
        if vers != 5 or minor != 0 or drep[0] & 0xF0 != 0x10:
            self._fail('not a DCE/RPC version 5.0 little-endian PDU')
        if frag_len < RESPONSE_HEADER:
            self._fail('a PDU shorter than its header (frag_len %d)' % frag_len)
        while len(data) < frag_len:
            data += self._transport.recv(force_recv, count=frag_len - len(data))
        return data

    def _recv_handshake(self):
        """The third-leg alter_context_resp of a Kerberos bind (read by impacket's bind through recv())."""
        data = self._read_fragment(0)
        _v, _m, ptype, _f, _d, _fl, auth_len, _c = parse_header(data)
        if ptype not in (rpcrt.MSRPC_ALTERCTX_R, PTYPE_FAULT):
            self._fail('PDU type %d where the bind completion was expected' % ptype)
        if ptype == PTYPE_FAULT:
            return self._fault(data)
        return data[COMMON_HEADER:len(data) - (auth_len + SEC_TRAILER if auth_len else 0)]

    def _fault(self, data):
        status = struct.unpack('<L', data[RESPONSE_HEADER:RESPONSE_HEADER + 4])[0] if len(data) >= 28 else 0
        if status in rpcrt.rpc_status_codes:
            raise rpcrt.DCERPCException(rpcrt.rpc_status_codes[status])
        if status & 0xffff in rpcrt.rpc_status_codes:
            raise rpcrt.DCERPCException(rpcrt.rpc_status_codes[status & 0xffff])
        raise rpcrt.DCERPCException('Unknown DCE RPC fault status code: %.8x' % status)

    def recv(self):
        failure = getattr(self._transport, '_adcs_failure', None)
        if failure is not None:
            raise verification_error(self.peer, 'an earlier reply on this connection failed: %s' % failure)
        if self._adcs_handshake:
            return self._recv_handshake()
        level = self._p('auth_level')
        expected_call = (self._p('callid', 1) - 1) & 0xFFFFFFFF
        answer = []
        total = 0
        count = 0
        force = 0
        while True:
            data = self._read_fragment(force)
            _v, _m, ptype, flags, _d, frag_len, auth_len, call_id = parse_header(data)
            if ptype == PTYPE_FAULT:
                return self._fault(data)
            if ptype != PTYPE_RESPONSE:
                self._fail('PDU type %d where a response was expected' % ptype)
            if call_id != expected_call:
                self._fail('a reply to call %d while call %d is outstanding: out of sequence or replayed'
                           % (call_id, expected_call))
            if bool(flags & PFC_FIRST_FRAG) != (count == 0):
                self._fail('fragment %d of the reply %s the first-fragment flag: fragments out of order'
                           % (count + 1, 'lacks' if count == 0 else 'carries'))
            count += 1
            total += frag_len
            if count > self.max_fragments:
                self._fail('the reply exceeds %d fragments' % self.max_fragments)
            if total > self.max_reply_bytes:
                self._fail('the reply exceeds %d bytes' % self.max_reply_bytes)
            if count == 1:
                announced = struct.unpack('<L', data[COMMON_HEADER:COMMON_HEADER + 4])[0]
            if level in (LEVEL_INTEGRITY, LEVEL_PRIVACY):
                answer.append(verified_stub(self, data, level, frag_len, auth_len))
            else:
                stub = data[RESPONSE_HEADER:frag_len - (auth_len + SEC_TRAILER if auth_len else 0)]
                if auth_len:
                    pad = struct.unpack('<B', data[frag_len - auth_len - 6:frag_len - auth_len - 5])[0]
                    stub = stub[:len(stub) - pad]
                answer.append(stub)
            if flags & PFC_LAST_FRAG:
                reply = b''.join(answer)
                if announced > len(reply) + 15 * count:
                    # alloc_hint of the first fragment (C706 12.6.4.10: the stub length) against what arrived,
                    # allowing for the padding each fragment may or may not count: the last-fragment flag
                    # (not covered by a Kerberos verifier) was set early
                    self._fail('the reply ended after %d of the %d bytes its first fragment announced (a '
                               'truncated reply)' % (len(reply), announced))
                self._adcs_answer = reply
                return reply
            force = 1

    def request(self, request, uuid=None, checkError=True):
        """impacket's ``request()``, but the verified reply is decoded before its last four bytes are read as a
        status: a reply that does not decode (truncated or extended, e.g. by an altered ``auth_pad_length`` or
        last-fragment flag, which a Kerberos verifier does not cover) is a ``ReplyVerificationError`` in our words
        instead of library text or a status taken from the wrong bytes. impacket's own error handling follows."""
        self._adcs_answer = None
        try:
            resp = DCERPC_v5.request(self, request, uuid=uuid, checkError=False)
        except (ReplyVerificationError, rpcrt.DCERPCException):
            raise
        except Exception as exc:
            if self._adcs_answer is None:
                raise
            try:
                # the rest of a cut reply may still be in the stream: nothing later on it is used
                self._transport._adcs_failure = 'a reply that could not be decoded'
            except Exception:
                pass
            raise decode_error(self.peer, type(request).__name__, exc)
        answer = self._adcs_answer
        if checkError and answer[-4:] != b'\x00\x00\x00\x00':
            error_code = struct.unpack('<L', answer[-4:])[0]
            if error_code in rpcrt.rpc_status_codes:
                raise rpcrt.DCERPCException(error_code=error_code)
            session_error = getattr(sys.modules[request.__module__], 'DCERPCSessionError')
            raise session_error(packet=resp, error_code=error_code)
        return resp


def verified_stub(rpc, data, level, frag_len, auth_len):
    """The plain stub of a reply PDU of ``rpc`` (a VerifyingDCERPC_v5) after its security trailer is checked:
    type, level, context, pad, then the NTLM signature or the Kerberos wrap token/MIC (``rpc._fail`` otherwise)."""
    if not auth_len:
        rpc._fail('the reply carries no authentication trailer (a plaintext reply in a %s session)'
                  % LEVEL_NAMES[level])
    trailer_at = frag_len - auth_len - SEC_TRAILER
    if trailer_at < RESPONSE_HEADER:
        rpc._fail('an authentication trailer longer than the PDU')
    a_type, a_level, pad_len, _reserved, ctx_id = struct.unpack('<BBBBL', data[trailer_at:trailer_at + 8])
    ours = rpc._p('auth_type', 0)
    if a_type != ours:
        rpc._fail('authentication type %d instead of %d' % (a_type, ours))
    if a_level != level:
        rpc._fail('protection level %s instead of %s' % (LEVEL_NAMES.get(a_level, a_level), LEVEL_NAMES[level]))
    if ctx_id != rpc._ctx + AUTH_CTX_BASE:
        rpc._fail('a reply of security context %d where %d was expected: replayed or misdirected'
                  % (ctx_id, rpc._ctx + AUTH_CTX_BASE))
    stub = data[RESPONSE_HEADER:trailer_at]
    if pad_len > len(stub) or pad_len > 15:
        rpc._fail('an authentication pad of %d bytes' % pad_len)
    if len(stub) % 16:
        # MS-RPCE 2.2.2.11: the sec_trailer is 16-byte aligned from the start of the PDU body (Windows and
        # Samba pad the stub to a multiple of 16); the Kerberos wrap token does not cover the sec_trailer,
        # so its auth_pad_length is only bounded here and by decoding the reply (see request())
        rpc._fail('stub and authentication pad of %d bytes, not a multiple of 16' % len(stub))
    verifier = data[frag_len - auth_len:frag_len]
    if a_type == AUTHN_WINNT:
        plain = _ntlm_stub(rpc, data, stub, verifier, level, trailer_at, frag_len, auth_len)
    elif a_type == AUTHN_GSS_NEGOTIATE:
        plain = _kerberos_stub(rpc, stub, verifier, level)
    else:
        rpc._fail('authentication type %d cannot be verified' % a_type)
    return plain[:len(plain) - pad_len]


def _ntlm_stub(rpc, data, stub, verifier, level, trailer_at, frag_len, auth_len):
    flags = rpc._p('flags', 0)
    if not flags & ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY:
        rpc._fail('NTLM without extended session security cannot be verified')
    if auth_len != 16:
        rpc._fail('an NTLM verifier of %d bytes' % auth_len)
    seq = rpc._adcs_in_seq
    claimed = struct.unpack('<I', verifier[12:16])[0]
    handle = rpc._p('serverSealingHandle')
    plain = handle(stub) if level == LEVEL_PRIVACY else stub
    message = data[:RESPONSE_HEADER] + plain + data[trailer_at:frag_len - auth_len]
    expected = ntlm_expected_signature(flags, rpc._p('serverSigningKey'), handle, seq, message)
    if claimed != seq:
        rpc._fail('NTLM sequence %d, expected %d: out of sequence or replayed' % (claimed, seq))
    if not hmac.compare_digest(expected, verifier):
        rpc._fail('NTLM signature mismatch, sequence %d' % seq)
    rpc._adcs_in_seq = (seq + 1) & 0xFFFFFFFF
    return plain


def _kerberos_stub(rpc, stub, verifier, level):
    gss = rpc._p('gss')
    key = rpc._p('sessionKey')
    seq = rpc._adcs_in_seq
    if seq is None:
        rpc._fail('the CA announced no Kerberos sequence number (AP-REP) to check replies against')
    if isinstance(gss, krb_gssapi.GSSAPI_AES):
        if level == LEVEL_PRIVACY:
            plain, cause = krb_aes_unwrap(gss.cipherType, key, verifier, stub, seq)
        else:
            plain, cause = stub, krb_aes_verify_mic(gss.checkSumProfile, key, verifier, stub, seq)
    elif isinstance(gss, krb_gssapi.GSSAPI_RC4) and level == LEVEL_PRIVACY:
        plain, cause = krb_rc4_unwrap(key.contents, verifier, stub, seq)
    else:
        plain, cause = None, 'this Kerberos protection cannot be verified'
    if cause:
        rpc._fail(cause)
    rpc._adcs_in_seq = (seq + 1) & 0xFFFFFFFFFFFFFFFF
    return plain
