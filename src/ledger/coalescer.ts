/**
 * Group commit for the ledger worker: calls made while a batch is on its way are sent together in
 * the next one. Each call still gets its own answer (a value or an error), so a job that shares a
 * batch keeps its own outcome, attempts and dead letter.
 *
 * A batch leaves on the next turn of the event loop (setImmediate), so the jobs that start
 * together share it, or as soon as one of the `inFlightMax` slots frees up; it carries at most
 * `batchSizeMax` calls. `run` answers each item in order, with a value or an Error.
 * An item that `holdBack` refuses for the batch being formed (say, a second delivery of an event
 * already in it) waits for the next one.
 */
export interface CoalescerOptions<Item> {
  readonly batchSizeMax: number;
  readonly inFlightMax: number;
  readonly holdBack?: (item: Item, batch: readonly Item[]) => boolean;
}

interface Pending<Item, Answer> {
  readonly item: Item;
  readonly resolve: (answer: Answer) => void;
  readonly reject: (error: unknown) => void;
}

export class Coalescer<Item, Answer> {
  private pending: Pending<Item, Answer>[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly run: (items: readonly Item[]) => Promise<readonly (Answer | Error)[]>,
    private readonly options: CoalescerOptions<Item>,
  ) {}

  submit(item: Item): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.options.inFlightMax || this.pending.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.options.inFlightMax && this.pending.length > 0) {
      const batch = this.take();
      this.inFlight += 1;
      void this.send(batch).finally(() => {
        this.inFlight -= 1;
        this.schedule();
      });
    }
  }

  private take(): Pending<Item, Answer>[] {
    const batch: Pending<Item, Answer>[] = [];
    const rest: Pending<Item, Answer>[] = [];
    const items: Item[] = [];
    for (const entry of this.pending) {
      if (batch.length >= this.options.batchSizeMax || this.options.holdBack?.(entry.item, items) === true) {
        rest.push(entry);
        continue;
      }
      batch.push(entry);
      items.push(entry.item);
    }
    this.pending = rest;
    return batch;
  }

  private async send(batch: readonly Pending<Item, Answer>[]): Promise<void> {
    let answers: readonly (Answer | Error)[];
    try {
      answers = await this.run(batch.map((entry) => entry.item));
    } catch (error) {
      for (const entry of batch) entry.reject(error);
      return;
    }
    batch.forEach((entry, index) => {
      if (index >= answers.length) entry.reject(new Error('invariant violated: a batch left an item unanswered'));
      const answer = answers[index] as Answer | Error;
      if (answer instanceof Error) entry.reject(answer);
      else entry.resolve(answer);
    });
  }
}
