/** Web origins (`scheme://host[:port]`) as the Origin header and operators write them. */

/** `scheme://host[:port]` in canonical form (lower case, default port dropped), or undefined. */
export function normalizeOrigin(text: string): string | undefined {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin !== 'null' ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

/** Whether an operator's text names an origin only: no path, query, fragment or credentials. */
export function isOrigin(text: string): boolean {
  if (normalizeOrigin(text) === undefined) return false;
  const url = new URL(text);
  return url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
}

/** Whether an operator's text is where users reach the gateway: an origin, maybe with a path, and nothing else. */
export function isPublicUrl(text: string): boolean {
  if (normalizeOrigin(text) === undefined) return false;
  const url = new URL(text);
  return !url.search && !url.hash && !url.username && !url.password && !text.endsWith('/');
}
