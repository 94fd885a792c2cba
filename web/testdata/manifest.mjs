// Prints the web app's persisted-operation manifest: {sha256(document):
// document} of every GraphQL document in static/js/queries.js, sorted by id.
// `make manifest` writes it to internal/persisted/manifests/web/1.json;
// TestWebManifestIsCurrent checks the committed file.
import { createHash } from 'node:crypto';
import * as Q from '../static/js/queries.js';

const out = {};
for (const doc of Object.values(Q)) {
  if (typeof doc !== 'string') continue;
  out[createHash('sha256').update(doc).digest('hex')] = doc;
}
const sorted = Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
process.stdout.write(`${JSON.stringify(sorted, null, 2)}\n`);
