# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""argument_spec of the shared connection options (doc fragment adcs.enrollment.connection).

Modules do::

    argument_spec = connection_argument_spec()
    argument_spec.update(my_options)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **connection_module_kwargs())
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

CONNECTION_OPTION_NAMES = (
    'domain', 'domain_controller', 'ldap_port', 'ldap_scheme', 'validate_certs', 'ca_bundle', 'ca_fingerprint',
    'auth', 'username',
    'password', 'nt_hash', 'kerberos_ccache', 'kerberos_keytab', 'ca_host', 'ca_name', 'timeout',
    'ldap_allow_plaintext',
)


def connection_argument_spec():
    """A fresh dict (callers may modify it) matching plugins/doc_fragments/connection.py."""
    return dict(
        domain=dict(type='str'),
        domain_controller=dict(type='str', aliases=['dc']),
        ldap_port=dict(type='int'),
        ldap_scheme=dict(type='str', default='ldaps', choices=['ldaps', 'starttls', 'ldap']),
        ldap_allow_plaintext=dict(type='bool', default=False),
        validate_certs=dict(type='bool', default=True),
        ca_bundle=dict(type='path'),
        ca_fingerprint=dict(type='list', elements='str'),
        auth=dict(type='str', default='password', choices=['password', 'ntlm', 'kerberos']),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        nt_hash=dict(type='str', no_log=True),
        kerberos_ccache=dict(type='path'),
        kerberos_keytab=dict(type='path'),
        ca_host=dict(type='str'),
        ca_name=dict(type='str'),
        timeout=dict(type='int', default=30),
    )


def connection_module_kwargs():
    """AnsibleModule() keyword arguments expressing the dependencies between the connection options."""
    return dict(
        required_one_of=[['domain', 'domain_controller']],
        mutually_exclusive=[['password', 'nt_hash']],
        required_if=[
            ['auth', 'password', ['username', 'password']],
            ['auth', 'ntlm', ['username']],
            ['auth', 'ntlm', ['password', 'nt_hash'], True],
        ],
    )


def connection_params(params):
    """The connection options out of module.params."""
    return dict((name, params.get(name)) for name in CONNECTION_OPTION_NAMES)
