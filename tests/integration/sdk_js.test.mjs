// The AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis) against kinesd: streams, binary
// records, shards, tags and error answers, as a JavaScript application sees them.
//
//   NODE_PATH=$PWD/build/npm/node_modules node --test tests/integration/*.test.mjs
//
// Starts build/kinesd (KINESD_BIN overrides; relative paths are taken from the repository root)
// on a free loopback port with a fresh data directory, and stops it with SIGTERM at the end,
// expecting exit status 0. With KINESD_ENDPOINT set, uses that endpoint and starts nothing.
// The SDK is loaded from build/npm/node_modules (tools/install-npm.sh installs it there): ESM
// imports ignore NODE_PATH, so it is resolved with createRequire from that directory.
//
// Transport: the SDK's Kinesis client defaults to its HTTP/2 handler, which on an http://
// endpoint speaks HTTP/2 with prior knowledge (no TLS, no Upgrade). The tests use that
// unmodified default client; one test also goes through the SDK's HTTP/1.1 handler
// (NodeHttpHandler, a dependency of @aws-sdk/client-kinesis), so both transports are covered.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(repoRoot, 'build', 'npm', '/'));
const {
  KinesisClient,
  AddTagsToStreamCommand,
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  ListStreamsCommand,
  ListTagsForStreamCommand,
  PutRecordCommand,
  PutRecordsCommand,
  RemoveTagsFromStreamCommand,
} = require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = createRequire(require.resolve('@aws-sdk/client-kinesis'))('@smithy/node-http-handler');

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
const TOP_HASH_KEY = (2n ** 128n - 1n).toString();
const LIMIT = { timeout: 20000 }; // per test
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

// ------------------------------------------------------------------------------------------
// The server

const remoteEndpoint = (process.env.KINESD_ENDPOINT || '').replace(/\/+$/, '');
let server = null; // { proc, dataDir, exited: Promise<{code, signal}>, output: string[] }
let endpoint;
let kinesis;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitHealthy(url, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) {
      throw new Error(`kinesd exited while starting:\n${server.output.join('')}`);
    }
    try {
      const res = await fetch(`${url}/healthcheck`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(20);
  }
  throw new Error(`kinesd did not answer GET /healthcheck within ${timeoutMs} ms:\n${server.output.join('')}`);
}

async function startKinesd() {
  const bin = path.resolve(repoRoot, process.env.KINESD_BIN || 'build/kinesd');
  if (!fs.existsSync(bin)) throw new Error(`${bin} does not exist: build it (make) or set KINESD_ENDPOINT`);
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kinesd-js-'));
  const args = [
    '--host', '127.0.0.1', '--port', String(port), '--data-dir', path.join(dataDir, 'data'),
    '--create-stream-ms', '0', '--delete-stream-ms', '0', '--update-stream-ms', '0', '--log-level', 'warn',
  ];
  const proc = spawn(bin, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  proc.stdout.on('data', (chunk) => output.push(chunk.toString()));
  proc.stderr.on('data', (chunk) => output.push(chunk.toString()));
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  server = { proc, dataDir, exited, output };
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(url);
  return url;
}

async function stopKinesd() {
  if (!server) return;
  const { proc, dataDir, exited, output } = server;
  try {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
    const { code, signal } = await exited;
    clearTimeout(timer);
    assert.equal(signal, null, `kinesd was killed by ${signal}:\n${output.join('')}`);
    assert.equal(code, 0, `kinesd exited with ${code} on SIGTERM:\n${output.join('')}`);
  } finally {
    server = null;
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------
// Helpers

function uniqueName(hint) {
  return `js-${hint}-${randomBytes(5).toString('hex')}`;
}

async function waitForStatus(name, wanted = 'ACTIVE', timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  let status;
  while (Date.now() < deadline) {
    const out = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    status = out.StreamDescriptionSummary.StreamStatus;
    if (status === wanted) return out.StreamDescriptionSummary;
    await sleep(20);
  }
  throw new Error(`stream ${name} still ${status}, not ${wanted}, after ${timeoutMs} ms`);
}

// Every record of a shard from TRIM_HORIZON, following NextShardIterator to an empty page.
async function readShard(name, shardId) {
  let iterator = (
    await kinesis.send(new GetShardIteratorCommand({ StreamName: name, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }))
  ).ShardIterator;
  assert.equal(typeof iterator, 'string');
  const records = [];
  for (let calls = 0; calls < 100; calls++) {
    const out = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator }));
    records.push(...out.Records);
    iterator = out.NextShardIterator;
    if (out.Records.length === 0 || !iterator) return records;
  }
  throw new Error(`shard ${shardId} of ${name} never reached its tip`);
}

