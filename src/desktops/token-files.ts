/**
 * websockify token files as a desktop source. Each token names a desktop: `?token=T` (or
 * `?desktop=T`, `/view/T`) opens the VNC server the files give for it. Two layouts, as
 * websockify's plugins read them:
 *
 *   lines      (TokenFile)      a file, or a directory of files, of `token: host:port` lines
 *   filenames  (TokenFileName)  a directory; each file's name is a token, its text `host:port`
 *
 * A target may also be `unix_socket:/path` (websockify's spelling) or `unix:/path`. The files
 * are read again when they change (inotify on the directory, so a file replaced by rename is
 * seen), on SIGHUP, and when a request names a token not known yet (at most once a second),
 * so a console that writes a token and sends the browser straight away is not refused.
 * Sessions opened through a token stay up when it goes.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TOKEN } from '../config/names.js';
import { ConfigError, type Config } from '../config/schema.js';
import { parseAddress, UNIX_PREFIX, type VncAddress } from '../net/address.js';
import { parseWebsockifyHostPort } from '../net/host-port.js';
import type { Desktop, DesktopDirectory } from './directory.js';

/** A line or file the reader could not use: reported, skipped, never fatal. */
export interface TokenProblem {
  file: string;
  line?: number;
  problem: string;
}

export interface TokenFilesOptions {
  /** Replace the token desktops with these (the caller keeps configured desktops first). */
  apply(desktops: Desktop[]): void;
  /** A line or file was skipped, or the source could not be read at all. */
  report(problems: TokenProblem[]): void;
}

/**
 * Token desktops applied to the directory, below the configured ones: a token that a configured
 * desktop's name already uses is skipped and reported, and a token's entry is removed only while
 * it is still the token's (a desktop added under that name since stays).
 */
export function intoDirectory(directory: DesktopDirectory, report: TokenFilesOptions['report']): TokenFilesOptions {
  let applied = new Map<string, Desktop>();
  return {
    apply(desktops) {
      for (const [name, desktop] of applied) if (directory.get(name) === desktop) directory.remove(name);
      const next = new Map<string, Desktop>();
      const taken: TokenProblem[] = [];
      for (const desktop of desktops) {
        if (directory.get(desktop.name)) {
          taken.push({ file: 'tokens.source', problem: `token '${desktop.name}' is skipped: a configured desktop has that name` });
          continue;
        }
        directory.add(desktop);
        next.set(desktop.name, desktop);
      }
      applied = next;
      if (taken.length > 0) report(taken);
    },
    report,
  };
}

/** Changes come in bursts (an editor writes, renames, touches): read once they settle. */
const SETTLE_MS = 50;
/** A request naming an unknown token reads the files again at most this often. */
const MISS_REREAD_MS = 1_000;

export class TokenFiles {
  readonly #config: Config['tokens'] & { source: string };
  readonly #options: TokenFilesOptions;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The read under way, which later callers wait for instead of reading again. */
  #reading: Promise<void> | undefined;
  #readAt = 0;
  #closed = false;

  private constructor(config: Config['tokens'] & { source: string }, options: TokenFilesOptions) {
    this.#config = config;
    this.#options = options;
  }

