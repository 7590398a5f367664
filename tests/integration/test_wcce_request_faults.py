# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_request against each fault knob of the lab CA (adcslab.faults), run by the real `ansible`.

The knobs are never set on the shared lab CA: the module starts its own lab CA process on 127.0.0.91 with a private
state dir holding copies of the shared lab's accounts.json, lab.json, seed-version, CA keytab and pki/ (so it reads
templates and enrollment rights from the shared lab AD, like the real one). Timeouts are asserted by the module's
message, never by measuring time. ADCS_PYTHON selects the virtualenv (ansible-core 2.21 or 2.16)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

pytestmark = pytest.mark.lab

MODULE = 'adcs.enrollment.wcce_request'
ADDRESS = '127.0.0.91'
CA_NAME = 'LAB-CA'
TIMEOUT = 4
LAB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'lab')
STATE_FILES = ('accounts.json', 'lab.json', 'seed-version')


def _restore_lab_cdp(lab):
    """The private CA (same key as the lab CA) may publish its CRLs to the shared CDP object: put the lab CA's back."""
    from adcslab.ca.directory import DirectoryConfig, LabDirectory

    enroll = os.path.join(lab['state_dir'], 'ca', 'CertEnroll')
    paths = [os.path.join(enroll, 'LAB-CA.crl'), os.path.join(enroll, 'LAB-CA+.crl')]
    if not all(os.path.exists(path) for path in paths):
        return
    crls = [read(path) for path in paths]
    directory = LabDirectory(DirectoryConfig.discover(lab['state_dir']))
    try:
        directory.publish_crl('LAB-CA', lab['ca']['netbios_name'], crls[0], crls[1])
    finally:
        directory.close()


class _PrivateCA(object):
    """A lab CA process on ADDRESS with its own state dir (and so its own faults.json)."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.proc = None
        self.endpoints = None

    def log(self):
        texts = []
        for name in ('labca.stdout', 'labca.log'):
            try:
                texts.append(read(os.path.join(self.state_dir, name)).decode('utf-8', 'replace')[-6000:])
            except OSError:
                pass
        return '\n'.join(texts)

    def start(self, wait=60):
        env = dict(os.environ, PYTHONPATH=LAB_DIR + os.pathsep + os.environ.get('PYTHONPATH', ''))
        with open(os.path.join(self.state_dir, 'labca.stdout'), 'ab') as out:
            self.proc = subprocess.Popen([sys.executable, '-m', 'adcslab.wcce.server', '--state-dir', self.state_dir,
                                          '--address', ADDRESS], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        path = os.path.join(self.state_dir, 'ca-endpoints.json')
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('lab CA exited with %s\n%s' % (self.proc.returncode, self.log()))
            if os.path.exists(path):
                with open(path, encoding='utf-8') as handle:
                    self.endpoints = json.load(handle)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError('lab CA did not write ca-endpoints.json within %s s\n%s' % (wait, self.log()))

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def private_state(lab, tmp_path_factory, name):
    """A new private state dir with copies of the shared lab's STATE_FILES and pki/."""
    state = str(tmp_path_factory.mktemp(name))
    for item in STATE_FILES + (os.path.basename(lab['ca']['keytab']),):
        shutil.copy(os.path.join(lab['state_dir'], item), os.path.join(state, item))
    shutil.copytree(os.path.join(lab['state_dir'], 'pki'), os.path.join(state, 'pki'))
    return state


