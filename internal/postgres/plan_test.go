package postgres_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// A customer's screen reads are prepared statements: after a few runs
// Postgres plans them once, generically, without the argument values. A
// generic plan of an optional filter ("$1 IS NULL OR customer_id = $1")
// cannot use the customer's index and reads every order of the shop. Every
// statement of a customer's home and orders screens must find the
// customer's rows through an index, even with sequential scans priced out,
// and without an optional filter left in its plan.
func TestCustomerScreenReadsUseAnIndexInTheirGenericPlan(t *testing.T) {
	f := newWriteFixture(t)
	f.place()
	ctx := context.Background()
	sc := postgres.ScopeFor(f.alice)
	paid := order.StatusPaid
	var b postgres.Batch
	for _, set := range []postgres.OrderSet{
		{Scope: sc, First: 5},
		{Scope: sc, Status: &paid, First: 5,
			After: &postgres.OrderCursor{CreatedAt: time.Now(), ID: "00000000-0000-0000-0000-000000000001"}},
	} {
		b.Orders(set)
		b.LinesOf(set)
		b.CustomersOf(set)
	}
	b.Summary(sc)
	b.LastPosition(sc)

	conn, err := f.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, set := range []string{`SET plan_cache_mode = force_generic_plan`, `SET enable_seqscan = off`} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	defer conn.Exec(ctx, `RESET ALL; DEALLOCATE ALL`) //nolint:errcheck // the connection is the test's own

	sqls, args := b.Queued()
	for i, sql := range sqls {
		name := fmt.Sprintf("plan_test_%d", i)
		if _, err := conn.Exec(ctx, `PREPARE `+name+` AS `+sql); err != nil {
			t.Fatalf("prepare %s: %v", sql, err)
		}
		lits := make([]string, len(args[i]))
		for j, a := range args[i] {
			lits[j] = literal(t, a)
		}
		call := name
		if len(lits) > 0 {
			call += "(" + strings.Join(lits, ", ") + ")"
		}
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE `+call)
		if err != nil {
			t.Fatalf("explain %s: %v", sql, err)
		}
		var plan strings.Builder
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(plan.String(), "IS NULL") || seqScan.MatchString(plan.String()) {
			t.Errorf("the generic plan of\n%s\nfilters the whole table instead of using an index:\n%s", sql, plan.String())
		}
	}
}

// seqScan matches a plan node that reads a whole table of orders or events.
var seqScan = regexp.MustCompile(`Seq Scan on (orders|order_events)\b`)

// literal is a as an SQL literal.
func literal(t *testing.T, a any) string {
	switch v := a.(type) {
	case nil:
		return "NULL"
	case *string:
		if v == nil {
			return "NULL"
		}
		return literal(t, *v)
	case *time.Time:
		if v == nil {
			return "NULL"
		}
		return literal(t, *v)
	case string:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case int, int64:
		return fmt.Sprint(v)
	case time.Time:
		return "'" + v.Format(time.RFC3339Nano) + "'"
	}
	t.Fatalf("no literal for %T", a)
	return ""
}
