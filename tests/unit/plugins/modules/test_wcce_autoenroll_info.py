# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_autoenroll_info end to end against an in-memory directory behind a fake ldap3 Connection (the real
AdConnection, template decoding, tokenGroups and SD evaluation run; only the socket is replaced)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('ldap3')
pytest.importorskip('cryptography')

from ansible_collections.adcs.enrollment.plugins.module_utils import _security as s
from ansible_collections.adcs.enrollment.plugins.modules import wcce_autoenroll_info
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import security as sd_build
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.templates import encode_period
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ldap_directory import (
    BASE, CONFIG, Directory, install_directory,
)

PKS = 'CN=Public Key Services,CN=Services,' + CONFIG
TEMPLATES = 'CN=Certificate Templates,' + PKS
DOM = 'S-1-5-21-100-200-300'
COMPUTERS, ADMINS, HOST = DOM + '-515', DOM + '-512', DOM + '-1106'
MACHINE_FLAGS = 0x20261           # CT_FLAG_MACHINE_TYPE among them
DNS_AS_CN_AND_DNS = 0x18000000


def _ace(kind, sid, right):
    ace_type = s.ACCESS_ALLOWED_OBJECT_ACE_TYPE if kind == 'allow' else s.ACCESS_DENIED_OBJECT_ACE_TYPE
    return sd_build.build_ace(ace_type, sid, s.ADS_RIGHT_DS_CONTROL_ACCESS, right)


def _sd(*extra):
    aces = list(extra) + [sd_build.build_ace(s.ACCESS_ALLOWED_ACE_TYPE, ADMINS, s.DS_FULL_CONTROL),
                          _ace('allow', COMPUTERS, s.ENROLL), _ace('allow', COMPUTERS, s.AUTOENROLL)]
    return sd_build.build_security_descriptor(aces, owner=ADMINS, group=ADMINS)


def _template(d, name, sd, flags=MACHINE_FLAGS, **attrs):
    values = dict(objectClass=['top', 'pKICertificateTemplate'], cn=name, displayName=name,
                  distinguishedName='CN=%s,%s' % (name, TEMPLATES), flags=flags,
                  pKIExpirationPeriod=encode_period(days=365), pKIOverlapPeriod=encode_period(days=42),
                  msPKI_Template_Schema_Version=2, msPKI_Cert_Template_OID='1.2.3.4.%d' % len(d.entries),
                  msPKI_Enrollment_Flag=0x20, msPKI_Private_Key_Flag=0, msPKI_Certificate_Name_Flag=DNS_AS_CN_AND_DNS,
                  msPKI_Minimal_Key_Size=2048, msPKI_RA_Signature=0, nTSecurityDescriptor=sd)
    values.update(attrs)
    d.add('CN=%s,%s' % (name, TEMPLATES), **values)


@pytest.fixture
def directory(monkeypatch):
    d = Directory()
    _template(d, 'Machine', _sd())
    _template(d, 'MachineV2', _sd(), msPKI_Supersede_Templates='Machine')
    _template(d, 'Agent', _sd(), msPKI_RA_Signature=1)
    _template(d, 'Denied', _sd(_ace('deny', HOST, s.AUTOENROLL)))
    _template(d, 'UserLike', _sd(), flags=0x1023A)
    _template(d, 'NotPublished', _sd())
    d.add('CN=LAB-CA,CN=Enrollment Services,' + PKS, objectClass=['top', 'pKIEnrollmentService'], cn='LAB-CA',
          dNSHostName='ca1.lab.adcs.test', certificateTemplates=['Machine', 'MachineV2', 'Agent', 'Denied', 'UserLike'])
    d.add('CN=WEB01,CN=Computers,' + BASE, objectClass=['top', 'person', 'user', 'computer'],
          sAMAccountName='WEB01$', objectSid=s.sid_to_bytes(HOST), tokenGroups=[s.sid_to_bytes(COMPUTERS)])
    return install_directory(monkeypatch, d)


CONN = {'domain': 'lab.adcs.test', 'domain_controller': 'dc1.lab.adcs.test', 'username': 'WEB01$', 'password': 'pw'}


def run(args, check_mode=False):
    return run_module(wcce_autoenroll_info.main, args, check_mode=check_mode)


def test_plan_from_the_directory(directory, tmp_path):
    out = run(dict(CONN, directory=str(tmp_path), settings={'*': {'notify': ['reload']}}), check_mode=True)
    assert not out.failed, out.result
    r = out.result
    assert r['changed'] is False and r['principal']['sid'] == HOST and r['connection'] == {}
    by = dict((t['name'], t) for t in r['templates'])
    assert (by['MachineV2']['action'], by['MachineV2']['reason_code']) == ('enroll', 'no_certificate')
    assert (by['Machine']['reason_code'], by['Machine']['superseded_by']) == ('superseded', 'MachineV2')
    assert by['Agent']['reason_code'] == 'ra_signatures'
    assert by['Denied']['reason_code'] == 'no_autoenroll_right'
    assert by['Denied']['reason'].startswith('denied: ACE #0 denies AutoEnroll')
    assert by['UserLike']['reason_code'] == 'user_template'
    assert 'NotPublished' not in by
    assert r['certificate_requests'] == [{'name': 'MachineV2', 'template': 'MachineV2', 'key_type': 'rsa',
                                          'key_size': 2048, 'reuse_key': True, 'notify': ['reload']}]


def test_principal_other_than_the_bind_account_skips_names_from_ad(directory, tmp_path):
    out = run(dict(CONN, username='svc', directory=str(tmp_path), principal='WEB01$'))
    assert not out.failed, out.result
    by = dict((t['name'], t) for t in out.result['templates'])
    assert by['MachineV2']['reason_code'] == 'names_of_requester'
    assert out.result['certificate_requests'] == []


def test_unknown_account_fails_clearly(directory, tmp_path):
    out = run(dict(CONN, directory=str(tmp_path), principal='NOPE$'))
    assert out.failed
    assert out.result['msg'].startswith('Cannot evaluate the rights of the account: account NOPE$ not found')


def test_bad_settings_and_existing_fail_clearly(directory, tmp_path):
    out = run(dict(CONN, directory=str(tmp_path), settings={'Machine*': 'x'}))
    assert out.failed and out.result['msg'] == 'The settings of Machine* must be a dict, not str.'
    out = run(dict(CONN, directory=str(tmp_path), existing={'/p/certs/M.crt.adcs.json': '%%'}))
    assert out.failed and 'in existing is not base64' in out.result['msg']


def test_domain_from_the_host_or_a_clear_error(monkeypatch, tmp_path):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _autoenroll
    monkeypatch.setattr(_autoenroll.socket, 'getfqdn', lambda: 'web01')
    out = run({'directory': str(tmp_path), 'auth': 'kerberos', 'kerberos_keytab': '/etc/krb5.keytab'})
    assert out.failed
    assert out.result['msg'].startswith('Cannot tell the domain from the host name web01; set domain')