// Compares bytes only: the SDK may hand back a Buffer or a plain Uint8Array.
function assertBytes(actual, expected, what) {
  assert.ok(actual instanceof Uint8Array, `${what}: Data is not a Uint8Array`);
  assert.deepStrictEqual(Buffer.from(actual), Buffer.from(expected), what);
}

async function assertRejects(promise, name, message) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.name, name, `${err.name}: ${err.message}`);
    assert.equal(err.message, message);
    assert.equal(err.$metadata?.httpStatusCode, 400);
    return true;
  });
}

// ------------------------------------------------------------------------------------------
// Setup: one 2-shard stream for the whole file

const stream = uniqueName('sdk');
const SHARDS = 2;
let startedAt;

// The client configuration of every test; extra is merged in (e.g. a request handler).
function makeClient(extra = {}) {
  return new KinesisClient({
    region: REGION,
    endpoint,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
    maxAttempts: 1,
    ...extra,
  });
}

// kinesalite (KINESD_ENDPOINT pointing at the npm package) is recognised as conftest.py does:
// KINESD_REMOTE_KINESALITE=1/0 forces the answer, otherwise ListStreams without StreamSummaries.
async function remoteIsKinesalite() {
  if (!remoteEndpoint) return false;
  const forced = process.env.KINESD_REMOTE_KINESALITE;
  if (forced !== undefined) return !['', '0', 'false', 'no'].includes(forced);
  const out = await kinesis.send(new ListStreamsCommand({ Limit: 1 }));
  return out.StreamSummaries === undefined;
}

let kinesalite = false;

before(async () => {
  endpoint = remoteEndpoint || (await startKinesd());
  // kinesalite speaks HTTP/1.1 only, so against it the suite uses the HTTP/1.1 handler
  kinesis = kinesalite ? makeClient({ requestHandler: new NodeHttpHandler({ requestTimeout: 10000 }) }) : makeClient();
  kinesalite = await remoteIsKinesalite();
  startedAt = Date.now();
  await kinesis.send(new CreateStreamCommand({ StreamName: stream, ShardCount: SHARDS }));
  await waitForStatus(stream);
});

after(async () => {
  try {
    if (kinesis) {
      await kinesis.send(new DeleteStreamCommand({ StreamName: stream })).catch(() => {});
      kinesis.destroy();
    }
  } finally {
    await stopKinesd();
  }
});

// ------------------------------------------------------------------------------------------
// Tests

test("the SDK's HTTP/1.1 handler gets the same answers as its default HTTP/2 one", LIMIT, async () => {
  const client = makeClient({ requestHandler: new NodeHttpHandler({ requestTimeout: 10000 }) }); // HTTP/1.1
  try {
    const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
    assert.equal(out.StreamDescriptionSummary.StreamName, stream);
    assert.equal(out.StreamDescriptionSummary.StreamStatus, 'ACTIVE');
    const put = await client.send(new PutRecordCommand({ StreamName: stream, PartitionKey: 'h2', Data: ALL_BYTES }));
    assert.match(put.SequenceNumber, /^\d+$/);
  } finally {
    client.destroy();
  }
});

test('CreateStream makes a stream that DescribeStreamSummary reports ACTIVE with its shards', LIMIT, async () => {
  const summary = await waitForStatus(stream);
  assert.equal(summary.StreamName, stream);
  assert.equal(summary.StreamARN, `arn:aws:kinesis:${REGION}:${ACCOUNT}:stream/${stream}`);
  assert.equal(summary.StreamStatus, 'ACTIVE');
  assert.equal(summary.OpenShardCount, SHARDS);
  assert.equal(summary.RetentionPeriodHours, 24);
  assert.ok(summary.StreamCreationTimestamp instanceof Date, 'StreamCreationTimestamp is not a Date');
});

