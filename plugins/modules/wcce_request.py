#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: wcce_request
short_description: Enroll, renew and retrieve certificates from Active Directory Certificate Services over DCOM
version_added: 1.0.0
description:
  - Requests a certificate from an AD CS enterprise CA over MS-WCCE (DCOM, C(ICertRequestD2)/C(ICertRequestD), packet
    privacy) and writes the private key, certificate, chain, full chain and an optional PKCS#12 bundle atomically.
  - Idempotent. When the certificate on disk is valid, matches the private key (or the CSR), the asked subject, subject
    alternative names and template, and is outside the renewal window (O(renew_before)), the CA is not contacted
    and the task reports C(changed=false).
  - Inside the renewal window, or with O(force=true), the certificate is renewed. While the current certificate is
    still valid, the renewal is a CMS request signed with the current certificate's key (as C(certreq -renew) and
    Windows autoenrollment send it), so templates that require a valid certificate for renewal accept it; when the
    CA refuses that form the module sends a new request instead and warns.
  - The private key is generated at O(private_key_path) when missing and never replaced unless
    O(regenerate_key=true). The certificate is verified before anything is written (its public key must be the
    request's and it must chain to a trust anchor read independently of the CA, from O(ca_bundle), O(ca_fingerprint) or
    the roots in C(CN=Certification Authorities) of Active Directory read over verified TLS; the CA's own
    certificates only serve as intermediates). A failed run leaves the previous key and certificate untouched.
  - The issued certificate must be what was asked for - its public key, the asked subject, every asked subject
    alternative name (and no other when the template takes the names from the request), the template and, when
    the template is read from Active Directory (O(domain) given), the template's extended key usages. Otherwise
    nothing is written, the module fails naming the request ID and the difference, and the refusal is recorded in
    C(<certificate_path>.refused), so later runs fail the same way without asking the CA again until the request
    changes or O(force=true). Without Active Directory, extended key usages are not compared, and names the CA
    adds to the asked ones are accepted; the result then carries a warning saying so.
  - A request that the CA holds for a certificate manager's approval is not a failure; the module returns
    RV(disposition=pending) and the RV(request_id) to retrieve the certificate later with O(request_id).
  - Several requests (O(requests)) are enrolled over one authenticated DCOM session.
  - O(private_key_path) is required unless a CSR is given. A generated key is what the template read from Active
    Directory asks for (its algorithm and curve, its minimum size and hash; see O(key_type)), else RSA with 2048
    bits, or ECDSA on C(secp256r1) when only O(curve) is set, unless O(key_type), O(key_size) and O(curve) say
    otherwise; options the template refuses fail before the CA is contacted. O(private_key_mode) also
    applies to the PKCS#12 bundle; new keys get C(0600), an existing key keeps its mode unless it is set, and O(mode)
    applies to the certificate, chain and full chain files.
  - Templates that build the subject from Active Directory ignore O(subject); leave it out for them. When
    O(subject) is set, a certificate with another subject is replaced and an issued certificate with another subject
    is refused; a certificate that lacks one of the O(subject_alt_name) is replaced (names the CA adds from Active
    Directory do not count).
  - With O(csr_path) or O(csr_content), O(subject), O(common_name), O(subject_alt_name) (exactly those names),
    O(key_type), O(key_size) and O(curve) are what the CSR must have.
author:
  - adcs.enrollment maintainers (@adcs-enrollment)
extends_documentation_fragment:
  - adcs.enrollment.connection
  - adcs.enrollment.key
  - adcs.enrollment.subject
  - ansible.builtin.files
  - adcs.enrollment.attributes.files
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details:
      - The CA is not contacted in check mode; RV(changed) says whether a certificate would be requested.
  diff_mode:
    support: full
    details:
      - The diff shows the subject, SANs, serial number, validity and fingerprint of the certificate before and after.
  safe_file_operations:
    description: Uses Ansible's strict file operation functions to ensure proper permissions and avoid data corruption.
    support: full
    details:
      - Every file is written to a temporary file next to it, synced and renamed into place, all files of a request
        together.
  action:
    support: none
  async:
    support: full
  bypass_host_loop:
    support: none
