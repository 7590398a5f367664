# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_ntlm: MD4 (RFC 1320 A.5), the MS-NLMP 4.2.4 NTLMv2 vectors, the AUTHENTICATE_MESSAGE checked by an independent
acceptor (impacket primitives, support/ntlm.py), session security both ways, and every hostile CHALLENGE_MESSAGE
answered with an NtlmError (an AdcsError) that says what is wrong, never another exception."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import random
import struct

import pytest
from Cryptodome.Hash import MD4
from impacket import ntlm as imp_ntlm

from ansible_collections.adcs.enrollment.plugins.module_utils import _ntlm as n
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import ntlm as acceptor

# MS-NLMP 4.2.1 common values, 4.2.4 NTLMv2 results
USER, DOMAIN, PASSWORD = 'User', 'Domain', 'Password'
SERVER_CHALLENGE, CLIENT_CHALLENGE = bytes.fromhex('0123456789abcdef'), b'\xaa' * 8
RANDOM_SESSION_KEY = b'\x55' * 16
SPEC_PAIRS = bytes.fromhex('02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000')
SPEC_CHALLENGE = bytes.fromhex(    # 4.2.4.3 CHALLENGE_MESSAGE
    '4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef00000000000000002400240044000000'
    '060070170000000f53006500720076006500720002000c0044006f006d00610069006e0001000c00530065007200760065'
    '0072000000000000')
PLAINTEXT = 'Plaintext'.encode('utf-16le')


def h(text):
    return bytes.fromhex(text.replace(' ', ''))


# ---------------------------------------------------------------- primitives and spec vectors
@pytest.mark.parametrize('data, digest', [
    (b'', '31d6cfe0d16ae931b73c59d7e0c089c0'),
    (b'a', 'bde52cb31de33e46245e05fbdbd6fb24'),
    (b'abc', 'a448017aaf21d8525fc10ae87aa6729d'),
    (b'message digest', 'd9130a8164549fe818874806e1c7014b'),
    (b'abcdefghijklmnopqrstuvwxyz', 'd79e1c308aa5bbcdeea8ed63df412da9'),
    (b'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', '043f8582f241db351ce627e153e7f0e4'),
    (b'1234567890' * 8, 'e33b4ddc9c38f2199c3e7b164fcc0536'),
])
def test_md4_rfc1320_vectors(data, digest):
    assert n.md4(data).hex() == digest


def test_md4_block_boundaries_match_an_independent_md4():
    for size in (55, 56, 57, 63, 64, 65, 119, 120, 128, 1000):
        data = os.urandom(size)
        assert n.md4(data) == MD4.new(data).digest(), size
    assert n.nt_hash('Pässwörd-ü€') == imp_ntlm.compute_nthash('Pässwörd-ü€')


def test_ms_nlmp_4_2_4_ntlmv2_vectors():
    assert n.nt_hash(PASSWORD) == h('a4f49c406510bdcab6824ee7c30fd852')
    key_nt = n.ntowf_v2(USER, DOMAIN, n.nt_hash(PASSWORD))
    assert key_nt == h('0c868a403bfd7a93a3001ef22ef02e3f')                                     # 4.2.4.1.1
    nt_response, lm_response, base_key = n.ntlmv2_response(key_nt, SERVER_CHALLENGE, CLIENT_CHALLENGE,
                                                           b'\x00' * 8, SPEC_PAIRS)
    assert lm_response == h('86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa')                 # 4.2.4.2.1
    assert nt_response[:16] == h('68cd0ab851e51c96aabc927bebef6a1c')                             # 4.2.4.2.2
    temp = h('0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000') + SPEC_PAIRS + b'\x00' * 4
    assert nt_response[16:] == temp
    assert base_key == h('8de40ccadbc14a82f15cb0ad0de95ca3')                                    # 4.2.4.1.2
    assert n.rc4(base_key).update(RANDOM_SESSION_KEY) == h('c5dad2544fc9799094ce1ce90bc9d03e')  # 4.2.4.2.3


def test_ms_nlmp_4_2_4_4_seal_and_sign():
    session = n.NtlmSession(RANDOM_SESSION_KEY, 0xe28a8233)
    assert n.seal_key(RANDOM_SESSION_KEY, n.CLIENT) == h('59f600973cc4960a25480a7c196e4c58')
    assert n.sign_key(RANDOM_SESSION_KEY, n.CLIENT) == h('4788dc861b4782f35d43fd98fe1a2d39')
    assert session.seal(PLAINTEXT) == h('54e50165bf1936dc996020c1811b0f06fb5f')
    assert session.sign(PLAINTEXT) == h('01000000 7fb38ec5c55d4976 00000000')
    assert session.out_seq == 1


