# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_template_info against the lab AD (Samba), compared with what adcslab.seed wrote."""

import hashlib
import json
import os
import ssl
import subprocess
import sys

import pytest
from conftest import AnsibleRunner

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
PYTHON = os.environ.get('ADCS_PYTHON', sys.executable)
BINDIR = os.path.dirname(PYTHON)

# expected outcome of the Enroll check per (account, template), from the ACLs in adcslab.seed.TEMPLATES
ENROLL = {
    'enroller': {'WebServer': True, 'WebServerApproval': True, 'WebServer4096': True, 'ShortLived': True,
                 'User': True, 'EFS': True, 'Machine': False, 'WebServerECC': True, 'WebServerECC384': True,
                 'WebServerKSP': True},
    'groupmember': {'WebServer': True, 'WebServerApproval': True, 'WebServer4096': True, 'ShortLived': True,
                    'User': True, 'EFS': True, 'Machine': False, 'WebServerECC': True, 'WebServerECC384': True,
                    'WebServerKSP': True},
    'denied': {'WebServer': False, 'WebServerApproval': False, 'WebServer4096': False, 'ShortLived': False,
               'User': False, 'EFS': False, 'Machine': False, 'WebServerECC': False, 'WebServerECC384': False,
               'WebServerKSP': False},
}


def run_module(args, check=False, extra_env=None):
    """`ansible localhost -m adcs.enrollment.wcce_template_info -a JSON` (tests/conftest.py runner); (rc, result)."""
    return AnsibleRunner(PYTHON).module('adcs.enrollment.wcce_template_info', args, check=check, extra_env=extra_env)


@pytest.fixture(scope='module')
def conn(lab):
    return {
        'domain': lab['domain'],
        'domain_controller': lab['dc']['address'],
        'ca_bundle': lab['ca_bundle'],
    }


def account(lab, name):
    return lab['accounts'][name]


def login(lab, conn, name, **extra):
    args = dict(conn, username=account(lab, name)['username'], password=account(lab, name)['password'])
    args.update(extra)
    return args


@pytest.fixture(scope='module')
def as_enroller(lab, conn):
    rc, result = run_module(login(lab, conn, 'enroller'))
    assert rc == 0, result
    return result


def by_name(result):
    return dict((t['name'], t) for t in result['templates'])


def test_templates_match_the_seed(lab, as_enroller):
    from adcslab import seed
    templates = by_name(as_enroller)
    assert set(lab['templates']) <= set(templates)
    for spec in seed.TEMPLATES:
        got = templates[spec['cn']]
        assert got['display_name'] == spec['displayName']
        assert got['schema_version'] == spec['schema']
        assert got['oid'] == seed.template_oid(spec)
        assert got['oid_name'] == spec['displayName']  # from the msPKI-Enterprise-Oid object
        assert got['revision'] == spec['revision'] and got['minor_revision'] == spec['minor']
        assert got['validity_period']['days'] == spec['validity_days']
        assert got['renewal_period']['days'] == spec['overlap_days']
        assert got['flags']['value'] == spec['flags']
        assert got['enrollment_flag']['value'] == spec['enrollment_flag']
        assert got['certificate_name_flag']['value'] == spec['name_flag']
        assert got['private_key_flag']['value'] == spec['private_key_flag']
        assert got['minimum_key_size'] == spec['min_key']
        assert got['key_spec'] == {1: 'AT_KEYEXCHANGE', 2: 'AT_SIGNATURE'}[spec['key_spec']]
        assert [e['oid'] for e in got['extended_key_usage']] == spec['ekus']
        assert ['%d,%s' % (c['priority'], c['name']) for c in got['csps']] == sorted(spec['csps'])
        assert got['critical_extensions'] == [{'oid': '2.5.29.15', 'name': 'Key Usage'}]
        if spec['schema'] >= 2:
            assert [e['oid'] for e in got['application_policies']] == spec['ekus']
        key = got['requirements']['key']
        assert key['template'] == spec['cn'] and key['minimum_size'] == spec['min_key']
        assert key['provider'] == ('cng' if spec.get('cng') else 'legacy')
        assert key['providers'] == [c.split(',', 1)[1] for c in sorted(spec['csps'])]
        assert got['published'] is True
        assert [c['name'] for c in got['cas']] == [lab['ca']['name']]
        assert got['requirements']['request_attribute'] == 'CertificateTemplate:' + spec['cn']
        assert got['raw']['cn'] == [spec['cn']]


