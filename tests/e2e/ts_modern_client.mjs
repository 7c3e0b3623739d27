#!/usr/bin/env node
// End-to-end client on the TypeScript SDK v2 (@modelcontextprotocol/client 2.4.x) for the
// 2026-07-28 stage (modern.sh).
//
// Usage: node ts_modern_client.mjs URL [--mode pin|auto|legacy] [--expect-version V]
//          [--expect-deny TOOL]... [--deny-code N] [--no-write] [--listen] [--trigger-url URL]
//          [--expect-list-scope SCOPE[:MAX_TTL_MS]]
//          [--dpop-issuer ISSUER_URL --dpop-client CLIENT_JSON [--expect-nonce]]
//
// --dpop-issuer: as ts_client.mjs, with dpop_client.mjs's code: a DPoP-bound token by
// client_credentials, then `Authorization: DPoP` and a fresh proof on every request to URL
// (a custom fetch under the transport's), one retry on 401 + DPoP-Nonce; --expect-nonce: the
// issuer and the MCP endpoint must each have asked for a nonce. The --trigger-url client
// sends no credentials.
//
// --mode: `pin` (default: versionNegotiation {mode: {pin: '2026-07-28'}}, no fallback),
// `auto` (probe server/discover, fall back to initialize) or `legacy` (the SDK default:
// plain initialize). Steps, like py_modern_client.py:
//   1. connect; print the negotiated protocol version and era; --expect-version V.
//      On 2026-07-28 every POST carries MCP-Protocol-Version 2026-07-28 and Mcp-Method,
//      no Mcp-Session-Id, no GET/DELETE.
//   2. tools/list lists read_file and hides every --expect-deny tool; --expect-list-scope
//      checks the raw result's cacheScope (and ttlMs <= MAX), read off the wire.
//   3. read_file {"path": "/workspace/readme.md"} (Mcp-Name read_file on 2026-07-28).
//   4. each --expect-deny TOOL: refused with a ProtocolError whose code is --deny-code
//      (default -31001 on 2026-07-28, -32001 on 2025-era) and whose message says "denied";
//      read_file works right after.
//   5. write_file (unless --no-write or denied): the SDK fulfils the server's
//      input_required form elicitation through the elicitation/create handler (accept
//      {confirm: true}, called once) and retries: two tools/call POSTs on 2026-07-28.
//   6. query_database {"query": "select 1", "region": "us"} (unless denied): on 2026-07-28 the
//      POST carried Mcp-Param-Region: us (the SDK mirrors x-mcp-header from tools/list).
//   7. --listen: client.listen({toolsListChanged: true}); add_tool on this connection (or on
//      --trigger-url); notifications/tools/list_changed within 10 s.
import { Client, StreamableHTTPClientTransport, ProtocolError } from '@modelcontextprotocol/client';
import { dpopSetup, describeToken, finishDpop } from './dpop_client.mjs';

const MODERN = '2026-07-28';
const READ_PATH = '/workspace/readme.md';
const WRITE_PATH = '/workspace/out.txt';
const DENY_ARGS = {
  read_file: { path: READ_PATH },
  write_file: { path: WRITE_PATH, content: 'x' },
  query_database: { query: 'select 1' },
  call_api: { endpoint: '/status' },
  execute_command: { command: 'id' },
  fetch_url: { url: 'https://evil.example/' },
};

