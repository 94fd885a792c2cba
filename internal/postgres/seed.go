package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/shop/bff/internal/order"
)

// DemoUsers are the seeded users: two customers and one member of staff.
var DemoUsers = []order.User{
	{Name: "Alice Example", Email: "alice@example.com", Role: order.RoleCustomer},
	{Name: "Bob Example", Email: "bob@example.com", Role: order.RoleCustomer},
	{Name: "Sam Staff", Email: "staff@example.com", Role: order.RoleStaff},
}

var catalogue = []struct {
	name  string
	cents int64
}{
	{"Espresso Machine", 19900}, {"Burr Grinder", 12900}, {"Milk Frother", 3900}, {"Pour-Over Kettle", 5900},
	{"Ceramic Dripper", 2400}, {"Paper Filters (100)", 699}, {"Coffee Scale", 4900}, {"Travel Mug", 2900},
	{"Cold Brew Jar", 3400}, {"French Press", 3900}, {"Moka Pot", 3500}, {"Tamper", 2900},
	{"Knock Box", 2600}, {"Latte Cups (2)", 2200}, {"Espresso Cups (4)", 2800}, {"Descaler", 1299},
	{"Cleaning Tablets", 999}, {"Barista Towel", 899}, {"Whole Beans: Ethiopia", 1800}, {"Whole Beans: Colombia", 1600},
	{"Whole Beans: Brazil", 1500}, {"Whole Beans: Kenya", 1900}, {"Decaf Beans", 1700}, {"Tea Sampler", 2100},
	{"Matcha Whisk", 1900}, {"Gooseneck Thermometer", 1400}, {"Storage Canister", 2500}, {"Aeropress", 3999},
	{"Siphon Brewer", 8900}, {"Chemex 6-cup", 4900}, {"Hand Grinder", 7900}, {"Cup Warmer", 3300},
	{"Drip Tray", 1599}, {"Portafilter", 4500}, {"Steam Pitcher", 1999}, {"Water Filter", 2999},
	{"Barista Apron", 3200}, {"Coffee Book", 2999}, {"Gift Card $50", 5000}, {"Gift Card $100", 10000},
	{"Syrup Set", 2400}, {"Cocoa Powder", 899},
}

// SeedOptions says what to seed.
type SeedOptions struct {
	// Customers adds that many extra customers customer0001@example.com…,
	// each with orders, for benchmarks.
	Customers int
}

