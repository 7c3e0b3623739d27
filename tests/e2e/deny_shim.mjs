#!/usr/bin/env node
// Test double for mcp-pep's deny path, used only to check the harness itself
// (selftest.sh): a pass-through HTTP proxy to UPSTREAM that answers a tools/call
// of DENY_TOOL exactly as mcp-pep does (HTTP 200, application/json, same id,
// error -32001 "denied by policy: ... (decision <id>)", data.decision_id), and
// hides DENY_TOOL from tools/list answers (JSON or SSE), as mcp-pep's list filter does.
// It also logs each request's method and MCP headers to stderr, and whether
// credentials (Authorization, DPoP) reached it.
//
// Usage: node deny_shim.mjs PORT UPSTREAM_URL DENY_TOOL
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const [port, upstreamUrl, denyTool] = process.argv.slice(2);
const upstream = new URL(upstreamUrl);

// hideTool(TEXT): a tools/list answer (a JSON body or SSE `data:` lines) without DENY_TOOL.
function hideTool(text) {
  const filter = (json) => {
    try {
      const m = JSON.parse(json);
      if (Array.isArray(m?.result?.tools)) m.result.tools = m.result.tools.filter((t) => t.name !== denyTool);
      return JSON.stringify(m);
    } catch { return json; }
  };
  if (!/^(event|data|id|retry):/m.test(text)) return filter(text);
  return text.split('\n').map((line) => (line.startsWith('data:') ? `data: ${filter(line.slice(5).trim())}` : line)).join('\n');
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const h = req.headers;
    console.error(`${req.method} accept=${h.accept} session=${h['mcp-session-id'] ?? '-'} ` +
      `version=${h['mcp-protocol-version'] ?? '-'} last-event-id=${h['last-event-id'] ?? '-'} ` +
      `authorization=${h.authorization ? 'present' : '-'} dpop=${h.dpop ? 'present' : '-'}`);
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
      if (msg?.method === 'tools/list') {
        // A list answer is short and ends: read it whole, drop DENY_TOOL, send it on.
        const parts = [];
        upRes.on('data', (c) => parts.push(c));
        upRes.on('end', () => {
          const { 'content-length': _, ...headers } = upRes.headers;
          res.writeHead(upRes.statusCode, headers);
          res.end(hideTool(Buffer.concat(parts).toString('utf8')));
        });
        return;
      }
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