def test_spec_challenge_message_parses():
    challenge = n.Challenge(SPEC_CHALLENGE)
    assert challenge.flags == 0xe28a8233 and challenge.server_challenge == SERVER_CHALLENGE
    assert challenge.pairs == [(2, 'Domain'.encode('utf-16le')), (1, 'Server'.encode('utf-16le'))]
    assert challenge.value(n.AV_TIMESTAMP) is None


# ---------------------------------------------------------------- the handshake against an independent acceptor
def _fixed_random(*chunks):
    queue = list(chunks)
    return lambda size: queue.pop(0)[:size]


def test_negotiate_message():
    message = n.NtlmClient('u', 'D', 'p').negotiate()
    assert message[:12] == b'NTLMSSP\x00\x01\x00\x00\x00' and len(message) == 40
    flags = struct.unpack_from('<I', message, 12)[0]
    assert flags == 0xe2888235          # as impacket's signing-required NEGOTIATE with a version, what we sent before
    assert message[16:32] == struct.pack('<HHI', 0, 0, 40) * 2 and message[32:] == n.WINDOWS_VERSION


def test_spec_challenge_gets_a_checkable_authenticate():
    """The 4.2.4.3 CHALLENGE with the spec's client challenge, time and session key: what we add to the AV pairs is
    MsvAvFlags (MIC present) and MsvAvTargetName; an independent acceptor verifies NTProofStr, the key and the MIC."""
    client = n.NtlmClient(USER, DOMAIN, PASSWORD, target_name='HOST/server.domain.test',
                          random=_fixed_random(CLIENT_CHALLENGE, RANDOM_SESSION_KEY), clock=lambda: -11644473600.0)
    server = acceptor.Acceptor(n.nt_hash(PASSWORD))
    server.negotiate, server.challenge, server.server_challenge = client.negotiate(), SPEC_CHALLENGE, SERVER_CHALLENGE
    auth = client.authenticate(SPEC_CHALLENGE)
    seen = server.accept(auth)
    assert seen['user'] == USER and seen['domain'] == DOMAIN and seen['workstation'] == b''
    assert seen['blob'][:28] == h('0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000')
    assert seen['blob'][28:] == acceptor.av_pairs([(2, 'Domain'.encode('utf-16le')), (1, 'Server'.encode('utf-16le')),
                                                   (6, b'\x02\x00\x00\x00'),
                                                   (9, 'HOST/server.domain.test'.encode('utf-16le'))]) + b'\x00' * 4
    assert seen['lm'] == n.hmac_md5(h('0c868a403bfd7a93a3001ef22ef02e3f'), SERVER_CHALLENGE + CLIENT_CHALLENGE) + \
        CLIENT_CHALLENGE                     # no MsvAvTimestamp: the LMv2 response
    assert server.session_key == RANDOM_SESSION_KEY and seen['version'] == n.WINDOWS_VERSION
    assert server.negotiated == 0xe2888235 & 0xe28a8233 | n.NEGOTIATE_VERSION | n.NEGOTIATE_56 | n.REQUEST_TARGET
    # payload order as Windows: domain, user, workstation, LM, NT, session key right after the 88-byte header
    assert struct.unpack_from('<I', auth, 32)[0] == 88 and auth[88:88 + 12] == DOMAIN.encode('utf-16le')


def _handshake(password='S3cret-pw', pairs=None, flags=acceptor.FLAGS, **kw):
    client = n.NtlmClient('enroller', 'LAB', password, **kw)
    server = acceptor.Acceptor(imp_ntlm.compute_nthash(password), pairs=pairs, flags=flags)
    seen = server.accept(client.authenticate(server.challenge_for(client.negotiate())))
    return client, server, seen


def test_handshake_with_timestamp_sends_z24_and_keeps_the_server_time():
    client, server, seen = _handshake(target_name='HOST/ca1.lab.adcs.test')
    assert seen['lm'] == b'\x00' * 24
    assert seen['blob'][8:16] == struct.pack('<Q', 133000000000000000)
    assert seen['pairs'][n.AV_FLAGS][1] == b'\x02\x00\x00\x00'
    assert seen['pairs'][n.AV_TARGET_NAME][1] == 'HOST/ca1.lab.adcs.test'.encode('utf-16le')
    assert seen['pairs'][n.AV_DNS_COMPUTER][1] == 'ca1.lab.adcs.test'.encode('utf-16le')


