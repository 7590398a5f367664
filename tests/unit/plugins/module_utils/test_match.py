# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is it what was asked for (_match): a CSR against the expected names and key (controller-side enrollment), an
issued certificate against the request, and the refusal record that stops later runs from asking the CA again."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr, _errors, _match, _plan

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import FakeClient, FakeDirectory, NOW, PlainWriter, enroller, spec

PEM = serialization.Encoding.PEM
SERVER_AUTH = '1.3.6.1.5.5.7.3.1'
CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'


def csr_pem(key, cn='web01.lab.adcs.test', sans=('web01.lab.adcs.test',), extra=None, attribute=None):
    builder = x509.CertificateSigningRequestBuilder().subject_name(wcce_pki.name(cn) if cn else x509.Name([]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [s if isinstance(s, x509.GeneralName) else x509.DNSName(s) for s in sans]), critical=False)
    for ext in extra or []:
        builder = builder.add_extension(ext, critical=False)
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    if attribute:
        der = _csr.add_csr_attribute(der, key, attribute[0], attribute[1])
    return x509.load_der_x509_csr(der).public_bytes(PEM).decode()


def web(tmp_path, **kw):
    base = dict(common_name='web01.lab.adcs.test', subject_alt_name=['DNS:web01.lab.adcs.test'])
    base.update(kw)
    return spec(tmp_path, **base)


def template_info(supplies=True, ekus=(SERVER_AUTH,), app=(SERVER_AUTH,), oid=None, name='WebServer'):
    return {'name': name, 'oid': oid,
            'certificate_name_flag': {'names': ['CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT'] if supplies else
                                      ['CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN', 'CT_FLAG_SUBJECT_ALT_REQUIRE_DNS']},
            'extended_key_usage': [{'oid': o} for o in ekus], 'application_policies': [{'oid': o} for o in app]}


class TemplateDirectory(FakeDirectory):
    def __init__(self, info):
        FakeDirectory.__init__(self, [])
        self.info = info
        self.template_error = None if info else 'the template WebServer could not be read from Active Directory: x'

    def template_info(self, template):
        return self.info


def run(tmp_path, client, s, **kw):
    with enroller(client, **kw) as e:
        [result] = e.run([s])
        return result, e.ca_contacted


def run_first(*args, **kw):
    return run(*args, **kw)[0]


def requests_sent(client):
    return [c for c in client.calls if c[0] == 'request']


# ------------------------------------------------------------------------------------------------------------
# an issued certificate that is not what was asked for
# ------------------------------------------------------------------------------------------------------------
def test_other_subject_is_refused_recorded_and_not_requested_again(tmp_path):
    client = FakeClient({'alter_subject': 'victim.lab.adcs.test'})
    s = web(tmp_path)
    result = run_first(tmp_path, client, s)
    assert result['failed'] and result['request_id'] == 101
    record = str(tmp_path / 'c.pem.refused')
    assert result['msg'] == (
        'The CA issued a certificate that is not what was asked for; nothing was written; request ID 101; subject: '
        'asked CN=web01.lab.adcs.test, issued CN=victim.lab.adcs.test. What to do: Check the template (does it build '
        'the names from Active Directory?) and the CA policy. The refusal is recorded in c.pem.refused next to the '
        'certificate: the CA is not asked again for the same request until the request changes or force=true.')
    assert result['error']['request_id'] == 101
    assert sorted(os.listdir(str(tmp_path))) == ['c.pem.refused'], 'neither key nor certificate written'
    with open(record) as handle:
        stored = json.load(handle)
    assert stored['request_id'] == 101
    assert stored['differences'] == ['subject: asked CN=web01.lab.adcs.test, issued CN=victim.lab.adcs.test']
    assert stored['asked'] == {'template': 'WebServer', 'subject': 'CN=web01.lab.adcs.test',
                               'subject_alt_name': ['DNS:web01.lab.adcs.test'], 'request_id': None}

    # the next runs fail the same way without contacting the CA, in check mode too
    for check_mode in (False, True, False):
        result, contacted = run(tmp_path, client, web(tmp_path), check_mode=check_mode)
        assert result['failed'] and not contacted
        assert result['msg'] == (
            'Request 101 was refused on an earlier run because the CA issued a certificate that is not what was asked '
            'for (recorded in c.pem.refused next to the certificate); the CA is not asked again for the same request; request ID 101; subject: asked '
            'CN=web01.lab.adcs.test, issued CN=victim.lab.adcs.test. What to do: Correct the template or the CA '
            'policy, then run with force=true or remove that record (or change the request).')
    assert len(requests_sent(client)) == 1

    # another request goes to the CA again; force=true too, and a fitting certificate removes the record
    other = web(tmp_path, subject_alt_name=['DNS:web01.lab.adcs.test', 'DNS:www.lab.adcs.test'])
    result, contacted = run(tmp_path, client, other)
    assert contacted and result['failed'] and len(requests_sent(client)) == 2
    client.ca.pop('alter_subject')
    result, contacted = run(tmp_path, client, web(tmp_path, force=True))
    assert contacted and result['disposition'] == 'issued', result
    assert sorted(os.listdir(str(tmp_path))) == ['c.pem', 'k.pem']


