package order

// The access rule, one place for every door (screens, mutations, streams):
// staff see and act on every order, a customer on their own orders only.

// CanSee reports whether viewer may see the order o (and act on it, as
// far as the state machine lets the viewer's role).
func CanSee(viewer *User, o *Order) bool {
	return viewer != nil && o != nil && (viewer.Role == RoleStaff || o.CustomerID == viewer.ID)
}

// VisibleCustomer is the customer whose orders viewer sees: the viewer's
// own id for a customer, "" (every customer) for staff.
func VisibleCustomer(viewer *User) string {
	if viewer.Role == RoleStaff {
		return ""
	}
	return viewer.ID
}