@pytest.fixture(scope='module')
def private_ca(lab, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the lab CA listens on port 135, which needs root (the lab runs as root)')
    server = _PrivateCA(private_state(lab, tmp_path_factory, 'faultint-state')).start()
    yield server
    rc = server.stop()
    _restore_lab_cdp(lab)
    assert rc == 0, 'private lab CA did not exit cleanly (rc %r)\n%s' % (rc, server.log())


class _Faults(object):
    """Knobs of the private CA; ``applied(knob)`` tells whether the CA logged applying it since the test began."""

    def __init__(self, server):
        self.server = server
        self.log_path = os.path.join(server.state_dir, 'labca.log')
        self.offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0

    def __call__(self, **knobs):
        from adcslab.faults import set_faults
        set_faults(self.server.state_dir, **knobs)

    def applied(self, knob):
        with open(self.log_path, 'rb') as handle:
            handle.seek(self.offset)
            return ('fault %s:' % knob) in handle.read().decode('utf-8', 'replace')


@pytest.fixture()
def faults(private_ca):
    """faults(**knobs) sets knobs on the private CA; every knob is cleared before and after each test."""
    from adcslab.faults import clear_faults

    clear_faults(private_ca.state_dir)
    yield _Faults(private_ca)
    clear_faults(private_ca.state_dir)


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def spki(key_or_cert):
    return key_or_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def web_args(lab, tmp_path, name, **extra):
    acct = lab['accounts']['enroller']
    common_name = '%s.lab.adcs.test' % name
    args = {'ca_host': ADDRESS, 'ca_name': CA_NAME, 'username': '%s@%s' % (acct['username'], lab['domain']),
            'password': acct['password'], 'ca_bundle': lab['ca_bundle'], 'template': 'WebServer',
            'common_name': common_name,
            'subject_alt_name': ['DNS:%s' % common_name], 'timeout': TIMEOUT,
            'private_key_path': str(tmp_path / ('%s.key' % name)),
            'certificate_path': str(tmp_path / ('%s.crt' % name))}
    args.update(extra)
    return args


def snapshot(tmp_path):
    """Name -> content of every file in tmp_path."""
    return dict((name, read(str(tmp_path / name))) for name in sorted(os.listdir(str(tmp_path))))


def assert_failed(rc, result, *fragments):
    assert rc != 0, result
    assert result.get('failed') is True, result
    for fragment in fragments:
        assert fragment in result['msg'], (fragment, result['msg'])
    assert 'Traceback' not in result['msg']
    assert 'PRIVATE KEY' not in json.dumps(result)


def assert_issued(rc, result, args):
    assert rc == 0, result
    assert result['changed'] is True and result['disposition'] == 'issued', result
    assert result['msg'] == 'Certificate issued by LAB-CA (request ID %d) and written to %s' % (
        result['request_id'], args['certificate_path'])
    cert = x509.load_pem_x509_certificate(read(args['certificate_path']))
    key = serialization.load_pem_private_key(read(args['private_key_path']), None)
    assert spki(cert) == spki(key)


TIMEOUT_REMEDY = 'Check that the CA host is reachable on TCP 135 and the dynamic RPC ports, or raise the timeout.'
DROP_REMEDY = ('The connection was lost during the call: run the task again. A request may have been processed '
               '(check the CA log and issued requests).')
ACCESS_REMEDY = ('The account may not use the CA over DCOM: on Windows add it to "Certificate Service DCOM Access" '
                 'and check the CA Request Certificates permission.')


def assert_error_shape(result, disposition, hresult, name, remedy):
    assert result['changed'] is False
    assert result['disposition'] == disposition
    assert result['error']['hresult'] == hresult
    assert result['error']['error_name'] == name
    assert result['error']['remedy'] == remedy
    assert result['certificate_path']


def applied(faults, knob):
    """The private CA logged applying the knob during this test: the fault was really in play."""
    return faults.applied(knob)


def issued_first(ansible, lab, tmp_path, name):
    """A first, fault-free enrollment: returns (args, files on disk)."""
    args = web_args(lab, tmp_path, name)
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    return args, snapshot(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# no fault: the private CA serves the module like the shared one
# ------------------------------------------------------------------------------------------------------------
def test_private_ca_issues_without_faults(lab, ansible, tmp_path, faults):
    args = web_args(lab, tmp_path, 'nofault')
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    assert result['ca']['host'] == ADDRESS


# ------------------------------------------------------------------------------------------------------------
# delay_seconds
# ------------------------------------------------------------------------------------------------------------
def test_delay_longer_than_timeout_fails_cleanly(lab, ansible, tmp_path, faults):
    args, before = issued_first(ansible, lab, tmp_path, 'delay')
    faults(delay_seconds=TIMEOUT + 4)
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True))
    assert_failed(rc, result)
    assert result['msg'] == ('ICertRequestD2.Request2 timed out after %d s (%s). What to do: %s'
                             % (TIMEOUT, ADDRESS, TIMEOUT_REMEDY))
    assert_error_shape(result, 'error', None, None, TIMEOUT_REMEDY)
    assert snapshot(tmp_path) == before


