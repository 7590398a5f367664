# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enrollment workflow (_enroll): option handling, the plan (enroll or not, which key, renewal or not) and the
execution against a fake CA client that signs with the unit-test PKI."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors, _enroll, _errors, _keys, _ndr, _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._csr import template_name_extension_value
from ansible_collections.adcs.enrollment.plugins.module_utils._wcce import EnrollmentResult

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import csr as support_csr
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki

NOW = wcce_pki.NOW
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


def spec(tmp_path, **kw):
    base = {'template': 'WebServer', 'private_key_path': str(tmp_path / 'k.pem'),
            'certificate_path': str(tmp_path / 'c.pem')}
    base.update(kw)
    return _enroll.normalize_requests(base)[0]


def write_key(path, key, passphrase=None):
    with open(path, 'wb') as f:
        f.write(_keys.private_key_bytes(key, 'pem', passphrase))
    os.chmod(path, 0o600)


def write_cert(path, cert):
    with open(path, 'wb') as f:
        f.write(cert.public_bytes(PEM))


def issue(key, cn='host.lab.adcs.test', days=365, not_before=None, sans=None, template='WebServer', serial=77):
    return wcce_pki.pki().issue(cn, key, days=days, not_before=not_before or NOW - datetime.timedelta(days=1),
                                sans=sans, template_name=template, serial=serial)


def spki(obj):
    return obj.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ------------------------------------------------------------------------------------------------------------
# options
# ------------------------------------------------------------------------------------------------------------
def test_requests_inherit_top_level_and_reject_unknown(tmp_path):
    params = {'template': 'WebServer', 'format': 'der', 'force': False, 'requests': [
        {'private_key_path': str(tmp_path / 'a.key'), 'certificate_path': str(tmp_path / 'a.crt')},
        {'private_key_path': str(tmp_path / 'b.key'), 'certificate_path': str(tmp_path / 'b.crt'),
         'template': 'User', 'force': True}]}
    specs = _enroll.normalize_requests(params)
    assert [s['template'] for s in specs] == ['WebServer', 'User']
    assert [s['format'] for s in specs] == ['der', 'der']
    assert [s['force'] for s in specs] == [False, True]
    assert [s['index'] for s in specs] == [0, 1]
    params['requests'].append({'certificate_path': 'x', 'colour': 'red'})
    with pytest.raises(_errors.InvalidInput, match=r'requests\[2\] has unknown options: colour'):
        _enroll.normalize_requests(params)


def test_requests_must_not_share_output_paths(tmp_path):
    same = str(tmp_path / 'same.crt')
    with pytest.raises(_errors.InvalidInput, match=r'requests\[1\]\.certificate_path .* is also written by '
                                                   r'requests\[0\]\.certificate_path'):
        _enroll.normalize_requests({'template': 'W', 'requests': [
            {'private_key_path': str(tmp_path / 'a'), 'certificate_path': same},
            {'private_key_path': str(tmp_path / 'b'), 'certificate_path': same}]})


@pytest.mark.parametrize('kw, message', [
    ({'template': None}, 'template is required'),
    ({'certificate_path': None}, 'certificate_path is required'),
    ({'private_key_path': None}, 'give private_key_path'),
    ({'csr_content': 'x', 'regenerate_key': True}, 'regenerate_key cannot be used with a CSR'),
    ({'csr_content': 'x', 'csr_path': '/x'}, 'mutually exclusive'),
    ({'key_size': 1024}, 'RSA key size 1024 is not supported'),
    ({'key_type': 'ecdsa', 'key_size': 2048}, 'key_size applies to RSA keys'),
    ({'curve': 'p-999'}, 'Unsupported elliptic curve'),
    ({'format': 'txt'}, 'format must be pem or der'),
    ({'renew_before': -1}, 'must not be negative'),
    ({'request_id': 0}, 'request_id must be a positive number'),
    ({'subject': {'CN': 'a'}, 'common_name': 'b'}, 'either in subject or in common_name'),
    ({'subject_alt_name': ['FTP:x']}, 'Unsupported SAN type'),
    ({'pkcs12_path': '/x.p12', 'private_key_path': None, 'csr_content': 'x'}, 'pkcs12_path needs private_key_path'),
])
def test_invalid_options(tmp_path, kw, message):
    with pytest.raises(_errors.InvalidInput, match=message):
        spec(tmp_path, **kw)


