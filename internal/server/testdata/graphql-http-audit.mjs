// Runs the graphql-http audit suite (GraphQL-over-HTTP MUST and SHOULD
// rules) against the URL given as the first argument and prints one line
// per rule that is not ok, then a summary line "N ok, N warn, N error".
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const results = await auditServer({ url });
let ok = 0, warn = 0, error = 0;
for (const r of results) {
  if (r.status === 'ok') { ok++; continue; }
  if (r.status === 'warn') warn++; else error++;
  console.log(`${r.status.toUpperCase()} ${r.id} ${r.name}: ${r.reason}`);
}
console.log(`${ok} ok, ${warn} warn, ${error} error`);
process.exit(warn + error > 0 ? 1 : 0);
