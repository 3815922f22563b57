// Used by test_transport.py: the JavaScript SDK v3's default Kinesis client (its HTTP/2
// handler) against URL: create STREAM, put one record, read it back, print {"records": [...]}
// (base64). Over https:// the certificate is trusted through NODE_EXTRA_CA_CERTS, set by the test.
//   node sdk_roundtrip.mjs URL STREAM
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH, '/'));
const {
  KinesisClient, CreateStreamCommand, DescribeStreamSummaryCommand, PutRecordCommand,
  GetShardIteratorCommand, GetRecordsCommand,
} = require('@aws-sdk/client-kinesis');

const [url, name] = process.argv.slice(2);
const kinesis = new KinesisClient({
  endpoint: url,
  region: 'us-east-1',
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
  maxAttempts: 1,
});
await kinesis.send(new CreateStreamCommand({ StreamName: name, ShardCount: 1 }));
for (let i = 0; i < 200; i++) {
  const d = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: name }));
  if (d.StreamDescriptionSummary.StreamStatus === 'ACTIVE') break;
  await new Promise((r) => setTimeout(r, 50));
}
await kinesis.send(new PutRecordCommand({ StreamName: name, PartitionKey: 'k', Data: Buffer.from('hello h2') }));
const it = await kinesis.send(new GetShardIteratorCommand({
  StreamName: name, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON',
}));
const got = await kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator }));
console.log(JSON.stringify({ records: got.Records.map((r) => Buffer.from(r.Data).toString('base64')) }));
kinesis.destroy();