def test_delay_shorter_than_timeout_succeeds(lab, ansible, tmp_path, faults):
    faults(delay_seconds=1)
    args = web_args(lab, tmp_path, 'shortdelay')
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    assert applied(faults, 'delay_seconds')


# ------------------------------------------------------------------------------------------------------------
# drop_connection
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('when', ['true', 'after'])
def test_drop_connection_fails_cleanly_without_writing(lab, ansible, tmp_path, faults, when):
    faults(drop_connection=when, method='Request2')
    args = web_args(lab, tmp_path, 'drop')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result)
    assert result['msg'] == ('ICertRequestD2.Request2 failed: the CA closed the connection (%s). What to do: %s'
                             % (ADDRESS, DROP_REMEDY))
    assert_error_shape(result, 'error', None, None, DROP_REMEDY)
    assert os.listdir(str(tmp_path)) == [], 'nothing written, not even the generated key'
    assert applied(faults, 'drop_connection')


def test_drop_connection_after_processing_keeps_previous_files(lab, ansible, tmp_path, faults):
    args, before = issued_first(ansible, lab, tmp_path, 'dropkeep')
    faults(drop_connection='after', method='Request2')
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True))
    assert_failed(rc, result, 'ICertRequestD2.Request2 failed: the CA closed the connection (%s)' % ADDRESS,
                  DROP_REMEDY)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------------------
# hresult
# ------------------------------------------------------------------------------------------------------------
def test_hresult_access_denied_on_request(lab, ansible, tmp_path, faults):
    args, before = issued_first(ansible, lab, tmp_path, 'hresult')
    faults(hresult=0x80070005, method='Request2')
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True))
    assert_failed(rc, result)
    assert result['msg'] == ('The CA "LAB-CA" at %s refused the call; HRESULT 0x80070005 (E_ACCESSDENIED): '
                             'General access denied error. What to do: %s' % (ADDRESS, ACCESS_REMEDY))
    assert_error_shape(result, 'error', '0x80070005', 'E_ACCESSDENIED', ACCESS_REMEDY)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------------------
# disposition
# ------------------------------------------------------------------------------------------------------------
def test_disposition_template_denied(lab, ansible, tmp_path, faults):
    args, before = issued_first(ansible, lab, tmp_path, 'denied')
    faults(disposition=0x80094012, request_id=424242)
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True))
    assert_failed(rc, result)
    meaning = ('The permissions on the certificate template do not allow the current user to enroll for this type '
               'of certificate')
    remedy = ('Grant the account (or one of its groups) the Enroll right on the template, or use another template; '
              'check for an explicit Deny entry.')
    assert result['msg'] == ('The CA LAB-CA did not issue a certificate from template WebServer; HRESULT 0x80094012 '
                             '(CERTSRV_E_TEMPLATE_DENIED): %s; request ID 424242; Denied by Policy Module  0x80094012, '
                             '%s. What to do: %s' % (meaning, meaning, remedy))
    assert_error_shape(result, 'denied', '0x80094012', 'CERTSRV_E_TEMPLATE_DENIED', remedy)
    assert result['request_id'] == 424242 and result['error']['request_id'] == 424242
    assert result['disposition_message'] == 'Denied by Policy Module  0x80094012, %s.' % meaning
    assert snapshot(tmp_path) == before


