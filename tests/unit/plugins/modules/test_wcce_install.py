# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_install: a certificate enrolled elsewhere goes next to its key; a staged new key and the certificate files
switch together, or nothing is written."""

from __future__ import absolute_import, division, print_function

import json
import os
import stat

import pytest

pytest.importorskip('cryptography')

from cryptography.hazmat.primitives import serialization  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _files, _install, _keys, _staged  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.modules import wcce_install  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module  # noqa: E402

PEM = serialization.Encoding.PEM


def run(args, check_mode=False):
    return run_module(wcce_install.main, args, check_mode=check_mode)


def write(path, data):
    with open(str(path), 'wb') as handle:
        handle.write(data)


def read(path):
    with open(str(path), 'rb') as handle:
        return handle.read()


def key_pem(key):
    return _keys.private_key_bytes(key, 'pem')


def setup(tmp_path, old_tag='old', new_tag='new'):
    """A host with the old key and certificate, a staged new key and CSR, and the new certificate's PEM texts."""
    pki = wcce_pki.pki()
    old, new = wcce_pki.rsa_key(old_tag), wcce_pki.rsa_key(new_tag)
    old_cert, new_cert = pki.issue('web01.lab.adcs.test', old, serial=11), pki.issue('web01.lab.adcs.test', new,
                                                                                     serial=12)
    write(tmp_path / 'web.key', key_pem(old))
    os.chmod(str(tmp_path / 'web.key'), 0o600)
    write(tmp_path / 'web.crt', old_cert.public_bytes(PEM))
    write(tmp_path / 'web.csr', b'old csr\n')
    write(tmp_path / 'web.key.new', key_pem(new))
    write(tmp_path / 'web.csr.new', b'new csr\n')
    chain = pki.ca.public_bytes(PEM) + pki.root.public_bytes(PEM)
    args = {'certificate_path': str(tmp_path / 'web.crt'),
            'certificate_content': new_cert.public_bytes(PEM).decode().strip(),  # lookup('file') strips
            'chain_path': str(tmp_path / 'web-chain.crt'), 'chain_content': chain.decode(),
            'fullchain_path': str(tmp_path / 'web-full.crt'),
            'fullchain_content': (new_cert.public_bytes(PEM) + chain).decode(),
            'private_key_path': str(tmp_path / 'web.key'), 'staged_private_key_path': str(tmp_path / 'web.key.new'),
            'csr_path': str(tmp_path / 'web.csr'), 'staged_csr_path': str(tmp_path / 'web.csr.new'),
            'private_key_mode': '0600', 'mode': '0644'}
    return args, old, new, new_cert


def test_staged_key_and_certificate_switch_together(tmp_path):
    args, _old, new, new_cert = setup(tmp_path)
    got = run(args)
    assert not got.failed, got.result
    assert got.result['changed'] and got.result['key_switched']
    assert read(tmp_path / 'web.key') == key_pem(new)
    assert read(tmp_path / 'web.crt') == new_cert.public_bytes(PEM)
    assert read(tmp_path / 'web.csr') == b'new csr\n'
    assert read(tmp_path / 'web-full.crt').count(b'BEGIN CERTIFICATE') == 3
    assert sorted(os.listdir(str(tmp_path))) == ['web-chain.crt', 'web-full.crt', 'web.crt', 'web.csr', 'web.key']
    assert stat.S_IMODE(os.stat(str(tmp_path / 'web.key')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(tmp_path / 'web.crt')).st_mode) == 0o644
    assert 'PRIVATE KEY' not in json.dumps(got.result)
    assert sorted(got.result['removed']) == [args['staged_csr_path'], args['staged_private_key_path']]
    # again (the staged files are gone): the certificate fits the key in place, nothing changes
    again = run(args)
    assert not again.failed and not again.result['changed'] and not again.result['key_switched'], again.result


def test_certificate_for_another_key_writes_nothing(tmp_path):
    args, old, _new, _cert = setup(tmp_path)
    stranger = wcce_pki.pki().issue('victim.lab.adcs.test', wcce_pki.rsa_key('stranger'), serial=13)
    before = dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path)))
    got = run(dict(args, certificate_content=stranger.public_bytes(PEM).decode(),
                   fullchain_content=stranger.public_bytes(PEM).decode()))
    assert got.failed
    assert got.result['msg'] == (
        'The certificate for %s does not belong to the private key %s; nothing was written. What to do: Enroll '
        'again: the certificate and the key it was requested for must be installed together.'
        % (args['certificate_path'], args['staged_private_key_path']))
    assert dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path))) == before


