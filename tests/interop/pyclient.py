#!/usr/bin/env python3
"""Drives a stock Python NETCONF client library through one nctls scenario.

Usage: pyclient.py LIB SCENARIO --port PORT --tls 1.2|1.3 --pki DIR [--settle]

LIB is `ncclient` (manager.connect_tls) or `netconf-client` (connect_tls,
TLS 1.2 only). SCENARIO is one of:

  basic   hello, <get-config>, <lock>, <get>, then <close-session>: the
          <ok/> arrives, then the TLS session ends
  kill    A locks; B's lock is denied; B kills A; A's TLS session ends;
          B can lock
  drop    A locks, then drops its TCP connection without close_notify;
          B retries <lock> until it succeeds
  notify  A locks, then sends close_notify (SSLSocket.unwrap); B retries
          <lock> until it succeeds

It prints what it observed as `key=value` lines (the Rust test in
tests/netconf.rs asserts on them) and exits non-zero on any exception.
The libraries are used as shipped; the only instrumentation is a wrapper
around each session's raw TLS read that records how and when the TLS
session ended (`suppress_ragged_eofs` is turned off so that a missing
close_notify shows as SSLEOFError instead of b''), and that can hold the
library's reader thread back while the test sends close_notify.
"""

import argparse
import os
import select
import socket
import ssl
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

HOST = "127.0.0.1"
TIMEOUT = 10
# netconfd defers, and then never answers, an <rpc> that arrives before it
# has processed the client's <hello>; --settle waits this long after
# connecting before the first RPC.
SETTLE = 0.2


def out(**kv):
    for k, v in kv.items():
        print(f"{k}={v}", flush=True)


def now_ms():
    return time.monotonic() * 1000.0


class Observer:
    """Wraps a raw TLS read function: records the end of the session."""

    def __init__(self, sock):
        self.sock = sock
        self.end = None
        self.end_ms = None
        self.paused = threading.Event()
        self.released = threading.Event()
        self.done = threading.Event()

    def _set(self, how):
        if self.end is None:
            self.end, self.end_ms = how, now_ms()
            self.done.set()

    def wrap(self, read):
        def wrapped(*args):
            # Enter the TLS library only when there is something to read,
            # so the test can own the SSL object while paused.
            while True:
                if self.paused.is_set():
                    self.released.wait()
                    return b""
                if self.sock.pending():
                    break
                r, _, _ = select.select([self.sock], [], [], 0.02)
                if r and not self.paused.is_set():
                    break
            try:
                data = read(*args)
            except ssl.SSLEOFError:
                self._set("ragged")
                raise
            except ssl.SSLError as e:
                self._set(f"tls-error:{e.reason}")
                raise
            except ConnectionResetError:
                self._set("reset")
                raise
            except OSError as e:
                self._set(f"os-error:{e.errno}")
                raise
            if data == b"":
                self._set("clean")
            return data

        return wrapped

    def wait(self, secs=3.0):
        self.done.wait(secs)
        return self.end or "none"

    def pause(self):
        self.paused.set()
        time.sleep(0.1)  # let the reader park in the wrapper


def tls_protocol(version):
    return ssl.PROTOCOL_TLS_CLIENT if version == "1.3" else ssl.PROTOCOL_TLSv1_2


def error_tag(e):
    # Both libraries' RPC errors carry the reply's <error-tag>.
    tag = getattr(e, "tag", None)
    return tag if tag else "error:" + type(e).__name__


class Ncclient:
    def __init__(self, args):
        from ncclient import manager

        self.m = manager.connect_tls(
            host=HOST,
            port=args.port,
            certfile=os.path.join(args.pki, "client.pem"),
            keyfile=os.path.join(args.pki, "client-key.pem"),
            ca_certs=os.path.join(args.pki, "x509-ca.pem"),
            protocol=tls_protocol(args.tls),
            server_hostname="localhost",
            timeout=TIMEOUT,
        )
        self.m.timeout = TIMEOUT
        if args.settle:
            time.sleep(SETTLE)
        session = self.m._session
        self.sock = session._socket
        self.sock.suppress_ragged_eofs = False
        self.obs = Observer(self.sock)
        session._transport_read = self.obs.wrap(session._transport_read)

    def session_id(self):
        return int(self.m.session_id)

    def get_config(self):
        return self.m.get_config(source="running").xml

    def get(self):
        return self.m.get().xml

    def lock(self):
        try:
            reply = self.m.lock(target="running")
            return "ok" if reply.ok else "not-ok"
        except Exception as e:  # RPCError carries the error-tag
            return error_tag(e)

    def kill(self, sid):
        return "ok" if self.m.kill_session(str(sid)).ok else "not-ok"

    def close_session(self):
        # ncclient closes its socket right after the reply; keep it open a
        # moment so the observer can see how the server ends the session.
        session = self.m._session
        real_close = session.close
        session.close = lambda: None
        try:
            reply = self.m.close_session()
        finally:
            session.close = real_close
        return "ok" if reply.ok else "not-ok"

    def quit(self):
        self.m._session._closing.set()
        self.obs.released.set()
        try:
            self.sock.close()
        except OSError:
            pass


