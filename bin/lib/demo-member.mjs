// One network member for `perseus demo`: starts, reports its id as a JSON line on stdout,
// drains and exits on "drain" from stdin (or when stdin closes: the demo went away).
import { createRequire } from 'node:module';

const { PerseusNetwork } = createRequire(import.meta.url)('../../index.js');

// Options come in an env var, not argv, so a password never shows in `ps`.
const net = new PerseusNetwork(JSON.parse(process.env.PERSEUS_DEMO_OPTIONS ?? process.argv[2]));
let info;
try {
  info = await net.start();
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: String(err.message).split('\n')[0] })}\n`);
  process.exit(1);
}
process.stdout.write(`${JSON.stringify({ started: info.instanceId })}\n`);

let draining = false;
const drain = async () => {
  if (draining) return;
  draining = true;
  await net.close();
  process.stdout.write(`${JSON.stringify({ drained: info.instanceId })}\n`);
  process.exit(0);
};
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  if (chunk.split('\n').some((line) => line.trim() === 'drain')) drain();
});
process.stdin.on('end', drain);
