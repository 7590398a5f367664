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


class ServicesConn(FakeConn):
    """FakeConn whose enrollment services carry nTSecurityDescriptors (the CA's Request Certificates)."""

    def __init__(self, services, **kwargs):
        FakeConn.__init__(self, **kwargs)
        self.services = services
        self.searched = []

    def search(self, base, search_filter, attributes, scope='SUBTREE', sd_flags=None, **_kwargs):
        self.searched.append((base, search_filter, scope, sd_flags))
        if self.fail:
            raise LdapError(self.fail)
        return [{'dn': 'CN=%s,%s' % (name, base), 'attributes': dict({'cn': [name.encode()]},
                                                                     **({'nTSecurityDescriptor': [sd]} if sd else {}))}
                for name, sd in self.services]


def test_ca_request_certificates_per_ca_and_per_publishing_ca():
    """The enrollment service's DACL is the CA's Request Certificates permission: an allowed CA, a CA that denies
    the principal (deny before the Authenticated Users allow), and one whose descriptor could not be read."""
    allow_au = sd_build.build_ace(s.ACCESS_ALLOWED_OBJECT_ACE_TYPE, 'S-1-5-11', s.ADS_RIGHT_DS_CONTROL_ACCESS, s.ENROLL)
    deny_user = sd_build.build_ace(s.ACCESS_DENIED_OBJECT_ACE_TYPE, USER, s.ADS_RIGHT_DS_CONTROL_ACCESS, s.ENROLL)
    conn = ServicesConn([('CA-OPEN', sd_build.build_security_descriptor([allow_au])),
                         ('CA-SHUT', sd_build.build_security_descriptor([deny_user, allow_au])),
                         ('CA-BLIND', None)], names={USER: 'LAB\\web'})
    cas = report.ca_acls(conn, 'CN=Configuration,DC=lab')
    assert conn.searched == [('CN=Enrollment Services,CN=Public Key Services,CN=Services,CN=Configuration,DC=lab',
                              '(objectClass=pKIEnrollmentService)', 'LEVEL', 0x04)]
    services = [{'name': 'CA-OPEN'}, {'name': 'CA-SHUT'}, {'name': 'CA-BLIND'}, {'name': 'CA-GONE'}]
    template = {'name': 'Web', 'cas': [{'name': 'CA-OPEN'}, {'name': 'CA-SHUT'}]}
    principal = {'name': 'web', 'sid': USER, 'token_sids': [USER, 'S-1-5-11']}
    report.evaluate_rights(conn, [(template, template_entry('Web'))], principal, services=services, cas=cas)
    assert services[0]['access'] == {'can_request': True, 'request_reason': 'allowed: ACE #0 grants Request '
                                     'Certificates (Enroll) to Authenticated Users (S-1-5-11) (extended right)'}
    assert services[1]['access'] == {'can_request': False, 'request_reason': 'denied: ACE #0 denies Request '
                                     'Certificates (Enroll) to LAB\\web (%s) (extended right)' % USER}
    assert services[2]['access'] == {'can_request': None, 'request_reason': 'nTSecurityDescriptor of the '
                                     'enrollment service could not be read'}
    assert services[3]['access'] == {'can_request': None, 'request_reason': 'the enrollment service was not found'}
    assert [ca['can_request'] for ca in template['cas']] == [True, False]
    # a principal that could not be evaluated, and a directory that refuses the search
    report.evaluate_ca_rights(services, [], cas, {'error': 'not found'}, {})
    assert services[0]['access'] == {'can_request': None, 'request_reason': 'not found'}
    failing = report.ca_acls(ServicesConn([], fail='busy'), 'CN=Configuration,DC=lab')
    report.evaluate_ca_rights(services, [], failing, principal, {})
    assert services[0]['access'] == {'can_request': None,
                                     'request_reason': 'cannot read the enrollment services: busy'}


def test_damaged_enrollment_service_descriptor_is_reported():
    cas = report.ca_acls(ServicesConn([('CA-BAD', b'\x01')]), 'CN=Configuration,DC=lab')
    services = [{'name': 'CA-BAD'}]
    report.evaluate_ca_rights(services, [], cas, {'sid': USER, 'token_sids': [USER]}, {})
    assert services[0]['access']['can_request'] is None
    assert services[0]['access']['request_reason'].startswith(
        'cannot parse the enrollment service nTSecurityDescriptor: ')


def test_kerberos_bind_identity_from_the_named_ccache(monkeypatch):
    """Samba has no WhoAmI: a Kerberos bind from a named FILE ccache is the ccache's client principal."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
    monkeypatch.setattr(_ccache, 'ccache_principal', lambda name: 'enroller@LAB.ADCS.TEST' if name == '/tmp/cc' else 1 / 0)
    entry = {'dn': 'CN=enroller,DC=lab', 'attributes': {'sAMAccountName': [b'enroller'],
                                                        'objectSid': [s.sid_to_bytes(USER)]}}
    conn = FakeConn(accounts={'enroller@LAB.ADCS.TEST': entry})
    found = report.resolve_principal(conn, {'auth': 'kerberos', 'kerberos_ccache': '/tmp/cc'})
    assert found['name'] == 'enroller' and found['source'] == 'bind'
    assert report.resolve_principal(conn, {'auth': 'kerberos', 'kerberos_ccache': '/tmp/other'})['error'] == \
        'cannot tell which account the module binds as; set principal'
