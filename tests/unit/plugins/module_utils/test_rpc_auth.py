# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_rpc_auth: SPNEGO tokens, NTLM and Kerberos per-message protection (both directions built here, the acceptor's
side from the RFC 3961/4121 formulas), header signing coverage, and what each tampering is reported as."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import struct
import subprocess
import sys

import pytest
from impacket import ntlm as imp_ntlm
from impacket.krb5.crypto import Key, _checksum_table, _enctype_table
from impacket.spnego import SPNEGO_NegTokenInit

from ansible_collections.adcs.enrollment.plugins.module_utils import _ntlm
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_auth as r
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import ntlm as ntlm_acceptor

HEADER = b'\x05\x00\x02\x03\x10\x00\x00\x00' + b'\x00' * 16
TRAILER = struct.pack('<BBBBL', 9, 6, 0, 0, 0)


# ---------------------------------------------------------------- SPNEGO
def test_neg_token_init_parses_and_names_its_mech_list():
    token, mech_list = r.neg_token_init([r.OID_MS_KRB5, r.OID_KRB5, r.OID_NTLM], b'\x01' * 300)
    init = SPNEGO_NegTokenInit(token)
    assert init['MechToken'] == b'\x01' * 300
    assert len(init['MechTypes']) == 3
    assert mech_list == r.der(0x30, r.OID_MS_KRB5 + r.OID_KRB5 + r.OID_NTLM) and mech_list in token


def test_neg_token_resp_roundtrip_and_reject():
    token = r.neg_token_resp(b'\x02' * 200, b'\x03' * 16)
    assert r.parse_neg_token_resp(token) == (None, b'\x02' * 200, b'\x03' * 16)
    reject = r.der(0xA1, r.der(0x30, r.der(0xA0, b'\x0a\x01\x02')))
    with pytest.raises(r.Rejected, match='rejected the SPNEGO negotiation'):
        r.parse_neg_token_resp(reject)
    # a reject that carries the mechanism's answer (a KRB-ERROR) hands it to the mechanism, which raises it
    krb_error = b'\x7e\x03\x02\x01\x25'
    reject_with_error = r.der(0xA1, r.der(0x30, r.der(0xA0, b'\x0a\x01\x02') + r.der(0xA2, r.der(0x04, krb_error))))
    assert r.parse_neg_token_resp(reject_with_error) == (2, krb_error, None)
    with pytest.raises(r.BadVerifier, match='no SPNEGO NegTokenResp'):
        r.parse_neg_token_resp(r.der(0xA0, r.der(0x30, b'')))
    with pytest.raises(r.BadVerifier, match='truncated SPNEGO token'):
        r.parse_neg_token_resp(token[:-5])


# ---------------------------------------------------------------- NTLM
def _ntlm_pair(flags=_ntlm.NEGOTIATE_EXTENDED_SESSIONSECURITY | _ntlm.NEGOTIATE_KEY_EXCH | _ntlm.NEGOTIATE_128):
    """(client, server-as-seen-from-the-client): the second one's session is the acceptor's view of the same key."""
    key = os.urandom(16)
    pair = []
    for initiator in (True, False):
        ctx = r.NtlmContext('u', 'p', 'D')
        ctx.session = _ntlm.NtlmSession(key, flags, initiator=initiator)
        pair.append(ctx)
    return pair


def test_ntlm_seal_and_verify_both_ways():
    client, server = _ntlm_pair()
    for i in range(3):
        data = os.urandom(32)
        body, verifier = client.protect(HEADER, data, TRAILER, 6, True)
        assert body != data and struct.unpack('<I', verifier[12:])[0] == i
        assert server.unprotect(HEADER, body, TRAILER, verifier, 6, True) == data
    assert client.out_seq == server.in_seq == 3


def test_ntlm_tampering_reported():
    client, server = _ntlm_pair()
    body, verifier = client.protect(HEADER, b'A' * 16, TRAILER, 6, True)
    with pytest.raises(r.BadVerifier, match='^NTLM signature mismatch, sequence 0$'):
        server.unprotect(HEADER[:-1] + b'\x01', body, TRAILER, verifier, 6, True)     # the header is covered
    client, server = _ntlm_pair()
    client.protect(HEADER, b'A' * 16, TRAILER, 6, True)
    body, verifier = client.protect(HEADER, b'B' * 16, TRAILER, 6, True)
    with pytest.raises(r.BadVerifier, match='^NTLM sequence 1, expected 0: out of sequence or replayed$'):
        server.unprotect(HEADER, body, TRAILER, verifier, 6, True)
    with pytest.raises(r.BadVerifier, match='an NTLM verifier of 15 bytes'):
        server.verify_raw(b'x', verifier[:15])


