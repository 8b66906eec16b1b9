/**
 * The one access decision and the request parser, from tables of cases: each case is asked
 * the way the viewer page asks (/view/NAME?ticket=T) and the way the WebSocket upgrade asks
 * (?desktop=NAME&ticket=T), and both must get the same grant or the same refusal.
 */
import type { IncomingMessage } from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { Auth } from '../../src/auth/auth.js';
import { MemoryStore } from '../../src/coordination/memory.js';
import { parseConfig } from '../../src/config/schema.js';
import { DesktopDirectory } from '../../src/desktops/directory.js';
import { loadDesktops } from '../../src/desktops/vnc-settings.js';
import { TargetPolicy } from '../../src/desktops/targets.js';
import { GatewayError } from '../../src/errors.js';
import { Admission } from '../../src/http/admission.js';
import { parseUpgradeQuery, parseViewerRequest } from '../../src/http/session-request.js';

const PROXY = '127.0.0.2';
const TICKET_SECRET = 'a ticket secret of at least 32 characters';

/** A grant as a table shows it, or a refusal: its status and sentence. */
type Outcome = { user: string; viewOnly: boolean; target: string } | { status: number; message: string };

describe('parsing what a WebSocket asks for', () => {
  const cases: Array<[string, unknown]> = [
    ['desktop=lab', { wanted: { kind: 'desktop', name: 'lab' }, ticket: undefined }],
    ['desktop=lab&ticket=T', { wanted: { kind: 'desktop', name: 'lab' }, ticket: 'T' }],
    ['target=10.0.0.5:5901', { wanted: { kind: 'target', host: '10.0.0.5', port: 5901 }, ticket: undefined }],
    ['target=[::1]:5900', { wanted: { kind: 'target', host: '::1', port: 5900 }, ticket: undefined }],
    ['', 'Name exactly one desktop (?desktop=NAME or ?token=TOKEN) or one target (?target=HOST:PORT)'],
    ['desktop=a&desktop=b', 'Name exactly one desktop (?desktop=NAME or ?token=TOKEN) or one target (?target=HOST:PORT)'],
    ['desktop=a&target=10.0.0.5:1', 'Name exactly one desktop (?desktop=NAME or ?token=TOKEN) or one target (?target=HOST:PORT)'],
    ['desktop=../lab', 'Malformed desktop name: use letters, digits, ".", "_" and "-"'],
    ['desktop=', 'Malformed desktop name: use letters, digits, ".", "_" and "-"'],
    ['target=127.1:5900', 'Malformed target: expected HOST:PORT or [IPv6]:PORT'],
    ['target=10.0.0.5', 'Malformed target: expected HOST:PORT or [IPv6]:PORT'],
    ['target=10.0.0.5:1&ticket=T', 'A ticket opens one desktop: ?desktop=NAME&ticket=TICKET'],
    ['desktop=a&desktop=b&ticket=T', 'A ticket opens one desktop: ?desktop=NAME&ticket=TICKET'],
    ['desktop=a&ticket=T&ticket=T', 'A ticket opens one desktop: ?desktop=NAME&ticket=TICKET'],
  ];
  it.each(cases)('?%s', (query, expected) => {
    const parse = () => parseUpgradeQuery(new URLSearchParams(query));
    if (typeof expected === 'string') {
      expect(parse).toThrow(expected);
      expect(() => parse()).toThrow(GatewayError);
    } else {
      expect(parse()).toEqual(expected);
    }
  });
});

