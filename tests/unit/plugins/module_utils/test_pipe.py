# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pipe mode of wcce_request (_pipe): contents in, a private temporary directory with the module's own names in
between, contents out; the request for a new key when regenerate_key meets a CSR of the current key."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.adcs.enrollment.plugins.module_utils import _pipe
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput

NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u'web01')])


def key():
    return ec.generate_private_key(ec.SECP256R1())


def cert_for(private_key):
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(NAME).issuer_name(NAME).public_key(private_key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(private_key, hashes.SHA256()))


def csr_for(private_key):
    return x509.CertificateSigningRequestBuilder().subject_name(NAME).sign(private_key, hashes.SHA256())


def pem(obj):
    return obj.public_bytes(serialization.Encoding.PEM).decode()


class Plan(object):
    def __init__(self, action, current_cert, csr):
        self.action, self.current_cert, self.csr = action, current_cert, csr


@pytest.mark.parametrize('params,message', [
    ({'pipe': True, 'certificate_path': '/x'}, 'certificate_path cannot be used with it'),
    ({'pipe': True, 'private_key_path': '/k', 'state_path': '/s'}, 'private_key_path, state_path cannot be used'),
    ({'pipe': True, 'requests': [{}]}, 'requests cannot be used'),
    ({'pipe': True, 'format': 'der'}, 'format=der cannot be used'),
    ({'certificate_content': 'x', 'new_key': True}, 'certificate_content, new_key need pipe=true'),
])
def test_check_refuses_options_of_the_other_mode(params, message):
    with pytest.raises(InvalidInput) as err:
        _pipe.check(params)
    assert message in err.value.to_message()


def test_check_accepts_each_mode():
    _pipe.check({'pipe': True, 'csr_content': 'x', 'certificate_content': 'y', 'format': 'pem'})
    _pipe.check({'pipe': False, 'certificate_path': '/x', 'new_key': False})


def test_contents_in_files_out_and_the_directory_is_removed():
    params = {'pipe': True, 'csr_content': 'CSR', 'certificate_content': 'CERT', 'chain_content': '',
              'refusal_content': '{"request_id": 1}', 'force': False, 'template': 'WebServer'}
    with _pipe.Pipe(params) as pipe:
        directory = pipe.dir
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        out = pipe.params()
        assert out['certificate_path'] == os.path.join(directory, 'certificate.pem')
        assert out['chain_path'] == os.path.join(directory, 'chain.pem')
        assert 'fullchain_path' not in out or out['fullchain_path'] is None
        assert out['regenerate_key'] is False and out['force'] is False and out['template'] == 'WebServer'
        assert open(out['certificate_path']).read() == 'CERT'
        assert stat.S_IMODE(os.stat(out['certificate_path']).st_mode) == 0o600
        assert not os.path.exists(out['chain_path']), 'no chain yet (empty content)'
        assert open(pipe.path('refusal')).read() == '{"request_id": 1}'
        # the enroller writes the outputs and removes the refusal record
        with open(out['chain_path'], 'w') as handle:
            handle.write('CHAIN')
        os.unlink(pipe.path('refusal'))
        result, = pipe.contents([{'certificate_path': out['certificate_path'], 'paths': {'certificate': 'x'},
                                  'backup_files': {'x': 'y'}, 'status': 'issued'}])
    assert result == {'certificate_content': 'CERT', 'chain_content': 'CHAIN', 'refusal_content': None,
                      'paths': {}, 'backup_files': {}, 'status': 'issued', 'certificate_path': 'certificate_content'}
    assert not os.path.exists(directory)


def test_no_current_certificate_and_new_key_forces():
    with _pipe.Pipe({'pipe': True, 'csr_content': 'CSR', 'new_key': True, 'regenerate_key': True}) as pipe:
        out = pipe.params()
        assert not os.path.exists(out['certificate_path'])
        assert out['force'] is True and out['regenerate_key'] is False
        result, = pipe.contents([{}])
    assert result['certificate_content'] is None and result['refusal_content'] is None


def test_new_key_needed():
    current = key()
    cert, own_csr, other_csr = cert_for(current), csr_for(current), csr_for(key())
    regenerate = {'regenerate_key': True}
    assert _pipe.new_key_needed(regenerate, Plan('enroll', cert, own_csr))
    assert not _pipe.new_key_needed(regenerate, Plan('enroll', cert, other_csr)), 'the CSR is for another key'
    assert not _pipe.new_key_needed({'regenerate_key': False}, Plan('enroll', cert, own_csr))
    assert not _pipe.new_key_needed(dict(regenerate, new_key=True), Plan('enroll', cert, own_csr))
    assert not _pipe.new_key_needed(regenerate, Plan('retrieve', cert, own_csr)), 'a pending request'
    assert not _pipe.new_key_needed(regenerate, Plan('none', cert, own_csr))
    assert not _pipe.new_key_needed(regenerate, Plan('enroll', None, own_csr)), 'first certificate'
    assert pem(own_csr).startswith('-----BEGIN CERTIFICATE REQUEST-----')


def test_refusal_record_as_data():
    """ansible-core before 2.19 turns JSON text passed through a template into a dict."""
    with _pipe.Pipe({'pipe': True, 'csr_content': 'CSR', 'refusal_content': {'request_id': 3}}) as pipe:
        pipe.params()
        assert json.loads(open(pipe.path('refusal')).read()) == {'request_id': 3}


def test_inactive_pipe_changes_nothing():
    params = {'pipe': False, 'certificate_path': '/x'}
    with _pipe.Pipe(params) as pipe:
        assert not pipe.active and pipe.dir is None
        assert pipe.params() is params
        results = [{'certificate_path': '/x'}]
        assert pipe.contents(results) == [{'certificate_path': '/x'}]


def test_no_csr_result_in_check_mode():
    _pipe.check({'pipe': True}, check_mode=True)
    with pytest.raises(InvalidInput) as err:
        _pipe.check({'pipe': True})
    assert 'pipe=true needs csr_content' in err.value.to_message()
    result = _pipe.no_csr_result()
    assert result['status'] == 'would_enroll' and result['changed'] and result['reason_code'] == 'no_certificate'
