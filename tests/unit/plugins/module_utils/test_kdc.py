# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_kdc without a KDC (or with a fake or hostile one): SPN derivation, KDC lists, KRB-ERROR messages, the TGS-REQ we
build, the TGS exchange, and the bounded KDC reply (issue 12 item 8)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import socket
import struct
import threading
import time

import pytest
from impacket.krb5 import crypto as kcrypto
from impacket.krb5.asn1 import AP_REQ, TGS_REQ, Authenticator, KRB_ERROR, seq_set
from impacket.krb5.kerberosv5 import KerberosError
from impacket.krb5.types import KerberosTime, Principal
from pyasn1.codec.der import decoder, encoder

from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos as k
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.kerberos import REALM, NOW, make_tgt, FakeKdc, KrbErr


# ---------------------------------------------------------------- names
@pytest.mark.parametrize('host, service, realm, expected', [
    ('ca1.lab.adcs.test', 'HOST', None, 'HOST/ca1.lab.adcs.test'),
    ('CA1.LAB.ADCS.TEST.', 'HOST', None, 'HOST/ca1.lab.adcs.test'),
    ('ca1', 'HOST', REALM, 'HOST/ca1.lab.adcs.test'),
    ('ca1.lab.adcs.test', 'RPCSS', None, 'RPCSS/ca1.lab.adcs.test'),
])
def test_service_principal(host, service, realm, expected):
    assert _kdc.service_principal(host, service, realm) == expected


@pytest.mark.parametrize('host', ['127.0.0.12', '::1', '', None])
def test_service_principal_needs_dns_name(host):
    with pytest.raises(InvalidInput) as info:
        _kdc.service_principal(host)
    assert 'DNS name' in str(info.value)


def test_resolve_kdcs_given_kdc_wins():
    assert _kdc.resolve_kdcs(REALM, '127.0.0.11') == [('127.0.0.11', 88)]
    assert _kdc.resolve_kdcs(REALM, ['127.0.0.11:750', '127.0.0.12']) == [('127.0.0.11', 750), ('127.0.0.12', 88)]


@pytest.mark.parametrize('code, words', [
    (24, 'wrong password'), (37, 'clock skew'), (7, 'does not know the service principal'),
    (6, 'does not know the client principal'), (18, 'disabled'),
])
def test_krb_error_messages(code, words):
    err = _kdc.failure_from_krb_error(KrbErr(code), 'Getting a ticket', 'enroller@LAB', '127.0.0.11:88')
    assert isinstance(err, k.KerberosFailure)
    text = str(err)
    assert words in text and 'enroller@LAB' in text and 'What to do' in text and '(%d)' % code in text
    assert err.krb_error_code == code     # what callers decide on (never the text)


def test_unreachable_kdc_message():
    err = _kdc.failure_from_krb_error(socket.error('Connection refused'), 'Getting a ticket', kdc='10.0.0.1:88')
    assert 'cannot reach the KDC' in str(err) and '10.0.0.1:88' in str(err)


def test_tgs_req_has_keyed_body_checksum():
    """Heimdal refuses TGS-REQs whose authenticator lacks the req-body checksum (KRB_AP_ERR_INAPP_CKSUM)."""
    tgt = make_tgt()
    req = decoder.decode(_kdc.build_tgs_req(tgt, 'HOST/ca1.lab.adcs.test', REALM), asn1Spec=TGS_REQ())[0]
    body_der = encoder.encode(req['req-body'])
    body_der = _kdc._inner_der(body_der)
    assert body_der[0] == 0x30
    ap_req = decoder.decode(req['padata'][0]['padata-value'], asn1Spec=AP_REQ())[0]
    plain = tgt['cipher'].decrypt(tgt['sessionKey'], 7, ap_req['authenticator']['cipher'].asOctets())
    auth = decoder.decode(plain, asn1Spec=Authenticator())[0]
    assert int(auth['cksum']['cksumtype']) == 16
    expected = kcrypto._checksum_table[16].checksum(tgt['sessionKey'], 6, body_der)
    assert auth['cksum']['checksum'].asOctets() == expected
    sname = '/'.join(str(c) for c in req['req-body']['sname']['name-string'])
    assert sname == 'HOST/ca1.lab.adcs.test'
    assert [int(e) for e in req['req-body']['etype']] == [18, 17, 23]


