#!/usr/bin/env python3
"""A scripted Asterisk Manager Interface (AMI) server for bantam's tests.

Written from Asterisk's documentation of the protocol: on connect the
server sends the banner "Asterisk Call Manager/VERSION\\r\\n"; each message
is "Key: value" lines ended by CRLF, the message ended by an empty line.
The client logs in with "Action: Login" (Username, Secret, Events); the
server answers "Response: Success" (then the FullyBooted event) or
"Response: Error" / "Message: Authentication failed" and hangs up.
Security events look like this (security_events.c sends the required fields
of the event type in order, then the optional ones it has):

    Event: InvalidPassword
    Privilege: security,all
    EventTV: 2024-03-03T09:16:00.120+0000
    Severity: Error
    Service: SIP
    EventVersion: 2
    AccountID: 201
    SessionID: 0x7f2c3c01a2b0
    LocalAddress: IPV4/UDP/192.0.2.10/5060
    RemoteAddress: IPV4/UDP/203.0.113.80/5064

Use it as a library (AmiServer) or as a program driven by JSON lines on
stdin, one answer line each on stdout, for use inside a network namespace:

    python3 ami_server.py --host 127.0.0.1 --port 5038 --username bantam --secret pw
    {"op": "wait_login", "count": 1, "timeout": 10}   -> {"ok": true, "logins": 1}
    {"op": "event", "name": "InvalidPassword", "remote": "IPV4/UDP/10.0.0.2/5060"}
    {"op": "send", "data": "raw bytes", "trickle": 0.01}
    {"op": "drop"}            closes the current connection
    {"op": "mode", "mode": "normal" | "refuse" | "close"}
    {"op": "stats"}           -> connections, logins, refused
"""
import json
import socket
import sys
import threading
import time

BANNER = 'Asterisk Call Manager/5.0.2\r\n'

# The required then optional fields of each event after the common ones
# (EventTV, Severity, Service, EventVersion, AccountID, SessionID,
# LocalAddress, RemoteAddress), as security_events.c orders them.
_EXTRA = {
    'InvalidPassword': [('Challenge', '4f1c2a7e'), ('ReceivedChallenge', '4f1c2a7e'),
                        ('ReceivedHash', 'c0ffee00c0ffee00c0ffee00c0ffee00')],
    'ChallengeResponseFailed': [('Challenge', '1709457362/2d1e4f'), ('Response', '5d2c9e'),
                                ('ExpectedResponse', '')],
    'FailedACL': [('ACLName', 'not_match_endpoint_acl')],
    'ChallengeSent': [('Challenge', '1709457365/aa11')],
    'SuccessfulAuth': [('UsingPassword', '1')],
    'RequestNotAllowed': [('RequestType', 'INVITE')],
}
_SEVERITY = {'ChallengeSent': 'Informational', 'SuccessfulAuth': 'Informational'}


def event_tv(t=None):
    """EventTV as Asterisk 12+ writes it: local time, milliseconds, +HHMM."""
    t = time.time() if t is None else t
    lt = time.localtime(t)
    return time.strftime('%Y-%m-%dT%H:%M:%S', lt) + '.%03d' % int((t % 1) * 1000) + \
        time.strftime('%z', lt)


def security_event(name, remote, account='201', service='SIP', when=None, local=None):
    """One security event message (bytes), RemoteAddress e.g.
    IPV4/UDP/203.0.113.5/5060 or IPV6/UDP/2001:db8::1/5060."""
    if local is None:
        local = 'IPV6/UDP/::1/5060' if remote.startswith('IPV6') else 'IPV4/UDP/127.0.0.1/5060'
    fields = [('Event', name), ('Privilege', 'security,all'), ('EventTV', event_tv(when)),
              ('Severity', _SEVERITY.get(name, 'Error')), ('Service', service),
              ('EventVersion', '1'), ('AccountID', account), ('SessionID', '0x1a2b'),
              ('LocalAddress', local), ('RemoteAddress', remote)]
    fields += _EXTRA.get(name, [])
    return (''.join('%s: %s\r\n' % kv for kv in fields) + '\r\n').encode()


