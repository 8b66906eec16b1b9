/**
 * Family-strict CIDR matching. Node's BlockList matches IPv4 addresses against IPv6 rules
 * (`::/0` takes in 127.0.0.9), so each family keeps its own list and an address is checked
 * only against the list of its own family. IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is IPv4,
 * in addresses and in blocks alike.
 */
import { BlockList, isIP } from 'node:net';

export type Family = 'ipv4' | 'ipv6';

export interface Cidr {
  readonly network: string;
  readonly prefix: number;
  readonly family: Family;
}

/** `::ffff:0:0/96`: the IPv4-mapped addresses, one per IPv4 address. */
const MAPPED_BITS = 96;
const MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

export class CidrSet {
  readonly #lists: Record<Family, BlockList> = { ipv4: new BlockList(), ipv6: new BlockList() };

  /** Throws a RangeError, saying what is expected, for a block that parseCidr refuses. */
  constructor(cidrs: Iterable<string | Cidr> = []) {
    for (const cidr of cidrs) {
      const { network, prefix, family } = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
      this.#lists[family].addSubnet(network, prefix, family);
    }
  }

  /** Add one address, as its own block. */
  addAddress(address: string): void {
    const ip = normalizeAddress(address);
    const family = familyOf(ip);
    if (family) this.#lists[family].addAddress(ip, family);
  }

  has(address: string): boolean {
    const ip = normalizeAddress(address);
    const family = familyOf(ip);
    return family !== undefined && this.#lists[family].check(ip, family);
  }
}

/** Whether every address of `inner` lies in `outer`. */
export function contains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.prefix >= outer.prefix && new CidrSet([outer]).has(inner.network);
}

/**
 * `network/prefix` as a block of its own family: an IPv4-mapped block of /96 or longer is
 * the IPv4 block it maps. Throws a RangeError saying what is expected.
 */
export function parseCidr(text: string): Cidr {
  const [address = '', bits = '', ...rest] = text.split('/');
  const written = address.includes('%') ? undefined : familyOf(address);
  const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : Infinity;
  if (!written || rest.length > 0 || prefix > (written === 'ipv6' ? 128 : 32)) {
    throw new RangeError('expected a CIDR block such as 10.0.0.0/24 or fd00::/64');
  }
  const network = normalizeAddress(address);
  const family = familyOf(network) as Family;
  if (family === written) return { network, prefix, family };
  if (prefix < MAPPED_BITS) {
    throw new RangeError(
      `an IPv4-mapped block must be /${MAPPED_BITS} or longer, as it is IPv4: write the IPv4 block instead ` +
        `(::ffff:A.B.C.D/N is A.B.C.D/N-${MAPPED_BITS}; all of IPv4 is 0.0.0.0/0)`,
    );
  }
  return { network, prefix: prefix - MAPPED_BITS, family };
}

/**
 * The one spelling of an address: IPv4 for IPv4-mapped IPv6 (`::ffff:10.0.0.1`,
 * `0:0:0:0:0:ffff:a00:1`), canonical IPv6 otherwise; anything else as it is.
 */
export function normalizeAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  const [ip = '', zone] = address.split('%', 2);
  // The URL parser writes IPv6 canonically: lower case, hex only, one `::` at most.
  const canonical = new URL(`http://[${ip}]`).hostname.slice(1, -1);
  const mapped = MAPPED.exec(canonical);
  if (mapped) {
    const [high, low] = [parseInt(mapped[1] as string, 16), parseInt(mapped[2] as string, 16)];
    return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
  }
  return zone === undefined ? canonical : `${canonical}%${zone}`;
}

function familyOf(ip: string): Family | undefined {
  const version = isIP(ip);
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined;
}

/**
 * One client, as per-client counts (the login throttle) see it: an IPv4 address
 * (IPv4-mapped ones too), or an IPv6 address's /64, all of which one client can rotate through.
 */
export function clientKey(address: string): string {
  const ip = normalizeAddress(address.split('%', 1)[0] as string);
  if (isIP(ip) !== 6) return ip;
  // normalizeAddress writes IPv6 in canonical form: lower case, hex only, one `::` at most.
  const [head = '', tail] = ip.split('::');
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return `${groups.slice(0, 4).join(':')}::/64`;
}
