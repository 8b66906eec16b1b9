/** Small helpers for tests that start real programs and real sockets on loopback. */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';

/** Fail loudly, with the Debian package to install, when a component is missing. */
export function requireCommand(command: string, debianPackage: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${command} is not installed: apt-get install -y ${debianPackage} (bash .ci/run installs it)`);
  }
}

/** A port that was free a moment ago on 127.0.0.1, for programs that cannot bind port 0 themselves. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Poll `check` until it holds, or fail after `timeoutMs` naming what was awaited. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** `promise`, or a failure naming what did not happen once `ms` have passed. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The children takeAlong watches: killed when the test process exits. */
const children = new Set<ChildProcess>();

/**
 * A test process that ends without stopping `child` (a crash, a timeout) takes it along. One
 * exit listener serves every child, however many are alive at once.
 */
export function takeAlong(child: ChildProcess): void {
  if (children.size === 0) process.once('exit', killChildren);
  children.add(child);
  child.once('exit', () => {
    children.delete(child);
    if (children.size === 0) process.removeListener('exit', killChildren);
  });
}

function killChildren(): void {
  for (const child of children) child.kill('SIGKILL');
}
