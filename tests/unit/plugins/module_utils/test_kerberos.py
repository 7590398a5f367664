# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_kerberos without a KDC: SPN derivation, SRV discovery, keytab/ccache reading, the TGS-REQ we build, errors."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import socket
import struct
import threading

import pytest
from impacket.krb5 import constants as KC
from impacket.krb5 import crypto as kcrypto
from impacket.krb5.asn1 import (AP_REQ, AS_REP, TGS_REP, TGS_REQ, Authenticator, EncASRepPart, EncTGSRepPart,
                                KRB_ERROR, seq_set)
from impacket.krb5.ccache import CCache
from impacket.krb5.kerberosv5 import KerberosError
from impacket.krb5.types import KerberosTime, Principal
from pyasn1.codec.der import decoder, encoder
from pyasn1.type.univ import noValue

from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos as k
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput

REALM = 'LAB.ADCS.TEST'
NOW = datetime.datetime.now(datetime.timezone.utc)


# ---------------------------------------------------------------- names
@pytest.mark.parametrize('host, service, realm, expected', [
    ('ca1.lab.adcs.test', 'HOST', None, 'HOST/ca1.lab.adcs.test'),
    ('CA1.LAB.ADCS.TEST.', 'HOST', None, 'HOST/ca1.lab.adcs.test'),
    ('ca1', 'HOST', REALM, 'HOST/ca1.lab.adcs.test'),
    ('ca1.lab.adcs.test', 'RPCSS', None, 'RPCSS/ca1.lab.adcs.test'),
])
def test_service_principal(host, service, realm, expected):
    assert k.service_principal(host, service, realm) == expected


@pytest.mark.parametrize('host', ['127.0.0.12', '::1', '', None])
def test_service_principal_needs_dns_name(host):
    with pytest.raises(InvalidInput) as info:
        k.service_principal(host)
    assert 'DNS name' in str(info.value)


def test_resolve_kdcs_given_kdc_wins():
    assert k.resolve_kdcs(REALM, '127.0.0.11') == [('127.0.0.11', 88)]
    assert k.resolve_kdcs(REALM, ['127.0.0.11:750', '127.0.0.12']) == [('127.0.0.11', 750), ('127.0.0.12', 88)]


# ---------------------------------------------------------------- errors
class _KrbErr(Exception):
    def __init__(self, code):
        super(_KrbErr, self).__init__('Kerberos SessionError: %d' % code)
        self.code = code

    def getErrorCode(self):
        return self.code


@pytest.mark.parametrize('code, words', [
    (24, 'wrong password'), (37, 'clock skew'), (7, 'does not know the service principal'),
    (6, 'does not know the client principal'), (18, 'disabled'),
])
def test_krb_error_messages(code, words):
    err = k.failure_from_krb_error(_KrbErr(code), 'Getting a ticket', 'enroller@LAB', '127.0.0.11:88')
    assert isinstance(err, k.KerberosFailure)
    text = str(err)
    assert words in text and 'enroller@LAB' in text and 'What to do' in text and '(%d)' % code in text


def test_unreachable_kdc_message():
    err = k.failure_from_krb_error(socket.error('Connection refused'), 'Getting a ticket', kdc='10.0.0.1:88')
    assert 'cannot reach the KDC' in str(err) and '10.0.0.1:88' in str(err)


# ---------------------------------------------------------------- keytab
def make_keytab(entries):
    """bytes of a v0x502 keytab: entries = [(principal, realm, kvno, etype, key)]."""
    def counted(b):
        return struct.pack('!H', len(b)) + b
    out = b'\x05\x02'
    for principal, realm, kvno, etype, key in entries:
        comps = principal.split('/')
        body = struct.pack('!H', len(comps)) + counted(realm.encode()) + b''.join(counted(c.encode()) for c in comps)
        body += struct.pack('!IIB', 1, 0, kvno % 256) + struct.pack('!H', etype) + counted(key)
        body += struct.pack('!I', kvno)
        out += struct.pack('!i', len(body)) + body
    return out


def test_keytab_keys_newest_kvno_and_realm(tmp_path):
    path = tmp_path / 'krb5.keytab'
    path.write_bytes(make_keytab([
        ('WEB01$', REALM, 2, 18, b'a' * 32), ('WEB01$', REALM, 3, 18, b'b' * 32), ('WEB01$', REALM, 3, 23, b'c' * 16),
        ('host/web01.lab.adcs.test', REALM, 3, 18, b'd' * 32)]))
    keys, realm = k._keytab_keys(str(path), 'web01$')
    assert realm == REALM
    assert keys == {18: b'b' * 32, 23: b'c' * 16}
    with pytest.raises(k.KerberosFailure) as info:
        k._keytab_keys(str(path), 'OTHER$')
    assert 'has no key for OTHER$' in str(info.value) and 'WEB01$@LAB.ADCS.TEST' in str(info.value)


