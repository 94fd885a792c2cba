// The graphql-sse client (npm, pinned by the Go test) following one order's
// events, resuming with Last-Event-ID from its headers function: the few
// lines a client needs (see README). Prints "connected <retry>" and
// "event <id> <type>" lines; exits when stdin closes.
import { createClient } from 'graphql-sse';

const [url, token, orderId, after] = process.argv.slice(2);
let lastEventId; // the id of the last event received

const client = createClient({
  url,
  headers: () => ({
    Authorization: `Bearer ${token}`,
    ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}),
  }),
  retryAttempts: 50,
  retry: () => new Promise((resolve) => setTimeout(resolve, 50)),
  on: { connected: (reconnected) => console.log(`connected ${reconnected}`) },
});

client.subscribe(
  {
    query: 'subscription Follow($id: ID, $after: String) { orderEvents(orderId: $id, after: $after) { id type version } }',
    variables: { id: orderId, after },
  },
  {
    next: ({ data, errors }) => {
      if (errors) { console.log(`errors ${JSON.stringify(errors)}`); return; }
      lastEventId = data.orderEvents.id;
      console.log(`event ${data.orderEvents.id} ${data.orderEvents.type}`);
    },
    error: (err) => { console.log(`error ${err && err.message ? err.message : JSON.stringify(err)}`); process.exit(1); },
    complete: () => console.log('complete'),
  },
);

process.stdin.on('end', () => { client.dispose(); process.exit(0); });
process.stdin.resume();
