/**
 * deskgate in a Fastify 5 application, below /remote, beside the application's own routes
 * and body parsers. Run `npm run build` once, then `node examples/fastify.js`.
 *
 * - deskgate's routes live in a plugin of their own (an encapsulated scope, prefix /remote):
 *   `/remote` and `/remote/*`, for every method, hand the raw request and response to
 *   `gateway.handleRequest` after `reply.hijack()`, which tells Fastify the reply is written
 *   elsewhere.
 * - Fastify parses a body before the route's handler runs, and answers 415 itself to a type
 *   it has no parser for (the login form). In deskgate's scope, `removeAllContentTypeParsers()`
 *   and a catch-all parser that calls `done()` without reading leave the body in the raw
 *   request for deskgate to read: the "piping the request stream" recipe of Fastify's
 *   Content-Type Parser documentation. Parsers are encapsulated: the application's own
 *   (the built-in JSON parser, the form parser below) still apply everywhere else.
 * - Fastify does not see upgrades: they go to `fastify.server`'s 'upgrade' event.
 * - Paths outside /remote never reach deskgate; an unknown path below it gets deskgate's 404.
 */
import Fastify from 'fastify';
import { createGateway } from 'deskgate';
import { announce, BASE_PATH, exampleSetup, HOST, PORT, stopOnSignal } from './setup.js';

const { config, ...secrets } = await exampleSetup();
const gateway = await createGateway(config);

const fastify = Fastify();
// The application's own form parser, for its own routes.
fastify.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
  done(null, Object.fromEntries(new URLSearchParams(/** @type {string} */ (body))));
});
fastify.get('/hello', async () => 'Hello from the host application\n');
fastify.post('/echo', async (request) => request.body);

await fastify.register(
  async function deskgate(scope) {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    /**
     * @param {import('fastify').FastifyRequest} request
     * @param {import('fastify').FastifyReply} reply
     */
    const handler = (request, reply) => {
      reply.hijack();
      gateway.handleRequest(request.raw, reply.raw);
    };
    scope.all('/', handler);
    scope.all('/*', handler);
  },
  { prefix: BASE_PATH },
);

fastify.server.on('upgrade', (req, socket, head) => {
  if (!gateway.handleUpgrade(req, socket, head)) socket.destroy(); // or hand it to a WebSocket server of your own
});

await fastify.listen({ port: PORT, host: HOST });
const { port } = /** @type {import('node:net').AddressInfo} */ (fastify.server.address());
announce(`http://${HOST}:${port}`, secrets);

stopOnSignal(async () => {
  await gateway.close();
  await fastify.close();
});
