"""NTLM (MS-NLMP) acceptor for the RPC server, built on impacket's ``ntlm`` primitives.

Only NTLMv2 responses with extended session security are accepted (what impacket, Certipy and
current Windows send). The NT hash comes from the AccountStore; nothing secret is logged.
"""

import hmac
import logging
import os
import struct
import time
from typing import Tuple

from Cryptodome.Cipher import ARC4
from impacket import ntlm

from .security import AcceptResult, AuthError, IntegrityError, SecurityContext, SecurityProvider
from . import constants as C

LOG = logging.getLogger("adcslab.rpc.ntlm")

NTLMSSP_SIGNATURE = b"NTLMSSP\x00"
MSV_AV_FLAGS_MIC_PRESENT = 0x00000002
# Windows Server 2019 (10.0.17763), NTLM revision 15
SERVER_VERSION = struct.pack("<BBH3sB", 10, 0, 17763, b"\x00\x00\x00", 0x0F)


def _filetime_now() -> bytes:
    return struct.pack("<Q", 116444736000000000 + int(time.time() * 10000000))


def _field(msg: bytes, offset: int) -> bytes:
    """Read a (len, maxlen, offset) payload field descriptor at ``offset``; bounds-checked."""
    if len(msg) < offset + 8:
        raise AuthError("NTLM message truncated")
    length, _maxlen, off = struct.unpack_from("<HHI", msg, offset)
    if length == 0:
        return b""
    if off + length > len(msg):
        raise AuthError("NTLM field outside the message")
    return msg[off:off + length]


def _parse_av_pairs(data: bytes) -> dict:
    pairs = {}
    off = 0
    while off + 4 <= len(data):
        av_id, av_len = struct.unpack_from("<HH", data, off)
        off += 4
        if av_id == ntlm.NTLMSSP_AV_EOL:
            break
        if off + av_len > len(data):
            raise AuthError("malformed AV_PAIR list")
        pairs[av_id] = data[off:off + av_len]
        off += av_len
    return pairs


