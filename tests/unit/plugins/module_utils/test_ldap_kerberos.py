# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kerberos for LDAP binds: gssapi credentials from keytab/ccache, the SPN host, the default ccache check."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

import pytest

ldap3 = pytest.importorskip('ldap3')

from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos as k
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap_kerberos
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.kerberos import make_credentials
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ldap import FakeConnection, make, FakeGssapi


@pytest.fixture(autouse=True)
def _reset():
    FakeConnection.instances = []
    yield


def _own_tickets(monkeypatch):
    """Record what own_credentials asks _kerberos and _ccache for (no KDC)."""
    calls = []

    def acquire(**kwargs):
        calls.append(('acquire', kwargs))
        return make_credentials()

    def write_ccache(creds, path, **kwargs):
        calls.append(('write', kwargs))
        with open(path, 'wb') as handle:
            handle.write(b'\x05\x04')
        return 'FILE:%s' % path

    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap_kerberos, 'gssapi', FakeGssapi)
    monkeypatch.setattr(k, 'acquire_credentials', acquire)
    monkeypatch.setattr(_ccache, 'write_ccache', write_ccache)
    FakeGssapi.created = []
    return calls


def test_kerberos_bind_with_keytab_gets_its_own_tickets(monkeypatch):
    """A keytab needs no krb5.conf: the TGT from the keytab and the ldap/<DC> ticket come from the DC we bind to
    (the KDC of the DCOM path), into a private ccache that gssapi binds with and that is gone afterwards."""
    calls = _own_tickets(monkeypatch)
    make(auth='kerberos', username='LABHOST01$', kerberos_keytab='/etc/labhost01.keytab').connect()
    fake = FakeConnection.instances[0]
    assert fake.kwargs['authentication'] == ldap3.SASL and fake.kwargs['sasl_mechanism'] == ldap3.KERBEROS
    target, authz, creds = fake.sasl_credentials
    assert target == 'dc1.lab.adcs.test' and authz is None and isinstance(creds, FakeGssapi.Credentials)
    acquire = calls[0][1]
    assert (acquire['keytab'], acquire['user'], acquire['realm'], acquire['ccache']) == (
        '/etc/labhost01.keytab', 'LABHOST01$', 'LAB.ADCS.TEST', None)
    assert acquire['kdc'] == 'dc1.lab.adcs.test' and acquire['password'] is None
    assert calls[1][1]['spns'] == ['ldap/dc1.lab.adcs.test']
    store = FakeGssapi.created[-1]['store']
    assert FakeGssapi.created[-1]['name'] is None and store['ccache'].startswith('FILE:')
    assert not os.path.exists(store['ccache'][5:]), 'the private ccache is removed after the bind'
    assert fake.calls[:2] == ['open', 'bind']


def test_kerberos_spn_host_from_root_dse_when_dc_is_an_address(monkeypatch):
    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap_kerberos, 'gssapi', FakeGssapi)

    def no_reverse(addr):
        raise OSError('no PTR')
    monkeypatch.setattr(_ldap.socket, 'gethostbyaddr', no_reverse)
    make(auth='kerberos', username='LAB\\enroller', domain_controller='127.0.0.11').connect()
    fake = FakeConnection.instances[0]
    assert fake.sasl_credentials[0] == 'dc1.lab.adcs.test'  # the rootDSE's dnsHostName, read before the bind
    first_search = [c for c in fake.calls if c[0] == 'search'][0]
    assert fake.calls.index(first_search) < fake.calls.index('bind')
    assert FakeGssapi.created[-1]['name'] == 'enroller@LAB.ADCS.TEST'


def test_kerberos_spn_host_by_reverse_dns(monkeypatch):
    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap_kerberos, 'gssapi', FakeGssapi)
    monkeypatch.setattr(_ldap.socket, 'gethostbyaddr', lambda addr: ('dc7.lab.adcs.test', [], [addr]))
    make(auth='kerberos', domain_controller='10.0.0.7').connect()
    assert FakeConnection.instances[0].sasl_credentials[0] == 'dc7.lab.adcs.test'


def test_kerberos_bind_with_ccache_gets_its_own_service_ticket(monkeypatch):
    """A FILE ccache needs no krb5.conf either: its TGT gets the ldap/<DC> ticket from the DC; other cache types
    (KEYRING:, KCM:) are left to libkrb5."""
    calls = _own_tickets(monkeypatch)
    make(auth='kerberos', kerberos_ccache='FILE:/tmp/krb5cc_0').connect()
    acquire = calls[0][1]
    assert (acquire['ccache'], acquire['keytab'], acquire['user']) == ('/tmp/krb5cc_0', None, None)
    assert calls[1][1]['spns'] == ['ldap/dc1.lab.adcs.test']
    make(auth='kerberos', kerberos_ccache='KEYRING:persistent:0').connect()
    assert len(calls) == 2
    assert FakeGssapi.created[-1] == {'name': None, 'usage': 'initiate', 'store': {'ccache': 'KEYRING:persistent:0'}}