def test_common_name_and_san_string(tmp_path):
    s = spec(tmp_path, subject={'O': 'Example'}, common_name='a.example.com',
             subject_alt_name='DNS:a.example.com, IP:10.0.0.1')
    assert s['wanted_subject'] == {'O': 'Example', 'CN': 'a.example.com'}
    assert s['wanted_sans'] == [('dns', 'a.example.com'), ('ip', '10.0.0.1')]


# ------------------------------------------------------------------------------------------------------------
# plan
# ------------------------------------------------------------------------------------------------------------
def test_plan_no_files_generates_key(tmp_path):
    plan = _enroll.plan_request(spec(tmp_path, key_type='ecdsa', curve='secp384r1'), now=NOW)
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

    plan = _enroll.plan_request(spec(tmp_path, common_name='host.lab.adcs.test',
                                     subject_alt_name=['DNS:host.lab.adcs.test']), now=NOW,
                                template_renewal_days=renewal_days)
    assert plan.action == 'none' and plan.reason.code == 'up_to_date'
    assert (plan.renew_before, plan.renew_before_source) == (42.0, 'template')
    assert calls == ['WebServer']


def test_plan_renewal_window_reuses_key_and_renews(tmp_path):
    key = wcce_pki.rsa_key('plan-renew')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=90, not_before=NOW - datetime.timedelta(days=80)))
    plan = _enroll.plan_request(spec(tmp_path), now=NOW)
    assert plan.action == 'enroll' and plan.reason.code == 'renew_window'
    assert plan.renew_before_source == 'default' and plan.renew_before == 30.0
    assert plan.key is plan.current_key and not plan.key_is_new
    assert plan.renewal is True
    # regenerate_key: a new key, still a renewal request (signed with the old key)
    plan = _enroll.plan_request(spec(tmp_path, regenerate_key=True), now=NOW)
    assert plan.key_is_new and spki(plan.key) != spki(key) and plan.renewal
    # renewal_request=false: a plain new request
    plan = _enroll.plan_request(spec(tmp_path, renewal_request=False), now=NOW)
    assert plan.action == 'enroll' and not plan.renewal


def test_plan_expired_certificate_is_not_renewed_by_cms(tmp_path):
    key = wcce_pki.rsa_key('plan-expired')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=10, not_before=NOW - datetime.timedelta(days=30)))
    plan = _enroll.plan_request(spec(tmp_path), now=NOW)
    assert plan.reason.code == 'expired' and plan.action == 'enroll' and not plan.renewal


def test_short_lived_certificate_default_window_is_a_third_of_lifetime(tmp_path):
    key = wcce_pki.rsa_key('plan-short')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=2, not_before=NOW - datetime.timedelta(hours=1)))
    plan = _enroll.plan_request(spec(tmp_path), now=NOW)
    assert plan.action == 'none'
    assert plan.renew_before_source == 'lifetime' and abs(plan.renew_before - 2 / 3.0) < 0.001
    plan = _enroll.plan_request(spec(tmp_path), now=NOW + datetime.timedelta(hours=36))
    assert plan.action == 'enroll' and plan.reason.code == 'renew_window'


def test_plan_key_mismatch_and_key_parameters(tmp_path):
    key = wcce_pki.rsa_key('plan-params')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(wcce_pki.rsa_key('other')))
    plan = _enroll.plan_request(spec(tmp_path), now=NOW)
    assert plan.reason.code == 'key_mismatch' and plan.key is plan.current_key and not plan.renewal
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    with pytest.raises(_errors.InvalidInput, match='does not fit the requested key parameters .*RSA key has 2048 '
                                                   'bits but 4096 are wanted.*regenerate_key=true'):
        _enroll.plan_request(spec(tmp_path, key_size=4096), now=NOW)
    plan = _enroll.plan_request(spec(tmp_path, key_size=3072, regenerate_key=True), now=NOW)
    assert plan.key_is_new and plan.key.key_size == 3072


