#!/usr/bin/env node
// Test double for mcp-pep's deny path, used only to check the harness itself
// (selftest.sh): a pass-through HTTP proxy to UPSTREAM that answers a tools/call
// of DENY_TOOL exactly as mcp-pep does (HTTP 200, application/json, same id,
// error -32001 "denied by policy: ... (decision <id>)", data.decision_id).
// It also logs each request's method and MCP headers to stderr.
//
// Usage: node deny_shim.mjs PORT UPSTREAM_URL DENY_TOOL
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const [port, upstreamUrl, denyTool] = process.argv.slice(2);
const upstream = new URL(upstreamUrl);

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const h = req.headers;
    console.error(`${req.method} accept=${h.accept} session=${h['mcp-session-id'] ?? '-'} ` +
      `version=${h['mcp-protocol-version'] ?? '-'} last-event-id=${h['last-event-id'] ?? '-'}`);
    let msg;
    try { msg = req.method === 'POST' ? JSON.parse(body) : undefined; } catch { /* forward as is */ }
    if (msg?.method === 'tools/call' && msg.params?.name === denyTool) {
      const decision = randomUUID();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        jsonrpc: '2.0', id: msg.id,
        error: { code: -32001, message: `denied by policy: tool ${denyTool} (decision ${decision})`,
          data: { decision_id: decision } },
      }));
      return;
    }
    const up = http.request({
      host: upstream.hostname, port: upstream.port, path: upstream.pathname + upstream.search,
      method: req.method, headers: { ...h, host: upstream.host },
    }, (upRes) => {
      res.writeHead(upRes.statusCode, upRes.headers);
      // Send the headers now: an idle GET SSE stream has no body bytes yet, and
      // the SDK clients wait for the headers before they count the stream open.
      res.flushHeaders();
      upRes.pipe(res); // streams SSE as it comes
    });
    up.on('error', (e) => { if (!res.headersSent) res.writeHead(502); res.end(String(e)); });
    res.on('close', () => up.destroy()); // client went away: drop the upstream stream too
    up.end(body);
  });
}).listen(Number(port), '127.0.0.1');
