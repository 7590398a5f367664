# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HRESULT and disposition tables of AD CS enrollment (data): one job, naming codes.

Holds the table of HRESULTs and RPC status codes an AD CS enrollment can return (CERTSRV_E_*, the Win32/RPC
codes wrapped as HRESULT_FROM_WIN32, DCOM RPC_E_/CO_E_ codes, SSPI SEC_E_ codes, the few CRYPT_E_/CERT_E_ codes
the policy module reports), ``describe_hresult()`` to turn a number into name, meaning, remedy and category, and
the request disposition constants of MS-WCCE. ``_errors`` maps the categories to exception classes.

No third-party imports: this file must import on any controller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

# --------------------------------------------------------------------------------------------------------------
# Dispositions (MS-WCCE 3.2.1.4.2.1, CR_DISP_*): the pdwDisposition out parameter of Request/Request2.
# --------------------------------------------------------------------------------------------------------------
CR_DISP_INCOMPLETE = 0
CR_DISP_ERROR = 1
CR_DISP_DENIED = 2
CR_DISP_ISSUED = 3
CR_DISP_ISSUED_OUT_OF_BAND = 4
CR_DISP_UNDER_SUBMISSION = 5
CR_DISP_REVOKED = 6

DISPOSITION_NAMES = {
    CR_DISP_INCOMPLETE: 'incomplete',
    CR_DISP_ERROR: 'error',
    CR_DISP_DENIED: 'denied',
    CR_DISP_ISSUED: 'issued',
    CR_DISP_ISSUED_OUT_OF_BAND: 'issued_out_of_band',
    CR_DISP_UNDER_SUBMISSION: 'pending',
    CR_DISP_REVOKED: 'revoked',
}


def disposition_name(disposition):
    """Return a short name for a disposition value; HRESULT-shaped values are named by the error table."""
    if disposition is None:
        return 'unknown'
    disposition = int(disposition) & 0xFFFFFFFF
    if disposition in DISPOSITION_NAMES:
        return DISPOSITION_NAMES[disposition]
    if disposition & 0x80000000:
        return 'error'
    return 'unknown(%d)' % disposition


ErrorInfo = collections.namedtuple('ErrorInfo', ['code', 'name', 'meaning', 'remedy'])

# Categories are used to choose the exception class for a code (see exception_for_hresult).
CAT_DENIED = 'denied'            # the CA refused this request (policy/permission): RequestDenied
CAT_AUTH = 'auth'                # the credentials or the security context failed: AuthenticationError
CAT_ACCESS = 'access'            # authenticated but not allowed to talk to the CA at all: AccessDenied
CAT_UNAVAILABLE = 'unavailable'  # the CA service/host is not there or is busy: CaUnavailable
CAT_TRANSPORT = 'transport'      # the RPC/DCOM channel broke: TransportError
CAT_REQUEST = 'request'          # the request we built is malformed or unsuitable: BadRequest
CAT_NOT_FOUND = 'not_found'      # the request ID / property does not exist: NotFound
CAT_GENERIC = 'generic'

_ADMIN = 'Ask the CA administrator'