options:
  template:
    description:
      - Name (C(cn)) of the certificate template to enroll for, for example C(WebServer).
      - Required unless O(requests) is used (each entry then names its template) or O(request_id) is given.
    type: str
  ca_host:
    description:
      - DNS name or address of the CA server. With O(ca_name), the CA is used directly without Active Directory.
      - Without it (or without O(ca_name)), the enterprise CAs publishing O(template) are found in Active Directory
        (O(domain), O(domain_controller) and the directory credentials); when one is unavailable the next is tried.
    type: str
  csr_path:
    description:
      - An existing PKCS#10 request (PEM or DER) to submit instead of building one. Mutually exclusive with
        O(csr_content).
      - Without O(subject), O(common_name), O(subject_alt_name), O(key_type), O(key_size) and O(curve), its subject
        and SANs are used as they are. When any of them is given, they are expectations the CSR must meet before
        anything is sent to the CA (names not given are expected absent; only the subject alternative name, key
        usage, extended key usage and subject key identifier extensions and no attribute other than the extension
        request are accepted). Give them when the CSR comes from another host, as the certificate role does in
        controller mode.
      - O(private_key_path) is then optional (it is only read, to match the certificate and for O(pkcs12_path)).
    type: path
  csr_content:
    description:
      - The PKCS#10 request as PEM text. Mutually exclusive with O(csr_path).
    type: str
  regenerate_key:
    description:
      - Generate a new private key whenever a certificate is requested (first enrollment and every renewal), instead
        of reusing the key at O(private_key_path). The old key is replaced only together with the new certificate.
    type: bool
    default: false
  renewal_request:
    description:
      - Renew a still valid certificate with a renewal request signed with its key (CMS with the
        C(1.3.6.1.4.1.311.13.1) renewal certificate attribute). Set to V(false) to always send a new request.
    type: bool
    default: true
  certificate_path:
    description:
      - Where the certificate is written (and read, to decide whether a new one is needed).
      - Required unless O(requests) or O(pipe=true) is used.
    type: path
  chain_path:
    description:
      - Where the CA certificates (issuing CA up to the root) are written, exactly the verified path to the trust
        anchor (see O(ca_fingerprint)).
    type: path
  fullchain_path:
    description:
      - Where the certificate followed by the CA certificates is written.
    type: path
  format:
    description:
      - Encoding of the certificate, chain and full chain files. C(der) chains are PKCS#7 certificate bundles.
      - The private key is always PEM.
    type: str
    choices: [pem, der]
    default: pem
  pkcs12_path:
    description:
      - Also write a PKCS#12 bundle with the key, the certificate and the CA certificates here.
    type: path
  pkcs12_passphrase:
    description:
      - Passphrase of the PKCS#12 bundle (unencrypted when omitted).
    type: str
  force:
    description:
      - Request a new certificate even if the current one fits, and even if an earlier issuance for the same
        request was refused (C(<certificate_path>.refused)).
    type: bool
    default: false
  renew_before:
    description:
      - Renew when the certificate expires within this many days.
      - Defaults to the renewal period of the template when it can be read from Active Directory (O(domain) given),
        else to 30 days, or a third of the certificate's lifetime when that is shorter.
    type: float
  request_id:
    description:
      - Retrieve the certificate of this (formerly pending) request instead of submitting a new one.
      - The key of the request is V(private_key_path).pending when the submit generated a new key for an existing
        key file, else the key at O(private_key_path).
      - Nothing is retrieved when the certificate on disk already fits.
    type: int
  backup:
    description:
      - Keep a timestamped copy of every file that is replaced.
    type: bool
    default: false
  state_path:
    description:
      - Keep a versioned state file (JSON, no secrets, mode C(0644), owned by the user the module runs as whatever
        O(owner) says, since a state file of another user is not trusted) here, for example
        C(<certificate_path>.adcs.json) as the certificate role does. It records the last request (status
        C(issued), C(pending) or C(denied), request ID, CA, template, what was asked for), the certificate's facts
        and the template's renewal period learned from Active Directory at enrollment.
      - It also keeps each certificate's no-op record, so that a later run with the same options whose files are
        unchanged (content, mode, owner, inode, ctime) before the renewal window opens returns the recorded result
        without reading the certificate.
      - A pending request recorded there is retrieved by later runs (as with O(request_id)) while the request is
        unchanged; a changed request, or a denied one, is submitted anew. A later run that has nothing to do uses
        the recorded renewal period instead of reading the template from Active Directory.
      - A state file written by a newer version of the collection is refused; a corrupt one, or one another user
        could have written, is ignored with a warning and rewritten.
    type: path
  pipe:
    description:
      - Pipe mode, as the community.crypto C(*_pipe) modules - contents in, contents out, no file written. The CSR
        comes as O(csr_content); the current certificate, chain, full chain, refusal record and state as
        O(certificate_content), O(chain_content), O(fullchain_content), O(refusal_content) and O(state_content);
        the module returns RV(certificate_content), RV(chain_content), RV(fullchain_content), RV(refusal_content)
        and RV(state_content) to install next to the key (adcs.enrollment.wcce_install). This is how the
        certificate role enrolls on the controller for a managed host without scratch directories.
      - O(certificate_path), O(chain_path), O(fullchain_path), O(pkcs12_path), O(private_key_path), O(csr_path),
        O(state_path), O(backup) and O(requests) cannot be used with it; the contents are PEM.
    type: bool
    default: false
  certificate_content:
    description:
      - With O(pipe=true), the certificate the host has now (PEM), to decide whether a new one is needed.
    type: str
  chain_content:
    description:
      - With O(pipe=true), the chain the host has now (PEM; an empty string when there is none yet). Give it to get
        RV(chain_content) back.
    type: str
  fullchain_content:
    description:
      - With O(pipe=true), the full chain the host has now (PEM; an empty string when there is none yet). Give it
        to get RV(fullchain_content) back.
    type: str
  refusal_content:
    description:
      - With O(pipe=true), the refusal record the host keeps next to the certificate (C(<certificate>.refused)),
        see RV(refusal_content).
    type: raw
  state_content:
    description:
      - With O(pipe=true), the state the host keeps next to the certificate (see O(state_path)); a pending request
        recorded there is retrieved.
    type: raw
  new_key:
    description:
      - With O(pipe=true) and O(regenerate_key=true), O(csr_content) is for a new key staged on the host (after
        RV(new_key_needed) asked for it); the certificate is requested for it.
    type: bool
    default: false
  create_directories:
    description:
      - Create the missing parent directories of the files written, before anything is written. The directory of
        O(private_key_path) gets mode V(0700), those of O(certificate_path), O(chain_path), O(fullchain_path),
        O(pkcs12_path) and O(state_path) (and missing parents) mode V(0755); they are owned by O(owner) and O(group)
        when given.
      - Existing directories are never changed. In check mode nothing is created; the directories that would be
        are returned in RV(created_directories).
      - A directory that cannot be created fails the task before the CA is contacted.
    type: bool
    default: false
  policy_cache:
    description:
      - Keep what the discovery learned from Active Directory (the enrollment services with the templates they
        publish and their CA certificates, the templates used with their key rule, EKUs, name flags and renewal
        period, the requester's account names) in a cache file on the host, as Windows keeps its certificate
        template cache, so that the next runs within O(policy_cache_ttl) read no LDAP at all.
      - When the CA refuses in a way that says the policy changed (template not supported or denied, key refused,
        the cached CA unavailable while Active Directory now names another) or no cached CA publishes the template,
        Active Directory is read again and the request is retried once. Access denied (a wrong password) is not
        retried, so that a run costs the account one failed logon, not two. An issued certificate that differs from a cached template is compared again with the
        template read from Active Directory before it is refused.
      - The cache is used only when its directory is owned by the effective user with mode V(0700) and the file is
        a regular file of that user with mode V(0600) (never through a symbolic link); otherwise it is ignored with
        a warning and Active Directory is read. It holds no secret. Nothing is written in check mode.
      - The same directory keeps the compiled code of the collection's module_utils (one file per module, used only
        for the source it was compiled from, under the same ownership and mode rules, never written in check mode or
        with E(PYTHONDONTWRITEBYTECODE)), so that a run compiles only what changed; V(false) turns this off as well.
      - Set V(false) when Active Directory changes between runs and the change must apply at once.
    type: bool
    default: true
  policy_cache_dir:
    description:
      - Directory of the enrollment policy cache (created with mode V(0700) when missing).
      - Default the environment variable E(ADCS_POLICY_CACHE_DIR), else C(/var/cache/adcs-enrollment) for root,
        else C($XDG_CACHE_HOME/adcs-enrollment) or C(~/.cache/adcs-enrollment) of the effective user.
    type: path
  policy_cache_ttl:
    description:
      - Seconds an entry of the enrollment policy cache counts after it was read from Active Directory (default 8
        hours, the lifetime of the Windows certificate template cache). V(0) turns the cache off.
    type: int
    default: 28800
  certificates:
    description:
      - The entries of the certificate role's C(certificate_requests) (roles/certificate), enrolled in this one task
        over one authenticated DCOM session per distinct connection. Each entry is mapped onto the request options
        above with O(certificate_defaults) for what it does not set; options given at the top level (O(force),
        O(backup), O(format)) apply to every entry.
      - An entry that is invalid, or whose O(run_before_results) failed, fails alone; the others are enrolled. The
        task fails when a certificate failed (as with O(requests)) and returns RV(certificate_results),
        RV(certificate_summaries), RV(certificate_failures) and RV(followups) either way.
      - Cannot be used with O(requests) or O(pipe).
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the certificate, unique among O(certificates); the default file names derive from it.
        type: str
        required: true
      connection:
        description:
          - Connection options for this certificate, over the module's (those not set come from the module's options).
        type: dict
        suboptions:
          domain:
            description: See O(domain).
            type: str
          domain_controller:
            description: See O(domain_controller).
            type: str
            aliases: [dc]
          ldap_port:
            description: See O(ldap_port).
            type: int
          ldap_scheme:
            description: See O(ldap_scheme).
            type: str
            choices: [ldaps, starttls, ldap]
          ldap_allow_plaintext:
            description: See O(ldap_allow_plaintext).
            type: bool
          validate_certs:
            description: See O(validate_certs).
            type: bool
          ca_bundle:
            description: See O(ca_bundle).
            type: path
          ca_fingerprint:
            description: See O(ca_fingerprint).
            type: list
            elements: str
          auth:
            description: See O(auth).
            type: str
            choices: [password, ntlm, kerberos]
          username:
            description: See O(username).
            type: str
          password:
            description: See O(password).
            type: str
          nt_hash:
            description: See O(nt_hash).
            type: str
          kerberos_ccache:
            description: See O(kerberos_ccache).
            type: path
          kerberos_keytab:
            description: See O(kerberos_keytab).
            type: path
          ca_host:
            description: See O(ca_host).
            type: str
          ca_name:
            description: See O(ca_name).
            type: str
          timeout:
            description: See O(timeout).
            type: int
          rpc_auth_package:
            description: See O(rpc_auth_package).
            type: str
            choices: [negotiate, ntlm, kerberos]
      pkcs12_passphrase:
        description: See O(pkcs12_passphrase).
        type: str
      key_type:
        description: See O(key_type) (default O(certificate_defaults.key_type)).
        type: str
        choices: [rsa, ecdsa]
      curve:
        description: ECDSA curve (default O(certificate_defaults.curve); only with key type C(ecdsa)).
        type: str
        choices: [secp256r1, secp384r1, secp521r1]
      key_size:
        description: RSA key size (default O(certificate_defaults.key_size); only with key type C(rsa)).
        type: int
      renew_before:
        description: See O(renew_before).
        type: float
      subject:
        description: See O(subject).
        type: raw
      mode:
        description: See O(mode) (default O(certificate_defaults.mode)).
        type: raw
      key_mode:
        description: See O(private_key_mode) (default O(certificate_defaults.key_mode)).
        type: raw
      notify:
        description:
          - Handler names (a string or a list) listed in RV(followups.notify) when the certificate changed.
        type: raw
      template:
        description: Certificate template (default O(certificate_defaults.template)).
        type: str
      ca_name:
        description: CA name for this certificate (over O(ca_name)).
        type: str
      ca_host:
        description: CA host for this certificate (over O(ca_host)).
        type: str
      domain:
        description: AD domain for this certificate (over O(domain)).
        type: str
      common_name:
        description: See O(common_name).
        type: str
      owner:
        description: See O(owner).
        type: str
      group:
        description: See O(group).
        type: str
      run_before:
        description:
          - Listed in RV(followups.run_before) when the certificate is about to be replaced (see
            O(run_before_results)).
        type: str
      run_after:
        description: Listed in RV(followups.run_after) when the certificate changed (not in check mode).
        type: str
      reuse_key:
        description: Keep the key on renewal (C(false) is O(regenerate_key=true)).
        type: bool
      chain:
        description: Write the chain file (default O(certificate_defaults.chain)).
        type: bool
      fullchain:
        description: Write the full chain file (default O(certificate_defaults.fullchain)).
        type: bool
      install_ca_trust:
        description:
          - A present certificate with it (and a chain file) is listed in RV(followups.trust) with the chain (default
            O(certificate_defaults.install_ca_trust)).
        type: bool
      create_directories:
        description: See O(create_directories) (default V(true)).
        type: bool
      directory:
        description: Base directory of the default file layout (default O(certificate_defaults.directory)).
        type: path
      key_path:
        description: Private key (default C(<directory>/private/<name>.key)).
        type: path
      certificate_path:
        description: Certificate (default C(<directory>/certs/<name>.crt)).
        type: path
      chain_path:
        description: Chain file (default C(<directory>/certs/<name>-chain.crt)).
        type: path
      fullchain_path:
        description: Full chain file (default C(<directory>/certs/<name>-fullchain.crt)).
        type: path
      pkcs12_path:
        description: See O(pkcs12_path).
        type: path
      csr_path:
        description:
          - Not used here (the certificate role's controller mode); accepted so that role entries pass unchanged.
        type: path
      state_path:
        description: State file (default C(<certificate_path>.adcs.json)).
        type: path
      crl_path:
        description: Where the role writes the CRL; a present certificate with it is listed in RV(followups.crl).
        type: path
      dns:
        description: DNS names (subject alternative names C(DNS:x)).
        type: list
        elements: str
      ip:
        description: IP addresses (subject alternative names C(IP:x)).
        type: list
        elements: str
      upn:
        description: User principal names (subject alternative names C(UPN:x)).
        type: list
        elements: str
      email:
        description: E-mail addresses (subject alternative names C(email:x)).
        type: list
        elements: str
      subject_alt_name:
        description:
          - Further SANs, see O(subject_alt_name); the names of O(certificates[].dns), O(certificates[].ip),
            O(certificates[].upn) and O(certificates[].email) follow them.
        type: list
        elements: str
  certificate_defaults:
    description:
      - The certificate role's defaults of the keys of O(certificates) entries (C(certificate_directory),
        C(certificate_template), ...).
    type: dict
    suboptions:
      directory:
        description: Base directory of the default file layout.
        type: path
        default: /etc/pki/adcs
      template:
        description: Template.
        type: str
        default: WebServer
      key_type:
        description: Key type.
        type: str
        choices: [rsa, ecdsa]
        default: rsa
      key_size:
        description: RSA key size.
        type: int
        default: 2048
      curve:
        description: ECDSA curve.
        type: str
        choices: [secp256r1, secp384r1, secp521r1]
        default: secp256r1
      reuse_key:
        description: Keep the key on renewal.
        type: bool
        default: true
      renew_before:
        description: Renewal window in days (null or an empty string - the template's renewal period).
        type: raw
      owner:
        description: Owner of the files.
        type: str
      group:
        description: Group of the files.
        type: str
      mode:
        description: Mode of the certificate files.
        type: raw
        default: "0644"
      key_mode:
        description: Mode of the private key.
        type: raw
        default: "0600"
      chain:
        description: Write chain files.
        type: bool
        default: true
      fullchain:
        description: Write full chain files.
        type: bool
        default: true
      install_ca_trust:
        description: List the chains in RV(followups.trust).
        type: bool
        default: false
  run_before_results:
    description:
      - With O(certificates), the registered results of the C(run_before) commands that RV(followups.run_before)
        listed (an C(ansible.builtin.shell) loop over it, C(item) being the listed entry). A certificate whose command
        failed is not enrolled and fails with the command's return code and error output.
      - Without it (and not in check mode), when an entry has C(run_before), the entries are planned first; when one
        with C(run_before) is about to be replaced, nothing is enrolled, RV(planned) is true and
        RV(followups.run_before) lists the commands to run before the task is repeated with their results.
    type: list
    elements: raw
  requests:
    description:
      - Several requests in one task, all sent over one authenticated DCOM session.
      - Each entry takes the per-request options below; options not given in an entry are taken from the top-level
        option of the same name. The connection options are shared.
    type: list
    elements: dict
    suboptions:
      template:
        description: See O(template).
        type: str
      csr_path:
        description: See O(csr_path).
        type: path
      csr_content:
        description: See O(csr_content).
        type: str
      private_key_path:
        description: See O(private_key_path).
        type: path
      private_key_passphrase:
        description: See O(private_key_passphrase).
        type: str
      private_key_mode:
        description: See O(private_key_mode).
        type: raw
      key_type:
        description: See O(key_type).
        type: str
        choices: [rsa, ecdsa]
      key_size:
        description: See O(key_size).
        type: int
      curve:
        description: See O(curve).
        type: str
        choices: [secp256r1, secp384r1, secp521r1]
      regenerate_key:
        description: See O(regenerate_key).
        type: bool
      renewal_request:
        description: See O(renewal_request).
        type: bool
      subject:
        description: See O(subject).
        type: raw
      common_name:
        description: See O(common_name).
        type: str
      subject_alt_name:
        description: See O(subject_alt_name).
        type: list
        elements: str
      certificate_path:
        description: See O(certificate_path).
        type: path
      chain_path:
        description: See O(chain_path).
        type: path
      fullchain_path:
        description: See O(fullchain_path).
        type: path
      format:
        description: See O(format).
        type: str
        choices: [pem, der]
      pkcs12_path:
        description: See O(pkcs12_path).
        type: path
      pkcs12_passphrase:
        description: See O(pkcs12_passphrase).
        type: str
      force:
        description: See O(force).
        type: bool
      renew_before:
        description: See O(renew_before).
        type: float
      request_id:
        description: See O(request_id).
        type: int
      backup:
        description: See O(backup).
        type: bool
      state_path:
        description: See O(state_path).
        type: path
      owner:
        description: See O(owner).
        type: str
      group:
        description: See O(group).
        type: str
      mode:
        description: See O(mode).
        type: raw
requirements:
  - impacket >= 0.12 (DCOM transport; brings pyasn1 and dnspython)
  - cryptography >= 41
notes:
  - Credentials come from the shared connection options (usable through
    C(module_defaults) for C(group/adcs.enrollment.wcce)). O(auth=password) and O(auth=ntlm) authenticate to the
    CA with NTLM using O(password) or O(nt_hash); O(auth=password) also means an LDAP simple bind when Active Directory
    is read (discovery, template renewal period).
  - DCOM enrollment needs the Enroll right on the template and, on Windows CAs, membership of
    C(Certificate Service DCOM Access).
  - A pending request reports C(changed=true) when it was submitted by this run (the CA now holds a request) and
    C(changed=false) when O(request_id) is still pending. Pending and issued results are not failures; denied
    requests and errors fail with a message naming the HRESULT, its meaning, the request ID and what to do.
  - Running the submitting task again while a request is pending submits another request; pass O(request_id) to
    retrieve the pending one.
seealso:
  - module: adcs.enrollment.wcce_template_info
  - name: MS-WCCE
    description: Windows Client Certificate Enrollment Protocol.
    link: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-wcce/
'''

EXAMPLES = r'''
- name: Web server certificate from a known CA (key generated on first run, renewed inside the window)
  adcs.enrollment.wcce_request:
    ca_host: ca1.example.com
    ca_name: EXAMPLE-CA
    username: svc-enroll@example.com
    password: "{{ vault_enroll_password }}"
    template: WebServer
    common_name: web01.example.com
    subject_alt_name:
      - DNS:web01.example.com
      - DNS:www.example.com
    private_key_path: /etc/pki/tls/private/web01.key
    certificate_path: /etc/pki/tls/certs/web01.crt
    fullchain_path: /etc/pki/tls/certs/web01-fullchain.crt
    owner: root
    group: nginx
    mode: "0644"
  notify: Reload nginx

- name: Find the CA in Active Directory; several certificates over one session
  module_defaults:
    group/adcs.enrollment.wcce:
      domain: example.com
      username: svc-enroll@example.com
      password: "{{ vault_enroll_password }}"
  adcs.enrollment.wcce_request:
    template: WebServer
    requests:
      - common_name: app1.example.com
        private_key_path: /etc/pki/app1.key
        certificate_path: /etc/pki/app1.crt
      - common_name: app2.example.com
        key_type: ecdsa
        curve: secp384r1
        private_key_path: /etc/pki/app2.key
        certificate_path: /etc/pki/app2.crt
        pkcs12_path: /etc/pki/app2.p12
        pkcs12_passphrase: "{{ vault_p12_pass }}"

- name: Template with CA manager approval - submit
  adcs.enrollment.wcce_request:
    ca_host: ca1.example.com
    ca_name: EXAMPLE-CA
    username: svc-enroll@example.com
    nt_hash: "{{ vault_nt_hash }}"
    auth: ntlm
    template: WebServerApproval
    common_name: app3.example.com
    private_key_path: /etc/pki/app3.key
    certificate_path: /etc/pki/app3.crt
  register: submitted

- name: Template with CA manager approval - retrieve after approval
  adcs.enrollment.wcce_request:
    ca_host: ca1.example.com
    ca_name: EXAMPLE-CA
    username: svc-enroll@example.com
    nt_hash: "{{ vault_nt_hash }}"
    auth: ntlm
    template: WebServerApproval
    request_id: "{{ submitted.request_id }}"
    private_key_path: /etc/pki/app3.key
    certificate_path: /etc/pki/app3.crt
  when: submitted.disposition == 'pending'

- name: Submit an existing CSR, DER output
  adcs.enrollment.wcce_request:
    ca_host: 10.0.0.5
    ca_name: EXAMPLE-CA
    username: EXAMPLE\svc-enroll
    password: "{{ vault_enroll_password }}"
    template: WebServer
    csr_path: /etc/pki/app4.csr
    certificate_path: /etc/pki/app4.cer
    format: der

- name: Submit a CSR made on another host, only if it carries exactly these names and an RSA 2048 key
  adcs.enrollment.wcce_request:
    ca_host: 10.0.0.5
    ca_name: EXAMPLE-CA
    username: EXAMPLE\svc-enroll
    password: "{{ vault_enroll_password }}"
    template: WebServer
    csr_content: "{{ host_csr.csr }}"
    common_name: app5.example.com
    subject_alt_name: [DNS:app5.example.com]
    key_type: rsa
    key_size: 2048
    certificate_path: /srv/certs/app5.crt

- name: Keep the state next to the certificate (a pending request is retrieved by the next runs)
  adcs.enrollment.wcce_request:
    domain: example.com
    username: svc-enroll@example.com
    password: "{{ vault_enroll_password }}"
    template: WebServerApproval
    common_name: app6.example.com
    private_key_path: /etc/pki/app6.key
    certificate_path: /etc/pki/app6.crt
    state_path: /etc/pki/app6.crt.adcs.json
  register: app6

- name: Pipe mode on the controller - a CSR from the host in, the certificate out, no file written
  adcs.enrollment.wcce_request:
    pipe: true
    domain: example.com
    username: svc-enroll@example.com
    password: "{{ vault_enroll_password }}"
    template: WebServer
    csr_content: "{{ host_csr.csr }}"
    common_name: app7.example.com
    certificate_content: "{{ current_certificate | default(omit) }}"
    chain_content: "{{ current_chain | default('') }}"
  delegate_to: localhost
  register: enrolled
'''

RETURN = r'''
status:
  description:
    - "What became of the request: C(issued) (a first certificate), C(renewed) (a certificate replaced another),
      C(unchanged) (the certificate fits; at most chain, full chain, PKCS#12 or file attributes were refreshed),
      C(pending) (held for a certificate manager), C(denied) (the CA or a certificate manager refused it),
      C(failed) (any other error) or, in check mode, C(would_enroll)."
  returned: always
  type: str
  sample: issued
state_content:
  description:
    - With O(pipe=true), the new state (see O(state_path)) to keep next to the certificate on the host; null when it
      stays as it is.
  returned: with O(pipe=true)
  type: str
certificate_content:
  description: With O(pipe=true), the certificate (PEM) now valid for the host, the new one after enrollment.
  returned: with O(pipe=true), when there is a certificate
  type: str
chain_content:
  description: With O(pipe=true) and O(chain_content), the verified CA chain (PEM).
  returned: with O(pipe=true) and O(chain_content)
  type: str
fullchain_content:
  description: With O(pipe=true) and O(fullchain_content), the certificate followed by the CA chain (PEM).
  returned: with O(pipe=true) and O(fullchain_content)
  type: str
refusal_content:
  description:
    - With O(pipe=true), the refusal record to keep next to the certificate on the host (C(<certificate>.refused));
      null when there is none (remove the host's).
  returned: with O(pipe=true)
  type: str
new_key:
  description:
    - With O(pipe=true), whether RV(certificate_content) was issued for the new key staged on the host (O(new_key),
      or a pending request for it retrieved), to be switched with the certificate (adcs.enrollment.wcce_install
      O(adcs.enrollment.wcce_install#module:staged_private_key_path)).
  returned: with O(pipe=true) and O(state_content)
  type: bool
new_key_needed:
  description:
    - With O(pipe=true) and O(regenerate_key=true), a certificate is due but O(csr_content) is for the current key;
      nothing was submitted; run again with the CSR of a new key and O(new_key=true).
  returned: when true
  type: bool
changed:
  description: Whether a certificate was issued and written, a request was submitted, or file attributes changed.
  returned: always
  type: bool
action:
  description:
    - "What the module did or, in check mode, would do: C(none) (the certificate fits), C(enroll), C(retrieve)
      (O(request_id)), or C(refresh) (the certificate fits, only chain/full chain/PKCS#12 were rewritten)."
  returned: always
  type: str
  sample: enroll
reason:
  description: Why the module enrolled or not.
  returned: always
  type: str
  sample: the certificate expires on 2026-12-01 10:00:00Z (in 2 days), within the renewal window of 30 days
reason_code:
  description:
    - Machine-readable RV(reason) (C(no_certificate), C(renew_window), C(expired), C(force), C(subject_changed), ...).
  returned: always
  type: str
  sample: renew_window
request_id:
  description: The CA's request ID of the submitted or retrieved request.
  returned: when the CA was contacted
  type: int
  sample: 42
disposition:
  description:
    - C(issued), C(pending) (held for a certificate manager; retrieve later with O(request_id)), or C(denied)/C(error)
      in failed results. Null when the CA was not contacted.
  returned: always
  type: str
  sample: issued
disposition_message:
  description: The CA's disposition message.
  returned: when the CA was contacted
  type: str
  sample: Issued
renewal:
  description: Whether the request was a renewal request signed with the previous certificate's key.
  returned: always
  type: bool
key_generated:
  description: Whether a new private key was generated.
  returned: always
  type: bool
renew_before:
  description: The renewal window used, in days.
  returned: when a certificate was on disk
  type: float
  sample: 30.0
renew_before_source:
  description: Where RV(renew_before) came from, C(option), C(template), C(default) or C(lifetime).
  returned: when a certificate was on disk
  type: str
ca:
  description: The CA used.
  returned: when the CA was contacted
  type: dict
  contains:
    name:
      description: CA name.
      type: str
    host:
      description: CA host as configured or found in Active Directory.
      type: str
    address:
      description: Address connected to.
      type: str
    source:
      description: C(options) or C(discovery).
      type: str
certificate:
  description: Facts of the certificate now on disk (the new one after enrollment). Never contains the private key.
  returned: when a certificate is on disk or was issued
  type: dict
  contains:
    subject:
      description: Subject (RFC 4514).
      type: str
      sample: CN=web01.example.com
    subject_alt_names:
      description: Subject alternative names.
      type: list
      elements: str
      sample: [DNS:web01.example.com]
    serial_number:
      description: Serial number (hex).
      type: str
    issuer:
      description: Issuer (RFC 4514).
      type: str
    not_before:
      description: Start of validity (UTC, ISO 8601).
      type: str
    not_after:
      description: End of validity (UTC, ISO 8601).
      type: str
    fingerprint_sha256:
      description: SHA-256 fingerprint (colon-separated hex).
      type: str
    template:
      description: Template named in the certificate (C(name), C(oid), C(major_version), C(minor_version)).
      type: dict
    extended_key_usage:
      description: Extended key usage OIDs.
      type: list
      elements: str
    public_key:
      description: Key type and size or curve.
      type: dict
    is_ca:
      description: Whether the certificate is a CA certificate.
      type: bool
paths:
  description: Files written by this run, by kind (C(private_key), C(certificate), C(chain), C(fullchain), C(pkcs12)).
  returned: always
  type: dict
  sample: {certificate: /etc/pki/web01.crt, private_key: /etc/pki/web01.key}
backup_files:
  description: Backup copies made, by original path.
  returned: always
  type: dict
pending_private_key_path:
  description: Where the new key of a pending request is kept until the certificate is retrieved.
  returned: when a request with a regenerated key is pending
  type: str
results:
  description:
    - One result per entry of O(requests) or O(certificates), each with the keys above (and C(failed)/C(msg)/C(error)
      on failure).
  returned: when O(requests) or O(certificates) is used
  type: list
  elements: dict
certificate_results:
  description:
    - With O(certificates), one entry per certificate, in their order. The same list is also returned as the host
      fact C(certificate_results) (in C(ansible_facts)), which is how the certificate role sets its fact of that
      name without a task of its own.
  returned: when O(certificates) is used
  type: list
  elements: dict
  contains:
    name:
      description: The entry's name.
      type: str
    status:
      description: As RV(status) (C(failed) for an entry that failed before the CA was asked).
      type: str
    changed:
      description: Whether the certificate was (or in check mode would be) replaced, or a pending request changed.
      type: bool
    reason:
      description: Why the certificate was or was not requested.
      type: str
    reason_code:
      description: The machine-readable reason.
      type: str
    request_id:
      description: The CA's request ID, when there is one.
      type: int
    message:
      description: The error message of a denied or failed certificate.
      type: str
    error:
      description: As RV(error), on failure.
      type: dict
    subject:
      description: Subject of the certificate (RFC 4514).
      type: str
    issuer:
      description: Issuer of the certificate (RFC 4514).
      type: str
    not_after:
      description: End of the certificate's validity.
      type: str
    serial_number:
      description: Serial number of the certificate.
      type: str
    template:
      description: The template asked for.
      type: str
    enroll_on:
      description: Always C(host).
      type: str
    paths:
      description:
        - The files of the certificate (C(private_key), C(certificate), C(chain), C(fullchain), C(pkcs12), C(crl));
          null when not written.
      type: dict
    summary:
      description:
        - One line - the name, the status and the certificate (subject, issuer, validity, reason) or the message.
      type: str
certificate_summaries:
  description: With O(certificates), the C(summary) of each certificate.
  returned: when O(certificates) is used
  type: list
  elements: str
certificate_failures:
  description: With O(certificates), the C(summary) of each denied or failed certificate.
  returned: when O(certificates) is used
  type: list
  elements: str
planned:
  description:
    - With O(certificates), true when nothing was enrolled because C(run_before) commands must run first (see
      O(run_before_results)); RV(certificate_results) is then the plan.
  returned: when O(certificates) is used
  type: bool
followups:
  description:
    - With O(certificates), what the certificate role does after this task, only the kinds that apply (an empty
      dict when nothing does).
  returned: when O(certificates) is used
  type: dict
  contains:
    run_before:
      description:
        - C(name) and C(command) of each certificate with C(run_before) that is about to be replaced (when
          RV(planned)).
      type: list
      elements: dict
    run_after:
      description: C(name) and C(command) of each changed certificate with C(run_after) (not in check mode).
      type: list
      elements: dict
    notify:
      description: The handler names of the changed certificates (each once).
      type: list
      elements: str
    changed:
      description: One line per changed certificate with handlers to notify.
      type: list
      elements: str
    crl:
      description: C(index) (in O(certificates)) and C(name) of each present certificate with C(crl_path).
      type: list
      elements: dict
    trust:
      description:
        - C(name), C(content) (the chain file, PEM) and C(verify=true) of each present certificate with
          C(install_ca_trust), for the trust role's C(trust_certificates).
      type: list
      elements: dict
created_directories:
  description: The directories created by O(create_directories) (in check mode, that would be created).
  returned: when O(create_directories) created a directory
  type: list
  elements: str
error:
  description: Details of a failure (C(hresult), C(error_name), C(meaning), C(request_id), C(remedy)).
  returned: on failure
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

# Only what parsing the options needs is imported here; the rest once the compiled-code cache is in place (_bytecode):
# what a run answered by its no-op records needs (no cryptography, no protocol stack, no writer) in main(), the
# functions of a run that plans import the rest
from ansible_collections.adcs.enrollment.plugins.module_utils import _bytecode
from ansible_collections.adcs.enrollment.plugins.module_utils import _request_spec
from ansible_collections.adcs.enrollment.plugins.module_utils import _results
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError


def enroll(module, params, specs, keeper, writer, project=None, keys=None, cache=None):
    """The results of a run that needs the CA or Active Directory (``_enroller.enroll``: the protocol stack, the
    policy cache and the retry with Active Directory read again are imported and done there)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _enroller
    return _enroller.enroll(params, specs, keeper, writer, module.check_mode, project, keys=keys, cache=cache)


def request_results(module, params, secrets=None):
    """The results of the requests of ``params`` (one connection); raises AdcsError. ``secrets``: the names of the
    secret options, left out of the digests under which the no-op records of the requests are kept (None: no
    records)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _files, _keygen, _pipe, _staged, _state
    with _pipe.Pipe(params) as pipe:
        specs = _request_spec.normalize_requests(pipe.params())
        keeper = _state.Keeper(specs, module.check_mode, params.get('state_content'), pipe=pipe.active)
        writer = _staged.ModuleFileWriter(module)
        created = []
        if params.get('create_directories'):
            created = _files.create_parent_directories(specs, check_mode=module.check_mode)
        directory_given = bool(params.get('domain') or params.get('domain_controller'))
        # a first request without its key file needs a new key: it begins now, while the rest is imported
        keys, cache = _keygen.begin(params, specs[0], module.check_mode)
        from ansible_collections.adcs.enrollment.plugins.module_utils import _fits, _noop
        entries = params.get('requests')
        project = None if secrets is None else _noop.projector(lambda spec: _fits.request_digest(
            params, entries[spec['index']] if entries else None, secrets), directory_given)
        with keys:
            # every certificate fits: answered from the files and their states, no network, no protocol imports
            results = _noop.results(specs, keeper, writer, check_mode=module.check_mode,
                                    directory_given=directory_given)
            if results is not None:
                results = keeper.record(specs, results, writer, new_key=params['new_key'], project=project)
            else:
                results = enroll(module, params, specs, keeper, writer, project, keys, cache)
        for result in results if created else []:
            result.update(created_directories=created, changed=True)
        pipe.contents(results)
    return results


def unexpected(exc):
    return AdcsError('Unexpected error during enrollment: %s: %s' % (type(exc).__name__, exc))


def group_results(module, params, check_mode, secrets=None):
    """request_results() for one connection of the certificate role's entries (``check_mode``: also the plan pass
    before run_before commands); any error fails that group."""
    saved, module.check_mode = module.check_mode, check_mode
    try:
        return request_results(module, params, None if check_mode else secrets)
    except AdcsError:
        raise
    except Exception as exc:  # never a bare traceback to the user
        raise unexpected(exc)
    finally:
        module.check_mode = saved


def main():
    spec = _request_spec.argument_spec()
    module = AnsibleModule(argument_spec=spec, **_request_spec.module_kwargs())
    params = module.params
    _bytecode.install(params, module.check_mode)
    from ansible_collections.adcs.enrollment.plugins.module_utils import _fits
    many = bool(params.get('requests') or params.get('certificates'))
    secrets = _fits.secret_names(spec)
    # nothing changed since a run found that every certificate fits: its recorded results, nothing parsed
    extra = _fits.answer_run(params, secrets, module.check_mode)
    if extra is not None:
        _results.finish(module, extra.pop('results'), many, **extra)
    from ansible_collections.adcs.enrollment.plugins.module_utils import _deps, _pipe, _role_entries
    _deps.check(module, 'cryptography')
    extra = {}
    try:
        _pipe.check(params, module.check_mode)
        if params['pipe'] and not params.get('csr_content'):
            results = [_pipe.no_csr_result()]
        elif params.get('certificates'):   # the certificate role's entries: an error fails its certificates only
            extra = _role_entries.run(params, module.check_mode,
                                      lambda group, check: group_results(module, group, check, secrets))
            results = extra.pop('results')
        else:
            results = request_results(module, params, secrets)
    except AdcsError as exc:
        module.fail_json(msg=exc.to_message(), error=exc.to_dict())
    except Exception as exc:  # never a bare traceback to the user
        import traceback
        module.fail_json(msg=unexpected(exc).to_message(), exception=traceback.format_exc())
    _results.finish(module, results, many, **extra)


if __name__ == '__main__':
    main()
