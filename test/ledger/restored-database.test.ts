/**
 * A database restored from an earlier dump while Redis remembers the later history
 * (docs/contract.md §5 "Event identity survives a restored database"): events are applied, the
 * database is dumped (pg_dump), more events are applied (their job ids and done markers stay in
 * Redis), then the database is restored from the dump (dropped, created, pg_restore), so the
 * `bigserial` hands the lost events' ids out again. The new events under those same ids are each
 * applied exactly once: none is dropped by BullMQ as a duplicate job id, none skipped by a done
 * marker. Read back from the inbox and ledger rows. Its own database, its own Redis prefix.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, openLedgerQueue, type LedgerJobData } from '../../src/outbox/queue';
import { findPostgresBinary } from '../../scripts/ensure-services';
import { adminQuery } from '../helpers/database';
import { insertChargeEvents, insertMerchant, outboxEvents, type StoredOutboxEvent } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway | undefined;
let connection: Redis;
let queue: Queue<LedgerJobData>;
const folder = mkdtempSync(path.join(tmpdir(), 'pgw-restore-'));
const dumpFile = path.join(folder, 'before.dump');

beforeAll(async () => {
  environment = await createTestEnvironment();
  connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
  queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
});
afterAll(async () => {
  await gateway?.stop();
  await queue?.close();
  connection?.disconnect();
  await environment?.cleanup();
  rmSync(folder, { recursive: true, force: true });
});

function run(binary: string, args: string[]): void {
  const found = findPostgresBinary(binary);
  if (found === undefined) throw new Error(`${binary} not found`);
  const result = spawnSync(found, args, { encoding: 'utf8', timeout: 120_000 });
  if (result.status !== 0) throw new Error(`${binary} failed: ${result.stdout}${result.stderr}`);
}

/** Charge events from a new merchant, applied by the running gateway; returns them. */
async function applyNewEvents(count: number): Promise<StoredOutboxEvent[]> {
  const before = new Set((await outboxEvents(environment.database)).map((event) => event.id));
  await insertChargeEvents(environment.database, await insertMerchant(environment.database), count);
  await waitForLedgerToCatchUp(environment.database, 60_000);
  return (await outboxEvents(environment.database)).filter((event) => !before.has(event.id));
}

async function appliedOnce(events: readonly StoredOutboxEvent[]): Promise<{ inbox: number; postings: number }> {
  const uids = events.map((event) => event.event_uid);
  return {
    inbox: await environment.database.count(
      "SELECT count(*) FROM inbox_events WHERE consumer = 'ledger' AND event_uid = ANY($1::uuid[])",
      [uids],
    ),
    postings: await environment.database.count(
      'SELECT count(*) FROM ledger_transactions t JOIN outbox_events o ON o.id = t.event_id WHERE o.event_uid = ANY($1::uuid[])',
      [uids],
    ),
  };
}

describe('when the database is restored from an earlier dump while Redis remembers later events', () => {
  it('applies each event that reuses a lost id exactly once: no job dropped, no done marker skips it', async () => {
    gateway = await startTestGateway(environment, { ROLE: 'all' });
    const kept = await applyNewEvents(5);
    run('pg_dump', ['--format=custom', `--file=${dumpFile}`, environment.database.url]);
    const lost = await applyNewEvents(5);
    // Redis holds the lost events' completed jobs and done markers.
    for (const event of lost) {
      expect(await queue.getJob(jobIdFor(event.event_uid)), event.id).toBeDefined();
      expect(await connection.exists(gateway.worker!.doneMarkerKey(event.event_uid))).toBe(1);
    }
    await gateway.stop();
    gateway = undefined;

    // The restore: the database as it was at the dump, its sequences included.
    // FORCE ends every session on it; the test's pool reconnects on its next query.
    await adminQuery(environment.database.url, `DROP DATABASE ${environment.database.name} WITH (FORCE)`);
    await adminQuery(environment.database.url, `CREATE DATABASE ${environment.database.name}`);
    run('pg_restore', ['--exit-on-error', `--dbname=${environment.database.url}`, dumpFile]);
    expect(await environment.database.count('SELECT count(*) FROM outbox_events')).toBe(kept.length);
    expect(await environment.database.count('SELECT count(*) FROM inbox_events')).toBe(kept.length);

    gateway = await startTestGateway(environment, { ROLE: 'all' });
    const reborn = await applyNewEvents(5);
    // The same ids, handed out again; new UUIDs.
    expect(reborn.map((event) => event.id)).toEqual(lost.map((event) => event.id));
    expect(reborn.map((event) => event.event_uid)).not.toEqual(lost.map((event) => event.event_uid));

    expect(await appliedOnce(reborn)).toEqual({ inbox: reborn.length, postings: reborn.length });
    expect(await appliedOnce(kept)).toEqual({ inbox: kept.length, postings: kept.length });
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(
      kept.length + reborn.length,
    );
    expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
    await expectLedgerConsistent(environment.database);
  }, 180_000);
});
