# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_kerberos without a KDC: keytab reading, the credential sources of acquire_credentials, the DCOM auth method."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos as k
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.kerberos import REALM, make_keytab


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
    monkeypatch.setattr(_kdc, 'as_exchange', fake_as)
    monkeypatch.setattr(_principals, 'machine_account', lambda hostname=None: 'LABHOST01$')
    creds = k.acquire_credentials(keytab=str(path), kdc='127.0.0.11')
    assert creds.principal == 'LABHOST01$@LAB.ADCS.TEST' and creds.source == 'keytab'
    assert calls == [('LABHOST01$', REALM, [('127.0.0.11', 88)], '', '', b'k' * 32)]


# ---------------------------------------------------------------- the auth method
def test_ticket_auth_transport_kwargs(monkeypatch):
    seen = {}

    def fake_acquire(realm, user, password, nt_hash, keytab, ccache, kdc, dns_server, use_keytab, timeout,
                     aes_key=None):
        seen.update(realm=realm, user=user, password=password, kdc=kdc)
        return _kdc.KerberosCredentials(user, realm, {'tgt': 1}, 'password', ('127.0.0.11', 88))

    def fake_ticket(creds, ca_host, kdc=None, dns_server=None, spn=None, timeout=10):
        seen['ca_host'] = ca_host
        return 'HOST/%s' % ca_host, {'tgs': 1}
    monkeypatch.setattr(k, 'acquire_credentials', fake_acquire)
    monkeypatch.setattr(_kdc, 'ca_service_ticket', fake_ticket)
    auth = k.KerberosTicketAuth('ca1.lab.adcs.test', user='LAB.ADCS.TEST\\enroller', password='pw')
    assert 'pw' not in repr(auth) and 'pw' not in auth.describe()
    kw = auth.transport_kwargs()
    assert kw == {'username': 'enroller', 'password': '', 'domain': REALM, 'lmhash': '', 'nthash': '', 'aesKey': '',
                  'TGT': {'tgt': 1}, 'TGS': {'tgs': 1}, 'doKerberos': True, 'kdcHost': '127.0.0.11'}
    assert seen == {'realm': REALM, 'user': 'enroller', 'password': 'pw', 'kdc': None, 'ca_host': 'ca1.lab.adcs.test'}
    assert auth.principal == 'enroller@LAB.ADCS.TEST' and auth.kind == 'kerberos'
    assert k.KerberosTicketAuth('ca1', user='WEB$@lab.adcs.test', keytab='/k').source() == 'keytab'
    assert k.KerberosTicketAuth('ca1').source() == 'ccache'


def test_core_kerberos_auth_delegates_with_the_session_host(monkeypatch):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _auth
    seen = []

    def fake_acquire(self, ca_host=None):
        ca_host = ca_host or self.ca_host
        if self.service_ticket is not None and ca_host == self.ca_host:
            return self
        seen.append(ca_host)
        self.credentials = _kdc.KerberosCredentials('enroller', REALM, {'tgt': 1}, 'password', ('127.0.0.11', 88))
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


def test_nothing_given_falls_back_to_the_machine_keytab(tmp_path, monkeypatch):
    keytab = tmp_path / 'krb5.keytab'
    keytab.write_bytes(make_keytab([('WEB01$', REALM, 4, 18, b'm' * 32)]))
    monkeypatch.delenv('KRB5CCNAME', raising=False)
    monkeypatch.setenv('KRB5_CLIENT_KTNAME', 'FILE:%s' % keytab)
    monkeypatch.setattr(_ccache, 'ccache_path', lambda ccache: str(tmp_path / 'no-such-ccache'))
    monkeypatch.setattr(_principals, 'machine_account', lambda hostname=None: 'WEB01$')
    monkeypatch.setattr(_kdc, 'as_exchange', lambda user, realm, kdcs, **kw: ({'KDC_REP': b''}, kdcs[0]))
    creds = k.acquire_credentials(kdc='127.0.0.11')
    assert creds.principal == 'WEB01$@LAB.ADCS.TEST' and creds.source == 'keytab'
    keytab.unlink()
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(kdc='127.0.0.11')
    assert 'No Kerberos credentials' in str(info.value) and 'kinit' in str(info.value)
