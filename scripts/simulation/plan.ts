/**
 * A schedule's plan: the workload and the fault timeline, drawn from the seed alone. Pure: the
 * same seed and options give the same plan, which is what makes a failing seed a reproduction.
 */
import { Random } from './random';
import {
  hostileText,
  invalidChargeInputJson,
  invalidRefundReason,
  metadataKeyLengthMax,
  metadataValueLengthMax,
  type InvalidTextKind,
} from './text';

export const processNames = ['api-1', 'api-2', 'relay-1', 'relay-2', 'worker-1', 'worker-2'] as const;
export type ProcessName = (typeof processNames)[number];

export type Source = 'tok_visa' | 'tok_chargeDeclined' | 'tok_timeout' | 'tok_slow';
/** How a logical operation reaches the gateway. */
export type Delivery =
  | 'single' // one client, retrying until a final answer
  | 'duplicate' // sent again with the same key through the other api after the first answer
  | 'concurrent' // sent through both apis at once
  | 'abandon'; // sent once and abandoned mid-flight; the client comes back after the faults, or never

/** When a charge's key is sent again with another body: after a final answer, or while the first is in flight. */
export type Reuse = { readonly when: 'after' } | { readonly when: 'during'; readonly delayMs: number };

interface OperationBase {
  readonly index: number;
  readonly key: string;
  readonly startMs: number;
  /** 0 or 1: which api (behind its proxy) the first send goes to. */
  readonly api: 0 | 1;
  readonly delivery: Delivery;
  /** The input object's exact JSON text. */
  readonly inputJson: string;
  /**
   * False for a client that abandons its request and never returns: the completer alone must
   * finish (or release) what it left, and no answer is ever checked against it.
   */
  readonly comesBack: boolean;
}

export interface ChargeOperation extends OperationBase {
  readonly kind: 'charge';
  readonly source: Source;
  /**
   * The same key sent with this other input. After a final answer it must be refused (422); sent
   * while the first is in flight, exactly one of the two bodies is accepted and the other refused.
   */
  readonly reuseInputJson: string | null;
  readonly reuse: Reuse | null;
}

export interface RefundOperation extends OperationBase {
  readonly kind: 'refund';
  /** The charge operation whose charge this refunds; skipped when that charge did not succeed. */
  readonly chargeOperation: number;
  /** Refunds started together on one charge share a group. */
  readonly group: number | null;
}

export interface InvalidOperation extends OperationBase {
  readonly kind: 'invalid';
  readonly mutation: 'createCharge' | 'refundCharge';
  readonly what: InvalidTextKind | InvalidRefundKind;
  readonly chargeOperation: number | null;
}

export type Operation = ChargeOperation | RefundOperation | InvalidOperation;

export type Fault =
  | {
      readonly kind: 'kill';
      readonly atMs: number;
      readonly target: ProcessName;
      readonly signal: 'SIGKILL' | 'SIGTERM';
      readonly downMs: number;
    }
  | {
      readonly kind: 'kill-repeatedly';
      readonly atMs: number;
      readonly target: ProcessName;
      readonly times: number;
      readonly upMs: number;
    }
  | {
      readonly kind: 'postgres-stop';
      readonly atMs: number;
      readonly mode: 'fast' | 'immediate';
      readonly downMs: number;
    }
  | { readonly kind: 'terminate-backends'; readonly atMs: number }
  | { readonly kind: 'lock'; readonly atMs: number; readonly table: LockedTable; readonly holdMs: number }
  | { readonly kind: 'redis-restart'; readonly atMs: number; readonly downMs: number }
  | { readonly kind: 'redis-flushall'; readonly atMs: number }
  | { readonly kind: 'redis-freeze'; readonly atMs: number; readonly downMs: number }
  | { readonly kind: 'lose-responses'; readonly atMs: number; readonly api: 0 | 1; readonly count: number };

export type FaultKind = Fault['kind'];
export const faultKinds: readonly FaultKind[] = [
  'kill',
  'kill-repeatedly',
  'postgres-stop',
  'terminate-backends',
  'lock',
  'redis-restart',
  'redis-flushall',
  'redis-freeze',
  'lose-responses',
];