test('PutRecord with all 256 byte values comes back byte for byte from GetRecords at TRIM_HORIZON', LIMIT, async () => {
  const put = await kinesis.send(new PutRecordCommand({ StreamName: stream, PartitionKey: 'all-bytes', Data: ALL_BYTES }));
  assert.match(put.ShardId, /^shardId-\d{12}$/);
  assert.match(put.SequenceNumber, /^\d+$/);

  const records = await readShard(stream, put.ShardId);
  const found = records.filter((r) => r.SequenceNumber === put.SequenceNumber);
  assert.equal(found.length, 1, `sequence number ${put.SequenceNumber} not read back once from ${put.ShardId}`);
  const [record] = found;
  assert.equal(record.PartitionKey, 'all-bytes');
  assertBytes(record.Data, ALL_BYTES, 'PutRecord data');
  assert.ok(record.ApproximateArrivalTimestamp instanceof Date, 'ApproximateArrivalTimestamp is not a Date');
  const arrival = record.ApproximateArrivalTimestamp.getTime();
  assert.ok(arrival >= startedAt - 5000 && arrival <= Date.now() + 5000, `arrival ${record.ApproximateArrivalTimestamp.toISOString()}`);
});

test('PutRecord with an empty payload comes back as empty Data', LIMIT, async () => {
  const put = await kinesis.send(new PutRecordCommand({ StreamName: stream, PartitionKey: 'empty', Data: new Uint8Array(0) }));
  const [record] = (await readShard(stream, put.ShardId)).filter((r) => r.SequenceNumber === put.SequenceNumber);
  assert.ok(record, `sequence number ${put.SequenceNumber} not read back from ${put.ShardId}`);
  assert.equal(record.PartitionKey, 'empty');
  assertBytes(record.Data, new Uint8Array(0), 'empty PutRecord data');
});

test('PutRecords stores binary and empty payloads, each read back exactly where it was acknowledged', LIMIT, async () => {
  const entries = [
    { PartitionKey: 'batch-all-bytes', Data: ALL_BYTES },
    { PartitionKey: 'batch-empty', Data: new Uint8Array(0) },
    { PartitionKey: 'batch-reversed', Data: ALL_BYTES.slice().reverse() },
    { PartitionKey: 'batch-random', Data: new Uint8Array(randomBytes(1000)) },
    { PartitionKey: 'batch-bottom', Data: Uint8Array.of(0, 0, 0), ExplicitHashKey: '0' },
    { PartitionKey: 'batch-top', Data: Uint8Array.of(255, 255, 255), ExplicitHashKey: TOP_HASH_KEY },
    { PartitionKey: 'ключ-🔑', Data: new TextEncoder().encode('ünïcödé 🔑') },
  ];
  const out = await kinesis.send(new PutRecordsCommand({ StreamName: stream, Records: entries }));
  assert.equal(out.FailedRecordCount, 0);
  assert.equal(out.Records.length, entries.length);
  for (const r of out.Records) {
    assert.match(r.ShardId, /^shardId-\d{12}$/);
    assert.match(r.SequenceNumber, /^\d+$/);
    assert.equal(r.ErrorCode, undefined);
  }
  assert.equal(out.Records[4].ShardId, 'shardId-000000000000');
  assert.equal(out.Records[5].ShardId, `shardId-${String(SHARDS - 1).padStart(12, '0')}`);

  const shards = {};
  for (const id of new Set(out.Records.map((r) => r.ShardId))) shards[id] = await readShard(stream, id);
  entries.forEach((entry, i) => {
    const { ShardId, SequenceNumber } = out.Records[i];
    const found = shards[ShardId].filter((r) => r.SequenceNumber === SequenceNumber);
    assert.equal(found.length, 1, `entry ${i}: ${SequenceNumber} not read back once from ${ShardId}`);
    assert.equal(found[0].PartitionKey, entry.PartitionKey, `entry ${i}`);
    assertBytes(found[0].Data, entry.Data, `entry ${i}`);
    assert.ok(found[0].ApproximateArrivalTimestamp instanceof Date, `entry ${i}: ApproximateArrivalTimestamp`);
  });
  // Records of one shard come back in acknowledgement order.
  for (const [id, records] of Object.entries(shards)) {
    const numbers = records.map((r) => BigInt(r.SequenceNumber));
    numbers.slice(1).forEach((n, i) => assert.ok(numbers[i] < n, `${id}: ${n} after ${numbers[i]}`));
  }
});

