/** What happened when, in ms since the schedule started: faults, heals, process exits. */
export interface TimelineEntry {
  readonly atMs: number;
  readonly text: string;
}

export class Timeline {
  readonly entries: TimelineEntry[] = [];
  private startedAt = Date.now();

  /** `echo` sees each entry as it happens (the CLI prints them as progress). */
  constructor(private readonly echo?: (line: string) => void) {}

  /** Counts time from now on; what happened before shows at negative times. */
  startClock(): void {
    const shift = Date.now() - this.startedAt;
    this.startedAt += shift;
    for (const [index, entry] of this.entries.entries()) this.entries[index] = { ...entry, atMs: entry.atMs - shift };
  }

  now(): number {
    return Date.now() - this.startedAt;
  }

  add(text: string): void {
    const entry = { atMs: this.now(), text };
    this.entries.push(entry);
    this.echo?.(`  ${formatOffset(entry.atMs)}  ${text}`);
  }

  format(): string {
    return this.entries.map((entry) => `  ${formatOffset(entry.atMs)}  ${entry.text}`).join('\n');
  }
}

export function formatOffset(atMs: number): string {
  return `${atMs < 0 ? '-' : '+'}${(Math.abs(atMs) / 1_000).toFixed(2).padStart(6)} s`;
}
