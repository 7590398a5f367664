"""Lab CA server process.

    python -m adcslab.wcce.server --state-dir DIR --address 127.0.0.12 [--port 135]

Starts port 135 (DCOM activation, OXID resolver, endpoint mapper), the object exporter port and the MS-ICPR
port (both dynamic unless given), writes ``DIR/ca-endpoints.json`` once everything listens, logs to
``DIR/labca.log`` and exits cleanly on SIGTERM/SIGINT (removing the endpoints file).
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading

LOG = logging.getLogger("adcslab.wcce.server")


def _write_json_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _setup_logging(state_dir, level, to_stderr):
    handlers = [logging.FileHandler(os.path.join(state_dir, "labca.log"), encoding="utf-8")]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=handlers,
                        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m adcslab.wcce.server", description="Lab AD CS (DCOM + MS-ICPR)")
    p.add_argument("--state-dir", required=True, help="lab state directory (accounts.json, CA state, logs)")
    p.add_argument("--address", default="127.0.0.12", help="address to listen on (default 127.0.0.12)")
    p.add_argument("--port", type=int, default=135, help="activation / OXID resolver / EPM port (default 135)")
    p.add_argument("--exporter-port", type=int, default=0, help="object exporter port (default dynamic)")
    p.add_argument("--icpr-port", type=int, default=0, help="MS-ICPR port (default dynamic)")
    p.add_argument("--accounts", default=None, help="accounts file (default STATE_DIR/accounts.json)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-stderr", action="store_true", help="also log to stderr")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    try:
        os.makedirs(state_dir, exist_ok=True)
    except OSError as exc:
        print("labca: cannot use state dir %s: %s" % (state_dir, exc), file=sys.stderr)
        return 2
    _setup_logging(state_dir, args.log_level, args.log_stderr)
    endpoints_path = os.path.join(state_dir, "ca-endpoints.json")
    accounts_path = args.accounts or os.path.join(state_dir, "accounts.json")
    stop = threading.Event()

    def on_signal(signum, _frame):
        LOG.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    service = None
    try:
        from adcslab.ca import CertificationAuthority
        from adcslab.rpc import AccountStore

        from .service import LabCaService

        if not os.path.exists(accounts_path):
            raise RuntimeError("accounts file %s does not exist (seed the lab first)" % accounts_path)
        accounts = AccountStore.from_file(accounts_path)
        ca = CertificationAuthority.open(state_dir)
        service = LabCaService(ca, accounts, args.address, rpc_port=args.port, exporter_port=args.exporter_port,
                               icpr_port=args.icpr_port, state_dir=state_dir)
        service.start()
        info = dict(service.endpoints(), pid=os.getpid())
        _write_json_atomic(endpoints_path, info)
        LOG.info("endpoints: %s", info)
        while not stop.wait(1.0):
            pass
        return 0
    except Exception as exc:
        LOG.exception("lab CA failed")
        print("labca: %s" % exc, file=sys.stderr)
        return 1
    finally:
        if service is not None:
            service.stop()
        try:
            os.unlink(endpoints_path)
        except OSError:
            pass
        LOG.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