describe('the access decision, for pages and upgrades alike', () => {
  let admission: Admission;
  let auth: Auth;
  const tickets: Record<string, string> = {};

  beforeAll(async () => {
    const config = parseConfig({
      auth: { mode: 'header' },
      trustProxy: [`${PROXY}/32`],
      tickets: { secret: TICKET_SECRET },
      targets: { allow: [{ cidr: '10.0.0.0/24', ports: '5900-5999' }] },
      desktops: [
        { name: 'lab', host: '10.0.0.5', port: 5901, allow: { users: ['alice'], groups: ['staff'] }, viewOnly: { groups: ['students'] } },
        { name: 'open', host: '10.0.0.6', port: 5900 },
      ],
    });
    auth = await Auth.create(config, new MemoryStore({ leaseTtlMs: 15_000 }));
    admission = new Admission(auth, new DesktopDirectory(loadDesktops(config.desktops, {}), new TargetPolicy(config.targets.allow)));
    const issue = async (desktop: string, viewOnly = false) => (await auth.tickets?.issue({ desktop, user: 'guest', viewOnly }))?.token as string;
    tickets.lab = await issue('lab');
    tickets.labViewOnly = await issue('lab', true);
    tickets.ghost = await issue('ghost');
  });

  /** A request through the trusted proxy, for `user` in `groups` (no user: nobody logged in). */
  function request(user?: string, groups: string[] = []): IncomingMessage {
    const headers: Record<string, string> = user ? { 'x-forwarded-user': user, 'x-forwarded-groups': groups.join(',') } : {};
    return { headers, socket: { remoteAddress: PROXY, localPort: 6080 } } as unknown as IncomingMessage;
  }

  async function outcome(req: IncomingMessage, parse: () => ReturnType<typeof parseUpgradeQuery>): Promise<Outcome> {
    try {
      const grant = await admission.decide(req, auth.proxy.describe(req), parse(), 6080);
      return { user: grant.identity.user, viewOnly: grant.viewOnly, target: `${grant.target.host}:${grant.target.port}` };
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      return { status: err.status, message: err.message };
    }
  }

  const cases: Array<[string, { user?: string; groups?: string[]; desktop: string; ticket?: keyof typeof tickets | 'forged' }, Outcome]> = [
    ['a named user opens a desktop', { user: 'alice', desktop: 'lab' }, { user: 'alice', viewOnly: false, target: '10.0.0.5:5901' }],
    ['a group opens it', { user: 'bob', groups: ['staff'], desktop: 'lab' }, { user: 'bob', viewOnly: false, target: '10.0.0.5:5901' }],
    [
      'a view-only group may only watch',
      { user: 'sue', groups: ['staff', 'students'], desktop: 'lab' },
      { user: 'sue', viewOnly: true, target: '10.0.0.5:5901' },
    ],
    ['anyone authenticated opens a desktop without rules', { user: 'eve', desktop: 'open' }, { user: 'eve', viewOnly: false, target: '10.0.0.6:5900' }],
    ['someone the rules leave out is refused', { user: 'eve', desktop: 'lab' }, { status: 403, message: "eve may not open desktop 'lab'" }],
    ['an unknown desktop is refused', { user: 'alice', desktop: 'nosuch' }, { status: 404, message: "There is no desktop named 'nosuch'" }],
    ['nobody is refused', { desktop: 'lab' }, { status: 401, message: 'Authentication required' }],
    ['nobody does not learn which desktops exist', { desktop: 'nosuch' }, { status: 401, message: 'Authentication required' }],
    [
      'a malformed name is refused',
      { user: 'alice', desktop: 'a/b' },
      { status: 400, message: 'Malformed desktop name: use letters, digits, ".", "_" and "-"' },
    ],
    ['a ticket opens its desktop without a login', { desktop: 'lab', ticket: 'lab' }, { user: 'guest', viewOnly: false, target: '10.0.0.5:5901' }],
    ['a view-only ticket only watches', { desktop: 'lab', ticket: 'labViewOnly' }, { user: 'guest', viewOnly: true, target: '10.0.0.5:5901' }],
    ['a ticket for another desktop is refused', { desktop: 'open', ticket: 'lab' }, { status: 403, message: 'The ticket is for another desktop' }],
    ['a forged ticket is refused', { desktop: 'lab', ticket: 'forged' }, { status: 401, message: 'The ticket is not valid' }],
    [
      'a ticket for a desktop that is gone is refused after the ticket is checked',
      { desktop: 'ghost', ticket: 'ghost' },
      { status: 404, message: "There is no desktop named 'ghost'" },
    ],
  ];

  it.each(cases)('%s', async (_name, c, expected) => {
    const req = request(c.user, c.groups);
    const ticket = c.ticket === undefined ? undefined : c.ticket === 'forged' ? 'e30.e30.' : tickets[c.ticket];
    const query = new URLSearchParams({ desktop: c.desktop, ...(ticket !== undefined && { ticket }) });
    const page = await outcome(req, () => parseViewerRequest(c.desktop, new URLSearchParams(ticket === undefined ? {} : { ticket })));
    const upgrade = await outcome(req, () => parseUpgradeQuery(query));
    expect({ page, upgrade }).toEqual({ page: expected, upgrade: expected });
  });

  it('resolves an ad-hoc target inside the rules, and refuses one outside them', async () => {
    const req = request('alice');
    const ask = (target: string) => outcome(req, () => parseUpgradeQuery(new URLSearchParams({ target })));
    expect(await ask('10.0.0.9:5905')).toEqual({ user: 'alice', viewOnly: false, target: '10.0.0.9:5905' });
    expect(await ask('10.0.1.9:5905')).toEqual({ status: 403, message: "Target 10.0.1.9:5905 is not allowed by this gateway's rules" });
    expect(await ask('10.0.0.9:6080')).toEqual({ status: 403, message: "Target 10.0.0.9:6080 is not allowed by this gateway's rules" });
  });
});