def test_keytab_unreadable(tmp_path):
    with pytest.raises(k.KerberosFailure) as info:
        k._keytab_keys(str(tmp_path / 'missing.keytab'), 'X$')
    assert 'Cannot read the keytab' in str(info.value)


def test_acquire_from_keytab_uses_aes_key_and_kdc(tmp_path, monkeypatch):
    path = tmp_path / 'krb5.keytab'
    path.write_bytes(make_keytab([('LABHOST01$', REALM, 1, 18, b'k' * 32), ('LABHOST01$', REALM, 1, 23, b'r' * 16)]))
    calls = []

    def fake_as(user, realm, kdcs, password='', nt_hash='', aes_key='', timeout=10):
        calls.append((user, realm, kdcs, password, nt_hash, aes_key))
        return {'KDC_REP': b'', 'cipher': None, 'sessionKey': None}, kdcs[0]
    monkeypatch.setattr(k, '_as_exchange', fake_as)
    monkeypatch.setattr(_principals, 'machine_account', lambda hostname=None: 'LABHOST01$')
    creds = k.acquire_credentials(keytab=str(path), kdc='127.0.0.11')
    assert creds.principal == 'LABHOST01$@LAB.ADCS.TEST' and creds.source == 'keytab'
    assert calls == [('LABHOST01$', REALM, [('127.0.0.11', 88)], '', '', b'k' * 32)]


# ---------------------------------------------------------------- ccache
def _as_rep(client, realm, client_key, session_key, start, end, server='krbtgt/%s'):
    part = EncASRepPart()
    part['key'] = noValue
    part['key']['keytype'] = session_key.enctype
    part['key']['keyvalue'] = session_key.contents
    part['last-req'] = noValue
    part['last-req'][0] = noValue
    part['last-req'][0]['lr-type'] = 0
    part['last-req'][0]['lr-value'] = KerberosTime.to_asn1(start)
    part['nonce'] = 1
    part['flags'] = KC.encodeFlags([KC.TicketFlags.initial.value])
    part['authtime'] = KerberosTime.to_asn1(start)
    part['starttime'] = KerberosTime.to_asn1(start)
    part['endtime'] = KerberosTime.to_asn1(end)
    part['srealm'] = realm
    sname = server % realm if '%s' in server else server
    seq_set(part, 'sname', Principal(sname, type=KC.PrincipalNameType.NT_SRV_INST.value).components_to_asn1)
    enc = kcrypto._enctype_table[client_key.enctype].encrypt(client_key, 3, encoder.encode(part), None)
    rep = AS_REP()
    rep['pvno'] = 5
    rep['msg-type'] = 11
    rep['crealm'] = realm
    seq_set(rep, 'cname', Principal(client, type=KC.PrincipalNameType.NT_PRINCIPAL.value).components_to_asn1)
    rep['ticket'] = noValue
    rep['ticket']['tkt-vno'] = 5
    rep['ticket']['realm'] = realm
    seq_set(rep['ticket'], 'sname', Principal(sname, type=KC.PrincipalNameType.NT_SRV_INST.value).components_to_asn1)
    rep['ticket']['enc-part'] = noValue
    rep['ticket']['enc-part']['etype'] = 18
    rep['ticket']['enc-part']['cipher'] = b'opaque ticket'
    rep['enc-part'] = noValue
    rep['enc-part']['etype'] = client_key.enctype
    rep['enc-part']['cipher'] = enc
    return encoder.encode(rep)


def write_ccache(path, client='enroller', start=None, end=None):
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    start = start or NOW - datetime.timedelta(minutes=5)
    end = end or NOW + datetime.timedelta(hours=8)
    cc = CCache()
    cc.fromTGT(_as_rep(client, REALM, client_key, session, start, end), client_key, session)
    cc.saveFile(str(path))
    return session