def test_plan_wrong_key_passphrase_fails_without_touching_the_key(tmp_path):
    write_key(str(tmp_path / 'k.pem'), wcce_pki.rsa_key('pw'), passphrase='right')
    with pytest.raises(_errors.InvalidInput, match='wrong private_key_passphrase.*left untouched'):
        _enroll.plan_request(spec(tmp_path, private_key_passphrase='wrong'), now=NOW)
    plan = _enroll.plan_request(spec(tmp_path, private_key_passphrase='right'), now=NOW)
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
    plan = _enroll.plan_request(s, now=NOW)
    assert plan.action == 'enroll' and plan.key is None and plan.csr is not None and not plan.renewal
    write_cert(str(tmp_path / 'c.pem'), issue(key, sans=[('dns', 'csr.lab.adcs.test')]))
    assert _enroll.plan_request(s, now=NOW).action == 'none'
    # the CSR asks for a SAN the certificate lacks: enroll again
    s2 = spec(tmp_path, private_key_path=None,
              csr_content=_csr(key, sans=['csr.lab.adcs.test', 'b.lab.adcs.test']).public_bytes(PEM).decode())
    plan = _enroll.plan_request(s2, now=NOW)
    assert plan.reason.code == 'sans_changed'
    # a key that did not make the CSR is refused
    write_key(str(tmp_path / 'k.pem'), wcce_pki.rsa_key('not-csr'))
    with pytest.raises(_errors.InvalidInput, match='The CSR was not made with the private key'):
        _enroll.plan_request(spec(tmp_path, csr_content=csr_pem), now=NOW)


def test_plan_retrieve_uses_pending_key(tmp_path):
    old = wcce_pki.rsa_key('ret-old')
    new = wcce_pki.rsa_key('ret-new')
    write_key(str(tmp_path / 'k.pem'), old)
    write_key(str(tmp_path / 'k.pem.pending'), new)
    plan = _enroll.plan_request(spec(tmp_path, request_id=12), now=NOW)
    assert plan.action == 'retrieve'
    assert spki(plan.key) == spki(new) and plan.key_is_new
    assert plan.pending_key_path == str(tmp_path / 'k.pem.pending')
    os.unlink(str(tmp_path / 'k.pem.pending'))
    plan = _enroll.plan_request(spec(tmp_path, request_id=12), now=NOW)
    assert spki(plan.key) == spki(old) and not plan.key_is_new


def test_plan_missing_chain_output_is_a_refresh(tmp_path):
    key = wcce_pki.rsa_key('refresh')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    plan = _enroll.plan_request(spec(tmp_path, chain_path=str(tmp_path / 'chain.pem')), now=NOW)
    assert plan.action == 'refresh' and 'chain_path (%s) is missing' % (tmp_path / 'chain.pem') in plan.reason
    with open(str(tmp_path / 'chain.pem'), 'wb') as f:
        f.write(wcce_pki.pki().ca.public_bytes(PEM))
    assert _enroll.plan_request(spec(tmp_path, chain_path=str(tmp_path / 'chain.pem')), now=NOW).action == 'none'


def test_plan_format_change_rewrites_outputs(tmp_path):
    key = wcce_pki.rsa_key('fmt')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    plan = _enroll.plan_request(spec(tmp_path, format='der'), now=NOW)
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


def test_default_renew_before():
    cert = issue(wcce_pki.rsa_key('d'), days=365)
    assert _enroll.default_renew_before(cert, 7) == (7.0, 'template')
    assert _enroll.default_renew_before(cert) == (30.0, 'default')
    assert _enroll.default_renew_before(None) == (30.0, 'default')
    assert _enroll.default_renew_before(issue(wcce_pki.rsa_key('d'), days=30)) == (10.0, 'lifetime')


# ------------------------------------------------------------------------------------------------------------
# execution against a fake CA
# ------------------------------------------------------------------------------------------------------------
class FakeSession(object):
    opened = []

    def __init__(self, target, fail=None):
        self.target = target
        self.fail = fail
        self.closed = False

    def open(self):
        if self.fail is not None:
            raise self.fail
        FakeSession.opened.append(self.target.address)

    def close(self):
        self.closed = True


