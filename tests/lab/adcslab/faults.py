"""Fault knobs for reliability tests of the lab CA, settable while it runs (no restart).

The knobs live in ``<state_dir>/faults.json``; the lab CA re-reads that file whenever it changes (inode, mtime or
size) and applies the faults to the calls and connections that follow. No file (or an empty one) = no faults.

API::

    from adcslab.faults import set_faults, clear_faults, load_faults
    set_faults(state_dir, delay_seconds=5)                          # every MS-WCCE / MS-ICPR call waits 5 s
    set_faults(state_dir, hresult=0x80070005, times=1)              # the next call returns E_ACCESSDENIED, once
    set_faults(state_dir, disposition=0x80094012, method="Request") # only ICertRequestD::Request calls
    set_faults(state_dir, drop_connection="after", opnum=0)         # ICPR: issue, then lose the reply
    clear_faults(state_dir)                                         # everything back to normal
    clear_faults(state_dir, "delay_seconds")                        # just that knob

CLI::

    python -m adcslab.faults --state-dir DIR set KEY=VALUE ... [times=N] [method=NAME] [opnum=N] ...
    python -m adcslab.faults --state-dir DIR clear [KNOB ...]
    python -m adcslab.faults --state-dir DIR show

Knobs (values accept ints in decimal or 0x hex, floats, true/false):

``delay_seconds``            sleep before answering each matching call (default scope: MS-WCCE and MS-ICPR calls)
``drop_connection``          close the TCP connection instead of answering: ``true``/``before`` = the request was
                             received and not processed; ``after`` = processed (a certificate may have been
                             issued) and the reply lost (default scope: MS-WCCE and MS-ICPR calls)
``hresult``                  answer the HRESULT as the call's return value, out parameters empty, without
                             processing the call (default scope: MS-WCCE/MS-ICPR calls; also RemoteCreateInstance,
                             RemQueryInterface, RemRelease with ``method=``)
``disposition``              answer Request/Request2/CertServerRequest with this disposition (e.g. 5, 0x80094012)
                             and a matching message (override with ``message=``), without submitting to the CA;
                             the request ID is ``request_id=`` if given, else the caller's one (retrieval), else
                             a synthetic one from 900001 up
``wrong_key``                issue a certificate for a freshly generated key instead of the request's (PKCS #10
                             requests: the request is re-signed with the new key and goes through the CA's normal
                             policy, so the certificate is otherwise valid)
``rogue_ca``                 issue normally, then answer with the certificate re-issued (same subject, key and
                             extensions) by a throwaway issuing CA under a throwaway root that copy the real
                             CAs' names, and that chain in the reply (a hostile CA or injected replies)
``refuse_connections``       reset new TCP connections on every lab CA RPC port (135, object exporter, MS-ICPR);
                             ``times`` counts refused connections, ``port=`` limits to one port
``slow_activation_seconds``  sleep before answering RemoteCreateInstance / RemoteActivation
``alter_subject``            the CA issues with this subject (RFC 4514, e.g. ``CN=victim.lab.adcs.test``) instead of
                             the one its policy built from the request or the directory (request DB and reply carry
                             the altered certificate); only ``times`` limits it (it acts inside the CA, for every
                             certificate it issues, approvals of pending requests included)
``alter_san``                the same for the subject alternative names: comma-separated ``type:value`` with type
                             dns, ip, email, upn or uri (e.g. ``dns:victim.lab.adcs.test,ip:192.0.2.66``); replaces
                             every SAN the policy built

Limits, per ``set`` (they apply to the knobs given in the same call): ``times=N`` (apply N times, then the knob
is spent; setting the knob again starts a new count), ``method=NAME`` (e.g. Request, Request2, GetCACert,
GetCAProperty, CertServerRequest, RemoteCreateInstance, RemQueryInterface), ``opnum=N``, ``interface=NAME``
(ICertRequestD, ICertRequestD2, ICertPassage, IRemoteSCMActivator, IRemUnknown2, ...). ``method`` or
``interface`` widen the scope beyond the default to any call on the lab CA's ports that matches them.
"""

