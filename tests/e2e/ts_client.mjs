#!/usr/bin/env node
// End-to-end MCP client on the official TypeScript SDK (@modelcontextprotocol/sdk).
//
// Usage: node ts_client.mjs URL [--expect-deny TOOL]
//          [--dpop-issuer ISSUER_URL --dpop-client CLIENT_JSON [--expect-nonce]]
//
// With --dpop-issuer the client first obtains a DPoP-bound access token by
// client_credentials from ISSUER_URL (client from CLIENT_JSON, written by issuer.mjs;
// resource = URL), then every request to URL carries `Authorization: DPoP <token>` and a
// fresh DPoP proof (htm, htu = URL, ath), through a custom fetch given to
// StreamableHTTPClientTransport (dpop_client.mjs); a 401 with `DPoP-Nonce` is retried
// once with the nonce. --expect-nonce: the issuer and the MCP endpoint must each have
// asked for a nonce at least once (proves nonce mode was exercised, not bypassed).
//
// Steps: initialize, tools/list (must list `echo`, must not list the denied tool), call `echo`, wait for the GET SSE
// stream the SDK opens after initialize, optionally call TOOL and require the proxy's
// policy denial (McpError -32001, message containing "denied"), call `echo` again
// (session still usable), terminateSession() (DELETE, must be answered 2xx), and check
// the session is then gone. Exit 0 on success, 1 with a message on the first failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { dpopSetup, describeToken, finishDpop } from './dpop_client.mjs';

const usage = () => {
  console.error('usage: ts_client.mjs URL [--expect-deny TOOL] [--dpop-issuer ISSUER_URL --dpop-client CLIENT_JSON [--expect-nonce]]');
  process.exit(2);
};
const args = process.argv.slice(2);
// option(NAME): the value after --NAME (removed from args), undefined if absent.
const option = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [, value] = args.splice(i, 2);
  if (!value || value.startsWith('--')) usage();
  return value;
};
const flag = (name) => {
  const i = args.indexOf(name);
  if (i >= 0) args.splice(i, 1);
  return i >= 0;
};
const denyTool = option('--expect-deny');
const dpopIssuer = option('--dpop-issuer');
const dpopClient = option('--dpop-client');
const expectNonce = flag('--expect-nonce');
const url = args[0];
if (!url || args.length !== 1 || !dpopIssuer !== !dpopClient || (expectNonce && !dpopIssuer)) usage();