class FakeClient(object):
    """Issues for the key in the request, like a CA; behaviour per template name."""

    def __init__(self, ca):
        self.ca = ca
        self.calls = []
        self.pending = {}
        self.next_id = 100

    def __call__(self, session, name):
        self.name = name
        return self

    def _id(self):
        self.next_id += 1
        return self.next_id

    def _issue(self, public_key_der, rid, csr=None, template='WebServer'):
        pki = wcce_pki.pki()
        pub = serialization.load_der_public_key(public_key_der)
        subject = csr.subject if csr is not None and len(csr.subject) else wcce_pki.name('issued')
        subject = wcce_pki.name(self.ca['alter_subject']) if self.ca.get('alter_subject') else subject
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(pki.ca.subject)
                   .public_key(pub).serial_number(1000 + rid)
                   .not_valid_before(NOW - datetime.timedelta(hours=1))
                   .not_valid_after(NOW + datetime.timedelta(days=365))
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_key.public_key()),
                                  critical=False))
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier(_x509.OID_ENROLL_CERTTYPE), template_name_extension_value(template)),
            critical=False)
        if self.ca.get('alter_sans') is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(self.ca['alter_sans']), critical=False)
        elif csr is not None:
            for ext in csr.extensions:
                if isinstance(ext.value, x509.SubjectAlternativeName):
                    builder = builder.add_extension(ext.value, critical=False)
        if self.ca.get('ekus'):
            builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in self.ca['ekus']]),
                                            critical=False)
        cert = builder.sign(self.ca.get('sign_key', pki.ca_key), hashes.SHA256())
        chain = [c.public_bytes(DER) for c in (pki.ca, pki.root)]
        return EnrollmentResult(3, rid, 0, 'Issued', cert.public_bytes(DER), chain)

    def request(self, template=None, csr_der=None, attributes=None, flags=None, request_id=0):
        self.calls.append(('request', template, flags))
        rid = self._id()
        if flags == _ndr.CR_IN_PKCS7:
            if self.ca.get('no_renewal'):
                return EnrollmentResult(0x8009400E, rid, 0x8009400E, 'Denied: bad renewal', None, [])
            parts = support_csr.parse_renewal_request(csr_der)
            csr = x509.load_der_x509_csr(parts['csr_der'])
        else:
            csr = x509.load_der_x509_csr(csr_der)
        pub = csr.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if template == 'Denied':
            return EnrollmentResult(0x80094012, rid, 0x80094012, 'Denied by Policy Module', None, [])
        if template == 'Manual':
            self.pending[rid] = (pub, csr, template)
            return EnrollmentResult(5, rid, 0, 'Taken Under Submission', None, [])
        if template == 'WrongKey':
            pub = wcce_pki.rsa_key('wrong').public_key().public_bytes(
                DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return self._issue(pub, rid, csr, template)

    def retrieve(self, request_id):
        self.calls.append(('retrieve', request_id))
        if request_id not in self.pending:
            return EnrollmentResult(0x80094002, request_id, 0x80094002, 'No such request', None, [])
        pub, csr, template = self.pending.pop(request_id)
        return self._issue(pub, request_id, csr, template)

    def get_ca_cert(self, fchain=0):
        self.calls.append(('GetCACert', fchain))
        pki = wcce_pki.pki()
        if fchain & _ndr.GETCERT_CHAIN:
            return pkcs7.serialize_certificates([pki.ca, pki.root], DER)
        return pki.ca.public_bytes(DER)


def enroller(client, **kw):
    FakeSession.opened = []
    failing = kw.pop('failing', {})
    kw.setdefault('ca_host', 'ca1.lab.adcs.test')
    kw.setdefault('ca_name', 'LAB-CA')
    kw.setdefault('anchors', _anchors.AnchorSource(ca_fingerprint=[_anchors.fingerprint(wcce_pki.pki().root)]))
    return _enroll.Enroller(auth=object(), now=NOW, client_factory=client,
                            session_factory=lambda t: FakeSession(t, failing.get(t.address)), **kw)


def test_issue_writes_key_cert_chain_and_verifies(tmp_path):
    client = FakeClient({})
    s = spec(tmp_path, chain_path=str(tmp_path / 'chain.pem'), fullchain_path=str(tmp_path / 'full.pem'),
             common_name='a.lab.adcs.test')
    with enroller(client) as e:
        [result] = e.run([s])
    assert result['changed'] and result['disposition'] == 'issued' and result['request_id'] == 101
    assert result['key_generated'] is True
    key = serialization.load_pem_private_key(open(s['private_key_path'], 'rb').read(), None)
    cert = x509.load_pem_x509_certificate(open(s['certificate_path'], 'rb').read())
    assert spki(cert) == spki(key)
    assert oct(os.stat(s['private_key_path']).st_mode & 0o777) == '0o600'
    assert x509.load_pem_x509_certificates(open(s['chain_path'], 'rb').read()) == [wcce_pki.pki().ca,
                                                                                   wcce_pki.pki().root]
    assert x509.load_pem_x509_certificates(open(s['fullchain_path'], 'rb').read())[0] == cert
    assert [c[0] for c in client.calls] == ['request', 'GetCACert']
    assert FakeSession.opened == ['ca1.lab.adcs.test']


def test_many_requests_one_session(tmp_path):
    client = FakeClient({})
    specs = _enroll.normalize_requests({'template': 'WebServer', 'requests': [
        {'private_key_path': str(tmp_path / ('%d.key' % i)), 'certificate_path': str(tmp_path / ('%d.crt' % i))}
        for i in range(4)]})
    with enroller(client) as e:
        results = e.run(specs)
        assert e.sessions_opened == 1
    assert [r['disposition'] for r in results] == ['issued'] * 4
    assert FakeSession.opened == ['ca1.lab.adcs.test']
    assert [c[0] for c in client.calls].count('GetCACert') == 1


def test_nothing_to_do_makes_no_ca_contact(tmp_path):
    key = wcce_pki.rsa_key('quiet')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    client = FakeClient({})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path)])
        assert e.ca_contacted is False
    assert result['changed'] is False and result['action'] == 'none' and client.calls == []
    assert result['diff']['before'] == result['diff']['after']


