"""A real SMTP server for BYSU's tests, on loopback (aiosmtpd, Debian's python3-aiosmtpd).

Each message it accepts is parsed with Python's own email package and written
as JSON (envelope, headers, plain-text body, whether the session was
encrypted and who logged in) to <dir>/<n>.json, so a test reads what a mail
client would show, not what the sender meant to send.

    /usr/bin/python3 smtp-server.py --port N --dir D [--starttls-cert C --starttls-key K] [--user U]

With --starttls-cert, STARTTLS is offered and required before MAIL FROM; without it,
it is not offered at all. With --user, a login is required (the password is
read from $SMTP_TEST_PASSWORD). It prints "ready" once it accepts connections
and stops on SIGTERM.
"""
import argparse
import email
import email.policy
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Recorder:
    def __init__(self, directory):
        self.directory = directory
        self.count = len(os.listdir(directory))

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=('plain',))
        record = {
            'mailFrom': envelope.mail_from,
            'rcptTos': envelope.rcpt_tos,
            'headers': {name: str(value) for name, value in message.items()},
            'contentType': message.get_content_type(),
            'text': body.get_content() if body is not None else None,
            'encrypted': session.ssl is not None,
            'login': session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
        }
        self.count += 1
        path = os.path.join(self.directory, '%04d.json' % self.count)
        with open(path + '.tmp', 'w') as file:
            json.dump(record, file)
        os.rename(path + '.tmp', path)
        return '250 OK: recorded'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--dir', required=True)
    parser.add_argument('--starttls-cert')
    parser.add_argument('--starttls-key')
    parser.add_argument('--user')
    args = parser.parse_args()

    options = {}
    if args.starttls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.starttls_cert, args.starttls_key)
        options.update(tls_context=context, require_starttls=True)
    if args.user:
        password = os.environ['SMTP_TEST_PASSWORD'].encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == args.user.encode() and auth_data.password == password
            return AuthResult(success=ok, auth_data=auth_data.login if ok else None)

        options.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(args.starttls_cert))

    controller = Controller(Recorder(args.dir), hostname='127.0.0.1', port=args.port, server_hostname='bysu-test-smtp', **options)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print('ready', flush=True)
    stop.wait()
    controller.stop()


if __name__ == '__main__':
    main()
