"""Local stand-ins for the push providers, started by the push tests: each records the
requests it gets and checks them the way the real service would (signatures with the test
keys, headers, payload shape), answering what the test tells it to."""

import base64
import hashlib
import hmac
import json
import queue
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token, public_key, alg):
    """The JWT's header and claims, after checking its signature with `public_key`."""
    head, claims, sig = token.split(".")
    signed = f"{head}.{claims}".encode()
    raw = unb64u(sig)
    if alg == "RS256":
        public_key.verify(raw, signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert len(raw) == 64, "ES256 signatures are r || s, 64 bytes"
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    header = json.loads(unb64u(head))
    assert header["alg"] == alg, header
    return header, json.loads(unb64u(claims))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIn:
    """An HTTP/1.1 endpoint. `answers` is a queue of (status, headers, body); empty, 200.
    `check(path, headers, body)` validates a request and returns what to record, or
    raises (answered 400, recorded in `errors`)."""

    def __init__(self, check, port=None):
        self.requests = queue.Queue()
        self.errors = []
        self.answers = queue.Queue()
        self.hold = None  # a threading.Event: requests wait on it before answering
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    recorded = check(self.path, self.headers, body)
                except Exception as e:  # noqa: BLE001: reported to the test
                    outer.errors.append(f"{self.path}: {e!r}")
                    self.send_response(400)
                    self.end_headers()
                    return
                if outer.hold is not None:
                    outer.requests.put(("held", recorded))
                    outer.hold.wait()
                    return  # the connection is cut, unanswered
                try:
                    status, headers, reply = outer.answers.get_nowait()
                except queue.Empty:
                    status, headers, reply = 200, {}, b"{}"
                if recorded is not None:
                    outer.requests.put((status, recorded))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.port = port or free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def next(self, timeout=60):
        """The next recorded request as (status answered, what `check` returned)."""
        return self.requests.get(timeout=timeout)

    def stop(self):
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def webhook(secret):
    """A webhook receiver that checks `X-Confer-Signature` and records the JSON."""

    def check(path, headers, body):
        assert headers["Content-Type"] == "application/json"
        want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Confer-Signature"] == want, "signature"
        return json.loads(body)

    return StandIn(check)


class Fcm:
    """FCM HTTP v1 and Google's OAuth2 token endpoint, with a test service account."""

    PROJECT = "confer-test"
    EMAIL = "push@confer-test.iam.gserviceaccount.com"
    SCOPE = "https://www.googleapis.com/auth/firebase.messaging"

    def __init__(self, folder):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.access = "ya29.test-" + b64u(hashlib.sha256(str(id(self)).encode()).digest())[:16]
        self.grants = 0
        self.http = StandIn(self.check)
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        self.account_path = f"{folder}/service-account.json"
        with open(self.account_path, "w") as f:
            json.dump({"type": "service_account", "project_id": self.PROJECT, "private_key": pem,
                       "client_email": self.EMAIL, "token_uri": self.http.url("/token")}, f)

    def check(self, path, headers, body):
        if path == "/token":
            form = dict(p.split("=", 1) for p in body.decode().split("&"))
            assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
            _, claims = verify_jwt(form["assertion"], self.key.public_key(), "RS256")
            assert claims["iss"] == self.EMAIL and claims["scope"] == self.SCOPE
            assert claims["aud"] == self.http.url("/token")
            assert claims["exp"] - claims["iat"] <= 3600
            self.grants += 1
            self.http.answers.put((200, {"Content-Type": "application/json"},
                                   json.dumps({"access_token": self.access, "expires_in": 3599,
                                               "token_type": "Bearer"}).encode()))
            return None
        assert path == f"/v1/projects/{self.PROJECT}/messages:send", path
        assert headers["Authorization"] == f"Bearer {self.access}"
        message = json.loads(body)["message"]
        assert message["android"]["priority"] == "high"
        assert all(isinstance(v, str) for v in message["data"].values()), "FCM data values are strings"
        return message


class WebPushService:
    """A push service endpoint and the browser's subscription keys: decrypts each payload
    (RFC 8291) and checks VAPID (RFC 8292) against the server's configured key."""

    def __init__(self, folder):
        self.vapid = ec.generate_private_key(ec.SECP256R1())
        self.vapid_path = f"{folder}/vapid.pem"
        with open(self.vapid_path, "wb") as f:
            f.write(self.vapid.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        self.ua = ec.generate_private_key(ec.SECP256R1())
        self.auth = b"0123456789abcdef"
        self.http = StandIn(self.check)

    def subscription(self, path="/push/1"):
        ua_public = self.ua.public_key().public_bytes(serialization.Encoding.X962,
                                                     serialization.PublicFormat.UncompressedPoint)
        return json.dumps({"endpoint": self.http.url(path),
                           "keys": {"p256dh": b64u(ua_public), "auth": b64u(self.auth)}})

    def check(self, path, headers, body):
        scheme, params = headers["Authorization"].split(" ", 1)
        assert scheme == "vapid"
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        vapid_public = self.vapid.public_key().public_bytes(serialization.Encoding.X962,
                                                           serialization.PublicFormat.UncompressedPoint)
        assert unb64u(fields["k"]) == vapid_public, "k is the configured VAPID key"
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64u(fields["k"]))
        _, claims = verify_jwt(fields["t"], key, "ES256")
        assert claims["aud"] == self.http.url(""), claims
        assert claims["sub"].startswith("mailto:")
        assert headers["Content-Encoding"] == "aes128gcm"
        assert int(headers["TTL"]) > 0
        return {"path": path, "urgency": headers["Urgency"], "topic": headers["Topic"],
                "payload": json.loads(self.decrypt(body))}

    def decrypt(self, body):
        salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
        assert rs >= 18
        as_public = body[21:21 + idlen]
        ciphertext = body[21 + idlen:]
        shared = self.ua.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), as_public))
        ua_public = self.ua.public_key().public_bytes(serialization.Encoding.X962,
                                                     serialization.PublicFormat.UncompressedPoint)
        ikm = HKDF(hashes.SHA256(), 32, self.auth, b"WebPush: info\0" + ua_public + as_public).derive(shared)
        cek = HKDF(hashes.SHA256(), 16, salt, b"Content-Encoding: aes128gcm\0").derive(ikm)
        nonce = HKDF(hashes.SHA256(), 12, salt, b"Content-Encoding: nonce\0").derive(ikm)
        plain = AESGCM(cek).decrypt(nonce, ciphertext, None)
        assert plain.endswith(b"\x02"), "one last record, delimiter 2"
        return plain[:-1]