/** Every table the money path, the event path and authentication wait on. */
export const lockedTables = [
  'idempotency_keys',
  'charges',
  'refunds',
  'merchants',
  'acquirer_authorizations',
  'outbox_events',
  'inbox_events',
  'ledger_transactions',
] as const;
export type LockedTable = (typeof lockedTables)[number];

export interface PlanOptions {
  readonly seed: number;
  readonly operations: number;
  /** How long the workload is spread over and faults are injected, in ms. */
  readonly windowMs: number;
  /** Faults per minute of window, on average. */
  readonly faultsPerMinute: number;
  /** Longer than the gateway's DATABASE_LOCK_TIMEOUT_MS, so a held lock is felt. */
  readonly lockTimeoutMs: number;
}

export interface Plan {
  readonly options: PlanOptions;
  readonly operations: readonly Operation[];
  readonly faults: readonly Fault[];
}

const sourceWeights: Record<Source, number> = { tok_visa: 55, tok_chargeDeclined: 15, tok_timeout: 10, tok_slow: 20 };
const currencies = ['EUR', 'USD', 'JPY', 'GBP'];
const invalidKinds: readonly InvalidTextKind[] = [
  'nul-in-description',
  'lone-surrogate-in-description',
  'description-too-long',
  'metadata-value-too-long',
  'metadata-key-too-long',
  'nul-in-metadata-key',
  'unsafe-integer-in-metadata',
];
export type InvalidRefundKind = 'nul-in-refund-reason' | 'refund-reason-too-long';

function chargeInput(random: Random, source: Source): Record<string, unknown> {
  const input: Record<string, unknown> = {
    amount: random.chance(0.1) ? 99_999_999 : random.int(1, 50_000),
    currency: random.pick(currencies),
    source,
  };
  if (random.chance(0.5)) input.description = hostileText(random);
  if (random.chance(0.35)) {
    input.metadata = {
      order: `ord_${random.int(1, 1_000_000)}`,
      note: hostileText(random, 120),
      quantity: random.int(-1_000, 1_000),
      price: random.int(0, 100_000) / 100,
      gift: random.chance(0.5),
      coupon: null,
      'key \'with\' "quotes"': hostileText(random, 40),
      // A key of exactly the maximum length, itself hostile text.
      [hostileText(random, metadataKeyLengthMax).padEnd(metadataKeyLengthMax, 'k')]: hostileText(
        random,
        metadataValueLengthMax,
      ),
    };
  }
  return input;
}

type PlannedBase = Omit<OperationBase, 'inputJson' | 'delivery' | 'comesBack'>;

/** Most abandoned clients come back after the faults; some never do. */
function comesBack(random: Random, delivery: Delivery): boolean {
  return delivery !== 'abandon' || random.chance(0.6);
}

function planReuse(random: Random, delivery: Delivery, source: Source): Reuse | null {
  // tok_timeout never gets a final answer, so nothing can be checked against a reuse of its key.
  if (delivery === 'abandon' || source === 'tok_timeout' || !random.chance(0.2)) return null;
  return random.chance(0.5) ? { when: 'after' } : { when: 'during', delayMs: random.int(0, 400) };
}

function planCharge(random: Random, base: PlannedBase): ChargeOperation {
  const source = random.weighted(sourceWeights);
  const input = chargeInput(random, source);
  const delivery = random.weighted<Delivery>({ single: 50, duplicate: 20, concurrent: 20, abandon: 10 });
  const reuse = planReuse(random, delivery, source);
  const reuseInput =
    reuse === null ? null : { ...input, amount: (input.amount as number) === 1 ? 2 : (input.amount as number) - 1 };
  return {
    ...base,
    kind: 'charge',
    delivery,
    comesBack: comesBack(random, delivery),
    source,
    inputJson: JSON.stringify(input),
    reuse,
    reuseInputJson: reuseInput === null ? null : JSON.stringify(reuseInput),
  };
}

/**
 * Refunds of one earlier charge: one partial or full, or several started at the same moment
 * (they all wait for the charge's answer, then go at once) that together may exceed it.
 */
