# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is it what was asked for? One job: compare a CSR handed over by a managed host, or a certificate the CA issued,
with the request (names, key, template, extended key usages), and remember an issuance that was refused for that
reason so that later runs do not ask the CA again for the same request.

- ``csr_differences()``: a CSR against the expected subject, subject alternative names and key parameters
  (controller-side enrollment, where the CSR comes from the managed host and is submitted with the controller's
  credentials). Expected names that are not given are expected absent; extensions other than the SAN, key usage,
  extended key usage and subject key identifier, and attributes other than the extension request, are refused
  (a name/value-pair attribute could carry ``SAN:`` names to a CA with EDITF_ATTRIBUTESUBJECTALTNAME2).
- ``issued_differences()``: an issued certificate against the request. The public key must be the request's; the
  subject must be the asked one when one was asked; asked SANs must all be present, and, when the template is
  known (read from Active Directory) to take the names from the request (CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT), no
  other SAN may appear. The template extension must name the asked template (its OID when the template was read
  from Active Directory). Extended key usages are compared with the template's pKIExtendedKeyUsage or
  msPKI-Certificate-Application-Policy only when the template was read from Active Directory; without a directory
  that part is skipped. For templates that build names from Active Directory, the subject and SANs are compared
  with what the requester's account in Active Directory gives (``names_from_ad``) when the directory is configured
  (a renewal may also keep the renewed certificate's names).
- ``refusal_*``: the record ``<certificate_path>.refused`` (JSON: request ID, the differences, what was asked) that
  makes the next runs fail without contacting the CA until the request changes or ``force`` is set.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError

if HAS_CRYPTOGRAPHY:   # the modules check it (_deps.check)
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

REFUSED_SUFFIX = '.refused'
OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14'
# Extensions a pinned CSR may carry: subjectAltName, keyUsage, extKeyUsage, subjectKeyIdentifier.
PINNED_CSR_EXTENSIONS = ('2.5.29.17', '2.5.29.15', '2.5.29.37', '2.5.29.14')
NAME_FLAG_ENROLLEE_SUPPLIES_SUBJECT = 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT'


# ---------------------------------------------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------------------------------------------
def name_text(name):
    text = name.rfc4514_string() if name is not None else ''
    return text or '(empty)'


def sans_text(sans, others=None):
    items = _x509.format_sans(sans or []) + list(others or [])
    return ', '.join(items) if items else '(none)'


def _key_text(public_key):
    kind, detail = _keys.key_description(public_key)
    digest = hashlib.sha256(_keys.public_key_der(public_key)).hexdigest()[:16]
    return '%s %s (SHA-256 %s...)' % (kind.upper(), detail, digest)


def other_sans(obj):
    """Subject alternative names of a certificate or CSR that ``_x509.certificate_sans`` does not represent
    (directory names, registered IDs, other names than the UPN), as text."""
    out = []
    for gn in _x509.general_names(obj):
        if isinstance(gn, (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)):
            continue
        if isinstance(gn, x509.OtherName):
            if gn.type_id.dotted_string == _x509.OID_UPN and _x509._decode_der_string(gn.value):
                continue
            out.append('otherName:%s' % gn.type_id.dotted_string)
        elif isinstance(gn, x509.DirectoryName):
            out.append('dirName:%s' % gn.value.rfc4514_string())
        elif isinstance(gn, x509.RegisteredID):
            out.append('RID:%s' % gn.value.dotted_string)
        else:
            out.append(type(gn).__name__)
    return out


def _same_name(a, b):
    return _renewal._name_set(a) == _renewal._name_set(b)


# ---------------------------------------------------------------------------------------------------------------
# CSR against the expectations
# ---------------------------------------------------------------------------------------------------------------
def csr_differences(csr, csr_der, wanted_subject=None, wanted_sans=None, key_params=None):
    """Differences (list of text) between a CSR and the expected subject (None: empty), SANs (None: none) and key
    parameters (dict key_type/key_size/curve, None: not compared)."""
    diffs = []
    want = _csr.parse_subject(wanted_subject)
    if not _same_name(want, csr.subject):
        diffs.append('subject: expected %s, the CSR has %s' % (name_text(want), name_text(csr.subject)))
    try:
        extensions = list(csr.extensions)
        have = _x509.certificate_sans(csr)
        others = other_sans(csr)
    except ValueError as exc:
        return diffs + ['extensions: the CSR has extensions that cannot be parsed (%s)' % exc]
    want_sans = _x509.normalize_sans(wanted_sans) if wanted_sans else []
    if want_sans != have or others:
        diffs.append('subject_alt_name: expected %s, the CSR has %s' % (sans_text(want_sans), sans_text(have, others)))
    if key_params:
        problem = _keys.validate_private_key(csr.public_key(), key_params.get('key_type'),
                                             key_params.get('key_size'), key_params.get('curve'))
        if problem:
            diffs.append('key: %s' % problem)
    for ext in extensions:
        oid = ext.oid.dotted_string
        if oid not in PINNED_CSR_EXTENSIONS:
            diffs.append('extension %s: not expected in the CSR' % oid)
    try:
        attributes = _csr.csr_attributes(csr_der)
    except Exception as exc:  # pyasn1 raises many types
        attributes = {}
        diffs.append('attributes: cannot be parsed (%s)' % exc)
    for oid in sorted(attributes):
        if oid != OID_EXTENSION_REQUEST:
            diffs.append('attribute %s: not expected in the CSR' % oid)
    return diffs


# ---------------------------------------------------------------------------------------------------------------
# Issued certificate against the request
# ---------------------------------------------------------------------------------------------------------------
def names_from_request(template_info):
    """True/False when the template (decoded by _templates.decode_template) takes subject and SANs from the
    request / builds them from Active Directory; None when the template is not known."""
    if not template_info:
        return None
    return NAME_FLAG_ENROLLEE_SUPPLIES_SUBJECT in (template_info.get('certificate_name_flag') or {}).get('names', [])


def _dns_domain(dn):
    parts = [rdn.split('=', 1)[1] for rdn in (dn or '').split(',') if rdn.strip().upper().startswith('DC=')]
    return '.'.join(p.strip() for p in parts).lower() or None


def names_from_ad(template_info, account):
    """What a CA builds from the requester's account for a template that takes the names from Active Directory
    (MS-WCCE 3.2.2.6.2.1.4.5): (subject or None when not modelled here, SANs, whether those SANs are all of them).

    ``account``: dict(dn, cn, mail, dns_host_name, upn) of the requester. Modelled: subject CN from cn or
    dNSHostName and E from mail (not the directory path); SANs DNS (dNSHostName), domain DNS, UPN and e-mail (the
    directory GUID and SPN are other names, not compared)."""
    flags = set((template_info.get('certificate_name_flag') or {}).get('names', []))
    if NAME_FLAG_ENROLLEE_SUPPLIES_SUBJECT in flags:
        return None, None, False
    rdns = []
    if 'CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH' in flags:
        rdns = None
    elif 'CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME' in flags:
        rdns = [('CN', account.get('cn'))]
    elif 'CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN' in flags:
        rdns = [('CN', account.get('dns_host_name'))]
    if rdns is not None and 'CT_FLAG_SUBJECT_REQUIRE_EMAIL' in flags:
        rdns.append(('emailAddress', account.get('mail')))
    subject = None
    if rdns is not None and all(value for _k, value in rdns):
        subject = _csr.parse_subject(list(rdns))
    sans, complete = [], True
    for flag, kind, value in (('CT_FLAG_SUBJECT_ALT_REQUIRE_DNS', 'dns', account.get('dns_host_name')),
                              ('CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS', 'dns', _dns_domain(account.get('dn'))),
                              ('CT_FLAG_SUBJECT_ALT_REQUIRE_UPN', 'upn', account.get('upn')),
                              ('CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL', 'email', account.get('mail'))):
        if flag in flags:
            if value:
                sans.append((kind, value))
            else:
                complete = False  # e.g. the implicit UPN of an account without userPrincipalName
    return subject, sans, complete


def _oids(items):
    return set(item['oid'] if isinstance(item, dict) else item for item in items or [])


def certificate_ekus(cert):
    try:
        return set(o.dotted_string for o in
                   cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value)
    except x509.ExtensionNotFound:
        return set()


def issued_differences(cert, public_key=None, subject=None, sans=None, template=None, template_info=None,
                       csr_subject=None, ad_names=None, renewed=None):
    """Differences (list of text) between an issued certificate and the request.

    ``public_key``: the request's (None: not compared, a retrieval without the key); ``subject``: the asked
    subject (None: not asked); ``sans``: the asked SANs; ``template``: the asked template name;
    ``template_info``: the template as read from Active Directory (None: not known); ``csr_subject``: the
    subject of a CSR given as it is (compared only when the template is known to take names from the request);
    ``ad_names``: names_from_ad() for a template that builds the names from Active Directory; ``renewed``: the
    certificate a renewal request renewed (a CA may keep its names instead of building them again)."""
    diffs = []
    if public_key is not None and \
            _keys.public_key_der(public_key) != _keys.public_key_der(cert.public_key()):
        diffs.append('public key: asked %s, issued %s' % (_key_text(public_key), _key_text(cert.public_key())))
    from_request = names_from_request(template_info)
    want = _csr.parse_subject(subject) if subject else None
    if want is None and csr_subject is not None and len(csr_subject) and from_request:
        want = csr_subject
    if want is not None and not _same_name(want, cert.subject):
        diffs.append('subject: asked %s, issued %s' % (name_text(want), name_text(cert.subject)))
    want_sans = set(_x509.normalize_sans(sans)) if sans else set()
    have = _x509.certificate_sans(cert)
    missing = want_sans - set(have)
    extra = (set(have) - want_sans) if from_request else set()
    others = other_sans(cert) if from_request else []
    if missing or extra or others:
        diffs.append('subject_alt_name: asked %s, issued %s' % (sans_text(sorted(want_sans)),
                                                                sans_text(have, other_sans(cert))))
    kept = renewed is not None and _same_name(renewed.subject, cert.subject) and \
        _x509.certificate_sans(renewed) == have
    if ad_names is not None and not kept:
        ad_subject, ad_sans, complete = ad_names
        if want is None and ad_subject is not None and not _same_name(ad_subject, cert.subject):
            diffs.append('subject: Active Directory gives %s, issued %s'
                         % (name_text(ad_subject), name_text(cert.subject)))
        if ad_sans is not None:
            ad_set = set(_x509.normalize_sans(ad_sans)) if ad_sans else set()
            if (ad_set - set(have)) or (complete and set(have) - ad_set - want_sans):
                diffs.append('subject_alt_name: Active Directory gives %s, issued %s'
                             % (sans_text(sorted(ad_set)), sans_text(have)))
    if template:
        wanted_t = {'name': template, 'oid': template_info.get('oid')} if template_info else template
        ok, have_t = _renewal._template_matches(cert, wanted_t)
        if not ok:
            diffs.append('template: asked %s, issued %s' % (
                template if not template_info or not template_info.get('oid') else '%s (%s)' % (
                    template, template_info['oid']), have_t))
    if template_info:
        allowed = [_oids(template_info.get('extended_key_usage')), _oids(template_info.get('application_policies'))]
        issued = certificate_ekus(cert)
        if issued not in allowed:
            want_text = ' or '.join(sorted(set(', '.join(sorted(a)) or '(none)' for a in allowed)))
            diffs.append('extended key usage: template %s has %s, issued %s'
                         % (template_info.get('name') or template, want_text, ', '.join(sorted(issued)) or '(none)'))
    return diffs


# ---------------------------------------------------------------------------------------------------------------
# The refusal record
# ---------------------------------------------------------------------------------------------------------------
def refusal_path(certificate_path):
    return certificate_path + REFUSED_SUFFIX


def asked(spec, csr=None):
    """What a request asks for, as stored in the refusal record (the key is not part of it: a new key is made on
    every attempt when none is kept)."""
    if spec.get('wanted_subject'):
        subject = _csr.parse_subject(spec['wanted_subject']).rfc4514_string()
    elif csr is not None:
        subject = csr.subject.rfc4514_string()
    else:
        subject = ''
    sans = spec.get('wanted_sans')
    if not sans and csr is not None:
        sans = _x509.certificate_sans(csr)
    return {
        'template': spec.get('template'),
        'subject': subject,
        'subject_alt_name': _x509.format_sans(_x509.normalize_sans(sans) if sans else []),
        'request_id': spec.get('request_id'),
    }


def read_refusal(certificate_path, warnings=None):
    """The refusal record next to the certificate, or None (absent or unreadable). Only a record we could have
    written counts: a regular file (never through a symlink, bounded) owned by the effective user and not writable
    by group or others; any other is ignored with a warning appended to ``warnings`` (someone who may write in the
    certificate directory must not be able to block renewals)."""
    path = refusal_path(certificate_path)
    try:
        data = _files.read_file(path, max_size=1 << 20, private=True)
    except FileOutputError as exc:
        if warnings is not None:
            warnings.append('The refusal record %s is ignored: %s' % (path, exc.summary))
        return None
    if data is None:
        return None
    try:
        record = json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def refusal_applies(record, asked_now):
    return record is not None and record.get('asked') == asked_now


def refusal_content(request_id, differences, asked_now, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    record = {'request_id': request_id, 'differences': list(differences), 'asked': asked_now,
              'refused_at': now.strftime('%Y-%m-%dT%H:%M:%SZ')}
    return (json.dumps(record, indent=2, sort_keys=True) + '\n').encode('utf-8')
