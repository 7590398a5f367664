"""HRESULTs the lab CA returns (MS-ERREF 2.1) and the CAError exception.

The texts are the Windows FormatMessage strings (trimmed), used to build AD CS-style disposition messages.
"""

S_OK = 0
E_INVALIDARG = 0x80070057
E_ACCESSDENIED = 0x80070005
NTE_BAD_SIGNATURE = 0x80090006
NTE_BAD_ALGID = 0x80090008
CRYPT_E_ASN1_CORRUPT = 0x80093100
CRYPT_E_ASN1_EOD = 0x80093102
CRYPT_E_ASN1_BADTAG = 0x8009310B
CRYPT_E_INVALID_MSG_TYPE = 0x80091004
CRYPT_E_NO_SIGNER = 0x8009200E
CERTSRV_E_BAD_REQUESTSUBJECT = 0x80094001
CERTSRV_E_NO_REQUEST = 0x80094002
CERTSRV_E_BAD_REQUESTSTATUS = 0x80094003
CERTSRV_E_PROPERTY_EMPTY = 0x80094004
CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED = 0x8009400A
CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL = 0x8009400C
CERTSRV_E_ENROLL_DENIED = 0x80094011
CERTSRV_E_TEMPLATE_DENIED = 0x80094012
CERTSRV_E_ADMIN_DENIED_REQUEST = 0x80094014
CERTSRV_E_UNSUPPORTED_CERT_TYPE = 0x80094800
CERTSRV_E_NO_CERT_TYPE = 0x80094801
CERTSRV_E_SUBJECT_ALT_NAME_REQUIRED = 0x80094803
CERTSRV_E_ARCHIVED_KEY_REQUIRED = 0x80094804
CERTSRV_E_SIGNATURE_COUNT = 0x8009480A
CERTSRV_E_SUBJECT_UPN_REQUIRED = 0x8009480D
CERTSRV_E_SUBJECT_DIRECTORY_GUID_REQUIRED = 0x8009480E
CERTSRV_E_SUBJECT_DNS_REQUIRED = 0x8009480F
CERTSRV_E_SUBJECT_EMAIL_REQUIRED = 0x80094812
CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE = 0x8009400E
CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY = 0x80094816
CERT_E_EXPIRED = 0x800B0101
CERT_E_UNTRUSTEDROOT = 0x800B0109
CERT_E_CHAINING = 0x800B010A
ERROR_DS_SERVER_DOWN = 0x8007203A
ERROR_NO_SUCH_USER = 0x80070525
CERTSRV_E_KEY_LENGTH = 0x80094811
CRYPT_E_REVOKED = 0x80092010

