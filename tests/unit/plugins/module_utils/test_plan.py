# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_plan: the plan of a request (enroll or not, which key, renewal request or not), from the files on disk."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _plan
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    FakeClient, NOW, PEM, enroller, issue, spec, spki, write_cert, write_key,
)


def test_plan_no_files_generates_key(tmp_path):
    plan = _plan.plan_request(spec(tmp_path, key_type='ecdsa', curve='secp384r1'), now=NOW)
    assert plan.action == 'enroll' and plan.reason.code == 'no_certificate'
    assert plan.key_is_new and plan.key.curve.name == 'secp384r1'
    assert not plan.renewal
    assert not os.path.exists(str(tmp_path / 'k.pem'))   # planning writes nothing


def test_plan_fitting_certificate_is_left_alone(tmp_path):
    key = wcce_pki.rsa_key('plan-fit')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, sans=[('dns', 'host.lab.adcs.test')]))
    calls = []

    def renewal_days(template):
        calls.append(template)
        return 42

    plan = _plan.plan_request(spec(tmp_path, common_name='host.lab.adcs.test',
                                   subject_alt_name=['DNS:host.lab.adcs.test']), now=NOW,
                              template_renewal_days=renewal_days)
    assert plan.action == 'none' and plan.reason.code == 'up_to_date'
    assert (plan.renew_before, plan.renew_before_source) == (42.0, 'template')
    assert calls == ['WebServer']


def test_plan_renewal_window_reuses_key_and_renews(tmp_path):
    key = wcce_pki.rsa_key('plan-renew')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=90, not_before=NOW - datetime.timedelta(days=80)))
    plan = _plan.plan_request(spec(tmp_path), now=NOW)
    assert plan.action == 'enroll' and plan.reason.code == 'renew_window'
    assert plan.renew_before_source == 'default' and plan.renew_before == 30.0
    assert plan.key is plan.current_key and not plan.key_is_new
    assert plan.renewal is True
    # regenerate_key: a new key, still a renewal request (signed with the old key)
    plan = _plan.plan_request(spec(tmp_path, regenerate_key=True), now=NOW)
    assert plan.key_is_new and spki(plan.key) != spki(key) and plan.renewal
    # renewal_request=false: a plain new request
    plan = _plan.plan_request(spec(tmp_path, renewal_request=False), now=NOW)
    assert plan.action == 'enroll' and not plan.renewal


def test_plan_expired_certificate_is_not_renewed_by_cms(tmp_path):
    key = wcce_pki.rsa_key('plan-expired')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=10, not_before=NOW - datetime.timedelta(days=30)))
    plan = _plan.plan_request(spec(tmp_path), now=NOW)
    assert plan.reason.code == 'expired' and plan.action == 'enroll' and not plan.renewal


def test_short_lived_certificate_default_window_is_a_third_of_lifetime(tmp_path):
    key = wcce_pki.rsa_key('plan-short')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=2, not_before=NOW - datetime.timedelta(hours=1)))
    plan = _plan.plan_request(spec(tmp_path), now=NOW)
    assert plan.action == 'none'
    assert plan.renew_before_source == 'lifetime' and abs(plan.renew_before - 2 / 3.0) < 0.001
    plan = _plan.plan_request(spec(tmp_path), now=NOW + datetime.timedelta(hours=36))
    assert plan.action == 'enroll' and plan.reason.code == 'renew_window'


def test_plan_key_mismatch_and_key_parameters(tmp_path):
    key = wcce_pki.rsa_key('plan-params')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(wcce_pki.rsa_key('other')))
    plan = _plan.plan_request(spec(tmp_path), now=NOW)
    assert plan.reason.code == 'key_mismatch' and plan.key is plan.current_key and not plan.renewal
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    with pytest.raises(_errors.InvalidInput, match='does not fit the requested key parameters .*RSA key has 2048 '
                                                   'bits but 4096 are wanted.*regenerate_key=true'):
        _plan.plan_request(spec(tmp_path, key_size=4096), now=NOW)
    plan = _plan.plan_request(spec(tmp_path, key_size=3072, regenerate_key=True), now=NOW)
    assert plan.key_is_new and plan.key.key_size == 3072


def test_plan_wrong_key_passphrase_fails_without_touching_the_key(tmp_path):
    write_key(str(tmp_path / 'k.pem'), wcce_pki.rsa_key('pw'), passphrase='right')
    with pytest.raises(_errors.InvalidInput, match='wrong private_key_passphrase.*left untouched'):
        _plan.plan_request(spec(tmp_path, private_key_passphrase='wrong'), now=NOW)
    plan = _plan.plan_request(spec(tmp_path, private_key_passphrase='right'), now=NOW)
    assert spki(plan.current_key) == spki(wcce_pki.rsa_key('pw'))


