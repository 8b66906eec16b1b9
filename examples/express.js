/**
 * deskgate in an Express 5 application, below /remote, beside the application's own routes
 * and its global body parsers. Run `npm run build` once, then `node examples/express.js`.
 *
 * - deskgate is mounted at the application's root, `basePath: '/remote'` in its config: the
 *   WebSocket upgrade, which never passes through Express, then has the same path as the
 *   pages. `handleRequest(req, res, next)` calls `next()` for whatever is not its own, so the
 *   routes after it (and Express's 404) still answer.
 * - `express.urlencoded()` and `express.json()` may run before deskgate: it then takes the
 *   login form and the ticket request from `req.body`. (A parser that consumes the body and
 *   leaves nothing in `req.body` makes deskgate answer 500 DG_ERR_BODY_CONSUMED, saying so.)
 * - Express does not see upgrades: they go to the HTTP server's 'upgrade' event.
 */
import express from 'express';
import { createServer } from 'node:http';
import { createGateway } from 'deskgate';
import { announce, exampleSetup, HOST, PORT, stopOnSignal } from './setup.js';

const { config, ...secrets } = await exampleSetup();
const gateway = await createGateway(config);

const app = express();
app.use(express.urlencoded());
app.use(express.json());
app.get('/hello', (_req, res) => void res.send('Hello from the host application\n'));
app.use((req, res, next) => gateway.handleRequest(req, res, next));
app.post('/echo', (req, res) => void res.json(req.body));

const server = createServer(app);
server.on('upgrade', (req, socket, head) => {
  if (!gateway.handleUpgrade(req, socket, head)) socket.destroy(); // or hand it to a WebSocket server of your own
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
  await gateway.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
