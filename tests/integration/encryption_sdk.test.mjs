// The AWS Encryption SDK for JavaScript (@aws-crypto/client-node) with a KMS keyring pointed at
// kinesd's built-in KMS: a producer encrypts records client-side, PutRecords sends them, a
// consumer reads them with GetRecords and decrypts them with the same SDK. The SDK insists on
// key ARNs in every KMS answer and checks its own encryption context; a disabled key stops it.
//
//   NODE_PATH=$PWD/build/npm/node_modules node --test tests/integration/encryption_sdk.test.mjs
//
// Starts build/kinesd (KINESD_BIN overrides) on a free port with a fresh data directory; with
// KINESD_ENDPOINT set, uses that endpoint instead. Packages come from build/npm
// (tools/install-npm.sh), resolved with createRequire since ESM imports ignore NODE_PATH.

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
const { KmsKeyringNode, buildClient, CommitmentPolicy } = require('@aws-crypto/client-node');
const fromCrypto = createRequire(require.resolve('@aws-crypto/client-node'));
const {
  KMS, KMSClient, CreateKeyCommand, DisableKeyCommand, EnableKeyCommand, EnableKeyRotationCommand,
  GetKeyRotationStatusCommand, ListKeyRotationsCommand, RotateKeyOnDemandCommand,
} = fromCrypto('@aws-sdk/client-kms');
const {
  KinesisClient, CreateStreamCommand, DescribeStreamSummaryCommand, GetRecordsCommand, GetShardIteratorCommand,
  PutRecordsCommand, StartStreamEncryptionCommand,
} = require('@aws-sdk/client-kinesis');

const REGION = 'us-east-1';
const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const LIMIT = { timeout: 30000 };

let server = null;
let endpoint;

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

