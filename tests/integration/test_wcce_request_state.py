# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_request against the lab CA: the state file (state_path) resumes a pending request and
remembers the template's renewal period, and pipe mode enrolls a CSR on contents alone.

ADCS_PYTHON selects the virtualenv (ansible-core 2.21 in .venv, 2.16 in .venv-oldest)."""

import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

# ca_admin is a fixture of test_wcce_request
from test_wcce_request import ca_admin  # noqa: F401  pylint: disable=unused-import
from test_wcce_request import MODULE, UNREACHABLE, creds, read, spki, web_args

pytestmark = pytest.mark.lab


def test_state_file_resumes_the_pending_request(lab, ansible, tmp_path, ca_admin):  # noqa: F811
    state_path = str(tmp_path / 'approval.crt.adcs.json')
    args = web_args(lab, tmp_path, 'approval', template='WebServerApproval', state_path=state_path,
                    domain=lab['domain'], domain_controller=lab['dc']['address'])
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['status'] == 'pending' and result['changed'] is True, result
    rid = result['request_id']
    assert 'waits for a certificate manager' in result['msg']
    with open(state_path) as handle:
        state = json.load(handle)
    assert (state['format'], state['version'], state['status'], state['request_id']) == \
        ('adcs.enrollment.state', 1, 'pending', rid)
    assert oct(os.stat(state_path).st_mode & 0o777) == oct(0o644)

    # the same task again (no request_id): the pending request is retrieved, not submitted again
    rc, still = ansible.module(MODULE, args)
    assert rc == 0 and still['status'] == 'pending' and still['request_id'] == rid and not still['changed'], still
    ca_admin.approve(rid)
    rc, got = ansible.module(MODULE, args)
    assert rc == 0 and got['status'] == 'issued' and got['action'] == 'retrieve' and got['request_id'] == rid, got
    key = serialization.load_pem_private_key(read(args['private_key_path']), None)
    cert = x509.load_pem_x509_certificate(read(args['certificate_path']))
    assert spki(cert) == spki(key)
    with open(state_path) as handle:
        state = json.load(handle)
    assert state['status'] == 'issued' and state['certificate']['not_after']
    assert state['renewal']['source'] == 'template' and state['renewal']['template'] == 'WebServerApproval'

    # nothing to do: the renewal period comes from the state, not from Active Directory (an unreachable DC)
    rc, again = ansible.module(MODULE, dict(args, domain_controller=UNREACHABLE, ca_host=UNREACHABLE))
    assert rc == 0 and again['status'] == 'unchanged' and not again['changed'], again
    assert again['renew_before_source'] == 'template' and again['renew_before'] == state['renewal']['days']
    assert not again.get('warnings'), again


def test_pipe_mode_enrolls_contents(lab, ansible, tmp_path):
    (tmp_path / 'host').mkdir()
    rc, csr = ansible.module('adcs.enrollment.wcce_csr', {
        'private_key_path': str(tmp_path / 'host' / 'pipe.key'), 'common_name': 'pipe.lab.adcs.test',
        'subject_alt_name': ['DNS:pipe.lab.adcs.test']})
    assert rc == 0 and csr['csr'], csr
    controller = tmp_path / 'controller'
    controller.mkdir()
    args = creds(lab, pipe=True, template='WebServer', csr_content=csr['csr'], common_name='pipe.lab.adcs.test',
                 subject_alt_name=['DNS:pipe.lab.adcs.test'], key_type='rsa', chain_content='',
                 fullchain_content='')
    rc, result = ansible.module(MODULE, args, extra_env={'TMPDIR': str(controller)})
    assert rc == 0 and result['status'] == 'issued' and result['changed'], result
    cert = x509.load_pem_x509_certificate(result['certificate_content'].encode())
    key = serialization.load_pem_private_key(read(str(tmp_path / 'host' / 'pipe.key')), None)
    assert spki(cert) == spki(key)
    assert result['chain_content'].count('BEGIN CERTIFICATE') == 2
    assert result['fullchain_content'].startswith(cert.public_bytes(serialization.Encoding.PEM).decode())
    assert result['refusal_content'] is None and result['new_key'] is False
    assert not [n for n in os.listdir(str(controller)) if n.startswith('adcs-pipe-')], 'no directory left'
    # what the host now holds: nothing to do, no CA contacted
    rc, again = ansible.module(MODULE, dict(
        args, ca_host=UNREACHABLE, certificate_content=result['certificate_content'],
        chain_content=result['chain_content'], fullchain_content=result['fullchain_content'],
        state_content=result['state_content']))
    assert rc == 0 and again['status'] == 'unchanged' and not again['changed'], again
    assert again['state_content'] is None