def test_ccache_tgt(tmp_path, monkeypatch):
    path = tmp_path / 'krb5cc_test'
    session = write_ccache(path)
    monkeypatch.setenv('KRB5CCNAME', 'FILE:%s' % path)
    creds = k.acquire_credentials()
    assert creds.principal == 'enroller@LAB.ADCS.TEST' and creds.source == 'ccache'
    assert creds.tgt['sessionKey'].contents == session.contents
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(user='someoneelse', ccache=str(path))
    assert 'holds tickets of enroller@LAB.ADCS.TEST' in str(info.value)


def test_ccache_expired_and_missing(tmp_path):
    path = tmp_path / 'old'
    write_ccache(path, start=NOW - datetime.timedelta(hours=20), end=NOW - datetime.timedelta(hours=10))
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(ccache=str(path))
    assert 'expired' in str(info.value) and 'kinit' in str(info.value)
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(ccache=str(tmp_path / 'nothere'))
    assert 'does not exist' in str(info.value)
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(ccache='KEYRING:persistent:0')
    assert 'not supported' in str(info.value)


# ---------------------------------------------------------------- TGS exchange
def _tgt():
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    rep = _as_rep('enroller', REALM, client_key, session, NOW, NOW + datetime.timedelta(hours=8))
    return {'KDC_REP': rep, 'cipher': kcrypto._enctype_table[18](), 'sessionKey': session}


def test_tgs_req_has_keyed_body_checksum():
    """Heimdal refuses TGS-REQs whose authenticator lacks the req-body checksum (KRB_AP_ERR_INAPP_CKSUM)."""
    tgt = _tgt()
    req = decoder.decode(k.build_tgs_req(tgt, 'HOST/ca1.lab.adcs.test', REALM), asn1Spec=TGS_REQ())[0]
    body_der = encoder.encode(req['req-body'])
    body_der = k._inner_der(body_der)
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


class _FakeKdc(object):
    """One-shot TCP KDC answering with a KRB-ERROR or a TGS-REP built from the request."""

    def __init__(self, tgt, error=None):
        self.tgt, self.error = tgt, error
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()

    def serve(self):
        conn = self.sock.accept()[0]
        length = struct.unpack('!I', conn.recv(4))[0]
        data = b''
        while len(data) < length:
            data += conn.recv(length - len(data))
        if self.error:
            err = KRB_ERROR()
            err['pvno'] = 5
            err['msg-type'] = 30
            err['stime'] = KerberosTime.to_asn1(NOW)
            err['susec'] = 0
            err['error-code'] = self.error
            err['realm'] = REALM
            seq_set(err, 'sname', Principal('krbtgt/%s' % REALM, type=2).components_to_asn1)
            reply = encoder.encode(err)
        else:
            svc_key = kcrypto.Key(18, os.urandom(32))
            part = EncTGSRepPart()
            part['key'] = noValue
            part['key']['keytype'] = 18
            part['key']['keyvalue'] = svc_key.contents
            part['last-req'] = noValue
            part['last-req'][0] = noValue
            part['last-req'][0]['lr-type'] = 0
            part['last-req'][0]['lr-value'] = KerberosTime.to_asn1(NOW)
            part['nonce'] = 1
            part['flags'] = KC.encodeFlags([])
            part['authtime'] = KerberosTime.to_asn1(NOW)
            part['endtime'] = KerberosTime.to_asn1(NOW + datetime.timedelta(hours=1))
            part['srealm'] = REALM
            seq_set(part, 'sname', Principal('HOST/ca1.lab.adcs.test', type=2).components_to_asn1)
            enc = self.tgt['cipher'].encrypt(self.tgt['sessionKey'], 8, encoder.encode(part), None)
            rep = TGS_REP()
            rep['pvno'] = 5
            rep['msg-type'] = 13
            rep['crealm'] = REALM
            seq_set(rep, 'cname', Principal('enroller', type=1).components_to_asn1)
            rep['ticket'] = noValue
            rep['ticket']['tkt-vno'] = 5
            rep['ticket']['realm'] = REALM
            seq_set(rep['ticket'], 'sname', Principal('HOST/ca1.lab.adcs.test', type=2).components_to_asn1)
            rep['ticket']['enc-part'] = noValue
            rep['ticket']['enc-part']['etype'] = 18
            rep['ticket']['enc-part']['cipher'] = b'x'
            rep['enc-part'] = noValue
            rep['enc-part']['etype'] = 18
            rep['enc-part']['cipher'] = enc
            reply = encoder.encode(rep)
            self.service_key = svc_key
        conn.sendall(struct.pack('!I', len(reply)) + reply)
        conn.close()
        self.sock.close()