def test_disposition_pending_with_request_id(lab, ansible, tmp_path, faults):
    faults(disposition=5, request_id=777001)
    args = web_args(lab, tmp_path, 'pending')
    rc, result = ansible.module(MODULE, args)
    assert rc == 0, result
    assert result.get('failed') is not True
    assert result['disposition'] == 'pending' and result['changed'] is True
    assert result['request_id'] == 777001
    assert result['disposition_message'] == 'Taken Under Submission'
    assert result['msg'] == ('Request 777001 is pending approval by a certificate manager of WebServer; run the task '
                             'again with request_id=777001 after a CA manager approved it')
    assert not os.path.exists(args['certificate_path'])
    # the key is kept for the retrieve: it is the one the request was made with
    assert serialization.load_pem_private_key(read(args['private_key_path']), None)


# ------------------------------------------------------------------------------------------------------------
# wrong_key
# ------------------------------------------------------------------------------------------------------------
WRONG_KEY_MSG = ('The CA issued a certificate whose public key differs from the key of the request; nothing was '
                 'written; request ID %d; public key: the certificate is not for the key of the request. What to do: '
                 'Check that request_id belongs to this key and CSR; if it does, report the CA behaviour. The refusal '
                 'is recorded in %s next to the certificate: the CA is not asked again for the same request until the request changes or '
                 'force=true.')


def test_wrong_key_new_enrollment_writes_nothing(lab, ansible, tmp_path, faults):
    faults(wrong_key=True)
    args = web_args(lab, tmp_path, 'wrongnew')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result)
    rid = result['request_id']
    assert isinstance(rid, int) and rid > 0
    assert result['msg'] == WRONG_KEY_MSG % (rid, 'wrongnew.crt.refused')
    assert os.listdir(str(tmp_path)) == ['wrongnew.crt.refused'], 'neither the certificate nor the generated key'
    assert applied(faults, 'wrong_key')


def test_wrong_key_keeps_previous_key_and_certificate(lab, ansible, tmp_path, faults):
    args, before = issued_first(ansible, lab, tmp_path, 'wrongkey')
    faults(wrong_key=True)
    # a new PKCS #10 request (renewal requests are CMS, which the knob passes unchanged)
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True, renewal_request=False))
    assert_failed(rc, result)
    assert result['msg'] == WRONG_KEY_MSG % (result['request_id'], 'wrongkey.crt.refused')
    assert result['error']['request_id'] == result['request_id']
    after = snapshot(tmp_path)
    assert json.loads(after.pop('wrongkey.crt.refused'))['request_id'] == result['request_id']
    assert after == before


# ------------------------------------------------------------------------------------------------------------
# rogue_ca: the reply carries a certificate and chain from a throwaway CA pair named like the real ones
# ------------------------------------------------------------------------------------------------------------
ROGUE_MSG = ('The issued certificate chains to the root CA "%s" (SHA-256 %s), which is not a trusted anchor; nothing '
             'was written; request ID %d; trusted anchors from %s: %s. What to do: If this root is yours, publish it '
             'in CN=Certification Authorities or pin it with ca_bundle or ca_fingerprint; otherwise the CA or its '
             'replies are not genuine.')


def _fp(cert):
    return ':'.join('%02X' % b for b in cert.fingerprint(hashes.SHA256()))


def _rogue_root(faults):
    """The rogue root's SHA-256 the private CA logged (lower-case hex) as colon-separated upper case."""
    with open(faults.log_path, 'rb') as handle:
        handle.seek(faults.offset)
        text = handle.read().decode('utf-8', 'replace')
    digest = text.split('root SHA-256 ')[1][:64]
    return ':'.join(digest[i:i + 2] for i in range(0, 64, 2)).upper()


def _lab_anchor_text(lab):
    """The lab's ca_bundle holds the root and the issuing CA: only the self-signed root is an anchor."""
    root = x509.load_pem_x509_certificate(read(lab['ca']['root_cert']))
    return '"%s" (SHA-256 %s)' % (root.subject.rfc4514_string(), _fp(root)), root


