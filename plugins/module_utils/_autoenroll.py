# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Autoenrollment planning: one job, deciding per certificate template what Windows autoenrollment would do for
this account - enroll, renew, keep, wait for a pending request, remove (superseded or no longer autoenrollable,
only with prune) or skip with a reason.

Data flow: ``plan_from_directory(conn, params)`` reads the templates published by the enterprise CAs and the
account's Enroll/AutoEnroll access through ``_template_report`` (tokenGroups, deny ACEs, ``_security``); the
certificates this role keeps come from ``existing_from_directory`` (the state files ``<directory>/certs/<name>.crt
.adcs.json`` that ``wcce_request`` writes, and the certificates next to them) or ``existing_from_contents`` (the
same files read on the managed host, for enrollment from the controller); ``plan()`` decides without the network.
The enrollment itself is ``wcce_request``'s (through the certificate role): this plan only says which templates to
request and reports what the request will most likely do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import fnmatch
import os
import socket

from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal
from ansible_collections.adcs.enrollment.plugins.module_utils import _state
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput, WcceError
from ansible_collections.adcs.enrollment.plugins.module_utils._files import read_file
from ansible_collections.adcs.enrollment.plugins.module_utils._template_report import (
    resolve_principal, template_report,
)

ENROLL = 'enroll'
RENEW = 'renew'
KEEP = 'keep'
PENDING = 'pending'
REMOVE = 'remove'
SKIP = 'skip'
REQUESTED = (ENROLL, RENEW, KEEP, PENDING)     # actions for which wcce_request runs (it decides the details)

CERTS_DIR = 'certs'
KEYS_DIR = 'private'
STATE_SUFFIX = '.crt' + _state.SUFFIX
MIN_RSA_BITS = 2048
_UTC = datetime.timezone.utc


class AutoenrollError(InvalidInput):
    """The plan cannot be made (no account to evaluate, bad options)."""


# ---- the account and the files ----------------------------------------------------------------------------------
def host_domain(fqdn=None):
    """The DNS domain of this host (its FQDN without the first label), or None."""
    fqdn = (fqdn if fqdn is not None else socket.getfqdn()) or ''
    return fqdn.split('.', 1)[1].lower() if '.' in fqdn.strip('.') else None


def connection_defaults(params, fqdn=None, hostname=None):
    """The connection options autoenrollment adds when they are not given: the host's domain, and with Kerberos
    from a keytab the machine account ``<HOSTNAME>$``. Returns the added options (also set in ``params``)."""
    added = {}
    if not params.get('domain') and not params.get('domain_controller'):
        domain = host_domain(fqdn)
        if not domain:
            raise AutoenrollError('Cannot tell the domain from the host name %s; set domain (or domain_controller) '
                                  'in the connection options' % (fqdn or socket.getfqdn()))
        added['domain'] = domain
    if params.get('auth') == 'kerberos' and params.get('kerberos_keytab') and not params.get('username'):
        added['username'] = _principals.machine_account(hostname)
    params.update(added)
    return added


def layout(directory, name):
    """The files of the certificate of template ``name`` (the certificate role's default layout)."""
    cert = os.path.join(directory, CERTS_DIR, name + '.crt')
    return {'private_key': os.path.join(directory, KEYS_DIR, name + '.key'), 'certificate': cert,
            'chain': os.path.join(directory, CERTS_DIR, name + '-chain.crt'),
            'fullchain': os.path.join(directory, CERTS_DIR, name + '-fullchain.crt'),
            'state': cert + _state.SUFFIX, 'refused': cert + '.refused', 'csr': cert + '.csr',
            'pending_key': os.path.join(directory, KEYS_DIR, name + '.key.pending')}


def _record(name, state, cert_data, warnings):
    cert = None
    if cert_data:
        try:
            certs = _x509.load_certificates(cert_data)
            cert = certs[0] if certs else None
        except WcceError as exc:
            warnings.append('The certificate of %s cannot be read: %s' % (name, exc.to_message()))
    warnings.extend(state.warnings)
    template = (state.data or {}).get('template') or name
    return {'name': name, 'template': template, 'state': state.data or {}, 'certificate': cert}


