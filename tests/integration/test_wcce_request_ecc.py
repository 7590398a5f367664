# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CNG/ECC templates (adcslab.seed WebServerECC, WebServerECC384, WebServerKSP) with the real module run by
`ansible`: the key comes from the template read from AD when key_type/key_size/curve are left out, and a key the
template refuses fails before the CA is contacted, with a message naming the template's requirement.

The enrollments run against the shared lab CA. The CA's own enforcement (this checkout's lab CA code) runs on the
private lab CA of test_wcce_request_faults on 127.0.0.91, seen by Certipy 5.1 (RSA keys only; it has no ECC option):
run under `flock /tmp/adcs-private-ca.lock`."""

import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# fixtures (private_ca) and helpers of the private-CA harness
from test_wcce_request_faults import (  # noqa: F401  pylint: disable=unused-import
    ADDRESS, MODULE, assert_failed, private_ca, web_args as private_web_args,
)

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CERTIPY = os.path.join(ROOT, '.venv-certipy', 'bin', 'certipy')
ECC_MISMATCH = ('template WebServerECC requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm ECDSA_P256); '
                'key_type rsa was given. What to do: Leave key_type, key_size and curve out to get the key the '
                'template asks for, or pick another template (see adcs.enrollment.wcce_template_info).')


def ecc_args(lab, tmp_path, name, template='WebServerECC', **extra):
    """A request to the shared lab CA with the directory configured (the template is read from AD)."""
    acct = lab['accounts']['enroller']
    common_name = '%s.lab.adcs.test' % name
    args = {'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'], 'ca_bundle': lab['ca_bundle'],
            'domain': lab['domain'], 'domain_controller': lab['dc']['address'],
            'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password'],
            'template': template, 'common_name': common_name, 'subject_alt_name': ['DNS:%s' % common_name],
            'private_key_path': str(tmp_path / ('%s.key' % name)),
            'certificate_path': str(tmp_path / ('%s.crt' % name))}
    args.update(extra)
    return args


def load(path):
    with open(path, 'rb') as handle:
        data = handle.read()
    return x509.load_pem_x509_certificate(data) if b'CERTIFICATE' in data else \
        serialization.load_pem_private_key(data, None)


def key_usage(cert):
    return cert.extensions.get_extension_for_class(x509.KeyUsage).value


@pytest.mark.parametrize('template,curve', [('WebServerECC', 'secp256r1'), ('WebServerECC384', 'secp384r1')])
def test_ecdsa_key_from_the_template(lab, ansible, tmp_path, template, curve):
    args = ecc_args(lab, tmp_path, template.lower(), template)
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['certificate']['public_key'] == {'type': 'ecdsa', 'curve': curve}
    key, cert = load(args['private_key_path']), load(args['certificate_path'])
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == curve
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    usage = key_usage(cert)
    assert usage.digital_signature and not usage.key_encipherment
    assert oct(os.stat(args['private_key_path']).st_mode & 0o777) == '0o600'
    # the next run: nothing to do, and the key rule is not needed for that
    rc, again = ansible.module(MODULE, args)
    assert rc == 0 and again['changed'] is False and again['action'] == 'none', again


def test_rsa_ksp_template_gives_its_minimum_size(lab, ansible, tmp_path):
    args = ecc_args(lab, tmp_path, 'ksp', 'WebServerKSP')
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['certificate']['public_key'] == {'type': 'rsa', 'size': 3072}
    usage = key_usage(load(args['certificate_path']))
    assert usage.digital_signature and usage.key_encipherment


def test_mismatch_refused_before_the_ca(lab, ansible, tmp_path):
    args = ecc_args(lab, tmp_path, 'mismatch', key_type='rsa')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result)
    assert result['msg'] == ECC_MISMATCH
    assert result.get('request_id') is None and not result.get('ca'), result
    assert os.listdir(str(tmp_path)) == [], 'nothing written: no key, no certificate'
    # the same with too small an RSA key on the RSA KSP template
    rc, result = ansible.module(MODULE, ecc_args(lab, tmp_path, 'small', 'WebServerKSP', key_size=2048))
    assert_failed(rc, result)
    assert result['msg'].startswith('template WebServerKSP requires an RSA key of at least 3072 bits '
                                    '(msPKI-Asymmetric-Algorithm RSA, msPKI-Minimal-Key-Size 3072); key_size 2048 '
                                    'was given'), result['msg']
    assert result.get('request_id') is None


def test_existing_key_and_csr_that_do_not_fit_are_refused_before_the_ca(lab, ansible, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = str(tmp_path / 'old.key')
    with open(key_path, 'wb') as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    args = ecc_args(lab, tmp_path, 'old')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result)
    assert result['msg'] == (
        'The private key %s does not fit: template WebServerECC requires an ECDSA P-256 key '
        '(msPKI-Asymmetric-Algorithm ECDSA_P256); the key is an RSA key of 2048 bits; it is never replaced unless '
        'regenerate_key=true.' % key_path)
    assert result.get('request_id') is None
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'csr.lab.adcs.test')]))
           .sign(key, hashes.SHA256()))
    csr_args = ecc_args(lab, tmp_path, 'csr', private_key_path=None,
                        csr_content=csr.public_bytes(serialization.Encoding.PEM).decode(),
                        subject_alt_name=None, common_name=None)
    rc, result = ansible.module(MODULE, dict((k, v) for k, v in csr_args.items() if v is not None))
    assert_failed(rc, result)
    assert result['msg'] == (
        'The key of the CSR does not fit: template WebServerECC requires an ECDSA P-256 key '
        '(msPKI-Asymmetric-Algorithm ECDSA_P256); the key is an RSA key of 2048 bits; nothing was sent to the CA.')
    # with regenerate_key the template's key replaces the unfitting one
    rc, result = ansible.module(MODULE, dict(args, regenerate_key=True))
    assert rc == 0 and result['certificate']['public_key'] == {'type': 'ecdsa', 'curve': 'secp256r1'}, result


# ---- the CA's enforcement: this checkout's lab CA code on the private CA ----
def test_private_ca_issues_ecdsa_from_the_template(lab, ansible, tmp_path, private_ca):
    args = private_web_args(lab, tmp_path, 'pecc', template='WebServerECC', domain=lab['domain'],
                            domain_controller=lab['dc']['address'])
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['ca']['host'] == ADDRESS
    cert = load(args['certificate_path'])
    assert cert.public_key().curve.name == 'secp256r1' and not key_usage(cert).key_encipherment


def certipy(tmp_path, template, *args):
    acct = [a for a in lab_accounts() if a['sam'] == 'enroller'][0]
    cmd = [CERTIPY, 'req', '-dcom', '-u', 'enroller@lab.adcs.test', '-p', acct['password'], '-target-ip', ADDRESS,
           '-dc-ip', ADDRESS, '-ns', ADDRESS, '-ca', 'LAB-CA', '-timeout', '10', '-template', template] + list(args)
    done = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    return done.stdout + done.stderr


def lab_accounts():
    from adcslab import seed
    return seed.ACCOUNTS


@pytest.mark.skipif(not os.path.exists(CERTIPY), reason='.venv-certipy is not installed')
def test_certipy_sees_the_cas_key_refusals(private_ca, tmp_path):
    out = certipy(tmp_path, 'WebServerECC', '-out', 'rsa-on-ecc')
    assert '0x80090008' in out and 'NTE_BAD_ALGID' in out, out
    out = certipy(tmp_path, 'WebServerKSP', '-out', 'ksp-2048')
    assert '0x80094811' in out and 'CERTSRV_E_KEY_LENGTH' in out, out
    out = certipy(tmp_path, 'WebServerKSP', '-key-size', '3072', '-out', 'ksp-3072')
    assert 'Successfully requested certificate' in out, out
    out = certipy(tmp_path, 'WebServer', '-out', 'legacy')
    assert 'Successfully requested certificate' in out, out