class AmiServer:
    """Serves one client at a time on (host, port); the test drives it."""

    def __init__(self, host='127.0.0.1', port=0, username='bantam', secret='secret'):
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.username, self.secret = username, secret
        self.mode = 'normal'
        self.conn = None
        self.cond = threading.Condition()
        self.connections = self.logins = self.refused = 0
        self.login_fields = []  # every Login action received, as dicts
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                self.connections += 1
                self.cond.notify_all()
            if self.mode == 'close':
                conn.close()
                continue
            try:
                self._session(conn)
            except OSError:
                pass

    def _session(self, conn):
        conn.sendall(BANNER.encode())
        buf = b''
        conn.settimeout(10)
        while b'\r\n\r\n' not in buf:
            data = conn.recv(4096)
            if not data:
                conn.close()
                return
            buf += data
        fields = {}
        for line in buf.split(b'\r\n\r\n', 1)[0].decode(errors='replace').split('\r\n'):
            k, _, v = line.partition(':')
            fields[k.strip()] = v.strip()
        with self.cond:
            self.login_fields.append(fields)
        action_id = fields.get('ActionID')
        ok = (self.mode != 'refuse' and fields.get('Action', '').lower() == 'login'
              and fields.get('Username') == self.username and fields.get('Secret') == self.secret)
        head = 'ActionID: %s\r\n' % action_id if action_id else ''
        if not ok:
            conn.sendall(('Response: Error\r\n' + head +
                          'Message: Authentication failed\r\n\r\n').encode())
            conn.close()
            with self.cond:
                self.refused += 1
                self.cond.notify_all()
            return
        conn.sendall(('Response: Success\r\n' + head +
                      'Message: Authentication accepted\r\n\r\n'
                      'Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 12\r\n'
                      'LastReload: 12\r\nStatus: Fully Booted\r\n\r\n').encode())
        conn.settimeout(None)
        with self.cond:
            self.conn = conn
            self.logins += 1
            self.cond.notify_all()
        # Hold the session until the client or the test ends it; whatever
        # the client sends (Logoff) is read and ignored.
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b''
            if not data:
                break
        with self.cond:
            if self.conn is conn:
                self.conn = None
        try:
            conn.close()
        except OSError:
            pass

    def wait(self, what, count, timeout=10.0):
        """Waits until self.<what> (logins, refused, connections) >= count."""
        end = time.time() + timeout
        with self.cond:
            while getattr(self, what) < count:
                left = end - time.time()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def send(self, data, trickle=0.0):
        with self.cond:
            conn = self.conn
        if conn is None:
            raise RuntimeError('no client logged in')
        if isinstance(data, str):
            data = data.encode()
        if trickle:
            for i in range(len(data)):
                conn.sendall(data[i:i + 1])
                time.sleep(trickle)
        else:
            conn.sendall(data)

    def drop(self):
        with self.cond:
            conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.closing = True
        self.drop()
        self.sock.close()


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5038)
    ap.add_argument('--username', default='bantam')
    ap.add_argument('--secret', default='secret')
    a = ap.parse_args()
    srv = AmiServer(a.host, a.port, a.username, a.secret)
    print(json.dumps({'port': srv.port}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop('op')
        try:
            if op == 'wait_login':
                res = {'ok': srv.wait('logins', req.get('count', 1), req.get('timeout', 10)),
                       'logins': srv.logins}
            elif op == 'event':
                srv.send(security_event(req['name'], req['remote'], req.get('account', '201')),
                         req.get('trickle', 0.0))
                res = {'ok': True, 'sent': time.time()}
            elif op == 'send':
                srv.send(req['data'], req.get('trickle', 0.0))
                res = {'ok': True}
            elif op == 'drop':
                srv.drop()
                res = {'ok': True}
            elif op == 'mode':
                srv.mode = req['mode']
                res = {'ok': True}
            elif op == 'stats':
                res = {'connections': srv.connections, 'logins': srv.logins,
                       'refused': srv.refused}
            else:
                res = {'ok': False, 'error': 'unknown op ' + op}
        except (OSError, RuntimeError, KeyError) as e:
            res = {'ok': False, 'error': str(e)}
        print(json.dumps(res), flush=True)
    srv.close()


if __name__ == '__main__':
    main()
