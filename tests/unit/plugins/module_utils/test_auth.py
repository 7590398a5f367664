# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _auth as a
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors as e
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals

NT = '8846f7eaee8fb117ad06bdd830b7586c'


@pytest.mark.parametrize('user, domain, expected', [
    ('enroller', 'LAB', ('enroller', 'LAB')),
    ('LAB\\enroller', None, ('enroller', 'LAB')),
    ('enroller@lab.adcs.test', None, ('enroller', 'lab.adcs.test')),
    ('LAB\\enroller', 'OTHER', ('enroller', 'OTHER')),
    ('enroller', None, ('enroller', '')),
])
def test_auth_method_user_and_domain(user, domain, expected):
    """An explicit domain wins over the name's own (the options are parsed by _principals)."""
    auth = a.PasswordAuth(user, domain, 'pw')
    assert (auth.user, auth.domain) == expected


def test_password_auth_hides_secret():
    auth = a.PasswordAuth('enroller', 'LAB', 'Sup3r$ecret')
    assert 'Sup3r$ecret' not in repr(auth) and 'Sup3r$ecret' not in str(auth)
    assert repr(auth) == "PasswordAuth(user='enroller', domain='LAB', password=<hidden>)"
    assert auth.describe() == 'password authentication as LAB\\enroller'
    kw = auth.transport_kwargs()
    assert kw['password'] == 'Sup3r$ecret' and kw['username'] == 'enroller' and kw['domain'] == 'LAB'
    assert kw['doKerberos'] is False
    with pytest.raises(e.InvalidInput):
        a.PasswordAuth('enroller', 'LAB', '')


def test_nt_hash_auth():
    auth = a.NtHashAuth('enroller', 'LAB', 'aad3b435b51404eeaad3b435b51404ee:' + NT.upper())
    assert NT not in repr(auth) and NT.upper() not in repr(auth)
    kw = auth.transport_kwargs()
    assert kw['nthash'] == NT and kw['password'] == ''
    for bad in ('', 'xyz', NT[:-1]):
        with pytest.raises(e.InvalidInput):
            a.NtHashAuth('enroller', 'LAB', bad)


def test_kerberos_auth():
    auth = a.KerberosAuth('enroller', 'LAB.ADCS.TEST', password='pw', kdc_host='127.0.0.11')
    assert 'pw' not in repr(auth).replace('password=<hidden>', '')
    kw = auth.transport_kwargs()
    assert kw['doKerberos'] is True and kw['kdcHost'] == '127.0.0.11'
    with pytest.raises(e.InvalidInput):
        a.KerberosAuth('enroller', None, password='pw')
    with pytest.raises(e.InvalidInput):
        a.KerberosAuth('enroller', 'LAB.ADCS.TEST', aes_key='short')


def test_auth_from_params():
    assert isinstance(a.auth_from_params('u', 'D', password='p'), a.PasswordAuth)
    assert isinstance(a.auth_from_params('u', 'D', nt_hash=NT), a.NtHashAuth)
    assert isinstance(a.auth_from_params('u', 'D', password='p', method='kerberos'), a.KerberosAuth)
    with pytest.raises(e.InvalidInput):
        a.auth_from_params('u', 'D', password='p', method='magic')
    with pytest.raises(e.InvalidInput):
        a.auth_from_params('', 'D', password='p')


# ---------------------------------------------------------------- the option adapter: DCOM
def test_dcom_auth_password_and_nt_hash():
    auth = a.dcom_auth({'username': 'enroller@lab.adcs.test', 'password': 'pw', 'auth': 'password'})
    assert isinstance(auth, a.PasswordAuth) and (auth.user, auth.domain) == ('enroller', 'lab.adcs.test')
    auth = a.dcom_auth({'username': 'enroller', 'domain': 'LAB', 'nt_hash': 'a' * 32, 'auth': 'ntlm'})
    assert isinstance(auth, a.NtHashAuth) and auth.principal == 'LAB\\enroller'
    assert 'aaaa' not in repr(auth)
    auth = a.dcom_auth({'username': 'LAB\\enroller', 'domain': 'lab.adcs.test', 'password': 'pw', 'auth': 'ntlm'})
    assert (auth.user, auth.domain) == ('enroller', 'LAB')        # the name's own domain wins over the option
    with pytest.raises(e.InvalidInput, match='username is required'):
        a.dcom_auth({'password': 'x'})
    with pytest.raises(e.InvalidInput, match='A password is required'):
        a.dcom_auth({'username': 'u@d'})