def _csr(key, cn='csr.lab.adcs.test', sans=None):
    b = x509.CertificateSigningRequestBuilder().subject_name(wcce_pki.name(cn))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return b.sign(key, hashes.SHA256())


def test_plan_csr_mode_matches_certificate_against_csr_key(tmp_path):
    key = wcce_pki.rsa_key('csr')
    csr_pem = _csr(key, sans=['csr.lab.adcs.test']).public_bytes(PEM).decode()
    s = spec(tmp_path, private_key_path=None, csr_content=csr_pem)
    plan = _plan.plan_request(s, now=NOW)
    assert plan.action == 'enroll' and plan.key is None and plan.csr is not None and not plan.renewal
    write_cert(str(tmp_path / 'c.pem'), issue(key, sans=[('dns', 'csr.lab.adcs.test')]))
    assert _plan.plan_request(s, now=NOW).action == 'none'
    # the CSR asks for a SAN the certificate lacks: enroll again
    s2 = spec(tmp_path, private_key_path=None,
              csr_content=_csr(key, sans=['csr.lab.adcs.test', 'b.lab.adcs.test']).public_bytes(PEM).decode())
    plan = _plan.plan_request(s2, now=NOW)
    assert plan.reason.code == 'sans_changed'
    # a key that did not make the CSR is refused
    write_key(str(tmp_path / 'k.pem'), wcce_pki.rsa_key('not-csr'))
    with pytest.raises(_errors.InvalidInput, match='The CSR was not made with the private key'):
        _plan.plan_request(spec(tmp_path, csr_content=csr_pem), now=NOW)


def test_plan_retrieve_uses_pending_key(tmp_path):
    old = wcce_pki.rsa_key('ret-old')
    new = wcce_pki.rsa_key('ret-new')
    write_key(str(tmp_path / 'k.pem'), old)
    write_key(str(tmp_path / 'k.pem.pending'), new)
    plan = _plan.plan_request(spec(tmp_path, request_id=12), now=NOW)
    assert plan.action == 'retrieve'
    assert spki(plan.key) == spki(new) and plan.key_is_new
    assert plan.pending_key_path == str(tmp_path / 'k.pem.pending')
    os.unlink(str(tmp_path / 'k.pem.pending'))
    plan = _plan.plan_request(spec(tmp_path, request_id=12), now=NOW)
    assert spki(plan.key) == spki(old) and not plan.key_is_new


def test_plan_missing_chain_output_is_a_refresh(tmp_path):
    key = wcce_pki.rsa_key('refresh')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    plan = _plan.plan_request(spec(tmp_path, chain_path=str(tmp_path / 'chain.pem')), now=NOW)
    assert plan.action == 'refresh' and 'chain_path (%s) is missing' % (tmp_path / 'chain.pem') in plan.reason
    with open(str(tmp_path / 'chain.pem'), 'wb') as f:
        f.write(wcce_pki.pki().ca.public_bytes(PEM))
    assert _plan.plan_request(spec(tmp_path, chain_path=str(tmp_path / 'chain.pem')), now=NOW).action == 'none'


def test_plan_format_change_rewrites_outputs(tmp_path):
    key = wcce_pki.rsa_key('fmt')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    plan = _plan.plan_request(spec(tmp_path, format='der'), now=NOW)
    assert plan.action == 'refresh'
    assert 'certificate_path (%s) is not in the DER format' % (tmp_path / 'c.pem') in plan.reason
    client = FakeClient({})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path, format='der')])
    assert result['changed'] and result['action'] == 'refresh' and result['paths'] == {
        'certificate': str(tmp_path / 'c.pem')}
    assert [c[0] for c in client.calls] == ['GetCACert']     # no new certificate
    x509.load_der_x509_certificate(open(str(tmp_path / 'c.pem'), 'rb').read())
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path, format='der')])
    assert result['action'] == 'none' and not result['changed']


def test_a_symlinked_key_is_not_adopted_and_a_symlinked_certificate_is_replaced(tmp_path):
    """A key behind a symlink could be one someone else knows: refused, never read. A certificate behind one is
    not ours: it reads as absent and the new certificate replaces the link, never following it."""
    victim = tmp_path / 'victim.pem'
    write_key(str(victim), wcce_pki.rsa_key('victim'))
    os.symlink(str(victim), str(tmp_path / 'k.pem'))
    with pytest.raises(_errors.FileOutputError) as err:
        _plan.plan_request(spec(tmp_path))
    assert err.value.summary == '%s is a symbolic link or not a regular file; it is not read' % (tmp_path / 'k.pem')
    os.unlink(str(tmp_path / 'k.pem'))
    cert_victim = tmp_path / 'victim.crt'
    cert_victim.write_bytes(b'precious')
    os.symlink(str(cert_victim), str(tmp_path / 'c.pem'))
    plan = _plan.plan_request(spec(tmp_path))
    assert plan.current_cert is None and plan.action == _plan.ACTION_ENROLL