# code -> (name, meaning, remedy, category). Meanings follow MS-ERREF 2.1 (HRESULT values) and MS-WCCE.
_HRESULTS = {
    # ---- CERTSRV_E_* (FACILITY_CERT = 0x9, 0x8009400x / 0x800948xx) ----
    0x80094001: ('CERTSRV_E_BAD_REQUESTSUBJECT', 'The request subject name is invalid or too long.',
                 'Shorten or correct the subject; a template that builds the subject from Active Directory '
                 'ignores the supplied subject, so omit it.', CAT_REQUEST),
    0x80094002: ('CERTSRV_E_NO_REQUEST', 'The request does not exist.',
                 'Check the request ID; the request may have been deleted from the CA database.', CAT_NOT_FOUND),
    0x80094003: ('CERTSRV_E_BAD_REQUESTSTATUS', "The request's current status does not allow this operation.",
                 'The request is not pending (already issued or denied); retrieve it or submit a new request.',
                 CAT_REQUEST),
    0x80094004: ('CERTSRV_E_PROPERTY_EMPTY', 'The requested property value is empty.',
                 'The CA has no value for this property (for example no exchange certificate); use another '
                 'property or index.', CAT_NOT_FOUND),
    0x80094005: ('CERTSRV_E_INVALID_CA_CERTIFICATE', "The CA's certificate contains invalid data.",
                 _ADMIN + ' to renew or repair the CA certificate.', CAT_UNAVAILABLE),
    0x80094006: ('CERTSRV_E_SERVER_SUSPENDED', 'Certificate service has been suspended for a database restore '
                 'operation.', 'Retry after the CA database restore finishes.', CAT_UNAVAILABLE),
    0x80094007: ('CERTSRV_E_ENCODING_LENGTH', 'The certificate contains an encoded length that is potentially '
                 'incompatible with older enrollment software.', 'Shorten the subject or SAN values.',
                 CAT_REQUEST),
    0x80094008: ('CERTSRV_E_ROLECONFLICT', 'The operation is denied. The user has multiple roles assigned, and '
                 'the CA is configured to enforce role separation.',
                 'Use an account that holds only one CA role.', CAT_DENIED),
    0x80094009: ('CERTSRV_E_RESTRICTEDOFFICER', 'The operation is denied. It can only be performed by a '
                 'certificate manager that is allowed to manage certificates for the current requester.',
                 _ADMIN + ' to approve the request or adjust the restricted officer settings.', CAT_DENIED),
    0x8009400A: ('CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED', 'Cannot archive private key. The CA is not configured '
                 'for key archival.', 'Do not request key archival, or ' + _ADMIN.lower() +
                 ' to configure a key recovery agent.', CAT_REQUEST),
    0x8009400B: ('CERTSRV_E_NO_VALID_KRA', 'Cannot archive private key. The CA could not verify one or more key '
                 'recovery certificates.', _ADMIN + ' to renew the key recovery agent certificates.',
                 CAT_UNAVAILABLE),
    0x8009400C: ('CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL', 'The request is incorrectly formatted. The encrypted '
                 'private key must be in an unauthenticated attribute in an outermost signature.',
                 'The key archival request is malformed; report this as a bug in the collection.', CAT_REQUEST),
    0x8009400D: ('CERTSRV_E_NO_CAADMIN_DEFINED', 'At least one security principal must have the permission to '
                 'manage this CA.', _ADMIN + ' to grant the Manage CA permission to a principal.',
                 CAT_UNAVAILABLE),
    0x8009400E: ('CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE', 'The request contains an invalid renewal certificate '
                 'attribute.', 'The certificate being renewed is missing or unreadable; renew with the exact '
                 'certificate and its key, or enroll anew.', CAT_REQUEST),
    0x8009400F: ('CERTSRV_E_NO_DB_SESSIONS', 'An attempt was made to open a CA database session, but there are '
                 'already too many active sessions.', 'Retry later; the CA is overloaded.', CAT_UNAVAILABLE),
    0x80094010: ('CERTSRV_E_ALIGNMENT_FAULT', 'A memory reference caused a data alignment fault.',
                 'Retry; if it persists ' + _ADMIN.lower() + ' to check the CA service.', CAT_UNAVAILABLE),
    0x80094011: ('CERTSRV_E_ENROLL_DENIED', 'The permissions on this CA do not allow the current user to enroll '
                 'for certificates.', 'Grant the account the Request Certificates permission on the CA (and '
                 'check that the CA allows remote ICertRequest calls).', CAT_DENIED),
    0x80094012: ('CERTSRV_E_TEMPLATE_DENIED', 'The permissions on the certificate template do not allow the '
                 'current user to enroll for this type of certificate.',
                 'Grant the account (or one of its groups) the Enroll right on the template, or use another '
                 'template; check for an explicit Deny entry.', CAT_DENIED),
    0x80094013: ('CERTSRV_E_DOWNLEVEL_DC_SSL_OR_UPGRADE', 'The contacted domain controller cannot support signed '
                 'LDAP traffic.', _ADMIN + ' to update the domain controller or configure the CA to use '
                 'LDAPS.', CAT_UNAVAILABLE),
    0x80094014: ('CERTSRV_E_ADMIN_DENIED_REQUEST', 'The request was denied by a certificate manager or CA '
                 'administrator.', 'Ask the CA administrators why, then submit a new request.', CAT_DENIED),
    0x80094015: ('CERTSRV_E_NO_POLICY_SERVER', 'An enrollment policy server cannot be located.',
                 _ADMIN + ' to check the enrollment policy configuration of the CA.', CAT_UNAVAILABLE),
    0x80094016: ('CERTSRV_E_WEAK_SIGNATURE_OR_KEY', "A signature algorithm or public key length does not meet the "
                 "system's minimum required strength.", 'Use a larger key (key_size) or another key type, and '
                 'SHA-256 or stronger.', CAT_REQUEST),
    0x80094800: ('CERTSRV_E_UNSUPPORTED_CERT_TYPE', 'The requested certificate template is not supported by '
                 'this CA.', 'Publish the template on this CA (certificateTemplates of the enrollment service) '
                 'or pick a template the CA offers (see wcce_template_info).', CAT_DENIED),
    0x80094801: ('CERTSRV_E_NO_CERT_TYPE', 'The request contains no certificate template information.',
                 'Name the certificate template in the request.', CAT_REQUEST),
    0x80094802: ('CERTSRV_E_TEMPLATE_CONFLICT', 'The request contains conflicting template information.',
                 'Name one template only (attribute and extension must agree).', CAT_REQUEST),
    0x80094803: ('CERTSRV_E_SUBJECT_ALT_NAME_REQUIRED', 'The request is missing a required Subject Alternate '
                 'name extension.', 'Add subject alternative names (dns/upn) to the request.', CAT_REQUEST),
    0x80094804: ('CERTSRV_E_ARCHIVED_KEY_REQUIRED', 'The request is missing a required private key for archival '
                 'by the server.', 'This template requires key archival; use another template.', CAT_REQUEST),
    0x80094805: ('CERTSRV_E_SMIME_REQUIRED', 'The request is missing a required SMIME capabilities extension.',
                 'Use a template that does not require S/MIME capabilities.', CAT_REQUEST),
    0x80094806: ('CERTSRV_E_BAD_RENEWAL_SUBJECT', 'The request was made on behalf of a subject other than the '
                 'caller. The certificate template must be configured to require at least one signature to '
                 'authorize the request.', 'Renew with the account the certificate was issued to.', CAT_DENIED),
    0x80094807: ('CERTSRV_E_BAD_TEMPLATE_VERSION', 'The request template version is newer than the supported '
                 'template version.', _ADMIN + ' to check the template schema version for this CA.',
                 CAT_REQUEST),
    0x80094808: ('CERTSRV_E_TEMPLATE_POLICY_REQUIRED', 'The template is missing a required signature policy '
                 'attribute.', _ADMIN + ' to fix the template issuance requirements.', CAT_DENIED),
    0x80094809: ('CERTSRV_E_SIGNATURE_POLICY_REQUIRED', 'The request is missing required signature policy '
                 'information.', 'The template requires an enrollment-agent signature; use another '
                 'template.', CAT_DENIED),
    0x8009480A: ('CERTSRV_E_SIGNATURE_COUNT', 'The request is missing one or more required signatures.',
                 'The template requires authorized signatures (enrollment agent); use another template.',
                 CAT_DENIED),
    0x8009480B: ('CERTSRV_E_SIGNATURE_REJECTED', 'One or more signatures did not include the required '
                 'application or issuance policies.', 'Sign with a certificate holding the required policies.',
                 CAT_DENIED),
    0x8009480C: ('CERTSRV_E_ISSUANCE_POLICY_REQUIRED', 'The request is missing one or more required signature '
                 'issuance policies.', 'Sign with a certificate holding the required issuance policies.',
                 CAT_DENIED),
    0x8009480D: ('CERTSRV_E_SUBJECT_UPN_REQUIRED', 'The UPN is unavailable and cannot be added to the Subject '
                 'Alternate name.', 'Set userPrincipalName on the enrolling account, or use a template that '
                 'does not require it.', CAT_DENIED),
    0x8009480E: ('CERTSRV_E_SUBJECT_DIRECTORY_GUID_REQUIRED', 'The Active Directory GUID is unavailable and '
                 'cannot be added to the Subject Alternate name.', 'Use a template that does not require the '
                 'directory GUID.', CAT_DENIED),
    0x8009480F: ('CERTSRV_E_SUBJECT_DNS_REQUIRED', 'The DNS name is unavailable and cannot be added to the '
                 'Subject Alternate name.', 'Set dNSHostName on the enrolling (computer) account, or use a '
                 'template that does not require it.', CAT_DENIED),
    0x80094810: ('CERTSRV_E_ARCHIVED_KEY_UNEXPECTED', 'The request includes a private key for archival by the '
                 'server, but key archival is not enabled for the specified certificate template.',
                 'Do not request key archival for this template.', CAT_REQUEST),
    0x80094811: ('CERTSRV_E_KEY_LENGTH', 'The public key does not meet the minimum size required by the '
                 'specified certificate template.', "Use a larger key (see the template's msPKI-Minimal-Key-Size).",
                 CAT_REQUEST),
    0x80094812: ('CERTSRV_E_SUBJECT_EMAIL_REQUIRED', 'The email name is unavailable and cannot be added to the '
                 'Subject or Subject Alternate name.', 'Set the mail attribute on the enrolling account, or use '
                 'a template that does not require it.', CAT_DENIED),
    0x80094813: ('CERTSRV_E_UNKNOWN_CERT_TYPE', 'One or more certificate templates to be enabled on this CA '
                 'could not be found.', 'Check the template name (use the template CN, not the display name).',
                 CAT_DENIED),
    0x80094814: ('CERTSRV_E_CERT_TYPE_OVERLAP', 'The certificate template renewal period is longer than the '
                 'certificate validity period.', _ADMIN + ' to fix the template periods or renew the CA '
                 'certificate.', CAT_DENIED),
    0x80094815: ('CERTSRV_E_TOO_MANY_SIGNATURES', 'The certificate template requires too many RA signatures. '
                 'Only one RA signature is allowed.', _ADMIN + ' to fix the template.', CAT_DENIED),
    0x80094816: ('CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY', 'The key used in a renewal request does not match one of '
                 'the certificates being renewed.', 'Renew with the private key belonging to the old '
                 'certificate.', CAT_REQUEST),
    0x80094817: ('CERTSRV_E_INVALID_EK', 'The endorsement key certificate is not valid.',
                 'Use a template without TPM key attestation.', CAT_REQUEST),
    0x8009481A: ('CERTSRV_E_KEY_ATTESTATION', 'Key attestation did not succeed.',
                 'Use a template without key attestation.', CAT_REQUEST),

    # ---- generic COM / Win32 as HRESULT ----
    0x80004001: ('E_NOTIMPL', 'Not implemented.', 'The CA does not implement this call; use another method.',
                 CAT_GENERIC),
    0x80004002: ('E_NOINTERFACE', 'No such interface supported.',
                 'The CA does not offer this interface (ICertRequestD2 falls back to ICertRequestD).',
                 CAT_TRANSPORT),
    0x80004005: ('E_FAIL', 'Unspecified error.', 'Check the CA event log; retry.', CAT_GENERIC),
    0x8000FFFF: ('E_UNEXPECTED', 'Catastrophic failure.', 'Check the CA service; retry.', CAT_UNAVAILABLE),
    0x80070002: ('ERROR_FILE_NOT_FOUND', 'The system cannot find the file specified.',
                 'The CA name (authority) may be wrong; check the CA common name.', CAT_NOT_FOUND),
    0x80070005: ('E_ACCESSDENIED', 'General access denied error.',
                 'The account may not use the CA over DCOM: on Windows add it to "Certificate Service DCOM '
                 'Access" and check the CA Request Certificates permission.', CAT_ACCESS),
    0x8007000D: ('ERROR_INVALID_DATA', 'The data is invalid.',
                 'The CA could not parse the request; check request type and key/CSR contents.', CAT_REQUEST),
    0x8007000E: ('E_OUTOFMEMORY', 'Not enough memory resources are available to complete this operation.',
                 'Retry later; the CA is short of memory.', CAT_UNAVAILABLE),
    0x80070057: ('E_INVALIDARG', 'One or more arguments are invalid.',
                 'Check the CA name (pwszAuthority must be the CA common name, e.g. LAB-CA) and the request '
                 'parameters.', CAT_REQUEST),
    0x80070490: ('ERROR_NOT_FOUND', 'Element not found.', 'Check the request ID, CA name and template name.',
                 CAT_NOT_FOUND),
    0x8007052E: ('ERROR_LOGON_FAILURE', 'The user name or password is incorrect.',
                 'Check user name, domain and password (or NT hash).', CAT_AUTH),
    0x8007052F: ('ERROR_ACCOUNT_RESTRICTION', 'Account restrictions are preventing this user from signing in.',
                 'Check logon hours, workstation restrictions and blank-password policy.', CAT_AUTH),
    0x80070530: ('ERROR_INVALID_LOGON_HOURS', 'Your account has time restrictions that keep you from signing '
                 'in right now.', 'Retry within the allowed logon hours.', CAT_AUTH),
    0x80070531: ('ERROR_INVALID_WORKSTATION', 'This user is not allowed to sign in to this computer.',
                 'Allow the account to log on from this host.', CAT_AUTH),
    0x80070532: ('ERROR_PASSWORD_EXPIRED', 'The password for this account has expired.',
                 'Change the password of the account.', CAT_AUTH),
    0x80070533: ('ERROR_ACCOUNT_DISABLED', 'This user cannot sign in because this account is currently '
                 'disabled.', 'Enable the account.', CAT_AUTH),
    0x80070569: ('ERROR_LOGON_TYPE_NOT_GRANTED', 'The user has not been granted the requested logon type at '
                 'this computer.', 'Grant "Access this computer from the network" to the account.', CAT_AUTH),
    0x80070775: ('ERROR_ACCOUNT_LOCKED_OUT', 'The referenced account is currently locked out and may not be '
                 'logged on to.', 'Unlock the account or wait for the lockout to expire.', CAT_AUTH),
    0x800706BA: ('RPC_S_SERVER_UNAVAILABLE', 'The RPC server is unavailable.',
                 'Check the CA host name/address, that port 135 and the dynamic RPC ports are reachable, and that '
                 'the Certificate Services service is running.', CAT_UNAVAILABLE),
    0x800706BE: ('RPC_S_CALL_FAILED', 'The remote procedure call failed.', 'Retry; check the CA event log.',
                 CAT_TRANSPORT),
    0x800706BF: ('RPC_S_CALL_FAILED_DNE', 'The remote procedure call failed and did not execute.',
                 'Retry; the call never reached the CA.', CAT_TRANSPORT),
    0x800706D1: ('RPC_S_PROCNUM_OUT_OF_RANGE', 'The procedure number is out of range.',
                 'The CA does not implement this method (old CA or wrong interface).', CAT_TRANSPORT),
    0x800706D3: ('RPC_S_UNKNOWN_AUTHN_SERVICE', 'The authentication service is unknown.',
                 'Use NTLM or Kerberos authentication.', CAT_AUTH),
    0x800706D9: ('EPT_S_NOT_REGISTERED', 'There are no more endpoints available from the endpoint mapper.',
                 'The CA service is not registered with the endpoint mapper; check that it is running.',
                 CAT_UNAVAILABLE),
    0x800706F7: ('RPC_X_BAD_STUB_DATA', 'The stub received bad data.',
                 'The CA could not decode the call; report this as a bug in the collection.', CAT_TRANSPORT),
    0x80070721: ('RPC_S_SEC_PKG_ERROR', 'A security package specific error occurred.',
                 'Authentication failed inside NTLM/Kerberos: check credentials, the domain name, clock skew '
                 'and that the server accepts the authentication level (packet privacy).', CAT_AUTH),

    # ---- DCOM / OLE ----
    0x80010105: ('RPC_E_SERVERFAULT', 'The server threw an exception.', 'Check the CA event log; retry.',
                 CAT_UNAVAILABLE),
    0x80010108: ('RPC_E_DISCONNECTED', 'The object invoked has disconnected from its clients.',
                 'The DCOM object was released (idle too long or the CA restarted); reconnect.', CAT_TRANSPORT),
    0x8001010A: ('RPC_E_SERVERCALL_RETRYLATER', 'The message filter indicated that the application is busy.',
                 'Retry later.', CAT_UNAVAILABLE),
    0x80010113: ('RPC_E_INVALID_IPID', 'The requested object or interface does not exist.',
                 'The DCOM object reference is stale; reconnect.', CAT_TRANSPORT),
    0x80010114: ('RPC_E_INVALID_OBJECT', 'The requested object does not exist.',
                 'The DCOM object reference is stale; reconnect.', CAT_TRANSPORT),
    0x8001011B: ('RPC_E_ACCESS_DENIED', 'Access is denied.',
                 'DCOM denied the call: check DCOM launch/access permissions (Certificate Service DCOM Access) '
                 'and that packet privacy is used.', CAT_ACCESS),
    0x8001011C: ('RPC_E_REMOTE_DISABLED', 'Remote calls are not allowed for this process.',
                 _ADMIN + ' to allow remote DCOM calls to the CA.', CAT_ACCESS),
    0x80040154: ('REGDB_E_CLASSNOTREG', 'Class not registered.',
                 'The host is not a CA (CCertRequestD is not registered); check the CA host name.',
                 CAT_UNAVAILABLE),
    0x80080005: ('CO_E_SERVER_EXEC_FAILURE', 'Server execution failed.',
                 'The Certificate Services service could not start; check it on the CA host.', CAT_UNAVAILABLE),

    # ---- SSPI ----
    0x80090302: ('SEC_E_UNSUPPORTED_FUNCTION', 'The function requested is not supported.',
                 'The server refused the authentication level or package; packet privacy with NTLM/Kerberos is '
                 'required.', CAT_AUTH),
    0x80090304: ('SEC_E_INTERNAL_ERROR', 'The Local Security Authority cannot be contacted.',
                 'Check that the CA can reach a domain controller.', CAT_AUTH),
    0x8009030C: ('SEC_E_LOGON_DENIED', 'The logon attempt failed.', 'Check user name, domain and password.',
                 CAT_AUTH),
    0x8009030E: ('SEC_E_NO_CREDENTIALS', 'No credentials are available in the security package.',
                 'Supply credentials (password, NT hash or a Kerberos ticket).', CAT_AUTH),
    0x80090311: ('SEC_E_NO_AUTHENTICATING_AUTHORITY', 'No authority could be contacted for authentication.',
                 'Check that the KDC/domain controller is reachable and the realm is right.', CAT_AUTH),
    0x80090322: ('SEC_E_WRONG_PRINCIPAL', 'The target principal name is incorrect.',
                 'Connect to the CA by the host name its SPN is registered for.', CAT_AUTH),

    # ---- crypto / chain (reported by the policy module in disposition messages) ----
    0x80090006: ('NTE_BAD_SIGNATURE', 'Invalid signature.',
                 'The request signature does not verify; regenerate the request.', CAT_REQUEST),
    0x80090008: ('NTE_BAD_ALGID', 'Invalid algorithm specified.',
                 'Use a key algorithm/size the template allows (RSA or ECDSA P-256/384/521).', CAT_REQUEST),
    0x80091004: ('CRYPT_E_INVALID_MSG_TYPE', 'Invalid cryptographic message type.',
                 'The request format was not recognized; report this as a bug in the collection.', CAT_REQUEST),
    0x80092002: ('CRYPT_E_BAD_ENCODE', 'An error occurred during the encode or decode operation.',
                 'The request could not be decoded; report this as a bug in the collection.', CAT_REQUEST),
    0x80092004: ('CRYPT_E_NOT_FOUND', 'Cannot find object or property.',
                 'A certificate or property the CA needs is missing; check the renewal certificate.',
                 CAT_NOT_FOUND),
    0x80092012: ('CRYPT_E_NO_REVOCATION_CHECK', 'The revocation function was unable to check revocation for '
                 'the certificate.', 'Publish a CRL for the issuer of the signing certificate.', CAT_DENIED),
    0x80092013: ('CRYPT_E_REVOCATION_OFFLINE', 'The revocation function was unable to check revocation because '
                 'the revocation server was offline.', 'Check that the CRL distribution points are reachable.',
                 CAT_DENIED),
    0x80093102: ('CRYPT_E_ASN1_EOD', 'ASN1 unexpected end of data.',
                 'The request is malformed; report this as a bug in the collection.', CAT_REQUEST),
    0x8009310B: ('CRYPT_E_ASN1_BADTAG', 'ASN1 bad tag value met.',
                 'The request is malformed; report this as a bug in the collection.', CAT_REQUEST),
    0x800B0101: ('CERT_E_EXPIRED', 'A required certificate is not within its validity period.',
                 'The certificate used to sign (renew) has expired; enroll anew instead of renewing.',
                 CAT_DENIED),
    0x800B0109: ('CERT_E_UNTRUSTEDROOT', 'A certificate chain processed, but terminated in a root certificate '
                 'that is not trusted.', 'Check the CA chain and the trust anchors.', CAT_DENIED),
    0x800B010A: ('CERT_E_CHAINING', 'A certificate chain could not be built to a trusted root authority.',
                 'Check the CA chain and the trust anchors.', CAT_DENIED),
    0x800B0110: ('CERT_E_WRONG_USAGE', 'The certificate is not valid for the requested usage.',
                 'Sign with a certificate whose usage allows it.', CAT_DENIED),
}

