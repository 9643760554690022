"""OAuth 2.1 resource server: JWTs from a real local JWKS endpoint, RFC 9728 metadata, challenges."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mcp_api.app import create_app
from mcp_api.auth.oauth import OAuthConfigError, OAuthVerifier
from mcp_api.security.config import OAuthSettings
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp

pytestmark = pytest.mark.anyio

PUBLIC = "https://mcp.example.com"
RESOURCE = f"{PUBLIC}/mcp"
METADATA = f"{PUBLIC}/.well-known/oauth-protected-resource/mcp"


class Issuer:
    """A JWKS endpoint on loopback (real HTTP) and a signer for its keys."""

    def __init__(self) -> None:
        self.keys: dict[str, object] = {}
        self.hits = 0
        self.add_key("k1")
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                issuer.hits += 1
                jwks = {"keys": [issuer.public_jwk(kid) for kid in issuer.keys]}
                body = json.dumps(jwks).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = f"{self.url}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_key(self, kid: str, kind: str = "rsa") -> None:
        self.keys[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )

    def public_jwk(self, kid: str) -> dict:
        key = self.keys[kid]
        algorithm = (
            jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
        )
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        return jwk | {"kid": kid, "use": "sig"}

    def token(self, *, kid: str = "k1", key=None, alg: str | None = None, **overrides) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": RESOURCE, "sub": "user-1", "iat": now, "exp": now + 300,
                  "scope": "files:read files:write", "tenant": "acme"} | overrides  # fmt: skip
        claims = {k: v for k, v in claims.items() if v is not None}
        signing = key or self.keys[kid]
        alg = alg or ("RS256" if isinstance(signing, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(claims, signing, algorithm=alg, headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def issuer():
    server = Issuer()
    yield server
    server.close()


@pytest.fixture
def settings(tmp_path, issuer) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        dev_api_key=TEST_KEY,
        public_url=PUBLIC,
        oauth={"issuer": issuer.issuer, "jwks_url": issuer.url, "scope_map": {"mcp:write": "files:write"},
               "jwks_min_refresh_s": 1},
    )  # fmt: skip


@pytest.fixture
async def http(settings):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost:8080", timeout=30
        ) as client:
            yield client


async def test_protected_resource_metadata(http, issuer):
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        response = await http.get(path, headers={"origin": "https://claude.ai"})
        assert response.status_code == 200
        body = response.json()
        assert body["resource"] == RESOURCE  # the public https URL, whatever Host the proxy used
        assert body["authorization_servers"] == [issuer.issuer]
        assert {"files:read", "files:write", "exec", "mcp:write"} <= set(body["scopes_supported"])
        assert body["bearer_methods_supported"] == ["header"]
        assert response.headers["access-control-allow-origin"] == "*"


async def test_challenge_points_to_the_metadata(http):
    response = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                               headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and f'resource_metadata="{METADATA}"' in challenge


async def test_valid_token_acts_for_the_tenant_in_its_claim(http, issuer, settings):
    client = Mcp(http=http, key=issuer.token())
    assert "result" in await client.request("tools/list")
    result = await client.call("write_file", path="hello.txt", content="from oauth")
    assert not result.get("isError"), result
    assert (settings.workspaces_dir / "acme" / "default" / "hello.txt").read_text() == "from oauth"


async def test_api_keys_keep_working_beside_oauth(http):
    assert "result" in await Mcp(http=http, key=TEST_KEY).request("tools/list")


@pytest.mark.parametrize(
    "case",
    ["expired", "wrong_audience", "wrong_issuer", "bad_signature", "alg_none", "hs256_with_public_key",
     "unknown_kid", "no_exp", "bad_tenant", "garbage", "not_yet_valid"],
)  # fmt: skip
async def test_bad_tokens_are_refused(http, issuer, case):
    now = int(time.time())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = {
        "expired": lambda: issuer.token(exp=now - 120, iat=now - 600),
        "wrong_audience": lambda: issuer.token(aud="https://other.example.com/mcp"),
        "wrong_issuer": lambda: issuer.token(iss="https://evil.example.com/"),
        "bad_signature": lambda: issuer.token(key=other),  # right kid, wrong key
        "alg_none": lambda: jwt.encode(
            {"iss": issuer.issuer, "aud": RESOURCE, "exp": now + 60, "tenant": "acme", "scope": "files:read"},
            None,
            algorithm="none",
        ),  # fmt: skip
        "hs256_with_public_key": lambda: _hs256_confusion(issuer),
        "unknown_kid": lambda: issuer.token(kid="nope", key=other),
        "no_exp": lambda: issuer.token(exp=None),
        "bad_tenant": lambda: issuer.token(tenant="../other"),
        "garbage": lambda: "not.a.jwt",
        "not_yet_valid": lambda: issuer.token(nbf=now + 600),
    }[case]()
    response = await Mcp(http=http, key=token).post("tools/list")
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def _hs256_confusion(issuer: Issuer) -> str:
    # The classic algorithm-confusion attack: HMAC keyed with the issuer's public key.
    from cryptography.hazmat.primitives import serialization

    pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = {
        "iss": issuer.issuer,
        "aud": RESOURCE,
        "exp": int(time.time()) + 60,
        "tenant": "acme",
        "scope": "files:read",
    }
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_scopes_limit_tools(http, issuer):
    reader = Mcp(http=http, key=issuer.token(scope="files:read"))
    denied = await reader.call("write_file", path="x.txt", content="no")
    assert denied["isError"] and "'files:write' scope" in denied["content"][0]["text"]
    mapped = Mcp(http=http, key=issuer.token(scope="mcp:write", scp=["files:read"]))
    assert not (await mapped.call("write_file", path="x.txt", content="yes")).get("isError")
    none = await Mcp(http=http, key=issuer.token(scope="openid profile")).post("tools/list")
    assert none.status_code == 403 and 'error="insufficient_scope"' in none.headers["www-authenticate"]


async def test_key_rotation_is_picked_up_and_refetches_are_throttled(http, issuer):
    await Mcp(http=http, key=issuer.token()).request("tools/list")  # keys fetched now
    kid = f"rot-{uuid.uuid4().hex[:6]}"
    issuer.add_key(kid, "ec")
    before = issuer.hits
    rotated = Mcp(http=http, key=issuer.token(kid=kid))
    # Within jwks_min_refresh_s (1 s here) of the last fetch an unknown kid is refused without a refetch ...
    assert (await rotated.post("tools/list")).status_code == 401
    assert issuer.hits == before
    await anyio.sleep(1.1)
    # ... after it, the rotated key is fetched once and accepted.
    assert (await rotated.post("tools/list")).status_code == 200
    assert issuer.hits - before == 1
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(20):  # random kids do not turn into 20 JWKS fetches
        bad = Mcp(http=http, key=issuer.token(kid=f"random-{i}", key=other))
        assert (await bad.post("tools/list")).status_code == 401
    assert issuer.hits - before <= 2


def test_configuration_errors_are_explained():
    good = OAuthSettings(issuer="https://auth.example.com/", jwks_url="https://auth.example.com/jwks")
    with pytest.raises(OAuthConfigError, match="PUBLIC_URL"):
        OAuthVerifier(good, None)
    with pytest.raises(OAuthConfigError, match="must be https"):
        OAuthVerifier(good, "http://mcp.example.com")
    with pytest.raises(OAuthConfigError, match="JWKS_URL must be https"):
        OAuthVerifier(OAuthSettings(issuer="x", jwks_url="http://auth.example.com/jwks"), PUBLIC)
    with pytest.raises(OAuthConfigError, match="not allowed"):
        OAuthVerifier(good.model_copy(update={"algorithms": ["HS256"]}), PUBLIC)
    assert OAuthVerifier(good, "http://localhost:8080").resource == "http://localhost:8080/mcp"


async def test_diagnostics_accept_an_admin_token(http, issuer):
    assert (
        await http.get("/diagnostics", headers={"authorization": f"Bearer {issuer.token()}"})
    ).status_code == 403
    admin = issuer.token(scope="admin")
    response = await http.get("/diagnostics", headers={"authorization": f"Bearer {admin}"})
    assert response.status_code == 200 and response.json()["settings"]["oauth"]["issuer"] == issuer.issuer