function planRefunds(
  random: Random,
  charge: ChargeOperation,
  next: () => PlannedBase,
  group: number,
): RefundOperation[] {
  const amount = (JSON.parse(charge.inputJson) as { amount: number }).amount;
  const concurrent = random.chance(0.4);
  const count = concurrent ? random.int(2, 4) : 1;
  let groupStartMs: number | null = null;
  return Array.from({ length: count }, () => {
    const base = next();
    groupStartMs ??= Math.max(base.startMs, charge.startMs);
    const whole = random.chance(0.25);
    const input: Record<string, unknown> = { chargeId: '$chargeId' };
    if (!whole) input.amount = random.int(1, Math.max(1, Math.ceil((amount * 2) / count)));
    if (random.chance(0.4)) input.reason = hostileText(random);
    const delivery = concurrent
      ? 'single'
      : random.weighted<Delivery>({ single: 60, duplicate: 15, concurrent: 15, abandon: 10 });
    return {
      ...base,
      startMs: concurrent ? groupStartMs : Math.max(base.startMs, charge.startMs),
      kind: 'refund' as const,
      delivery,
      comesBack: comesBack(random, delivery),
      chargeOperation: charge.index,
      group: concurrent ? group : null,
      inputJson: JSON.stringify(input),
    };
  });
}

function planInvalid(random: Random, base: PlannedBase, charges: readonly ChargeOperation[]): InvalidOperation {
  const refundable = charges.filter((charge) => charge.source === 'tok_visa');
  if (refundable.length > 0 && random.chance(0.25)) {
    const charge = random.pick(refundable);
    const what = random.pick<InvalidRefundKind>(['nul-in-refund-reason', 'refund-reason-too-long']);
    return {
      ...base,
      kind: 'invalid',
      delivery: 'single',
      comesBack: true,
      mutation: 'refundCharge',
      what,
      chargeOperation: charge.index,
      inputJson: JSON.stringify({ chargeId: '$chargeId', amount: 1, reason: invalidRefundReason(what) }),
    };
  }
  const what = random.pick(invalidKinds);
  return {
    ...base,
    kind: 'invalid',
    delivery: 'single',
    comesBack: true,
    mutation: 'createCharge',
    what,
    chargeOperation: null,
    inputJson: invalidChargeInputJson(random, what, random.int(1, 10_000)),
  };
}

export function planWorkload(random: Random, options: PlanOptions): Operation[] {
  const operations: Operation[] = [];
  const charges: ChargeOperation[] = [];
  let nextIndex = 0;
  const base = () => {
    const index = nextIndex++;
    return {
      index,
      key: `sim-${options.seed}-${index}`,
      startMs: random.int(0, Math.floor(options.windowMs * 0.85)),
      api: random.int(0, 1) as 0 | 1,
    };
  };
  let group = 0;
  while (operations.length < options.operations) {
    const roll = random.next();
    if (roll < 0.2 && charges.length > 0) {
      const refunds = planRefunds(random, random.pick(charges), base, group++);
      for (const refund of refunds) operations.push(refund);
    } else if (roll < 0.3) {
      operations.push(planInvalid(random, base(), charges));
    } else {
      const charge = planCharge(random, base());
      charges.push(charge);
      operations.push(charge);
    }
  }
  return operations;
}

