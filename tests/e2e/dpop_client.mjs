#!/usr/bin/env node
// DPoP for the e2e clients (RFC 9449), on panva's `dpop` and `jose`:
//
//   obtainToken(): a DPoP-bound access token by client_credentials from the issuer that
//     issuer.mjs runs: OIDC discovery for the token endpoint, client authentication by
//     private_key_jwt (a fresh jti per assertion), a DPoP proof for the token request,
//     one retry when the issuer answers `use_dpop_nonce` with a `DPoP-Nonce`.
//   dpopFetch(): a fetch that signs a fresh proof per request (htm, htu = the URL
//     without query and fragment, ath, the last nonce the server gave) and sends
//     `Authorization: DPoP <token>`; on a 401 carrying `DPoP-Nonce` it retries once
//     with that nonce. Stats say how many nonce retries happened.
//
// As a command (for run.sh's curl checks):
//   node dpop_client.mjs mint ISSUER_URL CLIENT_JSON URL [METHOD]
// prints one JSON line: { token, jkt, ath, proof, other_proof }: a token (for the
// resource named in CLIENT_JSON, else URL) bound to a fresh key, a proof by that key for
// METHOD (default POST) URL with ath, and a proof for the same request signed by another
// key (so it does not match the token's cnf.jkt).
import fs from 'node:fs';
import crypto from 'node:crypto';
import * as DPoP from 'dpop';
import { SignJWT, importJWK } from 'jose';
import { recordSecret } from './secrets_log.mjs';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** The request URL as `htu`: no query, no fragment (RFC 9449 §4.2). */
export function htuOf(url) {
  const u = new URL(url);
  u.search = '';
  u.hash = '';
  return u.href;
}

export function loadClient(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

async function discover(issuer) {
  const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`discovery at ${issuer}: HTTP ${res.status}`);
  const meta = await res.json();
  if (meta.issuer !== issuer) throw new Error(`discovery: issuer ${meta.issuer} != ${issuer}`);
  return meta;
}

async function clientAssertion(client, issuer) {
  const key = await importJWK(client.client_jwk, client.client_alg);
  const now = Math.floor(Date.now() / 1000);
  recordSecret('client_key_d', client.client_jwk.d);
  const assertion = await new SignJWT({})
    .setProtectedHeader({ alg: client.client_alg, kid: client.client_jwk.kid })
    .setIssuer(client.client_id)
    .setSubject(client.client_id)
    .setAudience(issuer)
    .setJti(crypto.randomUUID()) // fresh per assertion: the issuer refuses a reused one
    .setIssuedAt(now)
    .setExpirationTime(now + 60)
    .sign(key);
  recordSecret('client_assertion', assertion);
  return assertion;
}

/** A proof by `keypair` (the dpop package's keys are not extractable: only proofs are recorded). */
async function proof(keypair, htu, method, nonce, token) {
  const signed = await DPoP.generateProof(keypair, htu, method, nonce, token);
  recordSecret('dpop_proof', signed);
  return signed;
}

/**
 * A DPoP-bound access token for `resource`, bound to `keypair`.
 * Returns { token, tokenType, expiresIn, nonceRetries }.
 */
export async function obtainToken({ issuer, client, resource, keypair }) {
  const meta = await discover(issuer);
  const endpoint = meta.token_endpoint;
  let nonce;
  for (let attempt = 0; attempt < 2; attempt++) {
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: client.client_id,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion(client, meta.issuer),
      resource,
      scope: client.scope ?? 'mcp',
    });
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        dpop: await proof(keypair, endpoint, 'POST', nonce),
      },
      body,
    });
    const json = await res.json().catch(() => ({}));
    const serverNonce = res.headers.get('dpop-nonce');
    if (res.status === 400 && json.error === 'use_dpop_nonce' && serverNonce && attempt === 0) {
      nonce = serverNonce;
      continue;
    }
    if (!res.ok) throw new Error(`token endpoint: HTTP ${res.status} ${JSON.stringify(json)}`);
    if (json.token_type !== 'DPoP') throw new Error(`token endpoint: token_type ${json.token_type}, want DPoP`);
    recordSecret('access_token', json.access_token);
    return { token: json.access_token, tokenType: json.token_type, expiresIn: json.expires_in, nonceRetries: attempt };
  }
  throw new Error('token endpoint: use_dpop_nonce twice');
}

