#!/usr/bin/env node
// A 2026-07-28 tool server on the TypeScript SDK v2 (@modelcontextprotocol/server 2.4.x):
// createMcpHandler(factory) (a fresh McpServer per request; 2025-era traffic served by the
// SDK's stateless legacy fallback), mounted on node:http at 127.0.0.1:PORT/mcp.
//
// Usage: node ts_modern_server.mjs PORT
//
// The policy-catalog tools of fixture_server.py, in simple versions:
//   read_file(path) -> "contents of PATH"
//   write_file(path, content) -> MRTR: answers input_required with a form elicitation
//       ("Write N bytes to PATH?", {confirm: boolean}), then "wrote N bytes to PATH"
//   query_database(query, region="eu") -> "rows for QUERY in REGION"; region has
//       x-mcp-header "Region" (Mcp-Param-Region)
//   call_api(endpoint), execute_command(command), fetch_url(url)
//   add_tool(name) -> registers NAME (for every later request) and publishes
//       notifications/tools/list_changed to open subscriptions/listen streams
// and a resource file:///workspace/notes.txt. tools/list answers cacheScope "public" with
// ttlMs 3600000 (cacheHints), so a per-caller filtering proxy can be seen rewriting it.
import http from 'node:http';
import {
  McpServer, createMcpHandler, fromJsonSchema, inputRequired, acceptedContent,
  hostHeaderValidationResponse, localhostAllowedHostnames,
} from '@modelcontextprotocol/server';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: ts_modern_server.mjs PORT');
  process.exit(2);
}

const text = (t) => ({ content: [{ type: 'text', text: t }] });
const object = (properties, required = Object.keys(properties)) =>
  fromJsonSchema({ type: 'object', properties, required });
const str = (description, extra = {}) => ({ type: 'string', description, ...extra });

// Tools added by add_tool, kept across requests (the factory builds a server per request).
const addedTools = new Set();
let handler;

function buildServer() {
  const server = new McpServer(
    { name: 'mcp-pep-e2e-ts-fixture', version: '1.0.0' },
    {
      capabilities: { tools: { listChanged: true }, resources: {} },
      cacheHints: { 'tools/list': { ttlMs: 3_600_000, cacheScope: 'public' } },
    },
  );
  server.registerTool('read_file', { description: 'Read a file', inputSchema: object({ path: str('file path') }) },
    async ({ path }) => text(`contents of ${path}`));
  server.registerTool('write_file', {
    description: 'Write a file after the user confirms',
    inputSchema: object({ path: str('file path'), content: str('file content') }),
  }, async ({ path, content }, ctx) => {
    const answer = acceptedContent(ctx.mcpReq.inputResponses, 'confirm');
    if (answer === undefined) {
      return inputRequired({
        inputRequests: {
          confirm: inputRequired.elicit({
            message: `Write ${content.length} bytes to ${path}?`,
            requestedSchema: { type: 'object', properties: { confirm: { type: 'boolean' } }, required: ['confirm'] },
          }),
        },
      });
    }
    if (answer.confirm !== true) return { ...text(`not confirmed: ${path} left alone`), isError: true };
    return text(`wrote ${content.length} bytes to ${path}`);
  });
  server.registerTool('query_database', {
    description: 'Query a database; region is mirrored in Mcp-Param-Region',
    inputSchema: object({ query: str('SQL'), region: str('data region', { 'x-mcp-header': 'Region', default: 'eu' }) }, ['query']),
  }, async ({ query, region }) => text(`rows for ${query} in ${region ?? 'eu'}`));
  server.registerTool('call_api', { description: 'Call an API', inputSchema: object({ endpoint: str('path') }) },
    async ({ endpoint }) => text(`called ${endpoint}`));
  server.registerTool('execute_command', { description: 'Run a command', inputSchema: object({ command: str('command') }) },
    async ({ command }) => text(`ran ${command}`));
  server.registerTool('fetch_url', { description: 'Fetch a URL', inputSchema: object({ url: str('URL') }) },
    async ({ url }) => text(`fetched ${url}`));
  server.registerTool('add_tool', {
    description: 'Register a new tool NAME and announce notifications/tools/list_changed',
    inputSchema: object({ name: str('tool name') }, []),
  }, async ({ name = 'dynamic_tool' }) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return { ...text(`not a tool name: ${name}`), isError: true };
    addedTools.add(name);
    handler.notify.toolsChanged();
    return text(`added ${name}`);
  });
  for (const name of addedTools) {
    server.registerTool(name, { description: `added by add_tool(${name})`, inputSchema: object({}) }, async () => text('dynamic'));
  }
  server.registerResource('notes', 'file:///workspace/notes.txt', { description: 'a workspace file', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'notes: nothing to see' }] }));
  return server;
}

handler = createMcpHandler(() => buildServer(), { onerror: (e) => console.error(`[ts-server] ${e?.message ?? e}`) });

// node:http <-> fetch Request/Response, streaming the response body (SSE included).
const allowedHosts = localhostAllowedHostnames();
const httpServer = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, `http://${req.headers.host ?? `127.0.0.1:${port}`}`);
    if (url.pathname !== '/mcp') { res.writeHead(404).end(); return; }
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    const request = new Request(url, {
      method: req.method, headers, signal: abort.signal,
      body: ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks),
    });
    const response = hostHeaderValidationResponse(request, allowedHosts) ?? await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
    if (!response.body) { res.end(); return; }
    for await (const chunk of response.body) res.write(chunk);
    res.end();
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(e?.message ?? e));
  }
});
httpServer.listen(port, '127.0.0.1', () => console.log(`[ts-server] listening on http://127.0.0.1:${port}/mcp`));
const stop = () => { handler.close().finally(() => httpServer.close(() => process.exit(0))); setTimeout(() => process.exit(0), 2000).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