import argparse
import json
import logging
import os
import sys
import threading
import time
import uuid

FAULTS_FILE = "faults.json"
STATUS_FILE = "faults-status.json"

KNOBS = ("delay_seconds", "drop_connection", "hresult", "disposition", "wrong_key", "refuse_connections",
         "slow_activation_seconds", "rogue_ca", "alter_subject", "alter_san")
# Knobs applied inside the CA when it builds a certificate: no call scope, only ``times``.
NAME_KNOBS = ("alter_subject", "alter_san")
SAN_KINDS = ("dns", "ip", "email", "upn", "uri")
LIMITS = ("times", "method", "opnum", "interface", "port")
OPTIONS = ("message", "request_id")

# Interfaces the knobs apply to when no method/interface is given.
WCCE_INTERFACES = ("ICertRequestD", "ICertRequestD2", "ICertPassage")
ACTIVATION_METHODS = ("RemoteCreateInstance", "RemoteActivation")
REQUEST_METHODS = ("Request", "Request2", "CertServerRequest")
HRESULT_EXTRA_METHODS = ("RemoteCreateInstance", "RemQueryInterface", "RemRelease")

# (interface name, opnum) -> method name, for the method= filter and the log.
METHODS = {
    "ICertRequestD": {3: "Request", 4: "GetCACert", 5: "Ping"},
    "ICertRequestD2": {3: "Request", 4: "GetCACert", 5: "Ping", 6: "Request2", 7: "GetCAProperty",
                       8: "GetCAPropertyInfo", 9: "Ping2"},
    "ICertPassage": {0: "CertServerRequest"},
    "IRemoteSCMActivator": {3: "RemoteGetClassObject", 4: "RemoteCreateInstance"},
    "IActivation": {0: "RemoteActivation"},
    "IRemUnknown": {3: "RemQueryInterface", 4: "RemAddRef", 5: "RemRelease"},
    "IRemUnknown2": {3: "RemQueryInterface", 4: "RemAddRef", 5: "RemRelease"},
    "IObjectExporter": {0: "ResolveOxid", 1: "SimplePing", 2: "ComplexPing", 3: "ServerAlive", 4: "ResolveOxid2",
                        5: "ServerAlive2"},
}

LOG = logging.getLogger("adcslab.faults")


class FaultError(ValueError):
    """A knob or limit that cannot be used (unknown name, bad value)."""


def method_name(interface, opnum):
    return METHODS.get(interface or "", {}).get(opnum, "opnum%s" % opnum)


# --------------------------------------------------------------------------------------------------
# value parsing
# --------------------------------------------------------------------------------------------------
def _parse_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise FaultError("not a boolean: %r" % value)