const usage = () => {
  console.error('usage: ts_modern_client.mjs URL [--mode pin|auto|legacy] [--expect-version V] [--expect-deny TOOL]... ' +
    '[--deny-code N] [--no-write] [--listen] [--trigger-url URL] [--expect-list-scope SCOPE[:MAX_TTL_MS]] ' +
    '[--dpop-issuer ISSUER_URL --dpop-client CLIENT_JSON [--expect-nonce]]');
  process.exit(2);
};
const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [, value] = args.splice(i, 2);
  if (!value || value.startsWith('--')) usage();
  return value;
};
const options = (name) => { const out = []; let v; while ((v = option(name)) !== undefined) out.push(v); return out; };
const flag = (name) => { const i = args.indexOf(name); if (i >= 0) args.splice(i, 1); return i >= 0; };
const mode = option('--mode') ?? 'pin';
const expectVersion = option('--expect-version');
const expectDeny = options('--expect-deny');
const denyCodeOpt = option('--deny-code');
const noWrite = flag('--no-write');
const listen = flag('--listen');
const triggerUrl = option('--trigger-url');
const expectListScope = option('--expect-list-scope');
const dpopIssuer = option('--dpop-issuer');
const dpopClient = option('--dpop-client');
const expectNonce = flag('--expect-nonce');
const url = args[0];
if (!url || args.length !== 1 || !['pin', 'auto', 'legacy'].includes(mode)) usage();
if (!dpopIssuer !== !dpopClient || (expectNonce && !dpopIssuer)) usage();

const step = (msg) => console.log(`[tsmodern] ${msg}`);
class StepFailed extends Error {}
const check = (cond, msg) => { if (!cond) throw new StepFailed(msg); };
const negotiation = (m) => (m === 'pin' ? { mode: { pin: MODERN } } : { mode: m });

// Every HTTP exchange: request headers, the body's JSON-RPC method, the status, and for
// tools/list responses the raw cacheScope/ttlMs (the SDK's typed result may not keep them).
const exchanges = [];
const listHints = [];
// recording(baseFetch): a fetch recording each exchange, sent with baseFetch (plain, or DPoP's).
// The headers recorded are the SDK's (a DPoP fetch adds its own underneath).
const recording = (baseFetch) => async (input, init = {}) => {
  const headers = Object.fromEntries([...new Headers(init.headers).entries()]);
  let bodyMethod;
  try { bodyMethod = JSON.parse(init.body)?.method ?? '(response)'; } catch { bodyMethod = undefined; }
  const res = await baseFetch(input, init);
  exchanges.push({ url: String(input?.url ?? input), method: init.method ?? 'GET', status: res.status, headers, bodyMethod });
  if (bodyMethod === 'tools/list' && res.ok) {
    res.clone().text().then((text) => {
      for (const line of text.split(/\r?\n/)) {
        const json = line.startsWith('data:') ? line.slice(5) : line;
        try { const msg = JSON.parse(json); if (msg?.result?.tools) listHints.push({ cacheScope: msg.result.cacheScope, ttlMs: msg.result.ttlMs }); } catch { /* not JSON */ }
      }
    }, () => {});
  }
  return res;
};
const posts = (mcpMethod, name) => exchanges.filter((e) => e.method === 'POST' &&
  (mcpMethod === undefined || e.headers['mcp-method'] === mcpMethod) &&
  (name === undefined || e.headers['mcp-name'] === name));