def test_replaced_san_is_refused_with_both_lists(tmp_path):
    client = FakeClient({'alter_sans': [x509.DNSName('victim.lab.adcs.test')]})
    result = run_first(tmp_path, client, web(tmp_path))
    assert result['failed']
    assert ('; request ID 101; subject_alt_name: asked DNS:web01.lab.adcs.test, issued DNS:victim.lab.adcs.test. '
            'What to do:') in result['msg']


def test_added_san_without_directory_is_accepted(tmp_path):
    """Without the template from Active Directory, names the CA adds are not judged (templates may add them)."""
    client = FakeClient({'alter_sans': [x509.DNSName('web01.lab.adcs.test'), x509.DNSName('extra.lab.adcs.test')]})
    result = run_first(tmp_path, client, web(tmp_path))
    assert result['disposition'] == 'issued', result


def test_added_san_on_a_template_taking_names_from_the_request_is_refused(tmp_path):
    client = FakeClient({'alter_sans': [x509.DNSName('web01.lab.adcs.test'), x509.DNSName('victim.lab.adcs.test'),
                                        x509.DirectoryName(wcce_pki.name('victim'))], 'ekus': [SERVER_AUTH]})
    result = run_first(tmp_path, client, web(tmp_path), directory=TemplateDirectory(template_info()),
                       ca_host='ca1', ca_name='LAB-CA')
    assert result['failed']
    assert ('subject_alt_name: asked DNS:web01.lab.adcs.test, issued DNS:victim.lab.adcs.test, '
            'DNS:web01.lab.adcs.test, dirName:CN=victim. What to do:') in result['msg'], result['msg']


def test_template_building_names_from_ad_may_add_names(tmp_path):
    client = FakeClient({'alter_sans': [x509.DNSName('web01.lab.adcs.test'), x509.DNSName('host.lab.adcs.test')],
                         'ekus': [SERVER_AUTH]})
    result = run_first(tmp_path, client, web(tmp_path), directory=TemplateDirectory(template_info(supplies=False)))
    assert result['disposition'] == 'issued', result


def test_extended_key_usage_against_the_template(tmp_path):
    client = FakeClient({'ekus': [SERVER_AUTH, CLIENT_AUTH]})
    result = run_first(tmp_path, client, web(tmp_path), directory=TemplateDirectory(template_info()))
    assert result['failed']
    assert ('; request ID 101; extended key usage: template WebServer has %s, issued %s, %s. What to do:'
            % (SERVER_AUTH, SERVER_AUTH, CLIENT_AUTH)) in result['msg'], result['msg']
    # no EKU at all (any purpose) is not what the template says either
    client = FakeClient({})
    result = run_first(tmp_path, client, web(tmp_path, force=True), directory=TemplateDirectory(template_info()))
    assert 'extended key usage: template WebServer has %s, issued (none)' % SERVER_AUTH in result['msg']
    # the template's EKUs: issued
    client = FakeClient({'ekus': [SERVER_AUTH]})
    result = run_first(tmp_path, client, web(tmp_path, force=True), directory=TemplateDirectory(template_info()))
    assert result['disposition'] == 'issued', result
    assert not os.path.exists(str(tmp_path / 'c.pem.refused')), 'a fitting certificate removes the record'


