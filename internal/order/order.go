package order

import (
	"fmt"
	"time"
)

// Status is the fulfilment status of an order.
type Status string

// Order statuses.
const (
	StatusPendingPayment Status = "PENDING_PAYMENT"
	StatusPaid           Status = "PAID"
	StatusShipped        Status = "SHIPPED"
	StatusDelivered      Status = "DELIVERED"
	StatusCancelled      Status = "CANCELLED"
)

// AllStatuses lists the statuses in contract order.
var AllStatuses = []Status{StatusPendingPayment, StatusPaid, StatusShipped, StatusDelivered, StatusCancelled}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	for _, x := range AllStatuses {
		if x == s {
			return true
		}
	}
	return false
}

// Open reports whether an order in status s counts as open on the home screen.
func (s Status) Open() bool {
	return s == StatusPendingPayment || s == StatusPaid || s == StatusShipped
}

// PaymentStatus is the state of an order's payment.
type PaymentStatus string

// Payment statuses.
const (
	PaymentUnpaid     PaymentStatus = "UNPAID"
	PaymentProcessing PaymentStatus = "PROCESSING"
	PaymentSucceeded  PaymentStatus = "SUCCEEDED"
	PaymentFailed     PaymentStatus = "FAILED"
	PaymentRefunded   PaymentStatus = "REFUNDED"
)

// AllPaymentStatuses lists the payment statuses in contract order.
var AllPaymentStatuses = []PaymentStatus{PaymentUnpaid, PaymentProcessing, PaymentSucceeded, PaymentFailed, PaymentRefunded}

// Role is a user's role.
type Role string

// Roles.
const (
	RoleCustomer Role = "CUSTOMER"
	RoleStaff    Role = "STAFF"
)

// User is a signed-in person.
type User struct {
	ID    string
	Name  string
	Email string
	Role  Role
}

// Money is an amount in minor units of a currency.
type Money struct {
	Cents    int64
	Currency string
}

// Product is an item of the catalogue.
type Product struct {
	ID       string
	SKU      string
	Name     string
	Price    Money
	ImageURL *string
}

// Address is a shipping address.
type Address struct {
	Name       string  `json:"name"`
	Line1      string  `json:"line1"`
	Line2      *string `json:"line2,omitempty"`
	City       string  `json:"city"`
	PostalCode string  `json:"postalCode"`
	Country    string  `json:"country"`
}

// Line is one line of an order; UnitPrice is the catalogue price at the
// time the order was placed.
type Line struct {
	ProductID string
	Quantity  int
	UnitPrice Money
}

// Total is the line's total.
func (l Line) Total() Money {
	return Money{Cents: l.UnitPrice.Cents * int64(l.Quantity), Currency: l.UnitPrice.Currency}
}

// Order is an order with its scalar fields; lines are loaded separately.
type Order struct {
	ID             string
	Number         string
	CustomerID     string
	Status         Status
	PaymentStatus  PaymentStatus
	Version        int
	Total          Money
	Address        Address
	TrackingNumber *string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// EventType is the kind of an order event.
type EventType string

// Event types.
const (
	EventOrderPlaced            EventType = "ORDER_PLACED"
	EventPaymentRequested       EventType = "PAYMENT_REQUESTED"
	EventPaymentSucceeded       EventType = "PAYMENT_SUCCEEDED"
	EventPaymentFailed          EventType = "PAYMENT_FAILED"
	EventShippingAddressUpdated EventType = "SHIPPING_ADDRESS_UPDATED"
	EventOrderShipped           EventType = "ORDER_SHIPPED"
	EventOrderDelivered         EventType = "ORDER_DELIVERED"
	EventOrderCancelled         EventType = "ORDER_CANCELLED"
)

// ActorProvider is the actor of events caused by the payment provider.
const ActorProvider = "payment-provider"

// Event is one committed change of an order.
//
// Position is the global stream position: increasing, with holes where a
// transaction rolled back after drawing one; of one customer, their order
// is the order in which the transactions that wrote them committed, and
// streams hand a position out only once every lower one is final.
// CustomerSeq is dense per customer, in commit order.
type Event struct {
	Position      int64         `json:"-"`
	CustomerSeq   int64         `json:"-"`
	CustomerID    string        `json:"-"`
	ID            string        `json:"id"`
	OrderID       string        `json:"orderId"`
	Type          EventType     `json:"type"`
	FromStatus    *Status       `json:"fromStatus"`
	ToStatus      Status        `json:"toStatus"`
	Version       int           `json:"version"`
	At            time.Time     `json:"at"`
	Actor         string        `json:"actor"`
	Status        Status        `json:"status"`
	PaymentStatus PaymentStatus `json:"paymentStatus"`
	// Reason is the reason given with a cancellation (cancelOrder's
	// reason, see ValidateReason), on ORDER_CANCELLED only and only when one
	// was given. The contract's OrderEvent has no field for it: it travels
	// in the event's data (GET /events, outbound webhooks).
	Reason *string `json:"reason,omitempty"`
	// TraceParent is the W3C traceparent of the request that committed
	// the event, when known (set by the broker on publication, carried
	// between instances): the spans of its deliveries join that trace.
	TraceParent string `json:"-"`
}

// Formatted is the display form of m, e.g. $199.00.
func (m Money) Formatted() string {
	neg := ""
	c := m.Cents
	if c < 0 {
		neg, c = "-", -c
	}
	amount := fmt.Sprintf("%d.%02d", c/100, c%100)
	// group thousands
	intPart, frac := amount[:len(amount)-3], amount[len(amount)-3:]
	for i := len(intPart) - 3; i > 0; i -= 3 {
		intPart = intPart[:i] + "," + intPart[i:]
	}
	switch m.Currency {
	case "USD":
		return neg + "$" + intPart + frac
	case "EUR":
		return neg + "€" + intPart + frac
	case "GBP":
		return neg + "£" + intPart + frac
	}
	return neg + intPart + frac + " " + m.Currency
}
