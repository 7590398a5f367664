#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_ca_info
short_description: Enterprise CAs (enrollment services) and their CA certificates from Active Directory
version_added: 1.2.0
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
description:
  - Lists the enterprise certification authorities of an Active Directory forest, the C(pKIEnrollmentService)
    objects in C(CN=Enrollment Services,CN=Public Key Services,CN=Services) of the configuration partition, read over
    LDAP with the same connection options as M(adcs.enrollment.wcce_template_info).
  - For each CA returns its name, DNS host, the templates it publishes and every CA certificate it holds in
    C(cACertificate) (several after a CA certificate renewal), each with its facts, its classification (CA
    certificate, self-signed, current) and optionally its PEM; the facts have the schema of the other modules'
    certificate facts (C(fingerprint_sha256), ...).
  - This is the list of CAs; M(adcs.enrollment.wcce_template_info) describes templates and enrollment rights.
  - Changes nothing.
extends_documentation_fragment:
  - adcs.enrollment.connection
  - adcs.enrollment.attributes.info_module
options:
  names:
    description:
      - CAs to return, by name (the common name of the enrollment service), case-insensitively. Empty means all.
      - O(ca_name) and O(ca_host) filter as well when set.
    type: list
    elements: str
    default: []
    aliases: [ca_names]
  include_pem:
    description:
      - Return each CA certificate in PEM (RV(certificate_authorities[].certificates[].pem)).
    type: bool
    default: true
requirements:
  - ldap3 >= 2.9
  - cryptography
notes:
  - Any domain account can read the enrollment services.
  - The certificates are what the directory holds; to trust them read the directory over verified TLS
    (O(ldap_scheme=ldaps) or C(starttls) with O(validate_certs=true)), as the defaults do.
seealso:
  - module: adcs.enrollment.wcce_template_info
  - module: adcs.enrollment.wcce_trust_anchors
'''

EXAMPLES = r'''
- name: List the enterprise CAs
  adcs.enrollment.wcce_ca_info:
    domain: example.com
    username: svc-enroll@example.com
    password: "{{ vault_enroll_password }}"
  register: cas

- name: Show each CA with the expiry of its current certificate
  ansible.builtin.debug:
    msg: "{{ item.config }}: {{ (item.certificates | selectattr('current') | first).not_after }}"
  loop: "{{ cas.certificate_authorities }}"
  loop_control:
    label: "{{ item.name }}"

- name: The certificates of one CA without PEM, with Kerberos from a keytab
  adcs.enrollment.wcce_ca_info:
    domain: example.com
    auth: kerberos
    username: svc-enroll
    kerberos_keytab: /etc/svc-enroll.keytab
    names: [EXAMPLE-CA]
    include_pem: false
  register: example_ca
'''

RETURN = r'''
domain_controller:
  description: Domain controller the module queried.
  returned: success
  type: str
  sample: dc1.example.com
configuration_naming_context:
  description: DN of the configuration partition.
  returned: success
  type: str
  sample: CN=Configuration,DC=example,DC=com
missing:
  description: Entries of O(names) that matched no CA.
  returned: success
  type: list
  elements: str
  sample: []
certificate_authorities:
  description: The enterprise CAs (enrollment services), sorted by name.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: CA name (common name of the enrollment service).
      type: str
      sample: EXAMPLE-CA
    display_name:
      description: displayName of the enrollment service.
      type: str
    dns_host_name:
      description: DNS name of the CA server.
      type: str
      sample: ca1.example.com
    config:
      description: The CA configuration string C(<dns host>\<name>).
      type: str
      sample: ca1.example.com\EXAMPLE-CA
    distinguished_name:
      description: DN of the enrollment service object.
      type: str
    ca_certificate_dn:
      description: cACertificateDN attribute (subject of the CA certificate as AD records it).
      type: str
    templates:
      description: Names of the templates the CA publishes (certificateTemplates).
      type: list
      elements: str
    certificates:
      description:
        - The CA certificates of cACertificate, in directory order.
        - Each has the certificate facts that M(adcs.enrollment.wcce_request) returns in
          RV(adcs.enrollment.wcce_request#module:certificate) (C(subject), C(issuer), C(serial_number),
          C(not_before), C(not_after), C(fingerprint_sha256), C(subject_alt_names), C(template),
          C(extended_key_usage), C(public_key), C(is_ca)), and the keys below.
      type: list
      elements: dict
      contains:
        pem:
          description: The certificate in PEM; only with O(include_pem=true).
          type: str
        self_signed:
          description: Self-issued and its self-signature verifies (a root CA); false for an issuing CA.
          type: bool
        current:
          description:
            - The current certificate of the CA. A renewed CA holds several certificates; the current one has the
              highest certificate index (RV(certificate_authorities[].certificates[].ca_cert_index)), then the
              latest expiry.
          type: bool
        ca_cert_index:
          description:
            - The CA certificate index (0, 1, ... one per renewal of the CA), from the certificate's CA Version
              extension (1.3.6.1.4.1.311.21.1); null when the certificate has none (the first certificate of an
              AD CS CA).
          type: int
        ca_key_index:
          description:
            - The CA key index (the certificate index a renewal with a new key came with; a same-key renewal keeps
              it), which names the CA's CRLs (C(LAB-CA(1\).crl)); null without a CA Version extension.
          type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.adcs.enrollment.plugins.module_utils._ca_report import ca_report
from ansible_collections.adcs.enrollment.plugins.module_utils._info import run_report
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import connection_argument_spec, connection_module_kwargs


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        names=dict(type='list', elements='str', default=[], aliases=['ca_names']),
        include_pem=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **connection_module_kwargs())
    run_report(module, ca_report, 'the enrollment services')


if __name__ == '__main__':
    main()