def test_check_mode_makes_no_ca_contact_and_writes_nothing(tmp_path):
    client = FakeClient({})
    with enroller(client, check_mode=True) as e:
        [result] = e.run([spec(tmp_path, common_name='c.lab.adcs.test')])
    assert result['changed'] is True and client.calls == [] and os.listdir(str(tmp_path)) == []
    assert result['diff']['after']['subject'] == 'CN=c.lab.adcs.test'


def test_denied_is_a_failure_naming_hresult_and_request_id(tmp_path):
    with enroller(FakeClient({})) as e:
        [result] = e.run([spec(tmp_path, template='Denied')])
    assert result['failed'] and result['disposition'] == 'denied' and result['request_id'] == 101
    assert result['msg'].startswith('The CA LAB-CA did not issue a certificate from template Denied; HRESULT '
                                    '0x80094012 (CERTSRV_E_TEMPLATE_DENIED)')
    assert 'request ID 101' in result['msg'] and 'What to do:' in result['msg']
    assert result['error']['error_name'] == 'CERTSRV_E_TEMPLATE_DENIED'
    assert os.listdir(str(tmp_path)) == []


def test_public_key_mismatch_is_refused_and_nothing_written(tmp_path):
    with enroller(FakeClient({})) as e:
        [result] = e.run([spec(tmp_path, template='WrongKey')])
    assert result['failed']
    assert result['msg'].startswith('The CA issued a certificate whose public key differs from the key of the '
                                    'request; nothing was written; request ID 101; public key: the certificate is '
                                    'not for the key of the request. What to do: Check that request_id belongs to '
                                    'this key and CSR; if it does, report the CA behaviour. The refusal is recorded '
                                    'in c.pem.refused next to the certificate')
    assert os.listdir(str(tmp_path)) == ['c.pem.refused'], 'only the refusal record'


def test_certificate_not_chaining_to_the_ca_is_refused(tmp_path):
    client = FakeClient({'sign_key': wcce_pki.ec_key('rogue')})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['failed']
    assert result['msg'] == (
        'The issued certificate does not chain to a trusted CA certificate; nothing was written; request ID 101; '
        'The signature of "%s" does not verify with the key of its issuer "%s". What to '
        'do: Check the CA certificate and its chain, and the trust anchors (ca_fingerprint).'
        % (wcce_pki.name('issued').rfc4514_string(), wcce_pki.pki().ca.subject.rfc4514_string()))
    assert os.listdir(str(tmp_path)) == []


