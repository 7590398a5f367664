#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_trust_anchors
short_description: Select the CA certificates an OS trust store may hold, from independently verified sources
version_added: 1.1.0
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
description:
  - Sorts CA certificates for an OS trust store into self-signed roots (trust anchors), issuing CAs (for an
    intermediate store only, never anchors) and refused certificates, as the M(adcs.enrollment.trust) role needs
    them. Changes nothing.
  - Only CA certificates (basicConstraints C(CA:TRUE)) are ever returned; a self-signed certificate is a root only
    when its self-signature verifies.
  - O(certificates) come from the playbook author and are taken as given; a certificate in them that is not a CA
    certificate fails the module.
  - O(host_certificates) (files on the managed host, such as chain files) are returned only when they are among the
    independently verified anchors (roots) or chain to them (issuing CAs); the anchors come from O(ca_bundle),
    O(ca_fingerprint) or the roots in C(CN=Certification Authorities) read over verified TLS, as for
    M(adcs.enrollment.wcce_request). Anything else is listed in RV(refused).
  - O(from_ad) adds the roots of C(CN=Certification Authorities) (what Windows puts into its Trusted Root store) and
    the certificates of the enrollment services (issuing CAs), read over verified TLS only.
extends_documentation_fragment:
  - adcs.enrollment.connection
  - adcs.enrollment.attributes.info_module
options:
  certificates:
    description:
      - CA certificates chosen by the playbook author, each with a O(certificates[].name) and the PEM
        O(certificates[].content) (one or more certificates).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Label of the certificates (part of the file names the role writes).
        type: str
        required: true
      content:
        description: PEM text.
        type: str
        required: true
      verify:
        description:
          - Treat the entry like one of O(host_certificates) (kept only when independently verified anchors vouch
            for it), as the M(adcs.enrollment.trust) role does for files from the managed host and chain files.
        type: bool
        default: false
        version_added: 1.2.0
  host_certificates:
    description:
      - Certificates read from files on the managed host, with O(host_certificates[].name) and
        O(host_certificates[].content). They are kept only when independently verified anchors vouch for them.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Label of the certificates.
        type: str
        required: true
      content:
        description:
          - PEM text of the file.
        type: str
        required: true
  from_ad:
    description:
      - Also return the roots in C(CN=Certification Authorities) and the certificates of the enrollment services.
      - Needs O(domain) or O(domain_controller) with O(ldap_scheme=ldaps) or C(starttls) and O(validate_certs=true).
    type: bool
    default: false
  ca_names:
    description:
      - With O(from_ad), only the enrollment services (CAs) with these names, and the roots they chain to.
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Roots and issuing CAs of the forest for the trust store
  adcs.enrollment.wcce_trust_anchors:
    domain: example.com
    username: svc-enroll@example.com
    password: "{{ vault_password }}"
    from_ad: true
  register: cas

- name: Keep the roots of a chain file from the host only when a pinned root vouches for them
  adcs.enrollment.wcce_trust_anchors:
    ca_fingerprint: ["5C:3A:...:9F"]
    host_certificates:
      - name: web
        content: "{{ (chain_file.content | b64decode) }}"
'''

RETURN = r'''
roots:
  description: Self-signed CA certificates to install as trust anchors.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Label (the entry's name, or the CA's common name from Active Directory).
      type: str
    file:
      description: File name for the certificate, C(<name>-<first 16 hex digits of its SHA-256>.crt).
      type: str
    subject:
      description: Subject (RFC 4514).
      type: str
    fingerprint_sha256:
      description: SHA-256 fingerprint of the DER certificate, colon-separated upper-case hex (the name the other
        modules' certificate facts use).
      type: str
      version_added: 1.2.0
    sha256_fingerprint:
      description:
        - SHA-256 fingerprint of the DER certificate, colon-separated.
        - Deprecated, use RV(roots[].fingerprint_sha256); will be removed in 2.0.0.
      type: str
    not_after:
      description: End of validity (UTC).
      type: str
    source:
      description: C(certificates), C(host) or C(Active Directory).
      type: str
    ca_cert_index:
      description:
        - For a certificate of an AD CS CA, its CA certificate index (0, 1, ... one per renewal) from the CA Version
          extension; null without one. Every certificate of a renewed CA is listed (and installed) on its own.
      type: int
    ca_key_index:
      description: The CA key index from the CA Version extension (names the CA's CRLs); null without one.
      type: int
    pem:
      description: The certificate in PEM.
      type: str
intermediates:
  description: Issuing CA certificates (never trust anchors); same keys as RV(roots).
  returned: success
  type: list
  elements: dict
refused:
  description: Certificates of O(host_certificates) that are not installed, with the reason (no C(pem)).
  returned: success
  type: list
  elements: dict
  sample:
    - name: web
      subject: CN=Rogue Root
      fingerprint_sha256: "AB:CD:..."
      sha256_fingerprint: "AB:CD:..."
      reason: not among the independently verified anchors (ca_bundle /etc/pki/corp-root.pem)
'''

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors, _auth, _deps, _trust_store
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import connection_argument_spec
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, LdapError, WcceError


def argument_spec():
    entry = dict(name=dict(type='str', required=True), content=dict(type='str', required=True))
    spec = connection_argument_spec()
    spec.update(
        certificates=dict(type='list', elements='dict', default=[],
                          options=dict(entry, verify=dict(type='bool', default=False))),
        host_certificates=dict(type='list', elements='dict', default=[], options=dict(entry)),
        from_ad=dict(type='bool', default=False),
        ca_names=dict(type='list', elements='str', default=[]),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[['password', 'nt_hash']])
    _deps.check(module, 'cryptography')
    params = module.params
    opened = []

    def connect():
        try:
            conn = _auth.ldap_connect(params)
        except LdapError as exc:
            raise WcceError('Reading Active Directory failed: %s' % exc,
                            remedy='Check domain, domain_controller, ldap_scheme, ca_bundle and the credentials.')
        opened.append(conn)
        return conn

    def directory():
        return opened[0] if opened else connect()

    try:
        source = _anchors.AnchorSource.from_params(
            params, connect_directory=directory if _auth.has_directory(params) else None,
            directory_always=params['from_ad'])
        result = _trust_store.trust_store_selection(
            certificates=[c for c in params['certificates'] if not c['verify']],
            host_certificates=params['host_certificates'] + [c for c in params['certificates'] if c['verify']],
            from_ad=params['from_ad'], ca_names=params['ca_names'], source=source,
            directory=directory() if params['from_ad'] and source.connect_directory is not None else None)
    except AdcsError as exc:
        module.fail_json(msg=exc.to_message())
    except Exception as exc:  # never a bare traceback to the user
        module.fail_json(msg='Unexpected error sorting the CA certificates: %s: %s' % (type(exc).__name__, exc),
                         exception=traceback.format_exc())
    finally:
        for conn in opened:
            conn.close()
    for item in result['refused']:
        module.warn('Not installed: %s "%s" (SHA-256 %s): %s' % (item['name'], item['subject'],
                                                                 item['fingerprint_sha256'], item['reason']))
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