def test_server_flags_pair_is_kept_and_the_mic_bit_added():
    pairs = acceptor.lab_pairs() + [(6, b'\x01\x00\x00\x00')]
    _client, _server, seen = _handshake(pairs=pairs)
    assert seen['pairs'][n.AV_FLAGS][1] == b'\x03\x00\x00\x00' and seen['pairs'][n.AV_TARGET_NAME] is None


def test_nt_hash_instead_of_password_and_a_wrong_password():
    client = n.NtlmClient('enroller', 'LAB', '', imp_ntlm.compute_nthash('S3cret-pw'))
    server = acceptor.Acceptor(imp_ntlm.compute_nthash('S3cret-pw'))
    assert server.accept(client.authenticate(server.challenge_for(client.negotiate())))['user'] == 'enroller'
    wrong = n.NtlmClient('enroller', 'LAB', 'other-pw')
    with pytest.raises(AssertionError, match='NTProofStr'):
        server.accept(wrong.authenticate(server.challenge_for(wrong.negotiate())))


def test_session_both_ways_with_key_exchange():
    client, server, _seen = _handshake()
    session = client.session
    for i in range(3):
        data = os.urandom(40)
        body, sig = session.seal(data), session.sign(b'hdr' + data)
        assert server.unseal(body) == data
        server.check(b'hdr' + data, sig)
        reply_body, reply_sig = server.seal(b'hdr' + data[::-1], data[::-1])
        assert session.unseal(reply_body) == data[::-1]
        session.verify(b'hdr' + data[::-1], reply_sig)
        assert session.in_seq == session.out_seq == i + 1


def test_session_without_key_exchange_uses_the_session_base_key():
    client, server, _seen = _handshake(flags=acceptor.FLAGS & ~imp_ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH)
    assert not client.flags & n.NEGOTIATE_KEY_EXCH
    sig = client.session.sign(b'message')
    server.check(b'message', sig)
    assert sig[4:12] == n.hmac_md5(n.sign_key(server.session_key, n.CLIENT), b'\x00' * 4 + b'message')[:8]
    client.session.verify(b'answer', server.sign(b'answer'))


def test_restart_rc4_after_mech_list_mic():
    client, server, _seen = _handshake()
    server.check(b'mechlist', client.session.sign(b'mechlist'))
    client.session.restart_outbound()
    server.restart(inbound=True)
    client.session.verify(b'mechlist', server.sign(b'mechlist'))
    client.session.restart_inbound()
    server.restart(inbound=False)
    body, sig = server.seal(b'x' * 20, b'y' * 20)
    assert client.session.unseal(body) == b'y' * 20
    client.session.verify(b'x' * 20, sig)


def test_verify_refusals():
    _client, server, _seen = _handshake()
    session = _client.session
    sig = server.sign(b'one')
    with pytest.raises(n.NtlmError, match='^an NTLM verifier of 15 bytes$'):
        session.verify(b'one', sig[:15])
    replay = server.sign(b'two')
    with pytest.raises(n.NtlmError, match='^NTLM sequence 1, expected 0: out of sequence or replayed$'):
        session.verify(b'two', replay)
    _client, server, _seen = _handshake()
    with pytest.raises(n.NtlmError, match='^NTLM signature mismatch, sequence 0$'):
        _client.session.verify(b'tampered', server.sign(b'original'))


# ---------------------------------------------------------------- hostile CHALLENGE messages
GOOD_INFO = acceptor.av_pairs(acceptor.lab_pairs())
GOOD = acceptor.challenge_message(GOOD_INFO)
U16 = acceptor.u16


def _descriptor(length, offset, message=GOOD):
    return message[:40] + struct.pack('<HHI', length, length, offset) + message[48:]