def test_pending_keeps_new_key_and_retrieve_installs_it(tmp_path):
    client = FakeClient({})
    key = wcce_pki.rsa_key('pend-old')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    old = open(str(tmp_path / 'k.pem'), 'rb').read()
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path, template='Manual', force=True, regenerate_key=True)])
        assert result['disposition'] == 'pending' and result['changed'] is True
        assert result['request_id'] == 101 and 'request_id=101' in result['msg']
        assert result['pending_private_key_path'] == str(tmp_path / 'k.pem.pending')
        assert open(str(tmp_path / 'k.pem'), 'rb').read() == old
        [got] = e.run([spec(tmp_path, template='Manual', request_id=101, force=True)])
    assert got['disposition'] == 'issued' and got['action'] == 'retrieve'
    assert not os.path.exists(str(tmp_path / 'k.pem.pending'))
    new_key = serialization.load_pem_private_key(open(str(tmp_path / 'k.pem'), 'rb').read(), None)
    assert spki(new_key) != spki(key)
    assert spki(x509.load_pem_x509_certificate(open(str(tmp_path / 'c.pem'), 'rb').read())) == spki(new_key)


def test_pending_without_previous_key_writes_the_key(tmp_path):
    client = FakeClient({})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path, template='Manual')])
    assert result['disposition'] == 'pending' and result['paths'] == {'private_key': str(tmp_path / 'k.pem')}
    assert os.listdir(str(tmp_path)) == ['k.pem']


def test_renewal_request_then_fallback_when_refused(tmp_path):
    key = wcce_pki.rsa_key('fallback')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=90, not_before=NOW - datetime.timedelta(days=80)))
    client = FakeClient({})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['renewal'] is True and client.calls[0] == ('request', 'WebServer', _ndr.CR_IN_PKCS7)
    client = FakeClient({'no_renewal': True})
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=90, not_before=NOW - datetime.timedelta(days=80)))
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['disposition'] == 'issued' and result['renewal'] is False
    assert [c[2] for c in client.calls if c[0] == 'request'] == [_ndr.CR_IN_PKCS7, _ndr.CR_IN_PKCS10]
    assert result['warnings'][0].startswith('The CA refused the renewal request; HRESULT 0x8009400E '
                                            '(CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE)')


class FakeDirectory(object):
    def __init__(self, services):
        self._services = services
        self.error = None

    def services(self):
        return self._services

    def template_renewal_days(self, template):
        return None

    def close(self):
        pass


SERVICES = [
    {'name': 'CA-ONE', 'dns_host_name': '10.9.9.1', 'templates': ['WebServer', 'User']},
    {'name': 'CA-TWO', 'dns_host_name': '10.9.9.2', 'templates': ['WebServer']},
    {'name': 'CA-THREE', 'dns_host_name': '10.9.9.3', 'templates': ['Machine']},
]


def test_select_cas_by_template_and_name():
    d = FakeDirectory(SERVICES)
    assert [t.name for t in _enroll.select_cas('WebServer', directory=d)] == ['CA-ONE', 'CA-TWO']
    assert [t.name for t in _enroll.select_cas('webserver', ca_name='ca-two', directory=d)] == ['CA-TWO']
    with pytest.raises(_errors.InvalidInput, match='No enterprise CA publishes the certificate template EFS'):
        _enroll.select_cas('EFS', directory=d)
    with pytest.raises(_errors.InvalidInput, match='No enterprise CA named NOPE found'):
        _enroll.select_cas('WebServer', ca_name='NOPE', directory=d)
    with pytest.raises(_errors.InvalidInput, match='Give ca_host and ca_name, or domain'):
        _enroll.select_cas('WebServer', ca_host='x')
    [only] = _enroll.select_cas('WebServer', ca_host='127.0.0.12', ca_name='LAB-CA')
    assert (only.name, only.address, only.source) == ('LAB-CA', '127.0.0.12', 'options')


def test_discovery_tries_the_next_ca_when_one_is_down(tmp_path):
    down = _errors.CaUnavailable('Connecting to the CA endpoint mapper (port 135) failed (10.9.9.1)',
                                 hresult=0x800706BA)
    client = FakeClient({})
    with enroller(client, ca_host=None, ca_name=None, directory=FakeDirectory(SERVICES),
                  failing={'10.9.9.1': down}) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['disposition'] == 'issued'
    assert result['ca'] == {'name': 'CA-TWO', 'host': '10.9.9.2', 'address': '10.9.9.2', 'source': 'discovery'}
    # all down: one message naming each CA
    with enroller(client, ca_host=None, ca_name=None, directory=FakeDirectory(SERVICES),
                  failing={'10.9.9.1': down, '10.9.9.2': down}) as e:
        [result] = e.run([spec(tmp_path, force=True)])
    assert result['failed'] and result['msg'].startswith('No CA for template WebServer could be reached; CA-ONE '
                                                         '(10.9.9.1): Connecting')
    assert 'CA-TWO (10.9.9.2)' in result['msg']


