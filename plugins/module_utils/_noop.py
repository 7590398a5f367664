# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The no-op run: one job, answering a run whose certificates all fit from the files next to them, without the
network and without importing the protocol stack.

``results()`` plans every request (``_plan.plan_request``: key, certificate, CSR and refusal record on disk) with
the renewal periods the state files learned at enrollment (``_state.Keeper.renewal_days``). When every plan's
action is ``none`` it returns the results the enroller would give (``_enroller.base_result`` + the file attributes
of ``_outputs.write_unchanged``); as soon as one request needs more - the CA, a new key, the template's renewal
period from Active Directory (no state knows it), or an error to report - it returns None and the module runs the
enroller, which plans again. This file, and what it imports, never import impacket, pyasn1, ldap3, dnspython or
gssapi (tests/unit/plugins/modules/test_wcce_request_noop.py runs the module process and checks it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _enroller
from ansible_collections.adcs.enrollment.plugins.module_utils import _fits
from ansible_collections.adcs.enrollment.plugins.module_utils import _journal
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils import _state
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError
from ansible_collections.adcs.enrollment.plugins.module_utils._outputs import Outputs
from ansible_collections.adcs.enrollment.plugins.module_utils._plan import ACTION_NONE, plan_request
from ansible_collections.adcs.enrollment.plugins.module_utils._request_spec import output_paths


class _NeedsMore(Exception):
    """This request needs what the no-op path does not do (never leaves this file)."""


class _NoKeys(object):
    """A key maker for plans that must not make keys: a request that needs one is not a no-op."""

    def __call__(self, *args, **kwargs):
        raise _NeedsMore()


def results(specs, keeper, writer, check_mode=False, directory_given=False, now=None):
    """The results of a run in which every request of ``specs`` fits, or None (the enroller must run).
    ``keeper``: the run's ``_state.Keeper``; ``directory_given``: the options name a directory (the template's
    renewal period then counts, as in the enroller); ``writer``: as for the enroller."""
    known = keeper.renewal_days()

    def template_days(template):
        days = known.get((template or '').lower())
        if days is None:
            raise _NeedsMore()   # only Active Directory knows it
        return days

    plans = []
    for spec in specs:
        try:
            if not check_mode:   # as the enroller: a switch a killed run left half done is finished first
                _journal.recover(output_paths(spec).values())
            plan = plan_request(spec, now=now, template_renewal_days=template_days if directory_given else None,
                                keygen=_NoKeys(), check_key=False)
        except (_NeedsMore, AdcsError):   # the enroller plans again and reports errors
            return None
        if plan.action != ACTION_NONE:
            return None
        plans.append(plan)
    outputs = Outputs(writer, check_mode)
    out = []
    for plan in plans:
        try:
            result = _result(plan, outputs)
        except AdcsError as exc:
            result = _enroller.failure_result(plan.spec, exc)
        out.append(result)
    return out


def _result(plan, outputs):
    result = _enroller.base_result(plan)
    result.update(outputs.write_unchanged(plan))
    result['diff'] = _enroller.plan_diff(plan, plan.current_cert)
    return result


def projector(digest_of, directory_given=False):
    """``project(spec, known)`` for ``_state.Keeper.record``: the no-op record (``_fits.record``) of a request as
    this planner finds its files right after the run (``known``: {template: renewal days}), or None when the next
    run would not be a no-op. ``digest_of(spec)``: the request's ``_fits.request_digest``."""
    def project(spec, known):
        def template_days(template):
            days = known.get((template or '').lower())
            if days is None:
                raise _NeedsMore()
            return days
        before = _fits.files_digest(_fits.request_files(spec))   # the files the plan reads must be the recorded
        try:
            plan = plan_request(spec, template_renewal_days=template_days if directory_given else None,
                                keygen=_NoKeys(), check_key=False)
            if plan.action != ACTION_NONE or plan.current_cert is None:
                return None
            result = _result(plan, Outputs(_staged.ComparingWriter(), True))   # what a no-op returns; no write
        except (_NeedsMore, AdcsError):
            return None
        result['status'] = _state.status(result)
        until = _renewal.renewal_opens(_x509.not_after(plan.current_cert), plan.renew_before)
        return _fits.record(digest_of(spec), spec, result, until, files_before=before)
    return project
