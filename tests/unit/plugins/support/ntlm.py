# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An NTLMv2 acceptor for the tests of ``_ntlm``/``_rpc_auth``, built on impacket's ``ntlm`` primitives and
Cryptodome's RC4 (independent of the code under test): CHALLENGE_MESSAGE out, AUTHENTICATE_MESSAGE checked
(NTProofStr, encrypted session key, MIC), then the server side of signing and sealing."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct

from Cryptodome.Cipher import ARC4
from impacket import ntlm

FLAGS = (ntlm.NTLMSSP_NEGOTIATE_UNICODE | ntlm.NTLMSSP_NEGOTIATE_NTLM | ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY |
         ntlm.NTLMSSP_NEGOTIATE_TARGET_INFO | ntlm.NTLMSSP_NEGOTIATE_VERSION | ntlm.NTLMSSP_REQUEST_TARGET |
         ntlm.NTLMSSP_NEGOTIATE_SIGN | ntlm.NTLMSSP_NEGOTIATE_SEAL | ntlm.NTLMSSP_NEGOTIATE_ALWAYS_SIGN |
         ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH | ntlm.NTLMSSP_NEGOTIATE_128 | ntlm.NTLMSSP_NEGOTIATE_56)
NT_HASH = bytes.fromhex('44f908a8f25c8b0a923026e44eec2e16')


def av_pairs(pairs, eol=True):
    return b''.join(struct.pack('<HH', k, len(v)) + v for k, v in pairs) + (b'\x00' * 4 if eol else b'')


def u16(text):
    return text.encode('utf-16le')


def lab_pairs(timestamp=True):
    pairs = [(2, u16('LAB')), (1, u16('CA1')), (4, u16('lab.adcs.test')), (3, u16('ca1.lab.adcs.test')),
             (5, u16('lab.adcs.test'))]
    if timestamp:
        pairs.append((7, struct.pack('<Q', 133000000000000000)))
    return pairs


def challenge_message(info, flags=FLAGS, challenge=b'\x01\x23\x45\x67\x89\xab\xcd\xef', target=b'L\x00A\x00B\x00'):
    """A CHALLENGE_MESSAGE with the target info bytes ``info`` (layout as Windows: version, target name, info)."""
    base = 56
    return (b'NTLMSSP\x00' + struct.pack('<I', 2) + struct.pack('<HHI', len(target), len(target), base) +
            struct.pack('<I', flags) + challenge + b'\x00' * 8 +
            struct.pack('<HHI', len(info), len(info), base + len(target)) + b'\x0a\x00\x63\x45\x00\x00\x00\x0f' +
            target + info)


def field(message, at):
    length, _max, offset = struct.unpack_from('<HHI', message, at)
    return message[offset:offset + length]


class Acceptor(object):
    """The server of one NTLM context (the account's NT hash is ``nt_hash``)."""

    def __init__(self, nt_hash=NT_HASH, pairs=None, flags=FLAGS):
        self.nt_hash, self.flags = nt_hash, flags
        self.pairs = lab_pairs() if pairs is None else pairs
        self.negotiate = self.challenge = None

    def challenge_for(self, negotiate):
        self.negotiate = negotiate
        self.server_challenge = os.urandom(8)
        self.challenge = challenge_message(av_pairs(self.pairs), self.flags & struct.unpack_from('<I', negotiate, 12)[0]
                                           | ntlm.NTLMSSP_NEGOTIATE_TARGET_INFO, self.server_challenge)
        return self.challenge

    def accept(self, auth):
        """Check the AUTHENTICATE_MESSAGE as a DC would; returns what it learnt (names, responses, client AV pairs)."""
        user, domain = field(auth, 36).decode('utf-16le'), field(auth, 28).decode('utf-16le')
        nt_response, lm_response, enc_key = field(auth, 20), field(auth, 12), field(auth, 52)
        self.negotiated = struct.unpack_from('<I', auth, 60)[0]
        key_nt = ntlm.hmac_md5(self.nt_hash, (user.upper() + domain).encode('utf-16le'))
        proof, blob = nt_response[:16], nt_response[16:]
        assert ntlm.hmac_md5(key_nt, self.server_challenge + blob) == proof, 'NTProofStr does not verify'
        base = ntlm.hmac_md5(key_nt, proof)
        if self.negotiated & ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH:
            self.session_key = ARC4.new(base).decrypt(enc_key)
        else:
            assert enc_key == b''
            self.session_key = base
        mic = ntlm.hmac_md5(self.session_key, self.negotiate + self.challenge + auth[:72] + b'\x00' * 16 + auth[88:])
        assert mic == auth[72:88], 'MIC does not verify'
        client_pairs = ntlm.AV_PAIRS(blob[28:])
        self.start_session()
        return {'user': user, 'domain': domain, 'lm': lm_response, 'nt': nt_response, 'pairs': client_pairs,
                'blob': blob, 'workstation': field(auth, 44), 'version': auth[64:72]}

    def start_session(self, session_key=None, flags=None):
        if session_key is not None:
            self.session_key, self.negotiated = session_key, flags
        flags, key = self.negotiated, self.session_key
        self.sign_key, self.verify_key = ntlm.SIGNKEY(flags, key, 'Server'), ntlm.SIGNKEY(flags, key, 'Client')
        self.seal_key, self.unseal_key = ntlm.SEALKEY(flags, key, 'Server'), ntlm.SEALKEY(flags, key, 'Client')
        self.out_rc4, self.in_rc4 = ARC4.new(self.seal_key), ARC4.new(self.unseal_key)
        self.out_seq = self.in_seq = 0

    def restart(self, inbound):
        """MS-SPNG 3.3.5.1: a fresh RC4 handle after the mechListMIC (sequence numbers go on)."""
        if inbound:
            self.in_rc4 = ARC4.new(self.unseal_key)
        else:
            self.out_rc4 = ARC4.new(self.seal_key)

    def sign(self, message):
        sig = ntlm.SIGN(self.negotiated, self.sign_key, message, self.out_seq, self.out_rc4.encrypt).getData()
        self.out_seq += 1
        return sig

    def seal(self, to_sign, data):
        body, sig = ntlm.SEAL(self.negotiated, self.sign_key, self.seal_key, to_sign, data, self.out_seq,
                              self.out_rc4.encrypt)
        self.out_seq += 1
        return body, sig.getData()

    def check(self, message, signature):
        expected = ntlm.SIGN(self.negotiated, self.verify_key, message, self.in_seq, self.in_rc4.encrypt).getData()
        assert expected == signature, 'client signature does not verify'
        self.in_seq += 1

    def unseal(self, body):
        return self.in_rc4.decrypt(body)
