# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_enroller: the workflow against a fake CA client that signs with the unit-test PKI, results, auth from parameters."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    FakeClient,
    FakeDirectory,
    FakeSession,
    NOW,
    SERVICES,
    enroller,
    issue,
    spec,
    spki,
    write_cert,
    write_key,
)


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


# ---- the template's key rule (CNG templates, read from the directory) ----
ECC_RULE = {'template': 'WebServerECC', 'provider': 'cng', 'algorithm': 'ECDSA_P384', 'key_type': 'ecdsa',
            'curve': 'secp384r1', 'minimum_size': 384, 'hash_algorithm': 'sha384'}


class KeyRuleDirectory(FakeDirectory):
    template_error = None

    def template_info(self, template):
        return {'name': template, 'requirements': {'key': ECC_RULE}} if template == 'WebServerECC384' else None

    def account(self, principal):
        return None


def test_mismatch_with_the_template_is_refused_before_the_ca(tmp_path):
    client = FakeClient({})
    with enroller(client, directory=KeyRuleDirectory(SERVICES)) as e:
        [result] = e.run([spec(tmp_path, template='WebServerECC384', key_type='rsa')])
    assert result['failed'] and client.calls == [] and not e.ca_contacted
    assert result['msg'].startswith('template WebServerECC requires an ECDSA P-384 key (msPKI-Asymmetric-Algorithm '
                                    'ECDSA_P384); key_type rsa was given')
    assert not os.path.exists(str(tmp_path / 'k.pem'))


def test_csr_signed_with_the_template_hash(tmp_path):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _enroller, _plan

    class Recorder(object):
        def request(self, template, csr_der, attributes=None, flags=None):
            self.csr = x509.load_der_x509_csr(csr_der)
            return 'sent'

    plan = _plan.plan_request(spec(tmp_path, template='WebServerECC384'), now=NOW,
                              template_key_rule=lambda t: ECC_RULE)
    client = Recorder()
    assert _enroller.submit(plan, client, {}) == 'sent'
    assert client.csr.signature_hash_algorithm.name == 'sha384'
    assert client.csr.public_key().curve.name == 'secp384r1'


def _batch(tmp_path, count):
    return [spec(tmp_path, private_key_path=str(tmp_path / ('k%d.pem' % i)),
                 certificate_path=str(tmp_path / ('c%d.pem' % i)), common_name='b%d.lab.adcs.test' % i)
            for i in range(count)]


def test_the_new_files_of_a_run_are_switched_together(tmp_path, monkeypatch):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _write_group
    synced = []
    real = _write_group.sync_files
    monkeypatch.setattr(_write_group, 'sync_files', lambda paths, syncfs=None: synced.append(len(paths)) or
                        real(paths, syncfs))
    specs = _batch(tmp_path, 3)
    with enroller(FakeClient({})) as e:
        results = e.run(specs)
    assert [r['disposition'] for r in results] == ['issued'] * 3 and not any('_commit' in r for r in results)
    assert synced == [9]   # one sync for the 3 keys, 3 certificates and the 3 journals of the sets
    for s in specs:
        key = serialization.load_pem_private_key(open(s['private_key_path'], 'rb').read(), None)
        assert spki(x509.load_pem_x509_certificate(open(s['certificate_path'], 'rb').read())) == spki(key)
    assert sorted(n for n in os.listdir(str(tmp_path)) if n.startswith('.')) == []


def test_a_failed_switch_of_the_group_fails_its_requests_with_their_request_ids(tmp_path, monkeypatch):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _write_group

    def broken(paths, syncfs=None):
        raise OSError(5, 'Input/output error')

    monkeypatch.setattr(_write_group, 'sync_files', broken)
    specs = _batch(tmp_path, 2)
    with enroller(FakeClient({})) as e:
        results = e.run(specs)
    assert [r['failed'] for r in results] == [True, True]
    assert results[0]['msg'].startswith('Writing the output files failed; none of c0.pem, k0.pem was written')
    assert 'Input/output error' in results[0]['msg']
    assert [r['request_id'] for r in results] == [101, 102]
    assert os.listdir(str(tmp_path)) == []


def test_a_run_of_several_requests_writes_in_the_finisher_thread(tmp_path, monkeypatch):
    import threading
    from ansible_collections.adcs.enrollment.plugins.module_utils import _outputs
    writers = []
    real = _outputs.Outputs.write

    def write(self, *args, **kwargs):
        writers.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_outputs.Outputs, 'write', write)
    client = FakeClient({})
    with enroller(client) as e:
        results = e.run(_batch(tmp_path, 2))
    assert [r['disposition'] for r in results] == ['issued'] * 2 and [r['request_id'] for r in results] == [101, 102]
    assert len(writers) == 2 and all(name.startswith('adcs-finish') for name in writers)
    # the session is used by the calling thread only: both requests, then GetCACert once (after the first issued)
    assert [c[0] for c in client.calls] == ['request', 'GetCACert', 'request']
    del writers[:]
    (tmp_path / 'one').mkdir()
    with enroller(FakeClient({})) as e:
        e.run([spec(tmp_path / 'one')])
    assert writers == [threading.current_thread().name]   # one request: no thread


# ---- the enrollment policy cache: a stale cached template never records a refusal ----
def _web_template(ekus):
    return {'name': 'WebServer', 'oid': None, 'extended_key_usage': [{'oid': o, 'name': o} for o in ekus],
            'application_policies': [], 'certificate_name_flag': {'names': ['CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT']},
            'requirements': {'key': None}}


class CachedDirectory(FakeDirectory):
    """A template first answered from the policy cache (stale: client authentication only), then from AD."""
    template_error = None

    def __init__(self, services):
        FakeDirectory.__init__(self, services)
        self.from_cache = True
        self.refreshed = 0

    def template_info(self, template):
        return _web_template(['1.3.6.1.5.5.7.3.2'] if self.from_cache else ['1.3.6.1.5.5.7.3.1'])

    def refresh(self):
        was, self.from_cache = self.from_cache, False
        self.refreshed += 1
        return was

    def account(self, principal):
        return None


def test_an_issued_certificate_is_compared_again_with_ad_before_a_cached_template_refuses_it(tmp_path):
    client = FakeClient({'ekus': ['1.3.6.1.5.5.7.3.1']})
    directory = CachedDirectory(SERVICES)
    with enroller(client, directory=directory) as e:
        [result] = e.run([spec(tmp_path, common_name='a.lab.adcs.test')])
    assert result['disposition'] == 'issued' and directory.refreshed == 1, result
    assert not os.path.exists(str(tmp_path / 'c.pem.refused'))


def test_a_certificate_that_differs_from_the_fresh_template_is_still_refused(tmp_path):
    client = FakeClient({'ekus': ['1.3.6.1.5.5.7.3.4']})   # e-mail protection: neither template allows it
    directory = CachedDirectory(SERVICES)
    with enroller(client, directory=directory) as e:
        [result] = e.run([spec(tmp_path, common_name='a.lab.adcs.test')])
    assert result['failed'] and directory.refreshed == 1
    assert 'extended key usage: template WebServer has (none) or 1.3.6.1.5.5.7.3.1, issued 1.3.6.1.5.5.7.3.4' in result['msg']
    assert os.path.exists(str(tmp_path / 'c.pem.refused'))
