// @apollo/client's HttpLink (npm, pinned by the Go test) running the
// orderEvents subscription over multipart HTTP (Accept:
// multipart/mixed;subscriptionSpec=1.0). Prints "event <id> <type>" lines;
// exits when stdin closes.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';

const [url, token, orderId, after] = process.argv.slice(2);

const client = new ApolloClient({
  link: new HttpLink({ uri: url, headers: { Authorization: `Bearer ${token}` } }),
  cache: new InMemoryCache(),
});

const sub = client.subscribe({
  query: gql`subscription Follow($id: ID, $after: String) { orderEvents(orderId: $id, after: $after) { id type version } }`,
  variables: { id: orderId, after },
}).subscribe({
  next: (result) => {
    if (result.error) { console.log(`errors ${result.error.message}`); return; }
    console.log(`event ${result.data.orderEvents.id} ${result.data.orderEvents.type}`);
  },
  error: (err) => { console.log(`error ${err.message}`); process.exit(1); },
  complete: () => console.log('complete'),
});
console.log('subscribed');

process.stdin.on('end', () => { sub.unsubscribe(); process.exit(0); });
process.stdin.resume();