/**
 * A fetch that adds `Authorization: DPoP <token>` and a fresh proof to every request.
 * `stats.nonceRetries` counts 401+DPoP-Nonce retries, `stats.requests` every request.
 */
export function dpopFetch({ token, keypair, baseFetch = fetch, stats = { requests: 0, nonceRetries: 0 } }) {
  let nonce; // the last DPoP-Nonce the server gave (RFC 9449 §8.2: any response may carry one)
  const wrapped = async (input, init = {}) => {
    const url = input instanceof Request ? input.url : String(input);
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const send = async () => {
      const headers = new Headers(init.headers);
      headers.set('authorization', `DPoP ${token}`);
      headers.set('dpop', await proof(keypair, htuOf(url), method, nonce, token));
      stats.requests++;
      const res = await baseFetch(input, { ...init, headers });
      const fresh = res.headers.get('dpop-nonce');
      if (fresh) nonce = fresh;
      return { res, fresh };
    };
    const first = await send();
    if (first.res.status === 401 && first.fresh) {
      stats.nonceRetries++;
      await first.res.body?.cancel();
      return (await send()).res;
    }
    return first.res;
  };
  wrapped.stats = stats;
  return wrapped;
}

/** Everything a client needs: key, token, fetch. */
export async function dpopSetup({ issuer, clientFile, resource, baseFetch = fetch }) {
  const client = loadClient(clientFile);
  const keypair = await DPoP.generateKeyPair('ES256');
  const got = await obtainToken({ issuer, client, resource, keypair });
  const stats = { requests: 0, nonceRetries: 0, tokenNonceRetries: got.nonceRetries };
  return { ...got, keypair, jkt: await DPoP.calculateThumbprint(keypair.publicKey), fetch: dpopFetch({ token: got.token, keypair, baseFetch, stats }), stats };
}

/** The line a client prints once it has its token. */
export function describeToken(dpop) {
  return `token: ok (${dpop.tokenType}, bound to jkt ${dpop.jkt}, ` +
    `${dpop.stats.tokenNonceRetries} nonce retries at the token endpoint)`;
}

/**
 * The run's DPoP summary line; with expectNonce, throws unless the issuer and the MCP
 * endpoint each asked for a nonce (nonce mode was exercised, not bypassed).
 */
export function finishDpop(dpop, expectNonce) {
  const { requests, nonceRetries, tokenNonceRetries } = dpop.stats;
  if (expectNonce && !(tokenNonceRetries > 0)) throw new Error('DPoP: the issuer never asked for a nonce');
  if (expectNonce && !(nonceRetries > 0)) throw new Error('DPoP: the MCP endpoint never asked for a nonce');
  return `DPoP: ok (${requests} proofs signed, ${nonceRetries} use_dpop_nonce retries at the MCP endpoint)`;
}

async function mint([issuer, clientFile, url, method = 'POST']) {
  if (!issuer || !clientFile || !url) {
    console.error('usage: dpop_client.mjs mint ISSUER_URL CLIENT_JSON URL [METHOD]');
    process.exit(2);
  }
  const client = loadClient(clientFile);
  const keypair = await DPoP.generateKeyPair('ES256');
  const { token } = await obtainToken({ issuer, client, resource: client.resource ?? url, keypair });
  const other = await DPoP.generateKeyPair('ES256');
  const htu = htuOf(url);
  console.log(JSON.stringify({
    token,
    jkt: await DPoP.calculateThumbprint(keypair.publicKey),
    ath: b64url(crypto.createHash('sha256').update(token).digest()),
    proof: await proof(keypair, htu, method, undefined, token),
    other_proof: await proof(other, htu, method, undefined, token),
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd !== 'mint') {
    console.error('usage: dpop_client.mjs mint ISSUER_URL CLIENT_JSON URL [METHOD]');
    process.exit(2);
  }
  await mint(rest);
}
