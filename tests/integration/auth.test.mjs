// SigV4 verification (--auth FILE) with the AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis,
// its default HTTP/2 handler): keys from the credentials file work; a wrong secret, an unknown
// key, a skewed clock, and a body or signed header changed after signing are refused with AWS's
// errors. The SDK's model also has the resource operations (tags and policies on stream ARNs,
// account settings) that the installed boto3 lacks: they are called here, signed. Starts its own kinesd (KINESD_BIN, default build/kinesd) with a fresh data directory
// and credentials file; skipped with KINESD_ENDPOINT (it needs a server it configures itself).

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
  KinesisClient, CreateStreamCommand, ListStreamsCommand, PutRecordCommand, TagResourceCommand, UntagResourceCommand,
  ListTagsForResourceCommand, PutResourcePolicyCommand, GetResourcePolicyCommand, DeleteResourcePolicyCommand,
  DescribeAccountSettingsCommand, UpdateAccountSettingsCommand,
} = require('@aws-sdk/client-kinesis');

const REGION = 'us-east-1';
const ALICE = { accessKeyId: 'AKIAJSALICE000000001', secretAccessKey: 'js/alice+Secret/0123456789abcdefghij' };
const BAD_SIGNATURE =
  'The request signature we calculated does not match the signature you provided. Check your AWS ' +
  'Secret Access Key and signing method. Consult the service documentation for details.';
const remote = Boolean(process.env.KINESD_ENDPOINT);
const LIMIT = { timeout: 20000, skip: remote ? 'KINESD_ENDPOINT is set: this suite starts its own kinesd' : false };

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
  if (remote) return;
  const bin = path.resolve(repoRoot, process.env.KINESD_BIN || 'build/kinesd');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kinesd-js-auth-'));
  const creds = path.join(dir, 'credentials');
  fs.writeFileSync(creds, `[alice]\naws_access_key_id = ${ALICE.accessKeyId}\naws_secret_access_key = ${ALICE.secretAccessKey}\n`);
  const port = await freePort();
  const args = ['--host', '127.0.0.1', '--port', String(port), '--data-dir', path.join(dir, 'data'),
    '--create-stream-ms', '0', '--log-level', 'warn', '--no-limits', '--auth', creds];
  const proc = spawn(bin, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  proc.stdout.on('data', (c) => output.push(c.toString()));
  proc.stderr.on('data', (c) => output.push(c.toString()));
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  server = { proc, dir, exited, output };
  endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      const res = await fetch(`${endpoint}/healthcheck`);
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      if (Date.now() > deadline) throw new Error(`kinesd did not start:\n${output.join('')}`);
    }
    await sleep(20);
  }
});

after(async () => {
  if (!server) return;
  server.proc.kill('SIGTERM');
  const { code } = await server.exited;
  fs.rmSync(server.dir, { recursive: true, force: true });
  assert.equal(code, 0, server.output.join(''));
});

function client(credentials, extra = {}) {
  return new KinesisClient({ endpoint, region: REGION, credentials, maxAttempts: 1, ...extra });
}

async function rejects(promise, name, message) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.name, name, `${err.name}: ${err.message}`);
    assert.equal(err.$metadata.httpStatusCode, 400);
    if (message instanceof RegExp) assert.match(err.message, message);
    else if (message) assert.equal(err.message, message);
    return true;
  });
}

test('the JavaScript SDK signs with a key from the file and its calls succeed', LIMIT, async () => {
  const k = client(ALICE);
  const name = `js-auth-${randomBytes(4).toString('hex')}`;
  await k.send(new CreateStreamCommand({ StreamName: name, ShardCount: 1 }));
  const out = await k.send(new ListStreamsCommand({}));
  assert.ok(out.StreamNames.includes(name));
  k.destroy();
});

