# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Refusals as Windows gives them (issue 14 items 10 and 11), with the real module:

- WebServerSameKey (CT_FLAG_REQUIRE_SAME_KEY_RENEWAL, CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME): the module
  renews with the same key by default (shared lab CA); a new key (regenerate_key=true) is refused by a lab CA of
  this checkout with CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY and the module falls back to a new request, saying why;
- the CA's own security (Request Certificates): a denied principal gets CERTSRV_E_ENROLL_DENIED from the lab CA,
  and wcce_template_info reports it from the enrollment service's DACL.

The CA-side refusals need this checkout's lab CA: a private one on 127.0.0.91 (state dir of its own, config.json
with the CA security). Run under `flock /tmp/adcs-private-ca.lock` (one private CA on 127.0.0.91 at a time).
"""

import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from test_wcce_request_faults import (  # noqa: F401  pylint: disable=unused-import
    ADDRESS, MODULE, assert_failed, private_ca, read, spki,
)

pytestmark = pytest.mark.lab

SAME_KEY_WHY = ('the template requires renewal with the same key (CT_FLAG_REQUIRE_SAME_KEY_RENEWAL) and this request '
                'has a new key (regenerate_key=true or new key parameters); a new request may have one, so a new '
                'request was sent instead')


def _seeder(lab):
    from adcslab.ad import SambaDC
    from adcslab.pki import ensure_pki
    from adcslab.seeder import Seeder
    pki = ensure_pki(lab['state_dir'])
    seeder = Seeder(SambaDC(lab['state_dir'], pki), pki)
    seeder.domain_sid = lab['accounts']['enroller']['sid'].rsplit('-', 1)[0]
    seeder.conn = seeder.dc.connect()
    return seeder


@pytest.fixture(scope='module', autouse=True)
def same_key_template_published(lab):
    """WebServerSameKey is in the enrollment service's certificateTemplates (`adcslab seed-templates` adds it; a
    full reseed from an older checkout may have dropped it from the shared lab): added when missing."""
    seeder = _seeder(lab)
    try:
        seeder._publish_more(['WebServerSameKey'])
    finally:
        seeder.conn.unbind()


@pytest.fixture(scope='module')
def refusing_ca(private_ca):
    """The private lab CA of this checkout (test_wcce_request_faults) restarted with a CA security that denies
    groupmember Request Certificates (its config.json, the registry of a Windows CA)."""
    from adcslab import seed
    assert private_ca.stop() == 0, private_ca.log()
    path = os.path.join(private_ca.state_dir, 'ca', 'config.json')
    with open(path) as handle:
        config = json.load(handle)
    config['ca_security'] = [list(e) for e in seed.CA_SECURITY] + [['deny', 'enroll', 'name:groupmember']]
    with open(path, 'w') as handle:
        json.dump(config, handle)
    return private_ca.start()


def args_for(lab, tmp_path, name, ca_host, user='enroller', **extra):
    acct = lab['accounts'][user]
    common_name = '%s.lab.adcs.test' % name
    args = {'ca_host': ca_host, 'ca_name': 'LAB-CA', 'username': '%s@%s' % (acct['username'], lab['domain']),
            'password': acct['password'], 'ca_bundle': lab['ca_bundle'], 'template': 'WebServerSameKey',
            'common_name': common_name, 'subject_alt_name': ['DNS:%s' % common_name], 'timeout': 15,
            'private_key_path': str(tmp_path / ('%s.key' % name)),
            'certificate_path': str(tmp_path / ('%s.crt' % name))}
    args.update(extra)
    return args


def renewal_warnings(result):
    return [w for w in result.get('warnings', []) if 'renewal request' in w]


def cert_and_key(args):
    cert = x509.load_pem_x509_certificate(read(args['certificate_path']))
    key = serialization.load_pem_private_key(read(args['private_key_path']), None)
    return cert, key


def test_same_key_template_renews_with_the_same_key_by_default(lab, ansible, tmp_path):
    """Against the shared lab CA: the renewal of a WebServerSameKey certificate is a renewal request signed and
    carried by the same key (the module's default), and keeps the certificate's names."""
    args = args_for(lab, tmp_path, 'samekey', lab['ca']['address'])
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    old, old_key = cert_and_key(args)
    rc, result = ansible.module(MODULE, dict(args, force=True))
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['renewal'] is True and not renewal_warnings(result), result
    new, new_key = cert_and_key(args)
    assert spki(new) == spki(old) == spki(new_key) and new.serial_number != old.serial_number
    assert new.subject == old.subject


def test_new_key_on_a_same_key_template_falls_back_and_says_why(lab, ansible, tmp_path, refusing_ca):
    args = args_for(lab, tmp_path, 'newkey', ADDRESS)
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    old = cert_and_key(args)[0]
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True))
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['renewal'] is False, result
    warnings = renewal_warnings(result)
    assert len(warnings) == 1, result.get('warnings')
    assert warnings[0].startswith('The CA refused the renewal request; HRESULT 0x80094816 '
                                  '(CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY)'), warnings[0]
    assert warnings[0].endswith(SAME_KEY_WHY), warnings[0]
    new, new_key = cert_and_key(args)
    assert spki(new) == spki(new_key) != spki(old)
    # the same key renews at this CA too
    rc, result = ansible.module(MODULE, dict(args, force=True))
    assert rc == 0 and result['renewal'] is True and not renewal_warnings(result), result


def test_ca_security_denies_request_certificates(lab, ansible, tmp_path, refusing_ca):
    """groupmember may enroll on WebServer (template DACL) but the CA denies it Request Certificates: the call
    fails with CERTSRV_E_ENROLL_DENIED, nothing is written; enroller is unaffected."""
    args = args_for(lab, tmp_path, 'gm', ADDRESS, user='groupmember', template='WebServer')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, '0x80094011', 'CERTSRV_E_ENROLL_DENIED',
                  'Grant the account the Request Certificates permission on the CA')
    assert result['error']['hresult'] == '0x80094011' and result['error']['error_name'] == 'CERTSRV_E_ENROLL_DENIED'
    assert os.listdir(str(tmp_path)) == []
    rc, result = ansible.module(MODULE, args_for(lab, tmp_path, 'ok', ADDRESS, template='WebServer'))
    assert rc == 0 and result['disposition'] == 'issued', result


@pytest.fixture
def ca_security_in_ad(lab):
    """The enrollment service's DACL in the shared AD denies groupmember Enroll (what a Windows CA writes when its
    security denies Request Certificates), restored to seed.CA_SECURITY afterwards."""
    from adcslab import seed
    seeder = _seeder(lab)
    try:
        seeder.seed_ca_security(list(seed.CA_SECURITY) + [('deny', 'enroll',
                                                           'sid:' + lab['accounts']['groupmember']['sid'])])
        yield
    finally:
        seeder.seed_ca_security()
        seeder.conn.unbind()


def test_template_info_reports_request_certificates_per_ca(lab, ca_security_in_ad):
    from test_ldap_transport import run_module
    base = {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'username': '%s@%s' % (lab['accounts']['enroller']['username'], lab['domain']),
            'password': lab['accounts']['enroller']['password'], 'names': ['WebServer'], 'include_raw': False}
    rc, result = run_module(dict(base, principal=lab['accounts']['groupmember']['username']))
    assert rc == 0, result
    web = result['templates'][0]
    assert web['access']['can_enroll'] is True                   # the template lets groupmember enroll...
    ca = [c for c in web['cas'] if c['name'] == 'LAB-CA'][0]
    assert ca['can_request'] is False                            # ...but the CA does not let it request
    assert ca['request_reason'] == ('denied: ACE #0 denies Request Certificates (Enroll) to groupmember (%s) '
                                    '(extended right)' % lab['accounts']['groupmember']['sid']), ca['request_reason']
    service = [c for c in result['certificate_authorities'] if c['name'] == 'LAB-CA'][0]
    assert service['access']['can_request'] is False
    rc, result = run_module(base)
    assert rc == 0, result
    ca = [c for c in result['templates'][0]['cas'] if c['name'] == 'LAB-CA'][0]
    assert ca['can_request'] is True and 'Authenticated Users (S-1-5-11)' in ca['request_reason'], ca
