# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The autoenrollment plan (_autoenroll): skip rules, supersession, classification, prune, the kept files."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import json
import os

import pytest

pytest.importorskip('cryptography')

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.adcs.enrollment.plugins.module_utils import _autoenroll as a

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


def template(name, machine=True, autoenroll=True, reason=None, published=True, renewal_days=42, **req):
    requirements = {'machine': machine, 'subject_from_ad': ['dns_as_cn'], 'subject_alt_names_from_ad': ['dns'],
                    'enrollee_supplies_subject': False, 'ra_signatures': 0, 'key_archival': False,
                    'manager_approval': False, 'minimum_key_size': 2048, 'same_key_renewal': False}
    superseded = req.pop('superseded_templates', [])
    flags = req.pop('enrollment_flags', ['CT_FLAG_AUTO_ENROLLMENT'])
    requirements.update(req)
    return {'name': name, 'display_name': name + ' display', 'published': published, 'requirements': requirements,
            'enrollment_flag': {'names': flags},
            'superseded_templates': superseded, 'renewal_period': {'seconds': renewal_days * 86400},
            'access': {'can_autoenroll': autoenroll,
                       'autoenroll_reason': reason or ('allowed: ACE #1' if autoenroll
                                                       else 'no ACE grants AutoEnroll')}}


def certificate(days_left, lifetime=365, name='host.example.com'):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    end = NOW + datetime.timedelta(days=days_left)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(7).not_valid_before(end - datetime.timedelta(days=lifetime)).not_valid_after(end)
            .sign(key, hashes.SHA256()))


def record(name, cert=None, **state):
    return {'name': name, 'template': name, 'state': dict(state, template=name), 'certificate': cert}


def plan(templates, existing=None, **options):
    opts = {'directory': '/pki', 'include': [], 'exclude': [], 'prune': False, 'reuse_key': True, 'settings': {}}
    opts.update(options)
    out = a.plan(templates, dict((k.lower(), v) for k, v in (existing or {}).items()), opts, now=NOW)
    return out, dict((e['name'], e) for e in out['templates'])


# ---- the account, the files ----
def test_host_domain_and_connection_defaults():
    assert a.host_domain('web01.Corp.Example.com') == 'corp.example.com'
    assert a.host_domain('web01') is None
    params = {'auth': 'kerberos', 'kerberos_keytab': '/etc/krb5.keytab'}
    assert a.connection_defaults(params, fqdn='web01.corp.example.com', hostname='web01') == {
        'domain': 'corp.example.com', 'username': 'WEB01$'}
    assert params['username'] == 'WEB01$'
    given = {'domain_controller': 'dc1', 'auth': 'kerberos', 'kerberos_keytab': '/k', 'username': 'svc'}
    assert a.connection_defaults(given, fqdn='x') == {}
    with pytest.raises(a.AutoenrollError, match='Cannot tell the domain from the host name web01; set domain'):
        a.connection_defaults({'auth': 'password'}, fqdn='web01')


def test_layout_is_the_certificate_roles():
    paths = a.layout('/pki', 'Machine')
    assert paths['private_key'] == '/pki/private/Machine.key'
    assert paths['certificate'] == '/pki/certs/Machine.crt'
    assert paths['state'] == '/pki/certs/Machine.crt.adcs.json'
    assert paths['chain'] == '/pki/certs/Machine-chain.crt' and paths['fullchain'] == '/pki/certs/Machine-fullchain.crt'


def _write_kept(directory, name, cert, state):
    os.makedirs(os.path.join(directory, 'certs'), exist_ok=True)
    paths = a.layout(directory, name)
    with open(paths['certificate'], 'wb') as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths['state'], 'w') as handle:
        json.dump(state, handle)
    os.chmod(paths['state'], 0o644)
    return paths


def test_existing_from_directory_and_from_contents(tmp_path):
    cert = certificate(100)
    state = {'format': 'adcs.enrollment.state', 'version': 1, 'template': 'Machine', 'status': 'issued'}
    paths = _write_kept(str(tmp_path), 'Machine', cert, state)
    with open(os.path.join(str(tmp_path), 'certs', 'unrelated.crt'), 'w') as handle:
        handle.write('not ours: no state file')
    warnings = []
    found = a.existing_from_directory(str(tmp_path), warnings)
    assert list(found) == ['machine'] and warnings == []
    assert found['machine']['certificate'].serial_number == 7 and found['machine']['state']['status'] == 'issued'
    assert a.existing_from_directory(str(tmp_path / 'missing'), warnings) == {}

    contents = {}
    for path in (paths['certificate'], paths['state']):
        with open(path, 'rb') as handle:
            contents[path] = base64.b64encode(handle.read()).decode()
    same = a.existing_from_contents(contents, warnings)
    assert list(same) == ['machine'] and same['machine']['certificate'].serial_number == 7
    with pytest.raises(a.AutoenrollError, match='The content of Machine.crt.adcs.json in existing is not base64'):
        a.existing_from_contents({paths['state']: '%%%'}, warnings)


