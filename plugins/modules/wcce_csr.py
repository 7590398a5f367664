#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_csr
short_description: Private key and PKCS#10 certificate request on the managed host, for enrollment elsewhere
version_added: 1.0.0
description:
  - Generates a private key on the managed host when it is missing (mode C(0600) unless O(private_key_mode) says
    otherwise) and builds a PKCS#10 certificate signing request (CSR) with it, so that the enrollment itself
    (adcs.enrollment.wcce_request with O(adcs.enrollment.wcce_request#module:csr_content)) can run on the
    controller or an execution environment while the private key never leaves the host.
  - The CSR is returned as PEM text (RV(csr)) and optionally written to O(csr_path). An existing CSR file is kept
    when it already holds a request for the same public key, subject and subject alternative names.
  - The private key is never returned.
options:
  private_key_path:
    required: true
  regenerate_key:
    description:
      - Replace the key at O(private_key_path) with a newly generated one.
    type: bool
    default: false
  csr_path:
    description:
      - Also write the CSR (PEM) to this file.
      - O(mode) (default C(0644)), O(owner) and O(group) apply to the CSR file; O(owner) and O(group) also to a
        generated private key, whose mode is O(private_key_mode).
    type: path
extends_documentation_fragment:
  - adcs.enrollment.key
  - adcs.enrollment.key.generated
  - adcs.enrollment.subject
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode a missing key is not generated; RV(csr) is then omitted.
  diff_mode:
    support: none
  platform:
    platforms: posix
    support: full
requirements:
  - cryptography >= 41
seealso:
  - module: adcs.enrollment.wcce_request
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
'''

EXAMPLES = r'''
- name: Key and CSR on the host
  adcs.enrollment.wcce_csr:
    private_key_path: /etc/pki/web01.key
    common_name: web01.example.com
    subject_alt_name:
      - DNS:web01.example.com
  register: csr

- name: Enroll from the controller with the host's CSR
  adcs.enrollment.wcce_request:
    template: WebServer
    csr_content: "{{ csr.csr }}"
    certificate_path: "/tmp/certs/{{ inventory_hostname }}.crt"
  delegate_to: localhost
'''

RETURN = r'''
csr:
  description: The certificate signing request (PEM).
  returned: unless the key is missing in check mode
  type: str
key_generated:
  description: Whether a new private key was generated (or, in check mode, would be).
  returned: always
  type: bool
public_key:
  description: Type and size or curve of the key.
  returned: when the key exists
  type: dict
  sample: {type: rsa, size: 2048}
'''

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import key_argument_spec, subject_argument_spec
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError


def main():
    argument_spec = key_argument_spec(generated_defaults=True)
    argument_spec['private_key_path']['required'] = True
    argument_spec.update(subject_argument_spec())
    argument_spec.update(regenerate_key=dict(type='bool', default=False), csr_path=dict(type='path'))
    module = AnsibleModule(argument_spec=argument_spec, mutually_exclusive=[('subject', 'common_name')],
                           add_file_common_args=True, supports_check_mode=True)
    _deps.check(module, 'cryptography')
    p = module.params
    subject = p['subject'] if p['subject'] is not None else (
        {'CN': p['common_name']} if p['common_name'] else None)
    try:
        result = _csr.ensure_key_and_csr(
            _staged.ModuleFileWriter(module), p['private_key_path'], csr_path=p['csr_path'],
            passphrase=p['private_key_passphrase'], key_mode=p['private_key_mode'], regenerate=p['regenerate_key'],
            key_type=p['key_type'], key_size=p['key_size'], curve=p['curve'], subject=subject,
            sans=p['subject_alt_name'] or None, mode=p['mode'], owner=p['owner'], group=p['group'],
            check_mode=module.check_mode)
    except AdcsError as exc:
        module.fail_json(msg=to_native(exc), changed=False, key_generated=False)
    except (OSError, IOError, ValueError) as exc:
        module.fail_json(msg='Cannot create the key or CSR: %s' % to_native(exc), exception=traceback.format_exc(),
                         changed=False, key_generated=False)
    if result.get('csr') is not None:
        result['csr'] = to_native(result['csr'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