def test_decoded_details_of_seeded_templates(as_enroller):
    t = by_name(as_enroller)
    assert t['WebServer']['validity_period']['text'] == '2 years'
    assert t['WebServer']['renewal_period']['text'] == '6 weeks'
    assert t['ShortLived']['validity_period']['text'] == '2 days'
    assert t['ShortLived']['renewal_period']['text'] == '1 day'
    assert t['WebServer']['key_usage'] == ['digital_signature', 'key_encipherment']
    assert t['EFS']['key_usage'] == ['key_encipherment']
    assert [e['name'] for e in t['EFS']['extended_key_usage']] == ['Encrypting File System']
    assert t['WebServer']['requirements']['enrollee_supplies_subject'] is True
    assert t['WebServerApproval']['requirements']['manager_approval'] is True
    assert t['WebServerApproval']['enrollment_flag']['names'] == ['CT_FLAG_PEND_ALL_REQUESTS']
    assert t['WebServer4096']['requirements']['minimum_key_size'] == 4096
    assert t['WebServerECC']['requirements']['key'] == {
        'template': 'WebServerECC', 'provider': 'cng', 'algorithm': 'ECDSA_P256', 'key_type': 'ecdsa',
        'curve': 'secp256r1', 'minimum_size': 256, 'hash_algorithm': 'sha256', 'key_usage': ['signing'],
        'providers': ['Microsoft Software Key Storage Provider']}
    assert t['WebServerECC']['key_usage'] == ['digital_signature'] and t['WebServerECC']['key_spec'] == 'AT_SIGNATURE'
    assert t['WebServerECC']['ra_application_policy_properties'] == {
        'asymmetric_algorithm': 'ECDSA_P256', 'hash_algorithm': 'SHA256', 'key_usage_property': 2,
        'symmetric_algorithm': '3DES', 'symmetric_key_length': 168}
    ecc384 = t['WebServerECC384']['requirements']['key']
    assert (ecc384['algorithm'], ecc384['curve'], ecc384['hash_algorithm']) == ('ECDSA_P384', 'secp384r1', 'sha384')
    assert t['WebServerECC384']['schema_version'] == 4
    ksp = t['WebServerKSP']['requirements']
    assert (ksp['key']['algorithm'], ksp['key']['key_type'], ksp['key']['minimum_size']) == ('RSA', 'rsa', 3072)
    assert 'the key must be an RSA key (msPKI-Asymmetric-Algorithm RSA) of at least 3072 bits' in ksp['notes']
    assert t['WebServer']['requirements']['key']['provider'] == 'legacy'
    assert t['Machine']['requirements']['subject_from_ad'] == ['dns_as_cn']
    assert t['Machine']['requirements']['subject_alt_names_from_ad'] == ['dns']
    assert t['Machine']['requirements']['machine'] is True
    user = t['User']
    assert user['requirements']['subject_from_ad'] == ['directory_path', 'email']
    assert user['requirements']['subject_alt_names_from_ad'] == ['upn', 'email']
    assert user['requirements']['smime'] is True and user['requirements']['exportable_key'] is True
    assert user['certificate_name_flag']['names'] == [
        'CT_FLAG_SUBJECT_ALT_REQUIRE_UPN', 'CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL', 'CT_FLAG_SUBJECT_REQUIRE_EMAIL',
        'CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH']