test('a wrong secret is an InvalidSignatureException with the canonical request', LIMIT, async () => {
  const k = client({ ...ALICE, secretAccessKey: 'wrong' });
  await rejects(k.send(new ListStreamsCommand({})), 'InvalidSignatureException',
    new RegExp(`^${BAD_SIGNATURE.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n\\nThe Canonical String for this request should have been\\n'POST\\n/\\n`));
  k.destroy();
});

test('an unknown access key is an UnrecognizedClientException', LIMIT, async () => {
  const k = client({ accessKeyId: 'AKIAJSNOBODY00000000', secretAccessKey: ALICE.secretAccessKey });
  await rejects(k.send(new ListStreamsCommand({})), 'UnrecognizedClientException',
    'The security token included in the request is invalid.');
  k.destroy();
});

test('a clock six minutes behind is refused as an expired signature', LIMIT, async () => {
  const k = client(ALICE, { systemClockOffset: -6 * 60 * 1000 });
  await rejects(k.send(new ListStreamsCommand({})), 'InvalidSignatureException',
    /^Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)$/);
  k.destroy();
});

// A middleware at the deserialize step runs after the request was signed, just before it is sent.
function tamperAfterSigning(k, fn) {
  k.middlewareStack.add((next) => async (args) => { fn(args.request); return next(args); },
    { step: 'deserialize', name: 'tamperAfterSigning' });
}

test('a body changed after signing is refused', LIMIT, async () => {
  const k = client(ALICE);
  tamperAfterSigning(k, (req) => { req.body = req.body.replace('"pk"', '"pq"'); });
  await rejects(k.send(new PutRecordCommand({ StreamName: 'any', PartitionKey: 'pk', Data: Buffer.from('x') })),
    'InvalidSignatureException', new RegExp(`^${BAD_SIGNATURE.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  k.destroy();
});

test('a signed header changed after signing is refused', LIMIT, async () => {
  const k = client(ALICE);
  tamperAfterSigning(k, (req) => { req.headers['x-amz-target'] = 'Kinesis_20131202.DescribeLimits'; });
  await rejects(k.send(new ListStreamsCommand({})), 'InvalidSignatureException',
    /x-amz-target:Kinesis_20131202\.DescribeLimits\n/);
  k.destroy();
});

test('tags and a resource policy on a stream ARN, and the account settings, through the SDK', LIMIT, async () => {
  const k = client(ALICE);
  const name = `js-res-${randomBytes(4).toString('hex')}`;
  await k.send(new CreateStreamCommand({ StreamName: name, ShardCount: 1 }));
  const arn = `arn:aws:kinesis:${REGION}:000000000000:stream/${name}`;
  await k.send(new TagResourceCommand({ ResourceARN: arn, Tags: { b: '2', a: '1' } }));
  await k.send(new UntagResourceCommand({ ResourceARN: arn, TagKeys: ['b'] }));
  const tags = await k.send(new ListTagsForResourceCommand({ ResourceARN: arn }));
  assert.deepEqual(tags.Tags, [{ Key: 'a', Value: '1' }]);
  const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: '111122223333' },
    Action: 'kinesis:GetRecords', Resource: arn }] });
  await k.send(new PutResourcePolicyCommand({ ResourceARN: arn, Policy: policy }));
  assert.equal((await k.send(new GetResourcePolicyCommand({ ResourceARN: arn }))).Policy, policy);
  await k.send(new DeleteResourcePolicyCommand({ ResourceARN: arn }));
  assert.equal((await k.send(new GetResourcePolicyCommand({ ResourceARN: arn }))).Policy, '{}');
  const before = await k.send(new DescribeAccountSettingsCommand({}));
  assert.equal(before.MinimumThroughputBillingCommitment.Status, 'DISABLED');
  const on = await k.send(new UpdateAccountSettingsCommand({ MinimumThroughputBillingCommitment: { Status: 'ENABLED' } }));
  assert.equal(on.MinimumThroughputBillingCommitment.Status, 'ENABLED');
  assert.ok(on.MinimumThroughputBillingCommitment.StartedAt instanceof Date);
  k.destroy();
});