# ---- the template's key rule (CNG templates): defaults and refusals before the CA ----
ECC_RULE = {'template': 'WebServerECC', 'provider': 'cng', 'algorithm': 'ECDSA_P256', 'key_type': 'ecdsa',
            'curve': 'secp256r1', 'minimum_size': 256, 'hash_algorithm': 'sha256'}
ECC384_RULE = dict(ECC_RULE, template='WebServerECC384', algorithm='ECDSA_P384', curve='secp384r1',
                   minimum_size=384, hash_algorithm='sha384')
KSP_RULE = dict(ECC_RULE, template='WebServerKSP', algorithm='RSA', key_type='rsa', curve=None, minimum_size=3072)


def test_plan_generates_the_key_the_template_asks_for(tmp_path):
    asked = []

    def rules(template):
        asked.append(template)
        return {'WebServerECC': ECC_RULE, 'WebServerECC384': ECC384_RULE}[template]

    plan = _plan.plan_request(spec(tmp_path, template='WebServerECC'), now=NOW, template_key_rule=rules)
    assert plan.key_is_new and plan.key.curve.name == 'secp256r1' and plan.hash_name == 'sha256'
    plan = _plan.plan_request(spec(tmp_path, template='WebServerECC384'), now=NOW, template_key_rule=rules)
    assert plan.key.curve.name == 'secp384r1' and plan.hash_name == 'sha384'
    assert asked == ['WebServerECC', 'WebServerECC384']


def test_plan_without_a_rule_keeps_the_old_defaults(tmp_path):
    plan = _plan.plan_request(spec(tmp_path, template='WebServerECC'), now=NOW, template_key_rule=lambda t: None)
    assert plan.key.key_size == 2048 and plan.hash_name is None


def test_plan_refuses_options_the_template_refuses(tmp_path):
    with pytest.raises(_errors.InvalidInput) as info:
        _plan.plan_request(spec(tmp_path, template='WebServerECC', key_type='rsa'), now=NOW,
                           template_key_rule=lambda t: ECC_RULE)
    assert info.value.summary == ('template WebServerECC requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm '
                                  'ECDSA_P256); key_type rsa was given')


def test_plan_refuses_an_existing_key_or_csr_the_template_refuses(tmp_path):
    key = wcce_pki.rsa_key('plan-tpl')
    write_key(str(tmp_path / 'k.pem'), key)
    with pytest.raises(_errors.InvalidInput) as info:
        _plan.plan_request(spec(tmp_path, template='WebServerKSP'), now=NOW, template_key_rule=lambda t: KSP_RULE)
    assert info.value.summary == (
        'The private key %s does not fit: template WebServerKSP requires an RSA key of at least 3072 bits '
        '(msPKI-Asymmetric-Algorithm RSA, msPKI-Minimal-Key-Size 3072); the key is an RSA key of 2048 bits; it is '
        'never replaced unless regenerate_key=true' % (tmp_path / 'k.pem'))
    plan = _plan.plan_request(spec(tmp_path, template='WebServerKSP', regenerate_key=True), now=NOW,
                              template_key_rule=lambda t: KSP_RULE)
    assert plan.key_is_new and plan.key.key_size == 3072
    csr = x509.CertificateSigningRequestBuilder().subject_name(wcce_pki.name('csr')).sign(key, hashes.SHA256())
    csr_spec = spec(tmp_path, template='WebServerECC', private_key_path=None,
                    csr_content=csr.public_bytes(serialization.Encoding.PEM).decode())
    with pytest.raises(_errors.InvalidInput) as info:
        _plan.plan_request(csr_spec, now=NOW, template_key_rule=lambda t: ECC_RULE)
    assert info.value.summary == (
        'The key of the CSR does not fit: template WebServerECC requires an ECDSA P-256 key '
        '(msPKI-Asymmetric-Algorithm ECDSA_P256); the key is an RSA key of 2048 bits; nothing was sent to the CA')


def test_plan_of_a_fitting_certificate_never_reads_the_key_rule(tmp_path):
    key = wcce_pki.rsa_key('plan-fit')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, sans=[('dns', 'host.lab.adcs.test')]))

    def no_rule(template):
        raise AssertionError('the no-op path must not read the template')

    plan = _plan.plan_request(spec(tmp_path, common_name='host.lab.adcs.test',
                                   subject_alt_name=['DNS:host.lab.adcs.test']), now=NOW, template_key_rule=no_rule)
    assert plan.action == 'none'