class NtlmContext(SecurityContext):
    auth_type = C.RPC_C_AUTHN_WINNT

    def __init__(self, provider: "NtlmProvider"):
        super().__init__()
        self.provider = provider
        self.state = "initial"
        self.negotiate_msg = b""
        self.challenge_msg = b""
        self.server_challenge = b""
        self.flags = 0
        self._in_sign_key = self._out_sign_key = b""
        self._in_rc4 = self._out_rc4 = None
        self._in_seq = 0
        self._out_seq = 0
        self._in_seal_key = self._out_seal_key = b""
        self.mic_present = False         # the AUTHENTICATE message carried an NTLM MIC (SPNEGO then needs a mechListMIC)

    # -- handshake ---------------------------------------------------------------------------
    def accept(self, token: bytes) -> AcceptResult:
        if self.complete or self.failed:
            raise AuthError("NTLM context already finished")
        if len(token) < 12 or token[:8] != NTLMSSP_SIGNATURE:
            raise AuthError("not an NTLMSSP message")
        msg_type = struct.unpack_from("<I", token, 8)[0]
        if self.state == "initial" and msg_type == ntlm.NTLMSSP_AUTH_NEGOTIATE:
            return AcceptResult(self._challenge(token), False)
        if self.state == "challenged" and msg_type == ntlm.NTLMSSP_AUTH_CHALLENGE_RESPONSE:
            try:
                self._authenticate(token)
            except AuthError as exc:
                self.failed = str(exc)
                raise
            return AcceptResult(b"", True)
        raise AuthError("unexpected NTLM message type %d in state %s" % (msg_type, self.state))

    def _challenge(self, negotiate: bytes) -> bytes:
        if len(negotiate) < 16:
            raise AuthError("NTLM NEGOTIATE truncated")
        cflags = struct.unpack_from("<I", negotiate, 12)[0]
        if not cflags & ntlm.NTLMSSP_NEGOTIATE_UNICODE:
            raise AuthError("NTLM client without Unicode support")
        if not cflags & ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY:
            raise AuthError("NTLM client without extended session security")
        flags = (ntlm.NTLMSSP_NEGOTIATE_UNICODE | ntlm.NTLMSSP_NEGOTIATE_NTLM |
                 ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | ntlm.NTLMSSP_NEGOTIATE_TARGET_INFO |
                 ntlm.NTLMSSP_NEGOTIATE_VERSION | ntlm.NTLMSSP_TARGET_TYPE_DOMAIN |
                 ntlm.NTLMSSP_REQUEST_TARGET)
        for opt in (ntlm.NTLMSSP_NEGOTIATE_SIGN, ntlm.NTLMSSP_NEGOTIATE_SEAL, ntlm.NTLMSSP_NEGOTIATE_ALWAYS_SIGN,
                    ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH, ntlm.NTLMSSP_NEGOTIATE_128, ntlm.NTLMSSP_NEGOTIATE_56,
                    ntlm.NTLMSSP_NEGOTIATE_IDENTIFY):
            if cflags & opt:
                flags |= opt
        ident = self.provider.identity
        u16 = lambda s: s.encode("utf-16le")  # noqa: E731
        av = b""
        for av_id, value in ((ntlm.NTLMSSP_AV_DOMAINNAME, u16(ident.netbios_domain)),
                             (ntlm.NTLMSSP_AV_HOSTNAME, u16(ident.netbios_computer)),
                             (ntlm.NTLMSSP_AV_DNS_DOMAINNAME, u16(ident.dns_domain)),
                             (ntlm.NTLMSSP_AV_DNS_HOSTNAME, u16(ident.dns_computer)),
                             (ntlm.NTLMSSP_AV_DNS_TREENAME, u16(ident.dns_domain)),
                             (ntlm.NTLMSSP_AV_TIME, _filetime_now())):
            av += struct.pack("<HH", av_id, len(value)) + value
        av += struct.pack("<HH", ntlm.NTLMSSP_AV_EOL, 0)
        target = u16(ident.netbios_domain)
        self.server_challenge = os.urandom(8)
        base = 56  # 48 fixed + 8 version
        msg = (NTLMSSP_SIGNATURE + struct.pack("<I", ntlm.NTLMSSP_AUTH_CHALLENGE) +
               struct.pack("<HHI", len(target), len(target), base) + struct.pack("<I", flags) +
               self.server_challenge + b"\x00" * 8 +
               struct.pack("<HHI", len(av), len(av), base + len(target)) + SERVER_VERSION + target + av)
        self.negotiate_msg = bytes(negotiate)
        self.challenge_msg = msg
        self.flags = flags
        self.state = "challenged"
        return msg

    def _authenticate(self, msg: bytes) -> None:
        if len(msg) < 64:
            raise AuthError("NTLM AUTHENTICATE truncated")
        lm_resp = _field(msg, 12)
        nt_resp = _field(msg, 20)
        domain_b = _field(msg, 28)
        user_b = _field(msg, 36)
        _field(msg, 44)  # workstation, only bounds-checked
        enc_key = _field(msg, 52)
        aflags = struct.unpack_from("<I", msg, 60)[0]
        try:
            if aflags & ntlm.NTLMSSP_NEGOTIATE_UNICODE:
                user, domain = user_b.decode("utf-16le"), domain_b.decode("utf-16le")
            else:
                user, domain = user_b.decode("cp437"), domain_b.decode("cp437")
        except UnicodeDecodeError:
            raise AuthError("NTLM user/domain not decodable")
        self.user, self.domain = user, domain
        if not user and (not nt_resp or nt_resp == b"") and lm_resp in (b"", b"\x00"):
            raise AuthError("anonymous NTLM logon refused")
        if len(nt_resp) <= 24:
            raise AuthError("NTLMv1 response refused for %s\\%s" % (domain, user))
        acc = self.provider.identity.accounts.lookup(domain, user)
        if acc is None:
            raise AuthError("unknown account %s\\%s" % (domain, user))
        if not acc.enabled:
            raise AuthError("account %s is disabled" % acc.name)
        if len(acc.nt_hash) != 16:
            raise AuthError("account %s has no NT hash" % acc.name)
        nt_proof, blob = nt_resp[:16], nt_resp[16:]
        session_base_key = None
        for dom in (domain, ""):
            key_nt = ntlm.hmac_md5(acc.nt_hash, (user.upper() + dom).encode("utf-16le"))
            expected = ntlm.hmac_md5(key_nt, self.server_challenge + blob)
            if hmac.compare_digest(expected, nt_proof):
                session_base_key = ntlm.hmac_md5(key_nt, nt_proof)
                break
        if session_base_key is None:
            raise AuthError("wrong password for %s" % acc.name)
        # negotiated flags: what the client confirms out of what we offered
        flags = aflags & self.flags
        if not flags & ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY:
            raise AuthError("extended session security not confirmed")
        key_exchange_key = session_base_key  # NTLMv2: KXKEY = SessionBaseKey
        if flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH and (flags & (ntlm.NTLMSSP_NEGOTIATE_SIGN |
                                                                 ntlm.NTLMSSP_NEGOTIATE_SEAL)):
            if len(enc_key) != 16:
                raise AuthError("KEY_EXCH without a 16-byte encrypted session key")
            exported = ARC4.new(key_exchange_key).decrypt(enc_key)
        else:
            exported = key_exchange_key
        # MIC (present when the client's AV pairs say so)
        blob_av = _parse_av_pairs(blob[28:]) if len(blob) > 28 else {}
        av_flags = struct.unpack("<I", blob_av[ntlm.NTLMSSP_AV_FLAGS])[0] \
            if len(blob_av.get(ntlm.NTLMSSP_AV_FLAGS, b"")) == 4 else 0
        if av_flags & MSV_AV_FLAGS_MIC_PRESENT:
            if len(msg) < 88:
                raise AuthError("MIC announced but missing")
            mic = msg[72:88]
            zeroed = msg[:72] + b"\x00" * 16 + msg[88:]
            expected_mic = ntlm.hmac_md5(exported, self.negotiate_msg + self.challenge_msg + zeroed)
            if not hmac.compare_digest(mic, expected_mic):
                raise AuthError("NTLM MIC mismatch for %s" % acc.name)
        self.flags = flags
        self.account = acc
        self.session_key = exported
        self._in_sign_key = ntlm.SIGNKEY(flags, exported, "Client")
        self._out_sign_key = ntlm.SIGNKEY(flags, exported, "Server")
        self._in_seal_key = ntlm.SEALKEY(flags, exported, "Client")
        self._out_seal_key = ntlm.SEALKEY(flags, exported, "Server")
        self._in_rc4 = ARC4.new(self._in_seal_key)
        self._out_rc4 = ARC4.new(self._out_seal_key)
        self.mic_present = bool(av_flags & MSV_AV_FLAGS_MIC_PRESENT)
        self._in_seq = 0
        self._out_seq = 0
        self.state = "done"
        self.complete = True

    # -- per-message protection --------------------------------------------------------------
    def verifier_size(self, level: int) -> int:
        return 16

    def _mac(self, sign_key: bytes, rc4, seq: int, message: bytes) -> bytes:
        checksum = ntlm.hmac_md5(sign_key, struct.pack("<I", seq) + message)[:8]
        if self.flags & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH:
            checksum = rc4.encrypt(checksum)
        return struct.pack("<I", 1) + checksum + struct.pack("<I", seq)

    def _check_ready(self):
        if not self.complete:
            raise IntegrityError("security context not established")

    def sign(self, message: bytes) -> bytes:
        self._check_ready()
        sig = self._mac(self._out_sign_key, self._out_rc4, self._out_seq, message)
        self._out_seq = (self._out_seq + 1) & 0xFFFFFFFF
        return sig

    def verify(self, message: bytes, verifier: bytes) -> None:
        self._check_ready()
        if len(verifier) != 16:
            raise IntegrityError("NTLM verifier must be 16 bytes")
        expected = self._mac(self._in_sign_key, self._in_rc4, self._in_seq, message)
        self._in_seq = (self._in_seq + 1) & 0xFFFFFFFF
        if not hmac.compare_digest(expected, bytes(verifier)):
            raise IntegrityError("NTLM signature mismatch")

    # SPNEGO's mechListMIC is an NTLM signature over the MechTypeList (it consumes a sequence number);
    # afterwards the RC4 state restarts from the sealing key (MS-SPNG 3.3.5.1), sequence numbers go on
    get_mic = sign
    verify_mic = verify

    def reset_rc4(self, inbound: bool) -> None:
        if inbound:
            self._in_rc4 = ARC4.new(self._in_seal_key)
        else:
            self._out_rc4 = ARC4.new(self._out_seal_key)

    def seal(self, prefix: bytes, plaintext: bytes, suffix: bytes) -> Tuple[bytes, bytes]:
        self._check_ready()
        sealed = self._out_rc4.encrypt(plaintext)
        return sealed, self.sign(prefix + plaintext + suffix)

    def unseal(self, prefix: bytes, ciphertext: bytes, suffix: bytes, verifier: bytes) -> bytes:
        self._check_ready()
        plain = self._in_rc4.decrypt(ciphertext)
        self.verify(prefix + plain + suffix, verifier)
        return plain


class NtlmProvider(SecurityProvider):
    auth_type = C.RPC_C_AUTHN_WINNT
    name = "NTLM"

    def new_context(self) -> NtlmContext:
        return NtlmContext(self)


__all__ = ["NtlmProvider", "NtlmContext"]