def test_unreadable_kept_certificate_is_a_warning(tmp_path):
    paths = _write_kept(str(tmp_path), 'Machine', certificate(10), {'template': 'Machine', 'status': 'issued'})
    with open(paths['certificate'], 'w') as handle:
        handle.write('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
    warnings = []
    found = a.existing_from_directory(str(tmp_path), warnings)
    assert found['machine']['certificate'] is None
    assert warnings and warnings[0].startswith('The certificate of Machine cannot be read')


# ---- the decisions ----
def test_filters_are_case_insensitive_shell_patterns():
    assert a.selected('Machine', [], []) == (True, None)
    assert a.selected('AutoLinux', ['auto*'], []) == (True, None)
    assert a.selected('Machine', ['auto*'], []) == (False, 'not in autoenroll_include')
    assert a.selected('AutoLinux', [], ['AUTOLINUX']) == (False, 'excluded by autoenroll_exclude')


@pytest.mark.parametrize('kwargs, code, text', [
    (dict(autoenroll=False, reason='denied: ACE #0 denies AutoEnroll to WEB01$'), 'no_autoenroll_right',
     'denied: ACE #0 denies AutoEnroll to WEB01$'),
    (dict(enrollment_flags=[]), 'not_autoenrollment_template', 'no CT_FLAG_AUTO_ENROLLMENT'),
    (dict(enrollment_flags=['CT_FLAG_AUTO_ENROLLMENT', 'CT_FLAG_USER_INTERACTION_REQUIRED']), 'user_interaction',
     'requires user interaction'),
    (dict(machine=False), 'user_template', 'a user template (no CT_FLAG_MACHINE_TYPE)'),
    (dict(ra_signatures=1), 'ra_signatures', 'requires 1 enrollment agent signature(s)'),
    (dict(key_archival=True), 'key_archival', 'CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL'),
    (dict(enrollee_supplies_subject=True), 'enrollee_supplies_subject', 'Windows autoenrollment does not enroll'),
    (dict(ca_certificate=True), 'ca_template', 'does not request CA certificates'),
])
def test_skip_rules(kwargs, code, text):
    got_code, reason = a.eligibility(template('T', **kwargs))
    assert got_code == code and text in reason


def test_machine_template_for_a_user_and_names_of_another_requester():
    assert a.eligibility(template('Machine'), machine=False)[0] == 'machine_template'
    assert a.eligibility(template('Machine'), same_requester=False)[0] == 'names_of_requester'
    assert a.eligibility({'name': 'X', 'error': 'cannot decode template: bad'}) == (
        'unreadable', 'cannot decode template: bad')
    assert a.eligibility(template('Machine')) == (None, None)


def test_classify_enroll_renew_keep_pending():
    t = template('Machine', renewal_days=42)
    assert a.classify(None, t, NOW)[:2] == ('enroll', 'no_certificate')
    assert a.classify(record('Machine', certificate(100)), t, NOW)[:2] == ('keep', 'up_to_date')
    action, code, reason = a.classify(record('Machine', certificate(30)), t, NOW)
    assert (action, code) == ('renew', 'renew_window') and 'renewal period of 42 days' in reason
    assert a.classify(record('Machine', certificate(-1)), t, NOW)[:2] == ('renew', 'expired')
    assert a.classify(record('Machine', certificate(100)), t, NOW, renew_before=120)[:2] == ('renew', 'renew_window')
    out, by = plan([t], {'Machine': record('Machine', certificate(100))}, settings={'mach*': {'renew_before': 120}})
    assert by['Machine']['action'] == 'renew' and out['certificate_requests'][0]['renew_before'] == 120
    action, code, reason = a.classify(record('Machine', None, status='pending', request_id=12, since='x'), t, NOW)
    assert (action, code) == ('pending', 'pending') and reason.startswith('request 12 is pending')


def test_first_plan_enrolls_the_autoenrollable_machine_templates():
    out, by = plan([template('Machine'), template('User', machine=False), template('RA', ra_signatures=1),
                    template('Denied', autoenroll=False), template('Unpublished', published=False),
                    template('Approval', manager_approval=True, minimum_key_size=4096)])
    assert (by['Machine']['action'], by['Machine']['request']) == ('enroll', True)
    assert by['Approval']['manager_approval'] is True and by['Approval']['action'] == 'enroll'
    assert [by[n]['action'] for n in ('User', 'RA', 'Denied')] == ['skip', 'skip', 'skip']
    assert 'Unpublished' not in by
    assert out['certificate_requests'] == [
        {'name': 'Approval', 'template': 'Approval', 'key_type': 'rsa', 'key_size': 4096, 'reuse_key': True},
        {'name': 'Machine', 'template': 'Machine', 'key_type': 'rsa', 'key_size': 2048, 'reuse_key': True}]
    assert out['remove_paths'] == []


def test_a_cng_template_naming_an_ecdsa_curve_gets_that_key():
    ecc = template('MachineECC', minimum_key_size=384,
                   key={'provider': 'cng', 'key_type': 'ecdsa', 'curve': 'secp384r1', 'minimum_size': 384})
    rsa = template('MachineKSP', minimum_key_size=3072,
                   key={'provider': 'cng', 'key_type': 'rsa', 'curve': None, 'minimum_size': 3072})
    out, _by = plan([ecc, rsa])
    assert out['certificate_requests'] == [
        {'name': 'MachineECC', 'template': 'MachineECC', 'key_type': 'ecdsa', 'curve': 'secp384r1',
         'reuse_key': True},
        {'name': 'MachineKSP', 'template': 'MachineKSP', 'key_type': 'rsa', 'key_size': 3072, 'reuse_key': True}]


def test_supersession_replaces_and_prune_removes_once_superseded():
    templates = [template('Old'), template('New', superseded_templates=['Old'])]
    existing = {'Old': record('Old', certificate(200))}
    out, by = plan(templates, existing)
    assert (by['Old']['action'], by['Old']['reason_code'], by['Old']['superseded_by']) == ('keep', 'superseded', 'New')
    assert 'kept until it expires' in by['Old']['reason']
    assert [r['name'] for r in out['certificate_requests']] == ['New']
    out, by = plan(templates, existing, prune=True)
    assert by['Old']['action'] == 'remove' and by['Old']['request'] is False
    removed = set(p['path'] for p in out['remove_paths'])
    assert {'/pki/certs/Old.crt', '/pki/private/Old.key', '/pki/certs/Old.crt.adcs.json'} <= removed
    assert set(p['superseded_by'] for p in out['remove_paths']) == {'New'}
    # the superseding template excluded: the old one is still enrolled, nothing removed
    out, by = plan(templates, existing, prune=True, exclude=['New'])
    assert by['Old']['action'] == 'keep' and by['Old']['request'] is True
    assert out['remove_paths'] == []


def test_no_longer_autoenrollable_or_published_is_kept_or_pruned():
    existing = {'Gone': record('Gone', certificate(200)), 'Revoked': record('Revoked', certificate(200)),
                'Other': record('Other', certificate(200))}
    templates = [template('Revoked', autoenroll=False), template('Other')]
    out, by = plan(templates, existing, exclude=['Other'])
    assert (by['Gone']['action'], by['Gone']['reason_code']) == ('keep', 'not_published')
    assert (by['Revoked']['action'], by['Revoked']['reason_code']) == ('keep', 'no_autoenroll_right')
    out, by = plan(templates, existing, exclude=['Other'], prune=True)
    assert by['Gone']['action'] == 'remove' and by['Revoked']['action'] == 'remove'
    assert by['Other']['action'] == 'keep' and by['Other']['reason_code'] == 'filtered'   # filtered: never pruned
    assert not any(p['template'] == 'Other' for p in out['remove_paths'])


def test_settings_by_pattern_and_key_reuse():
    settings = {'*': {'notify': ['reload'], 'reuse_key': False}, 'mach*': {'owner': 'svc'},
                'Machine': {'run_after': 'x', 'template': 'Evil', 'mode': None}}
    assert a.template_settings('Machine', settings) == {'notify': ['reload'], 'reuse_key': False, 'owner': 'svc',
                                                        'run_after': 'x', 'template': 'Evil', 'mode': None}
    out, _by = plan([template('Machine'), template('Same', same_key_renewal=True)], settings=settings)
    machine, same = out['certificate_requests'][0], out['certificate_requests'][1]
    assert machine == {'name': 'Machine', 'template': 'Machine', 'key_type': 'rsa', 'key_size': 2048,
                       'reuse_key': False, 'notify': ['reload'], 'owner': 'svc', 'run_after': 'x'}
    assert same['reuse_key'] is True          # CT_FLAG_REQUIRE_SAME_KEY_RENEWAL
    with pytest.raises(a.AutoenrollError, match='The settings of Machine must be a dict, not str'):
        a.template_settings('Machine', {'Machine': 'x'})
