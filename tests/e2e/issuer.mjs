#!/usr/bin/env node
// A real OAuth 2.0 authorization server for the credentials e2e: oidc-provider
// (OpenID-certified) issuing DPoP-bound JWT access tokens by client_credentials.
//
// Usage: node issuer.mjs PORT RESOURCE_URL OUTFILE [--nonce]
//
//   - issuer http://127.0.0.1:PORT (discovery at /.well-known/openid-configuration,
//     keys at its jwks_uri), listening on 127.0.0.1 only;
//   - one ES256 signing key (generated per run), so access tokens are ES256 JWTs with
//     header typ "at+jwt", aud = RESOURCE_URL, cnf.jkt = the client's DPoP key thumbprint;
//   - features: clientCredentials, dPoP (--nonce: every token request must carry a
//     server nonce, RFC 9449 §8), resourceIndicators (the only resource is RESOURCE_URL,
//     which is also the default, scope "mcp");
//   - one client authenticating with private_key_jwt (RFC 7523; ES256; each assertion
//     needs a fresh jti, which oidc-provider enforces), DPoP-bound tokens required.
//
// Writes OUTFILE (JSON, written atomically once the server listens):
//   { issuer, token_endpoint, resource, scope, client_id, client_auth: "private_key_jwt",
//     client_jwk (private, ES256, with kid), client_alg, dpop_nonce }
// and serves until killed. Each token issued is logged to stdout (no secrets: jti, jkt).
import fs from 'node:fs';
import http from 'node:http';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';
import { recordSecret } from './secrets_log.mjs';

const argv = process.argv.slice(2);
const nonceIdx = argv.indexOf('--nonce');
const nonce = nonceIdx >= 0;
if (nonce) argv.splice(nonceIdx, 1);
const [portArg, resource, outfile] = argv;
if (!portArg || !resource || !outfile || argv.length !== 3) {
  console.error('usage: issuer.mjs PORT RESOURCE_URL OUTFILE [--nonce]');
  process.exit(2);
}
const port = Number(portArg);
const issuer = `http://127.0.0.1:${port}`;
const scope = 'mcp';

async function privateJwk(kid) {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
}
const publicPart = ({ d, ...pub }) => pub;

const signingKey = await privateJwk(`as-${crypto.randomUUID()}`);
const clientKey = await privateJwk(`client-${crypto.randomUUID()}`);
recordSecret('issuer_key_d', signingKey.d);
recordSecret('client_key_d', clientKey.d);
const clientId = `mcp-e2e-agent-${crypto.randomUUID().slice(0, 8)}`;

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  clients: [{
    client_id: clientId,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: { keys: [publicPart(clientKey)] },
    // The provider has only an EC key: the default RS256 would find none.
    id_token_signed_response_alg: 'ES256',
    dpop_bound_access_tokens: true,
    scope,
  }],
  scopes: ['openid', scope],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: {
      enabled: true,
      ...(nonce ? { nonceSecret: crypto.randomBytes(32), requireNonce: () => true } : {}),
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          scope,
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  ttl: { ClientCredentials: 600 },
});

// JWT access tokens are not stored, so the model emits `issued`, not `saved`.
provider.on('client_credentials.issued', (token) => {
  console.log(`issued ${token.jti} for ${token.clientId} jkt=${token.jkt ?? '-'} aud=${token.aud ?? '-'}`);
});
provider.on('grant.error', (ctx, err) => {
  console.log(`token request refused: ${err.error ?? err.name}: ${err.error_description ?? err.message}`);
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = http.createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  const out = {
    issuer,
    token_endpoint: `${issuer}/token`,
    resource,
    scope,
    client_id: clientId,
    client_auth: 'private_key_jwt',
    client_alg: 'ES256',
    client_jwk: clientKey,
    dpop_nonce: nonce,
  };
  fs.writeFileSync(`${outfile}.tmp`, JSON.stringify(out, null, 2));
  fs.renameSync(`${outfile}.tmp`, outfile);
  console.log(`issuer ${issuer} (resource ${resource}, nonce ${nonce}) client ${clientId} -> ${outfile}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
