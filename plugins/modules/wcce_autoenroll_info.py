#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_autoenroll_info
short_description: What Windows autoenrollment would do for this host, decided from Active Directory
version_added: 1.2.0
description:
  - Reads the certificate templates published by the enterprise CAs of the forest, evaluates the account's Enroll
    and AutoEnroll rights on each (its C(objectSid) and C(tokenGroups), deny ACEs first, as
    M(adcs.enrollment.wcce_template_info) does), and the certificates kept under O(directory), and says per template
    what autoenrollment does - V(enroll) (no certificate yet), V(renew) (inside the template's renewal period or
    expired), V(keep) (valid, or no longer autoenrollable and kept without O(prune)), V(pending) (a request held for
    a CA manager is retrieved), V(remove) (superseded or no longer autoenrollable, with O(prune)) or V(skip) with a
    reason.
  - Skips templates the account cannot autoenroll (no AutoEnroll or Enroll right, or a deny), templates without
    C(CT_FLAG_AUTO_ENROLLMENT) or with C(CT_FLAG_USER_INTERACTION_REQUIRED) (MS-CRTD 2.26), user templates for a
    computer account (and machine templates for a user), templates that require enrollment agent signatures
    (C(msPKI-RA-Signature)), private key archival, a subject supplied in the request, and CA templates.
  - Follows C(msPKI-Supersede-Templates) among the templates to request - a superseded template is not requested,
    and its certificate is removed with O(prune).
  - Returns RV(certificate_requests), the entries of the adcs.enrollment.certificate role for the templates to
    request, and RV(remove_paths); the adcs.enrollment.autoenroll role uses them. Changes nothing; contacts no CA.
  - Without O(domain) and O(domain_controller), the domain is the host's DNS domain; with O(auth=kerberos), a
    keytab and no O(username), the account is the machine account C(<HOSTNAME>$).
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
extends_documentation_fragment:
  - adcs.enrollment.connection
attributes:
  check_mode:
    support: full
    description: The module only reads.
options:
  directory:
    description:
      - Where the certificates of autoenrollment are kept, the layout of the certificate role -
        C(<directory>/private/<template>.key), C(<directory>/certs/<template>.crt) and its state file
        C(<template>.crt.adcs.json), which marks a certificate as kept by autoenrollment.
    type: path
    required: true
  existing:
    description:
      - The files under C(<directory>/certs) (path to base64 content, as ansible.builtin.slurp returns it), read on
        the managed host when this module runs elsewhere (enrollment from the controller); O(directory) is then not
        read.
    type: dict
  principal:
    description:
      - The account whose rights are evaluated; defaults to the account the module binds as.
    type: str
  include:
    description: Only these templates (names, shell patterns, case-insensitive); all when empty.
    type: list
    elements: str
    default: []
  exclude:
    description: Never these templates (names, shell patterns, case-insensitive).
    type: list
    elements: str
    default: []
  prune:
    description:
      - Return V(remove) for the certificates of templates that are superseded or no longer autoenrollable for the
        account (filtered templates are never removed); otherwise they are kept until they expire.
    type: bool
    default: false
  reuse_key:
    description:
      - Keep the key on renewal (C(reuse_key) of the RV(certificate_requests) entries); templates with
        C(CT_FLAG_REQUIRE_SAME_KEY_RENEWAL) always keep it.
    type: bool
    default: true
  settings:
    description:
      - Keys added to the RV(certificate_requests) entry of each template whose name matches the key (a template
        name or a shell pattern such as C(*), case-insensitive; matching entries are merged in key order, the exact
        name last) - the keys of the certificate role's C(certificate_requests), for example C(run_after),
        C(notify), C(owner), C(group), C(mode), C(key_mode), C(reuse_key).
    type: dict
    default: {}
notes:
  - Reading templates and C(tokenGroups) needs only a domain account; the computer account itself can read them.
seealso:
  - module: adcs.enrollment.wcce_template_info
  - module: adcs.enrollment.wcce_request
'''

EXAMPLES = r'''
- name: What autoenrollment would do for this host (Kerberos with the host keytab, domain from the host name)
  adcs.enrollment.wcce_autoenroll_info:
    auth: kerberos
    kerberos_keytab: /etc/krb5.keytab
    ca_bundle: /etc/pki/corp-root.pem
    directory: /etc/pki/adcs/autoenroll
    prune: true
  register: autoenroll
'''

RETURN = r'''
templates:
  description: Per template (published ones and those with a certificate under O(directory)), the decision.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Template name.
      type: str
    action:
      description: V(enroll), V(renew), V(keep), V(pending), V(remove) or V(skip).
      type: str
    reason_code:
      description:
        - Machine-readable reason - C(no_certificate), C(renew_window), C(expired), C(up_to_date), C(pending),
          C(no_autoenroll_right), C(not_autoenrollment_template), C(user_interaction), C(user_template),
          C(machine_template), C(ra_signatures), C(key_archival), C(enrollee_supplies_subject),
          C(names_of_requester), C(ca_template), C(superseded), C(filtered), C(not_published) or C(unreadable).
      type: str
    reason:
      description: The reason in words.
      type: str
    request:
      description: Whether the template is requested (wcce_request decides the details and contacts the CA only
        when needed).
      type: bool
    superseded_by:
      description: The template that supersedes this one, if any.
      type: str
    manager_approval:
      description: Requests stay pending until a CA manager approves them.
      type: bool
    paths:
      description: The files of the template's certificate (private_key, certificate, chain, fullchain, state,
        refused, csr, pending_key).
      type: dict
certificate_requests:
  description: Entries of the certificate role's C(certificate_requests) for the templates to request.
  returned: success
  type: list
  elements: dict
remove_paths:
  description: Files to remove (C(template), C(path)), with O(prune).
  returned: success
  type: list
  elements: dict
principal:
  description: The evaluated account (C(name), C(sid), C(distinguished_name), C(source)).
  returned: success
  type: dict
connection:
  description: The connection options the module added (C(domain) from the host, C(username) of the machine).
  returned: success
  type: dict
domain_controller:
  description: Domain controller queried.
  returned: success
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.adcs.enrollment.plugins.module_utils import _autoenroll
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import connection_argument_spec, connection_module_kwargs
from ansible_collections.adcs.enrollment.plugins.module_utils._info import run_report


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        directory=dict(type='path', required=True),
        existing=dict(type='dict'),
        principal=dict(type='str'),
        include=dict(type='list', elements='str', default=[]),
        exclude=dict(type='list', elements='str', default=[]),
        prune=dict(type='bool', default=False),
        reuse_key=dict(type='bool', default=True),
        settings=dict(type='dict', default={}),
    )
    kwargs = connection_module_kwargs()
    del kwargs['required_one_of']        # the domain defaults to the host's
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **kwargs)
    try:
        added = _autoenroll.connection_defaults(module.params)
    except _autoenroll.AutoenrollError as exc:
        module.fail_json(msg=exc.to_message())

    def report(conn, params):
        return dict(_autoenroll.plan_from_directory(conn, params), connection=added)
    run_report(module, report, 'the autoenrollment plan')


if __name__ == '__main__':
    main()
