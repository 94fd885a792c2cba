package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"golang.org/x/sync/errgroup"
)

// User is one seeded customer as the load sees it.
type User struct {
	Index int
	Email string
	Token string
	// Orders are the ids of the customer's orders at setup.
	Orders []string
	// Target is an order in PENDING_PAYMENT, whose shipping address the
	// mutations change; Version is its version as last known.
	Target  string
	Version int

	homeBody   []byte
	orderBodys [][]byte
}

type orderNode struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	PaymentStatus string `json:"paymentStatus"`
	Version       int    `json:"version"`
}

// Setup signs n seeded customers customer0001@example.com… in through
// POST /session and reads their orders; each must have an order in
// PENDING_PAYMENT (what `bff seed --customers N` writes).
func Setup(ctx context.Context, c *http.Client, base string, n int) ([]*User, error) {
	users := make([]*User, n)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range users {
		g.Go(func() error {
			u := &User{Index: i, Email: fmt.Sprintf("customer%04d@example.com", i+1)}
			tok, err := SignIn(ctx, c, base, u.Email)
			if err != nil {
				return fmt.Errorf("%w (seed with `bff seed --customers %d`)", err, n)
			}
			u.Token = tok
			r, err := Post(ctx, c, base+"/graphql", tok, GraphQLBody(QueryOrders, map[string]any{"first": 50}), true)
			if err != nil {
				return fmt.Errorf("orders of %s: %w", u.Email, err)
			}
			var out struct {
				Data struct {
					OrdersScreen struct {
						Orders struct {
							Edges []struct {
								Node orderNode `json:"node"`
							} `json:"edges"`
						} `json:"orders"`
					} `json:"ordersScreen"`
				} `json:"data"`
			}
			if err := json.Unmarshal(r.Body, &out); err != nil {
				return fmt.Errorf("orders of %s: %w", u.Email, err)
			}
			for _, e := range out.Data.OrdersScreen.Orders.Edges {
				u.Orders = append(u.Orders, e.Node.ID)
				if e.Node.Status == "PENDING_PAYMENT" && e.Node.PaymentStatus != "PROCESSING" && u.Target == "" {
					u.Target, u.Version = e.Node.ID, e.Node.Version
				}
			}
			if u.Target == "" {
				return fmt.Errorf("%s has no order in PENDING_PAYMENT", u.Email)
			}
			u.homeBody = GraphQLBody(QueryHome, nil)
			for _, id := range u.Orders {
				u.orderBodys = append(u.orderBodys, GraphQLBody(QueryOrder, map[string]any{"id": id}))
			}
			users[i] = u
			return nil
		})
	}
	return users, g.Wait()
}

// Products returns the catalogue's product ids.
func Products(ctx context.Context, c *http.Client, base, token string) ([]string, error) {
	r, err := Post(ctx, c, base+"/graphql", token, GraphQLBody(QueryProducts, nil), true)
	if err != nil {
		return nil, err
	}
	var out struct {
		Data struct {
			Products struct {
				Edges []struct {
					Node struct {
						ID string `json:"id"`
					} `json:"node"`
				} `json:"edges"`
			} `json:"products"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range out.Data.Products.Edges {
		ids = append(ids, e.Node.ID)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no products (run `bff seed`)")
	}
	return ids, nil
}
