# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NTLM client (MS-NLMP): one job, the NTLMv2 initiator's messages and the session security of one context.

``NtlmClient`` builds the NEGOTIATE_MESSAGE, checks the server's CHALLENGE_MESSAGE (flags and target info: AV
pairs) and answers with the AUTHENTICATE_MESSAGE: NTLMv2 response over the server's AV pairs plus MsvAvFlags (MIC
present) and MsvAvTargetName, a random session key RC4-encrypted with the key exchange key, and the MIC over the
three messages (MS-NLMP 3.1.5.1.2, 3.3.2). It then holds an ``NtlmSession``: extended session security with
128-bit keys (SIGNKEY/SEALKEY, 3.4.5), signatures with sequence numbers and RC4 sealing (3.4.3, 3.4.4.2).

Built on the standard library (HMAC-MD5) and cryptography's RC4. The NT hash of a password needs MD4, which
hashlib lacks on OpenSSL 3 (legacy provider) and cryptography never had: ``md4`` is RFC 1320 in a few lines.
Anything the server sends that does not check raises ``NtlmError`` (an ``AdcsError``) with a message for the user;
features this client refuses (no extended session security, no 128-bit keys, no signing or sealing) raise
``NtlmUnsupported``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import os
import struct
import time

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

if HAS_CRYPTOGRAPHY:
    from cryptography.hazmat.primitives.ciphers import Cipher
    try:        # cryptography >= 43 keeps RC4 among the "decrepit" algorithms
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    except ImportError:
        from cryptography.hazmat.primitives.ciphers.algorithms import ARC4

SIGNATURE = b'NTLMSSP\x00'
NEGOTIATE_UNICODE, REQUEST_TARGET, NEGOTIATE_SIGN, NEGOTIATE_SEAL = 0x1, 0x4, 0x10, 0x20
NEGOTIATE_NTLM, NEGOTIATE_ALWAYS_SIGN, NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x200, 0x8000, 0x80000
NEGOTIATE_TARGET_INFO, NEGOTIATE_VERSION = 0x800000, 0x2000000
NEGOTIATE_128, NEGOTIATE_KEY_EXCH, NEGOTIATE_56 = 0x20000000, 0x40000000, 0x80000000
# what we ask for: NTLMv2 with extended session security, signing, sealing, key exchange, 128-bit keys
NEGOTIATE_FLAGS = (NEGOTIATE_KEY_EXCH | NEGOTIATE_SIGN | NEGOTIATE_ALWAYS_SIGN | NEGOTIATE_SEAL | NEGOTIATE_TARGET_INFO |
                   NEGOTIATE_NTLM | NEGOTIATE_EXTENDED_SESSIONSECURITY | NEGOTIATE_UNICODE | REQUEST_TARGET |
                   NEGOTIATE_128 | NEGOTIATE_56 | NEGOTIATE_VERSION)
# bits the server may leave out (they are then left out of the AUTHENTICATE_MESSAGE too)
SERVER_CHOSEN = (NEGOTIATE_EXTENDED_SESSIONSECURITY | NEGOTIATE_128 | NEGOTIATE_KEY_EXCH | NEGOTIATE_SEAL |
                 NEGOTIATE_SIGN | NEGOTIATE_ALWAYS_SIGN)
WINDOWS_VERSION = b'\x0a\x00\x7c\x4f\x00\x00\x00\x0f'     # 10.0.20348 (Windows Server 2022), NTLM revision 15

AV_EOL, AV_NB_COMPUTER, AV_NB_DOMAIN, AV_DNS_COMPUTER, AV_DNS_DOMAIN = 0, 1, 2, 3, 4
AV_FLAGS, AV_TIMESTAMP, AV_TARGET_NAME = 6, 7, 9
AV_FLAG_MIC_PRESENT = 0x2
AV_NAMES = {AV_NB_COMPUTER: 'MsvAvNbComputerName', AV_NB_DOMAIN: 'MsvAvNbDomainName'}
AV_SIZES = {AV_FLAGS: 4, AV_TIMESTAMP: 8}

CLIENT, SERVER = 'client-to-server', 'server-to-client'
FILETIME_1970 = 116444736000000000


class NtlmError(AdcsError):
    """An NTLM message or signature of the server that does not check (the message says what)."""


class NtlmUnsupported(NtlmError):
    """The server chose a feature set this client refuses (MS-NLMP 3.1.5.1.2: not strong enough)."""


# -- primitives -----------------------------------------------------------------------------------------------------
def _rotl(value, count):
    value &= 0xFFFFFFFF
    return ((value << count) | (value >> (32 - count))) & 0xFFFFFFFF


