# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_directory: CA selection from the options or the enrollment services in Active Directory."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _directory, _errors, _ldap
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    FakeDirectory,
    SERVICES,
)


def test_select_cas_by_template_and_name():
    d = FakeDirectory(SERVICES)
    assert [t.name for t in _directory.select_cas('WebServer', directory=d)] == ['CA-ONE', 'CA-TWO']
    assert [t.name for t in _directory.select_cas('webserver', ca_name='ca-two', directory=d)] == ['CA-TWO']
    with pytest.raises(_errors.InvalidInput, match='No enterprise CA publishes the certificate template EFS'):
        _directory.select_cas('EFS', directory=d)
    with pytest.raises(_errors.InvalidInput, match='No enterprise CA named NOPE found'):
        _directory.select_cas('WebServer', ca_name='NOPE', directory=d)
    with pytest.raises(_errors.InvalidInput, match='Give ca_host and ca_name, or domain'):
        _directory.select_cas('WebServer', ca_host='x')
    [only] = _directory.select_cas('WebServer', ca_host='127.0.0.12', ca_name='LAB-CA')
    assert (only.name, only.address, only.source) == ('LAB-CA', '127.0.0.12', 'options')


def test_ca_name_matches_the_display_name_too():
    """Windows tools show an enrollment service's display name; naming it finds the CA, addressed by its CN."""
    services = [dict(SERVICES[1], display_name='Contoso Issuing CA 2'), SERVICES[0]]
    d = FakeDirectory(services)
    [target] = _directory.select_cas('WebServer', ca_name='contoso issuing ca 2', directory=d)
    assert target.name == 'CA-TWO'


class FakeConnection(object):
    configuration_nc = 'CN=Configuration,DC=lab,DC=adcs,DC=test'

    def __init__(self, entries):
        self.entries = entries
        self.searches = []

    def search(self, base, flt, attributes, scope='SUBTREE', **kw):
        self.searches.append((base, flt))
        return self.entries

    def close(self):
        pass


def test_template_renewal_period_is_read_once_with_an_escaped_filter():
    six_weeks = (-6 * 7 * 86400 * 10 ** 7).to_bytes(8, 'little', signed=True)
    conn = FakeConnection([{'dn': 'x', 'attributes': {'cn': ['Web*'], 'pKIOverlapPeriod': [six_weeks]}}])
    d = _directory.Directory(lambda: conn)
    assert d.template_renewal_days('Web*(x)') == 42.0 and d.template_renewal_days('WEB*(X)') == 42.0
    assert conn.searches == [('CN=Certificate Templates,CN=Public Key Services,CN=Services,' + conn.configuration_nc,
                              r'(&(objectClass=pKICertificateTemplate)(cn=Web\2a\28x\29))')]
    assert d.error is None


def test_an_unreadable_directory_says_why_and_falls_back():
    def connect():
        raise _errors.WcceError('Reading Active Directory failed: no DC')

    d = _directory.Directory(connect)
    assert d.template_renewal_days('WebServer') is None
    assert d.error.startswith('the renewal period of template WebServer could not be read from Active Directory: '
                              'Reading Active Directory failed: no DC')


def test_no_directory_without_domain_or_domain_controller():
    assert _directory.from_params({'domain': None, 'domain_controller': None}) is None
    assert isinstance(_directory.from_params({'domain': 'lab.adcs.test'}), _directory.Directory)


@pytest.mark.parametrize('error, message', [
    (_ldap.LdapError('no DC answered'), 'Reading Active Directory failed: no DC answered'),
    (_errors.MissingLibrary('no ldap3', library='ldap3'), 'The Python library "ldap3" is required to read Active '
                                                          'Directory'),
])
def test_directory_failures_say_what_to_do(monkeypatch, error, message):
    def connector(params):
        def connect(domain_controller=None):
            raise error
        return connect

    monkeypatch.setattr(_auth, 'ldap_connector', connector)
    d = _directory.from_params({'domain': 'lab.adcs.test'})
    with pytest.raises(_errors.WcceError) as err:
        d.conn  # pylint: disable=pointless-statement
    assert err.value.summary == message and 'ca_host and ca_name' in err.value.remedy


# ---- the enrollment policy cache (_policy_cache) ----
class CountingDirectory(object):
    """What Active Directory answers, counted (the reads of _directory.Directory replaced)."""

    def __init__(self, monkeypatch, services):
        self.services = services
        self.reads = []
        monkeypatch.setattr(_directory, 'list_enrollment_services', self._services)
        monkeypatch.setattr(_directory.Directory, '_read_template', self._template)

    def _services(self, conn, nc):
        self.reads.append('services')
        return [dict(s) for s in self.services]

    def _template(self, template):
        self.reads.append('template ' + template)
        return {'name': template, 'renewal_period': {'seconds': 42 * 86400}, 'requirements': {'key': None}}


def cached_directory(tmp_path, connects):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _policy_cache

    def connect():
        connects.append(1)
        return FakeConnection([])
    return _directory.Directory(connect, _policy_cache.PolicyCache(str(tmp_path / 'cache'), {'domain': 'x'}))


def test_a_warm_policy_cache_answers_without_ldap(tmp_path, monkeypatch):
    ad, connects = CountingDirectory(monkeypatch, SERVICES), []
    first = cached_directory(tmp_path, connects)
    assert [t.name for t in _directory.select_cas('WebServer', directory=first)] == ['CA-ONE', 'CA-TWO']
    assert first.template_info('WebServer')['name'] == 'WebServer' and first.template_renewal_days('WebServer') == 42
    assert not first.from_cache and ad.reads == ['services', 'template WebServer'] and len(connects) == 1
    first.close()
    second = cached_directory(tmp_path, connects)
    assert [t.name for t in _directory.select_cas('WebServer', directory=second)] == ['CA-ONE', 'CA-TWO']
    assert second.template_info('webserver')['name'] == 'WebServer' and second.template_renewal_days('WebServer') == 42
    assert second.from_cache and len(ad.reads) == 2 and len(connects) == 1   # no LDAP connection at all
    assert second.refresh() and not second.from_cache
    assert second.template_info('WebServer') is not None and ad.reads[-1] == 'template WebServer'
    assert not second.refresh()   # nothing cached left to forget


def test_a_template_published_since_the_cache_was_written_is_found(tmp_path, monkeypatch):
    ad, connects = CountingDirectory(monkeypatch, SERVICES), []
    first = cached_directory(tmp_path, connects)
    first.services()
    first.close()
    ad.services = [dict(SERVICES[2], templates=['Machine', 'EFS'])]
    second = cached_directory(tmp_path, connects)
    [target] = _directory.select_cas('EFS', directory=second)
    assert target.name == 'CA-THREE' and ad.reads == ['services', 'services']
    ad.services = SERVICES
    with pytest.raises(_errors.InvalidInput, match='No enterprise CA publishes the certificate template Nope'):
        _directory.select_cas('Nope', directory=cached_directory(tmp_path, connects))
