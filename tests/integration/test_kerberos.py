# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_request with auth=kerberos against the lab (KDC 127.0.0.11, the lab CA lab['ca']['hostname']).

The lab CA accepts Kerberos with its machine account's keytab (lab['ca']['keytab']); the module names the CA by its
DNS name for the service ticket and connects to the address the DC's DNS gives for it.
"""

import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.lab

MODULE = 'adcs.enrollment.wcce_request'


@pytest.fixture(scope='module')
def kerberos_ready(lab):
    """The lab CA accepts Kerberos (impacket, GSS negotiate at packet privacy): a failure here fails the tests."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos
    from impacket.dcerpc.v5 import transport
    from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_GSS_NEGOTIATE, RPC_C_AUTHN_LEVEL_PKT_PRIVACY
    from impacket.uuid import uuidtup_to_bin
    acct = lab['accounts']['enroller']
    auth = _kerberos.KerberosTicketAuth(lab['ca']['hostname'], realm=lab['realm'], user=acct['username'],
                                        password=acct['password'], kdc=lab['dc']['address'])
    kw = auth.transport_kwargs()
    t = transport.DCERPCTransportFactory('ncacn_ip_tcp:%s[135]' % lab['ca']['address'])
    t.set_credentials(kw['username'], '', kw['domain'], '', '', '', kw['TGT'], kw['TGS'])
    t.set_kerberos(True, kw['kdcHost'])
    dce = t.get_dce_rpc()
    dce.set_auth_type(RPC_C_AUTHN_GSS_NEGOTIATE)
    dce.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    try:
        dce.connect()
        dce.bind(uuidtup_to_bin(('000001A0-0000-0000-C000-000000000046', '0.0')))   # IRemoteSCMActivator
    except Exception as exc:  # e.g. bind_nak 8: a lab CA that predates Kerberos
        pytest.fail('the lab CA does not accept Kerberos (restart the lab): %s' % exc)
    finally:
        dce.disconnect()
    return True


def base_args(lab, tmp_path, name, **extra):
    args = {'ca_host': lab['ca']['hostname'], 'ca_name': lab['ca']['name'], 'auth': 'kerberos',
            'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'private_key_path': str(tmp_path / ('%s.key' % name)), 'certificate_path': str(tmp_path / ('%s.crt' % name))}
    args.update(extra)
    return args


def load_cert(path):
    with open(path, 'rb') as handle:
        data = handle.read()
    return x509.load_pem_x509_certificate(data) if data.startswith(b'-----') else x509.load_der_x509_certificate(data)


def test_machine_keytab_machine_template(lab, ansible, tmp_path, kerberos_ready):
    comp = lab['accounts']['computer']
    rc, result = ansible.module(MODULE, base_args(lab, tmp_path, 'machine', template='Machine',
                                                  username='%s@%s' % (comp['username'], lab['domain']),
                                                  kerberos_keytab=comp['keytab']))
    assert rc == 0 and result.get('changed'), result
    cert = load_cert(str(tmp_path / 'machine.crt'))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn.lower() == comp['dns_host_name'].lower()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert comp['dns_host_name'].lower() in [n.lower() for n in sans.get_values_for_type(x509.DNSName)]


def test_user_password(lab, ansible, tmp_path, kerberos_ready):
    acct = lab['accounts']['enroller']
    rc, result = ansible.module(MODULE, base_args(lab, tmp_path, 'user', template='User',
                                                  username='%s@%s' % (acct['username'], lab['domain']),
                                                  password=acct['password']))
    assert rc == 0 and result.get('changed'), result
    assert acct['password'] not in str(result)


def test_user_ccache(lab, ansible, tmp_path, kerberos_ready):
    if not shutil.which('kinit'):
        pytest.skip('no kinit')
    acct = lab['accounts']['enroller']
    cc = str(tmp_path / 'krb5cc')
    env = dict(os.environ, KRB5_CONFIG=lab['dc']['krb5_conf'])
    subprocess.run(['kinit', '-c', 'FILE:' + cc, '%s@%s' % (acct['username'], lab['realm'])],
                   input=acct['password'] + '\n', env=env, check=True, capture_output=True, text=True, timeout=30)
    rc, result = ansible.module(MODULE, base_args(lab, tmp_path, 'cc', template='User',
                                                  username='%s@%s' % (acct['username'], lab['domain']),
                                                  kerberos_ccache=cc))
    assert rc == 0 and result.get('changed'), result
    # Without username, the principal is the ccache's own.
    rc, result = ansible.module(MODULE, base_args(lab, tmp_path, 'cc2', template='User', kerberos_ccache=cc))
    assert rc == 0 and result.get('changed'), result
    assert '%s@%s' % (acct['username'], lab['domain']) in str(result['certificate']), result['certificate']


def test_wrong_password_is_a_clear_failure(lab, ansible, tmp_path, kerberos_ready):
    rc, result = ansible.module(MODULE, base_args(lab, tmp_path, 'bad', template='User',
                                                  username='enroller@%s' % lab['domain'], password='wrong'))
    assert rc != 0 and result.get('failed')
    assert 'KDC_ERR_PREAUTH_FAILED' in result['msg'] and 'Check the password' in result['msg']
    assert 'Traceback' not in result['msg'] and 'wrong' not in str(result.get('invocation', ''))
