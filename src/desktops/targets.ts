/**
 * Ad-hoc targets (`?target=host:port`, `?target=unix:/path`): the operator's allow rules.
 * Deny by default: without rules nothing is reachable, and link-local (cloud metadata),
 * unspecified addresses and the gateway's own port stay closed unless a rule names them.
 * A Unix socket is reachable only below a `unix` rule's directory.
 */
import { networkInterfaces } from 'node:os';
import { isInside } from '../net/address.js';
import { CidrSet, contains, parseCidr, type Cidr } from '../net/cidr.js';

interface CidrRuleSpec {
  cidr: string;
  ports: { from: number; to: number };
}

/** A CIDR block and a port range, or a directory of Unix sockets. */
export type AllowRuleSpec = CidrRuleSpec | { unix: string };

interface CompiledRule {
  addresses: CidrSet;
  from: number;
  to: number;
  /** The rule's network itself lies in a range that is otherwise always closed. */
  namesSensitiveRange: boolean;
}

/** Always closed unless a rule lies inside one of them: then the operator named it. */
const SENSITIVE_RANGES: readonly Cidr[] = [
  '169.254.0.0/16', // link-local, incl. cloud metadata 169.254.169.254
  '0.0.0.0/8', // "this network": 0.0.0.0 connects to the local host
  'fe80::/10',
  '::/128',
].map(parseCidr);

const SENSITIVE = new CidrSet(SENSITIVE_RANGES);
const LOOPBACK = new CidrSet(['127.0.0.0/8', '::1/128']);

export class TargetPolicy {
  readonly #rules: CompiledRule[];
  readonly #ownAddresses: CidrSet;
  /** The `unix` rules' directories, as the operator wrote them. */
  readonly socketDirectories: readonly string[];

  constructor(rules: readonly AllowRuleSpec[]) {
    this.#rules = rules.flatMap((rule) => ('cidr' in rule ? [compileRule(rule)] : []));
    this.socketDirectories = rules.flatMap((rule) => ('unix' in rule ? [rule.unix] : []));
    this.#ownAddresses = localAddresses();
  }

  get enabled(): boolean {
    return this.#rules.length + this.socketDirectories.length > 0;
  }

  /**
   * Whether a resolved IP address and port may be connected to. `gatewayPort` is the port
   * the request came in on, so the gateway cannot be made to connect to itself.
   */
  allows(address: string, port: number, gatewayPort: number): boolean {
    if (port === gatewayPort && (LOOPBACK.has(address) || this.#ownAddresses.has(address))) return false;
    const sensitive = SENSITIVE.has(address);
    return this.#rules.some((rule) => port >= rule.from && port <= rule.to && rule.addresses.has(address) && (!sensitive || rule.namesSensitiveRange));
  }

  /**
   * Whether a normalised socket path lies below one of `directories`, the rules' own unless
   * given. Judged on the path alone: the caller asks again with the real paths, symlinks resolved.
   */
  allowsSocket(path: string, directories: readonly string[] = this.socketDirectories): boolean {
    return directories.some((directory) => isInside(path, directory));
  }
}

function compileRule(rule: CidrRuleSpec): CompiledRule {
  const block = parseCidr(rule.cidr);
  const namesSensitiveRange = SENSITIVE_RANGES.some((range) => contains(range, block));
  return { addresses: new CidrSet([block]), from: rule.ports.from, to: rule.ports.to, namesSensitiveRange };
}

function localAddresses(): CidrSet {
  const set = new CidrSet();
  for (const infos of Object.values(networkInterfaces())) {
    for (const info of infos ?? []) set.addAddress(info.address);
  }
  return set;
}
