// Apollo Client 4 with the README's RetryLink setup (retryIf on
// extensions.retryable, delay at least Retry-After, one Idempotency-Key per
// intent), placing two orders back to back under a 1/s mutation limit:
// the second is refused 429 and retried with the same key. Prints one
// "attempt <operation> <status> <key>" line per HTTP request and
// "done <operation> <order id>" per result.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, CombinedGraphQLErrors, ServerError, gql } from '@apollo/client';
import { RetryLink } from '@apollo/client/link/retry';
import { map } from 'rxjs';

const [url, token, input] = process.argv.slice(2);

const retryable = (error) => {
  if (CombinedGraphQLErrors.is(error)) return error.errors.some((e) => e.extensions?.retryable === true);
  if (ServerError.is(error)) {
    try { return JSON.parse(error.bodyText).errors.some((e) => e.extensions?.retryable === true); } catch { return false; }
  }
  return true;
};
const retryAfterMs = (error) => {
  const header = ServerError.is(error) ? Number(error.response.headers.get('Retry-After')) : NaN;
  const ext = CombinedGraphQLErrors.is(error) ? error.errors[0]?.extensions?.retryAfterSeconds : undefined;
  return 1000 * (Number.isFinite(header) ? header : ext ?? 0);
};

// records every HTTP attempt
const fetchLogged = async (uri, init) => {
  const res = await fetch(uri, init);
  const body = JSON.parse(init.body);
  console.log(`attempt ${body.operationName} ${res.status} ${init.headers['Idempotency-Key'] ?? init.headers['idempotency-key']}`);
  return res;
};

const link = ApolloLink.from([
  new RetryLink({
    attempts: { max: 5, retryIf: retryable },
    delay: (count, _op, error) => Math.max(retryAfterMs(error), Math.random() * Math.min(5000, 250 * 2 ** count)),
  }),
  new ApolloLink((op, forward) => {
    if (op.operationType === 'mutation') {
      const { idempotencyKey = crypto.randomUUID(), headers = {} } = op.getContext();
      op.setContext({ idempotencyKey, headers: { ...headers, 'Idempotency-Key': idempotencyKey } });
    }
    return forward(op).pipe(map((result) => {
      if (result.errors?.some((e) => e.extensions?.retryable === true)) throw new CombinedGraphQLErrors(result);
      return result;
    }));
  }),
  new HttpLink({ uri: url, headers: { Authorization: `Bearer ${token}` }, fetch: fetchLogged }),
]);
const client = new ApolloClient({ link, cache: new InMemoryCache() });

const PLACE = gql`mutation Place($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id } } }`;
for (const name of ['first', 'second']) {
  try {
    const { data } = await client.mutate({ mutation: PLACE, variables: { in: JSON.parse(input) }, context: { name } });
    console.log(`done ${name} ${data.placeOrder.order.id}`);
  } catch (err) {
    console.log(`error ${name} ${err.message}`);
    process.exit(1);
  }
}
