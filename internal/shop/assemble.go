package shop

import (
	"github.com/shop/bff/graph/model"
	"github.com/shop/bff/internal/loaders"
	"github.com/shop/bff/internal/order"
)

// money converts a domain amount.
func money(m order.Money) *model.Money {
	return &model.Money{Cents: int(m.Cents), Currency: m.Currency, Formatted: m.Formatted()}
}

// User converts a domain user.
func User(u *order.User) *model.User {
	return &model.User{ID: u.ID, Name: u.Name, Email: u.Email, Role: u.Role}
}

func product(p *order.Product) *model.Product {
	return &model.Product{ID: p.ID, Sku: p.SKU, Name: p.Name, Price: money(p.Price), ImageURL: p.ImageURL}
}

// Event converts a domain event.
func Event(e order.Event) *model.OrderEvent {
	return &model.OrderEvent{ID: e.ID, OrderID: e.OrderID, Type: e.Type, FromStatus: e.FromStatus,
		ToStatus: e.ToStatus, Version: e.Version, At: e.At, Actor: e.Actor}
}

// orderModels converts loaded orders.
func orderModels(list []*loaders.Order) []*model.Order {
	out := make([]*model.Order, len(list))
	for i, o := range list {
		out[i] = orderModel(o)
	}
	return out
}

// orderModel converts one loaded order.
func orderModel(o *loaders.Order) *model.Order {
	m := &model.Order{ID: o.ID, Number: o.Number, Customer: User(o.Customer),
		Status: o.Status, PaymentStatus: o.PaymentStatus,
		Version: o.Version, Total: money(o.Total), TrackingNumber: o.TrackingNumber,
		CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC(),
		ShippingAddress: &o.Address,
		Lines:           make([]*model.OrderLine, 0, len(o.Lines)),
	}
	for _, ln := range o.Lines {
		m.Lines = append(m.Lines, &model.OrderLine{Product: product(ln.Product),
			Quantity: ln.Quantity, UnitPrice: money(ln.UnitPrice), Total: money(ln.Total())})
	}
	return m
}

// statusCounts lists one row per status that has orders, in contract order.
func statusCounts(counts map[order.Status]int) []*model.StatusCount {
	out := []*model.StatusCount{}
	for _, st := range order.AllStatuses {
		if n := counts[st]; n > 0 {
			out = append(out, &model.StatusCount{Status: st, Count: n})
		}
	}
	return out
}
