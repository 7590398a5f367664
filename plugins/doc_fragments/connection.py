# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Shared connection options of the adcs.enrollment modules (argument_spec: module_utils/_argspec.py).
    DOCUMENTATION = r'''
options:
  domain:
    description:
      - DNS name of the Active Directory domain, for example C(example.com).
      - Used to find a domain controller through the DNS SRV record C(_ldap._tcp.dc._msdcs.<domain>) when
        O(domain_controller) is not set, to qualify a bare O(username), and as the Kerberos realm.
      - One of O(domain) and O(domain_controller) is required.
    type: str
  domain_controller:
    description:
      - Host name or address of the domain controller to query over LDAP.
      - When omitted, the domain controllers of O(domain) are found in DNS and tried in SRV priority order. DNS
        answers are not authenticated, so only SRV targets inside O(domain) (the domain's name or a name ending in
        C(.<domain>)) are used, and the DC's TLS certificate is verified for that name; it must also name O(domain)
        itself in its subject alternative names, as Windows DC certificates from the Kerberos Authentication
        template do, or the DC is refused before the bind (a member server's certificate does not).
      - With TLS, the name must match the DC certificate; with O(auth=kerberos) it should be the DC's DNS name.
    type: str
    aliases: [dc]
  ldap_port:
    description:
      - TCP port of the LDAP service. Defaults to C(636) for O(ldap_scheme=ldaps), C(389) otherwise.
    type: int
  ldap_scheme:
    description:
      - C(ldaps) is LDAP over TLS, C(starttls) upgrades a plain connection with StartTLS, C(ldap) is unencrypted.
      - C(ldap) is refused unless O(ldap_allow_plaintext=true).
      - Domain controllers that require strong authentication refuse simple binds over C(ldap).
    type: str
    choices: [ldaps, starttls, ldap]
    default: ldaps
  ldap_allow_plaintext:
    description:
      - Allow O(ldap_scheme=ldap), with a warning. Without TLS, a simple bind (O(auth=password)) sends the
        password in clear text, and NTLM and Kerberos sessions are neither signed nor sealed (the ldap3 library
        negotiates no SASL security layer), so anyone on the network path can change what the directory returns
        (CA certificates, templates, permissions).
      - Leave it V(false) outside of tests; use O(ldap_scheme=ldaps) or O(ldap_scheme=starttls).
    type: bool
    default: false
  validate_certs:
    description:
      - Verify TLS certificates (chain and host name) of the domain controller and of HTTPS URLs the modules
        fetch (CRL distribution points, AIA).
      - Set to V(false) only for tests.
    type: bool
    default: true
  ca_bundle:
    description:
      - PEM file with the CA certificates that issued the TLS certificates of the domain controller and of the
        HTTPS servers the modules contact.
      - Defaults to the system trust store.
      - Its CA certificates are also trust anchors for the certificates M(adcs.enrollment.wcce_request) receives
        from the CA (see O(ca_fingerprint)).
    type: path
  ca_fingerprint:
    description:
      - SHA-256 fingerprints (64 hexadecimal digits, colons allowed) of the CA certificates that certificates
        issued by the CA must chain to, for example the root CA's (C(openssl x509 -noout -fingerprint -sha256)).
      - "Trust anchors never come from the CA: M(adcs.enrollment.wcce_request) verifies the chain of every issued
        certificate against anchors read independently: the certificates of O(ca_bundle), the roots in
        C(CN=Certification Authorities) of Active Directory when it is read over verified TLS (O(ldap_scheme=ldaps)
        or C(starttls) with O(validate_certs=true)), or the CA certificates with these fingerprints, which may then
        come from anywhere, the CA included. When set, only certificates with these fingerprints are anchors.
        When O(ca_bundle) or O(ca_fingerprint) is set, Active Directory is not read for anchors."
      - Without any of these sources the module fails before it contacts the CA.
    type: list
    elements: str
  auth:
    description:
      - How to authenticate.
      - C(password) is an LDAP simple bind with O(username) and O(password) (use TLS).
      - C(ntlm) authenticates with NTLM using O(password) or O(nt_hash).
      - C(kerberos) uses Kerberos (SASL GSSAPI for LDAP) with the credentials cache O(kerberos_ccache), a keytab
        O(kerberos_keytab), or the default credentials cache; it needs the Python C(gssapi) library.
    type: str
    choices: [password, ntlm, kerberos]
    default: password
  username:
    description:
      - Account to authenticate as, as C(user@domain), C(DOMAIN\user) or C(user) (qualified with O(domain)).
      - Required for O(auth=password) and O(auth=ntlm); optional for O(auth=kerberos) (selects the principal).
    type: str
  password:
    description:
      - Password of O(username).
    type: str
  nt_hash:
    description:
      - NT hash (32 hexadecimal digits) of the password of O(username), for O(auth=ntlm) instead of O(password).
    type: str
  kerberos_ccache:
    description:
      - Kerberos credentials cache to use with O(auth=kerberos), for example C(/tmp/krb5cc_1000) or C(FILE:/path).
    type: path
  kerberos_keytab:
    description:
      - Client keytab to obtain Kerberos credentials from with O(auth=kerberos).
    type: path
  ca_host:
    description:
      - DNS name or address of the certification authority server.
      - Modules that talk to the CA default to the C(dNSHostName) of the enrollment service found in Active Directory.
      - M(adcs.enrollment.wcce_template_info) uses it to restrict the listed CAs to this host.
    type: str
  ca_name:
    description:
      - Common name of the certification authority (the name of its enrollment service), for example C(EXAMPLE-CA).
      - Modules that talk to the CA use it to select the CA; M(adcs.enrollment.wcce_template_info) uses it to
        restrict the listed CAs.
    type: str
  timeout:
    description:
      - Network timeout in seconds for connecting and for each reply.
    type: int
    default: 30
  rpc_auth_package:
    description:
      - The DCE/RPC authentication package of the DCOM connections to the CA.
      - V(negotiate) is SPNEGO (RPC_C_AUTHN_GSS_NEGOTIATE), as Windows clients use it (MS-WCCE 2.1) - Kerberos
        inside SPNEGO with O(auth=kerberos), NTLM inside SPNEGO otherwise - with header signing and the MS-RPCE
        verification trailer.
      - V(ntlm) (RPC_C_AUTHN_WINNT) and V(kerberos) (RPC_C_AUTHN_GSS_KERBEROS) are the raw packages, fallbacks for
        CAs or middleboxes that refuse SPNEGO. V(ntlm) needs O(auth=password) or O(auth=ntlm), V(kerberos) needs
        O(auth=kerberos).
    type: str
    choices: [negotiate, ntlm, kerberos]
    default: negotiate
requirements:
  - ldap3 >= 2.9 (Python library)
  - dnspython (only to find domain controllers in DNS; installed with impacket)
  - gssapi (Python library, only for O(auth=kerberos))
notes:
  - The connection options are shared by the modules of the collection.
'''