def test_rogue_ca_chain_is_refused_with_its_root(lab, ansible, tmp_path, faults):
    faults(rogue_ca=True)
    args = web_args(lab, tmp_path, 'rogue', chain_path=str(tmp_path / 'rogue-chain.pem'))
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result)
    assert applied(faults, 'rogue_ca')
    anchors, root = _lab_anchor_text(lab)
    rogue = _rogue_root(faults)
    assert rogue != _fp(root)   # same name as the lab root, another key
    assert result['msg'] == ROGUE_MSG % (root.subject.rfc4514_string(), rogue, result['request_id'],
                                         'ca_bundle %s' % lab['ca_bundle'], anchors)
    assert result['error']['request_id'] == result['request_id'] > 0
    assert os.listdir(str(tmp_path)) == [], 'neither key, certificate nor chain is written'


def test_rogue_ca_refused_with_a_pinned_fingerprint_and_the_real_ca_accepted(lab, ansible, tmp_path, faults):
    root = x509.load_pem_x509_certificate(read(lab['ca']['root_cert']))
    args = web_args(lab, tmp_path, 'pinned', ca_fingerprint=[_fp(root)], chain_path=str(tmp_path / 'chain.pem'))
    del args['ca_bundle']
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    chain = x509.load_pem_x509_certificates(read(args['chain_path']))
    assert [c.subject for c in chain] == [x509.load_pem_x509_certificate(read(lab['ca']['cert'])).subject,
                                          root.subject]
    assert _fp(chain[-1]) == _fp(root)
    before = snapshot(tmp_path)
    faults(rogue_ca=True)
    rc, result = ansible.module(MODULE, dict(args, force=True))
    assert_failed(rc, result)
    assert applied(faults, 'rogue_ca')
    assert result['msg'].startswith('The issued certificate chains to the root CA "%s" (SHA-256 %s), which is not a '
                                    'trusted anchor; nothing was written; request ID %d; trusted anchors from '
                                    'ca_fingerprint: "%s" (SHA-256 %s).' % (
                                        root.subject.rfc4514_string(), _rogue_root(faults), result['request_id'],
                                        root.subject.rfc4514_string(), _fp(root)))
    assert snapshot(tmp_path) == before


NO_ANCHOR_MSG = ('No independent trust anchor for the certificates the CA issues: %s, and neither ca_bundle nor '
                 'ca_fingerprint is set; the CA was not contacted. What to do: Set ca_fingerprint (the SHA-256 '
                 'fingerprint of the root CA certificate) or ca_bundle (a PEM file with the root CA certificate), '
                 'or read Active Directory over verified TLS (domain or domain_controller with ldap_scheme=ldaps or '
                 'starttls and validate_certs=true), where the root is in CN=Certification Authorities.')


@pytest.mark.parametrize('extra, why', [
    ({}, 'Active Directory is not used (neither domain nor domain_controller is set)'),
    ({'domain_controller': '127.0.0.11', 'validate_certs': False},
     "validate_certs=false: the domain controller's TLS certificate is not verified"),
    ({'domain_controller': '127.0.0.11', 'ldap_scheme': 'ldap'},
     'Active Directory is read over ldap_scheme=ldap, which does not protect the results against tampering '
     '(Kerberos and NTLM authenticate only the bind here)'),
])
def test_without_independent_anchor_the_ca_is_not_contacted(lab, ansible, tmp_path, faults, extra, why):
    args = web_args(lab, tmp_path, 'noanchor', **extra)
    del args['ca_bundle']
    with open(faults.log_path, 'rb') as handle:
        handle.seek(0, 2)
        offset = handle.tell()
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result)
    assert result['msg'] == NO_ANCHOR_MSG % why
    assert result['request_id'] is None
    assert os.listdir(str(tmp_path)) == []
    with open(faults.log_path, 'rb') as handle:
        handle.seek(offset)
        assert b'request' not in handle.read().lower(), 'the CA saw no request'