def test_get_service_ticket_and_ca_fallback_to_rpcss():
    tgt = _tgt()
    creds = k.KerberosCredentials('enroller', REALM, tgt, kdc=None)
    kdc = _FakeKdc(tgt)
    tgs = k.get_service_ticket(creds, 'HOST/ca1.lab.adcs.test', kdc='127.0.0.1:%d' % kdc.port)
    assert tgs['sessionKey'].contents == kdc.service_key.contents and tgs['cipher'].enctype == 18
    # HOST unknown -> RPCSS asked; both unknown -> the HOST error is reported
    calls = []

    def fake(creds_, spn, kdc_=None, dns=None, timeout=10):
        calls.append(spn)
        raise k.failure_from_krb_error(_KrbErr(7), 'Getting a service ticket for %s' % spn)
    orig = k.get_service_ticket
    k.get_service_ticket = fake
    try:
        with pytest.raises(k.KerberosFailure) as info:
            k.ca_service_ticket(creds, 'ca1.lab.adcs.test')
    finally:
        k.get_service_ticket = orig
    assert calls == ['HOST/ca1.lab.adcs.test', 'RPCSS/ca1.lab.adcs.test']
    assert 'HOST/ca1.lab.adcs.test' in str(info.value)


def test_service_ticket_krb_error_is_clear():
    tgt = _tgt()
    creds = k.KerberosCredentials('enroller', REALM, tgt)
    kdc = _FakeKdc(tgt, error=37)
    with pytest.raises(k.KerberosFailure) as info:
        k.get_service_ticket(creds, 'HOST/ca1.lab.adcs.test', kdc='127.0.0.1:%d' % kdc.port)
    assert 'clock skew' in str(info.value) and 'KRB_AP_ERR_SKEW' in str(info.value)


def test_ccache_service_ticket_is_used_without_kdc():
    creds = k.KerberosCredentials('enroller', REALM, None, service_tickets={'HOST/CA1.LAB.ADCS.TEST': 'ticket'})
    assert k.get_service_ticket(creds, 'HOST/ca1.lab.adcs.test') == 'ticket'
    with pytest.raises(k.KerberosFailure) as info:
        k.get_service_ticket(creds, 'HOST/other.lab.adcs.test')
    assert 'no ticket-granting ticket' in str(info.value)


# ---------------------------------------------------------------- the auth method
def test_ticket_auth_transport_kwargs(monkeypatch):
    seen = {}

    def fake_acquire(realm, user, password, nt_hash, keytab, ccache, kdc, dns_server, use_keytab, timeout,
                     aes_key=None):
        seen.update(realm=realm, user=user, password=password, kdc=kdc)
        return k.KerberosCredentials(user, realm, {'tgt': 1}, 'password', ('127.0.0.11', 88))

    def fake_ticket(creds, ca_host, kdc=None, dns_server=None, spn=None, timeout=10):
        seen['ca_host'] = ca_host
        return 'HOST/%s' % ca_host, {'tgs': 1}
    monkeypatch.setattr(k, 'acquire_credentials', fake_acquire)
    monkeypatch.setattr(k, 'ca_service_ticket', fake_ticket)
    auth = k.KerberosTicketAuth('ca1.lab.adcs.test', user='LAB.ADCS.TEST\\enroller', password='pw')
    assert 'pw' not in repr(auth) and 'pw' not in auth.describe()
    kw = auth.transport_kwargs()
    assert kw == {'username': 'enroller', 'password': '', 'domain': REALM, 'lmhash': '', 'nthash': '', 'aesKey': '',
                  'TGT': {'tgt': 1}, 'TGS': {'tgs': 1}, 'doKerberos': True, 'kdcHost': '127.0.0.11'}
    assert seen == {'realm': REALM, 'user': 'enroller', 'password': 'pw', 'kdc': None, 'ca_host': 'ca1.lab.adcs.test'}
    assert auth.principal == 'enroller@LAB.ADCS.TEST' and auth.kind == 'kerberos'
    assert k.KerberosTicketAuth('ca1', user='WEB$@lab.adcs.test', keytab='/k').source() == 'keytab'
    assert k.KerberosTicketAuth('ca1').source() == 'ccache'


def test_inner_der():
    assert k._inner_der(b'\xa4\x03\x30\x01\x00') == b'\x30\x01\x00'
    long_value = b'\x30\x81\x80' + b'\x00' * 128
    assert k._inner_der(b'\xa4\x81\x83' + long_value) == long_value
    assert k._inner_der(b'\x30\x00') == b'\x30\x00'


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
    assert 'wrong password' in str(k.failure_from_krb_error(exc, 'Getting a ticket'))


