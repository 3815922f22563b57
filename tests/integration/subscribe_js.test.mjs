// SubscribeToShard with the AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis), over its
// default HTTP/2 handler (h2c with prior knowledge on an http:// endpoint, h2 by ALPN on an https://
// one: kinesd serves TLS and cleartext on one port) and over its HTTP/1.1 handler (NodeHttpHandler): records written before and after subscribing arrive in order and
// byte-exact, an idle subscription gets empty events, and a subscription ends with
// --subscription-s. Starts its own build/kinesd (KINESD_BIN overrides) on a free loopback port.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  PutRecordCommand,
  RegisterStreamConsumerCommand,
  SubscribeToShardCommand,
} = require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = createRequire(require.resolve('@aws-sdk/client-kinesis'))('@smithy/node-http-handler');

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
const LIMIT = { timeout: 30000 };
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

let proc, dataDir, exited, endpoint;
const output = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

before(async () => {
  const bin = path.resolve(repoRoot, process.env.KINESD_BIN || 'build/kinesd');
  const port = await freePort();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kinesd-sub-js-'));
  proc = spawn(bin, ['--host', '127.0.0.1', '--port', String(port), '--data-dir', path.join(dataDir, 'data'),
    '--create-stream-ms', '0', '--register-consumer-ms', '0', '--subscription-s', '6', '--log-level', 'warn',
    '--no-limits', '--tls-self-signed'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', (c) => output.push(c.toString()));
  proc.stderr.on('data', (c) => output.push(c.toString()));
  exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      const res = await fetch(`${endpoint}/healthcheck`);
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`kinesd did not start:\n${output.join('')}`);
    await sleep(20);
  }
});

after(async () => {
  proc.kill('SIGTERM');
  const { code } = await exited;
  fs.rmSync(dataDir, { recursive: true, force: true });
  assert.equal(code, 0, `kinesd exited with ${code}:\n${output.join('')}`);
});

function client(handler, url = endpoint) {
  return new KinesisClient({
    endpoint: url, region: REGION, maxAttempts: 1,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    ...(handler ? { requestHandler: handler } : {}),
  });
}

async function streamWithConsumer(k, name) {
  await k.send(new CreateStreamCommand({ StreamName: name, ShardCount: 1 }));
  for (;;) {
    const d = await k.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    if (d.StreamDescriptionSummary.StreamStatus === 'ACTIVE') break;
    await sleep(20);
  }
  const arn = `arn:aws:kinesis:${REGION}:${ACCOUNT}:stream/${name}`;
  const c = await k.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: 'js' }));
  return c.Consumer.ConsumerARN;
}

async function roundTrip(k, name) {
  const arn = await streamWithConsumer(k, name);
  const put = async (data) => (await k.send(new PutRecordCommand({ StreamName: name, PartitionKey: 'p', Data: data })))
    .SequenceNumber;
  const before = [ALL_BYTES, new Uint8Array(0)];
  const seqs = [];
  for (const d of before) seqs.push(await put(d));
  const out = await k.send(new SubscribeToShardCommand({
    ConsumerARN: arn, ShardId: 'shardId-000000000000', StartingPosition: { Type: 'TRIM_HORIZON' },
  }));
  const got = [];
  let empty = 0;
  let wrote = false;
  for await (const ev of out.EventStream) {
    const e = ev.SubscribeToShardEvent;
    assert.ok(e, `unexpected event ${JSON.stringify(ev)}`);
    assert.ok(e.ContinuationSequenceNumber && e.ContinuationSequenceNumber !== '0');
    got.push(...e.Records);
    if (e.Records.length === 0) empty++;
    if (got.length === before.length && !wrote) {
      wrote = true;
      seqs.push(await put(Uint8Array.from([9, 8, 7])));
    }
  }
  // the subscription ended after --subscription-s, having heard heartbeats while idle
  assert.deepEqual(got.map((r) => r.SequenceNumber), seqs);
  assert.deepEqual(got.map((r) => Array.from(r.Data)), [...before, Uint8Array.from([9, 8, 7])].map((d) => Array.from(d)));
  assert.ok(empty >= 1, 'no empty event while idle');
}

test('SubscribeToShard over the default HTTP/2 handler (h2c)', LIMIT, async () => {
  await roundTrip(client(), 'js-sub-h2');
});

test('SubscribeToShard over HTTP/2 on TLS (the default handler, ALPN h2)', LIMIT, async () => {
  // the certificate is the server's own self-signed one: this process trusts any
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  try {
    await roundTrip(client(undefined, endpoint.replace('http:', 'https:')), 'js-sub-h2-tls');
  } finally {
    delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  }
});

test('SubscribeToShard over the HTTP/1.1 handler (NodeHttpHandler)', LIMIT, async () => {
  await roundTrip(client(new NodeHttpHandler()), 'js-sub-h1');
});