def test_without_the_template_from_ad_ekus_are_skipped_with_a_warning(tmp_path):
    client = FakeClient({'ekus': [CLIENT_AUTH]})
    result = run_first(tmp_path, client, web(tmp_path), directory=TemplateDirectory(None))
    assert result['disposition'] == 'issued', result
    assert result['warnings'] == ['the template WebServer could not be read from Active Directory: x; the extended '
                                  'key usages of the issued certificate were not compared']


def test_other_template_is_refused(tmp_path):
    client = FakeClient({})
    client_request = client.request

    def request(template=None, *args, **kw):
        return client_request('User', *args, **kw)
    client.request = request
    result = run_first(tmp_path, client, web(tmp_path))
    assert result['failed'] and 'template: asked WebServer, issued User. What to do:' in result['msg'], result['msg']


def test_issued_differences_directly():
    key = wcce_pki.rsa_key('direct')
    cert = wcce_pki.pki().issue('web01.lab.adcs.test', key, sans=[('dns', 'web01.lab.adcs.test')],
                                template_name='WebServer')
    assert _match.issued_differences(cert, key.public_key(), {'CN': 'web01.lab.adcs.test'},
                                     ['DNS:web01.lab.adcs.test'], 'WebServer') == []
    other = wcce_pki.rsa_key('other')
    diffs = _match.issued_differences(cert, other.public_key(), 'CN=WEB01.lab.adcs.test', None, 'webserver')
    assert len(diffs) == 1 and diffs[0].startswith('public key: asked RSA 2048 (SHA-256 '), diffs
    # the template OID from AD must match when the certificate names its template by OID
    diffs = _match.issued_differences(cert, sans=['DNS:web01.lab.adcs.test'], template='WebServer',
                                      template_info=template_info(oid='1.2.3.4', ekus=(), app=()))
    assert diffs == [], 'the certificate names its template by name only: compared by name'
    diffs = _match.issued_differences(cert, sans=['DNS:web01.lab.adcs.test'], template='WebServer',
                                      template_info=template_info(name='WebServer', ekus=(SERVER_AUTH,)))
    assert diffs == ['extended key usage: template WebServer has 1.3.6.1.5.5.7.3.1, issued (none)'], diffs


# ------------------------------------------------------------------------------------------------------------
# controller-side enrollment: the CSR is pinned to the expected names and key
# ------------------------------------------------------------------------------------------------------------
def csr_spec(tmp_path, pem, **kw):
    base = dict(private_key_path=None, csr_content=pem, common_name='web01.lab.adcs.test',
                subject_alt_name=['DNS:web01.lab.adcs.test'], key_type='rsa', key_size=2048)
    base.update(kw)
    return spec(tmp_path, **base)


def test_pinned_csr_with_the_expected_names_is_issued(tmp_path):
    client = FakeClient({})
    result = run_first(tmp_path, client, csr_spec(tmp_path, csr_pem(wcce_pki.rsa_key('pin'))))
    assert result['disposition'] == 'issued', result


@pytest.mark.parametrize('kw, pem_kw, difference', [
    ({}, {'cn': 'victim.lab.adcs.test'},
     'subject: expected CN=web01.lab.adcs.test, the CSR has CN=victim.lab.adcs.test'),
    ({}, {'sans': ('web01.lab.adcs.test', 'victim.lab.adcs.test')},
     'subject_alt_name: expected DNS:web01.lab.adcs.test, the CSR has DNS:victim.lab.adcs.test, '
     'DNS:web01.lab.adcs.test'),
    ({}, {'sans': ('web01.lab.adcs.test', x509.IPAddress(ipaddress.ip_address('192.0.2.1')),
                   x509.RegisteredID(x509.ObjectIdentifier('1.2.3')))},
     'subject_alt_name: expected DNS:web01.lab.adcs.test, the CSR has DNS:web01.lab.adcs.test, IP:192.0.2.1, '
     'RID:1.2.3'),
    ({'common_name': None, 'subject_alt_name': None}, {},
     'subject: expected (empty), the CSR has CN=web01.lab.adcs.test; subject_alt_name: expected (none), the CSR '
     'has DNS:web01.lab.adcs.test'),
    ({'key_size': 3072}, {}, 'key: RSA key has 2048 bits but 3072 are wanted'),
    ({'key_type': 'ecdsa', 'key_size': None}, {}, 'key: key is rsa but ecdsa is wanted'),
    ({}, {'extra': [x509.BasicConstraints(ca=True, path_length=None)]},
     'extension 2.5.29.19: not expected in the CSR'),
    ({}, {'attribute': ('1.3.6.1.4.1.311.13.2.1', b'\x30\x00')},
     'attribute 1.3.6.1.4.1.311.13.2.1: not expected in the CSR'),
])
def test_pinned_csr_with_other_names_or_key_is_refused_before_the_ca(tmp_path, kw, pem_kw, difference):
    client = FakeClient({})
    result, contacted = run(tmp_path, client, csr_spec(tmp_path, csr_pem(wcce_pki.rsa_key('pin'), **pem_kw), **kw))
    assert result['failed'] and not contacted and client.calls == []
    assert result['msg'] == (
        'The CSR (csr_content) is not the one expected; nothing was sent to the CA; %s. What to do: The CSR must '
        'carry exactly the subject, subject_alt_name and key type given with it. If it comes from a managed host, '
        'that host may be compromised.' % difference)
    assert os.listdir(str(tmp_path)) == []


