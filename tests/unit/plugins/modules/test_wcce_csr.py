# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_csr: key generation on the host, CSR content, idempotency, check mode, key checks."""

from __future__ import absolute_import, division, print_function

import json
import os
import stat

import pytest

pytest.importorskip('cryptography')

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402


from ansible_collections.adcs.enrollment.plugins.modules import wcce_csr  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module  # noqa: E402


def run(args, check_mode=False):
    return run_module(wcce_csr.main, args, check_mode=check_mode)


def spki(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_key_and_csr_then_unchanged(tmp_path):
    args = {'private_key_path': str(tmp_path / 'k.pem'), 'csr_path': str(tmp_path / 'c.csr'),
            'common_name': 'h1.example.com', 'subject_alt_name': ['DNS:h1.example.com', 'IP:192.0.2.1']}
    got = run(args)
    assert not got.failed, got.result
    assert got.result['changed'] and got.result['key_generated']
    assert got.result['public_key'] == {'type': 'rsa', 'size': 2048}
    assert stat.S_IMODE(os.stat(args['private_key_path']).st_mode) == 0o600
    assert 'PRIVATE KEY' not in json.dumps(got.result)
    csr = x509.load_pem_x509_csr(got.result['csr'].encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == 'CN=h1.example.com'
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ['h1.example.com']
    key = serialization.load_pem_private_key(open(args['private_key_path'], 'rb').read(), None)
    assert spki(csr.public_key()) == spki(key.public_key())
    assert open(args['csr_path']).read() == got.result['csr']

    again = run(args)
    assert not again.failed and not again.result['changed'] and not again.result['key_generated']
    assert again.result['csr'] == got.result['csr']

    # another SAN: new CSR for the same key
    changed = run(dict(args, subject_alt_name=['DNS:h1.example.com']))
    assert changed.result['changed'] and not changed.result['key_generated']
    csr2 = x509.load_pem_x509_csr(changed.result['csr'].encode())
    assert spki(csr2.public_key()) == spki(key.public_key())


def test_check_mode_writes_nothing(tmp_path):
    args = {'private_key_path': str(tmp_path / 'k.pem'), 'csr_path': str(tmp_path / 'c.csr'), 'common_name': 'x'}
    got = run(args, check_mode=True)
    assert got.result['changed'] and got.result['key_generated'] and 'csr' not in got.result
    assert os.listdir(str(tmp_path)) == []


def test_ecdsa_and_key_mismatch(tmp_path):
    args = {'private_key_path': str(tmp_path / 'k.pem'), 'common_name': 'x', 'key_type': 'ecdsa',
            'curve': 'secp384r1'}
    got = run(args)
    assert got.result['public_key'] == {'type': 'ecdsa', 'curve': 'secp384r1'}
    bad = run(dict(args, key_type='rsa'))
    assert bad.failed and 'does not fit' in bad.result['msg'] and 'regenerate_key' in bad.result['msg']
    before = open(args['private_key_path'], 'rb').read()
    new = run(dict(args, regenerate_key=True))
    assert new.result['key_generated'] and open(args['private_key_path'], 'rb').read() != before


def test_bad_subject_is_a_clean_failure(tmp_path):
    got = run({'private_key_path': str(tmp_path / 'k.pem'), 'subject': 'CN'})
    assert got.failed and 'Traceback' not in got.result['msg']


@pytest.mark.parametrize('key_mode, csr_mode, want_key, want_csr', [
    (416, 416, 0o640, 0o640),                      # YAML 0640 unquoted
    ('0640', '0600', 0o640, 0o600),
    ('u=rw,g=r,o=', 'u=rw,g=r', 0o640, 0o644),     # a new CSR file starts from 0644, as ansible's file would
])
def test_modes_as_ansible_file_takes_them(tmp_path, key_mode, csr_mode, want_key, want_csr):
    args = {'private_key_path': str(tmp_path / 'k.pem'), 'csr_path': str(tmp_path / 'c.csr'), 'common_name': 'x',
            'private_key_mode': key_mode, 'mode': csr_mode}
    got = run(args)
    assert not got.failed, got.result
    assert stat.S_IMODE(os.stat(args['private_key_path']).st_mode) == want_key
    assert stat.S_IMODE(os.stat(args['csr_path']).st_mode) == want_csr
    assert not run(args).result['changed']


@pytest.mark.parametrize('key_mode, shown', [(0o644, '0644'), ('0660', '0660'), ('o+r', '"o+r" (0604)')])
def test_private_key_mode_open_to_others_is_refused(tmp_path, key_mode, shown):
    got = run({'private_key_path': str(tmp_path / 'k.pem'), 'common_name': 'x', 'private_key_mode': key_mode})
    assert got.failed
    assert got.result['msg'] == ('private_key_mode %s would make the private key writable by its group or accessible '
                                 'to other users; use 0600, or 0640 for a group that only reads it.' % shown)
    assert os.listdir(str(tmp_path)) == []


def test_csr_replaces_a_planted_symlink(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'VICTIM')
    os.chmod(str(victim), 0o600)
    os.symlink(str(victim), str(tmp_path / 'c.csr'))
    got = run({'private_key_path': str(tmp_path / 'k.pem'), 'csr_path': str(tmp_path / 'c.csr'), 'common_name': 'x'})
    assert not got.failed, got.result
    assert not os.path.islink(str(tmp_path / 'c.csr')) and open(str(tmp_path / 'c.csr')).read() == got.result['csr']
    assert victim.read_bytes() == b'VICTIM' and stat.S_IMODE(os.stat(str(victim)).st_mode) == 0o600
