# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_request run by the real `ansible` / `ansible-playbook` against the lab CA.

ADCS_PYTHON selects the virtualenv (ansible-core 2.21 in .venv, 2.16 in .venv-oldest)."""

import json
import os
import re
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.lab

MODULE = 'adcs.enrollment.wcce_request'
UNREACHABLE = '127.0.0.199'


@pytest.fixture(scope='module')
def ca_admin(lab):
    from adcslab.ca import CertificationAuthority
    ca = CertificationAuthority.open(lab['state_dir'])
    yield ca
    close = getattr(ca, 'close', None)
    if close:
        close()


def creds(lab, who='enroller', **extra):
    acct = lab['accounts'][who]
    args = {'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'], 'ca_bundle': lab['ca_bundle'],
            'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password']}
    args.update(extra)
    return args


def files(tmp_path, name='web'):
    return {'private_key_path': str(tmp_path / ('%s.key' % name)),
            'certificate_path': str(tmp_path / ('%s.crt' % name))}


def web_args(lab, tmp_path, name='web', **extra):
    cn = '%s.lab.adcs.test' % name
    args = creds(lab, template='WebServer', common_name=cn, subject_alt_name=['DNS:%s' % cn])
    args.update(files(tmp_path, name))
    args.update(extra)
    return args


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def load_cert(path):
    data = read(path)
    if data.startswith(b'-----'):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def spki(key_or_cert):
    return key_or_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def lab_ca_cert(lab):
    return x509.load_pem_x509_certificate(read(lab['ca']['cert']))


def no_secrets(result, *secrets):
    text = json.dumps(result)
    for secret in secrets:
        assert secret not in text
    assert 'PRIVATE KEY' not in text


def ca_log_size(lab):
    try:
        return os.path.getsize(lab['ca']['log'])
    except OSError:
        return 0


def ca_log_since(lab, offset):
    with open(lab['ca']['log'], 'rb') as handle:
        handle.seek(offset)
        return handle.read().decode('utf-8', 'replace')


def assert_failed(rc, result, *fragments):
    assert rc != 0, result
    assert result.get('failed') is True, result
    for fragment in fragments:
        assert fragment in result['msg'], (fragment, result['msg'])
    assert 'Traceback' not in result['msg']


# ------------------------------------------------------------------------------------------------------------
# issue, idempotency, check and diff mode
# ------------------------------------------------------------------------------------------------------------
def test_issue_then_unchanged_without_ca_contact(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, chain_path=str(tmp_path / 'chain.pem'),
                    fullchain_path=str(tmp_path / 'full.pem'))
    rc, result = ansible.module(MODULE, args)
    assert rc == 0, result
    assert result['changed'] is True
    assert result['disposition'] == 'issued'
    assert result['action'] == 'enroll' and result['reason_code'] == 'no_certificate'
    assert isinstance(result['request_id'], int) and result['request_id'] > 0
    assert result['disposition_message'] == 'Issued'
    assert result['key_generated'] is True and result['renewal'] is False
    assert result['ca'] == {'name': 'LAB-CA', 'host': lab['ca']['address'], 'address': lab['ca']['address'],
                            'source': 'options'}
    assert result['msg'] == 'Certificate issued by LAB-CA (request ID %d) and written to %s' % (
        result['request_id'], args['certificate_path'])
    no_secrets(result, args['password'])

    cert = load_cert(args['certificate_path'])
    key = serialization.load_pem_private_key(read(args['private_key_path']), None)
    assert spki(cert) == spki(key)
    assert stat.S_IMODE(os.stat(args['private_key_path']).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(args['certificate_path']).st_mode) == 0o644
    facts = result['certificate']
    assert facts['subject'] == 'CN=web.lab.adcs.test'
    assert facts['subject_alt_names'] == ['DNS:web.lab.adcs.test']
    assert facts['serial_number'] == '%X' % cert.serial_number
    assert facts['issuer'] == cert.issuer.rfc4514_string()
    assert facts['template']['name'] == 'WebServer'
    assert facts['fingerprint_sha256'] == ':'.join('%02X' % b for b in cert.fingerprint(hashes.SHA256()))
    assert facts['not_after'] == cert.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ')
    assert result['paths'] == {'private_key': args['private_key_path'], 'certificate': args['certificate_path'],
                               'chain': args['chain_path'], 'fullchain': args['fullchain_path']}
    # the certificate chains to the lab CA; the chain file holds the CA up to the root
    cert.verify_directly_issued_by(lab_ca_cert(lab))
    chain = x509.load_pem_x509_certificates(read(args['chain_path']))
    assert chain[0] == lab_ca_cert(lab)
    assert chain[-1].subject == chain[-1].issuer
    full = x509.load_pem_x509_certificates(read(args['fullchain_path']))
    assert full == [cert] + chain

    before = dict((p, read(p)) for p in result['paths'].values())
    # second run: unchanged, and the CA is not contacted (an unreachable CA host proves it)
    rc, again = ansible.module(MODULE, dict(args, ca_host=UNREACHABLE))
    assert rc == 0, again
    assert again['changed'] is False
    assert again['action'] == 'none' and again['reason_code'] == 'up_to_date'
    assert again['disposition'] is None and 'ca' not in again
    assert again['renew_before'] == 30.0 and again['renew_before_source'] == 'default'
    assert again['certificate']['serial_number'] == facts['serial_number']
    assert again['msg'].startswith('The certificate fits: the certificate is valid until ')
    assert dict((p, read(p)) for p in before) == before


def test_compiled_code_is_kept_under_ansiballz_and_loaded_by_the_next_runs(lab, ansible, tmp_path):
    """Under AnsiballZ (sources in a zip), the module keeps the compiled code of its module_utils next to the policy
    cache (0600 in a 0700 directory of the effective user) and the next run loads it instead of compiling: the files
    are not written again. In check mode, or with PYTHONDONTWRITEBYTECODE, nothing is written."""
    cache = tmp_path / 'cache'
    env = {'PYTHONDONTWRITEBYTECODE': None}
    args = web_args(lab, tmp_path, policy_cache_dir=str(cache))
    rc, result = ansible.module(MODULE, args, check=True, extra_env=env)
    assert rc == 0 and result['changed'] is True, result
    assert not cache.exists()   # check mode: no policy cache, no compiled code
    rc, result = ansible.module(MODULE, dict(args, ca_name=None, ca_host=None, domain=lab['domain'],
                                             domain_controller=lab['dc']['address']), extra_env=env)
    assert rc == 0 and result['status'] == 'issued', result
    assert stat.S_IMODE(os.stat(str(cache)).st_mode) == 0o700   # made by the policy cache
    rc, result = ansible.module(MODULE, dict(args, ca_name=None, ca_host=None, domain=lab['domain'],
                                             domain_controller=lab['dc']['address'], force=True), extra_env=env)
    assert rc == 0 and result['status'] == 'renewed', result
    kept = dict((name, os.stat(str(cache / name))) for name in os.listdir(str(cache)) if name.startswith('bytecode-'))
    assert len(kept) > 20 and '_enroller' in ' '.join(kept), sorted(kept)
    assert all(stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid() for info in kept.values())
    rc, result = ansible.module(MODULE, dict(args, ca_name=None, ca_host=None, domain=lab['domain'],
                                             domain_controller=lab['dc']['address'], force=True), extra_env=env)
    assert rc == 0 and result['status'] == 'renewed', result
    again = dict((name, os.stat(str(cache / name))) for name in kept)
    assert all((again[n].st_ino, again[n].st_mtime_ns) == (kept[n].st_ino, kept[n].st_mtime_ns) for n in kept)
    for name in kept:
        os.unlink(str(cache / name))
    rc, result = ansible.module(MODULE, dict(args, ca_name=None, ca_host=None, domain=lab['domain'],
                                             domain_controller=lab['dc']['address'], force=True),
                                extra_env={'PYTHONDONTWRITEBYTECODE': '1'})
    assert rc == 0 and result['status'] == 'renewed', result
    assert not [name for name in os.listdir(str(cache)) if name.startswith('bytecode-')]


def test_check_mode(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'check')
    rc, result = ansible.module(MODULE, args, check=True, diff=True)
    assert rc == 0, result
    assert result['changed'] is True
    assert result['action'] == 'enroll' and result['reason'] == 'no certificate present'
    assert result['msg'] == 'A certificate would be requested: no certificate present'
    assert 'ca' not in result and result['disposition'] is None
    assert not os.path.exists(args['certificate_path']) and not os.path.exists(args['private_key_path'])
    assert result['diff']['before'] == {'state': 'absent'}
    assert result['diff']['after']['subject'] == 'CN=check.lab.adcs.test'
    assert result['diff']['after']['subject_alt_names'] == ['DNS:check.lab.adcs.test']
    assert result['diff']['after']['state'] == 'a new certificate would be requested'

    rc, issued = ansible.module(MODULE, args)
    assert rc == 0 and issued['changed'], issued
    rc, result = ansible.module(MODULE, dict(args, ca_host=UNREACHABLE), check=True)
    assert rc == 0 and result['changed'] is False, result
    # check mode inside the renewal window: would renew, writes nothing, does not contact the CA
    before = read(args['certificate_path'])
    rc, result = ansible.module(MODULE, dict(args, ca_host=UNREACHABLE, renew_before=10000), check=True)
    assert rc == 0 and result['changed'] is True and result['reason_code'] == 'renew_window', result
    assert read(args['certificate_path']) == before


def test_create_directories(lab, ansible, tmp_path):
    key_dir, cert_dir = tmp_path / 'private' / 'keys', tmp_path / 'certs'
    args = web_args(lab, tmp_path, 'dirs', private_key_path=str(key_dir / 'dirs.key'),
                    certificate_path=str(cert_dir / 'dirs.crt'), chain_path=str(cert_dir / 'chain' / 'ca.pem'),
                    state_path=str(cert_dir / 'dirs.crt.adcs.json'), create_directories=True)
    # without the option a missing directory fails before the CA is contacted (unchanged behaviour)
    rc, result = ansible.module(MODULE, dict(args, create_directories=False))
    assert_failed(rc, result, 'does not exist')
    # check mode: tells, creates nothing
    rc, result = ansible.module(MODULE, args, check=True)
    assert rc == 0 and result['changed'] is True, result
    assert result['created_directories'] == [str(tmp_path / 'private'), str(cert_dir), str(key_dir),
                                             str(cert_dir / 'chain')]   # parents first
    assert not (tmp_path / 'private').exists() and not cert_dir.exists()
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['created_directories'] == [str(tmp_path / 'private'), str(cert_dir), str(key_dir),
                                             str(cert_dir / 'chain')]   # parents first
    assert stat.S_IMODE(os.stat(str(key_dir)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(str(tmp_path / 'private')).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(str(cert_dir)).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(str(cert_dir / 'chain')).st_mode) == 0o755
    assert os.path.exists(args['state_path'])
    # the no-op run: nothing created, nothing changed, no CA contact; existing directories keep their mode
    os.chmod(str(cert_dir), 0o750)
    rc, again = ansible.module(MODULE, dict(args, ca_host=UNREACHABLE))
    assert rc == 0 and again['changed'] is False and 'created_directories' not in again, again
    assert stat.S_IMODE(os.stat(str(cert_dir)).st_mode) == 0o750


def test_create_directories_that_cannot_be_created(lab, ansible, tmp_path):
    (tmp_path / 'file').write_text(u'not a directory')
    args = web_args(lab, tmp_path, 'nodir', certificate_path=str(tmp_path / 'file' / 'certs' / 'nodir.crt'),
                    create_directories=True)
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, 'The directory %s cannot be created by user' % (tmp_path / 'file' / 'certs'),
                  'nothing was requested from the CA')
    assert 'Traceback' not in json.dumps(result.get('msg'))
    assert not os.path.exists(args['private_key_path'])


def test_diff_mode_shows_old_and_new_certificate(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'diff')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0, first
    rc, result = ansible.module(MODULE, dict(args, force=True), diff=True)
    assert rc == 0 and result['changed'], result
    assert result['diff']['before']['serial_number'] == first['certificate']['serial_number']
    assert result['diff']['after']['serial_number'] == result['certificate']['serial_number']
    assert result['diff']['before']['serial_number'] != result['diff']['after']['serial_number']


# ------------------------------------------------------------------------------------------------------------
# renewal
# ------------------------------------------------------------------------------------------------------------
def test_renew_inside_window_keeps_key_and_sends_renewal_request(lab, ansible, tmp_path, ca_admin):
    args = web_args(lab, tmp_path, 'renew')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0, first
    key_before = read(args['private_key_path'])
    rc, result = ansible.module(MODULE, dict(args, renew_before=10000))
    assert rc == 0, result
    assert result['changed'] is True and result['disposition'] == 'issued'
    assert result['reason_code'] == 'renew_window' and 'within the renewal window of 10000' in result['reason']
    assert result['renewal'] is True and result['key_generated'] is False
    assert 'private_key' not in result['paths']
    assert read(args['private_key_path']) == key_before
    assert result['certificate']['serial_number'] != first['certificate']['serial_number']
    assert result['certificate']['subject_alt_names'] == ['DNS:renew.lab.adcs.test']
    row = ca_admin.get_request(result['request_id'])
    assert row['flags'] & 0xFF00 == 0x300          # CR_IN_PKCS7: the CMS renewal request
    assert row['request_type'] != 'pkcs10', row['request_type']
    # outside the window again: unchanged
    rc, again = ansible.module(MODULE, args)
    assert rc == 0 and again['changed'] is False, again


def test_short_lived_template_renewal_window(lab, ansible, tmp_path):
    """ShortLived: 2 days validity, 1 day renewal period in the lab AD."""
    args = web_args(lab, tmp_path, 'short', template='ShortLived')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0 and first['disposition'] == 'issued', first
    facts = first['certificate']
    # a version 2 template: the certificate names it by OID (szOID_CERTIFICATE_TEMPLATE) only
    assert facts['template']['oid'].startswith('1.3.6.1.4.1.311.21.8.') and facts['template']['name'] is None
    # without AD, the default window is a third of the lifetime (not 30 days, which would renew on every run)
    rc, again = ansible.module(MODULE, dict(args, ca_host=UNREACHABLE))
    assert rc == 0 and again['changed'] is False, again
    assert again['renew_before_source'] == 'lifetime' and 0.6 < again['renew_before'] < 0.7
    # with AD, the template's renewal period (1 day)
    rc, again = ansible.module(MODULE, dict(args, domain=lab['domain'], domain_controller=lab['dc']['address'],
                                            ca_bundle=lab['ca_bundle']))
    assert rc == 0 and again['changed'] is False, again
    assert again['renew_before_source'] == 'template' and again['renew_before'] == 1.0
    # a window larger than the remaining validity renews, with a renewal request and the same key
    rc, renewed = ansible.module(MODULE, dict(args, renew_before=3))
    assert rc == 0 and renewed['changed'] and renewed['reason_code'] == 'renew_window', renewed
    assert renewed['renewal'] is True and renewed['key_generated'] is False
    assert renewed['certificate']['serial_number'] != facts['serial_number']


def test_force_with_new_key_and_backup(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'rekey')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0, first
    old_key, old_cert = read(args['private_key_path']), read(args['certificate_path'])
    rc, result = ansible.module(MODULE, dict(args, force=True, regenerate_key=True, backup=True))
    assert rc == 0, result
    assert result['changed'] is True and result['reason_code'] == 'force'
    assert result['renewal'] is True and result['key_generated'] is True
    new_key = serialization.load_pem_private_key(read(args['private_key_path']), None)
    assert read(args['private_key_path']) != old_key
    assert spki(load_cert(args['certificate_path'])) == spki(new_key)
    backups = result['backup_files']
    assert set(backups) == {args['private_key_path'], args['certificate_path']}
    assert read(backups[args['private_key_path']]) == old_key
    assert read(backups[args['certificate_path']]) == old_cert


def test_force_keeps_key_without_regenerate(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'force')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0, first
    key = read(args['private_key_path'])
    rc, result = ansible.module(MODULE, dict(args, force=True, renewal_request=False))
    assert rc == 0 and result['changed'] and result['renewal'] is False and result['key_generated'] is False
    assert read(args['private_key_path']) == key
    assert result['certificate']['serial_number'] != first['certificate']['serial_number']


def test_subject_change_triggers_new_request(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'subj')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0, first
    rc, result = ansible.module(MODULE, dict(args, subject_alt_name=['DNS:subj.lab.adcs.test',
                                                                     'DNS:alias.lab.adcs.test']))
    assert rc == 0 and result['changed'], result
    assert result['reason_code'] == 'sans_changed'
    assert 'missing DNS:alias.lab.adcs.test' in result['reason']
    assert result['certificate']['subject_alt_names'] == ['DNS:alias.lab.adcs.test', 'DNS:subj.lab.adcs.test']


# ------------------------------------------------------------------------------------------------------------
# pending -> approve -> retrieve
# ------------------------------------------------------------------------------------------------------------
def test_pending_then_approve_then_retrieve(lab, ansible, tmp_path, ca_admin):
    args = web_args(lab, tmp_path, 'approval', template='WebServerApproval')
    rc, result = ansible.module(MODULE, args)
    assert rc == 0, result
    assert result.get('failed') is not True
    assert result['disposition'] == 'pending' and result['changed'] is True
    rid = result['request_id']
    assert result['disposition_message'] == 'Taken Under Submission'
    assert result['msg'] == ('Request %d is pending approval by a certificate manager of WebServerApproval; run the '
                             'task again with request_id=%d after a CA manager approved it' % (rid, rid))
    assert not os.path.exists(args['certificate_path'])
    key = serialization.load_pem_private_key(read(args['private_key_path']), None)  # kept for the retrieve

    # still pending: not changed, not failed
    rc, still = ansible.module(MODULE, dict(args, request_id=rid))
    assert rc == 0 and still['disposition'] == 'pending' and still['changed'] is False, still

    ca_admin.approve(rid)
    rc, got = ansible.module(MODULE, dict(args, request_id=rid))
    assert rc == 0, got
    assert got['changed'] is True and got['disposition'] == 'issued' and got['action'] == 'retrieve'
    assert got['request_id'] == rid
    assert spki(load_cert(args['certificate_path'])) == spki(key)
    rc, again = ansible.module(MODULE, dict(args, request_id=rid, ca_host=UNREACHABLE))
    assert rc == 0 and again['changed'] is False, again


def test_pending_with_regenerated_key_keeps_old_key(lab, ansible, tmp_path, ca_admin):
    base = web_args(lab, tmp_path, 'pendkey')
    rc, first = ansible.module(MODULE, base)
    assert rc == 0, first
    old_key, old_cert = read(base['private_key_path']), read(base['certificate_path'])
    args = dict(base, template='WebServerApproval', force=True, regenerate_key=True, renewal_request=False)
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'pending', result
    pending = base['private_key_path'] + '.pending'
    assert result['pending_private_key_path'] == pending and os.path.exists(pending)
    assert read(base['private_key_path']) == old_key and read(base['certificate_path']) == old_cert
    ca_admin.approve(result['request_id'])
    rc, got = ansible.module(MODULE, dict(args, request_id=result['request_id'], force=False,
                                          template='WebServerApproval'))
    assert rc == 0 and got['disposition'] == 'issued', got
    assert not os.path.exists(pending)
    new_key = serialization.load_pem_private_key(read(base['private_key_path']), None)
    assert spki(load_cert(base['certificate_path'])) == spki(new_key)
    assert read(base['private_key_path']) != old_key


def test_retrieve_denied_request_fails(lab, ansible, tmp_path, ca_admin):
    args = web_args(lab, tmp_path, 'deny', template='WebServerApproval')
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'pending', result
    ca_admin.deny(result['request_id'])
    rc, got = ansible.module(MODULE, dict(args, request_id=result['request_id']))
    assert_failed(rc, got, 'Retrieving request %d failed' % result['request_id'],
                  'request ID %d' % result['request_id'], 'What to do:')
    assert got['disposition'] == 'denied'
    assert not os.path.exists(args['certificate_path'])


# ------------------------------------------------------------------------------------------------------------
# errors: every message asserted
# ------------------------------------------------------------------------------------------------------------
def test_denied_user(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'denied')
    args.update(creds(lab, 'denied'))
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, 'The CA LAB-CA did not issue a certificate from template WebServer',
                  'HRESULT 0x80094012 (CERTSRV_E_TEMPLATE_DENIED)', 'request ID %s' % result['request_id'],
                  'What to do: Grant the account (or one of its groups) the Enroll right on the template')
    assert result['disposition'] == 'denied'
    assert 'do not allow the current user to enroll' in result['disposition_message']
    no_secrets(result, args['password'])
    assert not os.path.exists(args['private_key_path']) and not os.path.exists(args['certificate_path'])


def test_group_member_may_enroll(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'group')
    args.update(creds(lab, 'groupmember'))
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result


def test_unknown_template(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'unknown', template='NoSuchTemplate')
    rc, result = ansible.module(MODULE, args)
    rid = result.get('request_id')
    assert_failed(rc, result, 'The CA LAB-CA did not issue a certificate from template NoSuchTemplate',
                  'HRESULT 0x80094800 (CERTSRV_E_UNSUPPORTED_CERT_TYPE)', 'request ID %s' % rid,
                  'What to do: Publish the template on this CA')
    assert isinstance(rid, int) and rid > 0
    assert result['disposition'] == 'denied'
    assert result['error']['hresult'] == '0x80094800'
    assert result['error']['error_name'] == 'CERTSRV_E_UNSUPPORTED_CERT_TYPE'
    # nothing written, not even the generated key
    assert not os.path.exists(args['private_key_path']) and not os.path.exists(args['certificate_path'])


def test_failed_renewal_leaves_previous_files_untouched(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'keep')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0, first
    before = (read(args['private_key_path']), read(args['certificate_path']))
    rc, result = ansible.module(MODULE, dict(args, template='NoSuchTemplate', force=True, regenerate_key=True))
    assert_failed(rc, result, 'CERTSRV_E_UNSUPPORTED_CERT_TYPE')
    assert (read(args['private_key_path']), read(args['certificate_path'])) == before
    assert sorted(os.listdir(str(tmp_path))) == ['keep.crt', 'keep.key']


def test_unknown_ca_name(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'caname', ca_name='NO-SUCH-CA')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, 'The CA "NO-SUCH-CA" at %s refused the call (is "NO-SUCH-CA" the CA name?)'
                  % lab['ca']['address'], 'HRESULT 0x80070057 (E_INVALIDARG)',
                  'What to do: Check the CA name')
    assert not os.path.exists(args['certificate_path'])


def test_bad_password(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'badpw', password='Wrong-Passw0rd')
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, 'refused (%s)' % lab['ca']['address'], 'E_ACCESSDENIED',
                  'What to do: Check user name, domain and password/NT hash')
    no_secrets(result, 'Wrong-Passw0rd')
    assert not os.path.exists(args['private_key_path'])


def test_key_too_small(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'small', template='WebServer4096', key_size=2048)
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, 'did not issue a certificate from template WebServer4096',
                  'HRESULT 0x80094811 (CERTSRV_E_KEY_LENGTH)', 'request ID %s' % result['request_id'],
                  'What to do:')
    rc, result = ansible.module(MODULE, dict(args, key_size=4096))
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['certificate']['public_key'] == {'type': 'rsa', 'size': 4096}


def test_existing_key_of_other_size_is_never_replaced_silently(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'size')
    rc, first = ansible.module(MODULE, args)
    assert rc == 0, first
    rc, result = ansible.module(MODULE, dict(args, key_size=3072))
    assert_failed(rc, result, 'does not fit the requested key parameters',
                  'RSA key has 2048 bits but 3072 are wanted', 'regenerate_key=true')
    rc, result = ansible.module(MODULE, dict(args, key_size=3072, regenerate_key=True))
    assert rc == 0 and result['certificate']['public_key']['size'] == 3072, result


def test_ca_unreachable(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'down', ca_host=UNREACHABLE, timeout=5)
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result,
                  'Connecting to the CA endpoint mapper (port 135) failed: connection refused (%s)' % UNREACHABLE,
                  'HRESULT 0x800706BA (RPC_S_SERVER_UNAVAILABLE)', 'What to do: Check the CA host name/address')
    assert not os.path.exists(args['private_key_path'])


def test_missing_key_and_csr_is_an_input_error(lab, ansible, tmp_path):
    args = creds(lab, template='WebServer', certificate_path=str(tmp_path / 'x.crt'))
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, 'give private_key_path (the key is generated there when missing) or a CSR')


# ------------------------------------------------------------------------------------------------------------
# variants: CSR, DER, ECDSA, PKCS#12, NT hash, discovery, many requests over one session, playbook + group
# ------------------------------------------------------------------------------------------------------------
def test_csr_path_and_der_output(lab, ansible, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'csr.lab.adcs.test')]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName('csr.lab.adcs.test')]), critical=False)
           .sign(key, hashes.SHA384()))
    csr_path = tmp_path / 'req.csr'
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    args = creds(lab, template='WebServer', csr_path=str(csr_path), certificate_path=str(tmp_path / 'csr.cer'),
                 fullchain_path=str(tmp_path / 'csr.p7b'), format='der')
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    cert = x509.load_der_x509_certificate(read(args['certificate_path']))
    assert spki(cert) == spki(key)
    assert result['certificate']['public_key'] == {'type': 'rsa', 'size': 3072}
    from cryptography.hazmat.primitives.serialization import pkcs7
    bundle = pkcs7.load_der_pkcs7_certificates(read(args['fullchain_path']))  # a SET: order is not kept
    assert cert in bundle and lab_ca_cert(lab) in bundle and len(bundle) == 3
    rc, again = ansible.module(MODULE, dict(args, ca_host=UNREACHABLE))
    assert rc == 0 and again['changed'] is False, again


def test_pkcs12_encrypted_key_and_nt_hash(lab, ansible, tmp_path):
    acct = lab['accounts']['enroller']
    args = web_args(lab, tmp_path, 'p12', key_type='rsa', key_size=3072, auth='ntlm',
                    pkcs12_path=str(tmp_path / 'p12.p12'), pkcs12_passphrase='p12-Secret',
                    private_key_passphrase='key-Secret')
    del args['password']
    args['nt_hash'] = acct['nt_hash']
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    no_secrets(result, acct['nt_hash'], 'p12-Secret', 'key-Secret')
    key = serialization.load_pem_private_key(read(args['private_key_path']), b'key-Secret')
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    p_key, p_cert, p_cas = pkcs12.load_key_and_certificates(read(args['pkcs12_path']), b'p12-Secret')
    assert spki(p_key) == spki(key) and p_cert == load_cert(args['certificate_path'])
    assert p_cas and p_cas[0] == lab_ca_cert(lab)
    assert stat.S_IMODE(os.stat(args['pkcs12_path']).st_mode) == 0o600
    p12_before = read(args['pkcs12_path'])
    rc, again = ansible.module(MODULE, args)
    assert rc == 0 and again['changed'] is False, again
    assert read(args['pkcs12_path']) == p12_before
    # a lost PKCS#12 is rebuilt from the certificate on disk: no new certificate
    os.unlink(args['pkcs12_path'])
    rc, refresh = ansible.module(MODULE, args)
    assert rc == 0 and refresh['changed'] is True and refresh['action'] == 'refresh', refresh
    assert refresh['certificate']['serial_number'] == result['certificate']['serial_number']
    assert 'pkcs12_path (%s) is missing' % args['pkcs12_path'] in refresh['reason']


def test_domain_discovery_and_template_renewal_period(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'disco')
    for key in ('ca_host', 'ca_name'):
        del args[key]
    args.update(domain=lab['domain'], domain_controller=lab['dc']['address'], ca_bundle=lab['ca_bundle'])
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['disposition'] == 'issued', result
    assert result['ca']['name'] == 'LAB-CA' and result['ca']['source'] == 'discovery'
    assert result['ca']['host'] == lab['ca']['hostname'] and result['ca']['address'] == lab['ca']['address']
    rc, again = ansible.module(MODULE, args)
    assert rc == 0 and again['changed'] is False, again
    assert again['renew_before_source'] == 'template'   # WebServer: 6 weeks renewal period in the lab AD
    assert again['renew_before'] == 42.0


def test_requests_list_uses_one_session(lab, ansible, tmp_path):
    args = creds(lab, template='WebServer', requests=[
        {'common_name': 'm%d.lab.adcs.test' % i, 'private_key_path': str(tmp_path / ('m%d.key' % i)),
         'certificate_path': str(tmp_path / ('m%d.crt' % i))} for i in range(3)])
    args['requests'][2]['key_size'] = 3072
    offset = ca_log_size(lab)
    rc, result = ansible.module(MODULE, args)
    assert rc == 0, result
    assert result['changed'] is True and len(result['results']) == 3
    assert [r['disposition'] for r in result['results']] == ['issued'] * 3
    assert result['msg'] == '3 requests: issued, issued, issued'
    assert len(set(r['request_id'] for r in result['results'])) == 3
    log = ca_log_since(lab, offset)
    # one session: the three requests arrived on the same (authenticated, sealed) connection to the object
    # exporter. The lab is shared with other tests, so look only at the log lines of our request IDs.
    conns = set()
    for r in result['results']:
        found = re.findall(r'(rpc-conn-[0-9.:]+) adcslab\.wcce\.certsrv INFO dcom request id %d for ' % r['request_id'],
                           log)
        assert len(found) == 1, (r['request_id'], log[-3000:])
        conns.update(found)
    assert len(conns) == 1, conns
    # a failing entry fails the task, the others still run
    args['requests'].append({'template': 'NoSuchTemplate', 'common_name': 'bad.lab.adcs.test',
                             'private_key_path': str(tmp_path / 'bad.key'),
                             'certificate_path': str(tmp_path / 'bad.crt')})
    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result, '1 of 4 requests failed: requests[3]: The CA LAB-CA did not issue a certificate '
                              'from template NoSuchTemplate', 'CERTSRV_E_UNSUPPORTED_CERT_TYPE')
    assert [r['changed'] for r in result['results'][:3]] == [False, False, False]


def test_playbook_with_module_defaults_group(lab, ansible, tmp_path):
    acct = lab['accounts']['groupmember']
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/adcs.enrollment.wcce:
      ca_host: "{{ ca_host }}"
      ca_name: "{{ ca_name }}"
      ca_bundle: "{{ ca_bundle }}"
      username: "{{ user }}"
      auth: ntlm
      nt_hash: "{{ nt_hash }}"
  tasks:
    - name: enroll
      adcs.enrollment.wcce_request:
        template: WebServer
        common_name: play.lab.adcs.test
        private_key_path: "{{ dir }}/play.key"
        certificate_path: "{{ dir }}/play.crt"
        mode: "0640"
      register: first
    - name: again
      adcs.enrollment.wcce_request:
        template: WebServer
        common_name: play.lab.adcs.test
        private_key_path: "{{ dir }}/play.key"
        certificate_path: "{{ dir }}/play.crt"
        mode: "0640"
      register: second
    - ansible.builtin.assert:
        that:
          - first is changed
          - first.disposition == 'issued'
          - second is not changed
''')
    rc, data = ansible.playbook(str(playbook), {
        'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'], 'ca_bundle': lab['ca_bundle'],
        'dir': str(tmp_path),
        'user': 'LAB\\%s' % acct['username'], 'nt_hash': acct['nt_hash']})
    assert rc == 0, json.dumps(data)[-3000:]
    stats = data['stats']['localhost']
    assert stats['failures'] == 0 and stats['changed'] == 1
    assert stat.S_IMODE(os.stat(str(tmp_path / 'play.crt')).st_mode) == 0o640


def test_anchors_from_certification_authorities_over_verified_ldaps(lab, ansible, tmp_path):
    """No ca_bundle nor ca_fingerprint: the root comes from CN=Certification Authorities, read over LDAPS verified
    with the system trust store (SSL_CERT_FILE stands in for a system store that knows the forest's root)."""
    args = creds(lab, domain=lab['domain'], domain_controller=lab['dc']['address'], template='WebServer',
                 common_name='adanchor.lab.adcs.test', chain_path=str(tmp_path / 'chain.pem'), **files(tmp_path))
    del args['ca_bundle']
    rc, result = ansible.module(MODULE, args, extra_env={'SSL_CERT_FILE': lab['ca_bundle']})
    assert rc == 0 and result['disposition'] == 'issued', result
    chain = x509.load_pem_x509_certificates(read(args['chain_path']))
    assert chain == [lab_ca_cert(lab), x509.load_pem_x509_certificate(read(lab['ca']['root_cert']))]