def test_csr_without_expectations_is_used_as_it_is(tmp_path):
    s = spec(tmp_path, private_key_path=None, csr_content=csr_pem(wcce_pki.rsa_key('free'), cn='any.lab.adcs.test'))
    assert s['csr_pinned'] is False
    result = run_first(tmp_path, FakeClient({}), s)
    assert result['disposition'] == 'issued', result


def test_pinned_csr_ec_key_and_curve(tmp_path):
    pem = csr_pem(wcce_pki.ec_key('pin-ec'))
    assert _plan.plan_request(csr_spec(tmp_path, pem, key_type='ecdsa', key_size=None, curve='secp256r1'),
                              now=NOW).action == 'enroll'
    with pytest.raises(_errors.InvalidInput, match='key: key is on secp256r1 but secp384r1 is wanted'):
        _plan.plan_request(csr_spec(tmp_path, pem, key_type='ecdsa', key_size=None, curve='secp384r1'), now=NOW)


# ------------------------------------------------------------------------------------------------------------
# templates that build the names from Active Directory: compared with the requester's account
# ------------------------------------------------------------------------------------------------------------
MACHINE_ACCOUNT = {'dn': 'CN=LABHOST01,CN=Computers,DC=lab,DC=adcs,DC=test', 'cn': 'LABHOST01', 'mail': None,
                   'dns_host_name': 'labhost01.lab.adcs.test', 'upn': None}


class AdDirectory(TemplateDirectory):
    def __init__(self, info, account):
        TemplateDirectory.__init__(self, info)
        self.acct = account
        self.asked = []
        if account is None:
            self.template_error = 'the account LABHOST01$@lab.adcs.test was not found in Active Directory'

    def account(self, principal):
        self.asked.append(principal)
        return self.acct


class Machine(object):
    user, domain = 'LABHOST01$', 'lab.adcs.test'


def run_machine(tmp_path, client, account='default', **kw):
    account = MACHINE_ACCOUNT if account == 'default' else account
    directory = AdDirectory(template_info(supplies=False, name='Machine'), account)
    with enroller(client, directory=directory) as e:
        e.auth = Machine()
        [result] = e.run([spec(tmp_path, template='Machine', **kw)])
    return result, directory


def ad_client(**names):
    base = {'alter_subject': 'labhost01.lab.adcs.test', 'alter_sans': [x509.DNSName('labhost01.lab.adcs.test')],
            'ekus': [SERVER_AUTH]}
    base.update(names)
    return FakeClient(base)


def test_names_built_from_ad_are_compared_with_the_account(tmp_path):
    result, directory = run_machine(tmp_path, ad_client())
    assert result['disposition'] == 'issued', result
    assert directory.asked == ['LABHOST01$@lab.adcs.test']