def test_kerberos_without_gssapi(monkeypatch):
    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', False)
    with pytest.raises(_ldap.LdapError) as exc:
        make(auth='kerberos').connect()
    assert 'gssapi' in str(exc.value)


def test_kerberos_env():
    settings = _ldap.LdapSettings(domain='x', kerberos_ccache='/tmp/cc', kerberos_keytab='/k')
    env = {}
    _ldap_kerberos.apply_kerberos_env(settings, env)
    assert env == {'KRB5CCNAME': '/tmp/cc', 'KRB5_CLIENT_KTNAME': '/k'}


def test_kerberos_default_ccache_is_checked_and_pinned(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap_kerberos, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    cache = tmp_path / 'krb5cc'
    cache.write_bytes(b'\x05\x04')
    cache.chmod(0o600)
    monkeypatch.setenv('KRB5CCNAME', 'FILE:%s' % cache)
    make(auth='kerberos', username='enroller').connect()
    assert FakeGssapi.created[-1]['store'] == {'ccache': 'FILE:%s' % cache}


def test_kerberos_default_ccache_writable_by_others_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap_kerberos, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    cache = tmp_path / 'krb5cc'
    cache.write_bytes(b'\x05\x04')
    cache.chmod(0o666)
    monkeypatch.setenv('KRB5CCNAME', str(cache))
    with pytest.raises(_ldap.LdapError) as exc:
        make(auth='kerberos', username='enroller').connect()
    assert str(exc.value) == (
        'could not connect to a domain controller: dc1.lab.adcs.test: '
        'auth=kerberos: The default credential cache %s is not used: it is writable by group or others (mode 0666). '
        'What to do: Remove it and run kinit again as this user, or name a credential cache explicitly '
        '(kerberos_ccache).' % cache)
    assert FakeGssapi.created == [] and FakeConnection.instances == [], 'refused before gssapi and any traffic'


def test_kerberos_default_ccache_of_another_user_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap_kerberos, 'gssapi', FakeGssapi)
    cache = tmp_path / 'krb5cc'
    cache.write_bytes(b'\x05\x04')
    cache.chmod(0o600)
    monkeypatch.setenv('KRB5CCNAME', str(cache))
    monkeypatch.setattr(_ldap_kerberos.os, 'geteuid', lambda: 4242)
    with pytest.raises(_ldap.LdapError) as exc:
        make(auth='kerberos', username='enroller').connect()
    assert 'is not used: it is owned by uid %d, not by the user running the module (uid 4242)' % _ldap_kerberos.os.getuid() \
        in str(exc.value)


def test_kerberos_named_ccache_and_keyring_default_skip_the_file_check(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap_kerberos, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    monkeypatch.setenv('KRB5CCNAME', 'KEYRING:persistent:1000')
    make(auth='kerberos', username='enroller').connect()
    assert FakeGssapi.created[-1]['store'] is None      # gssapi's own default (a kernel keyring is the user's)
    calls = _own_tickets(monkeypatch)
    cache = tmp_path / 'named'
    cache.write_bytes(b'')
    cache.chmod(0o666)                                  # named by the user: their choice, not checked
    make(auth='kerberos', username='enroller', kerberos_ccache=str(cache)).connect()
    assert calls[0][1]['ccache'] == str(cache)


def test_ldap_private_ccache_removed_when_writing_it_fails(monkeypatch):
    made = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    def write_ccache(creds, path, **kwargs):
        with open(path, 'wb') as handle:     # half written, then the TGS exchange fails
            handle.write(b'\x05\x04')
        raise k.KerberosFailure('Getting a service ticket for ldap/dc1.lab.adcs.test failed')

    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(tempfile, 'mkdtemp', mkdtemp)
    monkeypatch.setattr(k, 'acquire_credentials', lambda **kw: make_credentials())
    monkeypatch.setattr(_ccache, 'write_ccache', write_ccache)
    conn = _ldap.AdConnection(_ldap.LdapSettings(domain='lab.adcs.test', username='enroller', password='pw',
                                                 auth='kerberos'))
    with pytest.raises(_ldap.LdapError) as info:
        _ldap_kerberos.own_credentials(conn.settings, 'dc1.lab.adcs.test', '127.0.0.11')
    assert 'Kerberos for LDAP failed: Getting a service ticket for ldap/dc1.lab.adcs.test failed' in str(info.value)
    assert len(made) == 1 and not os.path.exists(made[0])
    assert os.path.basename(made[0]).startswith('adcs-ldap-krb5-')