def _parse_int(value):
    if isinstance(value, bool):
        raise FaultError("not an integer: %r" % value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        raise FaultError("not an integer: %r" % value)


def _parse_u32(value):
    number = _parse_int(value)
    if number < -0x80000000 or number > 0xFFFFFFFF:
        raise FaultError("does not fit in 32 bits: %r" % value)
    return number & 0xFFFFFFFF


def _parse_seconds(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaultError("not a number of seconds: %r" % value)
    if number < 0 or number > 3600:
        raise FaultError("seconds out of range (0-3600): %r" % value)
    return number


def _parse_drop(value):
    if isinstance(value, str) and value.strip().lower() in ("before", "after"):
        return value.strip().lower()
    return "before" if _parse_bool(value) else None


def _parse_name(value):
    text = str(value).strip()
    if not text:
        raise FaultError("empty subject")
    try:
        from cryptography import x509

        x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise FaultError("not an RFC 4514 name: %r (%s)" % (value, exc))
    return text


def parse_san_list(value):
    """``dns:a,ip:192.0.2.1`` -> [("dns", "a"), ("ip", "192.0.2.1")]; FaultError when malformed."""
    items = []
    for part in str(value).split(","):
        part = part.strip()
        if not part:
            continue
        kind, _, text = part.partition(":")
        kind, text = kind.strip().lower(), text.strip()
        if kind not in SAN_KINDS or not text:
            raise FaultError("expected type:value with type in %s, got %r" % (", ".join(SAN_KINDS), part))
        if kind == "ip":
            import ipaddress

            try:
                ipaddress.ip_address(text)
            except ValueError:
                raise FaultError("not an IP address: %r" % text)
        items.append((kind, text))
    if not items:
        raise FaultError("no subject alternative name given")
    return items


def _parse_sans(value):
    return ",".join("%s:%s" % item for item in parse_san_list(value))


_KNOB_PARSERS = {
    "delay_seconds": _parse_seconds,
    "drop_connection": _parse_drop,
    "hresult": _parse_u32,
    "disposition": _parse_u32,
    "wrong_key": lambda v: True if _parse_bool(v) else None,
    "rogue_ca": lambda v: True if _parse_bool(v) else None,
    "refuse_connections": lambda v: True if _parse_bool(v) else None,
    "slow_activation_seconds": _parse_seconds,
    "alter_subject": _parse_name,
    "alter_san": _parse_sans,
}


def _parse_limit(name, value):
    if value is None:
        return None
    if name == "times":
        number = _parse_int(value)
        if number < 1:
            raise FaultError("times must be >= 1")
        return number
    if name in ("opnum", "port"):
        number = _parse_int(value)
        if not 0 <= number <= 0xFFFF:
            raise FaultError("%s out of range: %r" % (name, value))
        return number
    text = str(value).strip()
    if not text:
        raise FaultError("%s must not be empty" % name)
    return text


def _parse_option(name, value):
    if value is None:
        return None
    if name == "request_id":
        return _parse_u32(value)
    return str(value)


def _is_off(knob, value):
    if value is None:
        return True
    if knob in ("delay_seconds", "slow_activation_seconds"):
        return value == 0
    return False


# --------------------------------------------------------------------------------------------------
# file API
# --------------------------------------------------------------------------------------------------
def faults_path(state_dir):
    return os.path.join(state_dir, FAULTS_FILE)


def load_faults(state_dir):
    """The configured knobs: {knob: {"value": ..., "times": ..., "method": ..., ..., "id": ...}}."""
    path = faults_path(state_dir)
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    return parse_faults(text, path)


def parse_faults(text, path=FAULTS_FILE):
    if not text.strip():
        return {}
    data = json.loads(text)
    faults = data.get("faults", {}) if isinstance(data, dict) else {}
    if not isinstance(faults, dict):
        raise FaultError("%s: 'faults' must be an object" % path)
    return faults


def _write(state_dir, faults):
    os.makedirs(state_dir, exist_ok=True)
    path = faults_path(state_dir)
    if not faults:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "faults": faults}, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def set_faults(state_dir, times=None, method=None, opnum=None, interface=None, port=None, message=None,
               request_id=None, **knobs):
    """Set (or replace) knobs; the limits and options apply to every knob given in this call. A knob set to
    None/False/0 is removed. Returns the knobs now configured."""
    if not knobs:
        raise FaultError("no knob given (one of %s)" % ", ".join(KNOBS))
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise FaultError("unknown knob(s) %s (known: %s)" % (", ".join(unknown), ", ".join(KNOBS)))
    limits = {name: _parse_limit(name, value) for name, value in
              (("times", times), ("method", method), ("opnum", opnum), ("interface", interface), ("port", port))}
    options = {"message": _parse_option("message", message), "request_id": _parse_option("request_id", request_id)}
    faults = load_faults(state_dir)
    for knob, raw in knobs.items():
        try:
            value = _KNOB_PARSERS[knob](raw) if raw is not None else None
        except FaultError as exc:
            raise FaultError("%s: %s" % (knob, exc))
        if _is_off(knob, value):
            faults.pop(knob, None)
            continue
        entry = {"value": value, "id": uuid.uuid4().hex, "set_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                   time.gmtime())}
        entry.update({k: v for k, v in limits.items() if v is not None})
        entry.update({k: v for k, v in options.items() if v is not None})
        faults[knob] = entry
    _write(state_dir, faults)
    return faults


def clear_faults(state_dir, *knobs):
    """Remove the given knobs, or all of them (the file goes away)."""
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise FaultError("unknown knob(s) %s" % ", ".join(unknown))
    faults = load_faults(state_dir) if knobs else {}
    for knob in knobs:
        faults.pop(knob, None)
    _write(state_dir, faults)
    return faults


def load_status(state_dir):
    """What the running lab CA reports having applied: {fault id: count}."""
    try:
        with open(os.path.join(state_dir, STATUS_FILE), "r", encoding="utf-8") as fh:
            return json.load(fh).get("applied", {})
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------------------------------
# runtime side (used by the lab CA)
# --------------------------------------------------------------------------------------------------
class FaultState:
    """The lab CA's view of faults.json: re-read when the file changes, counts what was applied.

    ``take(knob, interface=, opnum=, port=)`` returns the knob's entry (a dict with ``value`` and options) when
    the knob is set, matches the call and still has uses left, consuming one use; else None."""

    def __init__(self, state_dir, logger=None):
        self.state_dir = state_dir
        self.path = faults_path(state_dir)
        self.log = logger or LOG
        self._lock = threading.Lock()
        self._stamp = None
        self._text = None
        self._faults = {}
        self._used = {}  # fault id -> times applied
        self._synthetic_id = 900000

    def _reload(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            st, stamp = None, None
        if stamp == self._stamp:
            # Same inode/mtime/size. Timestamps are coarse (a clock tick) and a replaced file may get the old
            # inode number back: when the file changed very recently, compare its content too.
            if st is None or time.time() - st.st_mtime > 2.0:
                return
            try:
                with open(self.path, "r", encoding="utf-8") as fh:
                    if fh.read() == self._text:
                        return
            except OSError:
                return
        self._stamp = stamp
        if stamp is None:
            if self._faults:
                self.log.warning("faults: %s removed, no faults active", self.path)
            self._faults = {}
            return
        try:
            with open(self.path, "r", encoding="utf-8") as fh:
                self._text = fh.read()
            faults = parse_faults(self._text, self.path)
        except FileNotFoundError:
            self._stamp, self._text = None, None
            if self._faults:
                self.log.warning("faults: %s removed, no faults active", self.path)
            self._faults = {}
            return
        except (OSError, ValueError) as exc:
            self.log.error("faults: cannot read %s (%s); keeping the previous knobs", self.path, exc)
            return
        self._faults = {k: v for k, v in faults.items() if k in KNOBS and isinstance(v, dict)}
        ignored = sorted(set(faults) - set(self._faults))
        self.log.warning("faults: loaded %s: %s%s", self.path,
                         ", ".join("%s=%s%s" % (k, value_text(k, v.get("value")), _limits_text(v)) for k, v in
                                   sorted(self._faults.items())) or "none",
                         (" (ignored: %s)" % ", ".join(ignored)) if ignored else "")

    def active(self):
        with self._lock:
            self._reload()
            return dict(self._faults)

    @staticmethod
    def _matches(knob, entry, interface, opnum, port):
        if knob == "refuse_connections":
            return entry.get("port") is None or entry.get("port") == port
        if knob in NAME_KNOBS:
            return True
        method = method_name(interface, opnum)
        if entry.get("port") is not None and port is not None and entry["port"] != port:
            return False
        if entry.get("method") is not None and method.lower() != str(entry["method"]).lower():
            return False
        if entry.get("interface") is not None and (interface or "").lower() != str(entry["interface"]).lower():
            return False
        if entry.get("opnum") is not None and opnum != entry["opnum"]:
            return False
        # what each knob can apply to (method=/interface= only narrow these)
        if knob == "slow_activation_seconds":
            return method in ACTIVATION_METHODS
        if knob in ("disposition", "wrong_key"):
            return method in REQUEST_METHODS
        widened = entry.get("method") is not None or entry.get("interface") is not None
        if knob == "hresult" and widened:
            return interface in WCCE_INTERFACES or method in HRESULT_EXTRA_METHODS
        return widened or interface in WCCE_INTERFACES

    def peek(self, knob, interface=None, opnum=None, port=None):
        """Like take() without consuming a use."""
        return self.take(knob, interface, opnum, port, consume=False)

    def take(self, knob, interface=None, opnum=None, port=None, consume=True, when=None):
        """``when``: optional predicate on the entry (e.g. the drop_connection phase) checked before consuming."""
        with self._lock:
            self._reload()
            entry = self._faults.get(knob)
            if entry is None or not self._matches(knob, entry, interface, opnum, port):
                return None
            if when is not None and not when(entry):
                return None
            fid = entry.get("id") or knob
            used = self._used.get(fid, 0)
            times = entry.get("times")
            if times is not None and used >= int(times):
                return None
            if consume:
                self._used[fid] = used + 1
                self._write_status()
            return dict(entry, applied=used + (1 if consume else 0))

    def next_synthetic_request_id(self):
        with self._lock:
            self._synthetic_id += 1
            return self._synthetic_id

    def _write_status(self):
        path = os.path.join(self.state_dir, STATUS_FILE)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"applied": self._used}, fh, indent=2, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            self.log.debug("faults: cannot write %s: %s", path, exc)


def value_text(knob, value):
    if knob in ("hresult", "disposition") and isinstance(value, int) and value > 0xFF:
        return "0x%08x" % value
    return str(value)


def _limits_text(entry):
    parts = ["%s=%s" % (k, entry[k]) for k in LIMITS + OPTIONS if entry.get(k) is not None]
    return (" [%s]" % ", ".join(parts)) if parts else ""


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def _show(state_dir, out):
    faults = load_faults(state_dir)
    if not faults:
        print("no faults set (%s absent)" % faults_path(state_dir), file=out)
        return
    status = load_status(state_dir)
    for knob in sorted(faults):
        entry = faults[knob]
        value = value_text(knob, entry.get("value"))
        applied = status.get(entry.get("id", ""), 0)
        times = entry.get("times")
        left = "" if times is None else ", %d left" % max(0, int(times) - applied)
        print("%s=%s%s (applied %d%s)" % (knob, value, _limits_text(entry), applied, left), file=out)


def main(argv=None, out=None):
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m adcslab.faults",
                                     description="Fault knobs of the running lab CA (STATE_DIR/faults.json)")
    parser.add_argument("--state-dir", default=os.environ.get("ADCS_LAB_STATE") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "state"), help="lab state directory")
    sub = parser.add_subparsers(dest="command", required=True)
    p_set = sub.add_parser("set", help="set knobs: KEY=VALUE ... (knobs: %s; limits: %s; options: %s)"
                           % (", ".join(KNOBS), ", ".join(LIMITS), ", ".join(OPTIONS)))
    p_set.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    p_clear = sub.add_parser("clear", help="clear all knobs, or the ones named")
    p_clear.add_argument("knobs", nargs="*")
    sub.add_parser("show", help="print the knobs and how often the running CA applied them")
    args = parser.parse_args(argv)
    try:
        if args.command == "set":
            kwargs = {}
            for pair in args.pairs:
                if "=" not in pair:
                    raise FaultError("expected KEY=VALUE, got %r" % pair)
                key, value = pair.split("=", 1)
                key = key.strip().replace("-", "_")
                if key not in KNOBS + LIMITS + OPTIONS:
                    raise FaultError("unknown key %r (knobs: %s; limits: %s; options: %s)"
                                     % (key, ", ".join(KNOBS), ", ".join(LIMITS), ", ".join(OPTIONS)))
                kwargs[key] = value
            set_faults(args.state_dir, **kwargs)
        elif args.command == "clear":
            clear_faults(args.state_dir, *args.knobs)
        _show(args.state_dir, out)
        return 0
    except (FaultError, OSError, ValueError) as exc:
        print("faults: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