def test_authentication_failure_is_not_retried_on_other_cas(tmp_path):
    bad = _errors.AuthenticationError('Activating CCertRequestD on the CA was refused (10.9.9.1)', hresult=5)
    with enroller(FakeClient({}), ca_host=None, ca_name=None, directory=FakeDirectory(SERVICES),
                  failing={'10.9.9.1': bad}) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['failed'] and result['msg'].startswith('Activating CCertRequestD on the CA was refused')
    assert FakeSession.opened == []


def test_dcom_auth_from_params():
    a = _enroll.dcom_auth_from_params({'username': 'enroller@lab.adcs.test', 'password': 'pw', 'auth': 'password'})
    assert type(a).__name__ == 'PasswordAuth' and (a.user, a.domain) == ('enroller', 'lab.adcs.test')
    a = _enroll.dcom_auth_from_params({'username': 'enroller', 'domain': 'LAB', 'nt_hash': 'a' * 32,
                                       'auth': 'ntlm'})
    assert type(a).__name__ == 'NtHashAuth' and a.principal == 'LAB\\enroller'
    assert 'aaaa' not in repr(a)
    with pytest.raises(_errors.InvalidInput, match='username is required'):
        _enroll.dcom_auth_from_params({'password': 'x'})
    with pytest.raises(_errors.InvalidInput, match='A password is required'):
        _enroll.dcom_auth_from_params({'username': 'u@d'})


# ------------------------------------------------------------------------------------------------------------
# files (issue 12, item 6)
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('given, mode, key_mode', [
    (dict(mode=416, private_key_mode=416), 0o640, 0o640),                 # YAML 0640 unquoted
    (dict(mode='0640', private_key_mode='0640'), 0o640, 0o640),
    (dict(mode='u=rw,g=r,o=', private_key_mode='u=rw,go='), 0o640, 0o600),
    (dict(mode='u=rw,g=r', private_key_mode='u=rw,g=r'), 'u=rw,g=r', 'u=rw,g=r'),   # relative: resolved on write
])
def test_modes_as_ansible_file_takes_them(tmp_path, given, mode, key_mode):
    s = spec(tmp_path, **given)
    assert (s['mode'], s['private_key_mode']) == (mode, key_mode)


@pytest.mark.parametrize('key_mode, shown', [(0o644, '0644'), ('0660', '0660'), ('u=rw,g=rw', '"u=rw,g=rw" (0660)'),
                                             (0o604, '0604')])
def test_private_key_mode_open_to_group_write_or_others_is_refused(tmp_path, key_mode, shown):
    with pytest.raises(_errors.InvalidInput) as err:
        spec(tmp_path, private_key_mode=key_mode)
    assert err.value.summary == ('private_key_mode %s would make the private key writable by its group or '
                                 'accessible to other users; use 0600, or 0640 for a group that only reads it'
                                 % shown)


def test_int_modes_reach_the_files(tmp_path):
    client = FakeClient({})
    s = spec(tmp_path, mode=416, private_key_mode=416, chain_path=str(tmp_path / 'chain.pem'),
             pkcs12_path=str(tmp_path / 'k.p12'))
    with enroller(client) as e:
        [result] = e.run([s])
    assert result['changed']
    modes = dict((n, os.stat(str(tmp_path / n)).st_mode & 0o7777) for n in ('k.pem', 'c.pem', 'chain.pem', 'k.p12'))
    assert modes == {'k.pem': 0o640, 'c.pem': 0o640, 'chain.pem': 0o640, 'k.p12': 0o640}


