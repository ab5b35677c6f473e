/**
 * Where the CLI writes: results to stdout, notes and errors to stderr. Tests pass string
 * collectors; the bin passes the process streams. Large listings go through
 * `BufferedOutput`, which batches lines and waits for 'drain' when the stream asks.
 */

/** A writable stream, as far as the CLI needs one. */
export interface Output {
  write(chunk: string): unknown;
  once?(event: "drain", listener: () => void): unknown;
}

export interface Io {
  stdout: Output;
  stderr: Output;
}

/** Thrown for bad command lines: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Batches writes into chunks of about 64 KiB, honouring backpressure. */
export class BufferedOutput {
  private parts: string[] = [];
  private size = 0;

  constructor(
    private readonly out: Output,
    private readonly limit = 1 << 16,
  ) {}

  /** True when enough is buffered that the caller should `await flush()`. */
  get full(): boolean {
    return this.size >= this.limit;
  }

  write(s: string): void {
    this.parts.push(s);
    this.size += s.length;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const chunk = this.parts.join("");
    this.parts = [];
    this.size = 0;
    const ok = this.out.write(chunk);
    if (ok === false && this.out.once) await new Promise<void>((r) => this.out.once!("drain", r));
  }
}

/** Collects everything written (for tests and embedding). */
export class StringOutput implements Output {
  text = "";
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}