# Win32 error codes as they appear un-wrapped (RPC fault status, bind nak reasons, SMB/NTLM results).
_WIN32 = {
    5: 0x80070005,       # ERROR_ACCESS_DENIED (rpc_s_access_denied in a fault PDU)
    0x2: 0x80070002,
    0xD: 0x8007000D,
    0xE: 0x8007000E,
    0x57: 0x80070057,
    0x490: 0x80070490,
    0x52E: 0x8007052E,
    0x52F: 0x8007052F,
    0x530: 0x80070530,
    0x531: 0x80070531,
    0x532: 0x80070532,
    0x533: 0x80070533,
    0x569: 0x80070569,
    0x6BA: 0x800706BA,
    0x6BE: 0x800706BE,
    0x6BF: 0x800706BF,
    0x6D1: 0x800706D1,
    0x6D3: 0x800706D3,
    0x6D9: 0x800706D9,
    0x6F7: 0x800706F7,
    0x721: 0x80070721,
    0x775: 0x80070775,
}

# NCA status codes carried in connection-oriented fault PDUs (MS-RPCE 2.2.2.11 / C706 appendix E).
_NCA = {
    0x1C010002: ('NCA_S_OP_RNG_ERROR', 'The operation number is out of range for the interface.',
                 'The CA does not implement this method on this interface (older CA or wrong interface).',
                 CAT_TRANSPORT),
    0x1C010003: ('NCA_S_UNK_IF', 'The server does not support the requested interface.',
                 'The CA does not offer this interface/version.', CAT_TRANSPORT),
    0x1C01000B: ('NCA_S_PROTO_ERROR', 'RPC protocol error.', 'Report this as a bug in the collection.',
                 CAT_TRANSPORT),
    0x1C010014: ('NCA_S_SERVER_TOO_BUSY', 'The server is too busy.', 'Retry later.', CAT_UNAVAILABLE),
    0x1C00001B: ('NCA_S_FAULT_REMOTE_NO_MEMORY', 'The server ran out of memory.', 'Retry later.',
                 CAT_UNAVAILABLE),
    0x1C000009: ('NCA_S_UNSPEC_REJECT', 'The server rejected the call for an unspecified reason.',
                 'Check the CA service and its event log.', CAT_UNAVAILABLE),
    0x1C000012: ('NCA_S_FAULT_UNSPEC', 'The server raised an unspecified fault.', 'Check the CA service and its '
                 'event log.', CAT_UNAVAILABLE),
}