class NetconfClient:
    def __init__(self, args):
        from netconf_client.connect import connect_tls
        from netconf_client.ncclient import Manager

        session = connect_tls(
            host=HOST,
            port=args.port,
            keyfile=os.path.join(args.pki, "client-key.pem"),
            certfile=os.path.join(args.pki, "client.pem"),
            ca_certs=os.path.join(args.pki, "x509-ca.pem"),
            initial_timeout=TIMEOUT,
            general_timeout=TIMEOUT,
        )
        self.session = session
        self.sock = session.sock
        self.sock.suppress_ragged_eofs = False
        self.obs = Observer(self.sock)
        self.sock.recv = self.obs.wrap(self.sock.recv)
        self.m = Manager(session, timeout=TIMEOUT)
        if args.settle:
            time.sleep(SETTLE)

    def session_id(self):
        return int(self.m.session_id)

    def get_config(self):
        return self.m.get_config(source="running").data_xml.decode()

    def get(self):
        return self.m.get().data_xml.decode()

    def lock(self):
        try:
            self.m.lock(target="running")
            return "ok"
        except Exception as e:
            return error_tag(e)

    def kill(self, sid):
        self.m.kill_session(sid)
        return "ok"

    def close_session(self):
        self.m.close_session()
        return "ok"

    def quit(self):
        self.obs.released.set()
        try:
            self.sock.close()
        except OSError:
            pass


LIBS = {"ncclient": Ncclient, "netconf-client": NetconfClient}


def describe_data(prefix, xml):
    data = xml.encode("utf-8")
    out(**{prefix: "data"})
    out(**{f"{prefix}_bytes": len(data)})
    # netconfd serves the nctls-interop blobs; confd-emu its filler lines.
    out(**{f"{prefix}_blobs": xml.count("<name>b")})
    out(**{f"{prefix}_filler": xml.count("nctls filler")})
    # lxml may re-serialise non-ASCII text as character references.
    utf8 = "\u00fc\u20ac" in xml or "&#252;&#8364;" in xml
    out(**{f"{prefix}_utf8": "yes" if utf8 else "no"})
    out(**{f"{prefix}_escapes": "yes" if "&amp; &lt;tag&gt; ]]&gt;]]&gt;" in xml else "no"})


def relock(b, since_ms):
    """B retries <lock> until it succeeds (3 s at most)."""
    while True:
        got = b.lock()
        if got == "ok" or now_ms() - since_ms > 3000:
            out(b_lock_after=got, relock_ms=f"{now_ms() - since_ms:.1f}")
            return
        time.sleep(0.02)


def basic(lib, args):
    a = lib(args)
    out(tls=a.sock.version(), session_id=a.session_id())
    describe_data("get_config", a.get_config())
    out(lock=a.lock())
    describe_data("get", a.get())
    out(close_session=a.close_session())
    ok_ms = now_ms()
    out(end=a.obs.wait(), end_after_reply_ms=f"{(a.obs.end_ms or now_ms()) - ok_ms:.1f}")
    a.quit()


def kill(lib, args):
    a = lib(args)
    out(tls=a.sock.version(), a_lock=a.lock())
    b = lib(args)
    out(b_lock_before=b.lock())
    out(kill=b.kill(a.session_id()))
    ok_ms = now_ms()
    out(a_end=a.obs.wait())
    out(a_end_after_ok_ms=f"{(a.obs.end_ms or now_ms()) - ok_ms:.1f}")
    out(b_lock_after=b.lock())
    a.quit()
    b.quit()


def drop(lib, args):
    a = lib(args)
    out(tls=a.sock.version(), a_lock=a.lock())
    b = lib(args)
    a.obs.pause()
    # A duplicate of the descriptor: TCP FIN with no TLS close_notify.
    raw = socket.socket(fileno=os.dup(a.sock.fileno()))
    since = now_ms()
    raw.shutdown(socket.SHUT_RDWR)
    raw.close()
    relock(b, since)
    a.quit()
    b.quit()


def notify(lib, args):
    a = lib(args)
    out(tls=a.sock.version(), a_lock=a.lock())
    b = lib(args)
    a.obs.pause()
    since = now_ms()
    try:
        # Sends close_notify, then waits for the server's.
        a.sock.unwrap()
        out(a_unwrap="clean", a_unwrap_ms=f"{now_ms() - since:.1f}")
    except Exception as e:
        out(a_unwrap=f"error:{type(e).__name__}:{e}".replace("\n", " "))
    relock(b, since)
    a.quit()
    b.quit()


SCENARIOS = {"basic": basic, "kill": kill, "drop": drop, "notify": notify}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("lib", choices=sorted(LIBS))
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", choices=["1.2", "1.3"], required=True)
    p.add_argument("--pki", required=True)
    p.add_argument("--settle", action="store_true", help="wait before the first RPC (netconfd)")
    args = p.parse_args()
    SCENARIOS[args.scenario](LIBS[args.lib], args)
    out(done="yes")
    sys.stdout.flush()
    # Library reader threads may still be parked: do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
