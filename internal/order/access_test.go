package order

import "testing"

func TestCanSee(t *testing.T) {
	alice := &User{ID: "a", Role: RoleCustomer}
	bob := &User{ID: "b", Role: RoleCustomer}
	staff := &User{ID: "s", Role: RoleStaff}
	own := &Order{ID: "o", CustomerID: "a"}
	for _, c := range []struct {
		name   string
		viewer *User
		o      *Order
		want   bool
	}{
		{"own order", alice, own, true},
		{"another customer's order", bob, own, false},
		{"staff, any order", staff, own, true},
		{"no viewer", nil, own, false},
		{"no order", alice, nil, false},
	} {
		if got := CanSee(c.viewer, c.o); got != c.want {
			t.Errorf("%s: CanSee = %v, want %v", c.name, got, c.want)
		}
	}
	if got := VisibleCustomer(alice); got != "a" {
		t.Errorf("VisibleCustomer(customer) = %q, want their id", got)
	}
	if got := VisibleCustomer(staff); got != "" {
		t.Errorf("VisibleCustomer(staff) = %q, want every customer", got)
	}
}