def test_certificate_authority(lab, as_enroller):
    cas = as_enroller['certificate_authorities']
    assert [c['name'] for c in cas] == [lab['ca']['name']]
    ca = cas[0]
    assert ca['dns_host_name'] == lab['ca']['hostname']
    assert sorted(ca['templates']) == sorted(lab['published_templates'])
    with open(lab['ca']['cert']) as handle:
        der = ssl.PEM_cert_to_DER_cert(handle.read())
    assert ca['certificate_sha256_fingerprint'].replace(':', '').lower() == hashlib.sha256(der).hexdigest()
    assert ca['certificate_subject'].startswith('CN=LAB-CA')
    assert ca['certificate_not_after'].endswith('Z')


def test_bind_account_token_from_ad(lab, as_enroller):
    principal = as_enroller['principal']
    enroller = account(lab, 'enroller')
    assert principal['source'] == 'bind'
    assert principal['sid'] == enroller['sid']
    assert set(enroller['group_sids']) <= set(principal['token_sids'])


def test_rights_lists(lab, as_enroller):
    web = by_name(as_enroller)['WebServer']
    denied = [(d['sid'], d['name']) for d in web['rights']['enroll']['denied']]
    assert denied == [(account(lab, 'denied')['sid'], 'denied')]
    allowed = dict((a['sid'], a['name']) for a in web['rights']['enroll']['allowed'])
    assert allowed[account(lab, 'enroller')['sid']] == 'enroller'
    assert lab['groups']['enrollers']['name'] in allowed.values()
    machine = by_name(as_enroller)['Machine']
    assert 'Domain Computers' in [a['name'] for a in machine['rights']['autoenroll']['allowed']]


@pytest.mark.parametrize('who', ['enroller', 'groupmember', 'denied'])
def test_each_account_binding_as_itself(lab, conn, who):
    rc, result = run_module(login(lab, conn, who, include_raw=False, names=list(ENROLL[who])))
    assert rc == 0, result
    templates = by_name(result)
    for name, expected in ENROLL[who].items():
        access = templates[name]['access']
        assert access['can_enroll'] is expected, (who, name, access)
    reason = templates['WebServer']['access']['reason']
    if who == 'denied':
        assert 'denies Enroll to denied' in reason
    elif who == 'groupmember':
        assert lab['groups']['enrollers']['name'] in reason
    else:
        assert 'grants Enroll to enroller' in reason
    assert templates['Machine']['access']['reason'].startswith('no ACE grants Enroll')


def test_principal_option_and_starttls(lab, conn):
    args = login(lab, conn, 'enroller', ldap_scheme='starttls', principal='LAB\\groupmember', names=['WebServer'],
                 include_raw=False)
    rc, result = run_module(args)
    assert rc == 0, result
    assert result['principal']['source'] == 'principal'
    assert result['principal']['sid'] == account(lab, 'groupmember')['sid']
    access = result['templates'][0]['access']
    assert access['can_enroll'] is True and 'ADCS-Enrollers' in access['reason']


def test_filters_and_check_mode(lab, conn):
    wanted = ['Web Server (4096-bit keys)', 'NoSuchTemplate']
    rc, result = run_module(login(lab, conn, 'enroller', names=wanted, check_rights=False), check=True)
    assert rc == 0, result
    assert [t['name'] for t in result['templates']] == ['WebServer4096']
    assert result['missing'] == ['NoSuchTemplate']
    assert result['changed'] is False and 'access' not in result['templates'][0]


def test_wrong_password_fails_cleanly(lab, conn):
    args = dict(conn, username='enroller', password='wrong')
    rc, result = run_module(args)
    assert rc != 0
    assert 'invalidCredentials' in result['msg']
    assert 'Traceback' not in json.dumps(result)


def test_untrusted_certificate_fails_cleanly(lab, conn):
    args = login(lab, conn, 'enroller')
    del args['ca_bundle']  # the system trust store does not know the lab CA
    rc, result = run_module(args)
    assert rc != 0
    assert 'could not be verified' in result['msg'] and 'set ca_bundle' in result['msg']
    assert 'Traceback' not in json.dumps(result)