@pytest.mark.parametrize('names, difference', [
    ({'alter_subject': 'victim.lab.adcs.test'},
     'subject: Active Directory gives CN=labhost01.lab.adcs.test, issued CN=victim.lab.adcs.test'),
    ({'alter_sans': [x509.DNSName('labhost01.lab.adcs.test'), x509.DNSName('victim.lab.adcs.test')]},
     'subject_alt_name: Active Directory gives DNS:labhost01.lab.adcs.test, issued DNS:labhost01.lab.adcs.test, '
     'DNS:victim.lab.adcs.test'),
    ({'alter_sans': [x509.DNSName('victim.lab.adcs.test')]},
     'subject_alt_name: Active Directory gives DNS:labhost01.lab.adcs.test, issued DNS:victim.lab.adcs.test'),
])
def test_names_built_from_ad_other_than_the_account_are_refused(tmp_path, names, difference):
    result, _directory = run_machine(tmp_path, ad_client(**names))
    assert result['failed']
    assert '; request ID 101; %s. What to do:' % difference in result['msg'], result['msg']
    assert os.listdir(str(tmp_path)) == ['c.pem.refused']


def test_account_not_readable_skips_the_names_with_a_warning(tmp_path):
    result, _directory = run_machine(tmp_path, ad_client(alter_subject='victim.lab.adcs.test'), account=None)
    assert result['disposition'] == 'issued', result
    assert result['warnings'] == ['the account LABHOST01$@lab.adcs.test was not found in Active Directory; the names '
                                  'of the issued certificate were not compared with it']


def test_names_from_ad_model():
    def flags(*names):
        return {'certificate_name_flag': {'names': list(names)}}

    account = dict(MACHINE_ACCOUNT, mail='host@lab.adcs.test', upn='LABHOST01$@lab.adcs.test')
    subject, sans, complete = _match.names_from_ad(
        flags('CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME', 'CT_FLAG_SUBJECT_REQUIRE_EMAIL', 'CT_FLAG_SUBJECT_ALT_REQUIRE_UPN',
              'CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS', 'CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL'), account)
    assert subject.rfc4514_string() == '1.2.840.113549.1.9.1=host@lab.adcs.test,CN=LABHOST01'
    assert sans == [('dns', 'lab.adcs.test'), ('upn', 'LABHOST01$@lab.adcs.test'), ('email', 'host@lab.adcs.test')]
    assert complete
    # the directory path is not modelled; a missing UPN makes the SAN list incomplete
    subject, sans, complete = _match.names_from_ad(
        flags('CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH', 'CT_FLAG_SUBJECT_ALT_REQUIRE_UPN'), MACHINE_ACCOUNT)
    assert subject is None and sans == [] and complete is False
    assert _match.names_from_ad(flags('CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT'), account) == (None, None, False)


def test_a_renewal_may_keep_the_renewed_names():
    key = wcce_pki.rsa_key('renewed')
    old = wcce_pki.pki().issue('oldname.lab.adcs.test', key, sans=[('dns', 'oldname.lab.adcs.test')], serial=21)
    new = wcce_pki.pki().issue('oldname.lab.adcs.test', key, sans=[('dns', 'oldname.lab.adcs.test')], serial=22)
    ad = _match.names_from_ad(template_info(supplies=False), MACHINE_ACCOUNT)
    assert _match.issued_differences(new, ad_names=ad, renewed=old) == []
    assert _match.issued_differences(new, ad_names=ad) == [
        'subject: Active Directory gives CN=labhost01.lab.adcs.test, issued CN=oldname.lab.adcs.test',
        'subject_alt_name: Active Directory gives DNS:labhost01.lab.adcs.test, issued DNS:oldname.lab.adcs.test']


def test_a_certificate_not_from_the_ca_is_never_recorded(tmp_path):
    """A forged reply (a certificate that does not chain to the CA) fails without a refusal record, so it cannot
    block later runs."""
    client = FakeClient({'sign_key': wcce_pki.ec_key('forger'), 'alter_subject': 'victim.lab.adcs.test'})
    result = run_first(tmp_path, client, web(tmp_path))
    assert result['failed'] and result['msg'].startswith('The issued certificate does not chain to a trusted '
                                                         'CA certificate; nothing was written')
    assert os.listdir(str(tmp_path)) == []