def test_ntlm_spnego_mech_list_mic_restarts_rc4():
    client, server = _ntlm_pair()
    client.spnego = server.spnego = True
    client.mech_list = server.mech_list = r.der(0x30, r.OID_NTLM)
    mic = client.sign_raw(client.mech_list)
    client.session.restart_outbound()
    server.finish(r.neg_token_resp(None, mic))          # the "server" verifies our MIC the way we verify its
    assert server.complete and server.in_seq == 1
    body, verifier = client.protect(HEADER, b'C' * 16, TRAILER, 6, True)
    assert server.unprotect(HEADER, body, TRAILER, verifier, 6, True) == b'C' * 16
    with pytest.raises(r.BadVerifier, match='no SPNEGO mechListMIC'):
        server.finish(r.neg_token_resp(b'x'))


@pytest.mark.parametrize('spnego', [True, False])
def test_ntlm_handshake_against_an_independent_acceptor(spnego):
    """first_token/step/finish as _rpc_conn drives them; the acceptor (impacket primitives) checks NTProofStr, the
    key, the MIC, the mechListMIC; then a sealed request and a sealed, verified reply."""
    server = ntlm_acceptor.Acceptor(imp_ntlm.compute_nthash('S3cret-pw'))
    ctx = r.security_context('negotiate' if spnego else 'ntlm', {'username': 'enroller', 'password': 'S3cret-pw',
                             'domain': 'LAB', 'nthash': '', 'doKerberos': False}, 'ca1.lab.adcs.test')
    first = ctx.first_token()
    negotiate = SPNEGO_NegTokenInit(first)['MechToken'] if spnego else first
    challenge = server.challenge_for(negotiate)
    token, how = ctx.step(r.neg_token_resp(challenge) if spnego else challenge)
    assert how == ('alter' if spnego else 'auth3')
    if spnego:
        _state, auth, mic = r.parse_neg_token_resp(token)
        seen = server.accept(auth)
        server.check(ctx.mech_list, mic)
        server.restart(inbound=True)
        assert not ctx.complete
        ctx.finish(r.neg_token_resp(None, server.sign(ctx.mech_list)))
        server.restart(inbound=False)
    else:
        seen = server.accept(token)
    assert ctx.complete and seen['user'] == 'enroller' and seen['domain'] == 'LAB'
    assert seen['pairs'][_ntlm.AV_TARGET_NAME][1] == 'HOST/ca1.lab.adcs.test'.encode('utf-16le')
    body, verifier = ctx.protect(HEADER, b'request!' * 4, TRAILER, 6, True)
    plain = server.unseal(body)
    server.check(HEADER + plain + TRAILER, verifier)
    assert plain == b'request!' * 4
    body, verifier = server.seal(HEADER + b'reply...' * 2 + TRAILER, b'reply...' * 2)
    assert ctx.unprotect(HEADER, body, TRAILER, verifier, 6, True) == b'reply...' * 2


def test_ntlm_empty_nt_hash_means_the_password():
    """The nthash=b'' pitfall: impacket took b'' for a hash; an empty hash of either type means the password's."""
    server = ntlm_acceptor.Acceptor(imp_ntlm.compute_nthash('S3cret-pw'))
    for nthash in (b'', '', None):
        ctx = r.NtlmContext('enroller', 'S3cret-pw', 'LAB', nthash, spnego=False)
        token, _how = ctx.step(server.challenge_for(ctx.first_token()))
        assert server.accept(token)['user'] == 'enroller'
    ctx = r.NtlmContext('enroller', 'not-the-password', 'LAB', imp_ntlm.compute_nthash('S3cret-pw'), spnego=False)
    server.accept(ctx.step(server.challenge_for(ctx.first_token()))[0])


