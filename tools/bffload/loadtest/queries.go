package loadtest

// The GraphQL documents of the scenarios: the screens as the web app
// (web/static/js/queries.js) sends them, and the two keyed mutations.
const (
	orderSummary = `
fragment OrderSummary on Order {
  id number status paymentStatus version createdAt
  total { formatted }
  customer { id name email }
}`
	orderFull = `
fragment OrderFull on Order {
  ...OrderSummary
  trackingNumber updatedAt
  shippingAddress { name line1 line2 city postalCode country }
  lines { quantity product { id sku name } unitPrice { formatted } total { formatted } }
}`

	// QueryHome is the home screen.
	QueryHome = `query HomeScreen {
  homeScreen {
    viewer { id name email role }
    recentOrders { ...OrderSummary }
    statusCounts { status count }
    openOrders
    lifetimeSpend { formatted }
  }
}` + orderSummary

	// QueryOrder is the order screen.
	QueryOrder = `query OrderScreen($id: ID!) {
  orderScreen(id: $id) {
    order { ...OrderFull }
    timeline { id type fromStatus toStatus version at actor }
    availableActions
    lastEventId
  }
}` + orderSummary + orderFull

	// QueryOrders lists a viewer's orders (setup only).
	QueryOrders = `query OrdersScreen($first: Int) {
  ordersScreen(first: $first) {
    orders { edges { node { id status paymentStatus version } } }
  }
}`

	// QueryProducts lists the catalogue (setup only).
	QueryProducts = `query Products { products(first: 50) { edges { node { id } } } }`

	// MutationAddress changes an order's shipping address (keyed,
	// with expectedVersion).
	MutationAddress = `mutation UpdateShippingAddress($id: ID!, $expectedVersion: Int!, $address: AddressInput!) {
  updateShippingAddress(id: $id, expectedVersion: $expectedVersion, address: $address) { order { id status paymentStatus version } }
}`

	// MutationPlace places an order (keyed).
	MutationPlace = `mutation PlaceOrder($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id status paymentStatus version } }
}`
)