test('ListStreams names the stream', LIMIT, async () => {
  const names = [];
  let out = { HasMoreStreams: true, StreamNames: [] };
  while (out.HasMoreStreams) {
    const start = out.StreamNames.at(-1);
    out = await kinesis.send(new ListStreamsCommand(start ? { ExclusiveStartStreamName: start } : {}));
    assert.equal(typeof out.HasMoreStreams, 'boolean');
    names.push(...out.StreamNames);
  }
  assert.ok(names.includes(stream), `${stream} not in ${names.join(', ')}`);
  if (!kinesalite) {
    const first = await kinesis.send(new ListStreamsCommand({}));
    const summary = (first.StreamSummaries || []).find((s) => s.StreamName === stream);
    assert.ok(summary, 'ListStreams has no StreamSummaries entry for the stream');
    assert.equal(summary.StreamARN, `arn:aws:kinesis:${REGION}:${ACCOUNT}:stream/${stream}`);
    assert.equal(summary.StreamStatus, 'ACTIVE');
    assert.ok(summary.StreamCreationTimestamp instanceof Date, 'StreamCreationTimestamp is not a Date');
  }
});

test('ListShards lists every shard with hash key ranges that cover 0 to 2^128-1 without gaps', LIMIT, async () => {
  const out = await kinesis.send(new ListShardsCommand({ StreamName: stream }));
  assert.equal(out.NextToken, undefined);
  assert.deepEqual(
    out.Shards.map((s) => s.ShardId),
    Array.from({ length: SHARDS }, (_, i) => `shardId-${String(i).padStart(12, '0')}`),
  );
  let next = 0n;
  for (const shard of out.Shards) {
    assert.equal(BigInt(shard.HashKeyRange.StartingHashKey), next, shard.ShardId);
    next = BigInt(shard.HashKeyRange.EndingHashKey) + 1n;
    assert.match(shard.SequenceNumberRange.StartingSequenceNumber, /^\d+$/);
    assert.equal(shard.SequenceNumberRange.EndingSequenceNumber, undefined);
    assert.equal(shard.ParentShardId, undefined);
  }
  assert.equal(next, 2n ** 128n);
});

test('tags added with AddTagsToStream are listed by ListTagsForStream until RemoveTagsFromStream removes them', LIMIT, async () => {
  const listTags = async () => {
    const out = await kinesis.send(new ListTagsForStreamCommand({ StreamName: stream }));
    assert.equal(out.HasMoreTags, false);
    return out.Tags.map(({ Key, Value }) => [Key, Value]).sort();
  };
  assert.deepEqual(await listTags(), []);
  await kinesis.send(new AddTagsToStreamCommand({ StreamName: stream, Tags: { team: 'data', empty: '', 'cost.centre': '42' } }));
  assert.deepEqual(await listTags(), [['cost.centre', '42'], ['empty', ''], ['team', 'data']]);
  await kinesis.send(new RemoveTagsFromStreamCommand({ StreamName: stream, TagKeys: ['team', 'cost.centre', 'never-set'] }));
  assert.deepEqual(await listTags(), [['empty', '']]);
  await kinesis.send(new RemoveTagsFromStreamCommand({ StreamName: stream, TagKeys: ['empty'] }));
  assert.deepEqual(await listTags(), []);
});

test('a missing stream fails with ResourceNotFoundException naming the stream and the account', LIMIT, async () => {
  const missing = uniqueName('missing');
  const message = `Stream ${missing} under account ${ACCOUNT} not found.`;
  await assertRejects(kinesis.send(new DescribeStreamSummaryCommand({ StreamName: missing })), 'ResourceNotFoundException', message);
  await assertRejects(
    kinesis.send(new PutRecordCommand({ StreamName: missing, PartitionKey: 'k', Data: ALL_BYTES })),
    'ResourceNotFoundException',
    message,
  );
});

test('a stream name with characters outside [a-zA-Z0-9_.-] fails with ValidationException', LIMIT, async () => {
  await assertRejects(
    kinesis.send(new CreateStreamCommand({ StreamName: 'bad name!', ShardCount: 1 })),
    'ValidationException',
    "1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: " +
      'Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+',
  );
});