def test_get_service_ticket_and_ca_fallback_to_rpcss():
    tgt = make_tgt()
    creds = _kdc.KerberosCredentials('enroller', REALM, tgt, kdc=None)
    kdc = FakeKdc(tgt)
    tgs = _kdc.get_service_ticket(creds, 'HOST/ca1.lab.adcs.test', kdc='127.0.0.1:%d' % kdc.port)
    assert tgs['sessionKey'].contents == kdc.service_key.contents and tgs['cipher'].enctype == 18
    # HOST unknown -> RPCSS asked; both unknown -> the HOST error is reported
    calls = []

    def fake(creds_, spn, kdc_=None, dns=None, timeout=10):
        calls.append(spn)
        raise _kdc.failure_from_krb_error(KrbErr(7), 'Getting a service ticket for %s' % spn)
    orig = _kdc.get_service_ticket
    _kdc.get_service_ticket = fake
    try:
        with pytest.raises(k.KerberosFailure) as info:
            _kdc.ca_service_ticket(creds, 'ca1.lab.adcs.test')
    finally:
        _kdc.get_service_ticket = orig
    assert calls == ['HOST/ca1.lab.adcs.test', 'RPCSS/ca1.lab.adcs.test']
    assert 'HOST/ca1.lab.adcs.test' in str(info.value)


def test_service_ticket_krb_error_is_clear():
    tgt = make_tgt()
    creds = _kdc.KerberosCredentials('enroller', REALM, tgt)
    kdc = FakeKdc(tgt, error=37)
    with pytest.raises(k.KerberosFailure) as info:
        _kdc.get_service_ticket(creds, 'HOST/ca1.lab.adcs.test', kdc='127.0.0.1:%d' % kdc.port)
    assert 'clock skew' in str(info.value) and 'KRB_AP_ERR_SKEW' in str(info.value)


def test_inner_der():
    assert _kdc._inner_der(b'\xa4\x03\x30\x01\x00') == b'\x30\x01\x00'
    long_value = b'\x30\x81\x80' + b'\x00' * 128
    assert _kdc._inner_der(b'\xa4\x81\x83' + long_value) == long_value
    assert _kdc._inner_der(b'\x30\x00') == b'\x30\x00'


def test_kerberos_error_class_from_impacket():
    err = KRB_ERROR()
    err['pvno'] = 5
    err['msg-type'] = 30
    err['stime'] = KerberosTime.to_asn1(NOW)
    err['susec'] = 0
    err['error-code'] = 24
    err['realm'] = REALM
    seq_set(err, 'sname', Principal('krbtgt/%s' % REALM, type=2).components_to_asn1)
    exc = KerberosError(packet=decoder.decode(encoder.encode(err), asn1Spec=KRB_ERROR())[0])
    assert 'wrong password' in str(_kdc.failure_from_krb_error(exc, 'Getting a ticket'))


HOSTILE_KDC = '127.0.0.201'  # unit-only address: the integration tests' hostile KDC uses 127.0.0.101 at the same time
REMEDY_KDC = ('Check that %s:%d is a Kerberos KDC (a domain controller) and that nothing on the path alters the '
              'traffic.')


class HostileKdc(object):
    """Answers every request with ``reply`` (raw bytes), then closes."""

    def __init__(self, reply, address='127.0.0.1', port=0):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 15
        while True:          # a listener of an earlier run may still be going away
            try:
                self.sock.bind((address, port))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.sock.listen(4)
        self.address, self.port = self.sock.getsockname()
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            try:
                head = conn.recv(4)
                if len(head) == 4:
                    length = struct.unpack('!I', head)[0]
                    got = 0
                    while got < length:
                        chunk = conn.recv(length - got)
                        if not chunk:
                            break
                        got += len(chunk)
                conn.sendall(self.reply)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)      # wakes the accept() so that the port is released now
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize('length', [_kdc.MAX_KDC_REPLY + 1, 0x7FFFFFFF, 0xFFFFFFF0])
def test_kdc_reply_length_is_bounded(length):
    kdc = HostileKdc(struct.pack('!I', length) + b'\x00' * 64)
    try:
        with pytest.raises(k.KerberosFailure) as info:
            _kdc._send_receive(b'request', kdc.address, kdc.port, 5)
    finally:
        kdc.close()
    assert info.value.to_message() == (
        'The KDC at %s:%d announced a reply of %d bytes, more than the %d bytes allowed. What to do: '
        % (kdc.address, kdc.port, length, _kdc.MAX_KDC_REPLY) + REMEDY_KDC % (kdc.address, kdc.port))