def test_core_kerberos_auth_delegates_with_the_session_host(monkeypatch):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _auth
    seen = []

    def fake_acquire(self, ca_host=None):
        ca_host = ca_host or self.ca_host
        if self.service_ticket is not None and ca_host == self.ca_host:
            return self
        seen.append(ca_host)
        self.credentials = k.KerberosCredentials('enroller', REALM, {'tgt': 1}, 'password', ('127.0.0.11', 88))
        self.ca_host, self.service_ticket = ca_host, {'tgs': ca_host}
        return self
    monkeypatch.setattr(k.KerberosTicketAuth, 'acquire', fake_acquire)
    auth = _auth.KerberosAuth('enroller', REALM, password='pw', keytab='/k', dns_server='127.0.0.11')
    assert auth.transport_kwargs()['password'] == 'pw'          # no CA name yet: impacket's own Kerberos
    auth.set_ca_host('ca1.lab.adcs.test')
    assert auth.transport_kwargs()['TGS'] == {'tgs': 'ca1.lab.adcs.test'}
    auth.set_ca_host('127.0.0.12')                               # an address keeps the DNS name
    assert auth.ca_host == 'ca1.lab.adcs.test'
    auth.set_ca_host('ca2.lab.adcs.test')                        # another CA: its own service ticket
    assert auth.transport_kwargs()['TGS'] == {'tgs': 'ca2.lab.adcs.test'}
    assert seen == ['ca1.lab.adcs.test', 'ca2.lab.adcs.test']


def _as_rep_without_starttime(client_key, session, start, end):
    """An AS-REP as Heimdal sends it: EncASRepPart without the optional starttime."""
    der = _as_rep('enroller', REALM, client_key, session, start, end)
    rep = decoder.decode(der, asn1Spec=AS_REP())[0]
    plain = kcrypto._enctype_table[18].decrypt(client_key, 3, rep['enc-part']['cipher'].asOctets())
    part = decoder.decode(plain, asn1Spec=EncASRepPart())[0]
    fresh = EncASRepPart()
    for name in ('key', 'last-req', 'nonce', 'flags', 'authtime', 'endtime', 'srealm', 'sname'):
        fresh[name] = part[name]
    rep['enc-part']['cipher'] = kcrypto._enctype_table[18].encrypt(client_key, 3, encoder.encode(fresh), None)
    return encoder.encode(rep)


def test_write_ccache_without_starttime_reads_back(tmp_path):
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    rep = _as_rep_without_starttime(client_key, session, NOW, NOW + datetime.timedelta(hours=8))
    tgt = {'KDC_REP': rep, 'cipher': kcrypto._enctype_table[18](), 'sessionKey': session, 'replyKey': (client_key, 3)}
    creds = k.KerberosCredentials('enroller', REALM, tgt, 'password')
    path = str(tmp_path / 'cc')
    assert k.write_ccache(creds, path) == 'FILE:%s' % path
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'
    back = k.acquire_credentials(ccache=path)
    assert back.principal == 'enroller@LAB.ADCS.TEST'
    assert back.tgt['sessionKey'].contents == session.contents
    cc = CCache.loadFile(path)
    assert cc.credentials[0]['time']['starttime'] == cc.credentials[0]['time']['authtime'] > 0


def test_nothing_given_falls_back_to_the_machine_keytab(tmp_path, monkeypatch):
    keytab = tmp_path / 'krb5.keytab'
    keytab.write_bytes(make_keytab([('WEB01$', REALM, 4, 18, b'm' * 32)]))
    monkeypatch.delenv('KRB5CCNAME', raising=False)
    monkeypatch.setenv('KRB5_CLIENT_KTNAME', 'FILE:%s' % keytab)
    monkeypatch.setattr(k, '_ccache_path', lambda ccache: str(tmp_path / 'no-such-ccache'))
    monkeypatch.setattr(_principals, 'machine_account', lambda hostname=None: 'WEB01$')
    monkeypatch.setattr(k, '_as_exchange', lambda user, realm, kdcs, **kw: ({'KDC_REP': b''}, kdcs[0]))
    creds = k.acquire_credentials(kdc='127.0.0.11')
    assert creds.principal == 'WEB01$@LAB.ADCS.TEST' and creds.source == 'keytab'
    keytab.unlink()
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(kdc='127.0.0.11')
    assert 'No Kerberos credentials' in str(info.value) and 'kinit' in str(info.value)
