"""OAuth 2.0 authorization server (authlib), for consumers' apps.

Files: `models.py` (apps, grants, codes, tokens, signing keys), `service.py` (apps, scope policy,
grants, revocation), `server.py` (authlib wiring and how its sync code stays off the loop),
`tokens.py` (RFC 9068 JWTs: signing and the gateway's DB-free `verify_access_token`, the Redis
deny-list key), `keys.py` (the RS256 key set: rotation, JWKS, key ring refresh), `routes.py`
(/v1/apps, /v1/oauth/grants, /oauth/*, /.well-known/*), `tasks.py` (key rotation, purges).

Endpoints: `/.well-known/oauth-authorization-server` (RFC 8414), `GET/POST /oauth/authorize`
(login redirect, consent page), `POST /oauth/token` (authorization_code + PKCE S256,
refresh_token with rotation and reuse detection, client_credentials), `POST /oauth/revoke`
(RFC 7009), `POST /oauth/introspect` (RFC 7662), `GET /oauth/jwks` (= `/.well-known/jwks.json`).

Walk-through (confidential app, PKCE)::

    TOKEN=$(curl -s localhost:8000/v1/login -H 'content-type: application/json' \\
            -d '{"email":"me@example.com","password":"…"}' | jq -r .token)
    curl -s localhost:8000/v1/apps -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
         -d '{"name":"My app","redirect_uris":["http://127.0.0.1:9000/cb"]}'
    # → {"client_id":"app_…","client_secret":"mcs_…",…}   (the secret is shown once)
    VERIFIER=$(python -c 'import secrets;print(secrets.token_urlsafe(48))')
    CHALLENGE=$(printf %s "$VERIFIER" | openssl dgst -sha256 -binary | basenc --base64url | tr -d =)
    # open in a browser, log in, press Allow; you land on http://127.0.0.1:9000/cb?code=…&state=xyz
    echo "http://localhost:8000/oauth/authorize?response_type=code&client_id=$CLIENT_ID&redirect_uri=http://127.0.0.1:9000/cb&scope=weather:read&state=xyz&code_challenge=$CHALLENGE&code_challenge_method=S256"
    curl -s localhost:8000/oauth/token -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=authorization_code \\
         -d code=$CODE -d redirect_uri=http://127.0.0.1:9000/cb -d code_verifier=$VERIFIER
    # → {"access_token":"eyJ…","token_type":"Bearer","expires_in":600,"scope":"weather:read","refresh_token":"mrt_…"}
    curl -s localhost:8000/gateway/weather/forecast/paris -H "authorization: Bearer $ACCESS_TOKEN"
"""
