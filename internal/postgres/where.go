package postgres

import (
	"strconv"
	"strings"
)

// where builds a WHERE condition from only the predicates that apply,
// numbering their arguments in order. Each combination of filters is then
// a statement of its own, with a plan of its own: a prepared statement's
// generic plan of "$1 IS NULL OR customer_id = $1" cannot use the
// customer's index (it scans the whole table), and a custom plan is
// planned again on every execution, while "customer_id = $1" is planned
// once per connection and uses the index.
type where struct {
	conds []string
	args  []any
}

// arg adds v as the next argument and returns its placeholder ($n).
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

// and adds a predicate (built with arg's placeholders).
func (w *where) and(cond string) { w.conds = append(w.conds, cond) }

// String is the conjunction of the predicates, TRUE when there are none.
func (w *where) String() string {
	if len(w.conds) == 0 {
		return "TRUE"
	}
	return strings.Join(w.conds, " AND ")
}

// scope adds the customer filter of sc on column col (none for staff).
func (w *where) scope(col string, sc Scope) {
	if sc.CustomerID != "" {
		w.and(col + " = " + w.arg(sc.CustomerID) + "::uuid")
	}
}
