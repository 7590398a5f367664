# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option specs: one job, the argument_spec of the options several modules share (the community.crypto pattern).

Each group has its doc fragment, so the options are documented once:

- connection (doc fragment ``adcs.enrollment.connection``): ``connection_argument_spec()``, the dependencies between
  them ``connection_module_kwargs()``, and ``connection_params(params)`` (those options out of module.params, for
  ``_auth``);
- key (``adcs.enrollment.key``; ``adcs.enrollment.key.generated`` with the defaults of a module that generates
  the key right away): ``key_argument_spec(generated_defaults=False)``;
- subject (``adcs.enrollment.subject``): ``subject_argument_spec()``.

Modules do::

    argument_spec = connection_argument_spec()
    argument_spec.update(key_argument_spec())
    argument_spec.update(my_options)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **connection_module_kwargs())

Every function returns a fresh dict: callers may change it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

CONNECTION_OPTION_NAMES = (
    'domain', 'domain_controller', 'ldap_port', 'ldap_scheme', 'validate_certs', 'ca_bundle', 'ca_fingerprint',
    'auth', 'username',
    'password', 'nt_hash', 'kerberos_ccache', 'kerberos_keytab', 'ca_host', 'ca_name', 'timeout',
    'ldap_allow_plaintext', 'rpc_auth_package',
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
        rpc_auth_package=dict(type='str', default='negotiate', choices=['negotiate', 'ntlm', 'kerberos']),
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


KEY_TYPES = ['rsa', 'ecdsa']
CURVES = ['secp256r1', 'secp384r1', 'secp521r1']
# The defaults of a module that generates the key itself (wcce_csr); wcce_request derives them per request.
GENERATED_KEY_DEFAULTS = dict(key_type='rsa', key_size=2048, curve='secp256r1', private_key_mode='0600')


def key_argument_spec(generated_defaults=False):
    """The key options (doc fragment adcs.enrollment.key); with ``generated_defaults`` the defaults of
    GENERATED_KEY_DEFAULTS (doc fragment adcs.enrollment.key.generated)."""
    spec = dict(
        private_key_path=dict(type='path', no_log=False),
        private_key_passphrase=dict(type='str', no_log=True),
        private_key_mode=dict(type='raw', no_log=False),
        key_type=dict(type='str', choices=list(KEY_TYPES)),
        key_size=dict(type='int'),
        curve=dict(type='str', choices=list(CURVES)),
    )
    if generated_defaults:
        for name, default in GENERATED_KEY_DEFAULTS.items():
            spec[name]['default'] = default
    return spec


def subject_argument_spec():
    """The subject options (doc fragment adcs.enrollment.subject)."""
    return dict(
        subject=dict(type='raw'),
        common_name=dict(type='str'),
        subject_alt_name=dict(type='list', elements='str'),
    )


def pipe_argument_spec():
    """The options of wcce_request's pipe mode (top level only; ``_pipe`` runs it)."""
    return dict(pipe=dict(type='bool', default=False), certificate_content=dict(type='str'),
                chain_content=dict(type='str'), fullchain_content=dict(type='str'),
                refusal_content=dict(type='raw'), state_content=dict(type='raw'),
                new_key=dict(type='bool', default=False))


def role_entry_argument_spec():
    """argument_spec of one entry of wcce_request's ``certificates``: the keys of the certificate role's
    ``certificate_requests`` (roles/certificate/meta/argument_specs.yml)."""
    overrides = connection_argument_spec()   # no defaults: what an entry does not set comes from the module's
    for option in overrides.values():
        option.pop('default', None)
    spec = dict(name=dict(type='str', required=True), connection=dict(type='dict', options=overrides),
                pkcs12_passphrase=dict(type='str', no_log=True), key_type=dict(type='str', choices=KEY_TYPES),
                curve=dict(type='str', choices=CURVES), key_size=dict(type='int'), renew_before=dict(type='float'),
                subject=dict(type='raw'), mode=dict(type='raw'), key_mode=dict(type='raw', no_log=False),
                notify=dict(type='raw'))
    for kind, names in (('str', 'template ca_name ca_host domain common_name owner group run_before run_after'),
                        ('bool', 'reuse_key chain fullchain install_ca_trust create_directories'),
                        ('path', 'directory key_path certificate_path chain_path fullchain_path pkcs12_path '
                                 'csr_path state_path crl_path')):
        spec.update((name, dict(type=kind)) for name in names.split())
    spec.update((name, dict(type='list', elements='str')) for name in ('dns', 'ip', 'upn', 'email', 'subject_alt_name'))
    return spec


def role_defaults_argument_spec():
    """argument_spec of wcce_request's ``certificate_defaults``: the certificate role's defaults of the entries'
    keys (roles/certificate/defaults/main.yml)."""
    return dict(
        directory=dict(type='path', default='/etc/pki/adcs'), template=dict(type='str', default='WebServer'),
        key_type=dict(type='str', choices=KEY_TYPES, default='rsa'), key_size=dict(type='int', default=2048),
        curve=dict(type='str', choices=CURVES, default='secp256r1'), reuse_key=dict(type='bool', default=True),
        renew_before=dict(type='raw'), owner=dict(type='str'), group=dict(type='str'),
        mode=dict(type='raw', default='0644'), key_mode=dict(type='raw', default='0600', no_log=False),
        chain=dict(type='bool', default=True), fullchain=dict(type='bool', default=True),
        install_ca_trust=dict(type='bool', default=False),
    )