_MD4_ROUNDS = (
    (lambda x, y, z: (x & y) | (~x & z), 0, tuple(range(16)), (3, 7, 11, 19)),
    (lambda x, y, z: (x & y) | (x & z) | (y & z), 0x5A827999, (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
     (3, 5, 9, 13)),
    (lambda x, y, z: x ^ y ^ z, 0x6ED9EBA1, (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15), (3, 9, 11, 15)),
)


def md4(data):
    """MD4 (RFC 1320) of ``data``: only for the NT hash of a password (hashlib has no MD4 on OpenSSL 3)."""
    message = bytes(data) + b'\x80' + b'\x00' * ((55 - len(data)) % 64) + struct.pack('<Q', (8 * len(data)) % 2 ** 64)
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for offset in range(0, len(message), 64):
        words = struct.unpack_from('<16I', message, offset)
        a, b, c, d = state
        for func, constant, order, shifts in _MD4_ROUNDS:
            for step, index in enumerate(order):
                # the register written turns a, d, c, b: the new value always lands in "b" of the next step's view
                a, b, c, d = d, _rotl(a + func(b, c, d) + words[index] + constant, shifts[step % 4]), b, c
        state = [(s + v) & 0xFFFFFFFF for s, v in zip(state, (a, b, c, d))]
    return struct.pack('<4I', *state)


def nt_hash(password):
    """NTOWFv1 (MS-NLMP 3.3.1): MD4 of the UTF-16LE password."""
    return md4(password.encode('utf-16le'))


def hmac_md5(key, data):
    return hmac.new(key, data, hashlib.md5).digest()


def ntowf_v2(user, domain, nt_hash_value):
    """ResponseKeyNT (MS-NLMP 3.3.2): HMAC-MD5 of the NT hash over UPPER(user) + domain in UTF-16LE."""
    return hmac_md5(nt_hash_value, (user.upper() + domain).encode('utf-16le'))


def ntlmv2_response(response_key, server_challenge, client_challenge, timestamp, av_pairs):
    """(NtChallengeResponse, LMv2 response, SessionBaseKey) of MS-NLMP 3.3.2 over the AV pairs as sent."""
    temp = b'\x01\x01' + b'\x00' * 6 + timestamp + client_challenge + b'\x00' * 4 + av_pairs + b'\x00' * 4
    proof = hmac_md5(response_key, server_challenge + temp)
    lm = hmac_md5(response_key, server_challenge + client_challenge) + client_challenge
    return proof + temp, lm, hmac_md5(response_key, proof)


def rc4(key):
    """A running RC4 keystream (encrypting and decrypting are the same ``update``)."""
    return Cipher(ARC4(key), mode=None).encryptor()


def sign_key(session_key, direction):
    """SIGNKEY (MS-NLMP 3.4.5.2) with extended session security; direction CLIENT or SERVER."""
    return hashlib.md5(session_key + ('session key to %s signing key magic constant\x00' % direction).encode()).digest()


def seal_key(session_key, direction):
    """SEALKEY (MS-NLMP 3.4.5.3) with extended session security and 128-bit keys (the only kind accepted)."""
    return hashlib.md5(session_key + ('session key to %s sealing key magic constant\x00' % direction).encode()).digest()


# -- CHALLENGE_MESSAGE ----------------------------------------------------------------------------------------------
def _field(message, at, what):
    """The payload a (len, maxlen, offset) descriptor at ``at`` points to; NtlmError when outside the message."""
    length, _max, offset = struct.unpack_from('<HHI', message, at)
    if offset + length > len(message):
        raise NtlmError('the NTLM CHALLENGE from the CA is malformed: its %s (%d bytes at offset %d) lies outside '
                        'the %d-byte message' % (what, length, offset, len(message)))
    return message[offset:offset + length]


def parse_av_pairs(data):
    """[(AvId, value)] up to MsvAvEOL (not included); NtlmError when a pair runs past the end or EOL is missing."""
    pairs, offset = [], 0
    while offset + 4 <= len(data):
        av_id, size = struct.unpack_from('<HH', data, offset)
        offset += 4
        if av_id == AV_EOL:
            return pairs
        if offset + size > len(data):
            raise NtlmError('the NTLM target info from the CA is malformed: AV pair %d runs past its end' % av_id)
        if av_id in AV_SIZES and size != AV_SIZES[av_id]:
            raise NtlmError('the NTLM target info from the CA is malformed: AV pair %d has %d bytes, not %d'
                            % (av_id, size, AV_SIZES[av_id]))
        pairs.append((av_id, data[offset:offset + size]))
        offset += size
    raise NtlmError('the NTLM target info from the CA is malformed: it does not end with MsvAvEOL')


def encode_av_pairs(pairs):
    return b''.join(struct.pack('<HH', k, len(v)) + v for k, v in pairs) + struct.pack('<HH', AV_EOL, 0)


class Challenge(object):
    """A CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) as the client uses it: flags, server challenge, AV pairs."""

    def __init__(self, message):
        if len(message) < 48:
            raise NtlmError('the NTLM CHALLENGE from the CA is truncated (%d bytes, at least 48 expected)'
                            % len(message))
        if message[:8] != SIGNATURE or struct.unpack_from('<I', message, 8)[0] != 2:
            raise NtlmError('the CA sent no NTLM CHALLENGE message (wrong signature or message type)')
        self.raw = bytes(message)
        self.flags = struct.unpack_from('<I', message, 20)[0]
        self.server_challenge = message[24:32]
        info = _field(message, 40, 'target info')
        if not self.flags & NEGOTIATE_TARGET_INFO or not info:
            raise NtlmError('the NTLM CHALLENGE from the CA carries no target info (NTLMv2 needs the AV pairs)')
        self.pairs = parse_av_pairs(info)
        ids = set(k for k, _v in self.pairs)
        missing = [AV_NAMES[k] for k in (AV_NB_COMPUTER, AV_NB_DOMAIN) if k not in ids]
        if missing:       # MS-NLMP 3.1.5.1.2: NTLMv2 with integrity or confidentiality needs both
            raise NtlmError('the NTLM target info from the CA lacks %s' % ' and '.join(missing))

    def value(self, av_id):
        for key, value in self.pairs:
            if key == av_id:
                return value
        return None


def check_features(flags):
    """Refuse a server choice that is not strong enough (NtlmUnsupported with the missing feature)."""
    if not flags & NEGOTIATE_EXTENDED_SESSIONSECURITY:
        raise NtlmUnsupported('NTLM without extended session security')
    if not flags & NEGOTIATE_128:      # ClientRequire128bitEncryption, the Windows default since Windows 7
        raise NtlmUnsupported('NTLM without 128-bit session keys')
    if flags & (NEGOTIATE_SIGN | NEGOTIATE_SEAL) != NEGOTIATE_SIGN | NEGOTIATE_SEAL:
        raise NtlmUnsupported('NTLM without signing and sealing')


# -- the client -----------------------------------------------------------------------------------------------------
class NtlmClient(object):
    """NTLMv2 initiator of one context: ``negotiate()``, ``authenticate(challenge)``, then ``session``.

    The secret is the password or the NT hash (16 bytes); an empty NT hash means "use the password".
    ``target_name`` goes into MsvAvTargetName (the service principal name the client means). ``random`` (os.urandom)
    and ``clock`` (time.time) are there for the MS-NLMP test vectors."""

    def __init__(self, user, domain, password='', nt_hash_value=None, target_name=None, random=os.urandom,
                 clock=time.time):
        self.user, self.domain, self.target_name = user or '', domain or '', target_name
        self._key_nt = ntowf_v2(self.user, self.domain, nt_hash_value or nt_hash(password or ''))
        self._random, self._clock = random, clock
        self.negotiate_message = None
        self.flags = 0
        self.session = None

    def negotiate(self):
        """NEGOTIATE_MESSAGE (2.2.1.1): no domain or workstation supplied, our version."""
        self.negotiate_message = (SIGNATURE + struct.pack('<II', 1, NEGOTIATE_FLAGS) + struct.pack('<HHI', 0, 0, 40) * 2 +
                                  WINDOWS_VERSION)
        return self.negotiate_message

    def _client_pairs(self, challenge):
        """The server's AV pairs with MsvAvFlags (MIC present) and MsvAvTargetName set, as the client sends them."""
        pairs = list(challenge.pairs)
        own = {AV_FLAGS: struct.pack('<I', AV_FLAG_MIC_PRESENT)}
        if self.target_name:
            own[AV_TARGET_NAME] = self.target_name.encode('utf-16le')
        for av_id, value in sorted(own.items()):
            for i, (key, old) in enumerate(pairs):
                if key == av_id:
                    if av_id == AV_FLAGS:
                        value = struct.pack('<I', struct.unpack('<I', old)[0] | AV_FLAG_MIC_PRESENT)
                    pairs[i] = (key, value)
                    break
            else:
                pairs.append((av_id, value))
        return encode_av_pairs(pairs)

    def authenticate(self, challenge_message):
        """AUTHENTICATE_MESSAGE (2.2.1.3) for the CHALLENGE bytes; starts ``session``."""
        challenge = Challenge(challenge_message)
        flags = NEGOTIATE_FLAGS & ~(SERVER_CHOSEN & ~challenge.flags)
        check_features(flags)
        timestamp = challenge.value(AV_TIMESTAMP)
        nt_response, lm_response, base_key = ntlmv2_response(
            self._key_nt, challenge.server_challenge, self._random(8),
            timestamp or struct.pack('<Q', FILETIME_1970 + int(self._clock() * 10000000)), self._client_pairs(challenge))
        if timestamp is not None:         # MS-NLMP 3.3.2: with MsvAvTimestamp the LM response is Z(24)
            lm_response = b'\x00' * 24
        if flags & NEGOTIATE_KEY_EXCH:    # KXKEY = SessionBaseKey for NTLMv2; ExportedSessionKey is random
            exported = self._random(16)
            encrypted_key = rc4(base_key).update(exported)
        else:
            exported, encrypted_key = base_key, b''
        payload = [self.domain.encode('utf-16le'), self.user.encode('utf-16le'), b'', lm_response, nt_response,
                   encrypted_key]
        fields = b''
        for index in (3, 4, 0, 1, 2, 5):      # descriptors: LM, NT, domain, user, workstation, session key
            size = len(payload[index])
            fields += struct.pack('<HHI', size, size, 88 + sum(len(p) for p in payload[:index]))
        message = (SIGNATURE + struct.pack('<I', 3) + fields + struct.pack('<I', flags) + WINDOWS_VERSION +
                   b'\x00' * 16 + b''.join(payload))
        mic = hmac_md5(exported, self.negotiate_message + challenge.raw + message)
        self.flags = flags
        self.session = NtlmSession(exported, flags)
        return message[:72] + mic + message[88:]


class NtlmSession(object):
    """Session security after the handshake (MS-NLMP 3.4, extended session security): per-direction keys, RC4
    handles and sequence numbers. ``initiator=False`` is the acceptor's view of the same keys."""

    def __init__(self, exported_key, flags, initiator=True):
        mine, theirs = (CLIENT, SERVER) if initiator else (SERVER, CLIENT)
        self.flags = flags
        self._out_sign, self._in_sign = sign_key(exported_key, mine), sign_key(exported_key, theirs)
        self._out_seal, self._in_seal = seal_key(exported_key, mine), seal_key(exported_key, theirs)
        self.out_seq = self.in_seq = 0
        self.restart_outbound()
        self.restart_inbound()

    def restart_outbound(self):
        """A fresh RC4 handle for what we send (MS-SPNG 3.3.5.1: after the mechListMIC); sequence numbers go on."""
        self._out_rc4 = rc4(self._out_seal)

    def restart_inbound(self):
        self._in_rc4 = rc4(self._in_seal)

    def _mac(self, key, handle, seq, message):
        checksum = hmac_md5(key, struct.pack('<I', seq) + message)[:8]
        if self.flags & NEGOTIATE_KEY_EXCH:
            checksum = handle.update(checksum)
        return struct.pack('<I', 1) + checksum + struct.pack('<I', seq)

    def seal(self, data):
        return self._out_rc4.update(data)

    def unseal(self, data):
        return self._in_rc4.update(data)

    def sign(self, message):
        """The 16-byte NTLMSSP_MESSAGE_SIGNATURE of ``message`` with our next sequence number."""
        signature = self._mac(self._out_sign, self._out_rc4, self.out_seq, message)
        self.out_seq = (self.out_seq + 1) & 0xFFFFFFFF
        return signature

    def verify(self, message, signature):
        """Check the server's signature of ``message`` (its next sequence number); NtlmError when it does not."""
        seq = self.in_seq
        if len(signature) != 16:
            raise NtlmError('an NTLM verifier of %d bytes' % len(signature))
        claimed = struct.unpack('<I', signature[12:16])[0]
        expected = self._mac(self._in_sign, self._in_rc4, seq, message)
        if claimed != seq:
            raise NtlmError('NTLM sequence %d, expected %d: out of sequence or replayed' % (claimed, seq))
        if not hmac.compare_digest(expected, signature):
            raise NtlmError('NTLM signature mismatch, sequence %d' % seq)
        self.in_seq = (seq + 1) & 0xFFFFFFFF
