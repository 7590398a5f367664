#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_template_info
short_description: Certificate templates, enterprise CAs and enrollment rights from Active Directory
version_added: 0.1.0
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
description:
  - Reads the certificate templates (C(pKICertificateTemplate), MS-CRTD) and the enrollment services
    (C(pKIEnrollmentService)) of an Active Directory forest over LDAP and decodes them.
  - For each template returns every MS-CRTD attribute decoded (flags as lists of flag names, validity and renewal
    periods, key usage, extended key usages and application policies with friendly names, RA requirements,
    superseded templates, CSPs, critical extensions) and the raw values.
  - Explains what a request for the template must carry (RV(templates[].requirements)), who holds the Enroll and
    AutoEnroll extended rights, whether the bind account (or O(principal)) may enroll and why not, and which CAs
    publish the template.
  - The enterprise CAs with their CA certificates are listed by M(adcs.enrollment.wcce_ca_info).
  - Changes nothing.
extends_documentation_fragment:
  - adcs.enrollment.connection
  - adcs.enrollment.attributes.info_module
options:
  names:
    description:
      - Templates to return, each matched case-insensitively against the template name (C(cn)), its display name
        or its OID (C(msPKI-Cert-Template-OID)).
      - When empty, all templates are returned.
    type: list
    elements: str
    default: []
    aliases: [name, templates]
  principal:
    description:
      - Account whose enrollment rights are evaluated, as C(DOMAIN\sam), C(sam), C(user@domain), a distinguished
        name or a SID. Computer accounts may be given with or without the trailing C($).
      - Defaults to the account the module binds as (O(username)).
      - The account's token is built from its C(objectSid) and C(tokenGroups) read from Active Directory, plus
        Everyone and Authenticated Users.
    type: str
  check_rights:
    description:
      - Evaluate the template DACLs (Enroll and AutoEnroll extended rights) and the principal's access.
    type: bool
    default: true
  resolve_names:
    description:
      - Resolve the SIDs found in template DACLs to account names with extra LDAP searches.
    type: bool
    default: true
  published_only:
    description:
      - Return only templates published by at least one of the listed certification authorities.
    type: bool
    default: false
  include_raw:
    description:
      - Include the raw LDAP attribute values of each template (binary values base64 encoded) in RV(templates[].raw).
    type: bool
    default: true
requirements:
  - ldap3 >= 2.9
  - cryptography (CA certificate facts)
notes:
  - Any domain account can read templates and enrollment services; reading C(tokenGroups) of another account
    may need more rights on hardened domains.
  - The CA evaluates the same Enroll right when it receives a request; DCOM enrollment additionally requires
    membership of C(Certificate Service DCOM Access) on the CA.
seealso:
  - module: adcs.enrollment.wcce_ca_info
  - name: MS-CRTD
    description: Certificate Templates Structure.
    link: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-crtd/
'''

EXAMPLES = r'''
- name: Describe the WebServer template and check that the bind account may enroll
  adcs.enrollment.wcce_template_info:
    domain: example.com
    username: svc-enroll@example.com
    password: "{{ vault_enroll_password }}"
    ca_bundle: /etc/pki/example-root.pem
    names: [WebServer]
  register: tpl

- name: Fail early when enrollment would be refused
  ansible.builtin.assert:
    that: tpl.templates[0].access.can_enroll
    fail_msg: "{{ tpl.templates[0].access.reason }}"

- name: All templates a computer account may enroll for, via NTLM with an NT hash
  adcs.enrollment.wcce_template_info:
    domain_controller: dc1.example.com
    domain: example.com
    auth: ntlm
    username: EXAMPLE\svc-enroll
    nt_hash: "{{ vault_nt_hash }}"
    principal: WEB01$
    published_only: true
  register: all_templates

