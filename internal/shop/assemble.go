package shop

import (
	"context"
	"sort"

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
	return &model.User{ID: u.ID, Name: u.Name, Email: u.Email, Role: model.Role(u.Role)}
}

func product(p *order.Product) *model.Product {
	return &model.Product{ID: p.ID, Sku: p.SKU, Name: p.Name, Price: money(p.Price), ImageURL: p.ImageURL}
}

// Event converts a domain event.
func Event(e order.Event) *model.OrderEvent {
	ev := &model.OrderEvent{ID: e.ID, OrderID: e.OrderID, Type: model.OrderEventType(e.Type),
		ToStatus: model.OrderStatus(e.ToStatus), Version: e.Version, At: e.At, Actor: e.Actor}
	if e.FromStatus != nil {
		f := model.OrderStatus(*e.FromStatus)
		ev.FromStatus = &f
	}
	return ev
}

// assemble turns orders into complete models with their lines, products
// and customers: three batched queries whatever the number of orders.
func (s *Shop) assemble(ctx context.Context, list []*order.Order) ([]*model.Order, error) {
	if len(list) == 0 {
		return []*model.Order{}, nil
	}
	l := loaders.From(ctx, s.store)
	ids := make([]string, len(list))
	custIDs := make([]string, 0, len(list))
	seen := map[string]bool{}
	for i, o := range list {
		ids[i] = o.ID
		if !seen[o.CustomerID] {
			seen[o.CustomerID] = true
			custIDs = append(custIDs, o.CustomerID)
		}
	}
	linesThunk := l.Lines.LoadAllThunk(ctx, ids)
	usersThunk := l.User.LoadAllThunk(ctx, custIDs)
	lines, err := linesThunk()
	if err != nil {
		return nil, order.AsError(err)
	}
	users, err := usersThunk()
	if err != nil {
		return nil, order.AsError(err)
	}
	userByID := make(map[string]*order.User, len(users))
	for _, u := range users {
		userByID[u.ID] = u
	}
	var pids []string
	pseen := map[string]bool{}
	for _, ls := range lines {
		for _, ln := range ls {
			if !pseen[ln.ProductID] {
				pseen[ln.ProductID] = true
				pids = append(pids, ln.ProductID)
			}
		}
	}
	sort.Strings(pids)
	products, err := l.Product.LoadAll(ctx, pids)
	if err != nil {
		return nil, order.AsError(err)
	}
	productByID := make(map[string]*order.Product, len(products))
	for _, p := range products {
		productByID[p.ID] = p
	}
	out := make([]*model.Order, len(list))
	for i, o := range list {
		m := &model.Order{ID: o.ID, Number: o.Number, Customer: User(userByID[o.CustomerID]),
			Status: model.OrderStatus(o.Status), PaymentStatus: model.PaymentStatus(o.PaymentStatus),
			Version: o.Version, Total: money(o.Total), TrackingNumber: o.TrackingNumber,
			CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC(),
			ShippingAddress: &model.Address{Name: o.Address.Name, Line1: o.Address.Line1, Line2: o.Address.Line2,
				City: o.Address.City, PostalCode: o.Address.PostalCode, Country: o.Address.Country},
			Lines: make([]*model.OrderLine, 0, len(lines[i])),
		}
		for _, ln := range lines[i] {
			m.Lines = append(m.Lines, &model.OrderLine{Product: product(productByID[ln.ProductID]),
				Quantity: ln.Quantity, UnitPrice: money(ln.UnitPrice), Total: money(ln.Total())})
		}
		out[i] = m
	}
	return out, nil
}

// statusCounts lists one row per status that has orders, in contract order.
func statusCounts(counts map[order.Status]int) []*model.StatusCount {
	out := []*model.StatusCount{}
	for _, st := range order.AllStatuses {
		if n := counts[st]; n > 0 {
			out = append(out, &model.StatusCount{Status: model.OrderStatus(st), Count: n})
		}
	}
	return out
}