MESSAGES = {
    E_INVALIDARG: ("E_INVALIDARG", "The parameter is incorrect."),
    E_ACCESSDENIED: ("E_ACCESSDENIED", "Access is denied."),
    NTE_BAD_SIGNATURE: ("NTE_BAD_SIGNATURE", "Invalid Signature."),
    NTE_BAD_ALGID: ("NTE_BAD_ALGID", "Invalid algorithm specified."),
    CRYPT_E_ASN1_CORRUPT: ("CRYPT_E_ASN1_CORRUPT", "ASN1 corrupted data."),
    CRYPT_E_ASN1_EOD: ("CRYPT_E_ASN1_EOD", "ASN1 unexpected end of data."),
    CRYPT_E_ASN1_BADTAG: ("CRYPT_E_ASN1_BADTAG", "ASN1 bad tag value met."),
    CRYPT_E_INVALID_MSG_TYPE: ("CRYPT_E_INVALID_MSG_TYPE", "Invalid cryptographic message type."),
    CRYPT_E_NO_SIGNER: ("CRYPT_E_NO_SIGNER", "The message does not contain a valid signer."),
    CERTSRV_E_BAD_REQUESTSUBJECT: ("CERTSRV_E_BAD_REQUESTSUBJECT",
                                   "The request subject name is invalid or too long."),
    CERTSRV_E_NO_REQUEST: ("CERTSRV_E_NO_REQUEST", "The request does not exist."),
    CERTSRV_E_BAD_REQUESTSTATUS: ("CERTSRV_E_BAD_REQUESTSTATUS",
                                  "The request's current status does not allow this operation."),
    CERTSRV_E_PROPERTY_EMPTY: ("CERTSRV_E_PROPERTY_EMPTY", "The requested property value is empty."),
    CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED: ("CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED",
                                            "Cannot archive private key.  The certification authority is not "
                                            "configured for key archival."),
    CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL: ("CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL",
                                         "The request is incorrectly formatted.  The encrypted private key must be "
                                         "in an unauthenticated attribute in an outermost signature."),
    CERTSRV_E_ARCHIVED_KEY_REQUIRED: ("CERTSRV_E_ARCHIVED_KEY_REQUIRED",
                                      "The request is missing a required private key for archival by the server."),
    CERTSRV_E_ENROLL_DENIED: ("CERTSRV_E_ENROLL_DENIED",
                              "The permissions on this certification authority do not allow the current user to "
                              "enroll for certificates."),
    CERTSRV_E_TEMPLATE_DENIED: ("CERTSRV_E_TEMPLATE_DENIED",
                                "The permissions on the certificate template do not allow the current user "
                                "to enroll for this type of certificate."),
    CERTSRV_E_ADMIN_DENIED_REQUEST: ("CERTSRV_E_ADMIN_DENIED_REQUEST",
                                     "The request was denied by a certificate manager or CA administrator."),
    CERTSRV_E_UNSUPPORTED_CERT_TYPE: ("CERTSRV_E_UNSUPPORTED_CERT_TYPE",
                                      "The requested certificate template is not supported by this CA."),
    CERTSRV_E_NO_CERT_TYPE: ("CERTSRV_E_NO_CERT_TYPE", "The request contains no certificate template information."),
    CERTSRV_E_SUBJECT_ALT_NAME_REQUIRED: ("CERTSRV_E_SUBJECT_ALT_NAME_REQUIRED",
                                          "The request is missing a required Subject Alternate name extension."),
    CERTSRV_E_SIGNATURE_COUNT: ("CERTSRV_E_SIGNATURE_COUNT", "The request is missing one or more required signatures."),
    CERTSRV_E_SUBJECT_UPN_REQUIRED: ("CERTSRV_E_SUBJECT_UPN_REQUIRED",
                                     "The UPN is unavailable and cannot be added to the Subject Alternate name."),
    CERTSRV_E_SUBJECT_DIRECTORY_GUID_REQUIRED: ("CERTSRV_E_SUBJECT_DIRECTORY_GUID_REQUIRED",
                                                "The Active Directory GUID is unavailable and cannot be added to the "
                                                "Subject Alternate name."),
    CERTSRV_E_SUBJECT_EMAIL_REQUIRED: ("CERTSRV_E_SUBJECT_EMAIL_REQUIRED",
                                       "The email name is unavailable and cannot be added to the Subject or Subject "
                                       "Alternate name."),
    CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE: ("CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE",
                                           "The request contains an invalid renewal certificate attribute."),
    CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY: ("CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY",
                                       "The key used in a renewal request does not match one of the certificates "
                                       "being renewed."),
    CERT_E_EXPIRED: ("CERT_E_EXPIRED", "A required certificate is not within its validity period when verifying "
                                       "against the current system clock or the timestamp in the signed file."),
    CERT_E_UNTRUSTEDROOT: ("CERT_E_UNTRUSTEDROOT", "A certificate chain processed, but terminated in a root "
                                                   "certificate which is not trusted by the trust provider."),
    CERT_E_CHAINING: ("CERT_E_CHAINING", "A certificate chain could not be built to a trusted root authority."),
    ERROR_DS_SERVER_DOWN: ("ERROR_DS_SERVER_DOWN", "The server is not operational."),
    ERROR_NO_SUCH_USER: ("ERROR_NO_SUCH_USER", "The specified account does not exist."),
    CERTSRV_E_SUBJECT_DNS_REQUIRED: ("CERTSRV_E_SUBJECT_DNS_REQUIRED",
                                     "The Domain Name System (DNS) name is unavailable and cannot be added to the "
                                     "Subject Alternate name."),
    CERTSRV_E_KEY_LENGTH: ("CERTSRV_E_KEY_LENGTH",
                           "The public key does not meet the minimum size required by the specified certificate "
                           "template."),
    CRYPT_E_REVOKED: ("CRYPT_E_REVOKED", "The certificate is revoked."),
}


def hresult_name(hresult):
    return MESSAGES.get(hresult & 0xFFFFFFFF, ("0x%08x" % (hresult & 0xFFFFFFFF), ""))[0]


def hresult_text(hresult):
    return MESSAGES.get(hresult & 0xFFFFFFFF, ("", "Unexpected error 0x%08x." % (hresult & 0xFFFFFFFF)))[1]


def signed32(hresult):
    """The HRESULT as the signed decimal certutil prints next to it."""
    value = hresult & 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


class CAError(Exception):
    """A CA operation failed with an HRESULT (the wire layer returns it as the call's result)."""

    def __init__(self, hresult, message=""):
        self.hresult = hresult & 0xFFFFFFFF
        self.message = message or hresult_text(self.hresult)
        super().__init__("0x%08x %s" % (self.hresult, self.message))