- name: Only the templates published by one CA, without rights (Kerberos from a keytab)
  adcs.enrollment.wcce_template_info:
    domain: example.com
    auth: kerberos
    username: svc-enroll
    kerberos_keytab: /etc/svc-enroll.keytab
    ca_name: EXAMPLE-CA
    published_only: true
    check_rights: false
  register: published
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
principal:
  description: The account whose access was evaluated, when O(check_rights=true) and it was found.
  returned: success
  type: dict
  contains:
    name:
      description: sAMAccountName.
      type: str
      sample: svc-enroll
    distinguished_name:
      description: DN of the account.
      type: str
    sid:
      description: objectSid.
      type: str
      sample: S-1-5-21-1-2-3-1105
    token_sids:
      description: SIDs of the token used for the evaluation (objectSid, tokenGroups, Everyone, Authenticated Users).
      type: list
      elements: str
    source:
      description: C(principal) when given by O(principal), C(bind) for the bind account.
      type: str
    error:
      description: Why the account could not be evaluated, if it could not.
      type: str
missing:
  description: Entries of O(names) that matched no template.
  returned: success
  type: list
  elements: str
  sample: []
certificate_authorities:
  description:
    - Enterprise CAs (enrollment services), filtered by O(ca_name) and O(ca_host) when set.
    - Deprecated, the list of CAs is M(adcs.enrollment.wcce_ca_info)'s job (with every CA certificate); this key will
      be removed in 2.0.0. RV(templates[].cas) stays.
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
    distinguished_name:
      description: DN of the enrollment service object.
      type: str
    ca_certificate_dn:
      description: cACertificateDN attribute (subject of the CA certificate as AD records it).
      type: str
    certificate:
      description:
        - Facts of the current CA certificate, the same as RV(adcs.enrollment.wcce_request#module:certificate)
          (C(subject), C(issuer), C(serial_number) in upper-case hex, C(not_before), C(not_after),
          C(fingerprint_sha256), C(fingerprint_sha1), C(subject_alt_names), C(template), C(extended_key_usage),
          C(public_key), C(is_ca)); C(error) alone when the certificate cannot be parsed.
      type: dict
      version_added: 1.1.0
    certificate_subject:
      description:
        - Subject of the current CA certificate (RFC 4514).
        - Deprecated, use C(certificate.subject); the flat C(certificate_*) facts will be removed in 2.0.0.
      type: str
      sample: CN=EXAMPLE-CA,DC=example,DC=com
    certificate_issuer:
      description:
        - Issuer of the current CA certificate.
        - Deprecated, use C(certificate.issuer).
      type: str
    certificate_not_before:
      description:
        - Start of validity of the CA certificate (UTC, ISO 8601).
        - Deprecated, use C(certificate.not_before).
      type: str
    certificate_not_after:
      description:
        - End of validity of the CA certificate (UTC, ISO 8601).
        - Deprecated, use C(certificate.not_after).
      type: str
      sample: '2031-01-01T00:00:00Z'
    certificate_serial_number:
      description:
        - Serial number (hex) of the CA certificate.
        - Deprecated, use C(certificate.serial_number) (upper-case hex).
      type: str
    certificate_sha256_fingerprint:
      description:
        - SHA-256 fingerprint of the CA certificate, colon separated.
        - Deprecated, use C(certificate.fingerprint_sha256).
      type: str
    certificate_sha1_fingerprint:
      description:
        - SHA-1 fingerprint (thumbprint) of the CA certificate.
        - Deprecated, use C(certificate.fingerprint_sha1).
      type: str
    certificate_pem:
      description: The CA certificate in PEM.
      type: str
    certificates:
      description: Number of CA certificates stored in cACertificate.
      type: int
    templates:
      description: Names of the templates the CA publishes (certificateTemplates).
      type: list
      elements: str
    access:
      description:
        - The evaluated principal's Request Certificates permission on the CA, C(can_request) (null when it could not
          be read) and C(request_reason). Only with O(check_rights=true).
      type: dict
      sample: {can_request: true, request_reason: "allowed: ACE #2 grants Request Certificates (Enroll) to ..."}
