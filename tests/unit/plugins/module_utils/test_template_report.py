# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_template_report: template selection, principal resolution and rights evaluation (the module test runs the whole
report through wcce_template_info against an in-memory directory)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import LdapError
from ansible_collections.adcs.enrollment.plugins.module_utils import _security as s
from ansible_collections.adcs.enrollment.plugins.module_utils import _template_report as report
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import security as sd_build

DOM = 'S-1-5-21-1-2-3'
USER = DOM + '-1105'


class FakeConn(object):
    default_nc = 'DC=lab'

    def __init__(self, whoami=None, accounts=None, names=None, fail=None):
        self._whoami = whoami
        self.accounts = accounts or {}
        self.names = names or {}
        self.fail = fail
        self.resolved = []

    def whoami(self):
        return self._whoami

    def find_account(self, wanted):
        if self.fail:
            raise LdapError(self.fail)
        return self.accounts.get(wanted)

    def account_token(self, entry):
        return [USER, s.EVERYONE], []

    def resolve_sids(self, sids):
        self.resolved.append(list(sids))
        return dict((sid, self.names[sid]) for sid in sids if sid in self.names)


def template_entry(name, sd=None):
    attrs = {'cn': [name.encode()], 'msPKI-Template-Schema-Version': [b'2']}
    if sd is not None:
        attrs['nTSecurityDescriptor'] = [sd]
    return {'dn': 'CN=%s,CN=Certificate Templates' % name, 'attributes': attrs}


def test_principal_from_option_bind_identity_or_error():
    entry = {'dn': 'CN=web,DC=lab', 'attributes': {'sAMAccountName': [b'web'], 'objectSid': [s.sid_to_bytes(USER)]}}
    conn = FakeConn(whoami='LAB\\web', accounts={'LAB\\web': entry})
    assert report.resolve_principal(conn, {}) == {'name': 'web', 'distinguished_name': 'CN=web,DC=lab', 'sid': USER,
                                                  'token_sids': [USER, s.EVERYONE], 'source': 'bind'}
    assert report.resolve_principal(conn, {'principal': 'nobody'}) == {
        'source': 'principal', 'name': 'nobody', 'error': 'account nobody not found in DC=lab'}
    assert report.resolve_principal(FakeConn(), {})['error'].startswith('cannot tell which account')
    assert report.resolve_principal(FakeConn(fail='busy'), {'principal': 'x'})['error'] == 'busy'


def test_select_templates_filters_sorts_and_keeps_undecodable_ones():
    entries = [template_entry('Zeta'), template_entry('alpha'), template_entry('Other')]
    services = [{'name': 'CA', 'dns_host_name': 'ca.lab', 'templates': ['alpha'], 'certificate_subject': None,
                 'certificate_not_after': None, 'certificate_sha256_fingerprint': None, 'certificate': None}]
    decoded, matched = report.select_templates(entries, services, {}, ['ALPHA', 'zeta', 'none'], include_raw=False)
    assert [t['name'] for t, _e in decoded] == ['alpha', 'Zeta'] and matched == set(['ALPHA', 'zeta'])
    assert decoded[0][0]['published'] is True and decoded[1][0]['cas'] == []
    assert 'raw' not in decoded[0][0]
    decoded, _m = report.select_templates(entries, services, {}, [], published_only=True)
    assert [t['name'] for t, _e in decoded] == ['alpha'] and 'raw' in decoded[0][0]


def test_rights_access_and_damaged_descriptors():
    sd = sd_build.build_security_descriptor(
        [sd_build.build_ace(s.ACCESS_ALLOWED_OBJECT_ACE_TYPE, USER, s.ADS_RIGHT_DS_CONTROL_ACCESS, s.ENROLL)],
        owner=DOM + '-512')
    decoded = [({'name': 'Good'}, template_entry('Good', sd)), ({'name': 'Bad'}, template_entry('Bad', b'\x01')),
               ({'name': 'None'}, template_entry('None'))]
    principal = {'name': 'web', 'sid': USER, 'token_sids': [USER]}
    conn = FakeConn(names={USER: 'LAB\\web'})
    report.evaluate_rights(conn, decoded, principal)
    good, bad, none = [t for t, _e in decoded]
    assert good['owner'] == DOM + '-512' and conn.resolved == [[USER]]
    assert good['rights']['enroll']['allowed'][0]['name'] == 'LAB\\web'
    assert good['access']['can_enroll'] is True and good['access']['can_autoenroll'] is False
    assert bad['rights'] is None and bad['access']['can_enroll'] is None
    assert bad['access']['reason'].startswith('cannot parse nTSecurityDescriptor')
    assert none['access']['reason'] == 'nTSecurityDescriptor could not be read'
    # without name resolution the domain's well-known RIDs are still named; a failed principal explains itself
    decoded = [({'name': 'Good'}, template_entry('Good', sd))]
    report.evaluate_rights(conn, decoded, {'error': 'not found', 'name': 'x'}, resolve_names=False)
    assert decoded[0][0]['access'] == {'principal': 'x', 'can_enroll': None, 'reason': 'not found',
                                       'can_autoenroll': None, 'autoenroll_reason': 'not found'}