def test_dcom_auth_kerberos_honours_every_option():
    params = {'auth': 'kerberos', 'username': 'enroller', 'domain': 'lab.adcs.test', 'password': 'pw',
              'domain_controller': 'dc1.lab.adcs.test', 'kerberos_ccache': '/tmp/cc', 'kerberos_keytab': '/tmp/kt'}
    auth = a.dcom_auth(params)
    assert isinstance(auth, a.KerberosAuth) and (auth.user, auth.domain) == ('enroller', 'lab.adcs.test')
    assert auth.kdc_host == 'dc1.lab.adcs.test' and auth.dns_server == 'dc1.lab.adcs.test'
    assert auth.ccache == '/tmp/cc' and auth.keytab == '/tmp/kt'


def test_dcom_auth_kerberos_keytab_defaults_to_the_machine_account(monkeypatch):
    monkeypatch.setattr(_principals, 'machine_account', lambda hostname=None: 'WEB01$')
    auth = a.dcom_auth({'auth': 'kerberos', 'domain': 'lab.adcs.test', 'kerberos_keytab': '/etc/krb5.keytab'})
    assert (auth.user, auth.domain, auth.keytab) == ('WEB01$', 'lab.adcs.test', '/etc/krb5.keytab')


def test_dcom_auth_kerberos_ccache_names_the_principal(monkeypatch):
    seen = []
    monkeypatch.setattr(_ccache, 'ccache_principal', lambda path=None: seen.append(path) or 'enroller@LAB.ADCS.TEST')
    auth = a.dcom_auth({'auth': 'kerberos', 'kerberos_ccache': '/tmp/krb5cc_1000', 'domain': 'other.test'})
    assert seen == ['/tmp/krb5cc_1000']
    assert (auth.user, auth.domain, auth.ccache) == ('enroller', 'LAB.ADCS.TEST', '/tmp/krb5cc_1000')


# ---------------------------------------------------------------- the option adapter: LDAP
def test_ldap_settings_from_the_same_options():
    params = {'domain': 'lab.adcs.test', 'username': 'enroller', 'password': 'pw', 'auth': 'kerberos',
              'kerberos_ccache': '/tmp/cc', 'kerberos_keytab': '/tmp/kt', 'ldap_scheme': 'starttls',
              'timeout': 7, 'template': 'not a connection option'}
    settings = a.ldap_settings(params)
    assert isinstance(settings, _ldap.LdapSettings)
    assert (settings.domain, settings.auth, settings.kerberos_ccache, settings.kerberos_keytab) == \
        ('lab.adcs.test', 'kerberos', '/tmp/cc', '/tmp/kt')
    assert settings.ldap_scheme == 'starttls' and settings.timeout == 7 and settings.domain_controller is None
    assert a.ldap_settings(params, domain_controller='dc2.lab.adcs.test').domain_controller == 'dc2.lab.adcs.test'


def test_ldap_connect_and_connector(monkeypatch):
    opened = []

    class FakeAdConnection(object):
        def __init__(self, settings):
            self.settings = settings

        def connect(self):
            opened.append(self.settings.domain_controller)
            return self
    monkeypatch.setattr(_ldap, 'AdConnection', FakeAdConnection)
    monkeypatch.setattr(a._deps, 'HAS_LDAP3', True)
    monkeypatch.setitem(a._deps._STATUS, 'ldap3', (True, None))
    params = {'domain': 'lab.adcs.test', 'domain_controller': 'dc1.lab.adcs.test', 'username': 'u', 'password': 'p'}
    assert a.ldap_connect(params).settings.domain_controller == 'dc1.lab.adcs.test'
    connect = a.ldap_connector(params)
    assert opened == ['dc1.lab.adcs.test']
    connect()
    connect('dc9.lab.adcs.test')
    assert opened == ['dc1.lab.adcs.test', 'dc1.lab.adcs.test', 'dc9.lab.adcs.test']


def test_ldap_connect_without_ldap3(monkeypatch):
    monkeypatch.setitem(a._deps._STATUS, 'ldap3', (False, 'Traceback: No module named ldap3'))
    with pytest.raises(e.MissingLibrary) as info:
        a.ldap_connect({'domain': 'lab.adcs.test'})
    assert isinstance(info.value, e.AdcsError) and info.value.library == 'ldap3'
    assert 'ldap3' in str(info.value)


def test_has_directory():
    assert a.has_directory({'domain': 'lab.adcs.test'}) and a.has_directory({'domain_controller': 'dc1'})
    assert not a.has_directory({'domain': None, 'domain_controller': ''})
