package cache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shop/bff/internal/order"
	"github.com/stretchr/testify/require"
)

// screen is shaped like an assembled ordersScreen: orders with their lines
// and products, status counts, the viewer.
type screen struct {
	Viewer       order.User
	Orders       []screenOrder
	StatusCounts []statusCount
	HasNextPage  bool
	EndCursor    string
	Total        int
}

type screenOrder struct {
	Order            order.Order
	Lines            []screenLine
	AvailableActions []order.Action
}

type screenLine struct {
	Line    order.Line
	Product order.Product
	Total   order.Money
}

type statusCount struct {
	Status order.Status
	Count  int
}

// utc returns s with every time in UTC (codecs differ in the Location they
// decode times into; the instant is the same).
func (s screen) utc() screen {
	for i := range s.Orders {
		o := &s.Orders[i].Order
		o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	}
	return s
}

// sampleScreen returns a screen of n orders with 1-4 lines each.
func sampleScreen(n int) screen {
	s := screen{
		Viewer:      order.User{ID: "8b3f0c2e-4a7e-4b5e-9d0a-1f2e3d4c5b6a", Name: "Ada Customer", Email: "ada@example.com", Role: order.RoleCustomer},
		HasNextPage: true, EndCursor: "b3JkZXI6MjAyNi0xMS0yNVQxMToyMjoyNloK", Total: n,
	}
	base := time.Unix(1_790_000_000, 123_000_000).UTC()
	for i := range n {
		tracking := fmt.Sprintf("1Z999AA1%010d", i)
		line2 := "Apartment 4B"
		o := screenOrder{
			Order: order.Order{
				ID: fmt.Sprintf("0f8fad5b-d9cb-469f-a165-70867728%04d", i), Number: fmt.Sprintf("SO-2026-%05d", 1000+i),
				CustomerID: s.Viewer.ID, Status: order.AllStatuses[i%len(order.AllStatuses)],
				PaymentStatus: order.AllPaymentStatuses[i%len(order.AllPaymentStatuses)], Version: i % 7,
				Address: order.Address{Name: "Ada Customer", Line1: "12 Analytical Engine Street", Line2: &line2,
					City: "London", PostalCode: "NW1 2DB", Country: "GB"},
				TrackingNumber: &tracking,
				CreatedAt:      base.Add(time.Duration(i) * time.Hour), UpdatedAt: base.Add(time.Duration(i)*time.Hour + time.Minute),
			},
			AvailableActions: []order.Action{"PAY", "CANCEL", "UPDATE_SHIPPING_ADDRESS"}[:i%4],
		}
		var total int64
		for j := range 1 + i%4 {
			p := order.Product{ID: fmt.Sprintf("prod-%03d", j), SKU: fmt.Sprintf("SKU-%05d", j*17), Name: fmt.Sprintf("Mechanical keyboard, model %d", j),
				Price: order.Money{Cents: int64(1999 + j*500), Currency: "USD"}}
			l := order.Line{ProductID: p.ID, Quantity: 1 + j, UnitPrice: p.Price}
			o.Lines = append(o.Lines, screenLine{Line: l, Product: p, Total: l.Total()})
			total += l.Total().Cents
		}
		o.Order.Total = order.Money{Cents: total, Currency: "USD"}
		s.Orders = append(s.Orders, o)
	}
	for _, st := range order.AllStatuses {
		s.StatusCounts = append(s.StatusCounts, statusCount{Status: st, Count: n / len(order.AllStatuses)})
	}
	return s
}

// BenchmarkCodec measures encode+decode of a 20-order screen.
func BenchmarkCodec(b *testing.B) {
	s := sampleScreen(20)
	for _, codec := range []Codec{JSONCodec{}, MsgpackCodec{}} {
		data, err := codec.Marshal(s)
		require.NoError(b, err)
		b.Run(codec.Name(), func(b *testing.B) {
			b.ReportAllocs()
			b.ReportMetric(float64(len(data)), "bytes/value")
			for b.Loop() {
				data, err := codec.Marshal(s)
				if err != nil {
					b.Fatal(err)
				}
				var out screen
				if err := codec.Unmarshal(data, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(codec.Name()+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var out screen
				if err := codec.Unmarshal(data, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadHit measures a hit on a hot key of the shared Redis: one
// script round trip plus decoding a 20-order screen.
func BenchmarkLoadHit(b *testing.B) {
	for _, codec := range []Codec{MsgpackCodec{}, JSONCodec{}} {
		b.Run(codec.Name(), func(b *testing.B) {
			e := newEnv(b, Config{Codec: codec})
			ctx := context.Background()
			k := Key{Screen: "ordersScreen", Args: "status=&first=20&after=", ViewerID: "c1", Role: "CUSTOMER", Deps: []Dep{CustomerDep("c1")}}
			s := sampleScreen(20)
			load := func(context.Context) (screen, error) { return s, nil }
			_, _, err := Load(ctx, e.cache, k, load)
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, res, err := Load(ctx, e.cache, k, load)
					if err != nil || res.Status != StatusHit {
						b.Fatalf("want hit, got %v %v", res.Status, err)
					}
				}
			})
		})
	}
}
