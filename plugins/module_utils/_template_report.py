# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The template report: one job, the result of wcce_template_info from a connected directory.

Data flow: the enrollment services and the templates come from the directory (``_directory``), each template is
decoded (``_templates``), matched against the wanted names and given the CAs that publish it; with ``check_rights``
the principal's token is read (the given account or the bind identity), the template DACLs are parsed
(``_security``), their SIDs named, and the Enroll/AutoEnroll rights and the principal's access evaluated; the
enrollment services' DACLs give the CA's own Request Certificates permission (``ca_acls``), per CA and per
publishing CA of each template.
Works on any object with the AdConnection interface (search, whoami, find_account, account_token, resolve_sids).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap_kerberos
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_GSSAPI
from ansible_collections.adcs.enrollment.plugins.module_utils._directory import (
    enrollment_services_dn, enterprise_oid_names, filter_services, list_enrollment_services, list_templates,
    publishing_cas,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._security import (
    SecurityDescriptorError, TemplateAcl, parse_security_descriptor, well_known_name, sid_to_string,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import LdapError
from ansible_collections.adcs.enrollment.plugins.module_utils._ldap_search import first_text
from ansible_collections.adcs.enrollment.plugins.module_utils._templates import (
    TemplateDecodeError, decode_template, raw_attributes, template_matches,
)


def _account_summary(conn, entry, source):
    sids, _groups = conn.account_token(entry)
    sid = None
    if entry['attributes'].get('objectSid'):
        sid = sid_to_string(entry['attributes']['objectSid'][0])[0]
    return {
        'name': first_text(entry, 'sAMAccountName'),
        'distinguished_name': entry.get('dn'),
        'sid': sid,
        'token_sids': sids,
        'source': source,
    }


def _kerberos_identity(ccache):
    """The principal a Kerberos bind without username used: the named ccache's client, else gssapi's default."""
    try:
        if ccache and _ldap_kerberos.own_tickets_ccache(ccache):
            return _ccache.ccache_principal(ccache)
        if HAS_GSSAPI:
            return str(_ldap_kerberos.gssapi.Credentials(usage='initiate').name)
    except Exception:  # the bind succeeded; a principal we cannot name is reported as such
        return None
    return None


def resolve_principal(conn, params):
    """The account to evaluate: O(principal), else the bind identity. Returns a dict (with 'error' on failure)."""
    wanted = params.get('principal')
    source = 'principal'
    if not wanted:
        source = 'bind'
        wanted = conn.whoami() or params.get('username')
        if not wanted and params.get('auth') == 'kerberos':
            wanted = _kerberos_identity(params.get('kerberos_ccache'))
    if not wanted:
        return {'source': source, 'error': 'cannot tell which account the module binds as; set principal'}
    try:
        entry = conn.find_account(wanted)
    except LdapError as exc:
        return {'source': source, 'name': wanted, 'error': str(exc)}
    if entry is None:
        return {'source': source, 'name': wanted, 'error': 'account %s not found in %s' % (wanted, conn.default_nc)}
    try:
        return _account_summary(conn, entry, source)
    except LdapError as exc:
        return {'source': source, 'name': wanted, 'error': str(exc)}


def _domain_sid(principal):
    sid = (principal or {}).get('sid')
    if sid and sid.startswith('S-1-5-21-'):
        return sid.rsplit('-', 1)[0]
    return None


def select_templates(entries, services, oid_names, wanted, published_only=False, include_raw=True):
    """[(decoded template, raw entry)] of the wanted templates (all when ``wanted`` is empty), sorted by name, and
    the set of ``wanted`` entries that matched."""
    decoded = []
    matched = set()
    for entry in entries:
        try:
            template = decode_template(entry['attributes'], oid_names)
        except (TemplateDecodeError, ValueError) as exc:
            template = {'name': first_text(entry, 'cn'), 'distinguished_name': entry.get('dn'),
                        'error': 'cannot decode template: %s' % exc}
        if wanted:
            hits = [w for w in wanted if template_matches(template, w)]
            if not hits:
                continue
            matched.update(hits)
        template['cas'] = publishing_cas(services, template.get('name'))
        template['published'] = bool(template['cas'])
        if published_only and not template['published']:
            continue
        if include_raw:
            template['raw'] = raw_attributes(entry['attributes'])
        decoded.append((template, entry))
    decoded.sort(key=lambda item: (item[0].get('name') or '').lower())
    return decoded, matched


def _template_acl(template, entry):
    """The TemplateAcl of a template entry, or None (with template['rights_error'] when the SD is damaged)."""
    sd_values = entry['attributes'].get('nTSecurityDescriptor')
    if not sd_values:
        return None
    try:
        sd = parse_security_descriptor(sd_values[0])
    except SecurityDescriptorError as exc:
        template['rights_error'] = 'cannot parse nTSecurityDescriptor: %s' % exc
        return None
    template['owner'] = sd.owner
    return TemplateAcl(sd)


def _sid_names(conn, acls, principal, resolve_names):
    """{sid: name} of every SID in the DACLs: from the directory when ``resolve_names``, else well-known names."""
    all_sids = set(ace.sid for acl in acls if acl is not None for ace in acl.sd.dacl or [] if ace.sid)
    names = {}
    if resolve_names and all_sids:
        names = conn.resolve_sids(sorted(all_sids))
    domain_sid = _domain_sid(principal)
    for sid in all_sids:
        if sid not in names:
            known = well_known_name(sid, domain_sid)
            if known:
                names[sid] = known
    return names


def _access(principal, can_enroll=None, reason=None, can_autoenroll=None, autoenroll_reason=None):
    return {'principal': (principal or {}).get('name'), 'can_enroll': can_enroll, 'reason': reason,
            'can_autoenroll': can_autoenroll, 'autoenroll_reason': autoenroll_reason}


def ca_acls(conn, config_nc):
    """{lower-case CA name: TemplateAcl or error text} of the enrollment services' nTSecurityDescriptor: the Enroll
    extended right there is the CA's Request Certificates permission, which a Windows CA keeps in sync with its own
    security (MS-CSRA 3.1.1.7) and Windows clients read to choose a CA."""
    try:
        found = conn.search(enrollment_services_dn(config_nc), '(objectClass=pKIEnrollmentService)',
                            ['cn', 'nTSecurityDescriptor'], scope='LEVEL', sd_flags=0x04)
    except LdapError as exc:
        return {None: 'cannot read the enrollment services: %s' % exc}
    result = {}
    for entry in found:
        name = (first_text(entry, 'cn') or '').lower()
        values = entry['attributes'].get('nTSecurityDescriptor')
        if not values:
            result[name] = 'nTSecurityDescriptor of the enrollment service could not be read'
            continue
        try:
            result[name] = TemplateAcl(parse_security_descriptor(values[0]))
        except SecurityDescriptorError as exc:
            result[name] = 'cannot parse the enrollment service nTSecurityDescriptor: %s' % exc
    return result


def _ca_access(acl, principal, names):
    """{'can_request', 'request_reason'} of the principal on one CA (``acl``: TemplateAcl or error text)."""
    if acl is None or not isinstance(acl, TemplateAcl):
        return {'can_request': None, 'request_reason': acl or 'the enrollment service was not found'}
    if not principal or principal.get('error'):
        return {'can_request': None, 'request_reason': (principal or {}).get('error', 'no principal')}
    ok, reason = acl.can_enroll(principal['token_sids'], names)
    return {'can_request': ok, 'request_reason': reason.replace('Enroll', 'Request Certificates (Enroll)', 1)}


def evaluate_ca_rights(services, decoded, cas, principal, names):
    """Adds the principal's Request Certificates permission to each CA (``services``) and to each template's
    ``cas`` entries: a template is usable only at a CA that lets the principal request."""
    shared = cas.get(None)
    for service in services:
        service['access'] = _ca_access(shared or cas.get((service.get('name') or '').lower()), principal, names)
    for template, _entry in decoded:
        for ca in template.get('cas') or []:
            ca.update(_ca_access(shared or cas.get((ca.get('name') or '').lower()), principal, names))


def evaluate_rights(conn, decoded, principal, resolve_names=True, services=None, cas=None):
    """Adds 'rights', 'owner' and 'access' (the principal's) to each decoded template, and with ``cas``
    (ca_acls()) the principal's Request Certificates permission per CA."""
    acls = [_template_acl(template, entry) for template, entry in decoded]
    names = _sid_names(conn, acls + [a for a in (cas or {}).values() if isinstance(a, TemplateAcl)], principal,
                       resolve_names)
    if cas is not None:
        evaluate_ca_rights(services or [], decoded, cas, principal, names)
    for (template, _entry), acl in zip(decoded, acls):
        if acl is None:
            error = template.setdefault('rights_error', 'nTSecurityDescriptor could not be read')
            template['rights'] = None
            template['access'] = _access(principal, reason=error, autoenroll_reason=error)
            continue
        rights = acl.rights()
        for right in rights.values():
            for kind in ('allowed', 'denied'):
                for item in right[kind]:
                    item['name'] = names.get(item['sid'])
        template['rights'] = rights
        if principal and not principal.get('error'):
            ok, reason = acl.can_enroll(principal['token_sids'], names)
            auto_ok, auto_reason = acl.can_autoenroll(principal['token_sids'], names)
            template['access'] = _access(principal, ok, reason, auto_ok, auto_reason)
        else:
            error = (principal or {}).get('error', 'no principal')
            template['access'] = _access(principal, reason=error, autoenroll_reason=error)


def template_report(conn, params):
    """The wcce_template_info result (without 'changed') for the module parameters ``params``."""
    config_nc = conn.configuration_nc
    oid_names = enterprise_oid_names(conn, config_nc)
    services = filter_services(list_enrollment_services(conn, config_nc), params.get('ca_name'), params.get('ca_host'))
    wanted = [n for n in (params.get('names') or []) if n and n.strip()]
    decoded, matched = select_templates(list_templates(conn, config_nc), services, oid_names, wanted,
                                        params.get('published_only'), params.get('include_raw'))
    principal = None
    if params.get('check_rights'):
        principal = resolve_principal(conn, params)
        evaluate_rights(conn, decoded, principal, params.get('resolve_names'), services, ca_acls(conn, config_nc))
    return {
        'domain_controller': conn.host,
        'configuration_naming_context': config_nc,
        'certificate_authorities': services,
        'templates': [t for t, _e in decoded],
        'missing': [w for w in wanted if w not in matched],
        'principal': principal,
    }