templates:
  description: The selected certificate templates, decoded.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Template name (cn); the name used in a request (C(CertificateTemplate:<name>)).
      type: str
      sample: WebServer
    display_name:
      description: displayName.
      type: str
      sample: Web Server
    distinguished_name:
      description: DN of the template object.
      type: str
    object_guid:
      description: objectGUID.
      type: str
    schema_version:
      description: msPKI-Template-Schema-Version (1 to 4).
      type: int
      sample: 2
    oid:
      description: msPKI-Cert-Template-OID.
      type: str
    oid_name:
      description: Display name of the template OID from its msPKI-Enterprise-Oid object, if any.
      type: str
    revision:
      description: revision (major version).
      type: int
    minor_revision:
      description: msPKI-Template-Minor-Revision.
      type: int
    validity_period:
      description: pKIExpirationPeriod decoded (C(days), C(seconds), C(text) such as C(2 years)).
      type: dict
      sample: {days: 730, seconds: 63072000, text: 2 years}
    renewal_period:
      description: pKIOverlapPeriod decoded (C(days), C(seconds), C(text) such as C(6 weeks)).
      type: dict
    flags:
      description: The general C(flags) attribute, C(value) and flag C(names) (CT_FLAG_*).
      type: dict
    enrollment_flag:
      description: msPKI-Enrollment-Flag, C(value) and flag C(names).
      type: dict
      sample: {value: 2, names: [CT_FLAG_PEND_ALL_REQUESTS]}
    certificate_name_flag:
      description: msPKI-Certificate-Name-Flag, C(value) and flag C(names).
      type: dict
    private_key_flag:
      description: msPKI-Private-Key-Flag, C(value), flag C(names), C(attestation) (none, preferred, required),
        C(server_version) and C(client_version).
      type: dict
    key_usage:
      description: pKIKeyUsage as key usage names (digital_signature, key_encipherment, ...).
      type: list
      elements: str
    extended_key_usage:
      description: pKIExtendedKeyUsage, each with C(oid) and friendly C(name).
      type: list
      elements: dict
    application_policies:
      description: msPKI-Certificate-Application-Policy, each with C(oid) and C(name).
      type: list
      elements: dict
    issuance_policies:
      description: msPKI-Certificate-Policy, each with C(oid) and C(name).
      type: list
      elements: dict
    minimum_key_size:
      description: msPKI-Minimal-Key-Size.
      type: int
    key_spec:
      description: pKIDefaultKeySpec (AT_KEYEXCHANGE or AT_SIGNATURE).
      type: str
    max_issuing_depth:
      description: pKIMaxIssuingDepth.
      type: int
    ra_signatures:
      description: msPKI-RA-Signature, the number of enrollment agent signatures a request needs.
      type: int
    ra_issuance_policies:
      description: msPKI-RA-Policies (C(oid), C(name)).
      type: list
      elements: dict
    ra_application_policies:
      description: Application policy OIDs of msPKI-RA-Application-Policies (C(oid), C(name)).
      type: list
      elements: dict
    ra_application_policy_properties:
      description: For schema version 3/4 templates, the properties encoded in msPKI-RA-Application-Policies
        (asymmetric_algorithm, hash_algorithm, key_usage_property, ...).
      type: dict
    superseded_templates:
      description: msPKI-Supersede-Templates.
      type: list
      elements: str
    csps:
      description: pKIDefaultCSPs as C(priority) and C(name), by priority.
      type: list
      elements: dict
    critical_extensions:
      description: pKICriticalExtensions (C(oid), C(name)).
      type: list
      elements: dict
    requirements:
      description: What a request must carry and what the CA does with it.
      type: dict
      contains:
        enrollee_supplies_subject:
          description: The request supplies the subject (and SANs); otherwise the CA builds them from AD.
          type: bool
        enrollee_supplies_subject_alt_name:
          description: CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME is set.
          type: bool
        subject_from_ad:
          description: Parts of the subject the CA builds from AD (directory_path, common_name, dns_as_cn, email).
          type: list
          elements: str
        subject_alt_names_from_ad:
          description: SAN types the CA adds from AD (dns, domain_dns, upn, email, spn, directory_guid).
          type: list
          elements: str
        manager_approval:
          description: Requests stay pending until a CA manager approves them.
          type: bool
        ra_signatures:
          description: Number of enrollment agent signatures needed.
          type: int
        minimum_key_size:
          description: Minimum key size in bits.
          type: int
        key:
          description: The key a request must have, as adcs.enrollment.wcce_request uses it for its defaults -
            C(provider) (C(cng) for schema 3, or 4 without the legacy-provider flag, else C(legacy)), C(algorithm)
            (msPKI-Asymmetric-Algorithm), C(key_type) (C(rsa), C(ecdsa) or null), C(curve), C(minimum_size),
            C(hash_algorithm) (msPKI-Hash-Algorithm, lower case), C(key_usage) (msPKI-Key-Usage names),
            C(providers) (pKIDefaultCSPs names) and C(template).
          type: dict
          sample: {provider: cng, algorithm: ECDSA_P256, key_type: ecdsa, curve: secp256r1, minimum_size: 256,
                   hash_algorithm: sha256, key_usage: [signing], providers: [Microsoft Software Key Storage Provider],
                   template: WebServerECC}
        key_archival:
          description: The private key must be archived (CMC key archival request).
          type: bool
        smime:
          description: S/MIME capabilities are included (CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS).
          type: bool
        machine:
          description: Machine template (CT_FLAG_MACHINE_TYPE).
          type: bool
        request_attribute:
          description: Request attribute naming the template.
          type: str
          sample: CertificateTemplate:WebServer
        notes:
          description: The requirements in words.
          type: list
          elements: str
    rights:
      description: Holders of the Enroll and AutoEnroll extended rights (C(enroll), C(autoenroll)), each with
        C(allowed) and C(denied) lists of C(sid), C(name), C(via) (extended_right, all_extended_rights,
        full_control, generic_all, null_dacl) and C(ace) (index in the DACL). Absent when O(check_rights=false).
      type: dict
    owner:
      description: Owner SID of the template security descriptor.
      type: str
    access:
      description: Whether the evaluated principal may enroll (C(can_enroll), C(reason)) and autoenroll
        (C(can_autoenroll), C(autoenroll_reason)); C(principal) names it. Absent when O(check_rights=false).
      type: dict
      sample: {principal: EXAMPLE\svc-enroll, can_enroll: false, reason: "denied: ACE #0 denies Enroll to ..."}
    published:
      description: True when at least one listed CA publishes the template.
      type: bool
    cas:
      description:
      - CAs that publish the template (C(name), C(dns_host_name), C(config), C(certificate_subject),
        C(certificate_not_after), C(certificate_fingerprint_sha256); C(certificate_sha256_fingerprint), deprecated, is
        the same value and will be removed in 2.0.0).
      - With O(check_rights=true) also C(can_request) and C(request_reason), the evaluated principal's Request
        Certificates permission on that CA (the Enroll right on its enrollment service object, which a Windows CA
        keeps in sync with its own security); C(can_request) is null when it could not be read. A template is usable
        only at a CA with C(can_request=true).
      type: list
      elements: dict
    raw:
      description: Raw attribute values (binary ones as C({base64}) dicts); only with O(include_raw=true).
      type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.adcs.enrollment.plugins.module_utils._template_report import template_report
from ansible_collections.adcs.enrollment.plugins.module_utils._info import run_report
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import connection_argument_spec, connection_module_kwargs


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        names=dict(type='list', elements='str', default=[], aliases=['name', 'templates']),
        principal=dict(type='str'),
        check_rights=dict(type='bool', default=True),
        resolve_names=dict(type='bool', default=True),
        published_only=dict(type='bool', default=False),
        include_raw=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **connection_module_kwargs())
    run_report(module, template_report, 'certificate templates')


if __name__ == '__main__':
    main()
