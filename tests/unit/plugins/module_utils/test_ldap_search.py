# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LdapReader (through AdConnection on a mocked ldap3 Connection): paged searches, SD flags, bounds, accounts, tokens."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

ldap3 = pytest.importorskip('ldap3')

from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap_search
from ansible_collections.adcs.enrollment.plugins.module_utils._security import sid_to_bytes
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ldap import (
    BASE, CONFIG, DOMAIN_SID, FakeConnection, make,
)


@pytest.fixture(autouse=True)
def _reset():
    FakeConnection.instances = []
    yield


# ------------------------------------------------------------------------------------------------------------
# searches
# ------------------------------------------------------------------------------------------------------------

def test_paged_search_follows_cookies_and_sends_sd_flags():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]
    base = 'CN=Certificate Templates,' + CONFIG
    fake.pages[(base, None)] = ([('CN=A,' + base, {'cn': [b'A'], 'NTSECURITYDESCRIPTOR': [b'\x01']})], b'page2')
    fake.pages[(base, b'page2')] = ([('CN=B,' + base, {'cn': [b'B']})], b'')
    found = conn.search(base, '(objectClass=pKICertificateTemplate)', ['cn', 'nTSecurityDescriptor'], scope='LEVEL',
                        sd_flags=0x07, page_size=1)
    assert [e['dn'] for e in found] == ['CN=A,' + base, 'CN=B,' + base]
    assert found[0]['attributes'] == {'cn': [b'A'], 'nTSecurityDescriptor': [b'\x01']}  # names in the case asked for
    searches = [c for c in fake.calls if c[0] == 'search' and c[1] == base]
    assert [c[7] for c in searches] == [None, b'page2']
    assert all(c[6] == 1 for c in searches)
    assert searches[0][3] == ldap3.LEVEL
    control = searches[0][5][0]
    assert str(control['controlType']) == '1.2.840.113556.1.4.801'
    assert bool(control['criticality']) is True
    assert bytes(control['controlValue']) == b'\x30\x03\x02\x01\x07'  # BER SEQUENCE { INTEGER 7 } (OWNER|GROUP|DACL)


def test_search_error_is_reported():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]

    def failing(**kwargs):
        fake.result = {'result': 50, 'description': 'insufficientAccessRights', 'message': 'no'}
        fake.response = []
    fake.search = failing
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(x=y)', ['cn'])
    assert 'insufficientAccessRights' in str(exc.value)


def test_search_without_connection():
    with pytest.raises(_ldap.LdapError):
        make(username='u', password='p').search(BASE, '(x=y)', ['cn'])


def test_whoami_forms():
    conn = make(username='u', password='p').connect()
    assert conn.whoami() == 'LAB\\enroller'
    fake = FakeConnection.instances[0]
    fake.extend.standard.who_am_i = lambda: b'dn:CN=x,' + BASE.encode()
    assert conn.whoami() == 'CN=x,' + BASE

    def unsupported():
        raise ldap3.core.exceptions.LDAPExtensionError('not supported')
    fake.extend.standard.who_am_i = unsupported
    assert conn.whoami() is None


def test_find_account_and_token():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]
    user_dn = 'CN=enroller,CN=Users,' + BASE
    user_sid = DOMAIN_SID + '-1105'
    fake.pages[(BASE, None)] = ([(user_dn, {'sAMAccountName': [b'enroller'], 'objectSid': [sid_to_bytes(user_sid)]})], b'')
    fake.entries[user_dn] = {'objectSid': [sid_to_bytes(user_sid)],
                             'tokenGroups': [sid_to_bytes(DOMAIN_SID + '-513'), sid_to_bytes(DOMAIN_SID + '-1108')]}
    entry = conn.find_account('LAB\\enroller')
    assert entry['dn'] == user_dn
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(sAMAccountName=enroller)' in flt
    sids, groups = conn.account_token(entry)
    assert sids == [user_sid, DOMAIN_SID + '-513', DOMAIN_SID + '-1108', 'S-1-1-0', 'S-1-5-2', 'S-1-5-11', 'S-1-5-15']  # a network logon's token
    assert groups == [DOMAIN_SID + '-513', DOMAIN_SID + '-1108']
    conn.find_account(user_sid)
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(objectSid=\\01\\05\\00\\00\\00\\00\\00\\05\\15\\00' in flt
    conn.find_account('WEB01')
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(sAMAccountName=WEB01$)' in flt
    conn.find_account('enroller@lab.adcs.test')
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(userPrincipalName=enroller@lab.adcs.test)' in flt
    assert conn.find_account(user_dn)['dn'] == user_dn


def test_resolve_sids():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]
    group_sid = DOMAIN_SID + '-1108'
    fake.pages[(BASE, None)] = ([('CN=ADCS-Enrollers,CN=Users,' + BASE,
                                  {'objectSid': [sid_to_bytes(group_sid)], 'sAMAccountName': [b'ADCS-Enrollers']})], b'')
    names = conn.resolve_sids([group_sid, 'S-1-5-11', None])
    assert names == {group_sid: 'ADCS-Enrollers'}
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert flt.startswith('(|(objectSid=') and 'S-1-5-11' not in flt


def _endless_pages(fake, base, cookie_of):
    """Every page answers one entry and the cookie cookie_of(page number)."""
    counter = {'n': 0}

    def search(search_base, search_filter, search_scope, attributes, controls=None, paged_size=None,
               paged_cookie=None):
        counter['n'] += 1
        n = counter['n']
        fake.response = [{'type': 'searchResEntry', 'dn': 'CN=%d,%s' % (n, base), 'raw_attributes': {'cn': [b'x']}}]
        fake.result = {'result': 0, 'description': 'success',
                       'controls': {_ldap_search.PAGED_RESULTS_OID: {'value': {'size': 0, 'cookie': cookie_of(n)}}}}
        return True
    fake.search = search
    return counter


def test_paging_is_bounded_in_pages():
    conn = make(username='u', password='p').connect()
    counter = _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'c%d' % n)
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'], max_pages=50)
    assert str(exc.value) == 'search of %s (cn=*) needs more than 50 pages: stopped' % BASE
    assert counter['n'] == 50
    counter = _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'c%d' % n)
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'])
    assert counter['n'] == _ldap_search.MAX_PAGES
    assert 'needs more than %d pages' % _ldap_search.MAX_PAGES in str(exc.value)


def test_paging_is_bounded_in_entries():
    conn = make(username='u', password='p').connect()
    _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'c%d' % n)
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'], max_entries=10)
    assert str(exc.value) == 'search of %s (cn=*) returned more than 10 entries: stopped' % BASE


def test_paging_cookie_size_is_bounded():
    conn = make(username='u', password='p').connect()
    _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'x' * (_ldap_search.MAX_COOKIE_BYTES + 1))
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'])
    assert str(exc.value) == ('search of %s (cn=*): the server sent a paging cookie of %d bytes (at most %d): stopped'
                              % (BASE, _ldap_search.MAX_COOKIE_BYTES + 1, _ldap_search.MAX_COOKIE_BYTES))


def test_paging_cookie_repeated_is_refused():
    conn = make(username='u', password='p').connect()
    counter = _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'same')
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'])
    assert str(exc.value) == 'search of %s (cn=*): the server sent the same paging cookie twice: stopped' % BASE
    assert counter['n'] == 2
