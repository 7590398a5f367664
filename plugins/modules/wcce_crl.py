#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_crl
short_description: Fetch, validate and store AD CS certificate revocation lists; check a certificate's status
version_added: 0.1.0
description:
  - Fetches the base CRL of a certification authority, and its delta CRL, from the CRL distribution points and
    freshest-CRL pointers of a certificate (O(certificate_path), O(certificate)), from explicit O(urls), or from
    the CA itself over DCOM (O(from_ca), C(ICertRequestD2::GetCAProperty) base and delta CRL).
  - "C(http) and C(https) URLs are fetched with HTTP/1.1 as MS-WCCE 1.4 describes: port 80 unless the URL is https
    (443) or names a port, one persistent connection per host for all CRLs of that host, at most O(max_redirects)
    redirects, never from https to http, the O(timeout) as the total time for each URL (connecting, TLS, redirects
    and reading together), at most O(max_size) bytes, the proxy of the C(http_proxy)/C(https_proxy)
    environment variables unless the host matches C(no_proxy) or O(use_proxy=false), TLS certificates verified
    (O(validate_certs), O(ca_bundle))."
  - C(ldap) URLs of Active Directory CDP objects
    (C(ldap:///CN=...,CN=CDP,CN=Public Key Services,...?certificateRevocationList?base?objectClass=cRLDistributionPoint))
    are read with the shared LDAP connection options from O(domain_controller) or a domain controller of O(domain)
    (DNS SRV). The host named in an LDAP URL from a certificate or CRL is ignored, so the credentials never go to a
    server a certificate names; only an LDAP URL given in O(urls) or O(delta_urls) may name the server to use.
  - C(file) URLs and local paths are read from disk (regular files only, at most O(max_size) bytes) only when given
    in O(urls) or O(delta_urls); such URLs in a certificate or CRL are refused.
  - URLs are tried in order; when one fails (unreachable, HTTP error, not a CRL, failed validation) the next is
    tried. RV(urls_tried) lists every attempt and RV(served_by) the source used.
  - Every CRL is validated before use, and a CRL that fails is never written - signature by the issuing CA
    certificate (O(issuer_certificate), else the CA certificate from the CA with O(from_ca), or from the certificate's
    AIA caIssuers URLs), issuer name and key identifier, the CA's cRLSign key usage, unknown critical extensions,
    thisUpdate/nextUpdate freshness (O(freshness)), and for the delta CRL its delta CRL indicator against the base
    CRL number (RFC 5280 5.2.4).
  - With O(check_certificate=true) returns whether the certificate is revoked according to base and delta CRL, with
    the reason and the date.
  - With O(dest) writes the base CRL (PEM or DER) atomically, only when its CRL number differs from the file's. A CRL
    older than the one in the file (a lower CRL number of the same issuer and key) is refused unless O(force=true).
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
extends_documentation_fragment:
  - adcs.enrollment.connection
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    description: CRLs are fetched and validated; nothing is written. C(changed) tells whether O(dest) would change.
options:
  certificate_path:
    description:
      - Certificate (PEM or DER) whose CRL distribution points, freshest-CRL and AIA caIssuers URLs are used.
      - Also the certificate checked with O(check_certificate=true).
      - Mutually exclusive with O(certificate).
    type: path
  certificate:
    description:
      - The certificate as PEM text, instead of O(certificate_path).
    type: str
  urls:
    description:
      - Base CRL URLs to try in order (C(http), C(https), C(ldap), C(file) or a path), instead of the certificate's
        CRL distribution points.
    type: list
    elements: str
    default: []
  delta_urls:
    description:
      - Delta CRL URLs to try in order. Default the freshest-CRL pointers of the certificate (unless O(urls) is
        set) and of the base CRL.
    type: list
    elements: str
    default: []
  from_ca:
    description:
      - Get the base and delta CRL and the CA signing certificate from the CA over DCOM (MS-WCCE GetCAProperty),
        with O(ca_host), O(ca_name) and the credentials of the connection options.
      - Mutually exclusive with O(urls).
    type: bool
    default: false
  delta:
    description:
      - Fetch and apply the delta CRL when one is pointed to.
      - When the base CRL points to a delta CRL and none can be used, the module fails (with O(freshness=fail)) or
        warns.
    type: bool
    default: true
  issuer_certificate_path:
    description:
      - The issuing CA certificate (PEM, DER or PKCS#7) to validate the CRLs with.
      - Default the CA certificate from the CA with O(from_ca), else from the AIA caIssuers URLs of the certificate.
        A CA certificate from AIA comes from the party being checked, so it is used only when it is one of the CA
        certificates of O(ca_bundle) (without O(ca_bundle), of the system trust store) or a CA certificate that one of
        them signed; otherwise set this option.
    type: path
  issuer_certificate:
    description:
      - The issuing CA certificate as PEM text, instead of O(issuer_certificate_path).
    type: str
  freshness:
    description:
      - What to do with a CRL whose nextUpdate has passed (or whose thisUpdate lies in the future).
      - C(fail) rejects it (the next URL is tried), C(warn) uses it with a warning, C(ignore) uses it silently.
    type: str
    choices: [fail, warn, ignore]
    default: fail
  check_certificate:
    description:
      - Return the revocation status of the certificate (O(certificate_path) or O(certificate)) in
        RV(certificate_status) and RV(revoked).
    type: bool
    default: false
  include_entries:
    description:
      - Return the revoked entries of the CRLs (serial number, date, reason).
    type: bool
    default: false
  dest:
    description:
      - Write the base CRL to this file, atomically, only when the file does not hold a CRL of the same issuer
        with the same CRL number in the same O(format).
      - The file attributes (O(owner), O(group), O(mode), ...) are applied in any case.
    type: path
  delta_dest:
    description:
      - Write the delta CRL to this file, like O(dest).
    type: path
  return_content:
    description:
      - Pipe mode, for a caller that keeps the CRL elsewhere (the M(adcs.enrollment.certificate) role's controller
        mode copies it to the managed host). The module returns the base CRL as PEM text in RV(crl) and writes
        nothing.
      - Excludes O(dest) and O(delta_dest).
      - C(changed) then says whether RV(crl) differs from O(current_crl); a CRL older than O(current_crl) of the same
        issuer and key fails the module unless O(force=true), as with O(dest).
    type: bool
    default: false
  current_crl:
    description:
      - With O(return_content=true), the PEM content of the CRL file the caller keeps now, compared with the
        fetched CRL.
    type: str
  format:
    description:
      - Encoding of O(dest) and O(delta_dest).
    type: str
    choices: [pem, der]
    default: pem
  backup:
    description:
      - Keep a timestamped copy of a file that is replaced.
    type: bool
    default: false
  use_proxy:
    description:
      - Use the proxies of the C(http_proxy), C(https_proxy) and C(no_proxy) environment variables.
    type: bool
    default: true
  max_redirects:
    description:
      - Number of HTTP redirects to follow; V(0) follows none.
    type: int
    default: 3
  max_size:
    description:
      - Largest CRL or CA certificate accepted from any source, in bytes (HTTP body, LDAP value, local file).
    type: int
    default: 20971520
  force:
    description:
      - Replace O(dest) or O(delta_dest) even when it holds a newer CRL (higher CRL number) of the same issuer and key
        than the one fetched. Without it the module fails and keeps the file.
    type: bool
    default: false
  host_addresses:
    description:
      - Map of host names to addresses used to connect to HTTP(S) hosts and the CA, without changing the name sent
        in C(Host) and TLS SNI or checked in the server certificate (like C(curl --resolve)).
    type: dict
    default: {}
requirements:
  - cryptography (Python library)
  - ldap3 (only for C(ldap) URLs)
  - impacket (only for O(from_ca))
notes:
  - In this module O(validate_certs) and O(ca_bundle) also apply to C(https) CRL and AIA URLs, and O(ca_bundle) also
    holds the trust anchors that an issuing CA certificate from AIA must chain to.
  - In this module O(timeout) bounds each URL as a whole (connecting, TLS, redirects and every read), not only each
    single read, so a server that sends its answer slowly cannot hold the module longer.
  - The connection options are only needed for C(ldap) URLs and O(from_ca).
  - O(from_ca) needs O(ca_host), O(ca_name) and credentials, exactly as enrollment (DCOM with packet privacy) -
    O(username) with O(password) or O(nt_hash) (NTLM), or O(auth=kerberos) with a password, NT hash,
    O(kerberos_keytab) or O(kerberos_ccache) (the KDC is O(domain_controller) or found by DNS).
seealso:
  - name: RFC 5280
    description: CRL profile, delta CRLs (5.2.4) and CRL validation (6.3).
    link: https://www.rfc-editor.org/rfc/rfc5280
  - name: MS-WCCE 1.4
    description: How AD CS clients retrieve CRLs.
    link: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-wcce/
'''

EXAMPLES = r'''
- name: Is this host's certificate revoked? (CDP, freshest CRL and AIA from the certificate)
  adcs.enrollment.wcce_crl:
    certificate_path: /etc/pki/tls/certs/host.pem
    check_certificate: true
  register: crl

- name: Stop when it is
  ansible.builtin.assert:
    that: not crl.revoked
    fail_msg: "revoked on {{ crl.certificate_status.revocation_date }} ({{ crl.certificate_status.reason }})"

- name: Keep a local copy of the CA's CRL for a web server (written only when a new CRL is published)
  adcs.enrollment.wcce_crl:
    urls:
      - http://pki.example.com/CertEnroll/EXAMPLE-CA.crl
      - "ldap:///CN=EXAMPLE-CA,CN=CA1,CN=CDP,CN=Public Key Services,CN=Services,CN=Configuration,DC=example,DC=com\
        ?certificateRevocationList?base?objectClass=cRLDistributionPoint"
    issuer_certificate_path: /etc/pki/example-ca.pem
    domain: example.com
    username: svc-crl@example.com
    password: "{{ vault_crl_password }}"
    dest: /etc/nginx/crl/example-ca.crl
    owner: root
    group: nginx
    mode: "0640"
  notify: reload nginx

- name: Straight from the CA over DCOM
  adcs.enrollment.wcce_crl:
    from_ca: true
    ca_host: ca1.example.com
    ca_name: EXAMPLE-CA
    domain: example.com
    username: svc-crl
    password: "{{ vault_crl_password }}"
    include_entries: true
  register: ca_crl
'''

RETURN = r'''
issuer:
  description: Issuer of the base CRL (RFC 4514).
  returned: success
  type: str
  sample: CN=LAB-CA,DC=lab,DC=adcs,DC=test
crl_number:
  description: CRL number of the base CRL.
  returned: success
  type: int
  sample: 12
this_update:
  description: thisUpdate of the base CRL (UTC, ISO 8601).
  returned: success
  type: str
  sample: "2026-11-28T14:00:00Z"
next_update:
  description: nextUpdate of the base CRL (UTC, ISO 8601).
  returned: success
  type: str
  sample: "2026-12-05T15:00:00Z"
revoked_count:
  description: Number of entries in the base CRL.
  returned: success
  type: int
  sample: 3
entries:
  description: Entries of the base CRL, with O(include_entries=true).
  returned: success and include_entries
  type: list
  elements: dict
  contains:
    serial_number:
      description: Serial number (hexadecimal, upper case).
      type: str
    revocation_date:
      description: Revocation date (UTC, ISO 8601).
      type: str
    reason:
      description: CRLReason name (RFC 5280), for example C(keyCompromise), or null when the entry has none.
      type: str
    reason_code:
      description: CRLReason code.
      type: int
served_by:
  description: The URL (or C(dcom://host/CA) source) the base CRL came from.
  returned: success
  type: str
  sample: http://ca1.lab.adcs.test/CertEnroll/LAB-CA.crl
urls_tried:
  description: Every attempt in order.
  returned: always
  type: list
  elements: dict
  contains:
    url:
      description: The URL (without credentials) or CA source.
      type: str
    kind:
      description: C(base), C(delta) or C(issuer) (CA certificate).
      type: str
    ok:
      description: Whether it served a valid object.
      type: bool
    error:
      description: Why it was not used.
      type: str
issuer_certificate_source:
  description: Where the CA certificate used for validation came from (C(given), a URL or the CA).
  returned: success
  type: str
delta:
  description: The delta CRL applied, or null when there is none.
  returned: success
  type: dict
  contains:
    crl_number:
      description: Its CRL number.
      type: int
    base_crl_number:
      description: The base CRL number of its delta CRL indicator.
      type: int
    this_update:
      description: Its thisUpdate.
      type: str
    next_update:
      description: Its nextUpdate.
      type: str
    revoked_count:
      description: Number of entries.
      type: int
    served_by:
      description: Where it came from.
      type: str
    entries:
      description: Its entries, with O(include_entries=true).
      type: list
      elements: dict
revoked:
  description: Whether the certificate is revoked (on hold counts as revoked), with O(check_certificate=true).
  returned: success and check_certificate
  type: bool
certificate_status:
  description: Revocation status of the certificate, with O(check_certificate=true).
  returned: success and check_certificate
  type: dict
  contains:
    serial_number:
      description: The certificate's serial number (hexadecimal).
      type: str
    revoked:
      description: Whether it is revoked.
      type: bool
    reason:
      description: CRLReason name, or null.
      type: str
    reason_code:
      description: CRLReason code, or null.
      type: int
    revocation_date:
      description: Revocation date (UTC, ISO 8601), or null.
      type: str
    source:
      description: C(base) or C(delta) CRL that listed it, or null.
      type: str
    on_hold:
      description: Whether the reason is certificateHold.
      type: bool
crl:
  description: The base CRL as PEM text, with O(return_content=true).
  returned: success and return_content
  type: str
dest:
  description: The file written (or that would be), with O(dest).
  returned: success and dest
  type: str
backup_file:
  description: Backup of the replaced file, with O(backup=true).
  returned: changed and backup
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_job
from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import connection_argument_spec
from ansible_collections.adcs.enrollment.plugins.module_utils._crl_http import MAX_BODY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        certificate_path=dict(type='path'),
        certificate=dict(type='str'),
        urls=dict(type='list', elements='str', default=[]),
        delta_urls=dict(type='list', elements='str', default=[]),
        from_ca=dict(type='bool', default=False),
        delta=dict(type='bool', default=True),
        issuer_certificate_path=dict(type='path'),
        issuer_certificate=dict(type='str'),
        freshness=dict(type='str', default='fail', choices=['fail', 'warn', 'ignore']),
        check_certificate=dict(type='bool', default=False),
        include_entries=dict(type='bool', default=False),
        dest=dict(type='path'),
        delta_dest=dict(type='path'),
        format=dict(type='str', default='pem', choices=['pem', 'der']),
        backup=dict(type='bool', default=False),
        use_proxy=dict(type='bool', default=True),
        max_redirects=dict(type='int', default=3),
        host_addresses=dict(type='dict', default={}),
        max_size=dict(type='int', default=MAX_BODY),
        force=dict(type='bool', default=False),
        return_content=dict(type='bool', default=False),
        current_crl=dict(type='str'),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        add_file_common_args=True,
        mutually_exclusive=[['certificate_path', 'certificate'], ['issuer_certificate_path', 'issuer_certificate'],
                            ['urls', 'from_ca'], ['password', 'nt_hash']],
        required_if=[['check_certificate', True, ['certificate_path', 'certificate'], True]],
    )
    _deps.check(module, 'cryptography')
    try:
        result = _crl_job.run(module)
    except AdcsError as exc:     # the backend's JobError carries the attempts (and a traceback when unexpected)
        extra = {'exception': exc.exception} if getattr(exc, 'exception', None) else {}
        module.fail_json(msg=exc.to_message(), urls_tried=getattr(exc, 'tried', []), **extra)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