def test_kdc_closing_early_is_an_error_not_a_loop():
    kdc = HostileKdc(struct.pack('!I', 5000) + b'\x00' * 10)
    try:
        with pytest.raises(socket.error) as info:
            _kdc._send_receive(b'request', kdc.address, kdc.port, 5)
    finally:
        kdc.close()
    assert 'the KDC closed the connection' in str(info.value)


def test_kdc_reply_at_the_limit_is_read():
    body = b'\x04' * 1000
    kdc = HostileKdc(struct.pack('!I', len(body)) + body)
    try:
        assert _kdc._send_receive(b'request', kdc.address, kdc.port, 5) == body
    finally:
        kdc.close()


def test_as_exchange_uses_the_bounded_exchange():
    """getKerberosTGT (impacket) talks to the KDC through our bounded exchange during _as_exchange."""
    if os.geteuid() != 0:
        pytest.skip('the AS exchange uses port 88, which needs root')
    from impacket.krb5 import kerberosv5
    original = kerberosv5.sendReceive
    kdc = HostileKdc(struct.pack('!I', 0x7FFFFFFF), address=HOSTILE_KDC, port=88)
    try:
        with pytest.raises(k.KerberosFailure) as info:
            k.acquire_credentials(realm=REALM, user='enroller', password='pw', kdc=HOSTILE_KDC, timeout=5)
    finally:
        kdc.close()
    assert info.value.to_message().startswith(
        'The KDC at %s:88 announced a reply of 2147483647 bytes, more than the %d bytes allowed'
        % (HOSTILE_KDC, _kdc.MAX_KDC_REPLY))
    assert kerberosv5.sendReceive is original


def _krb_error_bytes(code):
    from impacket.krb5.asn1 import KRB_ERROR, seq_set
    from impacket.krb5.types import KerberosTime, Principal
    from pyasn1.codec.der import encoder
    err = KRB_ERROR()
    err['pvno'] = 5
    err['msg-type'] = 30
    err['stime'] = KerberosTime.to_asn1(NOW)
    err['susec'] = 0
    err['error-code'] = code
    err['realm'] = REALM
    seq_set(err, 'sname', Principal('krbtgt/%s' % REALM, type=2).components_to_asn1)
    data = encoder.encode(err)
    return struct.pack('!I', len(data)) + data


def test_bounded_exchange_keeps_impackets_contract_for_preauth_required():
    """getKerberosTGT expects KDC_ERR_PREAUTH_REQUIRED returned (it reads the salts), other errors raised."""
    from impacket.krb5.kerberosv5 import KerberosError
    kdc = HostileKdc(_krb_error_bytes(25))
    try:
        data = _kdc._bounded_impacket_send_receive(b'req', 'ignored', kdc.address, kdc.port)
        assert data == _krb_error_bytes(25)[4:]
        with pytest.raises(KerberosError):
            _kdc._send_receive(b'req', kdc.address, kdc.port, 5)      # our own TGS path raises every KRB-ERROR
    finally:
        kdc.close()
    kdc = HostileKdc(_krb_error_bytes(6))
    try:
        with pytest.raises(KerberosError) as info:
            _kdc._bounded_impacket_send_receive(b'req', 'ignored', kdc.address, kdc.port)
        assert info.value.getErrorCode() == 6
    finally:
        kdc.close()


def test_kdc_exchange_sets_no_delay_and_reads_the_framed_reply(monkeypatch):
    import socket
    import struct

    class Sock(object):
        def __init__(self):
            self.options, self.sent, self.data = {}, b'', struct.pack('!I', 5) + b'reply'

        def setsockopt(self, level, name, value):
            self.options[(level, name)] = value

        def sendall(self, data):
            self.sent += data

        def recv(self, size):
            chunk, self.data = self.data[:size], self.data[size:]
            return chunk

        def close(self):
            pass

    sock = Sock()
    monkeypatch.setattr(socket, 'create_connection', lambda *a, **k: sock)
    assert _kdc._kdc_exchange(b'req', 'dc1', 88, 5) == b'reply'
    assert sock.sent == struct.pack('!I', 3) + b'req'
    assert sock.options == {(socket.IPPROTO_TCP, socket.TCP_NODELAY): 1}