class Apns:
    """APNs over HTTP/2 with TLS (a self-signed CA the server is told to trust): checks
    the ES256 provider token with the test `.p8` key, the topic and push type, and
    answers each stream as the test queues."""

    KEY_ID = "ABC123DEFG"
    TEAM_ID = "TEAM123456"
    BUNDLE = "org.confer.test"

    def __init__(self, folder):
        import datetime

        from cryptography import x509
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        self.p8_path = f"{folder}/AuthKey.p8"
        with open(self.p8_path, "wb") as f:
            f.write(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        # A test CA (what the server is told to trust) and the endpoint's certificate.
        now = datetime.datetime.now(datetime.timezone.utc)

        def certificate(subject, key, issuer, issuer_key, ca):
            builder = (x509.CertificateBuilder()
                       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                       .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(days=1))
                       .not_valid_after(now + datetime.timedelta(days=1))
                       .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
            if not ca:
                builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            return builder.sign(issuer_key, hashes.SHA256())

        ca_key, tls_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = certificate("confer test CA", ca_key, "confer test CA", ca_key, True)
        leaf = certificate("localhost", tls_key, "confer test CA", ca_key, False)
        self.ca_path = f"{folder}/apns-ca.pem"
        with open(self.ca_path, "wb") as f:
            f.write(ca.public_bytes(serialization.Encoding.PEM))
        chain_path, key_path = f"{folder}/apns-tls.pem", f"{folder}/apns-tls-key.pem"
        with open(chain_path, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(tls_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain_path, key_path)
        self.ctx.set_alpn_protocols(["h2"])
        self.requests = queue.Queue()
        self.answers = queue.Queue()
        self.errors = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def url(self):
        return f"https://localhost:{self.port}"

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, raw):
        import h2.config
        import h2.connection
        import h2.events

        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            return
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        streams = {}
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    streams[event.stream_id] = [dict((k.decode(), v.decode()) for k, v in event.headers), b""]
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id][1] += event.data
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    headers, body = streams.pop(event.stream_id)
                    status, reply = self.handle(headers, body)
                    h2c.send_headers(event.stream_id, [(":status", str(status)),
                                                       ("content-length", str(len(reply)))])
                    h2c.send_data(event.stream_id, reply, end_stream=True)
            conn.sendall(h2c.data_to_send())

    def handle(self, headers, body):
        try:
            assert headers[":method"] == "POST"
            assert headers[":path"].startswith("/3/device/")
            token = headers[":path"][len("/3/device/"):]
            scheme, jwt = headers["authorization"].split(" ", 1)
            assert scheme == "bearer"
            header, claims = verify_jwt(jwt, self.key.public_key(), "ES256")
            assert header["kid"] == self.KEY_ID and claims["iss"] == self.TEAM_ID
            push_type, topic = headers["apns-push-type"], headers["apns-topic"]
            if push_type == "voip":
                assert topic == self.BUNDLE + ".voip", topic
            else:
                assert push_type == "alert" and topic == self.BUNDLE, (push_type, topic)
            payload = json.loads(body)
            assert "aps" in payload
        except Exception as e:  # noqa: BLE001: reported to the test
            self.errors.append(repr(e))
            return 403, b'{"reason":"InvalidProviderToken"}'
        try:
            status, reply = self.answers.get_nowait()
        except queue.Empty:
            status, reply = 200, b""
        self.requests.put((status, {"token": token, "push_type": push_type, "topic": topic,
                                    "collapse_id": headers.get("apns-collapse-id"), "payload": payload}))
        return status, reply

    def next(self, timeout=60):
        return self.requests.get(timeout=timeout)

    def stop(self):
        self.sock.close()