def test_without_staged_key_the_current_key_is_checked(tmp_path):
    args, old, _new, new_cert = setup(tmp_path)
    os.unlink(args['staged_private_key_path'])
    got = run(args)
    assert got.failed and 'does not belong to the private key %s' % args['private_key_path'] in got.result['msg']
    old_cert = wcce_pki.pki().issue('web01.lab.adcs.test', old, serial=14)
    got = run(dict(args, certificate_content=old_cert.public_bytes(PEM).decode(),
                   fullchain_content=old_cert.public_bytes(PEM).decode()))
    assert not got.failed and got.result['changed'] and not got.result['key_switched'], got.result
    assert read(tmp_path / 'web.crt') == old_cert.public_bytes(PEM)
    assert read(tmp_path / 'web.csr') == b'old csr\n', 'the CSR switches only with a new key'


def test_check_mode_changes_nothing(tmp_path):
    args, _old, _new, _cert = setup(tmp_path)
    before = dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path)))
    got = run(args, check_mode=True)
    assert not got.failed and got.result['changed']
    assert dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path))) == before


@pytest.mark.parametrize('change, message', [
    ({'certificate_content': 'not a certificate'}, 'certificate_content cannot be read as certificates; Cannot parse'),
    ({'certificate_content': '-----BEGIN X-----\n-----END X-----\n'}, 'certificate_content holds no certificate'),
    ({'fullchain_content': None, 'fullchain_path': None, 'chain_content': '-----BEGIN CERTIFICATE-----\nAAAA\n'
      '-----END CERTIFICATE-----\n'}, 'chain_content cannot be read as certificates'),
    ('fullchain', 'fullchain_content does not start with the certificate of certificate_content'),
    ({'private_key_passphrase': 'wrong', 'staged_private_key_path': None}, None),
])
def test_bad_input_writes_nothing(tmp_path, change, message):
    args, _old, _new, _cert = setup(tmp_path)
    if change == 'fullchain':
        change = {'fullchain_content': args['chain_content']}
    before = dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path)))
    got = run(dict(args, **change))
    assert got.failed, got.result
    if message:
        assert got.result['msg'].startswith(message), got.result['msg']
    else:
        assert got.result['msg'].startswith('Cannot load the private key %s (wrong private_key_passphrase, or not '
                                            'a key); nothing was written' % args['private_key_path'])
    assert dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path))) == before


def test_a_failed_validation_leaves_the_old_pair(tmp_path):
    """The validator runs on the staged bytes: a writer whose staged key is not the certificate's key refuses."""
    args, old, new, new_cert = setup(tmp_path)

    class SwappingWriter(object):
        def write(self, specs, validator=None):
            specs = [_staged.FileSpec(s.path, key_pem(old) if s.secret else s.content, mode=s.mode, secret=s.secret)
                     for s in specs]
            with _staged.StagedWrite(specs, validator=validator) as sw:
                sw.commit()
            return {'changed': sw.changed}

    before = dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path)))
    with pytest.raises(Exception) as info:
        _install.install(SwappingWriter(), args['certificate_path'], args['certificate_content'],
                         args['private_key_path'], staged_private_key_path=args['staged_private_key_path'])
    assert 'The staged certificate does not match the staged private key; nothing was written' in str(info.value)
    assert dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path))) == before


def test_an_integer_private_key_mode_is_checked_like_a_string(tmp_path):
    """YAML private_key_mode: 420 (0644 unquoted is 0o644) is refused as '0644' is; nothing is written."""
    args, _old, _new, _cert = setup(tmp_path)
    before = dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path)))
    for loose in (0o644, '0644'):
        got = run(dict(args, private_key_mode=loose))
        assert got.failed
        assert got.result['msg'] == (
            'private_key_mode 0644 would make the private key writable by its group or accessible to other users; '
            'use 0600, or 0640 for a group that only reads it.'), got.result['msg']
        assert dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path))) == before


def test_an_inherited_loose_key_mode_is_refused_and_a_symlink_is_not_followed(tmp_path):
    args, _old, new, _cert = setup(tmp_path)
    del args['private_key_mode']
    os.chmod(args['private_key_path'], 0o604)
    before = dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path)))
    got = run(args)
    assert got.failed
    assert got.result['msg'] == (
        'The current mode of the private key %s, 0604 would make the private key writable by its group or '
        'accessible to other users; use 0600, or 0640 for a group that only reads it.' % args['private_key_path'])
    assert dict((name, read(tmp_path / name)) for name in os.listdir(str(tmp_path))) == before
    # the mode is taken from the path itself: lstat, never a symlink's target
    victim = tmp_path / 'victim'
    victim.write_bytes(b'x')
    os.chmod(str(victim), 0o644)
    link = tmp_path / 'link.key'
    os.symlink(str(victim), str(link))
    assert _files.current_secret_mode(str(link)) is None
    os.chmod(args['private_key_path'], 0o640)
    assert _files.current_secret_mode(args['private_key_path']) == 0o640