def test_a_refusal_that_cannot_be_recorded_says_so(tmp_path):
    class NoRecordWriter(PlainWriter):
        def write(self, specs, validator=None):
            if any(s.path.endswith('.refused') for s in specs):
                raise _errors.FileOutputError('The directory %s is read-only' % tmp_path)
            return PlainWriter.write(self, specs, validator)

    result = run_first(tmp_path, FakeClient({'alter_subject': 'victim.lab.adcs.test'}), web(tmp_path),
                       writer=NoRecordWriter())
    assert result['msg'] == (
        'The CA issued a certificate that is not what was asked for; nothing was written; request ID 101; subject: '
        'asked CN=web01.lab.adcs.test, issued CN=victim.lab.adcs.test; the refusal could not be recorded (The '
        'directory %s is read-only.). What to do: Check the template (does it build the names from Active '
        'Directory?) and the CA policy.' % tmp_path)


# ---- a refusal record is ours, or it is ignored ------------------------------------------------------------------
def _record(tmp_path):
    cert = str(tmp_path / 'c.pem')
    content = _match.refusal_content(7, ['subject differs'], {'x': 1})
    with open(_match.refusal_path(cert), 'wb') as handle:
        handle.write(content)
    os.chmod(_match.refusal_path(cert), 0o600)
    return cert


def test_our_refusal_record_is_read(tmp_path):
    cert = _record(tmp_path)
    warnings = []
    assert _match.read_refusal(cert, warnings)['request_id'] == 7 and warnings == []


@pytest.mark.parametrize('plant', ['other_owner', 'group_writable', 'symlink', 'fifo', 'zero'])
def test_a_planted_refusal_record_is_ignored_with_a_warning(tmp_path, plant):
    """Someone who may write in the certificate directory cannot block renewals with a record of their own, hang
    the run with a FIFO or exhaust memory with a symlink to /dev/zero."""
    cert = _record(tmp_path)
    path = _match.refusal_path(cert)
    if plant == 'other_owner':
        os.chown(path, 65534, 65534)
        reason = 'is not owned by user %s or is writable by other users; it is not trusted' % (
            __import__('pwd').getpwuid(os.geteuid()).pw_name)
    elif plant == 'group_writable':
        os.chmod(path, 0o620)
        reason = 'is not owned by user %s or is writable by other users; it is not trusted' % (
            __import__('pwd').getpwuid(os.geteuid()).pw_name)
    else:
        os.unlink(path)
        if plant == 'symlink':
            other = tmp_path / 'elsewhere.refused'
            other.write_bytes(_match.refusal_content(7, ['x'], {'x': 1}))
            os.symlink(str(other), path)
        elif plant == 'fifo':
            os.mkfifo(path)
        else:
            os.symlink('/dev/zero', path)
        reason = 'is a symbolic link or not a regular file; it is not read'
    warnings = []
    assert _match.read_refusal(cert, warnings) is None
    assert warnings == ['The refusal record %s is ignored: %s %s' % (path, path, reason)]


def test_a_refusal_record_of_another_user_does_not_block_enrollment(tmp_path):
    """A record planted by another user who may write in the certificate directory: the CA is asked anyway, the
    run says why the record was ignored, and the issued certificate removes it."""
    client = FakeClient({'alter_subject': 'victim.lab.adcs.test'})
    run_first(tmp_path, client, web(tmp_path))          # a genuine refusal, recorded
    record = str(tmp_path / 'c.pem.refused')
    os.chown(record, 65534, 65534)                     # now as if someone else had planted it
    client.ca.pop('alter_subject')
    result, contacted = run(tmp_path, client, web(tmp_path))
    assert contacted and result['disposition'] == 'issued', result
    assert ('The refusal record %s is ignored: %s is not owned by user %s or is writable by other users; it is not '
            'trusted' % (record, record, __import__('pwd').getpwuid(os.geteuid()).pw_name)) in result['warnings']
    assert sorted(os.listdir(str(tmp_path))) == ['c.pem', 'k.pem']


def test_the_refusal_record_stays_ours_whatever_the_output_owner_and_mode(tmp_path):
    """owner/mode of the outputs (0664, another owner) do not apply to the record: it would not be trusted."""
    client = FakeClient({'alter_subject': 'victim.lab.adcs.test'})
    run_first(tmp_path, client, web(tmp_path, owner='65534', mode='0664'))
    st = os.stat(str(tmp_path / 'c.pem.refused'))
    assert st.st_uid == os.geteuid() and (st.st_mode & 0o777) == 0o644
    result, contacted = run(tmp_path, client, web(tmp_path, owner='65534', mode='0664'))
    assert result['failed'] and not contacted and result['msg'].startswith('Request 101 was refused on an earlier run')