# Named constants for callers.
S_OK = 0
CERTSRV_E_NO_REQUEST = 0x80094002
CERTSRV_E_PROPERTY_EMPTY = 0x80094004
CERTSRV_E_ENROLL_DENIED = 0x80094011
CERTSRV_E_TEMPLATE_DENIED = 0x80094012
CERTSRV_E_UNSUPPORTED_CERT_TYPE = 0x80094800
CERTSRV_E_KEY_LENGTH = 0x80094811
E_ACCESSDENIED = 0x80070005
E_INVALIDARG = 0x80070057
E_NOINTERFACE = 0x80004002
RPC_S_SEC_PKG_ERROR = 0x80070721
RPC_S_SERVER_UNAVAILABLE = 0x800706BA

_FACILITIES = {
    0: 'FACILITY_NULL', 1: 'FACILITY_RPC', 4: 'FACILITY_ITF', 7: 'FACILITY_WIN32', 8: 'FACILITY_WINDOWS',
    9: 'FACILITY_SECURITY', 11: 'FACILITY_CERT',
}


def normalize(code):
    if code is None:
        return None
    code = int(code)
    if code < 0:
        code &= 0xFFFFFFFF
    return code & 0xFFFFFFFF


def hresult_from_win32(code):
    """HRESULT_FROM_WIN32: 0x8007xxxx for a Win32 error code (0 stays 0)."""
    code = normalize(code)
    if code == 0 or code & 0x80000000:
        return code
    return 0x80070000 | (code & 0xFFFF)