# ------------------------------------------------------------------------------------------------------------
# refuse_connections
# ------------------------------------------------------------------------------------------------------------
def test_refuse_connections(lab, ansible, tmp_path, faults):
    args, before = issued_first(ansible, lab, tmp_path, 'refused')
    faults(refuse_connections=True)
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True))
    assert_failed(rc, result)
    remedy = ('Check the CA host name/address, that port 135 and the dynamic RPC ports are reachable, and that the '
              'Certificate Services service is running.')
    # the reset reaches the client while it connects to port 135, while it binds there, or with its first call
    # there (activation)
    unavailable = 'HRESULT 0x800706BA (RPC_S_SERVER_UNAVAILABLE): The RPC server is unavailable'
    assert result['msg'] in (
        'Connecting to the CA endpoint mapper (port 135) failed (%s); %s; Could not connect: [Errno 104] Connection '
        'reset by peer. What to do: %s' % (ADDRESS, unavailable, remedy),
        'Connecting to the CA endpoint mapper (port 135) failed: the CA reset the connection (%s); %s. What to do: %s'
        % (ADDRESS, unavailable, remedy),
        'Activating CCertRequestD on the CA failed: the CA reset the connection (%s); %s. What to do: %s'
        % (ADDRESS, unavailable, remedy)), result['msg']
    assert_error_shape(result, 'error', '0x800706BA', 'RPC_S_SERVER_UNAVAILABLE', remedy)
    assert snapshot(tmp_path) == before
    assert applied(faults, 'refuse_connections')


# ------------------------------------------------------------------------------------------------------------
# slow_activation_seconds
# ------------------------------------------------------------------------------------------------------------
def test_slow_activation_longer_than_timeout(lab, ansible, tmp_path, faults):
    args, before = issued_first(ansible, lab, tmp_path, 'slowact')
    faults(slow_activation_seconds=TIMEOUT + 4)
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True))
    assert_failed(rc, result)
    assert result['msg'] == ('Activating CCertRequestD on the CA timed out after %d s (%s). What to do: %s'
                             % (TIMEOUT, ADDRESS, TIMEOUT_REMEDY))
    assert_error_shape(result, 'error', None, None, TIMEOUT_REMEDY)
    assert snapshot(tmp_path) == before


def test_slow_activation_shorter_than_timeout(lab, ansible, tmp_path, faults):
    faults(slow_activation_seconds=1)
    args = web_args(lab, tmp_path, 'slowok')
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    assert applied(faults, 'slow_activation_seconds')


# ------------------------------------------------------------------------------------------------------------
# times=1: a fault that happens once, then a retry succeeds
# ------------------------------------------------------------------------------------------------------------
def test_fault_once_then_second_run_succeeds(lab, ansible, tmp_path, faults):
    faults(hresult=0x80070005, method='Request2', times=1)
    args = web_args(lab, tmp_path, 'once')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, 'The CA "LAB-CA" at %s refused the call; HRESULT 0x80070005 (E_ACCESSDENIED)' % ADDRESS)
    assert os.listdir(str(tmp_path)) == []
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: enroll, retried
      adcs.enrollment.wcce_request: "{{ wcce_args }}"
      register: enrolled
      until: enrolled is succeeded
      retries: 2
      delay: 1
"""


def test_fault_once_with_task_retries(lab, ansible, tmp_path, faults):
    faults(drop_connection='true', method='Request2', times=1)
    out = tmp_path / 'out'
    out.mkdir()
    args = web_args(lab, out, 'retried')
    playbook = tmp_path / 'retry.yml'
    playbook.write_text(PLAYBOOK)
    rc, data = ansible.playbook(str(playbook), {'wcce_args': args})
    assert rc == 0, json.dumps(data)[-3000:]
    result = data['plays'][0]['tasks'][0]['hosts']['localhost']
    assert result['attempts'] == 2, result
    assert result['disposition'] == 'issued' and result['changed'] is True
    assert data['stats']['localhost']['failures'] == 0
    cert = x509.load_pem_x509_certificate(read(args['certificate_path']))
    assert spki(cert) == spki(serialization.load_pem_private_key(read(args['private_key_path']), None))
    assert applied(faults, 'drop_connection')