const textOf = (res) => (res.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join(' ');

async function connect(target, negotiationMode, onElicit, baseFetch = fetch) {
  const client = new Client({ name: 'mcp-pep-e2e-ts-modern', version: '1.0.0' }, {
    capabilities: { elicitation: { form: {} } },
    versionNegotiation: negotiation(negotiationMode),
  });
  if (onElicit) client.setRequestHandler('elicitation/create', onElicit);
  const transport = new StreamableHTTPClientTransport(new URL(target), { fetch: recording(baseFetch) });
  await client.connect(transport);
  return client;
}

async function callText(client, tool, toolArgs, want, label) {
  const res = await client.callTool({ name: tool, arguments: toolArgs });
  const text = textOf(res);
  check(!res.isError, `${label}: isError: ${JSON.stringify(text)}`);
  check(text === want, `${label}: got ${JSON.stringify(text)}, want ${JSON.stringify(want)}`);
  step(`${label}: ok (${JSON.stringify(text)})`);
}

async function run() {
  const elicitations = [];
  let dpop;
  if (dpopIssuer) {
    dpop = await dpopSetup({ issuer: dpopIssuer, clientFile: dpopClient, resource: url });
    step(describeToken(dpop));
  }
  const client = await connect(url, mode, async (request) => {
    const message = request.params?.message ?? '';
    elicitations.push(message);
    step(`elicitation: ${JSON.stringify(message)} -> accept {confirm: true}`);
    return { action: 'accept', content: { confirm: true } };
  }, dpop?.fetch);
  const version = client.getNegotiatedProtocolVersion();
  const era = client.getProtocolEra();
  const modern = version === MODERN;
  step(`negotiated protocol version ${version} (era ${era}, mode ${mode}, server ${client.getServerVersion()?.name ?? '?'})`);
  step(`connect: POSTed ${JSON.stringify(exchanges.map((e) => e.bodyMethod))}`);
  if (expectVersion) check(version === expectVersion, `negotiated ${version}, want ${expectVersion}`);

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  check(names.includes('read_file'), `tools/list: no read_file in ${names}`);
  for (const tool of expectDeny) check(!names.includes(tool), `tools/list: ${tool} is listed but must be hidden`);
  await new Promise((r) => setTimeout(r, 50)); // the recorder reads the cloned body asynchronously
  const hint = listHints.at(-1) ?? {};
  step(`tools/list: ok (${names.length} tools, cacheScope ${hint.cacheScope}, ttlMs ${hint.ttlMs})`);
  if (expectListScope) {
    const [scope, maxTtl] = expectListScope.split(':');
    check(modern, '--expect-list-scope needs a 2026-07-28 connection');
    check(hint.cacheScope === scope, `tools/list: cacheScope ${hint.cacheScope}, want ${scope}`);
    if (maxTtl) check(Number.isInteger(hint.ttlMs) && hint.ttlMs >= 0 && hint.ttlMs <= Number(maxTtl),
      `tools/list: ttlMs ${hint.ttlMs}, want <= ${maxTtl}`);
  }

  await callText(client, 'read_file', { path: READ_PATH }, `contents of ${READ_PATH}`, 'read_file');
  if (modern) check(posts('tools/call', 'read_file').length > 0, 'read_file: no POST with Mcp-Method tools/call, Mcp-Name read_file');

  const denyCode = denyCodeOpt !== undefined ? Number(denyCodeOpt) : (modern ? -31001 : -32001);
  for (const tool of expectDeny) {
    let res;
    try {
      res = await client.callTool({ name: tool, arguments: DENY_ARGS[tool] ?? {} });
    } catch (e) {
      check(e instanceof ProtocolError, `deny ${tool}: not a ProtocolError: ${e?.constructor?.name}: ${e?.message}`);
      check(e.code === denyCode, `deny ${tool}: error code ${e.code}, want ${denyCode} (${e.message})`);
      check(e.message.includes('denied'), `deny ${tool}: message lacks 'denied': ${JSON.stringify(e.message)}`);
      step(`deny ${tool}: ok (${e.code} ${JSON.stringify(e.message)})`);
    }
    check(res === undefined, `deny ${tool}: not denied, got ${JSON.stringify(res)?.slice(0, 200)}`);
    await callText(client, 'read_file', { path: READ_PATH }, `contents of ${READ_PATH}`, `read_file after deny ${tool}`);
  }

  if (!noWrite && !expectDeny.includes('write_file')) {
    const before = posts('tools/call', 'write_file').length;
    await callText(client, 'write_file', { path: WRITE_PATH, content: 'hello' }, `wrote 5 bytes to ${WRITE_PATH}`, 'write_file');
    check(elicitations.length === 1, `write_file: ${elicitations.length} elicitations, want 1`);
    check(elicitations[0].includes(WRITE_PATH), `write_file: elicitation ${JSON.stringify(elicitations[0])}`);
    if (modern) {
      const rounds = posts('tools/call', 'write_file').length - before;
      check(rounds === 2, `write_file: ${rounds} tools/call POSTs, want 2 (input_required + retry)`);
    }
    step(modern ? 'write_file: MRTR elicitation round trip ok' : 'write_file: elicitation ok');
  }

  if (!expectDeny.includes('query_database')) {
    await callText(client, 'query_database', { query: 'select 1', region: 'us' }, 'rows for select 1 in us', 'query_database');
    if (modern) {
      const sent = posts('tools/call', 'query_database').at(-1);
      check(sent?.headers['mcp-param-region'] === 'us',
        `query_database: Mcp-Param-Region not sent as 'us' (${JSON.stringify(sent?.headers)})`);
      step('query_database: Mcp-Param-Region: us was sent');
    }
  }

  if (listen) {
    check(modern, '--listen needs a 2026-07-28 connection');
    const newTool = `dyn_${Math.random().toString(16).slice(2, 10)}`;
    let changed;
    const gotChange = new Promise((resolve) => { changed = resolve; });
    client.setNotificationHandler('notifications/tools/list_changed', () => changed(true));
    const sub = await client.listen({ toolsListChanged: true });
    step(`subscriptions/listen: acknowledged (honored ${JSON.stringify(sub.honoredFilter)})`);
    if (triggerUrl) {
      const trigger = await connect(triggerUrl, 'pin');
      await trigger.callTool({ name: 'add_tool', arguments: { name: newTool } });
      await trigger.close();
    } else {
      await client.callTool({ name: 'add_tool', arguments: { name: newTool } });
    }
    step(`add_tool ${newTool}: called${triggerUrl ? ` on ${triggerUrl}` : ''}`);
    const got = await Promise.race([gotChange, new Promise((r) => setTimeout(() => r(false), 10_000))]);
    check(got, 'subscriptions/listen: no notifications/tools/list_changed within 10 s');
    step('subscriptions/listen: notifications/tools/list_changed received');
    await sub.close();
    const after = (await client.listTools()).tools.map((t) => t.name);
    if (!triggerUrl) check(after.includes(newTool), `tools/list after list_changed: ${newTool} missing`);
    step(`tools/list after list_changed: ok (${after.length} tools, ${newTool} ${after.includes(newTool) ? 'listed' : 'not listed'})`);
  }
  await client.close();

  if (modern) {
    const mine = exchanges.filter((e) => e.url === url);
    const seen = [...new Set(mine.filter((e) => e.method === 'POST')
      .map((e) => `${e.bodyMethod}[Mcp-Method ${e.headers['mcp-method'] ?? 'absent'}]`))].sort();
    step(`POSTs seen: ${JSON.stringify(seen)}`);
    // Requests must carry Mcp-Method; a notification POST (the SDK's notifications/cancelled
    // when a listen is closed) need not: 2026-07-28 defines no header rules for those.
    const isNote = (e) => e.bodyMethod?.startsWith('notifications/');
    const bad = mine.filter((e) => e.method === 'POST' && (e.headers['mcp-protocol-version'] !== MODERN || (!isNote(e) && !e.headers['mcp-method'])));
    check(bad.length === 0, `modern POSTs without MCP-Protocol-Version ${MODERN} or (requests) Mcp-Method: ${JSON.stringify(bad.slice(0, 2))}`);
    check(!mine.some((e) => e.headers['mcp-session-id']), 'modern: an Mcp-Session-Id was sent');
    check(!mine.some((e) => e.method !== 'POST'), `modern: a ${mine.find((e) => e.method !== 'POST')?.method} was sent`);
    step('headers: ok (every POST had MCP-Protocol-Version 2026-07-28, every request Mcp-Method, no session id)');
  } else {
    check(exchanges.some((e) => e.bodyMethod === 'initialize'), 'legacy: no initialize was sent');
  }
  if (dpop) step(finishDpop(dpop, expectNonce));
}

const timeout = setTimeout(() => { console.error('[tsmodern] FAIL: timed out after 60s'); process.exit(1); }, 60_000);
try {
  await run();
  step('all steps passed');
  clearTimeout(timeout);
  process.exit(0);
} catch (e) {
  const detail = e instanceof StepFailed ? e.message
    : `${e?.name}: ${e?.message}${e?.code !== undefined ? ` (code ${e.code})` : ''}${e?.cause ? ` (cause: ${e.cause.message ?? e.cause})` : ''}`;
  console.error(`[tsmodern] FAIL: ${detail}`);
  process.exit(1);
}
