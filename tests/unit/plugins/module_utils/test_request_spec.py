# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_request_spec: the options of a request, merged and re-validated without file or network access."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _request_spec
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    spec,
)


def test_requests_inherit_top_level_and_reject_unknown(tmp_path):
    params = {'template': 'WebServer', 'format': 'der', 'force': False, 'requests': [
        {'private_key_path': str(tmp_path / 'a.key'), 'certificate_path': str(tmp_path / 'a.crt')},
        {'private_key_path': str(tmp_path / 'b.key'), 'certificate_path': str(tmp_path / 'b.crt'),
         'template': 'User', 'force': True}]}
    specs = _request_spec.normalize_requests(params)
    assert [s['template'] for s in specs] == ['WebServer', 'User']
    assert [s['format'] for s in specs] == ['der', 'der']
    assert [s['force'] for s in specs] == [False, True]
    assert [s['index'] for s in specs] == [0, 1]
    params['requests'].append({'certificate_path': 'x', 'colour': 'red'})
    with pytest.raises(_errors.InvalidInput, match=r'requests\[2\] has unknown options: colour'):
        _request_spec.normalize_requests(params)


def test_requests_must_not_share_output_paths(tmp_path):
    same = str(tmp_path / 'same.crt')
    with pytest.raises(_errors.InvalidInput, match=r'requests\[1\]\.certificate_path .* is also written by '
                                                   r'requests\[0\]\.certificate_path'):
        _request_spec.normalize_requests({'template': 'W', 'requests': [
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
