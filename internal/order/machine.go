package order

// Action is something a viewer can do to an existing order.
type Action string

// Actions of the contract (enum OrderAction).
const (
	ActionPay                   Action = "PAY"
	ActionCancel                Action = "CANCEL"
	ActionUpdateShippingAddress Action = "UPDATE_SHIPPING_ADDRESS"
	ActionShip                  Action = "SHIP"
	ActionDeliver               Action = "DELIVER"
)

// AllActions lists the actions in contract order.
var AllActions = []Action{ActionPay, ActionCancel, ActionUpdateShippingAddress, ActionShip, ActionDeliver}

// Outcome is the result of applying an action: the new state and the event
// that records it.
type Outcome struct {
	Status        Status
	PaymentStatus PaymentStatus
	Event         EventType
}

// Transition is the one place where the order state machine lives
// (spec/concurrency.md). Given the current status, payment status and the
// viewer's role, it says whether action a is allowed and what results.
//
// roleAllowed is false when the role may never take the action (FORBIDDEN);
// ok is false when the role may, but not in the current state
// (INVALID_TRANSITION).
func Transition(s Status, p PaymentStatus, role Role, a Action) (out Outcome, roleAllowed, ok bool) {
	switch a {
	case ActionPay:
		if role != RoleCustomer {
			return out, false, false
		}
		if s == StatusPendingPayment && (p == PaymentUnpaid || p == PaymentFailed) {
			return Outcome{s, PaymentProcessing, EventPaymentRequested}, true, true
		}
	case ActionCancel:
		if s == StatusPendingPayment && p != PaymentProcessing {
			return Outcome{StatusCancelled, p, EventOrderCancelled}, true, true
		}
		if s == StatusPaid {
			np := p
			if p == PaymentSucceeded {
				np = PaymentRefunded
			}
			return Outcome{StatusCancelled, np, EventOrderCancelled}, true, true
		}
		return out, true, false
	case ActionUpdateShippingAddress:
		if s == StatusPendingPayment || s == StatusPaid {
			return Outcome{s, p, EventShippingAddressUpdated}, true, true
		}
		return out, true, false
	case ActionShip:
		if role != RoleStaff {
			return out, false, false
		}
		if s == StatusPaid {
			return Outcome{StatusShipped, p, EventOrderShipped}, true, true
		}
	case ActionDeliver:
		if role != RoleStaff {
			return out, false, false
		}
		if s == StatusShipped {
			return Outcome{StatusDelivered, p, EventOrderDelivered}, true, true
		}
	default:
		return out, false, false
	}
	return out, true, false
}

// AvailableActions is what a viewer of role may do now to an order in
// status s with payment p, in contract order.
func AvailableActions(s Status, p PaymentStatus, role Role) []Action {
	out := []Action{}
	for _, a := range AllActions {
		if _, _, ok := Transition(s, p, role, a); ok {
			out = append(out, a)
		}
	}
	return out
}

// PaymentResult applies a provider's result to a payment. ok is false when
// the payment is not PROCESSING: the result changes nothing (a duplicate or
// a late result).
func PaymentResult(s Status, p PaymentStatus, succeeded bool) (out Outcome, ok bool) {
	if p != PaymentProcessing {
		return out, false
	}
	if succeeded {
		return Outcome{StatusPaid, PaymentSucceeded, EventPaymentSucceeded}, true
	}
	return Outcome{s, PaymentFailed, EventPaymentFailed}, true
}
