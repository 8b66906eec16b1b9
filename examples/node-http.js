/**
 * deskgate in a node:http server of your own, below /remote, beside the application's own
 * routes and its own WebSocket server. Run `npm run build` once, then `node examples/node-http.js`.
 *
 * - `gateway.handleRequest(req, res, next)` answers what is its own (everything below
 *   `basePath` that is one of its routes) and calls `next()` for the rest: here, the host's
 *   handler.
 * - `gateway.handleUpgrade(req, socket, head)` takes the WebSocket to /remote/websockify and
 *   returns true; any other upgrade it leaves untouched and returns false, for the host's
 *   own WebSocket server (an echo at /echo here) or to be destroyed.
 */
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { createGateway } from 'deskgate';
import { announce, exampleSetup, HOST, PORT, stopOnSignal } from './setup.js';

const { config, ...secrets } = await exampleSetup();
const gateway = await createGateway(config);

/**
 * The host application's own routes.
 * @param {import('node:http').IncomingMessage} req
 * @param {import('node:http').ServerResponse} res
 */
function hostApp(req, res) {
  if (req.method === 'GET' && req.url === '/hello') return void res.end('Hello from the host application\n');
  res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found in the host application\n');
}

/** The host application's own WebSocket server: it echoes what it gets, at /echo. */
const echo = new WebSocketServer({ noServer: true });
echo.on('connection', (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })));

const server = createServer((req, res) => gateway.handleRequest(req, res, () => hostApp(req, res)));
server.on('upgrade', (req, socket, head) => {
  if (gateway.handleUpgrade(req, socket, head)) return;
  if (req.url === '/echo') return echo.handleUpgrade(req, socket, head, (ws) => echo.emit('connection', ws, req));
  socket.destroy();
});
// deskgate's own server bounds these waits; a host's server must do it itself.
server.headersTimeout = 10_000;
server.requestTimeout = 30_000;
server.setTimeout(120_000);

server.listen(PORT, HOST, () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  announce(`http://${HOST}:${port}`, secrets);
});

stopOnSignal(async () => {
  await gateway.close(); // sessions get 1001 "going away"
  echo.clients.forEach((ws) => ws.terminate());
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