function planFault(random: Random, atMs: number, options: PlanOptions): Fault {
  const kind = random.weighted<FaultKind>({
    kill: 30,
    'kill-repeatedly': 6,
    'postgres-stop': 12,
    'terminate-backends': 8,
    lock: 10,
    'redis-restart': 8,
    'redis-flushall': 6,
    'redis-freeze': 8,
    'lose-responses': 12,
  });
  switch (kind) {
    case 'kill':
      return {
        kind,
        atMs,
        target: random.pick(processNames),
        signal: random.chance(0.7) ? 'SIGKILL' : 'SIGTERM',
        downMs: random.int(0, 3_000),
      };
    case 'kill-repeatedly':
      return {
        kind,
        atMs,
        target: random.pick(['worker-1', 'worker-2', 'relay-1'] as const),
        times: random.int(2, 4),
        upMs: random.int(200, 2_500),
      };
    case 'postgres-stop':
      // Past 3 s on purpose: that is where in-flight jobs used to run out of attempts.
      return { kind, atMs, mode: random.chance(0.5) ? 'fast' : 'immediate', downMs: random.int(500, 9_000) };
    case 'lock':
      return {
        kind,
        atMs,
        table: random.pick(lockedTables),
        holdMs: random.int(options.lockTimeoutMs + 200, options.lockTimeoutMs * 6),
      };
    case 'redis-restart':
      return { kind, atMs, downMs: random.int(0, 3_000) };
    case 'redis-freeze':
      return { kind, atMs, downMs: random.int(300, 5_000) };
    case 'lose-responses':
      return { kind, atMs, api: random.int(0, 1) as 0 | 1, count: random.int(1, 6) };
    case 'terminate-backends':
    case 'redis-flushall':
      return { kind, atMs };
  }
}

/** Which resource a fault takes down, and for how long: faults on one resource never overlap. */
function occupies(fault: Fault): { resource: string; untilMs: number } {
  switch (fault.kind) {
    case 'kill':
      return { resource: fault.target, untilMs: fault.atMs + fault.downMs + 5_000 };
    case 'kill-repeatedly':
      return { resource: fault.target, untilMs: fault.atMs + fault.times * (fault.upMs + 5_000) };
    case 'postgres-stop':
    case 'terminate-backends':
    case 'lock':
      return {
        resource: 'postgres',
        untilMs: fault.atMs + ('downMs' in fault ? fault.downMs : 'holdMs' in fault ? fault.holdMs : 0) + 1_000,
      };
    case 'redis-restart':
    case 'redis-flushall':
    case 'redis-freeze':
      return { resource: 'redis', untilMs: fault.atMs + ('downMs' in fault ? fault.downMs : 0) + 1_000 };
    case 'lose-responses':
      return { resource: `proxy-${fault.api}`, untilMs: fault.atMs + 500 };
  }
}

export function planFaults(random: Random, options: PlanOptions): Fault[] {
  const count = Math.round((options.faultsPerMinute * options.windowMs) / 60_000);
  const busyUntil = new Map<string, number>();
  const faults: Fault[] = [];
  const times = Array.from({ length: count }, () => random.int(0, Math.floor(options.windowMs * 0.9))).sort(
    (a, b) => a - b,
  );
  for (const atMs of times) {
    const fault = planFault(random, atMs, options);
    const { resource, untilMs } = occupies(fault);
    if ((busyUntil.get(resource) ?? -1) > atMs) continue;
    busyUntil.set(resource, untilMs);
    faults.push(fault);
  }
  return faults;
}

export function planSchedule(options: PlanOptions): Plan {
  const random = new Random(options.seed);
  return {
    options,
    operations: planWorkload(random.fork('workload'), options),
    faults: planFaults(random.fork('faults'), options),
  };
}

/** One line per fault, for the timeline. */
export function describeFault(fault: Fault): string {
  switch (fault.kind) {
    case 'kill':
      return `${fault.signal} ${fault.target}, restart after ${fault.downMs} ms`;
    case 'kill-repeatedly':
      return `SIGKILL ${fault.target} ${fault.times} times, each ${fault.upMs} ms after it is back`;
    case 'postgres-stop':
      return `pg_ctl stop -m ${fault.mode}, start after ${fault.downMs} ms`;
    case 'terminate-backends':
      return 'pg_terminate_backend of every gateway connection';
    case 'lock':
      return `LOCK TABLE ${fault.table} IN ACCESS EXCLUSIVE MODE for ${fault.holdMs} ms`;
    case 'redis-restart':
      return `redis-server killed and started empty after ${fault.downMs} ms`;
    case 'redis-flushall':
      return 'FLUSHALL';
    case 'redis-freeze':
      return `redis-server SIGSTOP, SIGCONT after ${fault.downMs} ms`;
    case 'lose-responses':
      return `proxy of api-${fault.api + 1} loses the next ${fault.count} responses`;
  }
}
