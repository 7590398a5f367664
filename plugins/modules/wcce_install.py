#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_install
short_description: Install a certificate enrolled elsewhere next to its private key, key and certificate together
version_added: 1.0.0
description:
  - Writes a certificate (and its chain and full chain) that was enrolled on the controller or an execution
    environment into place on the managed host, next to the private key it was requested for. Used by the
    certificate role with C(certificate_enroll_on=controller), after adcs.enrollment.wcce_csr made the key and CSR
    on the host and adcs.enrollment.wcce_request enrolled with the CSR.
  - The certificate must belong to the key it will sit next to - the staged new key O(staged_private_key_path) when
    it exists, else the key at O(private_key_path) - or nothing is written.
  - Key, certificate, chain, full chain and CSR switch together (all-or-nothing, each file written to a temporary
    file next to it, synced and renamed into place); the staged key and CSR are removed afterwards.
  - The private key is never returned.
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
  - adcs.enrollment.attributes.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  certificate_path:
    description:
      - Where the certificate is written. O(mode), O(owner) and O(group) apply to it and to the chain, full chain
        and CSR (O(mode) defaults to C(0644)).
    type: path
    required: true
  certificate_content:
    description:
      - The certificate (PEM; the first certificate is taken).
    type: str
    required: true
  chain_path:
    description:
      - Where the CA certificates are written. Needs O(chain_content).
    type: path
  chain_content:
    description:
      - The CA certificates (PEM).
    type: str
  fullchain_path:
    description:
      - Where the certificate followed by the CA certificates is written. Needs O(fullchain_content).
    type: path
  fullchain_content:
    description:
      - The certificate followed by the CA certificates (PEM); it must start with O(certificate_content).
    type: str
  private_key_path:
    description:
      - The private key the certificate belongs to (replaced by O(staged_private_key_path) when that exists).
    type: path
    required: true
  staged_private_key_path:
    description:
      - A new private key made for this certificate (for example C(<private_key_path>.new) from
        adcs.enrollment.wcce_csr). When it exists, it replaces O(private_key_path) together with the certificate
        files and is then removed. When it does not exist, the key at O(private_key_path) is used.
    type: path
  private_key_passphrase:
    description:
      - Passphrase of the private key (only read, to check that the certificate belongs to it).
    type: str
  private_key_mode:
    description:
      - Mode of the private key when O(staged_private_key_path) replaces it; defaults to the mode of the current key,
        else C(0600).
    type: raw
  csr_path:
    description:
      - Where the CSR of the key is kept; replaced by O(staged_csr_path) together with a new key.
    type: path
  staged_csr_path:
    description:
      - The CSR made with the staged key; removed afterwards.
    type: path
  format:
    description:
      - Encoding of the certificate, chain and full chain files. C(der) chains are PKCS#7 certificate bundles.
    type: str
    choices: [pem, der]
    default: pem
seealso:
  - module: adcs.enrollment.wcce_csr
  - module: adcs.enrollment.wcce_request
'''

EXAMPLES = r'''
- name: Key and CSR on the host
  adcs.enrollment.wcce_csr:
    private_key_path: /etc/pki/tls/private/web.key.new
    csr_path: /etc/pki/tls/certs/web.crt.csr.new
    regenerate_key: true
    common_name: web01.example.com
  register: csr

- name: Enroll on the controller
  adcs.enrollment.wcce_request:
    template: WebServer
    csr_content: "{{ csr.csr }}"
    common_name: web01.example.com
    key_type: rsa
    certificate_path: /tmp/scratch/web.crt
    chain_path: /tmp/scratch/web-chain.crt
  delegate_to: localhost

- name: Key and certificate switch together on the host
  adcs.enrollment.wcce_install:
    certificate_path: /etc/pki/tls/certs/web.crt
    certificate_content: "{{ lookup('ansible.builtin.file', '/tmp/scratch/web.crt') }}"
    chain_path: /etc/pki/tls/certs/web-chain.crt
    chain_content: "{{ lookup('ansible.builtin.file', '/tmp/scratch/web-chain.crt') }}"
    private_key_path: /etc/pki/tls/private/web.key
    staged_private_key_path: /etc/pki/tls/private/web.key.new
    csr_path: /etc/pki/tls/certs/web.crt.csr
    staged_csr_path: /etc/pki/tls/certs/web.crt.csr.new
    private_key_mode: '0600'
    mode: '0644'
'''

RETURN = r'''
changed:
  description: Whether a file was replaced, a file attribute changed or a staged file was removed.
  returned: always
  type: bool
key_switched:
  description: Whether the staged private key replaced the key at O(private_key_path).
  returned: success
  type: bool
paths:
  description: The files written, by kind (C(private_key), C(certificate), C(chain), C(fullchain), C(csr)).
  returned: success
  type: dict
removed:
  description: The staged files removed.
  returned: success
  type: list
  elements: str
certificate:
  description: Facts of the installed certificate (subject, issuer, serial number, validity, fingerprint, ...).
  returned: success
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _install
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            certificate_path=dict(type='path', required=True),
            certificate_content=dict(type='str', required=True),
            chain_path=dict(type='path'),
            chain_content=dict(type='str'),
            fullchain_path=dict(type='path'),
            fullchain_content=dict(type='str'),
            private_key_path=dict(type='path', required=True, no_log=False),
            staged_private_key_path=dict(type='path', no_log=False),
            private_key_passphrase=dict(type='str', no_log=True),
            private_key_mode=dict(type='raw', no_log=False),
            csr_path=dict(type='path'),
            staged_csr_path=dict(type='path'),
            format=dict(type='str', choices=['pem', 'der'], default='pem'),
        ),
        required_together=[['chain_path', 'chain_content'], ['fullchain_path', 'fullchain_content']],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    _deps.check(module, 'cryptography')
    p = module.params
    try:
        result = _install.install(
            _staged.ModuleFileWriter(module), p['certificate_path'], p['certificate_content'], p['private_key_path'],
            chain_path=p['chain_path'], chain_content=p['chain_content'], fullchain_path=p['fullchain_path'],
            fullchain_content=p['fullchain_content'], staged_private_key_path=p['staged_private_key_path'],
            csr_path=p['csr_path'], staged_csr_path=p['staged_csr_path'],
            private_key_passphrase=p['private_key_passphrase'], private_key_mode=p['private_key_mode'],
            mode=p['mode'], owner=p['owner'], group=p['group'], fmt=p['format'], check_mode=module.check_mode)
    except AdcsError as exc:
        module.fail_json(msg=exc.to_message(), changed=False)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