HOSTILE = [
    (GOOD[:47], 'the NTLM CHALLENGE from the CA is truncated (47 bytes, at least 48 expected)'),
    (b'', 'the NTLM CHALLENGE from the CA is truncated (0 bytes, at least 48 expected)'),
    (b'NTLMSSQ\x00' + GOOD[8:], 'the CA sent no NTLM CHALLENGE message (wrong signature or message type)'),
    (GOOD[:8] + b'\x03\x00\x00\x00' + GOOD[12:], 'the CA sent no NTLM CHALLENGE message (wrong signature or message '
                                                 'type)'),
    (_descriptor(len(GOOD_INFO), 0xFFFFFFF0), 'the NTLM CHALLENGE from the CA is malformed: its target info (%d bytes '
                                              'at offset 4294967280) lies outside the %d-byte message'
     % (len(GOOD_INFO), len(GOOD))),
    (_descriptor(len(GOOD_INFO) + 1, 62), 'the NTLM CHALLENGE from the CA is malformed: its target info (%d bytes at '
                                          'offset 62) lies outside the %d-byte message'
     % (len(GOOD_INFO) + 1, len(GOOD))),
    (GOOD[:-1], 'the NTLM CHALLENGE from the CA is malformed: its target info (%d bytes at offset 62) lies outside '
                'the %d-byte message' % (len(GOOD_INFO), len(GOOD) - 1)),
    (_descriptor(0, 62), 'the NTLM CHALLENGE from the CA carries no target info (NTLMv2 needs the AV pairs)'),
    (acceptor.challenge_message(GOOD_INFO, flags=acceptor.FLAGS & ~imp_ntlm.NTLMSSP_NEGOTIATE_TARGET_INFO),
     'the NTLM CHALLENGE from the CA carries no target info (NTLMv2 needs the AV pairs)'),
    (acceptor.challenge_message(GOOD_INFO[:-4]), 'the NTLM target info from the CA is malformed: it does not end '
                                                 'with MsvAvEOL'),
    (acceptor.challenge_message(acceptor.av_pairs([(2, U16('LAB'))], eol=False) + b'\x01\x00\x40\x00CA'),
     'the NTLM target info from the CA is malformed: AV pair 1 runs past its end'),
    (acceptor.challenge_message(acceptor.av_pairs([(2, U16('LAB')), (1, U16('CA1')), (7, b'\x00' * 7)])),
     'the NTLM target info from the CA is malformed: AV pair 7 has 7 bytes, not 8'),
    (acceptor.challenge_message(acceptor.av_pairs([(2, U16('LAB')), (1, U16('CA1')), (6, b'\x00' * 2)])),
     'the NTLM target info from the CA is malformed: AV pair 6 has 2 bytes, not 4'),
    (acceptor.challenge_message(acceptor.av_pairs([(2, U16('LAB')), (3, U16('ca1.lab.adcs.test'))])),
     'the NTLM target info from the CA lacks MsvAvNbComputerName'),
    (acceptor.challenge_message(acceptor.av_pairs([(1, U16('CA1'))])),
     'the NTLM target info from the CA lacks MsvAvNbDomainName'),
    (acceptor.challenge_message(acceptor.av_pairs([(7, b'\x00' * 8)])),
     'the NTLM target info from the CA lacks MsvAvNbComputerName and MsvAvNbDomainName'),
]


@pytest.mark.parametrize('message, text', HOSTILE)
def test_hostile_challenge_is_a_clear_ntlm_error(message, text):
    client = n.NtlmClient('enroller', 'LAB', 'pw')
    client.negotiate()
    with pytest.raises(n.NtlmError) as info:
        client.authenticate(message)
    assert str(info.value) == text and isinstance(info.value, AdcsError)
    assert client.session is None


@pytest.mark.parametrize('cleared, text', [
    (imp_ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY, 'NTLM without extended session security'),
    (imp_ntlm.NTLMSSP_NEGOTIATE_128, 'NTLM without 128-bit session keys'),
    (imp_ntlm.NTLMSSP_NEGOTIATE_SIGN, 'NTLM without signing and sealing'),
    (imp_ntlm.NTLMSSP_NEGOTIATE_SEAL, 'NTLM without signing and sealing'),
])
def test_weak_server_choices_are_refused(cleared, text):
    client = n.NtlmClient('enroller', 'LAB', 'pw')
    client.negotiate()
    with pytest.raises(n.NtlmUnsupported, match='^%s$' % text):
        client.authenticate(acceptor.challenge_message(GOOD_INFO, flags=acceptor.FLAGS & ~cleared))


def test_any_cut_or_flipped_challenge_gives_an_ntlm_error_or_an_answer():
    """Every prefix and a few thousand random corruptions: NtlmError or a well-formed AUTHENTICATE, nothing else."""
    rng = random.Random(15)

    def corrupted():
        positions = rng.sample(range(len(GOOD)), rng.randint(1, 4))
        data = bytes(b if i not in positions else rng.randrange(256) for i, b in enumerate(GOOD))
        cut = rng.randrange(len(data)) if rng.random() < 0.2 else None   # sometimes a byte dropped as well
        return data if cut is None else data[:cut] + data[cut + 1:]

    candidates = [GOOD[:size] for size in range(len(GOOD))] + [corrupted() for _count in range(3000)]
    answered = 0
    for message in candidates:
        client = n.NtlmClient('enroller', 'LAB', 'pw')
        client.negotiate()
        try:
            auth = client.authenticate(message)
        except n.NtlmError:
            continue
        answered += 1
        assert auth[:12] == b'NTLMSSP\x00\x03\x00\x00\x00' and client.session is not None
    assert 0 < answered < len(candidates)