def existing_from_directory(directory, warnings):
    """{template name (lower case): record} of the certificates kept under ``directory`` (one state file each)."""
    certs_dir = os.path.join(directory, CERTS_DIR)
    try:
        names = sorted(os.listdir(certs_dir))
    except OSError:
        return {}
    found = {}
    for entry in names:
        if not entry.endswith(STATE_SUFFIX) or entry == STATE_SUFFIX:
            continue
        name = entry[:-len(STATE_SUFFIX)]
        paths = layout(directory, name)
        state = _state.State.read(paths['state'])
        record = _record(name, state, read_file(paths['certificate'], replaceable=True), warnings)
        found[record['template'].lower()] = record
    return found


def _decoded(text, origin):
    try:
        return base64.b64decode(text or '', validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise AutoenrollError('The content of %s in existing is not base64 (as ansible.builtin.slurp returns it)'
                              % origin)


def existing_from_contents(contents, warnings):
    """The same from ``contents``: {path under certs/: base64 content} read on the managed host (controller mode,
    ansible.builtin.slurp)."""
    by_name = dict((os.path.basename(path), path) for path in contents or {})
    found = {}
    for base in sorted(by_name):
        if not base.endswith(STATE_SUFFIX) or base == STATE_SUFFIX:
            continue
        name = base[:-len(STATE_SUFFIX)]
        state = _state.State.from_content(_decoded(contents[by_name[base]], base), origin=by_name[base])
        cert_path = by_name.get(name + '.crt')
        data = _decoded(contents[cert_path], cert_path) if cert_path else None
        record = _record(name, state, data, warnings)
        found[record['template'].lower()] = record
    return found


# ---- the decisions ---------------------------------------------------------------------------------------------
def selected(name, include, exclude):
    """(True, None) when ``name`` passes the include/exclude filters (shell patterns, case-insensitive), else
    (False, why)."""
    low = (name or '').lower()
    if include and not any(fnmatch.fnmatchcase(low, p.lower()) for p in include):
        return False, 'not in autoenroll_include'
    if exclude and any(fnmatch.fnmatchcase(low, p.lower()) for p in exclude):
        return False, 'excluded by autoenroll_exclude'
    return True, None


def eligibility(template, machine=True, same_requester=True):
    """(code, reason) why this account's autoenrollment does not enroll ``template``, or (None, None)."""
    if template.get('error'):
        return 'unreadable', template['error']
    req = template.get('requirements') or {}
    access = template.get('access') or {}
    if not access.get('can_autoenroll'):
        return 'no_autoenroll_right', access.get('autoenroll_reason') or 'the account may not autoenroll'
    enrollment = set(((template.get('enrollment_flag') or {}).get('names')) or [])
    if 'CT_FLAG_AUTO_ENROLLMENT' not in enrollment:
        return 'not_autoenrollment_template', ('the template does not ask clients to autoenroll '
                                               '(no CT_FLAG_AUTO_ENROLLMENT in msPKI-Enrollment-Flag)')
    if 'CT_FLAG_USER_INTERACTION_REQUIRED' in enrollment:
        return 'user_interaction', 'the template requires user interaction (CT_FLAG_USER_INTERACTION_REQUIRED)'
    if req.get('machine') and not machine:
        return 'machine_template', 'a machine template (CT_FLAG_MACHINE_TYPE); this account is a user'
    if not req.get('machine') and machine:
        return 'user_template', 'a user template (no CT_FLAG_MACHINE_TYPE); autoenrollment of a computer skips it'
    if req.get('ca_certificate'):
        return 'ca_template', 'a CA certificate template; autoenrollment does not request CA certificates'
    if req.get('ra_signatures'):
        return 'ra_signatures', ('the template requires %d enrollment agent signature(s) (msPKI-RA-Signature); '
                                 'autoenrollment cannot sign as an enrollment agent' % req['ra_signatures'])
    if req.get('key_archival'):
        return 'key_archival', ('the template requires private key archival (CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL), '
                                'which this client does not send')
    if req.get('enrollee_supplies_subject'):
        return 'enrollee_supplies_subject', ('the request must supply the subject (CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT); '
                                             'Windows autoenrollment does not enroll such templates')
    if not same_requester and (req.get('subject_from_ad') or req.get('subject_alt_names_from_ad')):
        return 'names_of_requester', ('the CA builds the names from the requester\'s AD object, and the connection '
                                      'authenticates as another account than the one evaluated')
    return None, None


def _renewal_days(template):
    period = template.get('renewal_period') or {}
    seconds = period.get('seconds')
    return seconds / 86400.0 if isinstance(seconds, (int, float)) else None


def classify(record, template, now, renew_before=None):
    """(action, code, reason) of a template to request: pending, enroll, renew or keep (wcce_request decides the
    details: the key, the subject, the exact window). ``renew_before``: the window in days asked in the settings,
    else the template's renewal period."""
    state = (record or {}).get('state') or {}
    if state.get('status') == _state.PENDING:
        return PENDING, 'pending', 'request %s is pending (since %s); it is retrieved' % (
            state.get('request_id'), state.get('since') or 'unknown')
    cert = (record or {}).get('certificate')
    if cert is None:
        return ENROLL, 'no_certificate', 'no certificate of this template yet'
    end = _x509.not_after(cert)
    days = renew_before
    if days is None:
        days, _source = _renewal.default_renew_before(cert, _renewal_days(template))
    stamp = end.strftime('%Y-%m-%d %H:%M:%SZ')
    if now >= end:
        return RENEW, 'expired', 'the certificate expired on %s' % stamp
    if now >= end - datetime.timedelta(days=days):
        return RENEW, 'renew_window', 'the certificate expires on %s, within the renewal period of %g days' % (
            stamp, days)
    return KEEP, 'up_to_date', 'the certificate is valid until %s' % stamp


def _entry(name, template, action, code, reason, directory, **extra):
    entry = {'name': name, 'display_name': (template or {}).get('display_name') or name, 'action': action,
             'reason_code': code, 'reason': reason, 'request': action in REQUESTED,
             'manager_approval': bool(((template or {}).get('requirements') or {}).get('manager_approval')),
             'superseded_by': None, 'paths': layout(directory, name)}
    entry.update(extra)
    return entry


def _request(entry, template, options):
    """The certificate role's entry for a template to request."""
    req = template.get('requirements') or {}
    settings = template_settings(entry['name'], options.get('settings'))
    reuse = settings.pop('reuse_key', options.get('reuse_key', True))
    if req.get('same_key_renewal'):
        reuse = True        # CT_FLAG_REQUIRE_SAME_KEY_RENEWAL: a new key would be refused (0x80094816)
    request = {'name': entry['name'], 'template': entry['name'], 'reuse_key': bool(reuse)}
    rule = req.get('key') or {}
    if rule.get('key_type') == 'ecdsa' and rule.get('curve'):     # a CNG template naming an ECDSA curve
        request.update(key_type='ecdsa', curve=rule['curve'])
    else:
        request.update(key_type='rsa', key_size=max(MIN_RSA_BITS, req.get('minimum_key_size') or 0))
    request.update(dict((k, v) for k, v in settings.items() if v is not None and k not in ('name', 'template')))
    return request


def template_settings(name, settings):
    """The settings of template ``name``: the entries of ``settings`` whose key (a shell pattern, case-insensitive)
    matches it, merged in key order with the exact name last."""
    merged = {}
    keys = sorted(settings or {}, key=lambda k: (k.lower() == name.lower(), k))
    for key in keys:
        if fnmatch.fnmatchcase(name.lower(), key.lower()):
            value = settings[key]
            if not isinstance(value, dict):
                raise AutoenrollError('The settings of %s must be a dict, not %s' % (key, type(value).__name__))
            merged.update(value)
    return merged


def _supersessions(wanted):
    """{superseded template (lower case): superseding template name} among the templates to request."""
    out = {}
    for name in sorted(wanted, key=str.lower):
        for old in wanted[name].get('superseded_templates') or []:
            if old and old.lower() != name.lower():
                out.setdefault(old.lower(), name)
    return out


def plan(templates, existing, options, now=None, machine=True, same_requester=True):
    """The plan: {'templates': [entry], 'certificate_requests': [...], 'remove_paths': [...]} for the decoded
    ``templates`` (with 'access', 'published'), the ``existing`` records and ``options`` (directory, include,
    exclude, prune, reuse_key, settings)."""
    now = now or datetime.datetime.now(_UTC)
    directory = options['directory']
    include, exclude, prune = options.get('include') or [], options.get('exclude') or [], options.get('prune')
    entries, wanted, refused = {}, {}, {}
    for template in templates:
        name = template.get('name')
        if not name or not template.get('published'):
            continue
        ok, why = selected(name, include, exclude)
        code, reason = ('filtered', why) if not ok else eligibility(template, machine, same_requester)
        if code:
            refused[name.lower()] = (template, code, reason, ok)
        else:
            wanted[name] = template
    superseded = _supersessions(wanted)
    for name in list(wanted):
        if name.lower() in superseded:
            template = wanted.pop(name)
            refused[name.lower()] = (template, 'superseded', 'superseded by %s (msPKI-Supersede-Templates)'
                                     % superseded[name.lower()], True)
    for name, template in wanted.items():
        action, code, reason = classify(existing.get(name.lower()), template, now,
                                        template_settings(name, options.get('settings')).get('renew_before'))
        entries[name.lower()] = _entry(name, template, action, code, reason, directory)
    for low, (template, code, reason, in_scope) in refused.items():
        record = existing.get(low)
        name = record['name'] if record else template['name']
        entries[low] = _entry(name, template, SKIP, code, reason, directory,
                              superseded_by=superseded.get(low))
        if record is not None:
            entries[low].update(_gone(record, code, reason, prune and in_scope))
    for low, record in existing.items():
        if low not in entries:      # no longer published (or deleted): not autoenrollable any more
            ok, _why = selected(record['template'], include, exclude)
            reason = 'the template is no longer published by an enterprise CA'
            entries[low] = _entry(record['name'], None, SKIP, 'not_published', reason, directory)
            entries[low].update(_gone(record, 'not_published', reason, prune and ok))
    ordered = [entries[k] for k in sorted(entries)]
    return {
        'templates': ordered,
        'certificate_requests': [_request(e, wanted[e['name']], options) for e in ordered if e['request']],
        'remove_paths': [{'template': e['name'], 'superseded_by': e['superseded_by'], 'path': p}
                         for e in ordered if e['action'] == REMOVE for p in sorted(set(e['paths'].values()))],
    }


def _gone(record, code, reason, remove):
    """The entry of a kept certificate whose template is no longer enrolled: remove (prune) or keep."""
    if remove:
        return {'action': REMOVE, 'reason': '%s; its certificate is removed (autoenroll_prune)' % reason}
    return {'action': KEEP, 'reason': '%s; its certificate is kept until it expires (autoenroll_prune removes it)'
            % reason, 'reason_code': code}


# ---- the run ---------------------------------------------------------------------------------------------------
def plan_from_directory(conn, params):
    """The wcce_autoenroll_info result (without 'changed') over the connected directory ``conn``."""
    report = template_report(conn, dict(params, names=[], check_rights=True, published_only=True,
                                        include_raw=False, resolve_names=True))
    principal = report['principal'] or {}
    if principal.get('error'):
        raise AutoenrollError('Cannot evaluate the rights of the account: %s' % principal['error'])
    same = True
    if params.get('principal'):
        requester = resolve_principal(conn, dict(params, principal=None))
        same = bool(requester.get('sid')) and requester.get('sid') == principal.get('sid')
    warnings = []
    if params.get('existing') is not None:
        existing = existing_from_contents(params['existing'], warnings)
    else:
        existing = existing_from_directory(params['directory'], warnings)
    machine = (principal.get('name') or '').endswith('$')
    result = plan(report['templates'], existing, params, machine=machine, same_requester=same)
    result.update(domain=params.get('domain'), domain_controller=report['domain_controller'],
                  principal=dict((k, principal.get(k)) for k in ('name', 'sid', 'distinguished_name', 'source')),
                  warnings=warnings)
    return result
