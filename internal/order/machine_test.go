package order

import (
	"fmt"
	"testing"
)

// TestTransitionTable checks every cell: each status × payment status ×
// role × action, against the table of spec/concurrency.md written out as
// the set of cells that are allowed.
func TestTransitionTable(t *testing.T) {
	type cell struct {
		s Status
		p PaymentStatus
		r Role
		a Action
	}
	want := map[cell]Outcome{}
	for _, r := range []Role{RoleCustomer, RoleStaff} {
		// PAY: customer only, PENDING_PAYMENT with UNPAID or FAILED.
		if r == RoleCustomer {
			for _, p := range []PaymentStatus{PaymentUnpaid, PaymentFailed} {
				want[cell{StatusPendingPayment, p, r, ActionPay}] = Outcome{StatusPendingPayment, PaymentProcessing, EventPaymentRequested}
			}
		}
		// CANCEL: PENDING_PAYMENT unless PROCESSING; PAID (refund if SUCCEEDED).
		for _, p := range AllPaymentStatuses {
			if p != PaymentProcessing {
				want[cell{StatusPendingPayment, p, r, ActionCancel}] = Outcome{StatusCancelled, p, EventOrderCancelled}
			}
			np := p
			if p == PaymentSucceeded {
				np = PaymentRefunded
			}
			want[cell{StatusPaid, p, r, ActionCancel}] = Outcome{StatusCancelled, np, EventOrderCancelled}
			// UPDATE_SHIPPING_ADDRESS: PENDING_PAYMENT or PAID.
			want[cell{StatusPendingPayment, p, r, ActionUpdateShippingAddress}] = Outcome{StatusPendingPayment, p, EventShippingAddressUpdated}
			want[cell{StatusPaid, p, r, ActionUpdateShippingAddress}] = Outcome{StatusPaid, p, EventShippingAddressUpdated}
			if r == RoleStaff {
				want[cell{StatusPaid, p, r, ActionShip}] = Outcome{StatusShipped, p, EventOrderShipped}
				want[cell{StatusShipped, p, r, ActionDeliver}] = Outcome{StatusDelivered, p, EventOrderDelivered}
			}
		}
	}
	cells := 0
	for _, s := range AllStatuses {
		for _, p := range AllPaymentStatuses {
			for _, r := range []Role{RoleCustomer, RoleStaff} {
				for _, a := range AllActions {
					cells++
					c := cell{s, p, r, a}
					t.Run(fmt.Sprintf("%s/%s/%s/%s", s, p, r, a), func(t *testing.T) {
						out, roleOK, ok := Transition(s, p, r, a)
						w, allowed := want[c]
						if ok != allowed {
							t.Fatalf("allowed = %v, want %v", ok, allowed)
						}
						if ok && out != w {
							t.Fatalf("outcome = %+v, want %+v", out, w)
						}
						forbidden := (a == ActionPay && r != RoleCustomer) || ((a == ActionShip || a == ActionDeliver) && r != RoleStaff)
						if roleOK == forbidden {
							t.Fatalf("roleAllowed = %v, want %v", roleOK, !forbidden)
						}
					})
				}
			}
		}
	}
	if cells != 5*5*2*5 {
		t.Fatalf("covered %d cells", cells)
	}
}

// Every cell (status × payment status × role): what a viewer may do, as
// the table of spec/concurrency.md states it, written here independently
// of Transition.
func TestAvailableActionsMatchesTransition(t *testing.T) {
	spec := func(s Status, p PaymentStatus, role Role, a Action) bool {
		staff := role == RoleStaff
		switch a {
		case ActionPay: // the order's customer; PENDING_PAYMENT and payment UNPAID or FAILED
			return !staff && s == StatusPendingPayment && (p == PaymentUnpaid || p == PaymentFailed)
		case ActionCancel: // customer or staff; PENDING_PAYMENT with payment not PROCESSING, or PAID
			return s == StatusPendingPayment && p != PaymentProcessing || s == StatusPaid
		case ActionUpdateShippingAddress: // customer or staff; PENDING_PAYMENT or PAID
			return s == StatusPendingPayment || s == StatusPaid
		case ActionShip: // staff; PAID
			return staff && s == StatusPaid
		case ActionDeliver: // staff; SHIPPED
			return staff && s == StatusShipped
		}
		return false
	}
	cells := 0
	for _, s := range AllStatuses {
		for _, p := range AllPaymentStatuses {
			for _, role := range []Role{RoleCustomer, RoleStaff} {
				want := []Action{}
				for _, a := range AllActions {
					if spec(s, p, role, a) {
						want = append(want, a)
					}
				}
				if got := AvailableActions(s, p, role); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s/%s as %s: available %v, want %v", s, p, role, got, want)
				}
				cells++
			}
		}
	}
	if cells != len(AllStatuses)*len(AllPaymentStatuses)*2 || cells == 0 {
		t.Fatalf("covered %d cells", cells)
	}
}

func TestPaymentResult(t *testing.T) {
	for _, p := range AllPaymentStatuses {
		out, ok := PaymentResult(StatusPendingPayment, p, true)
		if ok != (p == PaymentProcessing) {
			t.Fatalf("%s: ok=%v", p, ok)
		}
		if ok && (out.Status != StatusPaid || out.PaymentStatus != PaymentSucceeded || out.Event != EventPaymentSucceeded) {
			t.Fatalf("success outcome %+v", out)
		}
		out, ok = PaymentResult(StatusPendingPayment, p, false)
		if ok != (p == PaymentProcessing) {
			t.Fatalf("%s: failure ok=%v: a failure applies to a PROCESSING payment only", p, ok)
		}
		if ok && (out.Status != StatusPendingPayment || out.PaymentStatus != PaymentFailed || out.Event != EventPaymentFailed) {
			t.Fatalf("failure outcome %+v", out)
		}
	}
}
