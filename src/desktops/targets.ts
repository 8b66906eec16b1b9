/**
 * Ad-hoc targets (`?target=host:port`): the operator's allow rules.
 * Deny by default: without rules nothing is reachable, and link-local (cloud metadata),
 * unspecified addresses and the gateway's own port stay closed unless a rule names them.
 */
import { networkInterfaces } from 'node:os';
import { CidrSet, contains, parseCidr, type Cidr } from '../net/cidr.js';

export interface AllowRuleSpec {
  cidr: string;
  ports: { from: number; to: number };
}

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

  constructor(rules: readonly AllowRuleSpec[]) {
    this.#rules = rules.map(compileRule);
    this.#ownAddresses = localAddresses();
  }

  get enabled(): boolean {
    return this.#rules.length > 0;
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
}

function compileRule(rule: AllowRuleSpec): CompiledRule {
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