const step = (msg) => console.log(`[ts] ${msg}`);
class StepFailed extends Error {}
const check = (cond, msg) => { if (!cond) throw new StepFailed(msg); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every HTTP exchange the SDK makes, recorded by wrapping fetch. fetch resolves once
// the headers arrive, so the long-lived GET stream is recorded too. The SDK treats a
// 405 on DELETE as success, so we look at the real status ourselves.
const exchanges = [];
// The fetch under the recorder: plain, or signing DPoP proofs (set up in run()).
let baseFetch = fetch;
let dpop;
const recordingFetch = async (input, init = {}) => {
  const res = await baseFetch(input, init);
  const reqHeaders = new Headers(init.headers);
  exchanges.push({
    method: init.method ?? 'GET',
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    sessionId: reqHeaders.get('mcp-session-id'),
  });
  return res;
};
const seen = (method) => exchanges.filter((e) => e.method === method);

async function callEcho(client, label) {
  const res = await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
  const texts = res.content.filter((c) => c.type === 'text').map((c) => c.text);
  check(!res.isError, `${label}: echo returned isError: ${JSON.stringify(texts)}`);
  // server-everything answers "Echo: hi"; only require that our text came back.
  check(texts.some((t) => t.includes('hi')), `${label}: echo text not returned: ${JSON.stringify(texts)}`);
  step(`${label}: ok (${JSON.stringify(texts[0])})`);
}

async function run() {
  if (dpopIssuer) {
    dpop = await dpopSetup({ issuer: dpopIssuer, clientFile: dpopClient, resource: url });
    baseFetch = dpop.fetch;
    step(describeToken(dpop));
  }
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: recordingFetch });
  // Reported, not fatal: the SDK also routes recoverable stream errors here.
  transport.onerror = (err) => step(`transport error: ${err?.message ?? err}`);
  const client = new Client({ name: 'mcp-pep-e2e-ts', version: '1.0.0' });

  await client.connect(transport);
  const sid = transport.sessionId;
  check(!!sid, 'initialize: the server issued no Mcp-Session-Id');
  check(seen('POST')[0]?.sessionId === null, 'initialize POST must not carry a session id');
  const info = client.getServerVersion();
  step(`initialize: ok (protocol ${transport.protocolVersion}, server ${info?.name})`);

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  check(names.includes('echo'), `tools/list: no echo in ${names}`);
  // The proxy filters the list: a tool the caller may not call is not shown.
  check(!denyTool || !names.includes(denyTool), `tools/list: ${denyTool} is listed but must be hidden`);
  step(`tools/list: ok (${names.length} tools)`);

  await callEcho(client, 'tools/call echo');

  // The SDK opens GET /mcp (SSE) once notifications/initialized is answered 202.
  for (let i = 0; i < 100 && seen('GET').length === 0; i++) await sleep(50);
  const get = seen('GET')[0];
  check(!!get, 'GET SSE stream: the SDK never opened it');
  check(get.status === 200 && get.contentType.startsWith('text/event-stream'),
    `GET SSE stream: got ${get.status} ${JSON.stringify(get.contentType)}`);
  check(get.sessionId === sid, `GET SSE stream: session id ${get.sessionId} != ${sid}`);
  step(`GET SSE stream: ok (${get.status} ${get.contentType})`);

  if (denyTool) {
    let res;
    try {
      res = await client.callTool({ name: denyTool, arguments: {} });
    } catch (e) {
      check(e instanceof McpError, `deny ${denyTool}: not an McpError: ${e?.constructor?.name}: ${e?.message}`);
      check(e.code === -32001, `deny ${denyTool}: error code ${e.code}, want -32001 (${e.message})`);
      check(e.message.includes('denied'), `deny ${denyTool}: message lacks 'denied': ${JSON.stringify(e.message)}`);
      step(`deny ${denyTool}: ok (${e.code} ${JSON.stringify(e.message)})`);
    }
    check(res === undefined, `deny ${denyTool}: not denied, got a result: ${JSON.stringify(res)?.slice(0, 200)}`);
    await callEcho(client, 'tools/call echo after deny');
  }

  await transport.terminateSession();
  const del = seen('DELETE')[0];
  check(!!del, 'DELETE: terminateSession() sent nothing');
  check(del.sessionId === sid, `DELETE: session id ${del.sessionId} != ${sid}`);
  check(del.status >= 200 && del.status < 300, `DELETE: status ${del.status}`);
  step(`DELETE: ok (${del.status})`);
  await client.close();

  // The terminated session must be refused now (spec: 404; server-everything: 400).
  // With DPoP the request is authenticated, so the refusal is the session's, not a 401.
  const after = await baseFetch(url, {
    method: 'POST',
    headers: {
      accept: 'application/json, text/event-stream', 'content-type': 'application/json',
      'mcp-session-id': sid, 'mcp-protocol-version': transport.protocolVersion ?? '2025-11-25',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' }),
  });
  await after.body?.cancel();
  check(after.status >= 400 && after.status < 500, `after DELETE: session still answers (${after.status})`);
  check(!dpop || after.status !== 401, 'after DELETE: 401, the credentials were refused');
  step(`after DELETE: session refused (${after.status})`);

  if (dpop) step(finishDpop(dpop, expectNonce));
}

// Bound the whole run: a hung proxy must fail the test, not stall CI.
const timeout = setTimeout(() => { console.error('[ts] FAIL: timed out after 60s'); process.exit(1); }, 60_000);
try {
  await run();
  step('all steps passed');
  clearTimeout(timeout);
  process.exit(0);
} catch (e) {
    const detail = e instanceof StepFailed ? e.message
    : `${e?.name}: ${e?.message}${e?.cause ? ` (cause: ${e.cause.message ?? e.cause})` : ''}`;
  console.error(`[ts] FAIL: ${detail}`);
  process.exit(1);
}
