// GraphQL documents used by the app (contract.graphql).

const ORDER_SUMMARY = `
fragment OrderSummary on Order {
  id number status paymentStatus version createdAt
  total { formatted }
  customer { id name email }
}`;

const ADDRESS = 'shippingAddress { name line1 line2 city postalCode country }';

const ORDER_FULL = `
fragment OrderFull on Order {
  ...OrderSummary
  trackingNumber updatedAt
  ${ADDRESS}
  lines { quantity product { id sku name } unitPrice { formatted } total { formatted } }
}`;

export const VIEWER = 'query Viewer { viewer { id name email role } }';

export const HOME_SCREEN = `query HomeScreen {
  homeScreen {
    viewer { id name email role }
    recentOrders { ...OrderSummary }
    statusCounts { status count }
    openOrders
    lifetimeSpend { formatted }
  }
}${ORDER_SUMMARY}`;

export const ORDERS_SCREEN = `query OrdersScreen($status: OrderStatus, $first: Int, $after: String) {
  ordersScreen(status: $status, first: $first, after: $after) {
    orders { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { ...OrderSummary } } }
    statusCounts { status count }
  }
}${ORDER_SUMMARY}`;

export const ORDER_SCREEN = `query OrderScreen($id: ID!) {
  orderScreen(id: $id) {
    order { ...OrderFull }
    timeline { id type fromStatus toStatus version at actor }
    availableActions
    lastEventId
  }
}${ORDER_SUMMARY}${ORDER_FULL}`;

export const PRODUCTS = `query Products($first: Int, $after: String) {
  products(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { id sku name imageUrl price { cents currency formatted } } }
  }
}`;

const PAYLOAD = `{ order { id status paymentStatus version } }`;

export const PLACE_ORDER = `mutation PlaceOrder($input: PlaceOrderInput!) {
  placeOrder(input: $input) ${PAYLOAD}
}`;

export const PAY_ORDER = `mutation PayOrder($id: ID!, $expectedVersion: Int!) {
  payOrder(id: $id, expectedVersion: $expectedVersion) ${PAYLOAD}
}`;

export const CANCEL_ORDER = `mutation CancelOrder($id: ID!, $expectedVersion: Int!, $reason: String) {
  cancelOrder(id: $id, expectedVersion: $expectedVersion, reason: $reason) ${PAYLOAD}
}`;

export const UPDATE_ADDRESS = `mutation UpdateShippingAddress($id: ID!, $expectedVersion: Int!, $address: AddressInput!) {
  updateShippingAddress(id: $id, expectedVersion: $expectedVersion, address: $address) ${PAYLOAD}
}`;

export const SHIP_ORDER = `mutation ShipOrder($id: ID!, $expectedVersion: Int!, $trackingNumber: String!) {
  shipOrder(id: $id, expectedVersion: $expectedVersion, trackingNumber: $trackingNumber) ${PAYLOAD}
}`;

export const DELIVER_ORDER = `mutation DeliverOrder($id: ID!, $expectedVersion: Int!) {
  deliverOrder(id: $id, expectedVersion: $expectedVersion) ${PAYLOAD}
}`;

// Outbound webhooks (staff only; schema/webhooks.graphqls).
export const WEBHOOK_ENDPOINTS = `query WebhookEndpoints {
  webhookEndpoints { id url description eventTypes enabled disabledReason failingSince }
}`;

export const WEBHOOK_DELIVERIES = `query WebhookDeliveries($endpointId: ID!, $status: WebhookDeliveryStatus, $first: Int) {
  webhookDeliveries(endpointId: $endpointId, status: $status, first: $first) {
    edges { node { id webhookId eventType orderId status attempts lastResponseCode lastError nextAttemptAt createdAt deliveredAt } }
  }
}`;

export const REDELIVER_WEBHOOK = `mutation RedeliverWebhook($deliveryId: ID!) {
  redeliverWebhook(deliveryId: $deliveryId) { delivery { id status attempts nextAttemptAt } }
}`;