def test_missing_output_directory_fails_before_the_ca_is_contacted(tmp_path):
    client = FakeClient({})
    s = spec(tmp_path, chain_path=str(tmp_path / 'nope' / 'chain.pem'))
    with enroller(client) as e:
        [result] = e.run([s])
        assert e.ca_contacted is False
    assert result['failed'] and client.calls == [] and FakeSession.opened == []
    assert result['msg'].startswith('The directory %s of chain_path (%s) does not exist; nothing was requested '
                                    'from the CA' % (tmp_path / 'nope', tmp_path / 'nope' / 'chain.pem'))
    assert os.listdir(str(tmp_path)) == []


def test_interrupted_switch_is_finished_before_planning(tmp_path):
    # a killed run left the new key next to the old certificate, with its journal: the next run rolls forward and
    # then finds a fitting pair, with no CA contact
    old_key, new_key = wcce_pki.rsa_key('old-pair'), wcce_pki.rsa_key('new-pair')
    write_key(str(tmp_path / 'k.pem'), new_key)
    write_cert(str(tmp_path / 'c.pem'), issue(old_key, serial=1))
    new_cert = issue(new_key, serial=2).public_bytes(PEM)
    tmp = tmp_path / '.c.pem.abcd1234.adcs-new'
    tmp.write_bytes(new_cert)
    import hashlib
    import json
    (tmp_path / '.c.pem.adcs-journal').write_text(json.dumps({'version': 1, 'entries': [
        {'path': str(tmp_path / 'k.pem'), 'tmp': str(tmp_path / '.k.pem.abcd1234.adcs-new'), 'old': None,
         'sha256': hashlib.sha256(open(str(tmp_path / 'k.pem'), 'rb').read()).hexdigest()},
        {'path': str(tmp_path / 'c.pem'), 'tmp': str(tmp), 'old': None,
         'sha256': hashlib.sha256(new_cert).hexdigest()}]}))
    client = FakeClient({})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['action'] == 'none' and client.calls == []
    assert open(str(tmp_path / 'c.pem'), 'rb').read() == new_cert
    assert sorted(os.listdir(str(tmp_path))) == ['c.pem', 'k.pem']


NO_DIRECTORY_WARNING = (
    'No directory (domain is not set): the certificate template WebServer was not read from Active Directory, so '
    'the extended key usages of the issued certificate were not compared with the template\'s and subject '
    'alternative names beyond the asked ones were accepted; set domain (with the directory credentials) for the '
    'full check')


def test_issued_check_without_directory_says_what_was_not_compared(tmp_path):
    """ca_host + ca_name and no domain: the issued certificate is compared without the template from AD, and the
    result says so (security review item 7)."""
    client = FakeClient({})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path, common_name='a.lab.adcs.test')])
    assert result['disposition'] == 'issued'
    assert NO_DIRECTORY_WARNING in result['warnings'], result.get('warnings')


def test_issued_check_with_a_directory_has_no_such_warning(tmp_path):
    class TemplateDirectory(FakeDirectory):
        template_error = None

        def template_info(self, template):
            return None

        def account(self, principal):
            return None

    client = FakeClient({})
    with enroller(client, directory=TemplateDirectory(SERVICES)) as e:
        [result] = e.run([spec(tmp_path, common_name='a.lab.adcs.test')])
    assert result['disposition'] == 'issued'
    assert NO_DIRECTORY_WARNING not in result.get('warnings', [])


def test_a_symlinked_key_is_not_adopted_and_a_symlinked_certificate_is_replaced(tmp_path):
    """A key behind a symlink could be one someone else knows: refused, never read. A certificate behind one is
    not ours: it reads as absent and the new certificate replaces the link, never following it."""
    victim = tmp_path / 'victim.pem'
    write_key(str(victim), wcce_pki.rsa_key('victim'))
    os.symlink(str(victim), str(tmp_path / 'k.pem'))
    with pytest.raises(_errors.FileOutputError) as err:
        _enroll.plan_request(spec(tmp_path))
    assert err.value.summary == '%s is a symbolic link or not a regular file; it is not read' % (tmp_path / 'k.pem')
    os.unlink(str(tmp_path / 'k.pem'))
    cert_victim = tmp_path / 'victim.crt'
    cert_victim.write_bytes(b'precious')
    os.symlink(str(cert_victim), str(tmp_path / 'c.pem'))
    plan = _enroll.plan_request(spec(tmp_path))
    assert plan.current_cert is None and plan.action == _enroll.ACTION_ENROLL
