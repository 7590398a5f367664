# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_install: the certificate files (and a staged new key) put next to the key as one unit, through any writer
with ``write(specs, validator)``; the module-level behaviour is in tests/unit/plugins/modules/test_wcce_install.py."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('cryptography')

from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _install, _keys  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki  # noqa: E402


class RecordingWriter(object):
    """Stages nothing: records the specs and runs the validator on the bytes it would rename into place."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.specs = []

    def write(self, specs, validator=None):
        self.specs = list(specs)
        staged = {}
        for i, spec in enumerate(specs):
            path = self.tmp_path / ('staged-%d' % i)
            path.write_bytes(spec.content)
            staged[spec.path] = str(path)
        if validator is not None:
            validator(staged)
        return {'changed': True}


def _host(tmp_path, staged_new_key=True):
    pki = wcce_pki.pki()
    old, new = wcce_pki.rsa_key('old'), wcce_pki.rsa_key('new')
    (tmp_path / 'web.key').write_bytes(_keys.private_key_bytes(old, 'pem'))
    (tmp_path / 'web.key').chmod(0o600)
    if staged_new_key:
        (tmp_path / 'web.key.new').write_bytes(_keys.private_key_bytes(new, 'pem'))
    return pki, old, new


def test_a_staged_key_and_its_certificate_are_one_write(tmp_path):
    pki, _old, new = _host(tmp_path)
    cert = pki.issue('web01.lab.adcs.test', new, serial=21)
    writer = RecordingWriter(tmp_path)
    result = _install.install(writer, str(tmp_path / 'web.crt'), cert.public_bytes(Encoding.PEM),
                              str(tmp_path / 'web.key'), staged_private_key_path=str(tmp_path / 'web.key.new'))
    assert result['key_switched'] is True and result['changed'] is True
    assert [s.path for s in writer.specs] == [str(tmp_path / 'web.key'), str(tmp_path / 'web.crt')]
    assert writer.specs[0].secret and writer.specs[0].mode == 0o600        # the current key's mode is kept
    assert result['removed'] == [str(tmp_path / 'web.key.new')] and not (tmp_path / 'web.key.new').exists()


def test_a_certificate_of_another_key_writes_nothing(tmp_path):
    pki, _old, _new = _host(tmp_path, staged_new_key=False)
    stranger = pki.issue('web01.lab.adcs.test', wcce_pki.rsa_key('stranger'), serial=22)
    writer = RecordingWriter(tmp_path)
    with pytest.raises(_errors.CertificateError, match='does not belong to the private key'):
        _install.install(writer, str(tmp_path / 'web.crt'), stranger.public_bytes(Encoding.PEM),
                         str(tmp_path / 'web.key'))
    assert writer.specs == []


@pytest.mark.parametrize('kwargs, message', [
    (dict(certificate_content=b'not a certificate'), 'certificate_content cannot be read as certificates'),
    (dict(fmt='p12'), "format must be pem or der, got 'p12'"),
])
def test_bad_input_is_refused_before_any_write(tmp_path, kwargs, message):
    pki, old, _new = _host(tmp_path, staged_new_key=False)
    args = dict(certificate_content=pki.issue('web01.lab.adcs.test', old, serial=23).public_bytes(Encoding.PEM))
    args.update(kwargs)
    writer = RecordingWriter(tmp_path)
    with pytest.raises(_errors.InvalidInput, match=message):
        _install.install(writer, str(tmp_path / 'web.crt'), private_key_path=str(tmp_path / 'web.key'), **args)
    assert writer.specs == []


def test_a_leftover_staged_key_is_not_installed_with_a_certificate_of_the_current_key(tmp_path):
    # an earlier run staged a new key and was interrupted; this run renewed with the current key
    pki, old, _new = _host(tmp_path)
    before = (tmp_path / 'web.key').read_bytes()
    cert = pki.issue('web01.lab.adcs.test', old, serial=24)
    writer = RecordingWriter(tmp_path)
    result = _install.install(writer, str(tmp_path / 'web.crt'), cert.public_bytes(Encoding.PEM),
                              str(tmp_path / 'web.key'), staged_private_key_path=str(tmp_path / 'web.key.new'))
    assert result['key_switched'] is False
    assert [s.path for s in writer.specs] == [str(tmp_path / 'web.crt')]
    assert (tmp_path / 'web.key').read_bytes() == before
    assert result['removed'] == [str(tmp_path / 'web.key.new')] and not (tmp_path / 'web.key.new').exists()


def test_a_certificate_of_neither_key_names_the_staged_key_and_writes_nothing(tmp_path):
    pki, _old, _new = _host(tmp_path)
    stranger = pki.issue('web01.lab.adcs.test', wcce_pki.rsa_key('stranger'), serial=25)
    writer = RecordingWriter(tmp_path)
    with pytest.raises(_errors.CertificateError) as err:
        _install.install(writer, str(tmp_path / 'web.crt'), stranger.public_bytes(Encoding.PEM),
                         str(tmp_path / 'web.key'), staged_private_key_path=str(tmp_path / 'web.key.new'))
    assert str(err.value).startswith('The certificate for %s does not belong to the private key %s; nothing was '
                                     'written' % (tmp_path / 'web.crt', tmp_path / 'web.key.new'))
    assert writer.specs == [] and (tmp_path / 'web.key.new').exists()