before(async () => {
  const remote = (process.env.KINESD_ENDPOINT || '').replace(/\/+$/, '');
  if (remote) {
    endpoint = remote;
    return;
  }
  const bin = path.resolve(repoRoot, process.env.KINESD_BIN || 'build/kinesd');
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kinesd-esdk-'));
  const proc = spawn(bin, ['--host', '127.0.0.1', '--port', String(port), '--data-dir', path.join(dataDir, 'data'),
    '--create-stream-ms', '0', '--log-level', 'warn'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  proc.stderr.on('data', (c) => output.push(c.toString()));
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  server = { proc, dataDir, exited, output };
  endpoint = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 500; i++) {
    try {
      const res = await fetch(`${endpoint}/healthcheck`);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not yet listening
    }
    await sleep(20);
  }
  throw new Error(`kinesd did not start:\n${output.join('')}`);
});

after(async () => {
  if (!server) return;
  server.proc.kill('SIGTERM');
  const { code } = await server.exited;
  fs.rmSync(server.dataDir, { recursive: true, force: true });
  assert.equal(code, 0, `kinesd exited with ${code}:\n${server.output.join('')}`);
});

function kmsClient() {
  return new KMSClient({ region: REGION, endpoint, credentials });
}

async function activeStream(kinesis, stream) {
  for (let i = 0; i < 200; i++) {
    const s = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
    if (s.StreamDescriptionSummary.StreamStatus === 'ACTIVE') return s.StreamDescriptionSummary;
    await sleep(50);
  }
  throw new Error(`${stream} did not become ACTIVE`);
}

async function readAll(kinesis, stream) {
  const { ShardIterator } = await kinesis.send(new GetShardIteratorCommand({
    StreamName: stream, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }));
  const out = await kinesis.send(new GetRecordsCommand({ ShardIterator }));
  return out.Records;
}

test('records encrypted with the Encryption SDK through kinesd\'s KMS go through PutRecords and decrypt', LIMIT, async () => {
  const kms = kmsClient();
  const { KeyMetadata } = await kms.send(new CreateKeyCommand({ Description: 'encryption sdk' }));
  const keyring = new KmsKeyringNode({ generatorKeyId: KeyMetadata.Arn, clientProvider: () => new KMS({ region: REGION, endpoint, credentials }) });
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

  const kinesis = new KinesisClient({ region: REGION, endpoint, credentials });
  const stream = `esdk-${randomBytes(4).toString('hex')}`;
  await kinesis.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
  for (let i = 0; i < 100; i++) {
    const s = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
    if (s.StreamDescriptionSummary.StreamStatus === 'ACTIVE') break;
    await sleep(50);
  }

  const plain = Array.from({ length: 5 }, (_, i) => `event ${i} ${randomBytes(8).toString('hex')}`);
  const context = { stream, purpose: 'test' };
  const records = [];
  for (const [i, text] of plain.entries()) {
    const { result } = await encrypt(keyring, Buffer.from(text), { encryptionContext: context });
    records.push({ PartitionKey: `pk${i}`, Data: result });
  }
  const put = await kinesis.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
  assert.equal(put.FailedRecordCount ?? 0, 0);

  const got = await readAll(kinesis, stream);
  assert.equal(got.length, plain.length);
  const opened = [];
  for (const r of got) {
    const { plaintext, messageHeader } = await decrypt(keyring, r.Data);
    assert.equal(messageHeader.encryptionContext.purpose, 'test');
    assert.equal(messageHeader.encryptedDataKeys[0].providerInfo, KeyMetadata.Arn);
    opened.push(plaintext.toString());
  }
  assert.deepEqual(opened, plain);

  // a disabled key stops the consumer; enabled again, it reads on
  await kms.send(new DisableKeyCommand({ KeyId: KeyMetadata.KeyId }));
  await assert.rejects(decrypt(keyring, got[0].Data));
  await kms.send(new EnableKeyCommand({ KeyId: KeyMetadata.KeyId }));
  assert.equal((await decrypt(keyring, got[0].Data)).plaintext.toString(), plain[0]);
});

test('a rotated key still opens what the SDK and a KMS-encrypted stream sealed under its older material', LIMIT, async () => {
  const kms = kmsClient();
  const { KeyMetadata } = await kms.send(new CreateKeyCommand({ Description: 'rotated' }));
  const keyring = new KmsKeyringNode({ generatorKeyId: KeyMetadata.Arn, clientProvider: () => new KMS({ region: REGION, endpoint, credentials }) });
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  await kms.send(new EnableKeyRotationCommand({ KeyId: KeyMetadata.KeyId, RotationPeriodInDays: 180 }));
  const status = await kms.send(new GetKeyRotationStatusCommand({ KeyId: KeyMetadata.KeyId }));
  assert.equal(status.KeyRotationEnabled, true);
  assert.equal(status.RotationPeriodInDays, 180);
  assert.ok(status.NextRotationDate > new Date(Date.now() + 179 * 86400e3));

  const kinesis = new KinesisClient({ region: REGION, endpoint, credentials });
  const stream = `esdk-rot-${randomBytes(4).toString('hex')}`;
  await kinesis.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
  await activeStream(kinesis, stream);
  await kinesis.send(new StartStreamEncryptionCommand({ StreamName: stream, EncryptionType: 'KMS', KeyId: KeyMetadata.Arn }));
  assert.equal((await activeStream(kinesis, stream)).EncryptionType, 'KMS');

  const send = async (text) => {
    const { result } = await encrypt(keyring, Buffer.from(text), { encryptionContext: { stream } });
    const put = await kinesis.send(new PutRecordsCommand({ StreamName: stream, Records: [{ PartitionKey: text, Data: result }] }));
    assert.equal(put.FailedRecordCount ?? 0, 0);
    assert.equal(put.EncryptionType, 'KMS');
  };
  await send('before the rotation');
  const rotated = await kms.send(new RotateKeyOnDemandCommand({ KeyId: KeyMetadata.KeyId }));
  assert.equal(rotated.KeyId, KeyMetadata.Arn);
  await send('after the rotation');
  const { Rotations } = await kms.send(new ListKeyRotationsCommand({ KeyId: KeyMetadata.KeyId }));
  assert.deepEqual(Rotations.map((r) => [r.KeyId, r.RotationType]), [[KeyMetadata.Arn, 'ON_DEMAND']]);

  const got = await readAll(kinesis, stream);
  assert.deepEqual(got.map((r) => r.EncryptionType), ['KMS', 'KMS']);
  const opened = [];
  for (const r of got) opened.push((await decrypt(keyring, r.Data)).plaintext.toString());
  assert.deepEqual(opened, ['before the rotation', 'after the rotation']);
});