def test_computer_principal(lab, conn):
    computer = account(lab, 'computer')
    args = login(lab, conn, 'enroller', principal=computer['username'], names=['Machine', 'ShortLived', 'WebServer'],
                 include_raw=False)
    rc, result = run_module(args)
    assert rc == 0, result
    assert result['principal']['sid'] == computer['sid']
    assert set(computer['group_sids']) <= set(result['principal']['token_sids'])
    t = by_name(result)
    assert t['Machine']['access']['can_enroll'] is True and 'Domain Computers' in t['Machine']['access']['reason']
    assert t['Machine']['access']['can_autoenroll'] is True
    assert t['ShortLived']['access']['can_enroll'] is True
    assert t['WebServer']['access']['can_enroll'] is False


def test_dc_discovery_through_lab_dns(lab):
    """The SRV lookup the module does when domain_controller is not set, against the lab's Samba DNS."""
    dns_resolver = pytest.importorskip('dns.resolver')
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.adcs.enrollment.plugins.module_utils._dns import find_domain_controllers
    resolver = dns_resolver.Resolver(configure=False)
    resolver.nameservers = [lab['dc']['address']]
    resolver.port = lab['dc'].get('dns_port') or 53
    resolver.lifetime = 10
    assert find_domain_controllers(lab['domain'], resolver=resolver)[0] == (lab['dc']['hostname'], lab['dc']['ldap_port'])


def test_ntlm_against_samba_fails_cleanly(lab, conn):
    """Samba does not serve ldap3's NTLM (Sicily) bind; the module must say so, not crash (NTLM is unit-tested)."""
    enroller = account(lab, 'enroller')
    args = dict(conn, auth='ntlm', username='%s\\%s' % (lab['netbios_domain'], enroller['username']),
                nt_hash=enroller['nt_hash'], names=['EFS'])
    rc, result = run_module(args)
    if rc == 0:  # a DC that does implement Sicily NTLM
        assert result['templates'][0]['access']['can_enroll'] is True
        return
    assert 'NTLM (Sicily)' in result['msg']
    assert 'Traceback' not in json.dumps(result)


def _has_gssapi():
    proc = subprocess.run([PYTHON, '-c', 'import gssapi'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode == 0


@pytest.mark.parametrize('scheme', ['ldaps', 'starttls'])
def test_kerberos_with_keytab(lab, conn, scheme):
    """SASL GSSAPI bind as LABHOST01$ from its keytab; needs the python gssapi library in the module's Python."""
    assert _has_gssapi(), 'python gssapi is not installed for %s (requirements-*.txt install it)' % PYTHON
    computer = account(lab, 'computer')
    args = dict(conn, auth='kerberos', username=computer['username'], kerberos_keytab=computer['keytab'],
                ldap_scheme=scheme, names=['Machine', 'WebServer'], include_raw=False)
    rc, result = run_module(args, extra_env={'KRB5_CONFIG': lab['dc']['krb5_conf']})
    assert rc == 0, result
    assert result['principal']['source'] == 'bind'
    assert result['principal']['sid'] == computer['sid']
    t = by_name(result)
    assert t['Machine']['access']['can_enroll'] is True
    assert t['WebServer']['access']['can_enroll'] is False


def test_kerberos_with_password_needs_no_krb5_conf(lab, conn):
    """auth=kerberos with a password: the module gets the tickets itself from the DC (no krb5.conf, no kinit)."""
    enroller = account(lab, 'enroller')
    args = dict(conn, auth='kerberos', username='%s@%s' % (enroller['username'], lab['domain']),
                password=enroller['password'], names=['WebServer'])
    rc, result = run_module(args, extra_env={'KRB5_CONFIG': '/nonexistent/krb5.conf'})
    assert rc == 0, result
    assert result['principal']['sid'] == enroller['sid']
    assert by_name(result)['WebServer']['access']['can_enroll'] is True
    assert enroller['password'] not in str(result)
    rc, result = run_module(dict(args, password='wrong'), extra_env={'KRB5_CONFIG': '/nonexistent/krb5.conf'})
    assert rc != 0 and 'KDC_ERR_PREAUTH_FAILED' in result['msg'] and 'Traceback' not in result['msg'], result