def _lookup(code):
    """Return (code_as_reported, name, meaning, remedy, category) or None."""
    if code in _HRESULTS:
        return (code,) + _HRESULTS[code]
    if code in _NCA:
        return (code,) + _NCA[code]
    if code in _WIN32:
        return (code,) + _HRESULTS[_WIN32[code]]
    # A HRESULT_FROM_WIN32 of an un-tabled code, or a bare Win32 code whose HRESULT form is tabled.
    if code < 0x10000 and hresult_from_win32(code) in _HRESULTS:
        return (code,) + _HRESULTS[hresult_from_win32(code)]
    return None


def describe_hresult(code):
    """Describe an HRESULT / Win32 / NCA status code. Always returns an ErrorInfo (never raises).

    ``code`` may be negative (signed 32-bit, as some libraries report it), a bare Win32 code (5, 0x721), an
    HRESULT_FROM_WIN32 value, an NCA fault status, or anything else (then the name is derived from the facility).
    """
    norm = normalize(code)
    if norm is None:
        return ErrorInfo(None, 'UNKNOWN', 'No error code was reported.', 'Check the CA event log.')
    if norm == 0:
        return ErrorInfo(0, 'S_OK', 'The operation completed successfully.', '')
    found = _lookup(norm)
    if found is not None:
        return ErrorInfo(norm, found[1], found[2], found[3])
    if norm & 0x80000000:
        facility = (norm >> 16) & 0x7FF
        fac_name = _FACILITIES.get(facility, 'facility 0x%X' % facility)
        return ErrorInfo(norm, 'HRESULT_0x%08X' % norm,
                         'Unrecognized error (%s, code 0x%04X).' % (fac_name, norm & 0xFFFF),
                         'Look the code up in MS-ERREF; check the CA event log.')
    return ErrorInfo(norm, 'STATUS_0x%X' % norm, 'Unrecognized status code %d.' % norm,
                     'Check the CA event log.')


def error_category(code):
    norm = normalize(code)
    if norm is None or norm == 0:
        return CAT_GENERIC
    found = _lookup(norm)
    return found[4] if found is not None else CAT_GENERIC


def known_codes():
    """All tabled codes (HRESULTs, then NCA statuses); useful for tests and documentation."""
    return sorted(_HRESULTS) + sorted(_NCA)


def format_hresult(code):
    norm = normalize(code)
    return 'unknown' if norm is None else '0x%08X' % norm