def test_ntlm_bad_challenge_is_a_bad_verifier_and_weak_choices_unsupported():
    ctx = r.NtlmContext('enroller', 'pw', 'LAB', spnego=False)
    ctx.first_token()
    with pytest.raises(r.BadVerifier, match='^the NTLM target info from the CA lacks MsvAvNbComputerName$'):
        ctx.step(ntlm_acceptor.challenge_message(ntlm_acceptor.av_pairs([(2, 'LAB'.encode('utf-16le'))])))
    weak = ntlm_acceptor.challenge_message(ntlm_acceptor.av_pairs(ntlm_acceptor.lab_pairs()),
                                           flags=ntlm_acceptor.FLAGS & ~_ntlm.NEGOTIATE_EXTENDED_SESSIONSECURITY)
    with pytest.raises(r.Unsupported, match='^NTLM without extended session security$'):
        ctx.step(weak)
    spnego = r.NtlmContext('enroller', 'pw', 'LAB')
    spnego.first_token()
    with pytest.raises(r.BadVerifier, match='the CA sent no NTLM challenge'):
        spnego.step(r.neg_token_resp(None, b'mic'))


_IMPORTS = r'''
import json, sys
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_auth
ctx = _rpc_auth.security_context('negotiate', {'username': 'u', 'password': 'p', 'domain': 'D', 'doKerberos': False},
                                 'ca')
ctx.first_token()
ctx.client.authenticate(bytes.fromhex(sys.argv[1]))
ctx.session = ctx.client.session
ctx.protect(b'h', b'data', b't', 6, True)
print(json.dumps(sorted(sys.modules)))
'''


def test_ntlm_path_imports_neither_impacket_nor_cryptodome():
    """A process that imports _rpc_auth and runs an NTLM handshake and a sealed PDU: no impacket (ntlm, krb5...), no
    Cryptodome, cffi or pycparser (20 ms of imports on every run before)."""
    challenge = ntlm_acceptor.challenge_message(ntlm_acceptor.av_pairs(ntlm_acceptor.lab_pairs()))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, '-c', _IMPORTS, challenge.hex()], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    modules = json.loads(proc.stdout.decode())
    assert 'ansible_collections.adcs.enrollment.plugins.module_utils._ntlm' in modules
    assert [m for m in modules if m.split('.')[0] in ('impacket', 'Cryptodome', 'cffi', 'pycparser')] == []


# ---------------------------------------------------------------- Kerberos
def _krb(etype=18):
    ctx = r.KerberosContext({}, 'ca1.lab.adcs.test')
    ctx.profile = _enctype_table[etype]
    ctx.checksum = _checksum_table[16 if etype == 18 else 15]
    ctx.key = Key(etype, os.urandom(32 if etype == 18 else 16))
    ctx.in_seq = 77
    return ctx


def _acceptor_wrap(ctx, seq, data, prefix=b'', suffix=b'', flags=0x07, ec=16, rrc=28, copy_seq=None):
    """An RFC 4121 DCE-style wrap token as the CA builds it (acceptor seal usage 22)."""
    head = struct.pack('>HBBHHQ', 0x0504, flags, 0xFF, ec, 0, seq)
    copy = struct.pack('>HBBHHQ', 0x0504, flags, 0xFF, ec, 0, seq if copy_seq is None else copy_seq)
    sealed = r.aes_seal(ctx.profile, ctx.key, 22, prefix, data, suffix, b'\xff' * ec + copy)
    rotated = r._rotate(sealed, len(sealed) - (rrc + ec))
    cut = 16 + rrc + ec
    return rotated[cut:], head[:6] + struct.pack('>H', rrc) + head[8:] + rotated[:cut]


@pytest.mark.parametrize('etype', [17, 18])
@pytest.mark.parametrize('header_sign', [False, True])
def test_kerberos_unwrap_checks_header_signing_and_sequence(etype, header_sign):
    ctx = _krb(etype)
    data = os.urandom(48)
    prefix, suffix = (HEADER, TRAILER) if header_sign else (b'', b'')
    body, verifier = _acceptor_wrap(ctx, 77, data, prefix, suffix)
    assert ctx.unprotect(HEADER, body, TRAILER, verifier, 6, header_sign) == data and ctx.in_seq == 78
    body, verifier = _acceptor_wrap(ctx, 78, data, prefix, suffix)
    other = HEADER[:-1] + b'\x09'
    if header_sign:                         # the PDU header is a SIGN_ONLY buffer of the token
        with pytest.raises(r.BadVerifier, match='^Kerberos wrap token checksum mismatch, sequence 78$'):
            ctx.unprotect(other, body, TRAILER, verifier, 6, True)
    else:
        assert ctx.unprotect(other, body, TRAILER, verifier, 6, False) == data