// Seed writes the demo data: users, a catalogue and, for every customer
// without orders, orders in every status with plausible timelines. It can
// run any number of times.
func (s *Store) Seed(ctx context.Context, opt SeedOptions) error {
	users := append([]order.User(nil), DemoUsers...)
	for i := 1; i <= opt.Customers; i++ {
		users = append(users, order.User{Name: fmt.Sprintf("Customer %04d", i), Email: fmt.Sprintf("customer%04d@example.com", i), Role: order.RoleCustomer})
	}
	for _, u := range users {
		if _, err := s.pool.Exec(ctx, `INSERT INTO users (email, name, role) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING`,
			u.Email, u.Name, string(u.Role)); err != nil {
			return interpretError(err)
		}
	}
	for i, p := range catalogue {
		if _, err := s.pool.Exec(ctx, `INSERT INTO products (sku, name, price_cents, currency, image_url)
			VALUES ($1, $2, $3, 'USD', $4) ON CONFLICT (sku) DO NOTHING`,
			fmt.Sprintf("SKU-%03d", i+1), p.name, p.cents, fmt.Sprintf("/img/sku-%03d.svg", i+1)); err != nil {
			return interpretError(err)
		}
	}
	staff, err := s.UserByEmail(ctx, "staff@example.com")
	if err != nil {
		return err
	}
	products, _, err := s.Products(ctx, 100, "")
	if err != nil {
		return err
	}
	for ui, u := range users {
		if u.Role != order.RoleCustomer {
			continue
		}
		cust, err := s.UserByEmail(ctx, u.Email)
		if err != nil {
			return err
		}
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE customer_id = $1::uuid`, cust.ID).Scan(&n); err != nil {
			return interpretError(err)
		}
		if n > 0 {
			continue
		}
		for k, plan := range seedPlans {
			lines := []order.LineInput{
				{ProductID: products[(ui*7+k*3)%len(products)].ID, Quantity: 1 + k%2},
				{ProductID: products[(ui*7+k*3+1)%len(products)].ID, Quantity: 1},
			}
			if err := s.seedOrder(ctx, cust, staff, lines, plan, time.Duration(len(seedPlans)-k)*36*time.Hour); err != nil {
				return fmt.Errorf("seed order for %s: %w", u.Email, err)
			}
		}
	}
	return nil
}

// seedPlans are the steps each seeded customer's orders go through, one
// order per plan, so every status (and a failed payment) is represented.
var seedPlans = [][]string{
	{"pay", "succeed", "ship", "deliver"},
	{"pay", "succeed", "cancel"},
	{"cancel"},
	{"pay", "succeed", "ship"},
	{"pay", "succeed"},
	{"pay", "fail"},
	{},
}

func (s *Store) seedOrder(ctx context.Context, cust, staff *order.User, lines []order.LineInput, plan []string, age time.Duration) error {
	addr := order.Address{Name: cust.Name, Line1: "1 Market Street", City: "San Francisco", PostalCode: "94105", Country: "US"}
	var o *order.Order
	if _, err := s.InTx(ctx, func(t *Tx) error {
		var err error
		o, err = t.PlaceOrder(ctx, cust, PlaceOrderInput{Lines: lines, Address: addr, Currency: "USD"})
		return err
	}); err != nil {
		return err
	}
	for i, step := range plan {
		var err error
		change := func(viewer *order.User, a order.Action, tracking string) {
			_, err = s.InTx(ctx, func(t *Tx) error {
				o, err = t.ChangeOrder(ctx, Change{Viewer: viewer, OrderID: o.ID, ExpectedVersion: o.Version, Action: a, TrackingNumber: tracking})
				return err
			})
		}
		switch step {
		case "pay":
			change(cust, order.ActionPay, "")
		case "cancel":
			change(cust, order.ActionCancel, "")
		case "ship":
			change(staff, order.ActionShip, fmt.Sprintf("1Z%08d", i*7919+len(o.Number)))
		case "deliver":
			change(staff, order.ActionDeliver, "")
		case "succeed", "fail":
			_, _, err = s.ApplyPaymentResult(ctx, PaymentResult{EventID: "seed-" + o.ID + "-" + step, Type: "payment." + step,
				OrderID: o.ID, ChargeID: "ch_seed_" + o.Number, AmountCents: o.Total.Cents, Currency: o.Total.Currency, Succeeded: step == "succeed"})
			if err == nil {
				var m map[string]*order.Order
				m, err = s.OrdersByIDs(ctx, []string{o.ID})
				o = m[o.ID]
			}
		}
		if err != nil {
			return err
		}
	}
	// Spread the timeline over the past: placed age ago, one step every few hours.
	_, err := s.pool.Exec(ctx, `
		WITH ev AS (SELECT position, row_number() OVER (ORDER BY position) - 1 AS k FROM order_events WHERE order_id = $1::uuid)
		UPDATE order_events e SET at = now() - $2::interval + ev.k * interval '5 hours', published_at = now()
		FROM ev WHERE e.position = ev.position;
	`, o.ID, age)
	if err == nil {
		_, err = s.pool.Exec(ctx, `UPDATE orders o SET created_at = now() - $2::interval,
			updated_at = (SELECT max(at) FROM order_events WHERE order_id = o.id) WHERE o.id = $1::uuid`, o.ID, age)
	}
	if err == nil {
		_, err = s.pool.Exec(ctx, `UPDATE charge_jobs SET state = 'done' WHERE order_id = $1::uuid`, o.ID)
	}
	return interpretError(err)
}
