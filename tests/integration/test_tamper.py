# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replies are authenticated: adcs.enrollment.wcce_request (real `ansible`) through a tampering proxy.

The proxy (tests/integration/tamper_proxy.py) listens on 127.0.0.100 port 135 and the lab CA's object exporter port
and forwards to the shared lab CA; the client reaches the exporter at the address it used for port 135 (only the
port comes from the CA's bindings), so both connections cross the proxy. Each attack must end in a clean failure
naming the cause, with no file written; in pass-through mode the same run enrolls (so the tampering causes the
failures). Kerberos is exercised at the transport level (DcomSession names the CA by its DNS name for the ticket
and connects to the proxy's address).
"""

import json
import os

import pytest

from tamper_proxy import TamperProxy

pytestmark = pytest.mark.lab

MODULE = 'adcs.enrollment.wcce_request'
PROXY = '127.0.0.100'
PREFIX = 'The reply from the CA at %s failed integrity verification (' % PROXY
SUFFIX = ('); it was discarded and nothing was written. What to do: Something between this host and the CA altered, '
          'replayed or forged RPC traffic (or the CA\'s RPC security is broken): check the network path to the CA, '
          'then run the task again.')


@pytest.fixture(scope='module')
def endpoints(lab):
    with open(os.path.join(lab['state_dir'], 'ca-endpoints.json'), encoding='utf-8') as handle:
        return json.load(handle)


@pytest.fixture(scope='module')
def proxy(lab, endpoints):
    if os.geteuid() != 0:
        pytest.skip('the proxy listens on port 135, which needs root (the lab runs as root)')
    server = TamperProxy(PROXY, endpoints['address'], [135, endpoints['object_exporter_port']]).start()
    yield server
    server.stop()


def args(lab, tmp_path, name='tamper'):
    acct = lab['accounts']['enroller']
    common_name = '%s.lab.adcs.test' % name
    return {'ca_host': PROXY, 'ca_name': lab['ca']['name'], 'ca_bundle': lab['ca_bundle'],
            'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password'],
            'template': 'WebServer', 'common_name': common_name, 'timeout': 10,
            'private_key_path': str(tmp_path / 'out.key'), 'certificate_path': str(tmp_path / 'out.crt')}


def run(ansible, lab, tmp_path, proxy, mode, port, nth):
    proxy.attack(mode, port, nth)
    rc, result = ansible.module(MODULE, args(lab, tmp_path))
    return rc, result


def assert_clean_failure(rc, result, tmp_path, proxy, mode, cause):
    assert proxy.applied and proxy.applied[0][1] == ('reordered' if mode == 'reorder' else mode), proxy.log
    assert rc != 0, result
    assert result.get('failed') is True, result
    assert result['msg'] == PREFIX + cause + SUFFIX, result['msg']
    assert result['changed'] is False
    assert 'Traceback' not in json.dumps(result)
    assert os.listdir(str(tmp_path)) == [], os.listdir(str(tmp_path))


def test_pass_through_enrolls(lab, ansible, tmp_path, proxy, endpoints):
    """Without tampering the proxy is transparent: both ports cross it and the certificate is issued."""
    rc, result = run(ansible, lab, tmp_path, proxy, None, None, 1)
    assert rc == 0, result
    assert result['changed'] is True and result['disposition'] == 'issued', result
    assert sorted(os.listdir(str(tmp_path))) == ['out.crt', 'out.key']
    ports = set(entry[0] for entry in proxy.log)
    assert ports == {135, endpoints['object_exporter_port']}, proxy.log
    assert proxy.applied == []


def test_flipped_byte_in_sealed_stub(lab, ansible, tmp_path, proxy, endpoints):
    """The Request2 reply (the first on the object exporter; SPNEGO's mechListMIC took the CA's sequence 0)."""
    rc, result = run(ansible, lab, tmp_path, proxy, 'flip_stub', endpoints['object_exporter_port'], 1)
    assert_clean_failure(rc, result, tmp_path, proxy, 'flip_stub', 'NTLM signature mismatch, sequence 1')


def test_flipped_byte_in_signature(lab, ansible, tmp_path, proxy, endpoints):
    rc, result = run(ansible, lab, tmp_path, proxy, 'flip_sig', endpoints['object_exporter_port'], 2)
    assert_clean_failure(rc, result, tmp_path, proxy, 'flip_sig', 'NTLM signature mismatch, sequence 2')


def test_flipped_byte_in_activation_reply_on_port_135(lab, ansible, tmp_path, proxy):
    rc, result = run(ansible, lab, tmp_path, proxy, 'flip_stub', 135, 1)
    assert_clean_failure(rc, result, tmp_path, proxy, 'flip_stub', 'NTLM signature mismatch, sequence 1')


def test_stripped_auth_trailer(lab, ansible, tmp_path, proxy):
    rc, result = run(ansible, lab, tmp_path, proxy, 'strip', 135, 1)
    assert_clean_failure(rc, result, tmp_path, proxy, 'strip',
                         'the reply carries no authentication trailer (a plaintext reply in a packet privacy '
                         'session)')


def test_plaintext_reply_swapped_in(lab, ansible, tmp_path, proxy, endpoints):
    """The Request2 reply replaced by a plaintext one: refused, nothing written."""
    rc, result = run(ansible, lab, tmp_path, proxy, 'plaintext', endpoints['object_exporter_port'], 1)
    assert_clean_failure(rc, result, tmp_path, proxy, 'plaintext',
                         'the reply carries no authentication trailer (a plaintext reply in a packet privacy '
                         'session)')


def test_replayed_earlier_reply(lab, ansible, tmp_path, proxy, endpoints):
    """The Request2 reply replayed (call_id rewritten) as the answer to the next call: one security context for
    every interface of the connection, so the NTLM sequence number gives it away."""
    rc, result = run(ansible, lab, tmp_path, proxy, 'replay', endpoints['object_exporter_port'], 2)
    assert_clean_failure(rc, result, tmp_path, proxy, 'replay',
                         'NTLM sequence 1, expected 2: out of sequence or replayed')


def test_reordered_fragments(lab, proxy, endpoints, monkeypatch):
    """Fragments of the Request2 reply swapped: the client offers 5840-byte fragments as Windows does, so it asks
    for 2048 here to make the CA fragment the reply."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _rpc_conn, _wcce
    from cryptography.hazmat.primitives.serialization import Encoding
    monkeypatch.setattr(_rpc_conn, 'MAX_FRAG', 2048)
    proxy.attack('reorder', endpoints['object_exporter_port'], 1)
    with _session(lab, _ntlm(lab)) as session:
        client = _wcce.CertRequestClient(session, lab['ca']['name'])
        with pytest.raises(_errors.ReplyVerificationError) as info:
            client.request('WebServer', _csr('reorder.lab.adcs.test').public_bytes(Encoding.DER))
    cause = 'fragment 1 of the reply lacks the first-fragment flag: fragments out of order'
    assert info.value.to_message() == PREFIX + cause + SUFFIX
    assert proxy.applied == [(endpoints['object_exporter_port'], 'reordered')], proxy.log


def _csr(name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    return builder.sign(rsa.generate_private_key(65537, 2048), hashes.SHA256())


# ---- the transport itself, in process: a replay inside one security context, and Kerberos ----
def _session(lab, auth):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _dcom
    return _dcom.DcomSession(lab['ca']['hostname'] if auth.kind == 'kerberos' else PROXY, auth, timeout=10,
                             remote_host=PROXY if auth.kind == 'kerberos' else None)


def _ping(session, lab):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr, _wcce
    req = _ndr.Ping()
    req['pwszAuthority'] = lab['ca']['name'] + '\x00'
    req['ORPCthis'] = _wcce.new_orpcthis()
    return session.call(session.base, req)


def _ntlm(lab):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _auth
    acct = lab['accounts']['enroller']
    return _auth.PasswordAuth(acct['username'], lab['netbios_domain'], acct['password'])


def _kerberos(lab):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos
    acct = lab['accounts']['enroller']
    return _kerberos.KerberosTicketAuth(lab['ca']['hostname'], realm=lab['realm'], user=acct['username'],
                                        password=acct['password'], kdc=lab['dc']['address'])


@pytest.mark.parametrize('make_auth, cause', [
    (_ntlm, 'NTLM sequence {first}, expected {next}: out of sequence or replayed'),
    # header signing: the Kerberos wrap token covers the PDU header, so the rewritten call_id breaks its checksum
    (_kerberos, 'Kerberos wrap token checksum mismatch, sequence {first}'),
])
def test_replay_within_one_security_context(lab, proxy, endpoints, make_auth, cause):
    """Two Pings on ICertRequestD2: the second answered with the first's reply (call_id rewritten)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
    proxy.attack('replay', endpoints['object_exporter_port'], 2)
    with _session(lab, make_auth(lab)) as session:
        _ping(session, lab)
        dce = session.connection(session.base)
        first_seq = dce.security.in_seq - 1
        with pytest.raises(_errors.ReplyVerificationError) as info:
            _ping(session, lab)
    cause = cause.format(first=first_seq, next=first_seq + 1)
    assert info.value.to_message() == PREFIX + cause + SUFFIX
    assert proxy.applied == [(endpoints['object_exporter_port'], 'replay')], proxy.log


@pytest.mark.parametrize('mode, nth, cause', [
    (None, 1, None),
    ('flip_stub', 1, 'Kerberos wrap token checksum mismatch, sequence %d'),
    ('flip_sig', 1, 'Kerberos wrap token header does not match its encrypted copy'),
    ('strip', 1, 'the reply carries no authentication trailer (a plaintext reply in a packet privacy session)'),
])
def test_kerberos_replies_verified(lab, proxy, endpoints, mode, nth, cause):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
    proxy.attack(mode, endpoints['object_exporter_port'], nth)
    with _session(lab, _kerberos(lab)) as session:
        if mode is None:
            _ping(session, lab)
            _ping(session, lab)
            dce = session.connection(session.base)
            assert dce.security.auth_type == 9 and dce.security.kerberos and dce.header_sign
            assert proxy.applied == []
            return
        with pytest.raises(_errors.ReplyVerificationError) as info:
            _ping(session, lab)
        seq = session.connection(session.base).security.in_seq
    if '%d' in cause:
        cause = cause % seq
    assert info.value.to_message() == PREFIX + cause + SUFFIX
    assert proxy.applied == [(endpoints['object_exporter_port'], mode)], proxy.log