  /** Read the source once (a source that cannot be read at all stops the start), then watch it. */
  static async open(config: Config['tokens'], options: TokenFilesOptions): Promise<TokenFiles | undefined> {
    const { source } = config;
    if (source === undefined) return undefined;
    const files = new TokenFiles({ ...config, source }, options);
    const { desktops, problems } = await readTokens(files.#config).catch((err: unknown) => {
      throw new ConfigError(`tokens.source ${source} cannot be read: ${(err as Error).message}`);
    });
    if (problems.length > 0) options.report(problems);
    options.apply(desktops);
    files.#readAt = Date.now();
    await files.#watch();
    return files;
  }

  /** Read again now (SIGHUP); a source that cannot be read keeps the tokens it had. */
  reload(): Promise<void> {
    this.#reading ??= this.#read().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  /**
   * A request named a desktop nobody knows: perhaps a token written a moment ago. A change the
   * kernel has already told of is read at once (one turn of the event loop lets its event in);
   * without one (a file system that does not tell), the files are read at most once a second.
   */
  async lookAgain(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#timer !== undefined || Date.now() - this.#readAt >= MISS_REREAD_MS) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      await this.reload();
    } else {
      await this.#reading;
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
  }

  async #read(): Promise<void> {
    this.#readAt = Date.now();
    try {
      const { desktops, problems } = await readTokens(this.#config);
      if (this.#closed) return;
      if (problems.length > 0) this.#options.report(problems);
      this.#options.apply(desktops);
    } catch (err) {
      this.#options.report([{ file: this.#config.source, problem: `cannot be read, the tokens stay as they were: ${(err as Error).message}` }]);
    }
  }

  /** Watch the directory (a file's own directory, so a file replaced by rename is still seen). */
  async #watch(): Promise<void> {
    const { source } = this.#config;
    await stat(source).then((info) => {
      const directory = info.isDirectory() ? source : dirname(source);
      const only = info.isDirectory() ? undefined : basename(source);
      try {
        this.#watcher = watch(directory, { persistent: false }, (_event, name) => {
          if (only === undefined || name === null || name === only) this.#changed();
        });
        this.#watcher.on('error', (err) => this.#options.report([{ file: directory, problem: `no longer watched: ${err.message}; SIGHUP reads it` }]));
      } catch (err) {
        this.#options.report([{ file: directory, problem: `cannot be watched: ${(err as Error).message}; SIGHUP reads it` }]);
      }
    });
  }

  #changed(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.reload();
    }, SETTLE_MS);
  }
}

/** Every token of the source, and what was skipped; throws only when the source itself cannot be read. */
async function readTokens(config: Config['tokens'] & { source: string }): Promise<{ desktops: Desktop[]; problems: TokenProblem[] }> {
  const { source, format, listed } = config;
  const isDirectory = (await stat(source)).isDirectory();
  if (format === 'filenames' && !isDirectory) throw new Error('tokens.format filenames reads a directory, and this is a file');
  const files = isDirectory ? (await readdir(source)).filter((name) => !name.startsWith('.')).map((name) => join(source, name)) : [source];
  const found = new Map<string, Desktop>();
  const problems: TokenProblem[] = [];
  for (const file of files.sort()) {
    let text: string;
    try {
      if (!(await stat(file)).isFile()) continue;
      text = await readFile(file, 'utf8');
    } catch (err) {
      problems.push({ file, problem: `skipped: ${(err as Error).message}` });
      continue;
    }
    const entries = format === 'filenames' ? [{ token: basename(file), target: text.trim(), line: 1 }] : tokenLines(text);
    for (const { token, target, line } of entries) {
      const problem =
        token === ''
          ? "expected 'token: host:port'"
          : !TOKEN.test(token)
            ? 'the token is too long or holds control characters'
            : found.has(token)
              ? `token '${token}' is given again`
              : undefined;
      const address = problem === undefined ? parseTarget(target) : undefined;
      if (problem !== undefined || address === undefined) {
        problems.push({ file, line, problem: problem ?? `expected host:port, [IPv6]:port or unix_socket:/path, got '${target}'` });
        continue;
      }
      const desktop: Desktop = { name: token, unlisted: !listed, ...address };
      found.set(token, desktop);
    }
  }
  return { desktops: [...found.values()], problems };
}

/** `token: target` lines, blank lines and `#` comments skipped; a line without ": " comes back with an empty token. */
function tokenLines(text: string): { token: string; target: string; line: number }[] {
  return text.split(/\r?\n/).flatMap((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return [];
    const colon = /:\s/.exec(line);
    const token = colon ? line.slice(0, colon.index) : '';
    return [{ token, target: colon ? line.slice(colon.index + 1).trim() : line, line: index + 1 }];
  });
}

/** websockify's host:port (IPv6 with brackets or without), or a Unix socket in either spelling. */
function parseTarget(target: string): VncAddress | undefined {
  const socket = /^unix(?:_socket)?:/.test(target);
  return socket ? parseAddress(target.replace(/^unix_socket:/, UNIX_PREFIX)) : parseWebsockifyHostPort(target);
}