def test_kerberos_unwrap_refusals():
    ctx = _krb()
    body, verifier = _acceptor_wrap(ctx, 5, b'D' * 16)
    with pytest.raises(r.BadVerifier, match='^Kerberos sequence 5, expected 77: out of sequence or replayed$'):
        ctx.unprotect(HEADER, body, TRAILER, verifier, 6, False)
    body, verifier = _acceptor_wrap(ctx, 77, b'D' * 16, copy_seq=76)
    with pytest.raises(r.BadVerifier, match='header does not match its encrypted copy'):
        ctx.unprotect(HEADER, body, TRAILER, verifier, 6, False)
    body, verifier = _acceptor_wrap(ctx, 77, b'D' * 16, flags=0x06)
    with pytest.raises(r.BadVerifier, match='acceptor flag unset'):
        ctx.unprotect(HEADER, body, TRAILER, verifier, 6, False)
    body, verifier = _acceptor_wrap(ctx, 77, b'D' * 16, flags=0x05)
    with pytest.raises(r.BadVerifier, match='not sealed in a packet-privacy session'):
        ctx.unprotect(HEADER, body, TRAILER, verifier, 6, False)
    with pytest.raises(r.BadVerifier, match='not a Kerberos wrap token'):
        ctx.unprotect(HEADER, body, TRAILER, b'\x04\x04' + verifier[2:], 6, False)


def test_kerberos_client_wrap_and_mic_tokens():
    ctx = _krb()
    body, verifier = ctx.protect(HEADER, b'E' * 32, TRAILER, 6, True)
    assert len(verifier) == ctx.verifier_size(6) == 76 and len(body) == 32
    tok, flags, filler, ec, rrc, seq = struct.unpack('>HBBHHQ', verifier[:16])
    assert (tok, flags, filler, ec, rrc, seq) == (0x0504, 0x06, 0xFF, 16, 28, 0)
    sealed = r._rotate(verifier[16:] + body, rrc + ec)
    data, tail = r.aes_unseal(ctx.profile, ctx.key, 24, HEADER, sealed, TRAILER, 32)
    assert data == b'E' * 32 and tail[16:] == verifier[:6] + b'\x00\x00' + verifier[8:16]
    mic = ctx.get_mic(b'mechlist')
    assert mic[:3] == b'\x04\x04\x04' and struct.unpack('>Q', mic[8:16])[0] == 1
    head = struct.pack('>HB5sQ', 0x0404, 0x05, b'\xff' * 5, 77)
    ctx.verify_mic(b'mechlist', head + ctx.checksum.checksum(ctx.key, 23, b'mechlist' + head))
    with pytest.raises(r.BadVerifier, match='Kerberos MIC checksum mismatch, sequence 78'):
        head = struct.pack('>HB5sQ', 0x0404, 0x05, b'\xff' * 5, 78)
        ctx.verify_mic(b'other', head + ctx.checksum.checksum(ctx.key, 23, b'mechlist' + head))


def test_security_context_choice():
    ntlm_creds = {'username': 'u', 'password': 'p', 'domain': 'D', 'nthash': '', 'doKerberos': False}
    assert r.security_context('negotiate', ntlm_creds, 'ca').auth_type == 9
    assert r.security_context('ntlm', ntlm_creds, 'ca').auth_type == 10
    krb = dict(ntlm_creds, doKerberos=True)
    assert r.security_context('negotiate', krb, 'ca').kerberos
    assert r.security_context('kerberos', krb, 'ca').auth_type == 16
    with pytest.raises(r.Unsupported):
        r.security_context('kerberos', ntlm_creds, 'ca')
    with pytest.raises(r.Unsupported):
        r.security_context('ntlm', krb, 'ca')
    with pytest.raises(r.Unsupported):
        r.security_context('schannel', krb, 'ca')
    assert r.security_context('ntlm', dict(ntlm_creds, nthash='00' * 16), 'ca').nthash == b'\x00' * 16
